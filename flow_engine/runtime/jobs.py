"""How work reaches the workers: after-commit enqueues, inline mode, acting as the flow's user."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import frappe

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


ADVANCE_BATCH = 50  # runs per worker job: Frappe pays ~0.3-0.5 s to start each job
ADVANCE_JOB = "flow_engine_advance"
TO_ADVANCE = "flow_engine_to_advance"


class AdvanceBuffer(list):
	"""Runs to advance once this transaction commits, with the token naming their jobs."""

	def __init__(self):
		super().__init__()
		self.token = frappe.generate_hash(length=12)


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


def advance_job_id(owner: str) -> str:
	return f"{ADVANCE_JOB}:{owner}"


def schedule_advance(run: str) -> str:
	"""Have `run` advanced after commit; returns the lease owner (the job that will advance it).

	Runs scheduled in one transaction share jobs of up to ADVANCE_BATCH runs (bulk starts are cheap).
	The caller writes the returned owner with a lease on the run row in the same transaction (see
	`leases.grant`), so a run whose job is lost is found and handed to another worker.
	"""
	pending = transaction_buffer(TO_ADVANCE, _dispatch_advances, AdvanceBuffer)
	if run in pending:
		index = pending.index(run)
	else:
		index = len(pending)
		pending.append(run)
	return f"{pending.token}:{index // ADVANCE_BATCH}"


def _dispatch_advances() -> None:
	pending = take_buffer(TO_ADVANCE, AdvanceBuffer)
	try:
		if inline_mode():
			from flow_engine.runtime.runs import advance

			for run in pending:
				advance(run)
			return
		for batch, start in enumerate(range(0, len(pending), ADVANCE_BATCH)):
			frappe.enqueue(
				"flow_engine.runtime.runs.advance_many",
				queue=QUEUE,
				job_id=advance_job_id(f"{pending.token}:{batch}"),
				runs=pending[start : start + ADVANCE_BATCH],
				owner=f"{pending.token}:{batch}",
			)
	except Exception:
		# the runs are durable and leased: once their lease lapses the timer or the tick re-dispatches them
		frappe.log_error(title="flow_engine: could not dispatch run advances")


def job_waiting(job_id: str) -> bool:
	"""Whether an RQ job of this site is still queued (not yet picked up by a worker)."""
	from frappe.utils.background_jobs import get_job_status

	try:
		return str(get_job_status(job_id) or "") in ("queued", "deferred", "scheduled")
	except Exception:
		return False  # Redis unreachable: treat the job as lost; re-dispatching is safe


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
