"""Comparing flow versions and checking which runs may move to another version (core tier)."""

from hypothesis import given
from hypothesis import strategies as st

from flow_engine.engine import versions


def flow(*steps, trigger=None, variables=None):
	return {
		"version": 1,
		"trigger": trigger or {"doctype": "ToDo", "event": "after_insert"},
		"variables": variables or {},
		"steps": list(steps),
	}


def step(step_id, kind="set_value", **payload):
	return {"id": step_id, "kind": kind, "label": step_id.title(), "payload": payload}


def test_added_removed_and_changed_steps_field_by_field():
	before = flow(step("a", field="status", value="Open"), step("b"))
	after = flow(step("a", field="status", value="Closed"), step("c", kind="notify"))
	changes = versions.diff(before, after)
	assert changes["added"] == [{"id": "c", "label": "C"}]
	assert changes["removed"] == [{"id": "b", "label": "B"}]
	assert changes["changed"] == [
		{"id": "a", "label": "A", "fields": [{"field": "payload.value", "before": "Open", "after": "Closed"}]}
	]
	assert not versions.is_empty(changes)
	text = versions.summary(changes)
	assert "+ step c (C) added" in text
	assert "- step b (B) removed" in text
	assert "~ step a: payload.value Open → Closed" in text


def test_trigger_and_variables_and_keys_set_or_removed():
	before = flow(step("a", field="x"), variables={"limit": 5})
	after = flow(
		step("a", value=1), trigger={"doctype": "ToDo", "event": "on_update"}, variables={"limit": 10}
	)
	changes = versions.diff(before, after)
	fields = changes["changed"][0]["fields"]
	assert {"field": "payload.field", "before": "x"} in fields
	assert {"field": "payload.value", "after": 1} in fields
	assert changes["trigger"] == [{"field": "event", "before": "after_insert", "after": "on_update"}]
	assert changes["variables"] == [{"field": "limit", "before": 5, "after": 10}]
	assert "~ trigger: event after_insert → on_update" in versions.summary(changes)
	assert "payload.field removed (was x)" in versions.summary(changes)


def test_same_definition_in_another_key_order_is_no_change():
	a = flow(step("a", field="status", value="Open"))
	b = {
		"steps": [
			{"payload": {"value": "Open", "field": "status"}, "label": "A", "kind": "set_value", "id": "a"}
		]
	}
	b.update(trigger=a["trigger"], variables={}, version=1)
	assert versions.is_empty(versions.diff(a, b))
	assert versions.summary(versions.diff(a, b)) == "no changes"


def test_long_values_are_shortened_in_the_summary():
	changes = versions.diff(flow(step("a", body="x")), flow(step("a", body="y" * 500)))
	line = versions.summary(changes)
	assert len(line) < 200 and line.endswith("…")


def test_a_run_moves_only_when_every_step_it_began_still_exists_as_the_same_kind():
	source = flow(step("a"), step("b", kind="notify"), step("c"))
	target = flow(step("a"), step("b", kind="webhook"), step("d"))
	assert (
		versions.migration_problems(
			{"a": {"status": "completed"}, "c": {"status": "pending"}}, source, target
		)
		== []
	)
	problems = versions.migration_problems(
		{"a": {"status": "completed"}, "b": {"status": "waiting"}, "c": {"status": "scheduled"}},
		source,
		target,
	)
	assert problems == [
		"step 'b' (waiting) is a notify in the run's version and a webhook in the new one",
		"step 'c' (scheduled) does not exist in the new version",
	]


steps_strategy = st.lists(
	st.builds(
		step,
		st.sampled_from(["a", "b", "c", "d", "e"]),
		kind=st.sampled_from(["set_value", "notify", "webhook"]),
		value=st.integers(0, 3),
	),
	unique_by=lambda s: s["id"],
	max_size=5,
)


@given(steps_strategy, steps_strategy)
def test_diff_reports_exactly_the_steps_added_removed_and_changed(before, after):
	changes = versions.diff(flow(*before), flow(*after))
	old, new = {s["id"]: s for s in before}, {s["id"]: s for s in after}
	assert {s["id"] for s in changes["added"]} == set(new) - set(old)
	assert {s["id"] for s in changes["removed"]} == set(old) - set(new)
	assert {s["id"] for s in changes["changed"]} == {i for i in set(old) & set(new) if old[i] != new[i]}
	assert versions.is_empty(versions.diff(flow(*after), flow(*after)))
	# a run whose begun steps all survive unchanged in kind can move
	states = {s["id"]: {"status": "completed"} for s in before}
	problems = versions.migration_problems(states, flow(*before), flow(*after))
	movable = all(i in new and new[i]["kind"] == old[i]["kind"] for i in old)
	assert (problems == []) == movable
