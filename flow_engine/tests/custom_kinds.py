"""A kind provided the way another app would (used by test_kinds)."""

from flow_engine.engine.catalog import FieldSpec, KindSpec


def shout(call):
	return {"text": str(call.payload.get("text", "")).upper()}


KINDS = [
	(
		KindSpec(
			name="shout",
			label="Shout",
			fields=(FieldSpec("text", "Text", "data", required=True),),
			category="Test",
		),
		shout,
	)
]
