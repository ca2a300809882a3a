"""Raise the design's business events (`on_contract_signed`, …) from ERPNext document events.

`triggers.build_trigger_map` lists, per doctype and document method, the business events some active
flow listens to; `triggers.on_doc_event` calls `raise_events` only for those, so a site whose flows
listen to none pays nothing more. The table (which document event, which condition, which variables)
is `flow_engine/engine/business_events.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import frappe

from flow_engine.engine import business_events
from flow_engine.runtime import clock

KEY = "business_events"  # in a doctype's entry of the trigger map: {method: [event names]}


def listened(custom_events: Iterable[str]) -> dict[str, dict[str, list[str]]]:
	"""{doctype: {method: [event names]}} for the business events among `custom_events`."""
	apps = frappe.get_installed_apps()
	out: dict[str, dict[str, list[str]]] = {}
	for name in custom_events:
		for event in business_events.events_named(name, apps):
			out.setdefault(event.doctype, {}).setdefault(event.method, []).append(event.name)
	return out


def raise_events(doc, method: str, names: Iterable[str]) -> list[str]:
	"""Raise each of `names` the document's `method` raises; returns the runs started."""
	from flow_engine.runtime.triggers import dispatch_event

	started = []
	for name in names:
		event = business_events.by_name(name, doc.doctype, method)
		if event is None:
			continue
		try:
			before = doc.get_doc_before_save()  # None for a document just inserted
			if not business_events.is_raised(event, doc.get, before.get if before is not None else None):
				continue
			payload = business_events.variables(
				event, lambda path: _read(doc, path), str(clock.now()), lambda marker: _lookup(doc, marker)
			)
			started += dispatch_event(name, doc=doc, payload=payload)
		except Exception:
			frappe.log_error(title=f"flow_engine: business event '{name}' failed on {doc.doctype} {doc.name}")
	return started


def _read(doc, path: str) -> Any:
	"""A document path (`plans.0.plan`) as a JSON value (dates as text)."""
	value: Any = doc
	for part in path.split("."):
		if value is None:
			return None
		if isinstance(value, list):
			value = value[int(part)] if part.isdigit() and int(part) < len(value) else None
		else:
			value = value.get(part)
	if value is not None and not isinstance(value, str | int | float | bool):
		value = str(value)
	return value


def _lookup(doc, marker: str) -> Any:
	if marker == business_events.PARTY_SUBSCRIPTION:
		party_type, party = doc.get("party_type"), doc.get("party_name") or doc.get("party")
		if not party or not frappe.db.table_exists("Subscription"):
			return None
		return frappe.db.get_value(
			"Subscription", {"party_type": party_type, "party": party}, "name", order_by="creation desc"
		)
	return None
