"""Insight: the figures behind the Flow Engine workspace's number cards and charts and the Flow Template
form's run counts.

Everyone here must be a Flow Manager (or System Manager) or may read Flow Run. Figures come from
indexed reads of `tabFlow Run` (status, status+modified, creation) and `tabFlow Step Pending`
(trigger_at); nothing loads documents.

- failure rate of a flow: failed runs ÷ runs that completed or failed, among runs that ended in the
  window (cancelled runs count as neither);
- p95 duration: the 95th percentile (nearest rank) of completed_at − started_at, in seconds, of runs
  that completed or failed in the window.
"""

from __future__ import annotations

import datetime

import frappe
from frappe import _
from frappe.utils import add_to_date, cint, flt, getdate

from flow_engine.api.permissions import is_flow_manager
from flow_engine.runtime import clock, store

STATUSES = ("queued", "running", "waiting", "completed", "failed", "cancelled")
ENDED = ("completed", "failed")
METRICS = ("failure_rate", "p95_duration")


def require_insight() -> None:
	if is_flow_manager() or frappe.has_permission("Flow Run", "read"):
		return
	frappe.throw(
		_("Only a Flow Manager, or a user who may read Flow Runs, may see flow figures"),
		frappe.PermissionError,
		title=_("Not permitted"),
	)


def _since(days: int) -> datetime.datetime:
	return add_to_date(clock.now(), days=-days)


# number cards (type "Custom": the card calls these with its filters)


@frappe.whitelist()
def failed_runs_card(filters=None, days: int = 7) -> dict:
	"""Runs that failed in the last `days` days."""
	require_insight()
	since = _since(cint(days) or 7)
	value = frappe.db.sql(
		"""select count(*) from `tabFlow Run` where status='failed' and modified >= %(since)s
		and completed_at >= %(since)s""",
		{"since": since},
	)[0][0]
	return {
		"value": cint(value),
		"fieldtype": "Int",
		"route": ["List", "Flow Run"],
		"route_options": {"status": "failed", "completed_at": [">=", str(since)]},
	}


@frappe.whitelist()
def due_backlog_card(filters=None) -> dict:
	"""Pending steps whose time has come and that no tick has fired yet (should stay near 0)."""
	require_insight()
	now = clock.now()
	value = frappe.db.sql(
		"select count(*) from `tabFlow Step Pending` where status='pending' and trigger_at <= %s", (now,)
	)[0][0]
	return {
		"value": cint(value),
		"fieldtype": "Int",
		"route": ["List", "Flow Step Pending"],
		"route_options": {"status": "pending", "trigger_at": ["<=", str(now)]},
	}


# charts (the dashboard chart sources call these)


def runs_per_day(days: int = 14) -> dict:
	"""Runs started per day over the last `days` days (today included), one dataset per status."""
	require_insight()
	days = min(max(cint(days) or 14, 1), 366)
	first = getdate(clock.now()) - datetime.timedelta(days=days - 1)
	rows = frappe.db.sql(
		"""select date(creation) as day, status, count(*) as runs from `tabFlow Run`
		where creation >= %(first)s group by date(creation), status""",
		{"first": first},
		as_dict=True,
	)
	dates = [first + datetime.timedelta(days=offset) for offset in range(days)]
	counts = {(getdate(row.day), row.status): cint(row.runs) for row in rows}
	# every status, always in this order: the chart's colours (custom_options) follow it
	return {
		"labels": [day.strftime("%b %d") for day in dates],
		"datasets": [
			{"name": _(status), "values": [counts.get((day, status), 0) for day in dates]}
			for status in STATUSES
		],
	}


def flow_stats(days: int = 30, template: str | None = None) -> dict[str, dict]:
	"""Per flow, over runs that ended in the last `days` days: completed, failed, failure_rate (%),
	p95_duration (seconds)."""
	since = _since(cint(days) or 30)
	params = {"since": since, "ended": ENDED, "template": template}
	where = "status in %(ended)s and modified >= %(since)s and completed_at >= %(since)s" + (
		" and template=%(template)s" if template else ""
	)
	stats: dict[str, dict] = {}
	for row in frappe.db.sql(
		f"""select template, sum(status='completed') as completed, sum(status='failed') as failed
		from `tabFlow Run` where {where} group by template""",
		params,
		as_dict=True,
	):
		ended = cint(row.completed) + cint(row.failed)
		stats[row.template] = {
			"completed": cint(row.completed),
			"failed": cint(row.failed),
			"failure_rate": round(100.0 * cint(row.failed) / ended, 2) if ended else 0.0,
			"p95_duration": None,
		}
	# nearest rank: the smallest duration with at least 95% of the runs at or below it
	for row in frappe.db.sql(
		f"""select distinct template, percentile_disc(0.95) within group (order by seconds)
			over (partition by template) as p95
		from (select template, timestampdiff(microsecond, started_at, completed_at) / 1000000 as seconds
			from `tabFlow Run` where {where} and started_at is not null) as durations""",
		params,
		as_dict=True,
	):
		if row.template in stats:
			stats[row.template]["p95_duration"] = round(flt(row.p95), 3)
	return stats


def flow_performance(metric: str = "failure_rate", days: int = 30, limit: int = 10) -> dict:
	"""The `limit` flows with the highest failure rate (%) or p95 duration (s) over the last `days`."""
	require_insight()
	if metric not in METRICS:
		frappe.throw(_("Unknown metric '{0}': use one of {1}").format(metric, ", ".join(METRICS)))
	stats = flow_stats(days)
	ranked = sorted(
		((flow, figures) for flow, figures in stats.items() if figures[metric] is not None),
		key=lambda item: (-item[1][metric], item[0]),
	)[: cint(limit) or 10]
	label = _("Failure rate (%)") if metric == "failure_rate" else _("p95 duration (s)")
	return {
		"labels": [flow for flow, _figures in ranked],
		"datasets": [{"name": label, "values": [figures[metric] for _flow, figures in ranked]}],
	}


# the Flow Template form


@frappe.whitelist()
def template_insight(template: str, failures: int = 5) -> dict:
	"""A flow's runs by status, its figures over 30 days and its last failures (with error and step)."""
	require_insight()
	if not frappe.db.exists("Flow Template", template):
		frappe.throw(_("Flow '{0}' does not exist").format(template), frappe.DoesNotExistError)
	counts = dict(
		frappe.db.sql(
			"select status, count(*) from `tabFlow Run` where template=%s group by status", (template,)
		)
	)
	rows = frappe.db.sql(
		"""select name, error, completed_at, modified, step_state from `tabFlow Run`
		where template=%s and status='failed' order by modified desc limit %s""",
		(template, min(max(cint(failures), 1), 50)),
		as_dict=True,
	)
	recent = flow_stats(30, template).get(template, {})
	return {
		"template": template,
		"counts": {status: cint(counts.get(status)) for status in STATUSES},
		"total": sum(cint(count) for count in counts.values()),
		"failure_rate_30d": recent.get("failure_rate"),
		"p95_duration_30d": recent.get("p95_duration"),
		"last_failures": [
			{
				"run": row.name,
				"failed_at": row.completed_at or row.modified,
				"step": _failed_step(store.loads(row.step_state)),
				"error": (row.error or "")[:500],
			}
			for row in rows
		],
	}


def _failed_step(states: dict) -> str | None:
	failed = [
		step for step, state in states.items() if isinstance(state, dict) and state.get("status") == "failed"
	]
	return failed[0] if failed else None
