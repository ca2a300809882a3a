"""Gateways (#14): joins (all / any / n), switch, inclusive and on_error — validation, planner, dry run,
and hypothesis properties (a join fires exactly once whatever order its inputs complete in)."""

import datetime
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow_engine.engine import catalog
from flow_engine.engine.definition import build, compile_definition
from flow_engine.engine.dry_run import dry_run
from flow_engine.engine.planner import BROKEN, next_wave, outcome, readiness
from flow_engine.engine.validation import validate
from tests.factories import cond, flow, step, todo

NOW = datetime.datetime(2026, 5, 1, 9, 0)


def actions(definition, states):
	return [(d.step_id, d.action) for d in next_wave(definition, states, NOW)]


def issues_of(definition):
	return [(issue.step_id, issue.field, issue.message) for issue in validate(definition)]


def fields_of(definition, step_id):
	return [field for sid, field, _message in issues_of(definition) if sid == step_id]


def amount(op, value):
	return {"field": "doc.amount", "op": op, "value": value}


def switch(step_id, **extra):
	cases = [{"name": "big", "condition": amount(">", 1000)}, {"name": "mid", "condition": amount(">", 100)}]
	return step(step_id, "switch", payload={"cases": cases}, **extra)


def inclusive(step_id, **extra):
	branches = [
		{"name": "email", "condition": {"field": "doc.email", "op": "not_empty"}},
		{"name": "sms", "condition": {"field": "doc.phone", "op": "not_empty"}},
	]
	return step(step_id, "inclusive", payload={"branches": branches}, **extra)


def comment(step_id, **extra):
	return step(step_id, "comment", payload={"text": step_id}, **extra)


DONE = {"status": "completed", "result": {}}


# ---------------------------------------------------------------- branches_for


def test_branches_for_static_dynamic_and_error():
	assert catalog.branches_for({"kind": "condition"}) == ("yes", "no")
	assert catalog.branches_for(switch("s")) == ("big", "mid", "default")
	assert catalog.branches_for(
		{**switch("s"), "payload": {**switch("s")["payload"], "default": "other"}}
	) == (
		"big",
		"mid",
		"other",
	)
	assert catalog.branches_for(inclusive("i")) == ("email", "sms")
	assert catalog.branches_for(todo("t")) == ()
	assert catalog.branches_for(todo("t", on_error="branch")) == ("error",)
	assert catalog.branches_for(cond("c", on_error="branch")) == ("yes", "no", "error")
	assert catalog.branches_for({"kind": "switch", "payload": {"cases": "nonsense"}}) == ("default",)
	assert catalog.branches_for(None) == ()
	spec = catalog.DEFAULT_CATALOG.get("switch")
	assert spec.pure and spec.as_dict()["dynamic_branches"] is True


# ---------------------------------------------------------------- validation


def test_valid_gateway_flow_has_no_issues():
	definition = flow(
		switch("s", on_error="branch"),
		comment("big", parent_id="s", branch="big"),
		comment("mid", parent_id="s", branch="mid"),
		comment("other", parent_id="s", branch="default"),
		comment("oops", parent_id="s", branch="error"),
		inclusive("i", depends_on=["s"]),
		comment("mail", parent_id="i", branch="email"),
		comment("text", parent_id="i", branch="sms"),
		comment("any", depends_on=["mail", "text"], join="any"),
		comment("two", depends_on=["big", "mid", "other"], join=2),
		comment("two_text", depends_on=["big", "mid"], join="2"),
		comment("one", depends_on=["big"], join="any"),  # a join on a single input is accepted
		todo("t", depends_on=["one"], on_error="continue"),
	)
	assert validate(definition) == []
	compiled = compile_definition(definition)
	assert compiled.step("any").join == "any"
	assert compiled.step("two").join == 2 and compiled.step("two_text").join == 2
	assert compiled.step("t").on_error == "continue" and compiled.step("mail").join == "all"
	assert compiled.step("s").on_error == "branch" and compiled.step("mail").on_error == "fail"


def test_join_forms_are_checked_naming_step_and_field():
	base = [todo("a"), todo("b")]
	for bad in ("some", True, 1.5, [], {"n": 2}, "-1"):
		found = issues_of(flow(*base, comment("j", depends_on=["a", "b"], join=bad)))
		assert [(sid, field) for sid, field, _ in found] == [("j", "join")], (bad, found)
		assert "must be 'all', 'any' or a whole number" in found[0][2]
	found = issues_of(flow(*base, comment("j", depends_on=["a", "b"], join=0)))
	assert found == [("j", "join", "must be at least 1 (got 0): the number of inputs to wait for")]
	found = issues_of(flow(*base, comment("j", depends_on=["a", "b"], join=3)))
	assert [(sid, field) for sid, field, _ in found] == [("j", "join")]
	assert "join 3 can never fire: the step has only 2 input(s) ('a', 'b')" in found[0][2]
	# the parent counts as an input
	assert issues_of(flow(cond("c"), todo("a"), comment("j", parent_id="c", depends_on=["a"], join=2))) == []
	found = issues_of(flow(comment("root", join="any")))
	assert [(sid, field) for sid, field, _ in found] == [("root", "join")]


def test_on_error_values():
	found = issues_of(flow(todo("a", on_error="ignore")))
	assert [(sid, field) for sid, field, _ in found] == [("a", "on_error")]
	assert "must be one of: fail, continue, branch" in found[0][2]
	for value in ("fail", "continue", "branch", None):
		assert validate(flow(todo("a", on_error=value))) == []


def test_switch_and_inclusive_payload_problems_name_the_field():
	empty = issues_of(flow(step("s", "switch", payload={"cases": []})))
	assert [(sid, field) for sid, field, _ in empty] == [("s", "payload.cases")]
	cases = [
		{"name": "big", "condition": amount(">", 1)},
		{"name": "big", "condition": amount(">", 2)},
		{"condition": amount(">", 3)},
		{"name": "x"},
		{"name": "error", "condition": amount(">", 4)},
		{"name": "y", "condition": {"field": "doc.a", "op": "~~"}},
	]
	found = issues_of(flow(step("s", "switch", payload={"cases": cases})))
	by_field = {field: message for _sid, field, message in found}
	assert "already the name of case #1" in by_field["payload.cases[1].name"]
	assert "needs a name" in by_field["payload.cases[2].name"]
	assert "is required" in by_field["payload.cases[3].condition"]
	assert "reserved for the on_error branch" in by_field["payload.cases[4].name"]
	assert any(field.startswith("payload.cases[5].condition") for field in by_field)
	clash = issues_of(
		flow(
			step(
				"s", "switch", payload={"cases": [{"name": "a", "condition": amount(">", 1)}], "default": "a"}
			)
		)
	)
	assert [(sid, field) for sid, field, _ in clash] == [("s", "payload.default")]
	bad = issues_of(flow(step("i", "inclusive", payload={"branches": "email"})))
	assert [(sid, field) for sid, field, _ in bad] == [("i", "payload.branches")]
	dup = issues_of(
		flow(
			step(
				"i",
				"inclusive",
				payload={"branches": [{"name": "a", "condition": amount(">", 1)}] * 2},
			)
		)
	)
	assert [(sid, field) for sid, field, _ in dup] == [("i", "payload.branches[1].name")]


def test_branch_must_be_one_of_the_parents_branches():
	found = issues_of(flow(switch("s"), comment("x", parent_id="s", branch="huge")))
	assert found == [
		(
			"x",
			"branch",
			"'huge' is not a branch of 's' (it has: big, mid, default); this step could never run",
		)
	]
	found = issues_of(flow(inclusive("i"), comment("x", parent_id="i", branch="default")))
	assert "(it has: email, sms)" in found[0][2]
	found = issues_of(flow(cond("c"), comment("x", parent_id="c", branch="error")))
	assert "set on_error to 'branch' on 'c'" in found[0][2]
	found = issues_of(flow(todo("t"), comment("x", parent_id="t", branch="error")))
	assert found[0][:2] == ("x", "branch") and "does not branch" in found[0][2]
	assert "set on_error to 'branch' on 't'" in found[0][2]
	assert validate(flow(todo("t", on_error="branch"), comment("x", parent_id="t", branch="error"))) == []
	# switch branches without a parent
	found = issues_of(flow(switch("s"), comment("x", branch="big", depends_on=["s"])))
	assert [(sid, field) for sid, field, _ in found] == [("x", "branch")]
	assert "needs a parent_id" in found[0][2]


# ---------------------------------------------------------------- planner


def test_switch_and_inclusive_children_are_taken_by_result():
	definition = compile_definition(
		flow(
			switch("s"),
			comment("big", parent_id="s", branch="big"),
			comment("other", parent_id="s", branch="default"),
			inclusive("i"),
			comment("mail", parent_id="i", branch="email"),
			comment("text", parent_id="i", branch="sms"),
		)
	)
	states = {
		"s": {"status": "completed", "result": {"branch": "default"}},
		"i": {"status": "completed", "result": {"branches": ["email", "sms"]}},
	}
	assert actions(definition, states) == [
		("big", "skip"),
		("other", "execute"),
		("mail", "execute"),
		("text", "execute"),
	]
	states["i"] = {"status": "completed", "result": {"branches": []}}
	wave = {d.step_id: d for d in next_wave(definition, states, NOW)}
	assert wave["mail"].action == "skip" and "(took none)" in wave["mail"].reason


def test_join_all_any_and_n():
	definition = compile_definition(
		flow(
			todo("a"),
			todo("b"),
			todo("c"),
			comment("all", depends_on=["a", "b", "c"]),
			comment("any", depends_on=["a", "b", "c"], join="any"),
			comment("two", depends_on=["a", "b", "c"], join=2),
		)
	)
	states = {"a": {"status": "running"}, "b": {"status": "running"}, "c": {"status": "running"}}
	assert actions(definition, states) == []
	states["b"] = DONE
	assert actions(definition, states) == [("any", "execute")]
	states["any"] = {"status": "running"}
	assert actions(definition, states) == []  # fired once: never planned again
	states["c"] = DONE
	assert actions(definition, states) == [("two", "execute")]
	states["two"] = {"status": "running"}
	states["a"] = DONE
	assert actions(definition, states) == [("all", "execute")]


def test_join_skipped_inputs_do_not_count_and_an_unreachable_join_is_skipped():
	definition = compile_definition(
		flow(
			cond("c"),
			comment("y", parent_id="c", branch="yes"),
			comment("n", parent_id="c", branch="no"),
			todo("t"),
			comment("any", depends_on=["y", "n"], join="any"),
			comment("two", depends_on=["y", "n", "t"], join=2),
			comment("all", depends_on=["y", "n"]),
		)
	)
	states = {
		"c": {"status": "completed", "result": {"branch": "yes"}},
		"y": {"status": "skipped"},
		"n": {"status": "skipped"},
		"t": {"status": "running"},
	}
	wave = {d.step_id: d for d in next_wave(definition, states, NOW)}
	assert wave["any"].action == "skip"
	assert wave["any"].reason == "join (any) can no longer fire: 'y' was skipped; 'n' was skipped"
	assert wave["two"].action == "skip" and "2 of 3" in wave["two"].reason
	assert wave["all"].action == "execute"  # join all: skipped dependencies count as done (re-join)
	states["y"] = DONE
	states["n"] = {"status": "skipped"}
	assert readiness(definition, definition.step("two"), states) == ("wait", "")
	states["t"] = {"status": "failed"}
	verdict, reason = readiness(definition, definition.step("two"), states)
	assert verdict == "skip" and "'t' failed" in reason  # skipped, not blocked
	assert readiness(definition, definition.step("any"), states)[0] == "ready"


def test_join_counts_the_parent_on_its_branch():
	definition = compile_definition(
		flow(cond("c"), todo("a"), comment("j", parent_id="c", branch="yes", depends_on=["a"], join="any"))
	)
	states = {"c": {"status": "completed", "result": {"branch": "no"}}, "a": {"status": "running"}}
	assert actions(definition, states) == []
	states["a"] = DONE
	assert actions(definition, states) == [("j", "execute")]
	states = {"c": {"status": "completed", "result": {"branch": "yes"}}, "a": {"status": "running"}}
	assert actions(definition, states) == [("j", "execute")]


def test_error_branch_runs_error_children_and_skips_the_other_successors():
	definition = compile_definition(
		flow(
			todo("t", on_error="branch"),
			comment("oops", parent_id="t", branch="error"),
			comment("child", parent_id="t"),
			comment("after", depends_on=["t"]),
			comment("either", depends_on=["t", "oops"], join="any"),
		)
	)
	states = {"t": {"status": "completed", "result": {"branch": "error", "error": "boom"}}}
	wave = {d.step_id: d for d in next_wave(definition, states, NOW)}
	assert wave["oops"].action == "execute"
	assert wave["child"].action == "skip" and "took its error branch" in wave["child"].reason
	assert wave["after"].action == "skip" and "took its error branch" in wave["after"].reason
	assert "either" not in wave
	states.update(oops=DONE, child={"status": "skipped"}, after={"status": "skipped"})
	assert actions(definition, states) == [("either", "execute")]
	states["either"] = DONE
	assert outcome(definition, states).status == "completed"
	# succeeded: the error branch is skipped, the others run
	states = {"t": {"status": "completed", "result": {"name": "TODO-1"}}}
	assert actions(definition, states) == [
		("oops", "skip"),
		("child", "execute"),
		("after", "execute"),
		("either", "execute"),  # 't' itself completed: one input is enough
	]


def test_on_error_continue_dependents_run():
	definition = compile_definition(flow(todo("t", on_error="continue"), comment("after", depends_on=["t"])))
	states = {"t": {"status": "completed", "result": {"error": "boom", "failed": True}}}
	assert actions(definition, states) == [("after", "execute")]


# ---------------------------------------------------------------- dry run


def test_dry_run_shows_switch_inclusive_and_join_waves():
	definition = compile_definition(
		flow(
			switch("s"),
			comment("big", parent_id="s", branch="big"),
			comment("mid", parent_id="s", branch="mid"),
			inclusive("i"),
			comment("mail", parent_id="i", branch="email"),
			comment("text", parent_id="i", branch="sms"),
			step("slow", "wait", depends_on=["mail"], trigger={"type": "after_delay", "delay_hours": 1}),
			comment("first", depends_on=["slow", "mail"], join="any"),
			comment("both", depends_on=["slow", "mail"]),
		)
	)
	report = dry_run(definition, {"doc": {"amount": 500, "email": "a@b.c", "phone": ""}}, NOW)
	by_id = {entry["step_id"]: entry for entry in report["steps"]}
	assert by_id["s"]["branch"] == "mid"
	assert by_id["big"]["action"] == "skip" and by_id["mid"]["action"] == "run"
	assert by_id["i"]["branches"] == ["email"]
	assert by_id["text"]["action"] == "skip" and by_id["mail"]["action"] == "run"
	assert by_id["first"]["join"] == {"mode": "any", "inputs": ["slow", "mail"], "completed": ["mail"]}
	assert by_id["first"]["wave"] == 3 and "fires in wave 3" in by_id["first"]["note"]
	assert by_id["both"]["wave"] == 4 and by_id["both"]["join"]["completed"] == ["slow", "mail"]
	assert report["never_reached"] == []


# ---------------------------------------------------------------- properties


@st.composite
def join_case(draw):
	"""A join step over k inputs with a mode, and for each input an end (completed / skipped / failed)
	in a random completion order, delivered in random batches (completions arriving together)."""
	count = draw(st.integers(1, 6))
	mode = draw(st.sampled_from(["all", "any", *range(1, count + 1)]))
	ends = draw(
		st.lists(
			st.sampled_from(["completed", "completed", "skipped", "failed"]), min_size=count, max_size=count
		)
	)
	order = draw(st.permutations(list(range(count))))
	cuts = sorted(draw(st.sets(st.integers(1, count), max_size=count)))
	return count, mode, ends, order, cuts


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(join_case())
def test_a_join_fires_exactly_once_whatever_order_its_inputs_complete_in(case):
	count, mode, ends, order, cuts = case
	inputs = [f"in{i}" for i in range(count)]
	raw = flow(
		*[step(i, "wait", trigger={"type": "manual"}) for i in inputs],
		comment("j", depends_on=inputs, join=mode),
	)
	assert validate(raw) == []
	definition = build(raw)
	states = {i: {"status": "waiting"} for i in inputs}
	need = {"all": count, "any": 1}.get(mode, mode)
	decided = []
	batches, start = [], 0
	for cut in [*cuts, count]:
		batches.append(order[start:cut])
		start = cut
	completed = 0
	for batch in batches:
		for index in batch:  # several completions land before the planner looks again
			states[inputs[index]] = {"status": ends[index], "result": {}}
			completed += ends[index] == "completed"
		for decision in next_wave(definition, states, NOW):
			assert decision.step_id == "j"
			decided.append((decision.action, completed))
			states["j"] = {"status": "completed" if decision.action != "skip" else "skipped"}
	assert len(decided) <= 1, decided
	broken = any(end == "failed" for end in ends)
	if mode == "all":
		if broken:
			assert decided == [] and outcome(definition, states).status == "failed"
		else:
			assert decided == [("execute", completed)]  # fires once all are done (skips count as done)
		return
	assert len(decided) == 1, decided  # counted joins always end: they fire or are skipped
	action, when = decided[0]
	if completed >= need:
		assert action == "execute"
		assert when >= need
	else:
		assert action == "skip"


@st.composite
def gateway_dag(draw):
	"""A valid definition of waits, conditions, switches and inclusive gateways with joins and on_error."""
	count = draw(st.integers(1, 10))
	steps = []
	for i in range(count):
		kind = draw(st.sampled_from(["wait", "comment", "condition", "switch", "inclusive"]))
		item = {"id": f"s{i}", "kind": kind, "payload": {}}
		if kind == "condition":
			item["payload"] = {"condition": amount("==", 1)}
		elif kind == "switch":
			item["payload"] = {
				"cases": [
					{"name": "a", "condition": amount("==", 1)},
					{"name": "b", "condition": amount("==", 2)},
				]
			}
		elif kind == "inclusive":
			item["payload"] = {
				"branches": [
					{"name": "a", "condition": amount("==", 1)},
					{"name": "b", "condition": amount("==", 2)},
				]
			}
		elif kind == "comment":
			item["payload"] = {"text": "x"}
		item["on_error"] = draw(st.sampled_from(["fail", "continue", "branch"]))
		earlier = [f"s{j}" for j in range(i)]
		if earlier and draw(st.booleans()):
			item["depends_on"] = sorted(set(draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=3))))
		if earlier and draw(st.booleans()):
			parent = draw(st.sampled_from(earlier))
			item["parent_id"] = parent
			branches = catalog.branches_for(steps[int(parent[1:])])
			choice = draw(st.sampled_from([None, *branches]))
			if choice is not None:
				item["branch"] = choice
		inputs = len(
			set(item.get("depends_on", [])) | ({item["parent_id"]} if item.get("parent_id") else set())
		)
		if inputs:
			item["join"] = draw(st.sampled_from(["all", "any", *range(1, inputs + 1)]))
		steps.append(item)
	return flow(*steps), draw(st.integers(0, 2**32))


def _result(step, rng):
	if step.kind == "condition":
		return {"branch": rng.choice(["yes", "no"])}
	if step.kind == "switch":
		return {"branch": rng.choice(["a", "b", "default"])}
	if step.kind == "inclusive":
		return {"branches": [name for name in ("a", "b") if rng.random() < 0.5]}
	return {}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(gateway_dag())
def test_planner_with_gateways_decides_each_step_once_and_terminates(case):
	raw, seed = case
	assert validate(raw) == [], validate(raw)
	definition = build(raw)
	rng = random.Random(seed)
	states: dict = {}
	seen: list[str] = []
	for _ in range(len(definition.steps) * 3 + 3):
		wave = next_wave(definition, states, NOW)
		if not wave:
			break
		for decision in wave:
			step_ = definition.step(decision.step_id)
			assert decision.step_id not in seen, "a step was planned twice"
			seen.append(decision.step_id)
			if decision.action == "skip":
				states[step_.id] = {"status": "skipped"}
				continue
			finished = [i for i in step_.inputs if states.get(i, {}).get("status") == "completed"]
			if step_.join == "all":
				assert all(states.get(i, {}).get("status") in ("completed", "skipped") for i in step_.inputs)
			else:
				assert len(finished) >= (1 if step_.join == "any" else step_.join)
			if rng.random() < 0.15:  # the step fails for good: its on_error decides
				if step_.on_error == "fail":
					states[step_.id] = {"status": "failed"}
				elif step_.on_error == "continue":
					states[step_.id] = {"status": "completed", "result": {"error": "x", "failed": True}}
				else:
					states[step_.id] = {"status": "completed", "result": {"branch": "error", "error": "x"}}
			else:
				states[step_.id] = {"status": "completed", "result": _result(step_, rng)}
	else:
		raise AssertionError("the planner did not terminate")
	final = outcome(definition, states, NOW).status
	if any(state["status"] in BROKEN for state in states.values()):
		assert final == "failed"
	else:
		assert final == "completed", (final, states)
		assert len(states) == len(definition.steps)


def test_cli_dry_run_words_for_gateways():
	from flow_engine.cli import effect

	switch_entry = {"action": "run", "kind": "switch", "branch": "mid", "payload": {}, "note": ""}
	inclusive_entry = {
		"action": "run",
		"kind": "inclusive",
		"branches": ["email", "sms"],
		"payload": {},
		"note": "",
	}
	assert effect(switch_entry, catalog.DEFAULT_CATALOG, {}) == "→ branch 'mid'"
	assert effect(inclusive_entry, catalog.DEFAULT_CATALOG, {}) == "→ branches 'email', 'sms'"
	assert effect({**inclusive_entry, "branches": []}, catalog.DEFAULT_CATALOG, {}) == "→ branches none"


WEIRD = [None, "", "all", "any", "ANY", 0, 1, 2, 7, -1, "3", "x", True, 1.5, [], {}, {"name": 1}]


@st.composite
def odd_gateways(draw):
	count = draw(st.integers(1, 6))
	ids = [f"g{i}" for i in range(count)]
	steps = []
	for step_id in ids:
		item = {"id": step_id, "kind": draw(st.sampled_from(["switch", "inclusive", "condition", "wait"]))}
		item["payload"] = draw(
			st.sampled_from(
				[
					None,
					{},
					{"cases": draw(st.sampled_from(WEIRD))},
					{"branches": draw(st.lists(st.sampled_from(WEIRD), max_size=3))},
					{
						"cases": [
							{"name": draw(st.sampled_from(WEIRD)), "condition": draw(st.sampled_from(WEIRD))}
						]
					},
					{
						"cases": [{"name": "a", "condition": amount(">", 1)}],
						"default": draw(st.sampled_from(WEIRD)),
					},
				]
			)
		)
		for key in ("join", "on_error", "branch"):
			if draw(st.booleans()):
				item[key] = draw(st.sampled_from([*WEIRD, "error", "default", "continue", "branch"]))
		if draw(st.booleans()):
			item["parent_id"] = draw(st.sampled_from([*ids, 3, None]))
		if draw(st.booleans()):
			item["depends_on"] = draw(st.lists(st.sampled_from([*ids, "ghost"]), max_size=3))
		steps.append(item)
	return flow(*steps)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(odd_gateways())
def test_validation_of_odd_gateways_never_crashes(raw):
	issues = validate(raw)
	assert all(issue.code != "internal" for issue in issues), issues
	for step_raw in raw["steps"]:
		assert isinstance(catalog.branches_for(step_raw), tuple)
