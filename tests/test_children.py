"""Child runs, the pure part (engine/children.py): for_each scopes and bodies, their validation,
cycles between flows, and the item scheduler (each item runs exactly once, never more than
`concurrency` at a time, whatever order items end in)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from flow_engine.engine import children
from flow_engine.engine.definition import build
from flow_engine.engine.dry_run import dry_run
from flow_engine.engine.validation import validate


def order_flow(**loop_payload):
	payload = {"items": "{{doc.items}}", "concurrency": 2, **loop_payload}
	return {
		"version": 1,
		"steps": [
			{"id": "start", "kind": "set_variables", "payload": {"variables": {"seen": "yes"}}},
			{"id": "loop", "kind": "for_each", "depends_on": ["start"], "payload": payload},
			{
				"id": "task",
				"kind": "create_doc",
				"parent_id": "loop",
				"branch": "each",
				"payload": {"doctype": "Task", "fields": {"subject": "{{item.item_code}} #{{item_index}}"}},
			},
			{
				"id": "note",
				"kind": "comment",
				"parent_id": "task",
				"payload": {
					"text": "made {{steps.task.result.name}} after {{steps.start.result.variables.seen}}"
				},
			},
			{"id": "after", "kind": "comment", "depends_on": ["loop"], "payload": {"text": "done"}},
		],
	}


def codes(issues):
	return [(issue.step_id, issue.field, issue.code) for issue in issues]


def test_owners_and_bodies():
	raw = order_flow()
	assert children.owners(raw) == {
		"start": None,
		"loop": None,
		"task": "loop",
		"note": "loop",
		"after": None,
	}
	assert children.body(raw, "loop") == ["task", "note"]


def test_top_level_scope_leaves_the_body_out():
	top = children.scoped(order_flow(), None)
	assert [step["id"] for step in top["steps"]] == ["start", "loop", "after"]


def test_body_scope_has_only_the_body_with_its_roots_unparented():
	body = children.scoped(order_flow(), "loop")
	assert [step["id"] for step in body["steps"]] == ["task", "note"]
	task = body["steps"][0]
	assert "parent_id" not in task and "branch" not in task
	assert body["steps"][1]["parent_id"] == "task"
	definition = build(body)
	assert [step.id for step in definition.steps] == ["task", "note"]


def test_nested_for_each_scopes():
	raw = order_flow()
	raw["steps"].insert(
		3,
		{"id": "inner", "kind": "for_each", "parent_id": "task", "payload": {"items": "{{item.parts}}"}},
	)
	raw["steps"].insert(
		4,
		{
			"id": "part",
			"kind": "comment",
			"parent_id": "inner",
			"branch": "each",
			"payload": {"text": "{{item}}"},
		},
	)
	assert children.body(raw, "loop") == ["task", "inner", "note"]
	assert children.body(raw, "inner") == ["part"]
	assert [step["id"] for step in children.scoped(raw, "inner")["steps"]] == ["part"]
	assert not validate(raw)


def test_a_valid_loop_validates():
	assert validate(order_flow()) == []


def test_for_each_without_body_is_refused_naming_it():
	raw = order_flow()
	raw["steps"] = [step for step in raw["steps"] if step["id"] not in ("task", "note")]
	issues = validate(raw)
	assert ("loop", "branch", "empty_loop") in codes(issues)
	assert "for_each 'loop' has no body" in issues[0].message


def test_body_steps_depend_only_on_body_steps():
	raw = order_flow()
	raw["steps"][3]["depends_on"] = ["start"]
	assert ("note", "depends_on", "loop_scope") in codes(validate(raw))


def test_outside_steps_may_not_depend_on_body_steps():
	raw = order_flow()
	raw["steps"][4]["depends_on"] = ["task"]
	issues = [issue for issue in validate(raw) if issue.code == "loop_scope"]
	assert [issue.step_id for issue in issues] == ["after"]
	assert "depend on 'loop'" in issues[0].message


def test_item_outside_a_body_is_refused():
	raw = order_flow()
	raw["steps"][4]["payload"] = {"text": "{{item.item_code}}"}
	assert ("after", "payload", "bad_reference") in codes(validate(raw))


def test_items_shape_and_concurrency_are_checked():
	raw = order_flow(items="doc.items", concurrency=0)
	found = codes(validate(raw))
	assert ("loop", "payload.items", "invalid") in found
	assert ("loop", "payload.concurrency", "invalid") in found
	raw = order_flow(items={"filters": {"status": "Open"}})
	assert ("loop", "payload.items.doctype", "missing_field") in codes(validate(raw))
	assert validate(order_flow(items={"doctype": "Task", "filters": {"status": "Open"}, "limit": 10})) == []


def test_called_flows_skip_templated_names():
	raw = {
		"steps": [
			{"id": "a", "kind": "call_flow", "payload": {"flow": "Billing"}},
			{"id": "b", "kind": "call_flow", "payload": {"flow": "{{input.flow}}"}},
			{"id": "c", "kind": "comment", "payload": {"text": "x"}},
		]
	}
	assert children.called_flows(raw) == [("a", "Billing")]


def test_find_cycle():
	calls = {"A": {"B"}, "B": {"C"}, "C": {"A", "D"}, "D": set()}
	assert children.find_cycle("A", calls) == ["A", "B", "C", "A"]
	assert children.find_cycle("D", calls) is None
	assert children.find_cycle("X", {"X": {"X"}}) == ["X", "X"]
	assert children.find_cycle("A", {"A": {"B"}, "B": {"C"}, "C": {"B"}}) is None  # B↔C does not reach A


def test_dry_run_expands_for_each_for_the_documents_items():
	definition = build(order_flow())
	context = {"doc": {"name": "SO-1", "items": [{"item_code": "BOLT"}, {"item_code": "NUT"}]}}
	import datetime

	report = dry_run(definition, context, datetime.datetime(2026, 1, 1))
	loop = next(entry for entry in report["steps"] if entry["step_id"] == "loop")
	assert loop["items"] == 2
	subjects = [entry["payload"]["fields"]["subject"] for entry in loop["each"] if entry["step_id"] == "task"]
	assert subjects == ["BOLT #0", "NUT #1"]
	assert [entry["step_id"] for entry in report["steps"]] == ["start", "loop", "after"]


def test_dry_run_shows_the_flow_call_flow_would_start():
	raw = {
		"steps": [
			{"id": "c", "kind": "call_flow", "payload": {"flow": "Billing", "input": {"o": "{{doc.name}}"}}}
		]
	}
	report = dry_run(build(raw), {"doc": {"name": "SO-1"}}, __import__("datetime").datetime(2026, 1, 1))
	entry = report["steps"][0]
	assert entry["payload"]["input"] == {"o": "SO-1"}
	assert "Billing" in entry["note"]


# ---------------------------------------------------------------- the item scheduler


@settings(max_examples=300, deadline=None)
@given(
	count=st.integers(0, 30),
	concurrency=st.integers(1, 8),
	policy=st.sampled_from(["stop", "continue"]),
	data=st.data(),
)
def test_for_each_runs_each_item_exactly_once(count, concurrency, policy, data):
	loop = children.new_loop(count, concurrency, policy)
	started: list[int] = []
	open_runs: set[int] = set()
	ended_ok: set[int] = set()
	failed: set[int] = set()

	def start():
		for index in children.to_start(loop):
			children.started(loop, index, f"run-{index}")
			started.append(index)
			open_runs.add(index)
		assert len(open_runs) <= concurrency

	start()
	steps = 0
	while not children.finished(loop):
		steps += 1
		assert steps <= 10 * (count + 1), "the loop always ends"
		assert open_runs, "an unfinished loop always has an item running"
		index = data.draw(st.sampled_from(sorted(open_runs)))  # completion order: arbitrary
		ok = data.draw(st.booleans()) if policy == "continue" else data.draw(st.integers(0, 9)) > 0
		if data.draw(st.booleans()):  # a duplicate notice of an earlier end is ignored
			if ended_ok:
				assert not children.item_ended(loop, next(iter(ended_ok)), True, "again")
		assert children.item_ended(loop, index, ok, {"index": index} if ok else None)
		open_runs.discard(index)
		(ended_ok if ok else failed).add(index)
		start()
	assert len(started) == len(set(started)), "no item starts twice"
	result = children.result_of(loop)
	if policy == "continue" or not failed:
		assert sorted(started) == list(range(count)), "every item runs"
		assert result["count"] == count
		assert result["failed"] == sorted(failed)
		assert result["results"] == [None if i in failed else {"index": i} for i in range(count)]
	else:
		assert len(failed) == 1, "stop: the loop ends at the first failed item"
		assert loop["stopped"] and not children.to_start(loop), "stop: nothing more starts"
