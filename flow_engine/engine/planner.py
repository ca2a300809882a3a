"""The planner: given a definition and per-step state, decide what happens next. Performs nothing.

Step statuses: absent/`pending` (not started), `scheduled` (a Flow Step Pending row waits on time),
`waiting` (parked for a webhook callback or a person), `running`, `completed`, `skipped`, `failed`,
`cancelled`.

Its inputs are its `depends_on` steps and its parent. With `join: "all"` (the default) a step is
ready when its parent (if any) completed on the step's branch and every `depends_on` step is done; a
skipped dependency counts as done (branches re-join), a failed one blocks. A step whose parent was
skipped, or whose branch was not taken, is skipped. A branch is taken when the parent's
result["branch"] names it or its result["branches"] (an inclusive gateway) lists it.

With `join: "any"` or `join: n` a step is ready as soon as one / n of its inputs completed (a skipped
or failed input, a branch not taken, an input that took its error branch do not count); when too
few inputs are left to get there, it is skipped with the reason. Every step is decided once: a step
that already has a status is never planned again, so a join fires exactly once.

A step that failed with `on_error: "branch"` completes with result {"branch": "error"}: its children
on the `error` branch run; its other children and its depends_on dependents are skipped.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from flow_engine.engine.catalog import ERROR_BRANCH
from flow_engine.engine.definition import Definition, Step

DONE = frozenset({"completed", "skipped"})
BROKEN = frozenset({"failed", "cancelled"})
IN_FLIGHT = frozenset({"scheduled", "waiting", "running"})
NOT_STARTED = frozenset({None, "", "pending"})
RUN_STATUSES = ("running", "waiting", "completed", "failed", "cancelled")


@dataclass(frozen=True)
class Decision:
	step_id: str
	action: str  # execute | schedule | schedule_on_date | park | skip
	due: datetime.datetime | None = None
	reason: str = ""


def status_of(states: Mapping, step_id: str) -> str | None:
	state = states.get(step_id)
	return state.get("status") if isinstance(state, Mapping) else None


def taken(result, branch: str) -> bool:
	"""Whether a completed step's result takes `branch` (result["branch"], or listed in result["branches"])."""
	if not isinstance(result, Mapping):
		return False
	if result.get("branch") == branch:
		return True
	branches = result.get("branches")
	return isinstance(branches, list | tuple) and branch in branches


def took(result) -> str:
	"""The branch(es) a result took, for reasons."""
	if isinstance(result, Mapping) and isinstance(result.get("branches"), list | tuple):
		names = [str(name) for name in result["branches"]]
		return f"took {', '.join(repr(name) for name in names)}" if names else "took none"
	taken_branch = result.get("branch") if isinstance(result, Mapping) else None
	return f"took '{taken_branch}'"


def errored(definition: Definition, states: Mapping, step_id: str) -> bool:
	"""Completed through its error branch (a failure with on_error "branch")."""
	state = states.get(step_id)
	if not isinstance(state, Mapping) or state.get("status") != "completed":
		return False
	result = state.get("result")
	return (
		isinstance(result, Mapping)
		and result.get("branch") == ERROR_BRANCH
		and definition.has_step(step_id)
		and definition.step(step_id).on_error == "branch"
	)


def readiness(definition: Definition, step: Step, states: Mapping) -> tuple[str, str]:
	"""('ready' | 'wait' | 'skip' | 'blocked', reason)."""
	if step.join != "all" and step.inputs:
		return _counted_join(definition, step, states)
	if step.parent_id:
		parent_status = status_of(states, step.parent_id)
		if parent_status == "skipped":
			return "skip", f"its parent '{step.parent_id}' was skipped"
		if parent_status in BROKEN:
			return "blocked", f"its parent '{step.parent_id}' {parent_status}"
		if parent_status != "completed":
			return "wait", ""
		result = states[step.parent_id].get("result") or {}
		if step.branch is not None:
			if not taken(result, step.branch):
				return "skip", f"branch '{step.branch}' of '{step.parent_id}' not taken ({took(result)})"
		elif errored(definition, states, step.parent_id):
			return "skip", f"its parent '{step.parent_id}' failed and took its error branch"
	waiting = False
	for dep in step.depends_on:
		dep_status = status_of(states, dep)
		if dep_status in BROKEN:
			return "blocked", f"it depends on '{dep}', which {dep_status}"
		if errored(definition, states, dep):
			return "skip", f"it depends on '{dep}', which failed and took its error branch"
		if dep_status not in DONE:
			waiting = True
	return ("wait", "") if waiting else ("ready", "")


def _counted_join(definition: Definition, step: Step, states: Mapping) -> tuple[str, str]:
	"""join "any" / n: ready once enough inputs completed; skipped once too few can still complete."""
	need = 1 if step.join == "any" else int(step.join)
	inputs = step.inputs
	completed = 0
	lost: list[str] = []
	for input_id in inputs:
		verdict, why = _input(definition, step, states, input_id)
		if verdict == "completed":
			completed += 1
		elif verdict == "lost":
			lost.append(why)
	if completed >= need:
		return "ready", ""
	if len(inputs) - len(lost) < need:
		mode = "any" if step.join == "any" else f"{need} of {len(inputs)}"
		return "skip", f"join ({mode}) can no longer fire: {'; '.join(lost)}"
	return "wait", ""


def _input(definition: Definition, step: Step, states: Mapping, input_id: str) -> tuple[str, str]:
	"""('completed' | 'pending' | 'lost', why) for one input of a counted join."""
	status = status_of(states, input_id)
	if status == "skipped":
		return "lost", f"'{input_id}' was skipped"
	if status in BROKEN:
		return "lost", f"'{input_id}' {status}"
	if status != "completed":
		return "pending", ""
	if input_id == step.parent_id:
		result = states[input_id].get("result") or {}
		if step.branch is not None and not taken(result, step.branch):
			return "lost", f"branch '{step.branch}' of '{input_id}' not taken ({took(result)})"
		if step.branch is None and errored(definition, states, input_id):
			return "lost", f"'{input_id}' failed and took its error branch"
		return "completed", ""
	if errored(definition, states, input_id):
		return "lost", f"'{input_id}' failed and took its error branch"
	return "completed", ""


def next_wave(definition: Definition, states: Mapping, now: datetime.datetime) -> list[Decision]:
	"""Every step that can move now, in definition order."""
	decisions = []
	for step in definition.steps:
		if status_of(states, step.id) not in NOT_STARTED:
			continue
		verdict, reason = readiness(definition, step, states)
		if verdict == "skip":
			decisions.append(Decision(step.id, "skip", reason=reason))
		elif verdict == "ready":
			decisions.append(_decide(step, now))
	return decisions


def _decide(step: Step, now: datetime.datetime) -> Decision:
	kind = step.trigger.type
	if kind == "after_delay":
		return Decision(step.id, "schedule", due=now + step.trigger.delay, reason="after_delay")
	if kind == "on_date":
		return Decision(step.id, "schedule_on_date", reason="on_date")
	if kind in ("on_webhook", "manual"):
		return Decision(step.id, "park", reason=kind)
	return Decision(step.id, "execute")


@dataclass(frozen=True)
class Outcome:
	status: str
	reason: str = ""
	stuck: tuple[str, ...] = ()


def outcome(definition: Definition, states: Mapping, now: datetime.datetime | None = None) -> Outcome:
	"""The run status that the step states imply (cancellation is decided by the runtime)."""
	statuses = {step.id: status_of(states, step.id) for step in definition.steps}
	failed = [step_id for step_id, status in statuses.items() if status == "failed"]
	if failed:
		return Outcome("failed", f"step '{failed[0]}' failed")
	if all(status in DONE for status in statuses.values()):
		return Outcome("completed")
	if any(status == "running" for status in statuses.values()):
		return Outcome("running")
	if next_wave(definition, states, now or datetime.datetime.now()):
		return Outcome("running")
	if any(status in ("scheduled", "waiting") for status in statuses.values()):
		return Outcome("waiting")
	stuck = tuple(step_id for step_id, status in statuses.items() if status in NOT_STARTED)
	if any(status == "cancelled" for status in statuses.values()):
		return Outcome("cancelled", stuck=stuck)
	return Outcome("failed", f"steps {', '.join(stuck)} can never become ready", stuck)
