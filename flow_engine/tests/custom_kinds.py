"""Kinds provided the way another app would (used by test_kinds and test_timeouts)."""

import time

import frappe

from flow_engine.engine.catalog import FieldSpec, KindSpec


def shout(call):
	return {"text": str(call.payload.get("text", "")).upper()}


def slow_todo(call):
	"""Writes a ToDo, then takes `seconds` (an inline step that may run past its timeout)."""
	todo = frappe.get_doc({"doctype": "ToDo", "description": str(call.payload.get("description"))}).insert()
	time.sleep(float(call.payload.get("seconds") or 0))
	return {"todo": todo.name}


KINDS = [
	(
		KindSpec(
			name="shout",
			label="Shout",
			fields=(FieldSpec("text", "Text", "data", required=True),),
			category="Test",
		),
		shout,
	),
	(
		KindSpec(
			name="slow_todo",
			label="Slow ToDo",
			fields=(
				FieldSpec("description", "Description", "data", required=True),
				FieldSpec("seconds", "Seconds", "float", required=True),
			),
			category="Test",
		),
		slow_todo,
	),
]
