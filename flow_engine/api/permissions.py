"""Who may call the API: the role check every endpoint makes at the door, and argument helpers."""

from __future__ import annotations

import json
from typing import Any

import frappe
from frappe import _

FLOW_ROLES = ("Flow Manager", "System Manager")


def require_flow_manager() -> None:
	"""Only Flow Managers and System Managers may edit and run flows (checked in tests too)."""
	if not is_flow_manager():
		frappe.throw(
			_("Only a Flow Manager or System Manager may do this"),
			frappe.PermissionError,
			title=_("Not permitted"),
		)


def is_flow_manager(user: str | None = None) -> bool:
	user = user or frappe.session.user
	return user == "Administrator" or bool(set(FLOW_ROLES) & set(frappe.get_roles(user)))


def json_arg(value: Any, name: str) -> Any:
	if value is None or isinstance(value, dict | list):
		return value
	if isinstance(value, str):
		if not value.strip():
			return None
		try:
			return json.loads(value)
		except ValueError as error:
			frappe.throw(_("'{0}' is not valid JSON: {1}").format(name, error), frappe.ValidationError)
	frappe.throw(_("'{0}' must be a JSON object").format(name))


def check_doc_read(doctype: str | None, name: str | None) -> None:
	if doctype and name:
		if not frappe.db.exists("DocType", doctype):
			frappe.throw(_("DocType '{0}' does not exist").format(doctype), frappe.DoesNotExistError)
		if not frappe.db.exists(doctype, name):
			frappe.throw(_("{0} '{1}' does not exist").format(doctype, name), frappe.DoesNotExistError)
		frappe.has_permission(doctype, "read", doc=name, throw=True)
