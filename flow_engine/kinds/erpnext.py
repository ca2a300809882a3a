"""ERPNext-only kinds."""

from __future__ import annotations

import frappe
from frappe import _
from frappe.utils import getdate, nowdate

from flow_engine.kinds.base import StepCall, StepFailed
from flow_engine.runtime.identity import require


def subscription_activate(call: StepCall) -> dict:
	if "erpnext" not in frappe.get_installed_apps():
		raise StepFailed(_("subscription_activate needs ERPNext, which is not installed on this site"))
	name = call.payload.get("subscription")
	if not name or not frappe.db.exists("Subscription", name):
		raise StepFailed(_("Subscription '{0}' does not exist").format(name))
	doc = frappe.get_doc("Subscription", name)
	require("write", "Subscription", doc)  # as the Run As user restarting or processing it from Desk
	before = doc.status
	if doc.status == "Cancelled":
		posting_date = call.payload.get("posting_date") or nowdate()
		doc.restart_subscription(posting_date=getdate(posting_date))
	elif doc.status in ("Active", "Trialing"):
		return {"subscription": name, "status": doc.status, "changed": False}
	else:
		doc.process(posting_date=getdate(call.payload.get("posting_date") or nowdate()))
	doc.reload()
	return {
		"subscription": name,
		"status": doc.status,
		"previous_status": before,
		"changed": doc.status != before,
	}
