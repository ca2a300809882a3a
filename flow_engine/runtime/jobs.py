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


def schedule_advance(run: str) -> None:
	"""Advance `run` after commit. Runs started in one transaction share jobs (bulk starts are cheap)."""
	pending = transaction_buffer("flow_engine_to_advance", _dispatch_advances, list)
	if run not in pending:
		pending.append(run)


def _dispatch_advances() -> None:
	pending = take_buffer("flow_engine_to_advance", list)
	try:
		if inline_mode():
			from flow_engine.runtime.runs import advance

			for run in pending:
				advance(run)
			return
		for start in range(0, len(pending), ADVANCE_BATCH):
			frappe.enqueue(
				"flow_engine.runtime.runs.advance_many",
				queue=QUEUE,
				runs=pending[start : start + ADVANCE_BATCH],
			)
	except Exception:
		# the runs are durable in the database; the scheduler's sweep picks them up again
		frappe.log_error(title="flow_engine: could not dispatch run advances")


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
