import json

from hypothesis import given
from hypothesis import strategies as st

from flow_engine.engine import secret_refs
from flow_engine.engine.validation import validate


def webhook(step_id="notify_crm", **payload):
	return {
		"id": step_id,
		"kind": "webhook",
		"payload": {"url": "https://crm.example.com/hook", "method": "POST", **payload},
	}


def test_sensitive_headers():
	for name in (
		"Authorization",
		"proxy-authorization",
		"COOKIE",
		"X-Api-Key",
		"X-Auth-Token",
		"X-Signature",
	):
		assert secret_refs.is_sensitive_header(name), name
	for name in ("Content-Type", "Accept", "X-Request-Id", "Idempotency-Key"):
		assert not secret_refs.is_sensitive_header(name), name


def test_find_clear_only_literal_secrets_of_webhook_steps():
	raw = {
		"steps": [
			webhook(
				secret="s1gn",
				headers={
					"Authorization": "Bearer abc",
					"X-Api-Key": 12345,
					"X-Token": "{{doc.token}}",
					"Cookie": "",
					"Accept": "application/json",
				},
			),
			webhook("ok", secret="{{secrets.sig}}", headers={"Authorization": "Bearer {{secrets.crm}}"}),
			{"id": "c", "kind": "comment", "payload": {"text": "x", "secret": "not a webhook"}},
		]
	}
	found = secret_refs.find_clear(raw)
	assert [(f.step_id, f.field, f.value) for f in found] == [
		("notify_crm", "payload.secret", "s1gn"),
		("notify_crm", "payload.headers.Authorization", "Bearer abc"),
		("notify_crm", "payload.headers.X-Api-Key", "12345"),
	]
	assert found[1].label == "Step 'notify_crm' → payload.headers.Authorization"


def test_extract_replaces_values_by_references_and_keeps_the_input():
	raw = {"steps": [webhook(secret="s1gn", headers={"Authorization": "Bearer abc", "Accept": "x"})]}
	stored = {}

	def name_for(found):
		name = f"n{len(stored)}"
		stored[name] = found.value
		return name

	result, moved = secret_refs.extract(raw, name_for)
	assert result["steps"][0]["payload"]["secret"] == "{{secrets.n0}}"
	assert result["steps"][0]["payload"]["headers"] == {"Authorization": "{{secrets.n1}}", "Accept": "x"}
	assert stored == {"n0": "s1gn", "n1": "Bearer abc"}
	assert [name for _found, name in moved] == ["n0", "n1"]
	assert raw["steps"][0]["payload"]["secret"] == "s1gn"  # the caller's copy is untouched
	assert "s1gn" not in json.dumps(result) and "Bearer abc" not in json.dumps(result)
	assert secret_refs.extract(result, name_for) == (result, [])  # nothing left to move


def test_extract_with_duplicate_step_ids_moves_every_value():
	raw = {"steps": [webhook(secret="one"), webhook(secret="two")]}
	result, _moved = secret_refs.extract(raw, lambda found: found.value + "_n")
	assert [s["payload"]["secret"] for s in result["steps"]] == ["{{secrets.one_n}}", "{{secrets.two_n}}"]


def test_references_substitute_and_redact():
	value = {"h": "Bearer {{secrets.crm}}", "b": ["{{ secrets.sig }}", "{{doc.name}}"], "n": 3}
	assert secret_refs.references(value) == ["crm", "sig"]
	assert secret_refs.substitute(value, {"crm": "abc", "sig": "xyz"}) == {
		"h": "Bearer abc",
		"b": ["xyz", "{{doc.name}}"],
		"n": 3,
	}
	text = 'POST failed: {"Authorization": "Bearer abc\\"q"} and abc"q'
	assert secret_refs.redact(text, {"crm": 'abc"q'}) == (
		'POST failed: {"Authorization": "Bearer {{secrets.crm}}"} and {{secrets.crm}}'
	)
	assert secret_refs.redact({"e": ["key=abcd"]}, {"k": "abcd"}) == {"e": ["key={{secrets.k}}"]}
	assert secret_refs.redact("a b", {"short": "a"}) == "a b"  # too short to be a credential


def test_reference_fields_name_the_field():
	payload = {"headers": {"Authorization": "Bearer {{secrets.crm}}"}, "body": {"k": ["{{secrets.b}}"]}}
	assert list(secret_refs.reference_fields(payload)) == [
		("payload.headers.Authorization", "crm"),
		("payload.body.k.0", "b"),
	]


def test_slug_makes_valid_names():
	assert secret_refs.slug("CRM Sync / notify-crm: Authorization") == "crm_sync_notify-crm_authorization"
	assert secret_refs.slug("***") == "secret"
	assert all(secret_refs.is_valid_name(secret_refs.slug(text)) for text in ("É", "a" * 500, "_x_"))


def issues_of(raw):
	return [(issue.step_id, issue.field, issue.code, issue.message) for issue in validate(raw)]


def test_secrets_are_a_known_root_in_webhook_payloads():
	raw = {
		"steps": [
			webhook(
				url="https://crm.example.com/?key={{secrets.crm_key}}",
				secret="{{secrets.sig}}",
				headers={"Authorization": "Bearer {{secrets.crm-token}}"},
				body={"token": "{{secrets.crm_key}}"},
			)
		]
	}
	assert validate(raw) == []


def test_secrets_outside_webhook_payloads_are_errors():
	raw = {
		"variables": {"leak": "{{secrets.crm}}"},
		"steps": [
			webhook(),
			{
				"id": "c",
				"kind": "comment",
				"depends_on": ["notify_crm"],
				"payload": {"text": "token {{secrets.crm}}"},
			},
			{
				"id": "d",
				"kind": "wait",
				"depends_on": ["c"],
				"trigger": {"type": "on_date", "date": "{{secrets.when}}"},
			},
		],
	}
	issues = issues_of(raw)
	assert [(step, field, code) for step, field, code, _m in issues] == [
		(None, "variables", "secret_use"),
		("c", "payload", "secret_use"),
		("d", "trigger", "secret_use"),
	]
	assert "secrets can only be used in webhook steps" in issues[1][3]


def test_secret_references_must_name_one_secret():
	raw = {"steps": [webhook(body={"a": "{{secrets}}", "b": "{{secrets.a.b}}", "c": "{{secrets.CRM}}"})]}
	messages = [message for _s, _f, code, message in issues_of(raw) if code == "bad_reference"]
	assert len(messages) == 3
	assert all("must name one secret" in message for message in messages)


@given(st.dictionaries(st.text(max_size=12), st.one_of(st.text(max_size=20), st.integers()), max_size=5))
def test_extract_leaves_no_clear_sensitive_value(headers):
	raw = {"steps": [webhook(secret="x", headers=headers)]}
	result, _moved = secret_refs.extract(raw, lambda found: "n")
	assert secret_refs.find_clear(result) == []
	for name, value in result["steps"][0]["payload"]["headers"].items():
		if secret_refs.is_sensitive_header(name) and secret_refs.is_clear(value):
			raise AssertionError(name)
