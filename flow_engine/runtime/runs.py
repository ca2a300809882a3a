"""Runs: start, advance (waves), complete a parked step, cancel, retry.

`advance` locks the run row (`SELECT … FOR UPDATE`), plans one wave with the pure planner, performs
it, saves the state and commits; then the next wave, until nothing progresses. Concurrent
completions of one run serialise on that lock, so no update is lost.
"""

from __future__ import annotations

import datetime
import hmac
import time

import frappe
from frappe import _
from frappe.utils import cint

from flow_engine.engine import planner
from flow_engine.runtime import clock, jobs, realtime, steps, store, templates
from flow_engine.runtime.context import resolve_customer
from flow_engine.runtime.store import RunRecord

MAX_WAVES_PER_JOB = 500
COMMIT_INTERVAL = 0.25  # seconds of instant waves that may share one transaction
MAX_DEPTH = 5


def _limits() -> dict:
	conf = frappe.conf
	return {
		"max_steps": cint(conf.get("flow_engine_max_step_executions")) or 2000,
		"max_days": cint(conf.get("flow_engine_max_run_days")) or 400,
	}


class FlowRunError(frappe.ValidationError):
	pass


def new_run_name() -> str:
	return f"FR-{clock.now():%y%m%d}-{frappe.generate_hash(length=8)}"


def validate_input(template: str, data, schema_text: str | bool | None = False) -> None:
	"""Check a run's input against the template's payload schema; errors name the path."""
	if schema_text is False:
		schema_text = frappe.db.get_value("Flow Template", template, "payload_schema")
	if not schema_text:
		return
	import jsonschema

	schema = store.loads(schema_text)
	validator = jsonschema.validators.validator_for(schema)(schema)
	errors = sorted(
		validator.iter_errors(data if data is not None else {}), key=lambda e: list(e.absolute_path)
	)
	if errors:
		lines = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:10]]
		frappe.throw(
			templates.as_html(
				_("Input does not match the payload schema of flow '{0}':").format(template)
				+ "\n"
				+ "\n".join(lines)
			),
			FlowRunError,
			title=_("Invalid input"),
		)


def start_run(
	template: str,
	*,
	doc=None,
	reference_doctype: str | None = None,
	reference_name: str | None = None,
	event: str = "manual",
	source: str = "user",
	input: dict | None = None,
	parent_run: str | None = None,
	depth: int = 0,
	schedule: str | None = None,
	schedule_slot=None,
	require_active: bool = False,
) -> str | None:
	"""Create a run and have it advanced once the current transaction commits."""
	row = store.template_row(template)
	if not row:
		frappe.throw(_("Flow '{0}' does not exist").format(template), frappe.DoesNotExistError)
	if require_active and not row.is_active:
		return None
	if not row.version:
		frappe.throw(_("Flow '{0}' has no saved definition yet").format(template), FlowRunError)
	if doc is not None:
		reference_doctype, reference_name = doc.doctype, doc.name
	elif reference_doctype and reference_name:
		if not frappe.db.exists(reference_doctype, reference_name):
			frappe.throw(
				_("{0} '{1}' does not exist").format(reference_doctype, reference_name),
				frappe.DoesNotExistError,
			)
		doc = frappe.get_doc(reference_doctype, reference_name)
	if input is not None and not isinstance(input, dict):
		frappe.throw(_("A run's input must be a JSON object"), FlowRunError)
	if source in ("schedule", "api") or input:
		validate_input(template, input or {}, row.payload_schema)
	name = new_run_name()
	now = clock.now()
	store.insert_row(
		"Flow Run",
		{
			"template": template,
			"template_version": row.version,
			"status": "running",
			"trigger_event": event,
			"reference_doctype": reference_doctype,
			"reference_name": reference_name,
			"customer": resolve_customer(doc),
			"source": source,
			"started_by": frappe.session.user,
			"parent_run": parent_run,
			"schedule": schedule,
			"schedule_slot": schedule_slot,
			"depth": depth,
			"started_at": now,
			"waves": 0,
			"steps_executed": 0,
			"input": input or {},
			"variables": {},
			"step_state": {},
			"doc_snapshot": doc.as_dict(convert_dates_to_str=True)
			if doc is not None and event == "on_trash"
			else None,
		},
		name=name,
	)
	jobs.schedule_advance(name)
	return name


def _run_as(template: str) -> str:
	# a plain indexed read: the cached-document route would unpickle (and import) a whole controller
	row = frappe.db.sql("select run_as from `tabFlow Template` where name=%s", (template,))
	return (row[0][0] if row else None) or "Administrator"


def advance(run: str) -> str | None:
	"""Advance a run wave by wave until it completes, fails, or waits. Returns its status.

	Consecutive instant waves share a transaction for up to COMMIT_INTERVAL seconds (group commit):
	each step's effect and state still commit together, and the run row stays locked throughout.
	"""
	record = store.load_run(run, lock=True)
	if record is None or record.is_terminal:
		frappe.db.commit()
		return record.status if record else None
	record.definition = templates.definition_for(record.template, record.template_version)
	return drive(record)


def drive(record: RunRecord) -> str:
	"""Run waves on a loaded, locked run until it stops moving; commits (see `advance`)."""
	run = record.name
	last_commit = time.monotonic()
	with jobs.acting_as(_run_as(record.template)):
		for _round in range(MAX_WAVES_PER_JOB):
			progressed = _wave(record)
			if not progressed or record.status != "running":
				_commit(record)
				return record.status
			if time.monotonic() - last_commit >= COMMIT_INTERVAL:
				_commit(record)
				last_commit = time.monotonic()
				if not store.relock(record):  # someone else moved the run: start from the database
					definition = record.definition
					record = store.load_run(run, lock=True)
					if record is None or record.is_terminal:
						frappe.db.commit()
						return record.status if record else None
					record.definition = definition
	_commit(record)
	jobs.schedule_advance(run)  # a very long run continues in a fresh job
	frappe.db.commit()
	return record.status


def advance_many(runs: list[str]) -> None:
	"""Worker job for runs started together: advance each; one failing run does not stop the rest."""
	for run in runs:
		try:
			advance(run)
		except Exception:
			frappe.db.rollback()
			frappe.log_error(title=f"flow_engine: advancing run {run} failed")


def _commit(record: RunRecord) -> None:
	store.save_run(record)
	_publish(record)
	frappe.db.commit()


def over_limits(record: RunRecord) -> str | None:
	"""Why a run must stop (runaway guard), or None."""
	limits = _limits()
	if record.steps_executed >= limits["max_steps"]:
		return (
			f"Run stopped: it executed {record.steps_executed} steps, the limit is {limits['max_steps']} "
			"(site config flow_engine_max_step_executions)"
		)
	if record.started_at and clock.now() - record.started_at > datetime.timedelta(days=limits["max_days"]):
		return f"Run stopped: it has been running longer than {limits['max_days']} days (flow_engine_max_run_days)"
	return None


def _wave(record: RunRecord) -> bool:
	"""Plan and perform one wave. Returns whether anything happened."""
	now = clock.now()
	stop = over_limits(record)
	if stop:
		steps.fail_run(record, stop)
		return False
	decisions = planner.next_wave(record.definition, record.states, now)
	if decisions:
		record.waves += 1
		for decision in decisions:
			step = record.definition.step(decision.step_id)
			if decision.action == "skip":
				steps.skip(record, step, decision.reason)
			elif decision.action == "execute":
				steps.execute(record, step)
			elif decision.action == "schedule":
				steps.schedule(record, step, decision.due)
			elif decision.action == "schedule_on_date":
				steps.schedule_on_date(record, step)
			elif decision.action == "park":
				steps.park(record, step)
			if record.status == "failed":
				return True
	settle(record)
	return bool(decisions)


def settle(record: RunRecord) -> None:
	"""Set the run status from its step states (unless already failed or cancelled)."""
	if record.is_terminal:
		return
	result = planner.outcome(record.definition, record.states, clock.now())
	if result.status == "failed":
		steps.fail_run(record, result.reason)
	elif result.status in ("completed", "cancelled"):
		record.status = result.status
		record.completed_at = clock.now()
	else:
		record.status = result.status


def _publish(record: RunRecord) -> None:
	"""Tell Desk (after commit) which steps changed since the last message; cheap for long runs."""
	changed = {}
	for step_id, state in record.states.items():
		marker = (state.get("status"), state.get("attempts"))
		if record.published.get(step_id) != marker:
			record.published[step_id] = marker
			changed[step_id] = {k: v for k, v in state.items() if k not in ("token", "result")}
	realtime.publish_run_update(
		record.name, {"run": record.name, "status": record.status, "states": changed, "error": record.error}
	)


def _locked(run: str) -> RunRecord:
	record = store.load_run(run, lock=True)
	if record is None:
		frappe.throw(_("Flow Run '{0}' does not exist").format(run), frappe.DoesNotExistError)
	record.definition = templates.definition_for(record.template, record.template_version)
	return record


def complete_step(
	run: str, step_id: str, result: dict | None = None, token: str | None = None, by: str | None = None
) -> dict:
	"""Complete a parked (manual / on_webhook) step and let the run go on."""
	record = _locked(run)
	if not record.definition.has_step(step_id):
		frappe.throw(_("Flow Run '{0}' has no step '{1}'").format(run, step_id), frappe.DoesNotExistError)
	step = record.definition.step(step_id)
	state = record.states.get(step_id) or {}
	if token is not None:
		expected = state.get("token") or ""
		if step.trigger.type != "on_webhook" or not expected or not hmac.compare_digest(str(token), expected):
			frappe.throw(
				_("The token does not match step '{0}' of run {1}").format(step_id, run),
				frappe.AuthenticationError,
			)
	if record.is_terminal:
		frappe.throw(
			_("Flow Run '{0}' is {1}; its steps can no longer be completed").format(run, record.status),
			FlowRunError,
		)
	if state.get("status") != "waiting":
		frappe.throw(
			_(
				"Step '{0}' of run {1} is not waiting to be completed (its status is '{2}'). Only parked manual "
				"or on_webhook steps can be completed."
			).format(step_id, run, state.get("status") or "not started"),
			FlowRunError,
		)
	if result is not None and not isinstance(result, dict):
		result = {"value": result}
	now = clock.now()
	attempt = int(state.get("attempts") or 0) + 1
	state.update(
		status="completed",
		completed_at=now.isoformat(sep=" "),
		result=result or {},
		attempts=attempt,
		completed_by=by or frappe.session.user,
	)
	state.pop("token", None)
	if state.get("timeout_row"):
		frappe.db.set_value(
			"Flow Step Pending", state["timeout_row"], "status", "cancelled", update_modified=False
		)
	store.record_attempt(
		record, step_id, step.kind, attempt, "completed", now, 0, None, result or {}, None, f"{run}:{step_id}"
	)
	record.steps_executed += 1
	settle(record)
	store.save_run(record)
	_publish(record)
	jobs.schedule_advance(run)
	return {"run": run, "step": step_id, "status": record.status}


def cancel_run(run: str, reason: str | None = None) -> str:
	record = _locked(run)
	if record.is_terminal:
		frappe.throw(_("Flow Run '{0}' is already {1}").format(run, record.status), FlowRunError)
	now = clock.now().isoformat(sep=" ")
	for state in record.states.values():
		if state.get("status") in planner.IN_FLIGHT:
			state.update(status="cancelled", completed_at=now)
			state.pop("token", None)
	record.status = "cancelled"
	record.completed_at = clock.now()
	record.error = reason or _("Cancelled by {0}").format(frappe.session.user)
	store.cancel_pending(run)
	store.save_run(record)
	_publish(record)
	return record.status


def retry_run(run: str) -> str:
	"""Retry a failed run: its failed steps become ready again; completed steps are kept."""
	record = _locked(run)
	if record.status != "failed":
		frappe.throw(
			_("Only failed runs can be retried; '{0}' is {1}").format(run, record.status), FlowRunError
		)
	for state in record.states.values():
		if state.get("status") in ("failed", "cancelled"):
			state["status"] = "pending"
			state.pop("completed_at", None)
			state["retried_at"] = clock.now().isoformat(sep=" ")
	record.status = "running"
	record.error = None
	record.completed_at = None
	store.save_run(record)
	_publish(record)
	jobs.schedule_advance(run)
	return record.status
