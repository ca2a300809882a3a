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

from flow_engine.runtime import jobs

EVENT = "flow_run_update"
BUFFER = "flow_engine_realtime"


def publish_run_update(run: str, message: dict) -> None:
	"""Queue `message` for the run's room; the latest message per run goes out after commit."""
	queued = jobs.transaction_buffer(BUFFER, _flush, dict)
	previous = queued.get(run)
	if previous is not None:  # two commits' worth in one transaction: merge the step deltas
		message = {**message, "states": {**previous["states"], **message["states"]}}
	queued[run] = message


def _flush() -> None:
	queued = jobs.take_buffer(BUFFER, dict)
	if not queued:
		return
	from frappe.utils.background_jobs import get_redis_connection_without_auth

	with suppress(redis.exceptions.ConnectionError):
		pipe = get_redis_connection_without_auth().pipeline(transaction=False)  # one round trip
		for run, message in queued.items():
			pipe.publish(
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
		pipe.execute()
