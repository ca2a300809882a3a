"""How work reaches the workers: after-commit enqueues, inline mode, acting as the flow's user."""

from __future__ import annotations

import contextlib

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


def schedule_advance(run: str) -> None:
	after_commit("flow_engine.runtime.runs.advance", run=run)


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
