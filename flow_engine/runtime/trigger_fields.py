"""A Flow Template's trigger fields ↔ a definition's `trigger` object."""

from __future__ import annotations

import json
from collections.abc import Mapping

import frappe
from frappe import _

from flow_engine.runtime.errors import FlowValidationError


def from_fields(doc) -> dict:
	"""The trigger a template's fields describe, in a definition's form."""
	trigger = {"doctype": doc.trigger_doctype or None, "event": doc.trigger_event or "manual"}
	if doc.trigger_field:
		trigger["field"] = doc.trigger_field
	if doc.custom_event:
		trigger["custom_event"] = doc.custom_event
	condition = parse_condition(doc.trigger_condition)
	if condition:
		trigger["condition"] = condition
	return {key: value for key, value in trigger.items() if value not in (None, "")}


def parse_condition(text):
	if text in (None, "", "{}"):
		return None
	if isinstance(text, Mapping | list):
		return text
	try:
		return json.loads(text)
	except ValueError as error:
		frappe.throw(
			_("Trigger condition is not valid JSON: {0}").format(error),
			FlowValidationError,
			title=_("Invalid trigger condition"),
		)


def set_fields(doc, trigger: Mapping) -> None:
	"""Copy a definition's trigger onto the Flow Template fields."""
	doc.trigger_doctype = trigger.get("doctype")
	doc.trigger_event = trigger.get("event") or "manual"
	doc.trigger_field = trigger.get("field")
	doc.custom_event = trigger.get("custom_event")
	condition = trigger.get("condition")
	doc.trigger_condition = json.dumps(condition, indent=1) if condition else None
