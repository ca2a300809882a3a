"""The failure inbox and run replays (Flow Managers): grouped failures, bulk actions, replays."""

from __future__ import annotations

import frappe

from flow_engine.api.permissions import json_arg, require_flow_manager
from flow_engine.runtime import inbox


def _runs(runs) -> list[str]:
	names = json_arg(runs, "runs")
	if isinstance(names, str):
		names = [names]
	if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
		frappe.throw(frappe._("'runs' must be a list of Flow Run names"))
	for name in names:
		frappe.has_permission("Flow Run", "read", doc=name, throw=True)
	return names


@frappe.whitelist()
def failure_inbox(template: str | None = None) -> dict:
	"""Failed runs grouped by flow, then by failed step and error."""
	require_flow_manager()
	frappe.has_permission("Flow Run", "read", throw=True)
	return inbox.failures(template or None)


@frappe.whitelist(methods=["POST"])
def retry_runs(runs) -> dict:
	require_flow_manager()
	return inbox.retry(_runs(runs))


@frappe.whitelist(methods=["POST"])
def cancel_runs(runs, reason: str | None = None) -> dict:
	require_flow_manager()
	return inbox.cancel(_runs(runs), reason)


@frappe.whitelist(methods=["POST"])
def skip_failed_steps(runs) -> dict:
	"""Mark each run's failed step done and let the run continue after it."""
	require_flow_manager()
	return inbox.skip_step(_runs(runs))


@frappe.whitelist(methods=["POST"])
def replay_from_step(run: str, step_id: str, payload: dict | str | None = None) -> dict:
	"""Run an ended run again from `step_id`, with `payload` as that step's edited input."""
	require_flow_manager()
	_runs([run])
	return inbox.replay_from_step(run, step_id, payload)


@frappe.whitelist()
def step_input(run: str, step_id: str) -> dict:
	"""The input a replay of `step_id` starts from (its last attempt's, else its payload)."""
	require_flow_manager()
	frappe.has_permission("Flow Run", "read", doc=run, throw=True)
	return inbox.working_payload(run, step_id)


@frappe.whitelist(methods=["POST"])
def replay_run(run: str, version: str = "current") -> str:
	"""A new run from `run`'s trigger (document, input, starting variables) on the current or the
	original version."""
	require_flow_manager()
	frappe.has_permission("Flow Run", "read", doc=run, throw=True)
	return inbox.replay_run(run, version)


@frappe.whitelist()
def compare_runs(first: str, second: str) -> dict:
	require_flow_manager()
	for run in (first, second):
		frappe.has_permission("Flow Run", "read", doc=run, throw=True)
	return inbox.compare_runs(first, second)
