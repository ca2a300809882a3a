"""Runs: start, advance (waves), complete a parked step, cancel, retry.

`advance` locks the run row (`SELECT … FOR UPDATE`), plans one wave with the pure planner, performs
it, saves the state and commits; then the next wave, until nothing progresses. Concurrent
completions of one run serialise on that lock, so no update is lost.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import frappe
from frappe import _
from frappe.utils import cint

from flow_engine.engine import planner
from flow_engine.runtime import (
	admission,
	clock,
	deadlines,
	identity,
	jobs,
	leases,
	lifecycle,
	realtime,
	resilience,
	steps,
	store,
	templates,
	tokens,
)
from flow_engine.runtime.context import resolve_customer
from flow_engine.runtime.store import RunRecord

MAX_WAVES_PER_JOB = 500
COMMIT_INTERVAL = 0.25  # seconds of instant waves that may share one transaction
MAX_DEPTH = 5
POOL_JOB_SECONDS = 10  # then hand over: other jobs of the queue (emails, reports) get their turn
MAX_CALL_ROUNDS = 100  # call → record → drive rounds one job makes before it hands over
CALL_THREADS = 8


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


START_FIELDS = (  # what starting a run reads of its Flow Template (store.template_row)
	"name",
	"version",
	"is_active",
	"payload_schema",
	"run_deadline_days",
	"run_deadline_action",
	*admission.LIMIT_FIELDS,
)


def start_savepoint(row) -> str | None:
	"""The savepoint a trigger starts a run of this flow behind, or None: without concurrency controls
	the start writes one statement (the run's insert), which MariaDB undoes whole if it fails."""
	return "flow_engine_trigger" if row is None or admission.limits_of(row).any else None


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
	customer: str | None = None,
	variables: dict | None = None,
	row=None,
	parent_step: str | None = None,
	replay_of: str | None = None,
	version: int | None = None,
) -> str | None:
	"""Create a run and have it advanced once the current transaction commits.

	`customer` overrides the one read from the document; `variables` seed the run's variables (the
	design's API passes them; definition variables are defaults they override). `row`: the flow's
	START_FIELDS as the caller has them (the trigger map), saving a read. `parent_step`: the parent
	run's step that started it; `replay_of`: the run it replays; `version`: the flow version to run
	(default: the published one). Everything about a run is written by its insert: inline mode
	advances it from the values inserted (`advance_started`)."""
	row = row or store.template_row(template, START_FIELDS)
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
	admitted = admission.admit_new(
		template, doc=doc, input=input, variables=variables, event=event, schedule=schedule, row=row
	)
	if admitted is None:
		return None  # a run with the same dedupe key is open (policy "skip")
	queued = admitted.status == "queued"  # no job, no lease: admission starts it when there is room
	name = new_run_name()
	now = clock.now()
	values = {
		"template": template,
		"template_version": version or row.version,
		"status": admitted.status,
		"dedupe_value": admitted.dedupe_value,
		"trigger_event": event,
		"reference_doctype": reference_doctype,
		"reference_name": reference_name,
		"customer": customer or resolve_customer(doc),
		"source": source,
		"started_by": frappe.session.user,
		"parent_run": parent_run,
		"parent_step": parent_step,
		"replay_of": replay_of,
		"schedule": schedule,
		"schedule_slot": schedule_slot,
		"depth": depth,
		"started_at": now,
		"waves": 0,
		"steps_executed": 0,
		"input": input or {},
		"variables": dict(variables or {}),
		"start_variables": dict(variables or {}),
		"step_state": {},
		"doc_snapshot": doc.as_dict(convert_dates_to_str=True)
		if doc is not None and event == "on_trash"
		else None,
		"lease_until": None if queued else leases.until(now=now),
		"lease_owner": None if queued else jobs.POOL,  # leased to the job that will advance it
		"infra_failures": 0,
		"deadline_at": deadlines.deadline_for(row, now),
		"creation": now,
		"modified": now,
	}
	store.insert_row("Flow Run", values, name=name)
	if not queued:
		started = store.record_from_row(frappe._dict(values, name=name)) if jobs.inline_mode() else None
		jobs.schedule_advance(name, started)
	return name


def run_as(template: str) -> str:
	"""The user a flow's steps act as (raises identity.RunAsError when it has none or it is disabled)."""
	return identity.run_as_recent(template)


@contextlib.contextmanager
def _shared_transaction(**extra):
	frappe.local.flow_engine_group = {"attempts": [], **extra}
	try:
		yield frappe.local.flow_engine_group
		store.flush_attempts()
	finally:
		frappe.local.flow_engine_group = None


def in_one_transaction(work, with_calls: list, **extra) -> bool:
	"""Do `work(collected)` for many runs in one transaction (fire groups, pool groups): their commit
	points are deferred, their attempts written in one statement, one commit; the records whose
	external calls they began are added to `with_calls` once it commits. False, with everything
	rolled back, when anything raised: the caller then redoes the work one run at a time.
	`extra`: more lists the work fills and writes before the commit (store.transaction_group)."""
	collected: list = []
	try:
		with _shared_transaction(**extra):
			work(collected)
		frappe.db.commit()
	except Exception:
		resilience.reset_connection()
		return False
	with_calls.extend(collected)
	return True


def commit_point() -> None:
	"""Commit what this run's work wrote, unless it shares a transaction with other runs' work
	(`in_one_transaction`): their statements are complete either way."""
	if not getattr(frappe.local, "flow_engine_group", None):
		frappe.db.commit()


def locked(run: str) -> RunRecord:
	"""The run, locked (`SELECT … FOR UPDATE`) with its pinned definition: the one way to change a run.

	Whoever holds the lock may change the run's state; concurrent advances, completions, firings and
	cancellations of one run serialise here, so no update is lost. The caller saves and commits.
	"""
	record = store.load_run(run, lock=True)
	if record is None:
		frappe.throw(_("Flow Run '{0}' does not exist").format(run), frappe.DoesNotExistError)
	record.definition = templates.definition_for(record.template, record.template_version, record.scope)
	return record


def advance(run: str, started: RunRecord | None = None) -> str | None:
	"""Advance a run wave by wave until it completes, fails, or waits; make its external calls outside
	the run lock. Returns its status. `started`: the record of a run this process has just inserted
	and committed (inline mode), advanced without reading it again (`advance_started`)."""
	record = advance_started(started) if started is not None else advance_once(run)
	if record is not None and record.calls:
		make_calls([record])
	elif record is not None:
		return record.status
	return frappe.db.get_value("Flow Run", run, "status")


def advance_once(run: str) -> RunRecord | None:
	"""Lock the run and drive it until it stops moving (commits). Its begun calls are in `.calls`."""
	record = locked_moving(run)
	return drive(record) if record is not None else None


def advance_started(record: RunRecord) -> RunRecord | None:
	"""Advance a run this process has just inserted and committed from the record it inserted: no read
	and no lock until its first save, which writes only if nobody changed the run meanwhile
	(`record.expected`, store.save_run), and steps without savepoints (steps.execute).

	Anything amiss before that save (a step failing, someone else's change, any error) rolls the
	attempt back whole, and the run is advanced the usual way (locked, a savepoint per step): its
	outcome is the one the usual way gives. Inline mode: a worker's runs are locked ten at a time."""
	record.definition = templates.definition_for(record.template, record.template_version, record.scope)
	record.expected = (record.modified, record.lease_owner, record.lease_until)
	record.unguarded = True
	waiting = list(frappe.db.after_commit._functions)  # the committed transaction's, still to run
	messages = len(frappe.local.message_log or [])
	try:
		return drive(record)
	except Exception:
		unsaved = record.expected is not None  # nothing of this attempt committed
		resilience.reset_connection()
		if unsaved:
			for callback in waiting:  # the rollback dropped them with the attempt's own
				frappe.db.after_commit.add(callback)
			if frappe.local.message_log:
				del frappe.local.message_log[messages:]
		return advance_once(record.name)


def locked_moving(run: str) -> RunRecord | None:
	"""`locked`, for work that only concerns a run still moving: None (and the lock let go) when the
	run is gone or already ended."""
	record = _moving(store.load_run(run, lock=True))
	if record is None:
		commit_point()  # let the lock go
	return record


def _moving(record: RunRecord | None) -> RunRecord | None:
	"""A loaded run with its pinned definition, or None when it is gone, ended or queued (admission
	starts queued runs)."""
	if record is None or record.is_terminal or record.status == "queued":
		return None
	record.definition = templates.definition_for(record.template, record.template_version, record.scope)
	return record


def drive(record: RunRecord) -> RunRecord:
	"""Run waves on a loaded, locked run until it stops moving; commits.

	Consecutive instant waves share a transaction for up to COMMIT_INTERVAL seconds (group commit):
	each step's effect and state still commit together, and the run row stays locked throughout.
	External calls begun by a wave are left in `record.calls` for the caller (`make_calls`).
	"""
	run = record.name
	try:
		user = run_as(record.template)
	except identity.RunAsError as error:
		steps.fail_run(record, str(error))
		commit(record)
		return record
	last_commit = time.monotonic()
	with jobs.acting_as(user):
		steps.recover_lost_calls(record)
		for _round in range(MAX_WAVES_PER_JOB):
			progressed = _wave(record)
			if progressed:
				record.infra_failures = 0
			if not progressed or record.status != "running":
				commit(record)
				return record
			if time.monotonic() - last_commit >= COMMIT_INTERVAL:
				commit(record)
				last_commit = time.monotonic()
				if not store.relock(record):  # someone else moved the run: start from the database
					calls, definition = record.calls, record.definition
					record = store.load_run(run, lock=True)
					if record is None or record.is_terminal:
						commit_point()
						return record
					record.definition, record.calls = definition, calls
	leases.settle(record)
	leases.grant(record)  # a very long run continues in a fresh job
	save(record)
	commit_point()
	return record


def make_calls(records: list[RunRecord]) -> None:
	"""Make the external calls the runs began (no transaction open, no lock held), then record each
	run's answers under its lock as soon as its calls are made, and drive it on; repeat while the runs
	begin new calls. Calls that may run in threads run concurrently: one slow endpoint holds up nobody.
	"""
	pending = [record for record in records if record is not None and record.calls]
	for _round in range(MAX_CALL_ROUNDS):
		if not pending:
			return
		frappe.db.commit()  # nothing of ours is open while the calls are made
		following = []
		for record in _called(pending):
			record = guarded(record.name, _finish_calls, record.name, record.calls)
			if record is not None and record.calls:
				following.append(record)
		pending = following
	for record in pending:  # still calling after MAX_CALL_ROUNDS: a fresh job goes on
		guarded(record.name, _hand_over, record.name)


def _hand_over(run: str) -> None:
	frappe.db.sql("update `tabFlow Run` set lease_until=%s where name=%s", (leases.until(0), run))
	frappe.db.commit()


def _called(records: list[RunRecord]):
	"""Make the runs' calls; yield each run as soon as all of its calls are made."""
	by_name = {record.name: record for record in records}
	threaded = [call for record in records for call in record.calls if call.external.threadsafe]
	left = {record.name: 0 for record in records}
	for call in threaded:
		left[call.run] += 1
	pool = ThreadPoolExecutor(max_workers=min(CALL_THREADS, len(threaded))) if len(threaded) > 1 else None
	try:
		futures = {pool.submit(call.perform): call for call in threaded} if pool else {}
		for record in records:
			for call in record.calls:
				if not call.external.threadsafe:
					_perform_here(record, call)
		if len(threaded) == 1:
			threaded[0].perform()
			left[threaded[0].run] = 0
		for name, count in left.items():
			if count == 0:
				yield by_name[name]
		for future in as_completed(futures):
			call = futures[future]
			left[call.run] -= 1
			if left[call.run] == 0:
				yield by_name[call.run]
	finally:
		if pool:
			pool.shutdown(wait=True)


def _perform_here(record: RunRecord, call) -> None:
	"""A call that needs Frappe (it may write, e.g. an SMS Log): in this thread, as the flow's user."""
	try:
		user = run_as(record.template)
	except identity.RunAsError as error:
		call.outcome = ("error", error)
		return
	with jobs.acting_as(user):
		call.perform()


def _finish_calls(run: str, calls: list) -> RunRecord | None:
	record = locked_moving(run)
	if record is None:
		return None
	for call in calls:
		if record.definition.has_step(call.step_id):
			steps.finish_call(record, record.definition.step(call.step_id), call)
	settle(record)
	if record.is_terminal:
		commit(record)
		return record
	return drive(record)


def guarded(run: str, work, *args) -> RunRecord | None:
	"""Do `work` for one run, riding out database trouble; an advance that still fails is counted
	against the run (poison runs fail after a bounded number) and the batch goes on."""
	try:
		return resilience.retrying(work, *args)
	except Exception as error:
		leases.record_failure(run, error)
		return None


def advance_pool(pool_id: str | None = None) -> None:
	"""Worker job: claim leased runs in batches and advance them until none are left. After
	POOL_JOB_SECONDS with work left it hands over to a fresh job, so one worker is never held long."""
	jobs.pool_job_started(pool_id)
	owner = f"pool-job:{frappe.generate_hash(length=10)}"
	deadline = time.monotonic() + POOL_JOB_SECONDS
	while time.monotonic() < deadline:
		try:
			claimed = resilience.retrying(leases.claim_pool, jobs.ADVANCE_BATCH, owner)
		except Exception:
			resilience.reset_connection()  # the database stays away: the leases lapse and are recovered
			break
		if not claimed:
			break
		if len(claimed) == jobs.ADVANCE_BATCH:
			jobs.ensure_pool_jobs(1)  # more are waiting: let an idle worker join in
		advance_claimed(claimed, owner)
	else:
		jobs.ensure_pool_jobs(1)
	after_job()


def advance_many(runs: list[str]) -> None:
	"""Worker job for a given list of runs (jobs queued by earlier versions; tests)."""
	advance_claimed(runs, None)
	after_job()


GROUP_RUNS = 10  # runs advanced in one transaction (their rows stay locked until it commits)


def advance_claimed(runs: list[str], owner: str | None) -> None:
	"""Advance runs this job holds, a group per transaction (one failing run does not stop the rest),
	renewing the leases of those not reached yet; then make their external calls together.

	Groups run their steps without savepoints until one fails: that group is then redone run by run
	(a savepoint per step), and so are the groups after it (a flow that fails often costs one redo)."""
	renewed = time.monotonic()
	with_calls: list = []
	guarded_steps = False
	for start in range(0, len(runs), GROUP_RUNS):
		group = runs[start : start + GROUP_RUNS]
		if len(group) == 1 or not advance_group(group, with_calls, guarded_steps):
			guarded_steps = True
			for run in group:
				record = guarded(run, advance_once, run)
				if record is not None and record.calls:
					with_calls.append(record)
		if owner and time.monotonic() - renewed > leases.lease_seconds() / 3:
			guarded(group[-1], leases.renew, runs[start + len(group) :], owner)
			renewed = time.monotonic()
	make_calls(with_calls)


def advance_group(runs: list[str], with_calls: list, guarded_steps: bool = True) -> bool:
	"""Advance `runs` in one transaction, locked in one statement (`in_one_transaction`). False, with
	everything rolled back, when anything raised (with `guarded_steps` False: a step failed too): the
	caller then advances them one by one, each riding out its own trouble."""

	def work(collected: list) -> None:
		records = store.load_runs(runs)
		for name in runs:
			record = _moving(records.get(name))
			if record is not None:
				record.unguarded = not guarded_steps
				record = drive(record)
				if record is not None and record.calls:
					collected.append(record)

	return in_one_transaction(work, with_calls)


def after_job() -> None:
	"""What every flow job does last: hand lost runs to new jobs, and make sure a timer runs when
	steps are due soon (the one that ran may have died with its worker)."""
	recover_lost_runs()
	try:
		from flow_engine.runtime.scheduler import ensure_timer

		ensure_timer()
	except Exception:
		resilience.reset_connection()


def recover_lost_runs(force: bool = False) -> int:
	"""Hand runs whose lease lapsed to new jobs (cheap when there are none; one sweeper a site every
	few seconds unless forced)."""
	try:
		if not (force or leases.sweep_due()) or not resilience.retrying(leases.expired_exist):
			return 0
		return resilience.retrying(leases.recover)
	except Exception:
		frappe.log_error(title="flow_engine: recovering lost runs failed")
		return 0


def commit(record: RunRecord) -> None:
	"""Save a driven run (lease settled: none unless it is still moving) and commit."""
	leases.settle(record)
	save(record)
	commit_point()


def save(record: RunRecord) -> None:
	"""Write the run row and its new attempts; Desk hears of it after commit; a run that has just
	ended is announced to `lifecycle` in the same transaction."""
	store.save_run(record)
	_publish(record)
	if record.is_terminal and record.loaded_status not in store.TERMINAL:
		if record.status == "failed":
			store.flush_attempts()  # alerts and error flows may read how the run failed
		lifecycle.run_ended(record)
	record.loaded_status = record.status


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


def complete_step(
	run: str, step_id: str, result: dict | None = None, token: str | None = None, by: str | None = None
) -> dict:
	"""Complete a parked (manual / on_webhook) step and let the run go on.

	With a `token` (the webhook callback) the token must be the step's current one; callers check
	`tokens.well_formed` before calling, so a forged token never reaches the row lock.
	"""
	record = locked(run)
	if not record.definition.has_step(step_id):
		frappe.throw(_("Flow Run '{0}' has no step '{1}'").format(run, step_id), frappe.DoesNotExistError)
	step = record.definition.step(step_id)
	state = record.states.get(step_id) or {}
	if token is not None and (
		step.trigger.type != "on_webhook" or not tokens.same(state.get("token"), token)
	):
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
	steps.complete_waiting(
		record, step, result or {}, attempt=int(state.get("attempts") or 0) + 1, by=by or frappe.session.user
	)
	state.pop("token", None)
	if state.get("timeout_row"):
		frappe.db.set_value(
			"Flow Step Pending", state["timeout_row"], "status", "cancelled", update_modified=False
		)
	if state.get("wait"):  # a wait_for step completed by hand stops waiting for its event
		from flow_engine.runtime import waits

		waits.close(state["wait"], "cancelled")
	settle(record)
	if record.status == "running":
		leases.grant(record)
	save(record)
	return {"run": run, "step": step_id, "status": record.status}


def cancel_run(run: str, reason: str | None = None) -> str:
	record = locked(run)
	if record.is_terminal:
		frappe.throw(_("Flow Run '{0}' is already {1}").format(run, record.status), FlowRunError)
	now = clock.now().isoformat(sep=" ")
	for state in record.states.values():
		if state.get("status") in planner.IN_FLIGHT:
			state.update(status="cancelled", completed_at=now)
			for key in ("token", "call_id", "call_deadline"):
				state.pop(key, None)
	record.status = "cancelled"
	record.completed_at = clock.now()
	record.error = reason or _("Cancelled by {0}").format(frappe.session.user)
	record.lease_until = record.lease_owner = None
	store.cancel_pending(run)
	save(record)
	return record.status


def retry_run(run: str) -> str:
	"""Retry a failed run: failed steps get a fresh retry budget and run again; completed steps are
	kept; steps that were scheduled or parked when the run failed get their timers and tokens back."""
	record = locked(run)
	if record.status != "failed":
		frappe.throw(
			_("Only failed runs can be retried; '{0}' is {1}").format(run, record.status), FlowRunError
		)
	now = clock.now()
	for step_id, state in record.states.items():
		status = state.get("status")
		if status in ("failed", "cancelled", "running"):
			state["status"] = "pending"
			for key in ("completed_at", "call_id", "call_deadline", "lost_calls"):
				state.pop(key, None)
			state["retried_at"] = now.isoformat(sep=" ")
			state["retry_base"] = int(state.get("attempts") or 0)
		elif status == "scheduled":
			_rearm(record, step_id, state, "pending", "due", "delay", now)
		elif status == "waiting":
			if state.get("waiting_for") == "on_webhook" and not state.get("token"):
				state["token"] = tokens.new_token(run, step_id)
			if state.get("timeout_row"):
				_rearm(record, step_id, state, "timeout_row", "timeout_at", "timeout", now)
			if state.get("wait"):  # wait_for: its wait closed when the run failed; it waits again
				from flow_engine.runtime import waits

				waits.reopen(record, step_id, state)
			if state.get("waiting_for") == "approval":  # its approval closed when the run failed: asked again
				from flow_engine.runtime import approvals

				approvals.reopen(record, step_id, state)
	record.status = "running"
	record.error = None
	record.completed_at = None
	record.infra_failures = 0
	found = admission.limits(record.template)
	if found is not None and found.max_open:
		# a flow with at most N open runs: the retried run waits its turn like a new one
		record.status = "queued"
		record.lease_until = record.lease_owner = None
		template = record.template
		frappe.db.after_commit.add(lambda: admission.admit_later(template))
	else:
		leases.grant(record)
	save(record)
	return record.status


def _rearm(
	record: RunRecord, step_id: str, state: dict, row_key: str, due_key: str, purpose: str, now
) -> None:
	"""Give a step back the pending row its run's failure cancelled (a live row is left alone)."""
	row = state.get(row_key)
	if row and frappe.db.get_value("Flow Step Pending", row, "status") in ("pending", "running"):
		return
	due = max(datetime.datetime.fromisoformat(state[due_key]), now) if state.get(due_key) else now
	state[row_key] = store.insert_pending(record.name, step_id, due, purpose)
	state[due_key] = due.isoformat(sep=" ")
	steps.wake_timer_if_soon(due, now)
