"""The scheduler: claim due Flow Step Pending rows atomically and fire them.

- `tick` (cron, every minute): reclaim expired leases, drain every due row, re-dispatch stale runs,
  and start the precision timer when something is due soon.
- `claim_due` takes rows with `SELECT … FOR UPDATE SKIP LOCKED` and marks them `running` with a
  claim token and a lease, so overlapping ticks and workers never take the same row twice.
- `fire` executes a claimed row's step under the run lock, checking the claim token, so a row that
  was reclaimed after its worker died is fired by exactly one worker.
- `timer_loop` (queue "long"; one per site, held by a Redis lock, at most one queued: RQ job ids
  deduplicate it) polls for rows due within the next minute and fires them within a fraction of a
  second of their due time. It exits at once when nothing is due soon, after a few idle seconds once it
  has fired something, and after a two-minute lifetime it hands over to a successor queued behind the
  other jobs, so a bench whose one worker serves every queue is never held for long.
"""

from __future__ import annotations

import datetime
import time

import frappe
from frappe.utils import add_to_date, cint

from flow_engine.runtime import clock, jobs, runs, steps, store, templates

BATCH = 500
FIRE_CHUNK = 25  # at least this many rows per job (each worker job pays Frappe's start-up once)
MAX_FIRE_CHUNK = 250
LEASE_SECONDS = 300
MAX_CLAIMS = 5
STALE_RUN_MINUTES = 10
TIMER_LOCK = "flow_engine:timer"
TIMER_TTL = 15
TIMER_LIFETIME = 120
TIMER_IDLE_SECONDS = 5
HORIZON_SECONDS = 70
TIMER_JOB_ID = "flow_engine_timer"


def _lease_seconds() -> int:
	return cint(frappe.conf.get("flow_engine_lease_seconds")) or LEASE_SECONDS


def tick() -> dict:
	"""Cron entry point (every minute)."""
	from flow_engine.runtime.schedules import fire_due as fire_schedules

	reclaimed = reclaim_expired()
	scheduled = fire_schedules()
	fired = drain_due()
	stale = redispatch_stale_runs()
	ensure_timer()
	return {"reclaimed": reclaimed, "schedules": scheduled, "claimed": fired, "stale_runs": stale}


def claim_due(limit: int = BATCH, now: datetime.datetime | None = None) -> tuple[str, list[dict]]:
	"""Claim up to `limit` due rows; returns (claim token, rows) and commits the claim."""
	now = now or clock.now()
	token = frappe.generate_hash(length=16)
	rows = frappe.db.sql(
		"""select name, run, step_id, purpose, attempts from `tabFlow Step Pending`
		where status='pending' and trigger_at <= %s order by trigger_at limit %s for update skip locked""",
		(now, limit),
		as_dict=True,
	)
	if rows:
		names = [row.name for row in rows]
		frappe.db.sql(
			"""update `tabFlow Step Pending` set status='running', claimed_at=%s, lease_until=%s, claimed_by=%s,
			attempts=attempts+1, modified=%s where name in %s""",
			(now, add_to_date(now, seconds=_lease_seconds()), token, now, tuple(names)),
		)
	frappe.db.commit()
	return token, rows


def drain_due(inline: bool | None = None, now: datetime.datetime | None = None) -> int:
	"""Claim every due row (in batches, no cap) and fire them in workers (or here when inline)."""
	inline = jobs.inline_mode() if inline is None else inline
	total = 0
	while True:
		token, rows = claim_due(BATCH, now)
		if not rows:
			break
		total += len(rows)
		names = [row.name for row in rows]
		if inline:
			fire_batch(names, token)
		else:
			size = max(FIRE_CHUNK, min(MAX_FIRE_CHUNK, -(-len(names) // 4)))
			for start in range(0, len(names), size):
				frappe.enqueue(
					"flow_engine.runtime.scheduler.fire_batch",
					queue=jobs.QUEUE,
					names=names[start : start + size],
					token=token,
				)
		if len(rows) < BATCH:
			break
	return total


def fire_batch(names: list[str], token: str) -> None:
	for name in names:
		try:
			fire(name, token)
		except Exception:
			frappe.db.rollback()
			frappe.log_error(title=f"flow_engine: firing pending step {name} failed")


def fire(name: str, token: str) -> str | None:
	"""Execute the step of one claimed row; then keep advancing its run. Returns the row's status."""
	found = frappe.db.sql("select run from `tabFlow Step Pending` where name=%s", (name,))
	run_name = found[0][0] if found else None
	if not run_name:
		return None
	record = store.load_run(run_name, lock=True)  # lock order: run, then row
	row = frappe.db.sql(
		"select name, step_id, purpose, status, claimed_by, attempts from `tabFlow Step Pending` where name=%s "
		"for update",
		(name,),
		as_dict=True,
	)
	if not row or row[0].status != "running" or row[0].claimed_by != token:
		frappe.db.commit()
		return row[0].status if row else None  # reclaimed and taken by someone else
	row = row[0]
	now = clock.now()
	if record is None or record.is_terminal:
		_finish_row(name, "cancelled", now)
		frappe.db.commit()
		return "cancelled"
	record.definition = templates.definition_for(record.template, record.template_version)
	state = record.states.get(row.step_id) or {}
	outcome = "completed"
	if not record.definition.has_step(row.step_id):
		outcome = "cancelled"
	elif row.purpose == "timeout":
		if state.get("status") == "waiting" and state.get("timeout_row") == name:
			step = record.definition.step(row.step_id)
			message = f"timed out after {step.timeout:g}s waiting to be completed"
			state.update(status="failed", error=message, completed_at=now.isoformat(sep=" "))
			state.pop("token", None)
			steps.fail_run(record, f"Step '{step.id}' {message}")
	elif state.get("status") != "scheduled" or state.get("pending") != name:
		outcome = "cancelled"  # the step moved on (cancelled, retried elsewhere): never fire twice
	elif stop := runs.over_limits(record):
		steps.fail_run(record, stop)
		outcome = "cancelled"
	else:
		step = record.definition.step(row.step_id)
		with jobs.acting_as(runs._run_as(record.template)):
			result = steps.execute(record, step, pending_row=name)
		if result == "scheduled":
			outcome = None  # the same row now waits for the retry
		elif result == "failed":
			outcome = "failed"
	if outcome:
		_finish_row(
			name,
			outcome,
			now,
			record.states.get(row.step_id, {}).get("error") if outcome == "failed" else None,
		)
	runs.settle(record)
	if record.is_terminal:
		runs._commit(record)
	else:
		runs.drive(record)  # go on with the next waves in the same transaction
	return outcome or "pending"


def _finish_row(name: str, status: str, now: datetime.datetime, error: str | None = None) -> None:
	frappe.db.sql(
		"""update `tabFlow Step Pending` set status=%s, executed_at=%s, modified=%s,
		last_error=coalesce(%s, last_error) where name=%s""",
		(status, now, now, error, name),
	)


def reclaim_expired(now: datetime.datetime | None = None) -> int:
	"""Rows stuck in `running` past their lease (their worker died) go back to `pending`."""
	now = now or clock.now()
	rows = frappe.db.sql(
		"""select name, run, step_id, attempts from `tabFlow Step Pending`
		where status='running' and lease_until < %s for update skip locked""",
		(now,),
		as_dict=True,
	)
	for row in rows:
		if row.attempts >= MAX_CLAIMS:
			frappe.db.sql(
				"""update `tabFlow Step Pending` set status='failed', last_error=%s, modified=%s where name=%s""",
				(
					f"claimed {row.attempts} times without finishing (workers died or timed out)",
					now,
					row.name,
				),
			)
			jobs.after_commit(
				"flow_engine.runtime.scheduler.fail_abandoned", run=row.run, step_id=row.step_id, row=row.name
			)
		else:
			frappe.db.sql(
				"""update `tabFlow Step Pending` set status='pending', claimed_by=null, lease_until=null,
				last_error=%s, modified=%s where name=%s""",
				(f"reclaimed at {now:%Y-%m-%d %H:%M:%S}: the worker's lease expired", now, row.name),
			)
	frappe.db.commit()
	return len(rows)


def fail_abandoned(run: str, step_id: str, row: str) -> None:
	record = store.load_run(run, lock=True)
	if record and not record.is_terminal and (record.states.get(step_id) or {}).get("pending") == row:
		record.states[step_id].update(
			status="failed", error="its worker kept dying; see Flow Step Pending " + row
		)
		steps.fail_run(record, f"Step '{step_id}' failed: its worker kept dying (pending row {row})")
		store.save_run(record)
	frappe.db.commit()


def redispatch_stale_runs() -> int:
	"""Runs left `running` with no progress (their job was lost) are advanced again."""
	cutoff = add_to_date(clock.now(), minutes=-STALE_RUN_MINUTES)
	names = frappe.db.sql_list(
		"select name from `tabFlow Run` where status='running' and modified < %s limit 500", (cutoff,)
	)
	for name in names:
		jobs.schedule_advance(name)
	frappe.db.commit()
	return len(names)


def next_due() -> datetime.datetime | None:
	return frappe.db.sql("select min(trigger_at) from `tabFlow Step Pending` where status='pending'")[0][0]


def _timer_key() -> str:
	return frappe.cache.make_key(TIMER_LOCK)


def ensure_timer(slot: int = 0, handover: bool = False) -> None:
	"""Start the precision timer if a row is due within the next minute and no timer holds the lock.

	At most one timer job waits in the queue (its RQ job id deduplicates it); a timer handing over at
	the end of its lifetime queues its successor in the other of two slots (two job ids), since its own
	job is still running under its id.
	"""
	if jobs.inline_mode() or frappe.conf.get("flow_engine_disable_timer"):
		return
	if not handover and frappe.cache.exists(_timer_key()):
		return
	due = next_due()
	if due is None or due > clock.now() + datetime.timedelta(seconds=HORIZON_SECONDS):
		return
	frappe.enqueue(
		"flow_engine.runtime.scheduler.timer_loop",
		queue="long",
		timeout=TIMER_LIFETIME + 120,
		job_id=f"{TIMER_JOB_ID}_{slot}",
		deduplicate=True,
		slot=slot,
	)


def timer_loop(seconds: float = TIMER_LIFETIME, slot: int = 0) -> int:
	"""Fire rows close to their due time while any are due soon; return how many were claimed.

	One timer per site at a time (a Redis lock with a short TTL, refreshed every round). It exits at
	once when nothing is due within the horizon, a few idle seconds after its last firing (the minute
	tick or the next scheduled step starts it again), or after its lifetime, handing over to a
	successor when work is still due soon.
	"""
	key, token = _timer_key(), frappe.generate_hash(length=12)
	if not frappe.cache.set(key, token, nx=True, ex=TIMER_TTL):
		return 0  # another timer is running
	deadline = time.monotonic() + seconds
	claimed = 0
	idle_since = time.monotonic() - TIMER_IDLE_SECONDS  # nothing near at the start: exit at once
	try:
		while time.monotonic() < deadline:
			frappe.cache.set(key, token, ex=TIMER_TTL)
			frappe.db.rollback()  # a fresh snapshot each round
			due = next_due()
			now = clock.now()
			if due is not None and due <= now:
				claimed += drain_due(inline=True)
				idle_since = time.monotonic()
				continue
			if due is None or (due - now).total_seconds() > HORIZON_SECONDS:
				if time.monotonic() - idle_since > TIMER_IDLE_SECONDS:
					break
				time.sleep(0.25)
				continue
			idle_since = time.monotonic()
			time.sleep(min(max((due - now).total_seconds(), 0.01), 0.25))
	finally:
		if (frappe.cache.get(key) or b"").decode() == token:
			frappe.cache.delete(key)
	frappe.db.commit()
	# lifetime over, or a step was scheduled while this timer was letting go of the lock: hand over
	ensure_timer(slot=1 - slot, handover=True)
	return claimed
