"""How work reaches the workers: after-commit enqueues, inline mode, acting as the flow's user."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import frappe

from flow_engine.runtime import consumer

QUEUE = "default"


def inline_mode() -> bool:
	"""Run advances in-process right after commit instead of in a worker (tests, CLI --inline)."""
	return bool(frappe.flags.flow_engine_inline or frappe.conf.get("flow_engine_inline_runs"))


def after_commit(method: str, queue: str = QUEUE, **kwargs) -> None:
	"""Enqueue `method` once the current transaction commits; nothing happens if it rolls back."""
	inline = inline_mode()

	def dispatch():
		try:
			if inline:
				frappe.get_attr(method)(**kwargs)
			else:
				frappe.enqueue(method, queue=queue, **kwargs)
		except Exception:
			# the run is durable in the database; the scheduler's sweep picks it up again
			frappe.log_error(title=f"flow_engine: could not dispatch {method}")

	frappe.db.after_commit.add(dispatch)


ADVANCE_BATCH = 50  # runs a pool job claims at a time
TO_ADVANCE = "flow_engine_to_advance"
POOL = "pool"  # the lease owner of a run waiting for a pool job to claim it
POOL_QUEUED = "flow_engine:pool_jobs_queued"


def transaction_buffer(attr: str, flush: Callable[[], None], empty: Callable[[], Any]) -> Any:
	"""This transaction's buffer in `frappe.local.<attr>`, handed to `flush` after commit.

	A rollback drops Frappe's after-commit callbacks, so the next call finds `flush` gone and starts
	a fresh buffer: nothing queued in a rolled-back transaction goes out.
	"""
	buffer = getattr(frappe.local, attr, None)
	if buffer is None or flush not in frappe.db.after_commit._functions:
		buffer = empty()
		setattr(frappe.local, attr, buffer)
		frappe.db.after_commit.add(flush)
	return buffer


def take_buffer(attr: str, empty: Callable[[], Any]) -> Any:
	"""What `transaction_buffer` collected (for its flush); the next transaction starts afresh."""
	buffer = getattr(frappe.local, attr, None)
	setattr(frappe.local, attr, None)
	return buffer if buffer is not None else empty()


def schedule_advance(run: str, started: Any = None) -> str:
	"""Have `run` advanced after commit; returns its lease owner, POOL.

	The caller writes the owner with a lease on the run row in the same transaction (`leases.grant`).
	After commit a pool job is queued unless enough already wait: pool jobs claim leased runs in
	batches (`FOR UPDATE SKIP LOCKED`) until none are left, so a thousand saves that each start a run
	cost a handful of worker jobs, not a thousand (every Frappe job pays its start-up).
	`started`: in inline mode, the record of a run the caller has just inserted (runs.advance_started).
	"""
	pending = transaction_buffer(TO_ADVANCE, _dispatch_advances, dict)
	if pending.get(run) is None:
		pending[run] = started
	return POOL


def _dispatch_advances() -> None:
	pending = take_buffer(TO_ADVANCE, dict)
	try:
		if inline_mode():
			from flow_engine.runtime.runs import advance

			for run, started in pending.items():
				advance(run, started)
			return
		if consumer.wake(frappe.local.site):
			return  # a long-lived consumer takes them now (it asks for pool jobs if they are many)
		ensure_pool_jobs(-(-len(pending) // ADVANCE_BATCH))
	except Exception:
		# the runs are durable and leased: once their lease lapses the timer or the tick re-dispatches them
		frappe.log_error(title="flow_engine: could not dispatch run advances")


@dataclass(frozen=True)
class Claimer:
	"""A kind of worker job that claims its own work from the database until none is left (pool jobs
	claim leased runs, fire jobs claim due pending rows): one job start serves many rows.

	Ids of queued jobs of the kind are kept in a Redis set, checked against RQ, so a burst of commits
	queues a few jobs, not one each."""

	method: str
	queued_key: str
	id_prefix: str
	max_queued: int = 4  # (more would only wait behind each other)


POOL_JOBS = Claimer("flow_engine.runtime.runs.advance_pool", POOL_QUEUED, "flow_engine_pool")


def jobs_queued(kind: Claimer = POOL_JOBS) -> int:
	"""How many jobs of `kind` wait in the queue, as RQ itself says (ids of jobs that started, ended or
	vanished are dropped from the set here)."""
	from frappe.utils.background_jobs import create_job_id, get_redis_conn
	from rq.job import Job

	try:
		ids = sorted(
			member.decode() if isinstance(member, bytes) else member
			for member in frappe.cache.smembers(kind.queued_key)
		)
		if not ids:
			return 0
		found = Job.fetch_many([create_job_id(job_id) for job_id in ids], connection=get_redis_conn())
		gone = [job_id for job_id, job in zip(ids, found, strict=True) if not waits(job)]
		if gone:
			frappe.cache.srem(kind.queued_key, *gone)  # (the wrapper's set methods make the key)
		return len(ids) - len(gone)
	except Exception:
		return 0  # Redis is away: queue another job, which is only wasteful


def ensure_jobs(kind: Claimer, wanted: int = 1) -> int:
	"""Queue jobs of `kind` until `wanted` (at most kind.max_queued) wait; returns how many were queued."""
	queued = 0
	for _ in range(max(0, min(wanted, kind.max_queued) - jobs_queued(kind))):
		job_id = f"{kind.id_prefix}:{frappe.generate_hash(length=12)}"
		frappe.enqueue(kind.method, queue=QUEUE, job_id=job_id, pool_id=job_id)
		queued += 1
		try:
			frappe.cache.sadd(kind.queued_key, job_id)
		except Exception:
			pass
	return queued


def job_started(kind: Claimer, job_id: str | None) -> None:
	if job_id:
		try:
			frappe.cache.srem(kind.queued_key, job_id)
		except Exception:
			pass


def ensure_pool_jobs(wanted: int = 1) -> int:
	return ensure_jobs(POOL_JOBS, wanted)


def pool_job_started(pool_id: str | None) -> None:
	job_started(POOL_JOBS, pool_id)


WAITING = ("queued", "deferred", "scheduled")


def waits(job) -> bool:
	"""Whether an RQ job will still run: queued and really in its queue (a job a worker took off the
	queue and died with still reads "queued"), or deferred/scheduled."""
	if job is None:
		return False
	status = job.get_status(refresh=False)
	if status == "queued":
		return job.get_position() is not None
	return status in WAITING


@contextlib.contextmanager
def acting_as(user: str | None):
	"""Run steps with the flow's `run_as` user's permissions, then restore the caller."""
	user = user or "Administrator"
	previous = frappe.session.user if getattr(frappe.local, "session", None) else None
	if previous == user:
		yield
		return
	frappe.set_user(user)
	try:
		yield
	finally:
		if previous:
			frappe.set_user(previous)


@contextlib.contextmanager
def executing(run: str, template: str, doctype: str | None, name: str | None, depth: int):
	"""Mark a step as executing so documents it saves cannot re-trigger the same flow."""
	stack = getattr(frappe.local, "flow_engine_stack", None)
	if stack is None:
		stack = frappe.local.flow_engine_stack = []
	stack.append({"run": run, "template": template, "doctype": doctype, "name": name, "depth": depth})
	try:
		yield
	finally:
		stack.pop()


def current_execution() -> dict | None:
	stack = getattr(frappe.local, "flow_engine_stack", None) or []
	return stack[-1] if stack else None


def executing_templates_on(doctype: str, name: str) -> set[str]:
	stack = getattr(frappe.local, "flow_engine_stack", None) or []
	return {frame["template"] for frame in stack if frame["doctype"] == doctype and frame["name"] == name}
