"""What follows a run's end, wherever it ends (a failed step, a cancel, a completion, a runaway stop).

`runs.save` calls `run_ended` once, in the transaction that writes the run's terminal status, so what a
listener records commits (or rolls back) with that status. A listener with effects outside the database
(email, another run's job) defers them with `frappe.db.after_commit`. Listeners must not raise: a
failing alert never keeps a run from ending.
"""

from __future__ import annotations

import frappe

from flow_engine.runtime.store import RunRecord


def _listeners() -> list:
	return []


def run_ended(record: RunRecord) -> None:
	for listener in _listeners():
		try:
			listener(record)
		except Exception:
			frappe.log_error(title=f"flow_engine: after run {record.name} ended ({listener.__module__})")
