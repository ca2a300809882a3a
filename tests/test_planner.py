import datetime

from flow_engine.engine.definition import compile_definition
from flow_engine.engine.planner import next_wave, outcome
from tests.factories import cond, flow, step, todo

NOW = datetime.datetime(2026, 5, 1, 9, 0)


def actions(definition, states):
	return [(d.step_id, d.action) for d in next_wave(definition, states, NOW)]


def test_first_wave_and_sequencing():
	definition = compile_definition(flow(todo("a"), todo("b"), todo("c", depends_on=["a", "b"])))
	assert actions(definition, {}) == [("a", "execute"), ("b", "execute")]
	assert actions(definition, {"a": {"status": "completed"}}) == [("b", "execute")]
	assert actions(definition, {"a": {"status": "completed"}, "b": {"status": "completed"}}) == [
		("c", "execute")
	]


def test_branches_skip_the_branch_not_taken():
	definition = compile_definition(
		flow(
			cond("c"),
			step("y", "comment", parent_id="c", branch="yes", payload={"text": "y"}),
			step("y2", "comment", parent_id="c", branch="yes", depends_on=["y"], payload={"text": "y"}),
			step("n", "comment", parent_id="c", branch="no", payload={"text": "n"}),
			step("join", "comment", depends_on=["y2", "n"], payload={"text": "j"}),
		)
	)
	states = {"c": {"status": "completed", "result": {"branch": "yes"}}}
	assert actions(definition, states) == [("y", "execute"), ("n", "skip")]
	states.update(y={"status": "completed"}, n={"status": "skipped"})
	assert actions(definition, states) == [("y2", "execute")]
	states["y2"] = {"status": "completed"}
	assert actions(definition, states) == [("join", "execute")]


def test_skip_propagates_inside_a_skipped_parent():
	definition = compile_definition(
		flow(
			cond("c"),
			cond("inner", parent_id="c", branch="no"),
			step("deep", "comment", parent_id="inner", branch="yes", payload={"text": "x"}),
		)
	)
	states = {"c": {"status": "completed", "result": {"branch": "yes"}}, "inner": {"status": "skipped"}}
	assert actions(definition, states) == [("deep", "skip")]


def test_delays_dates_and_parking():
	definition = compile_definition(
		flow(
			step("d", trigger={"type": "after_delay", "delay_minutes": 90}),
			step("o", trigger={"type": "on_date", "date": "{{doc.date}}"}),
			step("m", trigger={"type": "manual"}),
			step("w", trigger={"type": "on_webhook"}),
		)
	)
	wave = next_wave(definition, {}, NOW)
	assert [(d.step_id, d.action) for d in wave] == [
		("d", "schedule"),
		("o", "schedule_on_date"),
		("m", "park"),
		("w", "park"),
	]
	assert wave[0].due == NOW + datetime.timedelta(minutes=90)


def test_failed_dependency_blocks_and_fails_the_run():
	definition = compile_definition(flow(todo("a"), todo("b", depends_on=["a"])))
	states = {"a": {"status": "failed"}}
	assert actions(definition, states) == []
	assert outcome(definition, states).status == "failed"


def test_outcomes():
	definition = compile_definition(flow(todo("a"), step("b", depends_on=["a"], trigger={"type": "manual"})))
	assert outcome(definition, {}).status == "running"
	assert outcome(definition, {"a": {"status": "completed"}, "b": {"status": "waiting"}}).status == "waiting"
	assert (
		outcome(definition, {"a": {"status": "completed"}, "b": {"status": "completed"}}).status
		== "completed"
	)
	assert outcome(compile_definition(flow()), {}).status == "completed"
