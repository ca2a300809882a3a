"""The template context of a run: doc, customer, run, template, variables, steps, now, input."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator, Mapping
from typing import Any

import frappe
from frappe.model import child_table_fields, datetime_fields, default_fields, float_like_fields, table_fields
from frappe.utils import cint, cstr, flt

from flow_engine.engine import templating
from flow_engine.runtime import clock
from flow_engine.runtime.store import RunRecord

CUSTOMER_FIELDS = ("customer", "party_name")
STANDARD_FIELDS = frozenset((*default_fields, *child_table_fields))


class DocView(Mapping):
	"""A live document as a condition reads it: the values `doc.as_dict(convert_dates_to_str=True)`
	would hold (same sanitising, dates as text, child rows as views), field by field, without building
	that dict for the whole document on every save (trigger conditions read one or two fields)."""

	__slots__ = ("_doc",)

	def __init__(self, doc):
		self._doc = doc

	def __contains__(self, key: object) -> bool:
		if not isinstance(key, str):
			return False
		if key == "doctype" or key in STANDARD_FIELDS or self._doc.meta.has_field(key):
			return True
		return key.startswith("_") and key in self._doc.as_dict()  # __islocal, _user_tags, …

	def __getitem__(self, key: str) -> Any:
		doc = self._doc
		if key == "doctype":
			return doc.doctype
		df = doc.meta.get_field(key) if isinstance(key, str) else None
		if df is None:
			if key in STANDARD_FIELDS:
				return _as_text(doc.__dict__.get(key))
			return doc.as_dict(convert_dates_to_str=True)[key]  # the rare rest, or KeyError
		if df.fieldtype in table_fields:
			return [DocView(row) for row in doc.get(key) or []]
		if getattr(df, "is_virtual", False):
			return doc.as_dict(convert_dates_to_str=True).get(key)
		return _as_text(_sanitised(df, doc.__dict__.get(key)))

	def __iter__(self) -> Iterator[str]:
		return iter(self._doc.as_dict(convert_dates_to_str=True))

	def __len__(self) -> int:
		return len(self._doc.as_dict())

	def __bool__(self) -> bool:
		return True  # as its dict would be (it always has doctype and name); without reading it


def _sanitised(df, value: Any) -> Any:
	"""What Frappe's `get_valid_dict` makes of one field's value."""
	if df.fieldtype == "Check":
		return 1 if cint(value) else 0
	if df.fieldtype == "Int" and not isinstance(value, int):
		return cint(value)
	if df.fieldtype == "JSON" and isinstance(value, dict):
		return json.dumps(value, separators=(",", ":"))
	if df.fieldtype in float_like_fields and not isinstance(value, float):
		return flt(value)
	if (df.fieldtype in datetime_fields and value == "") or (
		getattr(df, "unique", False) and cstr(value).strip() == ""
	):
		return None
	return value


def _as_text(value: Any) -> Any:
	if isinstance(value, datetime.date | datetime.time | datetime.timedelta):
		return str(value)
	return value


class LazyDoc(Mapping):
	"""A document as a plain dict, loaded on first use (most steps never read it).

	Loading checks that the acting user (the flow's Run As user while steps run) may read it: a flow
	cannot move values of a document its user could not open into a webhook, an email or a field."""

	def __init__(self, doctype: str | None, name: str | None, snapshot: Mapping | None = None):
		self._doctype, self._name, self._snapshot = doctype, name, snapshot
		self._data: dict | None = None

	def _load(self) -> dict:
		if self._data is None:
			data: dict = {}
			if self._doctype and self._name and frappe.db.exists(self._doctype, self._name):
				from flow_engine.kinds.base import StepFailed
				from flow_engine.runtime.identity import require

				doc = frappe.get_doc(self._doctype, self._name)
				try:
					require("read", doc.doctype, doc, why="a step reads its values")
				except StepFailed as error:
					raise templating.Refused(str(error)) from None
				data = doc.as_dict(convert_dates_to_str=True)
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
	context = {
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
	if run.scope:  # a for_each item run: its item, and the steps its parent ran before the loop
		from flow_engine.runtime.children import item_context

		item_context(run, context)
	return context


def resolve_customer(doc) -> str | None:
	"""The customer a document belongs to, where there is one (ERPNext)."""
	if doc is None:
		return None
	if doc.doctype == "Customer":
		return doc.name
	if doc.get("customer"):
		return doc.get("customer")
	# Quotation: quotation_to, Opportunity: opportunity_from, Contract: party_type (a Lead or a
	# Supplier there is not a customer)
	party_kind = doc.get("quotation_to") or doc.get("opportunity_from") or doc.get("party_type")
	if doc.get("party_name") and party_kind in (None, "", "Customer"):
		return doc.get("party_name")
	if doc.get("party_type") == "Customer" and doc.get("party"):
		return doc.get("party")
	if doc.doctype == "Task" and doc.get("project") and frappe.db.table_exists("Project", cached=True):
		return frappe.db.get_value("Project", doc.get("project"), "customer") or None
	return None
