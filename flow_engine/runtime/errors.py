"""Errors the runtime raises to users (Frappe shows them; API callers get their type)."""

import frappe


class FlowValidationError(frappe.ValidationError):
	"""A flow definition, trigger or template field is invalid; the message names the step and field."""
