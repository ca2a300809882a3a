import datetime

from flow_engine.engine.definition import compile_definition
from flow_engine.engine.dry_run import dry_run
from tests.factories import cond, flow, step, todo

NOW = datetime.datetime(2026, 5, 1, 9, 0)


def test_dry_run_renders_and_branches():
	definition = compile_definition(
		flow(
			step("v", "set_variables", payload={"variables": {"who": "{{doc.owner}}"}}),
			cond("c", field="doc.priority", value="High", depends_on=["v"]),
			step(
				"hi",
				"create_doc",
				parent_id="c",
				branch="yes",
				payload={
					"doctype": "ToDo",
					"fields": {"description": "Urgent {{doc.name}} for {{variables.who}}"},
				},
			),
			step("lo", "comment", parent_id="c", branch="no", payload={"text": "later"}),
			step("later", "wait", depends_on=["hi", "lo"], trigger={"type": "after_delay", "delay_days": 3}),
		)
	)
	report = dry_run(definition, {"doc": {"name": "ISS-1", "priority": "High", "owner": "a@b.c"}}, NOW)
	by_id = {entry["step_id"]: entry for entry in report["steps"]}
	assert [entry["step_id"] for entry in report["steps"]] == ["v", "c", "hi", "lo", "later"]
	assert by_id["c"]["branch"] == "yes"
	assert by_id["hi"]["payload"]["fields"]["description"] == "Urgent ISS-1 for a@b.c"
	assert by_id["lo"]["action"] == "skip"
	assert "2026-05-04" in by_id["later"]["note"]
	assert report["never_reached"] == []


def test_dry_run_of_parked_step():
	definition = compile_definition(flow(todo("a"), step("m", depends_on=["a"], trigger={"type": "manual"})))
	report = dry_run(definition, {"doc": {}}, NOW)
	assert report["steps"][1]["note"] == "waits for someone to complete it"
