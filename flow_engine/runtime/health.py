"""Preflight checks: can flows run on this site right now?"""

from __future__ import annotations

import frappe
from frappe.utils import add_to_date, now_datetime


def checks() -> list[dict]:
	from frappe.utils.scheduler import is_dormant, is_scheduler_disabled, is_scheduler_inactive

	result = []

	def add(name, level, detail):
		result.append({"name": name, "level": level, "detail": detail})

	if is_scheduler_disabled(verbose=False):
		add(
			"scheduler",
			"fail",
			"disabled: run `bench --site SITE enable-scheduler` (delayed steps never fire)",
		)
	elif is_scheduler_inactive(verbose=False):
		add("scheduler", "fail", "inactive (maintenance mode or pause_scheduler is set)")
	else:
		add("scheduler", "ok", "enabled")
	if is_dormant():
		add(
			"dormancy",
			"warn",
			"the site looks dormant (no activity for days): Frappe then runs its scheduled "
			"jobs only daily, so delayed steps will be late until someone uses the site",
		)
	else:
		add("dormancy", "ok", "site is active")
	try:
		from frappe.utils.background_jobs import get_workers

		workers = get_workers()
		queues = sorted({q.name.rsplit(":", 1)[-1] for w in workers for q in w.queues})
		if not workers:
			add("workers", "fail", "no RQ worker is running: start `bench worker` (or `bench start`)")
		elif "default" not in queues:
			add("workers", "fail", f"no worker listens to the 'default' queue (queues: {', '.join(queues)})")
		else:
			add("workers", "ok", f"{len(workers)} worker(s) on {', '.join(queues)}")
			if "long" not in queues:
				add(
					"timer",
					"warn",
					"no worker on the 'long' queue: delayed steps fire at the minute tick, not "
					"within seconds",
				)
	except Exception as error:
		add("workers", "fail", f"cannot reach Redis queue: {error}")
	from flow_engine.runtime import consumer

	if consumer.alive(fresh=True):
		add("consumer", "ok", "a flow consumer is up: runs start within milliseconds of their trigger")
	else:
		add(
			"consumer",
			"warn",
			"no flow consumer (optional): runs wait for a worker job's start-up; run `bench flow consume` "
			"beside the workers for millisecond reactions (README: How runs behave)",
		)
	overdue = frappe.db.count(
		"Flow Step Pending",
		{"status": "pending", "trigger_at": ["<", add_to_date(now_datetime(), minutes=-5)]},
	)
	add("backlog", "warn" if overdue else "ok", f"{overdue} pending step(s) overdue by more than 5 minutes")
	failed = frappe.db.count("Flow Run", {"status": "failed"})
	add(
		"runs",
		"ok",
		f"{frappe.db.count('Flow Run', {'status': ['in', ('running', 'waiting')]})} in progress, "
		f"{failed} failed",
	)
	return result
