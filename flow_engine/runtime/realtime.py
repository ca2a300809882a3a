"""Run updates to Desk over Frappe's realtime channel, sent after commit.

Same message and room as `frappe.publish_realtime(..., doctype="Flow Run", docname=run,
after_commit=True)`, encoded with the standard json module: Frappe's encoder imports its HTTP
response module (and with it the document model down to PIL), which costs a fresh worker job
~40 ms, more than a 40-step run of pure steps takes, while our messages hold only plain values.
"""

from __future__ import annotations

import json
from contextlib import suppress

import frappe
import redis

EVENT = "flow_run_update"


def publish_run_update(run: str, message: dict) -> None:
	"""Queue `message` for the run's room; the latest message per run goes out after commit."""
	queued = getattr(frappe.local, "flow_engine_realtime", None)
	if queued is None or _flush not in frappe.db.after_commit._functions:
		queued = frappe.local.flow_engine_realtime = {}
		frappe.db.after_commit.add(_flush)
		frappe.db.after_rollback.add(_clear)
	previous = queued.get(run)
	if previous is not None:  # two commits' worth in one transaction: merge the step deltas
		message = {**message, "states": {**previous["states"], **message["states"]}}
	queued[run] = message


def _flush() -> None:
	queued = getattr(frappe.local, "flow_engine_realtime", None) or {}
	_clear()
	if not queued:
		return
	from frappe.utils.background_jobs import get_redis_connection_without_auth

	with suppress(redis.exceptions.ConnectionError):
		connection = get_redis_connection_without_auth()
		for run, message in queued.items():
			connection.publish(
				"events",
				json.dumps(
					{
						"event": EVENT,
						"message": message,
						"room": f"doc:Flow Run/{run}",
						"namespace": frappe.local.site,
					},
					default=str,
				),
			)


def _clear() -> None:
	frappe.local.flow_engine_realtime = None
