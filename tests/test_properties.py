"""Property-based tests on random definitions: validation never crashes; the planner never runs a
step twice, never runs a step past a failed dependency, and always terminates."""

import datetime
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow_engine.engine.definition import build
from flow_engine.engine.planner import BROKEN, next_wave, outcome
from flow_engine.engine.validation import validate

NOW = datetime.datetime(2026, 1, 1)
KINDS = ["wait", "condition", "set_variables", "comment", "nope", None]
TRIGGERS = ["on_flow_start", "on_prev_complete", "after_delay", "manual", "on_webhook", None, "bogus"]


@st.composite
def random_definition(draw):
	count = draw(st.integers(0, 10))
	ids = [f"s{i}" for i in range(count)] + ["ghost"]
	steps = []
	for i in range(count):
		step = {"id": draw(st.sampled_from([f"s{i}", f"s{i}", f"s{max(i - 1, 0)}", "", None]))}
		kind = draw(st.sampled_from(KINDS))
		if kind:
			step["kind"] = kind
		if draw(st.booleans()):
			step["depends_on"] = draw(st.lists(st.sampled_from(ids), max_size=3))
		if draw(st.booleans()):
			step["parent_id"] = draw(st.sampled_from(ids))
			if draw(st.booleans()):
				step["branch"] = draw(st.sampled_from(["yes", "no", "maybe"]))
		trigger = draw(st.sampled_from(TRIGGERS))
		if trigger:
			step["trigger"] = {"type": trigger, "delay_minutes": draw(st.sampled_from([None, 5, -1, "x"]))}
		step["payload"] = draw(
			st.sampled_from(
				[
					None,
					{},
					[],
					{"text": "{{doc.name}}"},
					{"condition": {"field": "doc.x", "op": "==", "value": 1}},
					{"variables": {"a": "{{steps.s0.result}}"}},
					{"condition": {"all": []}},
				]
			)
		)
		steps.append(step)
	return {"version": 1, "steps": steps}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(random_definition())
def test_validation_never_crashes(definition):
	issues = validate(definition)
	assert all(issue.code != "internal" for issue in issues), issues


@st.composite
def valid_dag(draw):
	"""A valid definition: steps only depend on earlier ones; conditions branch."""
	count = draw(st.integers(1, 12))
	steps = []
	for i in range(count):
		step = {"id": f"s{i}", "kind": draw(st.sampled_from(["wait", "condition"])), "payload": {}}
		if step["kind"] == "condition":
			step["payload"] = {"condition": {"field": "doc.x", "op": "==", "value": 1}}
		earlier = [f"s{j}" for j in range(i)]
		if earlier and draw(st.booleans()):
			step["depends_on"] = sorted(set(draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=3))))
		conditions = [s["id"] for s in steps if s["kind"] == "condition"]
		if conditions and draw(st.booleans()):
			step["parent_id"] = draw(st.sampled_from(conditions))
			step["branch"] = draw(st.sampled_from(["yes", "no", None]))
			if step["branch"] is None:
				del step["branch"]
		step["trigger"] = {"type": draw(st.sampled_from(["on_prev_complete", "after_delay", "manual"]))}
		if step["trigger"]["type"] == "after_delay":
			step["trigger"]["delay_minutes"] = 5
		if (
			not step.get("depends_on")
			and not step.get("parent_id")
			and step["trigger"]["type"] == "on_prev_complete"
		):
			step["trigger"]["type"] = "on_flow_start"
		steps.append(step)
	return {"version": 1, "steps": steps}, draw(st.integers(0, 2**32))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(valid_dag())
def test_planner_runs_each_step_at_most_once_and_never_past_failure(case):
	raw, seed = case
	assert validate(raw) == [], validate(raw)
	definition = build(raw)
	rng = random.Random(seed)
	states: dict = {}
	executed: list[str] = []
	for _ in range(len(definition.steps) * 3 + 3):
		wave = next_wave(definition, states, NOW)
		if not wave:
			break
		for decision in wave:
			step = definition.step(decision.step_id)
			assert decision.step_id not in executed, "a step was planned twice"
			if decision.action == "skip":
				states[step.id] = {"status": "skipped"}
				continue
			for dep in (*step.depends_on, *([step.parent_id] if step.parent_id else [])):
				assert states.get(dep, {}).get("status") not in BROKEN
				assert states.get(dep, {}).get("status") in ("completed", "skipped")
			executed.append(step.id)
			if rng.random() < 0.1:
				states[step.id] = {"status": "failed"}
			else:
				result = {"branch": rng.choice(["yes", "no"])} if step.kind == "condition" else {}
				states[step.id] = {"status": "completed", "result": result}
	else:
		raise AssertionError("the planner did not terminate")
	final = outcome(definition, states, NOW).status
	if any(state["status"] == "failed" for state in states.values()):
		assert final == "failed"
	else:
		assert final == "completed"
		assert len(states) == len(definition.steps)
