"""The scheduler: claim due Flow Step Pending rows atomically and fire them.

- `tick` (cron, every minute): reclaim expired row leases, fire due schedules, drain every due row,
  re-dispatch runs whose lease lapsed (see leases.py), cancel or alert on runs past their run deadline
  (deadlines.py), and start the precision timer when something is due soon. Each phase rides out
  database trouble (resilience.py) and one failing phase does not stop the others.
- `claim_due` takes rows with `SELECT … FOR UPDATE SKIP LOCKED` and marks them `running` with a
  claim token and a lease, so overlapping ticks and workers never take the same row twice. A fire job
  renews the leases of the rows it has not reached yet; a lapsed lease whose job is still queued is
  extended, not reclaimed. `claims` counts how often a row was claimed since it was armed (lease
  reclaims); step retries count in `attempts` and never make a row look abandoned.
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
from contextlib import suppress

import frappe
from frappe.utils import add_to_date, cint

from flow_engine.runtime import clock, identity, jobs, leases, resilience, runs, steps, store, templates

BATCH = 500
FIRE_CHUNK = 100  # rows a fire job claims at a time
LEASE_SECONDS = 60
MAX_CLAIMS = 5
FIRE_JOB = "flow_engine_fire"
TIMER_RECOVER_SECONDS = 2.0  # how often the timer looks for runs whose lease lapsed
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
	from flow_engine.runtime.admission import admit_all as admit_queued
	from flow_engine.runtime.alerts import flush_digests
	from flow_engine.runtime.children import resume_lost as resume_lost_children
	from flow_engine.runtime.deadlines import enforce as enforce_deadlines
	from flow_engine.runtime.schedules import fire_due as fire_schedules
	from flow_engine.runtime.waits import resume_lost as resume_lost_waits

	result = {}
	for key, phase in (
		("reclaimed", reclaim_expired),
		("schedules", fire_schedules),
		("claimed", drain_due),
		("recovered_runs", lambda: runs.recover_lost_runs(force=True)),
		("admitted", admit_queued),  # queued runs of flows with room (rate windows; safety net)
		("deadlines", enforce_deadlines),  # open runs past their run deadline: cancel, or alert once
		("alert_digests", flush_digests),
		("resumed_waits", resume_lost_waits),  # wait_for steps whose resume job was lost
		("resumed_children", resume_lost_children),  # child runs whose end went unheard (lost job)
	):
		try:
			result[key] = resilience.retrying(phase)
		except Exception:
			resilience.reset_connection()
			frappe.log_error(title=f"flow_engine: scheduler tick could not {key.replace('_', ' ')}")
			result[key] = None
	with suppress(Exception):
		ensure_timer()
	return result


def claim_due(limit: int = BATCH, now: datetime.datetime | None = None) -> tuple[str, list[dict]]:
	"""Claim up to `limit` due rows; returns (claim token, rows) and commits the claim."""
	now = now or clock.now()
	token = frappe.generate_hash(length=16)
	leases.read_committed()
	rows = select_due(now, limit)
	if rows:
		names = [row.name for row in rows]
		frappe.db.sql(
			"""update `tabFlow Step Pending` set status='running', claimed_at=%s, lease_until=%s, claimed_by=%s,
			claims=claims+1, modified=%s where name in %s""",
			(now, add_to_date(now, seconds=_lease_seconds()), token, now, tuple(names)),
		)
	frappe.db.commit()
	return token, rows


def select_due(now: datetime.datetime, limit: int) -> list[dict]:
	"""Lock up to `limit` due rows; rows another tick has locked are skipped, never waited for."""
	return frappe.db.sql(
		"""select name, run, step_id, purpose, attempts, claims from `tabFlow Step Pending`
		where status='pending' and trigger_at <= %s order by trigger_at limit %s for update skip locked""",
		(now, limit),
		as_dict=True,
	)


FIRE_JOBS = jobs.Claimer("flow_engine.runtime.scheduler.fire_job", "flow_engine:fire_jobs_queued", FIRE_JOB)


def drain_due(inline: bool | None = None, now: datetime.datetime | None = None) -> int:
	"""Fire every due row: here when inline (tests, the CLI), else in fire jobs on the workers.

	Returns the rows fired here, or the due rows handed to fire jobs (they claim their own)."""
	inline = jobs.inline_mode() if inline is None else inline
	if not inline:
		return hand_to_fire_jobs(now)
	total = 0
	while True:
		fired = fire_due_here(BATCH, now)
		total += fired
		if fired < BATCH:
			return total


def fire_due_here(limit: int, now: datetime.datetime | None = None) -> int:
	"""Claim up to `limit` due rows and fire them in this process; returns how many were claimed."""
	token, rows = claim_due(limit, now)
	if rows:
		fire_batch([row.name for row in rows], token, {row.name: row.run for row in rows})
	return len(rows)


def count_due(now: datetime.datetime | None = None, limit: int = 1000) -> int:
	return frappe.db.sql(
		"""select count(*) from (select name from `tabFlow Step Pending` where status='pending'
		and trigger_at <= %s limit %s) due""",
		(now or clock.now(), limit),
	)[0][0]


def hand_to_fire_jobs(now: datetime.datetime | None = None) -> int:
	"""Queue fire jobs for the due rows (one per FIRE_CHUNK rows, at most FIRE_JOBS.max_queued waiting);
	returns how many rows are due (counted up to the rows those jobs take in their first claims)."""
	due = count_due(now, FIRE_CHUNK * FIRE_JOBS.max_queued)
	if due:
		jobs.ensure_jobs(FIRE_JOBS, -(-due // FIRE_CHUNK))
	return due


def fire_job(pool_id: str | None = None) -> int:
	"""Worker job: claim due rows a chunk at a time and fire them until none are due. Every job start
	costs a Frappe site initialisation, so one job serves a whole backlog; after POOL_JOB_SECONDS it
	hands over to a fresh job (other jobs of the queue get their turn, a successor carries on), and a
	full chunk asks for a second job so an idle worker joins in."""
	jobs.job_started(FIRE_JOBS, pool_id)
	deadline = time.monotonic() + runs.POOL_JOB_SECONDS
	fired = 0
	while True:
		try:
			claimed = resilience.retrying(fire_due_here, FIRE_CHUNK)
		except Exception:
			resilience.reset_connection()  # the database stays away: claimed rows' leases lapse
			break
		fired += claimed
		if claimed < FIRE_CHUNK:
			break
		with suppress(Exception):  # more are due: an idle worker joins in (or a successor carries on)
			jobs.ensure_jobs(FIRE_JOBS, 1)
		if time.monotonic() > deadline:
			break
	return fired


GROUP_ROWS = 50  # rows fired in one transaction (one commit; their runs stay locked until it)


def fire_batch(names: list[str], token: str, run_of: dict[str, str] | None = None) -> None:
	"""Fire claimed rows, a group of them per transaction, renewing the leases of the rows not reached
	yet; then make the external calls their steps began, together. `run_of`: each row's run, when
	the claim read it.

	A group whose firing raises is rolled back whole and its rows fired one by one, each riding out
	database trouble on its own: one bad row costs its neighbours a second try, never their step."""
	renewed = time.monotonic()
	with_calls: list = []
	run_of = run_of or {}
	for start in range(0, len(names), GROUP_ROWS):
		group = names[start : start + GROUP_ROWS]
		if len(group) == 1 or not fire_group(group, token, with_calls, run_of):
			for name in group:
				_fire_one(name, token, with_calls, run_of.get(name))
		if time.monotonic() - renewed > _lease_seconds() / 3:
			with suppress(Exception):
				resilience.retrying(_renew, names[start + len(group) :], token)
			renewed = time.monotonic()
	runs.make_calls(with_calls)
	runs.after_job()


def fire_group(group: list[str], token: str, with_calls: list, run_of: dict[str, str]) -> bool:
	"""Fire `group` in one transaction: its runs and rows locked in two statements, their attempts
	and the rows' outcomes written in one each, one commit (runs.in_one_transaction). False, with
	everything rolled back, when anything raised."""

	def work(collected: list) -> None:
		preloaded = _lock_group(group, run_of)
		for name in group:
			fire(name, token, collected, run_of.get(name), preloaded)
		_flush_finished()

	return runs.in_one_transaction(work, with_calls, finished=[])


def _lock_group(group: list[str], run_of: dict[str, str]) -> dict:
	"""The group's runs, then its rows, each locked in one statement (the lock order of `fire`: run,
	then row). A run with two rows in the group is left to `fire` to load (it changes in between)."""
	names = [run_of[name] for name in group if run_of.get(name)]
	once = [run for run in names if names.count(run) == 1]
	runs_found = store.load_runs(once) if once else {}
	rows = frappe.db.sql(
		"""select name, step_id, purpose, status, claimed_by, attempts from `tabFlow Step Pending`
		where name in %s order by name for update""",
		(tuple(group),),
		as_dict=True,
	)
	return {"runs": runs_found, "rows": {row.name: row for row in rows}}


def _flush_finished() -> None:
	"""Write the outcomes of the rows a fire group fired, in one statement."""
	group = store.transaction_group()
	finished = group["finished"] if group else []
	if not finished:
		return
	group["finished"] = []
	case = "case name " + " ".join(["when %s then %s"] * len(finished)) + " end"
	values = [value for column in (1, 2, 3) for row in finished for value in (row[0], row[column])]
	frappe.db.sql(
		f"""update `tabFlow Step Pending` set status = {case}, executed_at = {case}, modified = executed_at,
		last_error = coalesce({case}, last_error) where name in %s""",
		(*values, tuple(row[0] for row in finished)),
	)


def _fire_one(name: str, token: str, with_calls: list, run_name: str | None) -> None:
	try:
		resilience.retrying(fire, name, token, with_calls, run_name)
	except Exception as error:
		resilience.reset_connection()
		_release(name, token, error)


def _renew(names: list[str], token: str) -> None:
	if names:
		now = clock.now()
		frappe.db.sql(
			"""update `tabFlow Step Pending` set lease_until=%s where name in %s and status='running'
			and claimed_by=%s""",
			(add_to_date(now, seconds=_lease_seconds()), tuple(names), token),
		)
		frappe.db.commit()


def _release(name: str, token: str, error: BaseException) -> None:
	"""A row whose firing failed outside its step goes back to `pending` for the next claim (its
	`claims` bound abandons it eventually); its run counts an infrastructure failure."""
	try:
		run = frappe.db.get_value("Flow Step Pending", name, "run")
		frappe.db.sql(
			"""update `tabFlow Step Pending` set status='pending', claimed_by=null, lease_until=null,
			last_error=%s where name=%s and status='running' and claimed_by=%s""",
			(f"firing failed: {error.__class__.__name__}: {error}"[:1000], name, token),
		)
		frappe.db.commit()
		if run:
			leases.record_failure(run, error)
	except Exception:
		resilience.reset_connection()  # the database is away: the row's lease lapses and it is reclaimed


def fire(
	name: str,
	token: str,
	collect: list | None = None,
	run_name: str | None = None,
	preloaded: dict | None = None,
) -> str | None:
	"""Execute the step of one claimed row; then keep advancing its run. Returns the row's status.

	External calls the run begins are made here, or left for the caller when it passes `collect`.
	`run_name`: the row's run as its claim read it (a row never changes run); `preloaded`: the run
	and row already locked by a fire group (`_lock_group`)."""
	if not run_name:
		found = frappe.db.sql("select run from `tabFlow Step Pending` where name=%s", (name,))
		run_name = found[0][0] if found else None
	if not run_name:
		return None
	if preloaded and run_name in preloaded["runs"]:
		record = preloaded["runs"][run_name]
		row = [preloaded["rows"][name]] if name in preloaded["rows"] else []
	else:
		record = store.load_run(run_name, lock=True)  # lock order: run, then row
		row = locked_row(name)
	if not row or row[0].status != "running" or row[0].claimed_by != token:
		runs.commit_point()
		return row[0].status if row else None  # reclaimed and taken by someone else
	row = row[0]
	now = clock.now()
	if record is None or record.is_terminal:
		_finish_row(name, "cancelled", now)
		runs.commit_point()
		return "cancelled"
	record.definition = templates.definition_for(record.template, record.template_version, record.scope)
	state = record.states.get(row.step_id) or {}
	outcome = "completed"
	if not record.definition.has_step(row.step_id):
		outcome = "cancelled"
	elif row.purpose in ("reminder", "escalation", "timeout") and state.get("waiting_for") == "approval":
		from flow_engine.runtime import approvals

		step = record.definition.step(row.step_id)
		outcome = approvals.fire(record, step, state, name, row.purpose, now)
	elif row.purpose == "timeout":
		if state.get("status") == "waiting" and state.get("timeout_row") == name and state.get("wait"):
			from flow_engine.runtime import waits

			waits.on_timeout(record, record.definition.step(row.step_id), name)  # the timeout branch
		elif state.get("status") == "waiting" and state.get("timeout_row") == name:
			step = record.definition.step(row.step_id)
			message = f"timed out after {step.timeout:g}s waiting to be completed"
			state.pop("token", None)
			steps.fail_step(record, step, message)  # its on_error applies (continue / error branch)
	elif state.get("status") != "scheduled" or state.get("pending") != name:
		outcome = "cancelled"  # the step moved on (cancelled, retried elsewhere): never fire twice
	elif stop := runs.over_limits(record):
		steps.fail_run(record, stop)
		outcome = "cancelled"
	else:
		step = record.definition.step(row.step_id)
		try:
			user = runs.run_as(record.template)
		except identity.RunAsError as error:
			steps.fail_run(record, str(error))
			user = None
			outcome = "cancelled"
		if user:
			with jobs.acting_as(user):
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
		runs.commit(record)
	else:
		record = runs.drive(record)  # go on with the next waves in the same transaction
	if record is not None and record.calls:
		if collect is None:
			runs.make_calls([record])
		else:
			collect.append(record)
	return outcome or "pending"


def locked_row(name: str) -> list[dict]:
	"""The pending row, locked (after its run: the lock order is run, then row)."""
	return frappe.db.sql(
		"select name, step_id, purpose, status, claimed_by, attempts from `tabFlow Step Pending` where name=%s "
		"for update",
		(name,),
		as_dict=True,
	)


def _finish_row(name: str, status: str, now: datetime.datetime, error: str | None = None) -> None:
	group = store.transaction_group()
	if group is not None:
		group["finished"].append((name, status, now, error))  # written by _flush_finished
		return
	frappe.db.sql(
		"""update `tabFlow Step Pending` set status=%s, executed_at=%s, modified=%s,
		last_error=coalesce(%s, last_error) where name=%s""",
		(status, now, now, error, name),
	)


def reclaim_expired(now: datetime.datetime | None = None) -> int:
	"""Rows stuck in `running` past their lease (their worker died) go back to `pending`."""
	now = now or clock.now()
	rows = frappe.db.sql(
		"""select name, run, step_id, claims, claimed_by from `tabFlow Step Pending`
		where status='running' and lease_until < %s for update skip locked""",
		(now,),
		as_dict=True,
	)
	for row in rows:  # (rows are claimed by the job that fires them, which renews their leases)
		if row.claims >= MAX_CLAIMS:
			frappe.db.sql(
				"""update `tabFlow Step Pending` set status='failed', last_error=%s, modified=%s where name=%s""",
				(
					f"claimed {row.claims} times without finishing (workers died or timed out)",
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
	if not handover and frappe.cache.exists(TIMER_LOCK):  # (exists makes the key itself)
		if not _timer_died():
			return
		frappe.cache.delete(_timer_key())  # held by a timer whose worker was killed: start another now
	due = next_due()
	if due is None or due > clock.now() + datetime.timedelta(seconds=HORIZON_SECONDS):
		return
	try:
		from frappe.utils.background_jobs import get_job

		job_id = f"{TIMER_JOB_ID}_{slot}"
		job = get_job(job_id)
		if jobs.waits(job):
			return  # one waits already
		if job is not None:
			# finished or failed; or "started" while no timer holds the lock: its worker died with it (RQ
			# would keep calling it started for minutes, and deduplication would refuse a successor)
			job.delete()
		frappe.enqueue(
			"flow_engine.runtime.scheduler.timer_loop",
			queue="long",
			timeout=TIMER_LIFETIME + 120,
			job_id=job_id,
			at_front=True,  # due steps must not wait behind reports or index rebuilds in the long queue
			slot=slot,
		)
	except Exception:
		pass  # the queue (Redis) is away; the minute tick starts the timer once it is back


def _timer_died() -> bool:
	"""Whether the timer holding the lock ran in a worker process on this host that no longer exists.

	A worker killed with SIGKILL leaves the lock until its TTL lapses and RQ calling the job started
	for minutes; when the job ended nothing else would ask for a timer before the minute tick."""
	import os
	import socket

	from frappe.utils.background_jobs import get_job, get_redis_conn
	from rq.worker import Worker

	try:
		for slot in (0, 1):
			job = get_job(f"{TIMER_JOB_ID}_{slot}")
			if job is None or job.get_status() != "started" or not job.worker_name:
				continue
			worker = Worker.find_by_key(
				Worker.redis_worker_namespace_prefix + job.worker_name, connection=get_redis_conn()
			)
			if worker is None:
				return True
			if worker.hostname == socket.gethostname() and worker.pid:
				try:
					os.kill(worker.pid, 0)
				except ProcessLookupError:
					return True
				except PermissionError:
					pass  # alive, another user's
	except Exception:
		return False
	return False


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
	recovered_at = 0.0
	try:
		while time.monotonic() < deadline:
			try:
				frappe.cache.set(key, token, ex=TIMER_TTL)
				frappe.db.rollback()  # a fresh snapshot each round
				if time.monotonic() - recovered_at > TIMER_RECOVER_SECONDS:
					runs.recover_lost_runs(force=True)
					recovered_at = time.monotonic()
				due = next_due()
				now = clock.now()
			except Exception as error:
				if not resilience.is_transient(error):
					raise
				resilience.reset_connection()  # the database is away: keep the lock and try again
				time.sleep(0.5)
				continue
			if due is not None and due <= now:
				fired = fire_due_here(FIRE_CHUNK)  # close to their due time, here
				if fired == FIRE_CHUNK:
					hand_to_fire_jobs()  # a backlog: the workers share it (fire jobs)
				claimed += fired
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
