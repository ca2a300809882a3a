"""The planner: given a definition and per-step state, decide what happens next. Performs nothing.

Step statuses: absent/`pending` (not started), `scheduled` (a Flow Step Pending row waits on time),
`waiting` (parked for a webhook callback or a person), `running`, `completed`, `skipped`, `failed`,
`cancelled`. A step is ready when its parent (if any) completed on the step's branch and every
`depends_on` step is done; a skipped dependency counts as done (branches re-join), a failed one
blocks. A step whose parent was skipped, or whose branch was not taken, is skipped.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

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


def readiness(definition: Definition, step: Step, states: Mapping) -> tuple[str, str]:
	"""('ready' | 'wait' | 'skip' | 'blocked', reason)."""
	if step.parent_id:
		parent_status = status_of(states, step.parent_id)
		if parent_status == "skipped":
			return "skip", f"its parent '{step.parent_id}' was skipped"
		if parent_status in BROKEN:
			return "blocked", f"its parent '{step.parent_id}' {parent_status}"
		if parent_status != "completed":
			return "wait", ""
		if step.branch is not None:
			result = states[step.parent_id].get("result") or {}
			taken = result.get("branch") if isinstance(result, Mapping) else None
			if taken != step.branch:
				return "skip", f"branch '{step.branch}' of '{step.parent_id}' not taken (took '{taken}')"
	waiting = False
	for dep in step.depends_on:
		dep_status = status_of(states, dep)
		if dep_status in BROKEN:
			return "blocked", f"it depends on '{dep}', which {dep_status}"
		if dep_status not in DONE:
			waiting = True
	return ("wait", "") if waiting else ("ready", "")


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
