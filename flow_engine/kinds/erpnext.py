"""ERPNext-only kinds."""

from __future__ import annotations

import frappe
from frappe import _
from frappe.utils import getdate, nowdate

from flow_engine.kinds.base import StepCall, StepFailed
from flow_engine.runtime.identity import require, require_fields


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


# where a ticket goes: ERPNext's Issue, or Helpdesk's HD Ticket when that app is installed
TICKETS = {
	"Issue": {
		"priority": "Issue Priority",
		"type_field": "issue_type",
		"type": "Issue Type",
		"customer": "Customer",
	},
	"HD Ticket": {
		"priority": "HD Ticket Priority",
		"type_field": "ticket_type",
		"type": "HD Ticket Type",
		"customer": "HD Customer",
	},
}


def ticket_doctype() -> str | None:
	if "helpdesk" in frappe.get_installed_apps() and frappe.db.exists("DocType", "HD Ticket"):
		return "HD Ticket"
	return "Issue" if frappe.db.exists("DocType", "Issue") else None


def _known(doctype: str, value, what: str, field: str) -> str | None:
	"""The record `value` names in `doctype` (any letter case), or a clear error listing the choices."""
	value = str(value or "").strip()
	if not value:
		return None
	found = frappe.db.get_value(doctype, {"name": value}, "name")
	if found:
		return found
	choices = frappe.get_all(doctype, pluck="name", order_by="name asc", limit=20)
	raise StepFailed(
		_("Unknown {0} '{1}' in '{2}': use one of {3}, or create it as a {4} first").format(
			what, value, field, ", ".join(choices) or _("(none exist yet)"), doctype
		)
	)


def issue(call: StepCall) -> dict:
	"""Open a support ticket for the run's customer; an unknown priority or type fails before insert."""
	doctype = ticket_doctype()
	if not doctype:
		raise StepFailed(
			_("The issue kind needs ERPNext (Issue) or Helpdesk (HD Ticket); neither is installed")
		)
	spec = TICKETS[doctype]
	payload = call.payload
	subject = str(payload.get("subject") or "").strip()
	if not subject:
		raise StepFailed(_("The subject rendered empty; check the template in 'subject'"))
	values = {"subject": subject}
	if payload.get("description") not in (None, ""):
		values["description"] = str(payload["description"])
	priority = _known(spec["priority"], payload.get("priority"), _("priority"), "priority")
	if priority:
		values["priority"] = priority
	kind = _known(spec["type"], payload.get("issue_type"), _("issue type"), "issue_type")
	if kind:
		values[spec["type_field"]] = kind
	customer = str(payload.get("customer") or "").strip() or frappe.db.get_value(
		"Flow Run", call.run, "customer"
	)
	if customer:
		if not frappe.db.exists(spec["customer"], customer):
			raise StepFailed(_("{0} '{1}' does not exist (in 'customer')").format(spec["customer"], customer))
		values["customer"] = customer
	doc = frappe.get_doc({"doctype": doctype, **values})
	doc.owner = frappe.session.user
	require("create", doctype, doc)
	require_fields(doctype, values)
	doc.insert()
	return {"doctype": doctype, "name": doc.name, "customer": values.get("customer")}
