"""Step timeouts for every kind, and run deadlines.

Step timeouts. A step's `timeout` (seconds) bounds:

- a parked step (manual / on_webhook): how long it may wait to be completed (steps.park, scheduler);
- an external call (webhook, SMS): the call itself — the kind gives the call the step's timeout, and a
  payload `timeout` may only shorten it;
- every other kind, run inline: how long its handler ran. A handler cannot be stopped safely in the
  middle of a query, so it is measured: one that returns past its timeout has its writes rolled back
  to the step's savepoint and fails as timed out (`StepTimedOut`, retryable: the step's retry policy
  decides whether it runs again). A handler that never returns is ended by the worker's job timeout;
  its run is recovered like any run whose worker died.

Inline steps that give no timeout get the site default: site config `flow_engine_step_timeout`
(seconds; DEFAULT_STEP_TIMEOUT when unset, 0 turns the default off). It never applies to waiting
(a manual approval may wait for days) nor to external calls (the outbound policy's default applies).

Run deadlines. A Flow Template's `run_deadline_days` sets `deadline_at` on each run it starts
(`deadline_for`, called by runs.start_run). The scheduler's minute tick calls `enforce`, which finds
open runs (queued, running, waiting) past their deadline through the `deadline_at` index and, per the
template's `run_deadline_action`, cancels them (runs.cancel_run, the reason naming the deadline) or
alerts once: a Comment on the run and a Notification Log to the flow's owner and subscribers
(alerts.recipients: enabled users who may read the run), with
`deadline_alerted` set under the run's row lock so overlapping ticks alert once.
"""

from __future__ import annotations

import datetime

import frappe
from frappe import _
from frappe.utils import flt

from flow_engine.engine.definition import Step
from flow_engine.kinds.base import StepFailed
from flow_engine.runtime import clock, resilience

CONFIG_KEY = "flow_engine_step_timeout"
DEFAULT_STEP_TIMEOUT = 300.0
OPEN_STATUSES = ("queued", "running", "waiting")
BATCH = 200


class StepTimedOut(StepFailed):
	"""An inline step ran past its timeout; its writes were rolled back. Retryable."""

	def __init__(self, message: str):
		super().__init__(message, retryable=True)


# --- step timeouts ---------------------------------------------------------------------------------


def site_default() -> float | None:
	"""The site-wide step timeout in seconds (None: off)."""
	configured = frappe.conf.get(CONFIG_KEY)
	if configured in (None, ""):
		return DEFAULT_STEP_TIMEOUT
	value = flt(configured)
	return value if value > 0 else None


def step_timeout(step: Step) -> float | None:
	"""The seconds an inline step may run: its own timeout, else the site default."""
	if step.timeout and step.timeout > 0:
		return float(step.timeout)
	return site_default()


def check_inline(template: str, step: Step, limit: float | None, elapsed: float, rolled_back: bool) -> None:
	"""Raise StepTimedOut when an inline step ran `elapsed` seconds, past its `limit`."""
	if limit is None or elapsed <= limit:
		return
	source = (
		_("its timeout") if step.timeout else _("the site's default step timeout ({0})").format(CONFIG_KEY)
	)
	message = _("Flow '{0}', step '{1}' ({2}) ran {3:.1f}s, past {4} of {5:g}s").format(
		template, step.id, step.kind, elapsed, source, limit
	)
	if rolled_back:
		message += "; " + _("its changes were rolled back")
	message += ". " + _("Raise the step's timeout or make the step do less.")
	raise StepTimedOut(message)


def call_timeout(step: Step, requested: float | None, default: float, cap: float | None = None) -> float:
	"""The timeout an external call gets: the payload's `requested` one, else the step's, else
	`default`; never longer than the step's timeout nor `cap`."""
	timeout = flt(requested) or flt(step.timeout) or float(default)
	if step.timeout and step.timeout > 0:
		timeout = min(timeout, float(step.timeout))
	if cap:
		timeout = min(timeout, float(cap))
	return timeout


# --- run deadlines ---------------------------------------------------------------------------------


def deadline_for(template_row, started: datetime.datetime) -> datetime.datetime | None:
	"""When a run of this template started at `started` must be done (None: no deadline)."""
	days = flt((template_row or {}).get("run_deadline_days"))
	if days <= 0:
		return None
	return started + datetime.timedelta(days=days)


def overdue(now: datetime.datetime | None = None, limit: int = BATCH) -> list[frappe._dict]:
	"""Open runs past their deadline still to act on (cancel; or alert, once)."""
	return frappe.db.sql(
		"""select run.name, run.template, run.status, run.started_at, run.deadline_at,
			run.deadline_alerted, tpl.run_deadline_days, ifnull(tpl.run_deadline_action, '') as action
		from `tabFlow Run` run left join `tabFlow Template` tpl on tpl.name = run.template
		where run.deadline_at <= %(now)s and run.status in %(open)s
			and (run.deadline_alerted = 0 or tpl.run_deadline_action = 'cancel')
		order by run.deadline_at
		limit %(limit)s""",
		{"now": now or clock.now(), "open": OPEN_STATUSES, "limit": int(limit)},
		as_dict=True,
	)


def enforce(now: datetime.datetime | None = None, limit: int = BATCH) -> dict:
	"""Scheduler phase: cancel or alert on open runs past their deadline. One run per transaction;
	one run that cannot be handled does not stop the others."""
	now = now or clock.now()
	done = {"cancelled": 0, "alerted": 0}
	rows = overdue(now, limit)
	frappe.db.commit()
	for row in rows:
		try:
			outcome = resilience.retrying(_enforce_one, row, now)
		except Exception:
			frappe.db.rollback()
			frappe.log_error(title=f"flow_engine: run deadline of {row.name} could not be enforced")
			continue
		if outcome:
			done[outcome] += 1
	return done


def _enforce_one(row, now: datetime.datetime) -> str | None:
	if row.action == "cancel":
		return _cancel(row)
	return _alert(row, now)


def _cancel(row) -> str | None:
	from flow_engine.runtime import runs

	reason = _(
		"Cancelled: the run passed its deadline. Flow '{0}' gives a run {1:g} days (Run Deadline); this "
		"run started {2} and was still {3} at {4}."
	).format(row.template, flt(row.run_deadline_days), row.started_at, row.status, row.deadline_at)
	try:
		runs.cancel_run(row.name, reason)
	except runs.FlowRunError:  # it ended meanwhile
		frappe.db.rollback()
		return None
	frappe.db.commit()
	return "cancelled"


def _alert(row, now: datetime.datetime) -> str | None:
	from flow_engine.runtime import alerts

	locked = frappe.db.sql(
		"select status, deadline_alerted from `tabFlow Run` where name=%s for update",
		(row.name,),
		as_dict=True,
	)
	if not locked or locked[0].status not in OPEN_STATUSES or locked[0].deadline_alerted:
		frappe.db.rollback()
		return None
	status = locked[0].status
	subject = _("Run {0} of flow '{1}' passed its deadline").format(row.name, row.template)
	text = _(
		"Run {0} of flow '{1}' passed its deadline at {2} ({3:g} days after it started, Run Deadline) and "
		"is still {4}. It goes on; cancel it from the run if it is stuck, or raise the flow's Run Deadline."
	).format(row.name, row.template, row.deadline_at, flt(row.run_deadline_days), status)
	frappe.get_doc(
		{
			"doctype": "Comment",
			"comment_type": "Info",
			"reference_doctype": "Flow Run",
			"reference_name": row.name,
			"content": text,
		}
	).insert(ignore_permissions=True)
	for user in alerts.recipients(row.template, row.name):  # as for failures: owner and subscribers
		frappe.get_doc(
			{
				"doctype": "Notification Log",
				"for_user": user,
				"type": "Alert",
				"subject": subject,
				"email_content": text,
				"document_type": "Flow Run",
				"document_name": row.name,
			}
		).insert(ignore_permissions=True)
	frappe.db.sql("update `tabFlow Run` set deadline_alerted=1 where name=%s", (row.name,))
	frappe.db.commit()
	return "alerted"
