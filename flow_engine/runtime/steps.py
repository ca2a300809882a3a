"""One step at a time: execute inline (effect + state in one transaction), schedule, park, fail.

Every function here works on a locked `RunRecord`; the caller saves it and commits, so a step's
database effect, its attempt record and its new state become visible together or not at all.
"""

from __future__ import annotations

import datetime
import secrets
import time
import traceback

import frappe

from flow_engine.engine import templating, timing
from flow_engine.engine.definition import Step
from flow_engine.kinds.base import StepCall, StepFailed
from flow_engine.kinds.registry import get_catalog, get_handler
from flow_engine.runtime import clock, jobs, store
from flow_engine.runtime.context import build_context
from flow_engine.runtime.store import RunRecord

SAVEPOINT = "flow_engine_step"
TIMER_HORIZON = datetime.timedelta(seconds=75)


def _iso(moment: datetime.datetime) -> str:
	return moment.isoformat(sep=" ")


def execute(run: RunRecord, step: Step, pending_row: str | None = None) -> str:
	"""Run the step's handler now. Returns the step's new status."""
	state = run.states.setdefault(step.id, {})
	attempt = int(state.get("attempts") or 0) + 1
	context = build_context(run)
	payload = step.payload if step.kind == "condition" else templating.render(step.payload, context)
	key = f"{run.name}:{step.id}"
	call = StepCall(
		run=run.name,
		template=run.template,
		step=step,
		payload=payload,
		raw_payload=step.payload,
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
	if not pure:
		frappe.db.savepoint(SAVEPOINT)
	try:
		with jobs.executing(run.name, run.template, run.reference_doctype, run.reference_name, run.depth):
			result = get_handler(step.kind)(call)
		if result is None:
			result = {}
		elif not isinstance(result, dict):
			result = {"value": result}
	except Exception as error:
		try:
			if not pure:
				frappe.db.rollback(save_point=SAVEPOINT)
		except Exception:
			raise error from None  # the transaction itself is gone (deadlock): let the job retry the run
		if frappe.local.message_log:
			del frappe.local.message_log[messages:]
		return _failed(run, step, state, attempt, error, started, timer, payload, key, pending_row)
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


def _is_retryable(error: Exception) -> bool:
	if isinstance(error, StepFailed):
		return error.retryable
	transient = (frappe.QueryDeadlockError, frappe.QueryTimeoutError, TimeoutError, ConnectionError)
	return isinstance(error, transient)


def _message(error: Exception) -> str:
	if isinstance(
		error, StepFailed | frappe.ValidationError | frappe.PermissionError | frappe.DoesNotExistError
	):
		text = str(error) or error.__class__.__name__
		return frappe.utils.strip_html_tags(text)
	return f"{error.__class__.__name__}: {error}\n{traceback.format_exc(limit=8)}"


def _failed(run, step, state, attempt, error, started, timer, payload, key, pending_row) -> str:
	message = _message(error)
	duration = (time.perf_counter() - timer) * 1000
	output = getattr(error, "output", None)
	now = clock.now()
	due = timing.retry_at(now, attempt, step.retry) if _is_retryable(error) else None
	status = "retrying" if due else "failed"
	store.record_attempt(
		run, step.id, step.kind, attempt, status, started, duration, payload, output, message, key
	)
	state["error"] = message
	if due:
		if pending_row:
			frappe.db.sql(
				"""update `tabFlow Step Pending` set status='pending', trigger_at=%s, purpose='retry',
				last_error=%s, claimed_by=null, lease_until=null, modified=%s where name=%s""",
				(due, message, now, pending_row),
			)
			row = pending_row
		else:
			row = store.insert_pending(run.name, step.id, due, "retry", attempts=attempt, last_error=message)
		state.update(status="scheduled", due=_iso(due), pending=row)
		_wake_timer_if_soon(due, now)
		return "scheduled"
	state.update(status="failed", completed_at=_iso(now))
	label = f" ({step.label})" if step.label else ""
	tries = f" after {attempt} attempts" if attempt > 1 else ""
	fail_run(run, f"Step '{step.id}'{label} failed{tries}: {message}")
	return "failed"


def schedule(run: RunRecord, step: Step, due: datetime.datetime, purpose: str = "delay") -> None:
	now = clock.now()
	row = store.insert_pending(run.name, step.id, due, purpose)
	state = run.states.setdefault(step.id, {})
	state.update(status="scheduled", due=_iso(due), pending=row, scheduled_at=_iso(now))
	_wake_timer_if_soon(due, now)


def schedule_on_date(run: RunRecord, step: Step) -> None:
	context = build_context(run)
	rendered = templating.render(step.trigger.date, context)
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
		state["token"] = secrets.token_urlsafe(24)
	if step.timeout:
		due = now + datetime.timedelta(seconds=step.timeout)
		state["timeout_row"] = store.insert_pending(run.name, step.id, due, "timeout")
		state["timeout_at"] = _iso(due)


def skip(run: RunRecord, step: Step, reason: str) -> None:
	run.states.setdefault(step.id, {}).update(status="skipped", reason=reason, completed_at=_iso(clock.now()))


def fail_run(run: RunRecord, message: str) -> None:
	run.status = "failed"
	run.error = message
	run.completed_at = clock.now()
	store.cancel_pending(run.name)


def _wake_timer_if_soon(due: datetime.datetime, now: datetime.datetime) -> None:
	if due - now <= TIMER_HORIZON and not jobs.inline_mode():
		from flow_engine.runtime.scheduler import ensure_timer

		frappe.db.after_commit.add(ensure_timer)
