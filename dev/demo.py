"""The demo flow dev/setup leaves on a site: an active flow on Lead, and one run taken to its end.

    cd frappe-bench/sites && ../env/bin/python ../apps/flow_engine/dev/demo.py erp.localhost

Idempotent: the flow is created when missing (an existing one is left as it is, edits included); a
new demo Lead, and so a new run, is made only when the flow has no run that is running, waiting or
completed. Workers need not be up: the run is advanced in this process (inline mode) and its wait
is fired here with a scheduler tick once due. The last line is `RUN <name> <status>`.

The demo uses Lead, not ToDo: the site tier's tests and the benchmarks insert ToDos on this site,
and an active ToDo flow would start runs from them.
"""

from __future__ import annotations

import json
import os
import sys
import time

TEMPLATE = "Demo: New Lead"
WAIT_SECONDS = 10
DEFINITION = {
	"version": 1,
	"steps": [
		{
			"id": "welcome",
			"kind": "comment",
			"label": "Comment on the lead",
			"payload": {"text": "Flow run {{run.name}} picked up {{doc.lead_name}}."},
		},
		{
			"id": "has_company",
			"kind": "condition",
			"label": "From a company?",
			"depends_on": ["welcome"],
			"payload": {"condition": {"field": "doc.company_name", "op": "not_empty"}},
		},
		{
			"id": "tell_sales",
			"kind": "notify",
			"label": "Notify sales",
			"parent_id": "has_company",
			"branch": "yes",
			"payload": {
				"channel": "system",
				"recipients": ["Administrator"],
				"subject": "New lead: {{doc.lead_name}} ({{doc.company_name}})",
				"message": "The flow '{{run.template}}' assigned you a call.",
			},
		},
		{
			"id": "assign_call",
			"kind": "assign",
			"label": "Assign a call",
			"parent_id": "has_company",
			"branch": "yes",
			"depends_on": ["tell_sales"],
			"payload": {
				"assign_to": ["Administrator"],
				"description": "Call {{doc.lead_name}} of {{doc.company_name}}",
				"priority": "High",
			},
		},
		{
			"id": "pause",
			"kind": "wait",
			"label": f"Wait {WAIT_SECONDS} seconds",
			"depends_on": ["has_company"],
			"trigger": {"type": "after_delay", "delay_seconds": WAIT_SECONDS},
		},
		{
			"id": "open_lead",
			"kind": "update_doc",
			"label": "Mark the lead Open",
			"depends_on": ["pause"],
			"payload": {"fields": {"status": "Open", "qualification_status": "In Process"}},
		},
		{
			"id": "done",
			"kind": "comment",
			"label": "Say it is done",
			"depends_on": ["open_lead"],
			"payload": {
				"text": f"Flow run {{{{run.name}}}}: lead marked Open after the {WAIT_SECONDS} s wait."
			},
		},
	],
}
LIVE = ("running", "waiting", "completed")


def say(text: str) -> None:
	print(text, flush=True)


def ensure_template() -> None:
	import frappe

	if frappe.db.exists("Flow Template", TEMPLATE):
		active = frappe.db.get_value("Flow Template", TEMPLATE, "is_active")
		say(f"flow '{TEMPLATE}' exists ({'active' if active else 'INACTIVE: new Leads will not start it'})")
		return
	frappe.get_doc(
		{
			"doctype": "Flow Template",
			"template_name": TEMPLATE,
			"category": "Demo",
			"icon": "users",
			"description": "dev/setup's demo: when a Lead is created, comment on it, notify and assign "
			f"a call when it names a company, wait {WAIT_SECONDS} seconds, then mark the lead Open.",
			"trigger_doctype": "Lead",
			"trigger_event": "after_insert",
			"is_active": 1,
			"flow_definition": json.dumps(DEFINITION, indent=1),
		}
	).insert()
	frappe.db.commit()
	say(f"flow '{TEMPLATE}' created (Lead after_insert, active)")


def latest_run() -> dict | None:
	import frappe

	rows = frappe.get_all(
		"Flow Run",
		filters={"template": TEMPLATE},
		fields=["name", "status", "reference_name", "error"],
		order_by="creation desc",
		limit=1,
	)
	return rows[0] if rows else None


def start_demo_run() -> dict:
	"""Insert a demo Lead; its after_insert starts the run, advanced here after the commit."""
	import frappe

	lead = frappe.get_doc(
		{
			"doctype": "Lead",
			"first_name": "Ada",
			"last_name": "Lovelace",
			"company_name": "Analytical Engines Ltd",
		}
	).insert()
	frappe.db.commit()  # the run starts after the commit, inline
	run = latest_run()
	if not run or run.reference_name != lead.name:
		raise SystemExit(
			f"Lead {lead.name} was created but started no run of '{TEMPLATE}': is the flow active, "
			"and does `bench --site SITE flow preflight` pass?"
		)
	say(f"Lead {lead.name} ({lead.lead_name}) created: run {run.name} is {run.status}")
	return run


def advance(run: dict, timeout: float = WAIT_SECONDS + 60) -> dict:
	"""Fire the run's due waits with scheduler ticks (inline) until it leaves running/waiting."""
	import frappe
	from frappe.utils import now_datetime

	from flow_engine.runtime import scheduler

	deadline = time.monotonic() + timeout
	while run.status in ("running", "waiting") and time.monotonic() < deadline:
		due_at = frappe.get_all(
			"Flow Step Pending",
			filters={"run": run.name, "status": "pending"},
			order_by="trigger_at asc",
			limit=1,
			pluck="trigger_at",
		)
		due_at = due_at[0] if due_at else None
		# Frappe stores datetimes naive, in the site's time zone: compare in the same
		due = (due_at - now_datetime()).total_seconds() if due_at else None
		if due is not None and due > 0:
			say(f"run {run.name} is {run.status}; its wait is due in {due:.0f} s")
			time.sleep(min(due, max(0.0, deadline - time.monotonic())) + 0.2)
		scheduler.tick()
		frappe.db.commit()
		run = latest_run()
		if due is None and run.status in ("running", "waiting"):
			time.sleep(1)  # nothing pending yet: the run is between steps
	return run


def main() -> int:
	if len(sys.argv) != 2:
		print(__doc__, file=sys.stderr)
		return 2
	import frappe

	frappe.init(site=sys.argv[1], sites_path=os.getcwd())
	frappe.connect()
	try:
		frappe.set_user("Administrator")
		frappe.flags.flow_engine_inline = True
		ensure_template()
		run = latest_run()
		if run and run.status in LIVE:
			say(f"run {run.name} (Lead {run.reference_name}) exists: {run.status}")
		else:
			if run:
				say(f"last run {run.name} is {run.status}: starting a new one")
			run = start_demo_run()
		run = advance(run)
		steps = json.loads(frappe.db.get_value("Flow Run", run.name, "step_state") or "{}")
		for step_id, state in steps.items():
			status = state.get("status") if isinstance(state, dict) else state
			say(f"  step {step_id}: {status}")
		if run.error:
			say(f"  error: {run.error.splitlines()[0][:200]}")
		say(f"RUN {run.name} {run.status}")
		return 0 if run.status in LIVE else 1
	finally:
		frappe.destroy()


if __name__ == "__main__":
	sys.exit(main())
