"""The template context of a run: doc, customer, run, template, variables, steps, now, input."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import frappe

from flow_engine.runtime import clock
from flow_engine.runtime.store import RunRecord

CUSTOMER_FIELDS = ("customer", "party_name")


class LazyDoc(Mapping):
	"""A document as a plain dict, loaded on first use (most steps never read it)."""

	def __init__(self, doctype: str | None, name: str | None, snapshot: Mapping | None = None):
		self._doctype, self._name, self._snapshot = doctype, name, snapshot
		self._data: dict | None = None

	def _load(self) -> dict:
		if self._data is None:
			data: dict = {}
			if self._doctype and self._name and frappe.db.exists(self._doctype, self._name):
				data = frappe.get_doc(self._doctype, self._name).as_dict(convert_dates_to_str=True)
			else:
				data = dict(self._snapshot or {})
			self._data = data
		return self._data

	def __getitem__(self, key: str) -> Any:
		return self._load()[key]

	def __iter__(self) -> Iterator[str]:
		return iter(self._load())

	def __len__(self) -> int:
		return len(self._load())

	def __contains__(self, key: object) -> bool:
		return key in self._load()


def build_context(run: RunRecord) -> dict:
	customer_doctype = (
		"Customer" if run.customer and frappe.db.table_exists("Customer", cached=True) else None
	)
	now = clock.now()
	return {
		"doc": LazyDoc(run.reference_doctype, run.reference_name, run.doc_snapshot),
		"customer": LazyDoc(customer_doctype, run.customer) if customer_doctype else {},
		"run": {
			"name": run.name,
			"template": run.template,
			"version": run.template_version,
			"status": run.status,
			"source": run.source,
			"started_at": str(run.started_at or ""),
			"started_by": run.started_by,
			"reference_doctype": run.reference_doctype,
			"reference_name": run.reference_name,
		},
		"template": {"name": run.template, "version": run.template_version},
		"variables": {**(run.definition.variables if run.definition else {}), **run.variables},
		"steps": {
			step_id: {"status": state.get("status"), "result": state.get("result") or {}}
			for step_id, state in run.states.items()
		},
		"now": now,
		"today": now.date().isoformat(),
		"input": run.input,
		"event": {"name": run.trigger_event, "schedule": run.schedule},
	}


def resolve_customer(doc) -> str | None:
	"""The customer a document belongs to, where there is one (ERPNext)."""
	if doc is None:
		return None
	if doc.doctype == "Customer":
		return doc.name
	if doc.get("customer"):
		return doc.get("customer")
	if doc.get("party_name") and doc.get("quotation_to") in (None, "Customer"):
		return doc.get("party_name")
	if doc.get("party_type") == "Customer" and doc.get("party"):
		return doc.get("party")
	return None
