"""What follows a run's end, wherever it ends (a failed step, a cancel, a completion, a runaway stop).

`runs.save` calls `run_ended` once, in the transaction that writes the run's terminal status, so what a
listener records commits (or rolls back) with that status. A listener with effects outside the database
(email, another run's job) defers them with `frappe.db.after_commit`. Listeners must not raise: a
failing alert never keeps a run from ending (a transient database error is raised: the
transaction is gone, and the caller retries the whole save).
"""

from __future__ import annotations

import frappe

from flow_engine.runtime import resilience
from flow_engine.runtime.store import RunRecord


def _listeners() -> list:
	from flow_engine.runtime import admission, alerts, approvals, children, waits

	return [
		alerts.on_run_ended,
		admission.run_ended,
		approvals.on_run_ended,
		children.on_run_ended,
		waits.run_ended,
	]


def run_ended(record: RunRecord) -> None:
	for listener in _listeners():
		try:
			listener(record)
		except Exception as error:
			if resilience.is_transient(error):
				raise  # the transaction is gone (deadlock, lost connection): the whole save is retried
			frappe.log_error(title=f"flow_engine: after run {record.name} ended ({listener.__module__})")
