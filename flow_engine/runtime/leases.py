"""Run leases: who advances a run that should be moving, and until when.

A run in status `running` always carries a lease (`lease_until`, `lease_owner`), written in the same
transaction as whatever asked for it to be advanced (its start, a completed step, a retry). The owner
is `pool` until a pool job claims the run (`claim_pool`, `FOR UPDATE SKIP LOCKED`) and marks it
`taken:<job>`; the job renews the leases of the runs it holds while it works. When a lease lapses the run was lost (its job never reached a
worker, its worker died, or the database dropped it mid-way): `recover` — called by the precision
timer, the minute tick and at the end of every flow job — claims such runs with
`FOR UPDATE SKIP LOCKED` (a run being advanced holds its row lock and is never taken from its worker)
and hands them to a new job.

An advance that keeps failing for a reason outside its steps (engine error, a worker that dies on it)
is a poison run: each failure is counted on the run, it is retried with backoff, and after
MAX_INFRA_FAILURES it fails visibly with the last error and one Error Log entry.
"""

from __future__ import annotations

import datetime
import traceback

import frappe
from frappe.utils import cint

from flow_engine.runtime import clock, jobs, lifecycle, store

LEASE_SECONDS = 20
CALL_MARGIN_SECONDS = 30  # an external call's lease: its capped timeout plus this
MAX_INFRA_FAILURES = 5
RECOVER_BATCH = 200
RECOVER_EVERY_SECONDS = 3  # jobs and timers look for lost runs at most this often (one sweeper a site)
TAKEN = "taken:"


def lease_seconds() -> int:
	return cint(frappe.conf.get("flow_engine_run_lease_seconds")) or LEASE_SECONDS


def until(seconds: float | None = None, now: datetime.datetime | None = None) -> datetime.datetime:
	return (now or clock.now()) + datetime.timedelta(seconds=lease_seconds() if seconds is None else seconds)


def grant(record: store.RunRecord) -> None:
	"""Have the run advanced after commit, leased to the job that will do it (saved by `save_run`)."""
	record.lease_owner = jobs.schedule_advance(record.name)
	record.lease_until = until()


def settle(record: store.RunRecord) -> None:
	"""The lease a run should carry as its state is saved: none unless it is still moving; while an
	external call is in flight, until that call's deadline (plus a margin)."""
	if record.status != "running":
		record.lease_until = record.lease_owner = None
		return
	now = clock.now()
	deadline = until(now=now)
	for state in record.states.values():
		if state.get("status") == "running" and state.get("call_deadline"):
			call_deadline = datetime.datetime.fromisoformat(state["call_deadline"]) + datetime.timedelta(
				seconds=CALL_MARGIN_SECONDS
			)
			deadline = max(deadline, call_deadline)
	record.lease_until = deadline
	if not (record.lease_owner or "").startswith(TAKEN):
		record.lease_owner = TAKEN + (record.lease_owner or f"process:{frappe.local.site}")


def read_committed() -> None:
	"""Start a fresh READ COMMITTED transaction for a claim: `FOR UPDATE SKIP LOCKED` then locks only
	the rows it returns, not the index gaps around them, so a user's save inserting a new run into
	that index never waits for (or deadlocks with) a worker's claim."""
	frappe.db.commit()
	# Frappe's commit opened the next transaction already; its characteristics can no longer change
	frappe.db.sql("rollback")
	frappe.db.sql("set transaction isolation level read committed")
	frappe.db.sql("start transaction")


def claim_pool(limit: int, owner: str) -> list[str]:
	"""Claim up to `limit` runs waiting for a pool job: taken by `owner`, leases renewed, committed.
	Runs another job is claiming are skipped, never waited for."""
	read_committed()
	runs = frappe.db.sql_list(
		"""select name from `tabFlow Run` where status='running' and lease_owner=%s
		order by lease_until limit %s for update skip locked""",
		(jobs.POOL, limit),
	)
	if runs:
		frappe.db.sql(
			"update `tabFlow Run` set lease_owner=%s, lease_until=%s where name in %s",
			(TAKEN + owner, until(), tuple(runs)),
		)
	frappe.db.commit()
	return runs


def renew(runs: list[str], owner: str) -> None:
	"""Heartbeat of a job on the runs it has not reached yet."""
	if runs:
		frappe.db.sql(
			"""update `tabFlow Run` set lease_until=%s where name in %s and status='running' and lease_owner=%s""",
			(until(), tuple(runs), TAKEN + owner),
		)
		frappe.db.commit()


def sweep_due() -> bool:
	"""Whether this process should look for lost runs now: one sweep a site every few seconds, so a
	busy queue of small jobs does not sweep once per job (the minute tick always sweeps)."""
	try:
		return bool(
			frappe.cache.set(
				frappe.cache.make_key("flow_engine:recover"), 1, nx=True, ex=RECOVER_EVERY_SECONDS
			)
		)
	except Exception:
		return True  # Redis is away: sweeping is safe, only repeated


def expired_exist(now: datetime.datetime | None = None) -> bool:
	"""Cheap check (no lock) before `recover`."""
	return bool(
		frappe.db.sql(
			"""select name from `tabFlow Run` where status='running'
			and (lease_until is null or lease_until < %s) limit 1""",
			(now or clock.now(),),
		)
	)


def recover(now: datetime.datetime | None = None, limit: int = RECOVER_BATCH) -> int:
	"""Re-dispatch running runs whose lease lapsed; returns how many were handed to a new job.

	A run still waiting for a pool job gets a fresh lease (a pool job is queued only when none waits);
	a run a job had taken counts one infrastructure failure (see `record_failure`).
	"""
	now = now or clock.now()
	read_committed()
	rows = frappe.db.sql(
		"""select name, lease_owner, lease_until, infra_failures from `tabFlow Run`
		where status='running' and (lease_until is null or lease_until < %s)
		order by lease_until limit %s for update skip locked""",
		(now, limit),
		as_dict=True,
	)
	recovered = 0
	for row in rows:
		owner = row.lease_owner or ""
		failures = int(row.infra_failures or 0) + (1 if owner.startswith(TAKEN) else 0)
		reason = (
			f"{now:%Y-%m-%d %H:%M:%S}: its worker stopped while advancing it (lease of {owner} lapsed)"
			if owner.startswith(TAKEN)
			else f"{now:%Y-%m-%d %H:%M:%S}: its job never ran (lease of {owner or 'nobody'} lapsed)"
		)
		if failures >= MAX_INFRA_FAILURES:
			_fail_poisoned(row.name, failures, reason)
			continue
		new_owner = jobs.schedule_advance(row.name)
		frappe.db.sql(
			"""update `tabFlow Run` set lease_until=%s, lease_owner=%s, infra_failures=%s,
			last_infra_error=%s where name=%s""",
			(until(now=now), new_owner, failures, reason, row.name),
		)
		recovered += 1
	frappe.db.commit()
	return recovered


def record_failure(run: str, error: BaseException) -> None:
	"""An advance of `run` raised (after the database retries): count it, retry later with backoff, or
	fail the run visibly once the count reaches MAX_INFRA_FAILURES. Never raises."""
	from flow_engine.runtime.resilience import reset_connection

	try:
		reset_connection()
		row = frappe.db.sql(
			"select status, infra_failures from `tabFlow Run` where name=%s for update", (run,), as_dict=True
		)
		if not row or row[0].status in store.TERMINAL:
			frappe.db.commit()
			return
		failures = int(row[0].infra_failures or 0) + 1
		detail = "".join(traceback.format_exception(error, limit=12))[-4000:]
		if failures >= MAX_INFRA_FAILURES:
			_fail_poisoned(run, failures, detail)
		else:
			backoff = min(5 * 2 ** (failures - 1), 300)
			frappe.db.sql(
				"""update `tabFlow Run` set infra_failures=%s, last_infra_error=%s, lease_until=%s,
				lease_owner='retry' where name=%s""",
				(failures, detail, until(backoff), run),
			)
		frappe.db.commit()
	except Exception:
		reset_connection()  # the database is still away: the run keeps its lease and is recovered later


def _fail_poisoned(run: str, failures: int, detail: str) -> None:
	"""Fail a run that could not be advanced MAX_INFRA_FAILURES times; one Error Log entry."""
	last_line = next((line for line in reversed(detail.strip().splitlines()) if line.strip()), detail)
	message = (
		f"Run failed: advancing it failed {failures} times for a reason outside its steps "
		f"(database, worker or engine). Last error: {last_line.strip()[:500]}. "
		"Fix the cause, then retry the run."
	)
	now = clock.now()
	frappe.db.sql(
		"""update `tabFlow Run` set status='failed', error=%s, completed_at=%s, modified=%s,
		infra_failures=%s, last_infra_error=%s, lease_until=null, lease_owner=null where name=%s""",
		(message, now, now, failures, detail, run),
	)
	store.cancel_pending(run)
	frappe.log_error(
		title=f"flow_engine: run {run} failed after {failures} infrastructure failures", message=detail
	)
	record = store.load_run(run)  # alerts and admission hear of it like of any failure
	if record is not None:
		lifecycle.run_ended(record)
