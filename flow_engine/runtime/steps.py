"""One step at a time: execute inline (effect + state in one transaction), schedule, park, fail.

Every function here works on a locked `RunRecord`; the caller saves it and commits, so a step's
database effect, its attempt record and its new state become visible together or not at all.
"""

from __future__ import annotations

import datetime
import secrets
import time
import traceback
from dataclasses import dataclass

import frappe

from flow_engine.engine import templating, timing
from flow_engine.engine.definition import Step
from flow_engine.kinds.base import External, Park, StepCall, StepFailed
from flow_engine.kinds.registry import get_catalog, get_handler
from flow_engine.runtime import clock, deadlines, jobs, store, tokens
from flow_engine.runtime.context import build_context
from flow_engine.runtime.store import RunRecord

SAVEPOINT = "flow_engine_step"
RAW_PAYLOAD_KINDS = ("condition", "switch", "inclusive")  # their conditions render values themselves
TIMER_HORIZON = datetime.timedelta(seconds=75)
MAX_LOST_CALLS = 3


@dataclass
class PendingCall:
	"""An external call begun by `execute`: made by `runs` once the step's `running` state committed."""

	run: str
	step_id: str
	call_id: str
	attempt: int
	external: External
	payload: object
	key: str
	started: datetime.datetime
	outcome: tuple | None = None  # ("ok", value) or ("error", exception), set by perform()
	duration_ms: float = 0.0

	def perform(self) -> PendingCall:
		timer = time.perf_counter()
		try:
			self.outcome = ("ok", self.external.perform())
		except Exception as error:
			self.outcome = ("error", error)
		self.duration_ms = (time.perf_counter() - timer) * 1000
		return self


def _iso(moment: datetime.datetime) -> str:
	return moment.isoformat(sep=" ")


def execute(run: RunRecord, step: Step, pending_row: str | None = None) -> str:
	"""Run the step's handler now. Returns the step's new status."""
	state = run.states.setdefault(step.id, {})
	attempt = int(state.get("attempts") or 0) + 1
	context = build_context(run)
	key = f"{run.name}:{step.id}"
	try:
		source = state.get("payload_override") or step.payload  # an operator's replay with edited input
		payload = source if step.kind in RAW_PAYLOAD_KINDS else templating.render(source, context)
	except templating.Refused as error:  # the Run As user may not read the document the payload reads
		state.update(attempts=attempt)
		return attempt_failed(
			run,
			step,
			state,
			attempt,
			StepFailed(str(error)),
			clock.now(),
			time.perf_counter(),
			None,
			key,
			pending_row,
		)
	call = StepCall(
		run=run.name,
		template=run.template,
		step=step,
		payload=payload,
		raw_payload=source,
		context=context,
		attempt=attempt,
		idempotency_key=key,
		reference_doctype=run.reference_doctype,
		reference_name=run.reference_name,
	)
	started = clock.now()
	state.update(status="running", started_at=state.get("started_at") or _iso(started), attempts=attempt)
	messages = len(frappe.local.message_log or [])
	timer = time.perf_counter()
	spec = get_catalog().get(step.kind)
	pure = bool(spec and spec.pure)
	limit = deadlines.step_timeout(step)  # every inline kind: past it, its writes are rolled back
	guarded = not pure and not run.unguarded  # (else the caller rolls back its whole try and redoes it)
	if guarded:
		frappe.db.savepoint(SAVEPOINT)
	try:
		with jobs.executing(run.name, run.template, run.reference_doctype, run.reference_name, run.depth):
			result = get_handler(step.kind)(call)
		if isinstance(result, External):
			return _begin_call(run, step, state, attempt, result, payload, key, started)
		if isinstance(result, Park):
			return _parked(run, step, state, result)
		deadlines.check_inline(run.template, step, limit, time.perf_counter() - timer, not pure)
		if result is None:
			result = {}
		elif not isinstance(result, dict):
			result = {"value": result}
	except Exception as error:
		if not pure and not guarded:
			raise  # the caller rolls its whole try back and advances the run the usual way
		try:
			if guarded:
				frappe.db.rollback(save_point=SAVEPOINT)
		except Exception:
			raise error from None  # the transaction itself is gone (deadlock): let the job retry the run
		if frappe.local.message_log:
			del frappe.local.message_log[messages:]
		return attempt_failed(run, step, state, attempt, error, started, timer, payload, key, pending_row)
	duration = (time.perf_counter() - timer) * 1000
	store.record_attempt(
		run, step.id, step.kind, attempt, "completed", started, duration, payload, result, None, key
	)
	state.update(status="completed", completed_at=_iso(clock.now()), result=result)
	state.pop("error", None)
	run.steps_executed += 1
	if step.kind == "set_variables":
		run.variables.update(result.get("variables") or {})
	return "completed"


def _begin_call(run, step, state, attempt, external, payload, key, started) -> str:
	"""Mark the step `running` with a call id and deadline; the call is made after commit (runs.py)."""
	call_id = secrets.token_hex(8)
	deadline = clock.now() + datetime.timedelta(seconds=float(external.timeout))
	state.update(call_id=call_id, call_deadline=_iso(deadline))
	run.calls.append(PendingCall(run.name, step.id, call_id, attempt, external, payload, key, started))
	return "running"


def _parked(run, step, state, park) -> str:
	"""A handler asked to wait (kinds.base.Park): the step waits, its effects commit with the run; its
	attempt is recorded when it is completed (runs.complete_step)."""
	state.update(park.state)
	state.update(status="waiting", parked_at=_iso(clock.now()), waiting_for=park.waiting_for)
	state.pop("error", None)
	return "waiting"


def finish_call(run: RunRecord, step: Step, call: PendingCall) -> str | None:
	"""Record a made call's answer on the locked run. None when the step moved on meanwhile (cancelled,
	or called again after this worker was presumed dead): that answer is dropped."""
	state = run.states.get(step.id) or {}
	if state.get("status") != "running" or state.get("call_id") != call.call_id:
		return None
	state.pop("call_id", None)
	state.pop("call_deadline", None)
	timer = time.perf_counter() - call.duration_ms / 1000
	kind, value = call.outcome or ("error", RuntimeError("the call was never made"))
	try:
		result = call.external.finish(value) if kind == "ok" else call.external.finish_error(value)
	except Exception as error:
		return attempt_failed(
			run, step, state, call.attempt, error, call.started, timer, call.payload, call.key, None
		)
	if result is None:
		result = {}
	elif not isinstance(result, dict):
		result = {"value": result}
	store.record_attempt(
		run,
		step.id,
		step.kind,
		call.attempt,
		"completed",
		call.started,
		call.duration_ms,
		call.payload,
		result,
		None,
		call.key,
	)
	state.update(status="completed", completed_at=_iso(clock.now()), result=result)
	state.pop("error", None)
	run.steps_executed += 1
	return "completed"


def recover_lost_calls(run: RunRecord) -> None:
	"""Steps left `running` past their call deadline lost their worker mid-call: call again (the same
	Idempotency-Key), up to MAX_LOST_CALLS times, then fail the step."""
	now = clock.now()
	margin = datetime.timedelta(seconds=30)
	for step_id, state in list(run.states.items()):
		deadline = state.get("call_deadline") if state.get("status") == "running" else None
		if not deadline or datetime.datetime.fromisoformat(deadline) + margin >= now:
			continue
		if not run.definition.has_step(step_id):
			continue
		step = run.definition.step(step_id)
		lost = int(state.get("lost_calls") or 0) + 1
		state.pop("call_id", None)
		state.pop("call_deadline", None)
		state["lost_calls"] = lost
		if lost > MAX_LOST_CALLS:
			message = f"its worker stopped during the call {lost} times before recording an answer"
			if fail_step(run, step, message) == "failed":
				return
			continue
		state["error"] = "the worker making this call stopped before recording its answer; calling again"
		execute(run, step)


def _is_retryable(error: Exception) -> bool:
	if isinstance(error, StepFailed):
		return error.retryable
	transient = (frappe.QueryDeadlockError, frappe.QueryTimeoutError, TimeoutError, ConnectionError)
	return isinstance(error, transient)


def _message(error: Exception) -> str:
	if isinstance(
		error,
		StepFailed
		| templating.Refused
		| frappe.ValidationError
		| frappe.PermissionError
		| frappe.DoesNotExistError,
	):
		text = str(error) or error.__class__.__name__
		return frappe.utils.strip_html_tags(text)
	return f"{error.__class__.__name__}: {error}\n{traceback.format_exc(limit=8)}"


def attempt_failed(run, step, state, attempt, error, started, timer, payload, key, pending_row) -> str:
	"""Record a failed attempt of `step` and what follows: a retry when one is due, else the step
	failed for good (`fail_step`: its on_error decides). Returns the step's new status."""
	message = _message(error)
	duration = (time.perf_counter() - timer) * 1000
	output = getattr(error, "output", None)
	now = clock.now()
	budget_used = attempt - int(state.get("retry_base") or 0)  # a manual retry gives a fresh budget
	due = timing.retry_at(now, budget_used, step.retry) if _is_retryable(error) else None
	status = "retrying" if due else "failed"
	store.record_attempt(
		run, step.id, step.kind, attempt, status, started, duration, payload, output, message, key
	)
	state["error"] = message
	if due:
		if pending_row:
			frappe.db.sql(
				"""update `tabFlow Step Pending` set status='pending', trigger_at=%s, purpose='retry',
				attempts=%s, claims=0, last_error=%s, claimed_by=null, lease_until=null, modified=%s
				where name=%s""",
				(due, attempt, message, now, pending_row),
			)
			row = pending_row
		else:
			row = store.insert_pending(run.name, step.id, due, "retry", attempts=attempt, last_error=message)
		state.update(status="scheduled", due=_iso(due), pending=row)
		wake_timer_if_soon(due, now)
		return "scheduled"
	tries = f" after {budget_used} attempts" if budget_used > 1 else ""
	return fail_step(run, step, message, tries)


def fail_step(run: RunRecord, step: Step, message: str, tries: str = "") -> str:
	"""A step that failed for good (its retries spent): its `on_error` decides. "fail" fails the run;
	"continue" completes it with {"error", "failed": true} and the run goes on; "branch" completes it
	with {"branch": "error", "error"}: its error-branch children run, its other successors are skipped
	(engine/planner.py). Returns the step's new status. Other kinds' runtimes (a failed child run, a
	lost call) fail their steps through here too."""
	state = run.states.setdefault(step.id, {})
	now = _iso(clock.now())
	state["error"] = message
	if step.on_error == "continue":
		state.update(status="completed", completed_at=now, result={"error": message, "failed": True})
		state["handled_error"] = "continue"
		return "completed"
	if step.on_error == "branch":
		state.update(status="completed", completed_at=now, result={"branch": "error", "error": message})
		state["handled_error"] = "branch"
		return "completed"
	state.update(status="failed", completed_at=now)
	label = f" ({step.label})" if step.label else ""
	fail_run(run, f"Step '{step.id}'{label} failed{tries}: {message}")
	return "failed"


def schedule(run: RunRecord, step: Step, due: datetime.datetime, purpose: str = "delay") -> None:
	now = clock.now()
	row = store.insert_pending(run.name, step.id, due, purpose)
	state = run.states.setdefault(step.id, {})
	state.update(status="scheduled", due=_iso(due), pending=row, scheduled_at=_iso(now))
	wake_timer_if_soon(due, now)


def schedule_on_date(run: RunRecord, step: Step) -> None:
	context = build_context(run)
	try:
		rendered = templating.render(step.trigger.date, context)
	except templating.Refused as error:
		state = run.states.setdefault(step.id, {})
		state.update(status="failed", error=str(error), completed_at=_iso(clock.now()))
		fail_run(run, f"Step '{step.id}' could not be scheduled: {error}")
		return
	due = timing.date_due(rendered, step.trigger, to_local=_to_site_time)
	if due is None:
		state = run.states.setdefault(step.id, {})
		message = (
			f"on_date: {rendered!r} (from {step.trigger.date!r}) is not a date or datetime; "
			"check the step's trigger date"
		)
		state.update(status="failed", error=message, completed_at=_iso(clock.now()))
		fail_run(run, f"Step '{step.id}' could not be scheduled: {message}")
		return
	if due <= clock.now():
		execute(run, step)
	else:
		schedule(run, step, due)


def _to_site_time(moment: datetime.datetime) -> datetime.datetime:
	from frappe.utils import convert_utc_to_system_timezone

	utc = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
	return convert_utc_to_system_timezone(utc).replace(tzinfo=None)


def park(run: RunRecord, step: Step) -> None:
	now = clock.now()
	state = run.states.setdefault(step.id, {})
	state.update(status="waiting", parked_at=_iso(now), waiting_for=step.trigger.type)
	if step.trigger.type == "on_webhook":
		state["token"] = tokens.new_token(run.name, step.id)
	if step.timeout:
		due = now + datetime.timedelta(seconds=step.timeout)
		state["timeout_row"] = store.insert_pending(run.name, step.id, due, "timeout")
		state["timeout_at"] = _iso(due)


def complete_waiting(
	run: RunRecord, step: Step, result: dict, attempt: int | None = None, by: str | None = None
) -> None:
	"""Complete a step that waited (a person, an event, a child run, a timeout) with `result`, on its
	locked run: the state, the attempt log and the run's step count. The caller settles and saves."""
	state = run.states.setdefault(step.id, {})
	now = clock.now()
	attempt = attempt or int(state.get("attempts") or 1)
	state.update(status="completed", completed_at=_iso(now), result=result, attempts=attempt)
	if by:
		state["completed_by"] = by
	state.pop("error", None)
	store.record_attempt(
		run, step.id, step.kind, attempt, "completed", now, 0, None, result, None, f"{run.name}:{step.id}"
	)
	run.steps_executed += 1


def skip(run: RunRecord, step: Step, reason: str) -> None:
	run.states.setdefault(step.id, {}).update(status="skipped", reason=reason, completed_at=_iso(clock.now()))


def fail_run(run: RunRecord, message: str) -> None:
	run.status = "failed"
	run.error = message
	run.completed_at = clock.now()
	store.cancel_pending(run.name)


def wake_timer_if_soon(due: datetime.datetime, now: datetime.datetime) -> None:
	if due - now <= TIMER_HORIZON and not jobs.inline_mode():
		from flow_engine.runtime.scheduler import ensure_timer

		frappe.db.after_commit.add(ensure_timer)
