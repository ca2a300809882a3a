import json

import pytest

from flow_engine.engine.definition import compile_definition, load
from flow_engine.engine.errors import DefinitionError
from flow_engine.engine.validation import validate
from tests.factories import cond, flow, step, todo


def codes(definition):
	return [(issue.step_id, issue.field, issue.code) for issue in validate(definition)]


def test_valid_flow_has_no_issues():
	definition = flow(
		todo("s1"),
		cond("s2", depends_on=["s1"]),
		step(
			"s3", "comment", parent_id="s2", branch="yes", payload={"text": "made {{steps.s1.result.name}}"}
		),
		step("s4", "wait", parent_id="s2", branch="no", trigger={"type": "after_delay", "delay_days": 3}),
		step("s5", "set_variables", depends_on=["s3", "s4"], payload={"variables": {"x": "{{doc.name}}"}}),
		step("s6", "comment", depends_on=["s5"], payload={"text": "{{variables.x}}"}),
	)
	assert validate(definition) == []
	compiled = compile_definition(definition)
	assert compiled.step("s4").trigger.delay_seconds == 3 * 86400


def test_malformed_json_names_the_position():
	with pytest.raises(DefinitionError) as error:
		load('{"steps": [}')
	assert "line 1" in str(error.value)
	with pytest.raises(DefinitionError):
		load("[1, 2]")


def test_duplicate_ids():
	assert ("s1", "id", "duplicate_id") in codes(flow(todo("s1"), todo("s1")))


def test_unknown_kind_lists_known_kinds():
	issues = validate(flow(step("s1", "teleport")))
	assert issues[0].code == "unknown_kind" and "create_doc" in issues[0].message


def test_aliases_are_known():
	assert validate(flow(step("s1", "erp_update", payload={"fields": {"status": "Closed"}}))) == []


def test_missing_required_payload_fields_name_the_field():
	issues = validate(flow(step("s1", "create_doc", label="Open a ToDo", payload={"fields": {}})))
	text = [str(issue) for issue in issues]
	assert "Step 's1' (Open a ToDo) → payload.doctype: 'Document type' is required" in text
	assert any("payload.fields" in line for line in text)


def test_notify_requires_subject_unless_template():
	base = {"channel": "email", "recipients": ["a@b.c"], "message": "hi"}
	assert ("s1", "payload.subject", "missing_field") in codes(flow(step("s1", "notify", payload=base)))
	assert codes(flow(step("s1", "notify", payload={**base, "email_template": "Welcome"}))) == []
	assert (
		codes(flow(step("s1", "notify", payload={"channel": "sms", "recipients": ["+1"], "message": "x"})))
		== []
	)
	assert ("s1", "payload.channel", "invalid") in codes(
		flow(step("s1", "notify", payload={**base, "channel": "fax"}))
	)


def test_dangling_references():
	result = codes(flow(step("s1", depends_on=["ghost"]), step("s2", parent_id="nobody")))
	assert ("s1", "depends_on", "dangling_dependency") in result
	assert ("s2", "parent_id", "dangling_parent") in result


def test_branch_without_branching_parent():
	assert ("s2", "branch", "branch_without_parent") in codes(flow(todo("s1"), step("s2", branch="yes")))
	assert ("s2", "branch", "branch_without_parent") in codes(
		flow(todo("s1"), step("s2", parent_id="s1", branch="yes"))
	)
	assert ("s2", "branch", "unreachable") in codes(
		flow(cond("s1"), step("s2", parent_id="s1", branch="maybe"))
	)


def test_cycles_are_reported_once():
	issues = [
		i
		for i in validate(
			flow(step("a", depends_on=["c"]), step("b", depends_on=["a"]), step("c", depends_on=["b"]))
		)
		if i.code == "cycle"
	]
	assert len(issues) == 1 and "cycle" in issues[0].message
	assert any(i.code == "cycle" for i in validate(flow(step("a", depends_on=["a"]))))


def test_unreachable_steps():
	result = codes(
		flow(todo("s1"), step("s2", trigger={"type": "on_prev_complete"}), step("s3", depends_on=["s2"]))
	)
	assert ("s2", "trigger", "unreachable") in result
	assert ("s3", "depends_on", "unreachable") in result


def test_step_triggers():
	result = codes(
		flow(
			step("s1", trigger={"type": "after_delay"}),
			step("s2", trigger={"type": "on_date"}),
			step("s3", trigger={"type": "teleport"}),
			step("s4", trigger={"type": "after_delay", "delay_hours": "soon"}),
			step("s5", depends_on=["s1"], trigger={"type": "on_flow_start"}),
		)
	)
	assert ("s1", "trigger.delay_minutes", "missing_field") in result
	assert ("s2", "trigger.date", "missing_field") in result
	assert ("s3", "trigger.type", "bad_trigger") in result
	assert ("s4", "trigger.delay_hours", "invalid") in result
	assert ("s5", "trigger.type", "bad_trigger") in result


def test_retry_and_timeout():
	result = codes(
		flow(step("s1", retry={"max_attempts": 0}), step("s2", retry={"tries": 3}), step("s3", timeout=-1))
	)
	assert ("s1", "retry.max_attempts", "invalid") in result
	assert ("s2", "retry.tries", "invalid") in result
	assert ("s3", "timeout", "invalid") in result


@pytest.mark.parametrize(
	"timeout", [0, -1, "0", True, False, "soon", "nan", "inf", float("inf"), [5], {"s": 5}]
)
def test_timeout_must_be_a_positive_finite_number_and_the_error_names_the_step(timeout):
	issues = validate(flow(todo("s1"), step("slow", label="Wait a bit", timeout=timeout)))
	assert [(issue.step_id, issue.field) for issue in issues] == [("slow", "timeout")]
	text = str(issues[0])
	assert text.startswith("Step 'slow' (Wait a bit) → timeout: must be a")
	assert repr(timeout) in text


@pytest.mark.parametrize("timeout", [30, 0.5, "45", "2.5", 86400])
def test_positive_timeouts_are_valid_for_every_kind(timeout):
	definition = flow(todo("s1", timeout=timeout), step("s2", depends_on=["s1"], timeout=timeout))
	assert validate(definition) == []
	assert compile_definition(definition).step("s2").timeout == float(timeout)


def test_template_references():
	result = validate(
		flow(
			todo("s1"),
			step("s2", "comment", payload={"text": "{{steps.s3.result.x}} {{variables.nope}} {{foo}}"}),
			step("s3", "comment", depends_on=["s1"], payload={"text": "{{steps.s1.result.name}}"}),
		)
	)
	messages = [issue.message for issue in result]
	assert any("which does not run before this step" in m for m in messages)
	assert any("variable 'nope'" in m for m in messages)
	assert any("unknown 'foo'" in m for m in messages)
	assert all(issue.step_id == "s2" for issue in result)


def test_flow_trigger():
	result = codes(flow(trigger={"doctype": "ToDo", "event": "value_changed"}))
	assert (None, "trigger.field", "invalid") in result
	assert codes(flow(trigger={"event": "after_insert"})) == [(None, "trigger.doctype", "invalid")]
	assert (
		codes(
			flow(
				trigger={
					"doctype": "ToDo",
					"event": "on_update",
					"condition": {"==": [{"var": "status"}, "Open"]},
				}
			)
		)
		== []
	)
	assert codes(
		flow(
			trigger={"doctype": "ToDo", "event": "on_update", "condition": {"field": "status", "op": "like"}}
		)
	)


def test_compile_raises_with_every_issue():
	with pytest.raises(DefinitionError) as error:
		compile_definition(json.dumps(flow(step("s1", "nope"), step("s1"))), flow="My flow")
	assert "Flow 'My flow' is invalid (2 problems)" in str(error.value)


@pytest.mark.parametrize(
	"garbage,expected",
	[
		(None, [(None, "flow_definition", "shape")]),
		(1, [(None, "flow_definition", "shape")]),
		("x", [(None, "flow_definition", "shape")]),
		([], [(None, "flow_definition", "shape")]),
		({"steps": {}}, [(None, "steps", "shape")]),
		(
			{"steps": [None, 1, {"id": 5}]},
			[(None, "steps[0]", "shape"), (None, "steps[1]", "shape"), (None, "steps[2].id", "missing_id")],
		),
		({"steps": [{"id": "a", "payload": []}]}, [("a", "kind", "missing_kind"), ("a", "payload", "shape")]),
		({"steps": [{"id": "a", "kind": "wait", "depends_on": 7}]}, [("a", "depends_on", "shape")]),
		({"variables": [1]}, [(None, "variables", "invalid")]),
		({"trigger": "x"}, [(None, "trigger", "invalid")]),
	],
)
def test_garbage_never_crashes(garbage, expected):
	"""Each malformed input is reported where it is wrong, by the checks themselves.

	`validate` turns a crash of its own into one 'internal' issue, so "a list came back" proved
	nothing: the located issues show that no check fell over on the way.
	"""
	assert codes(garbage) == expected
