"""The design's business events, raised by the app from ERPNext document events.

A flow listening to `on_contract_signed` (the trigger `{"event": "on_contract_signed"}`, normalised
to a custom event by `vocabulary`) starts when a Contract's `is_signed` turns on. This table says, for
each event, which document event raises it, on which condition, and which variables it carries;
`flow_engine/runtime/business_events.py` applies it. Conditions on a value turning to something are
read on `on_change`, which Frappe runs after every save, submit and `db_set` (ERPNext sets a
Quotation's status to Ordered with `db_set`), so such an event is raised once, whatever the path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NOW = "@now"  # a variable holding the moment the event is raised
# the most recent Subscription of the document's party (a Contract names no subscription in ERPNext;
# the design's contracts are signed for the customer's subscription)
PARTY_SUBSCRIPTION = "@party_subscription"
LOOKUPS = (PARTY_SUBSCRIPTION,)


@dataclass(frozen=True)
class BusinessEvent:
	name: str
	doctype: str
	method: str  # the document method that raises it
	raised_when: str  # for people (README, editor)
	field: str | None = None  # raised when this field turns to one of `to` (or is inserted so)
	to: tuple = ()
	when: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # fields that must hold these values
	variables: Mapping[str, str] = dataclasses.field(default_factory=dict)  # variable → document path, or NOW
	app: str | None = "erpnext"  # the app the doctype comes from; "!erpnext": only without it

	def available(self, apps: Iterable[str]) -> bool:
		apps = set(apps)
		if self.app is None:
			return True
		if self.app.startswith("!"):
			return self.app[1:] not in apps
		return self.app in apps


EVENTS: tuple[BusinessEvent, ...] = (
	BusinessEvent(
		"on_contract_signed",
		"Contract",
		"on_change",
		"a Contract's *Signed* (`is_signed`) is turned on (or it is created signed)",
		field="is_signed",
		to=(1,),
		variables={
			"contract": "name",
			"contract_type": "contract_template",
			"signed_at": "signed_on",
			"start_date": "start_date",
			"end_date": "end_date",
			"subscription": PARTY_SUBSCRIPTION,
		},
	),
	BusinessEvent(
		"on_payment_received",
		"Payment Entry",
		"on_submit",
		"a Payment Entry of type *Receive* is submitted",
		when={"payment_type": "Receive"},
		variables={
			"payment_entry": "name",
			"amount": "paid_amount",
			"currency": "paid_from_account_currency",
			"payment_intent": "reference_no",
			"mode_of_payment": "mode_of_payment",
			"posting_date": "posting_date",
		},
	),
	BusinessEvent(
		"on_subscription_active",
		"Subscription",
		"on_change",
		"a Subscription's status becomes *Active* (or it is created Active)",
		field="status",
		to=("Active",),
		variables={
			"subscription": "name",
			"plan": "plans.0.plan",
			"start_date": "start_date",
			"end_date": "end_date",
		},
	),
	BusinessEvent(
		"on_quotation_created",
		"Quotation",
		"after_insert",
		"a Quotation is created",
		variables={
			"quotation": "name",
			"grand_total": "grand_total",
			"currency": "currency",
			"valid_till": "valid_till",
		},
	),
	BusinessEvent(
		"on_quotation_accepted",
		"Quotation",
		"on_change",
		"a Quotation's status becomes *Ordered* (a Sales Order made from it is submitted)",
		field="status",
		to=("Ordered",),
		variables={
			"quotation": "name",
			"accepted_at": NOW,
			"grand_total": "grand_total",
			"currency": "currency",
		},
	),
	BusinessEvent(
		"on_issue_opened",
		"Issue",
		"after_insert",
		"an Issue is created",
		variables={
			"issue": "name",
			"subject": "subject",
			"priority": "priority",
			"issue_type": "issue_type",
			"raised_by": "raised_by",
		},
	),
	BusinessEvent(
		"on_customer_created",
		"Customer",
		"after_insert",
		"a Customer is created",
		variables={
			"customer_name": "customer_name",
			"customer_type": "customer_type",
			"customer_group": "customer_group",
			"territory": "territory",
		},
	),
	BusinessEvent(
		"on_dispatch_completed",
		"Task",
		"on_change",
		"a dispatch job (ERPNext Task) turns *Completed*",
		field="status",
		to=("Completed",),
		variables={"job": "name", "subject": "subject", "job_type": "type", "completed_at": NOW},
	),
	BusinessEvent(
		"on_dispatch_completed",
		"ToDo",
		"on_change",
		"a dispatch job (a ToDo, on a site without ERPNext) turns *Closed*",
		field="status",
		to=("Closed",),
		variables={"job": "name", "subject": "description", "completed_at": NOW},
		app="!erpnext",
	),
)

NAMES: tuple[str, ...] = tuple(dict.fromkeys(event.name for event in EVENTS))
# doctypes whose `on_change` must reach the trigger handler (hooks.py)
ON_CHANGE_DOCTYPES: tuple[str, ...] = tuple(
	dict.fromkeys(event.doctype for event in EVENTS if event.method == "on_change")
)


def events_named(name: str, apps: Iterable[str]) -> list[BusinessEvent]:
	"""The table rows raising `name` on a site with these apps."""
	apps = list(apps)
	return [event for event in EVENTS if event.name == name and event.available(apps)]


def variable_names(name: Any) -> set[str]:
	"""The variables business event `name` carries (empty for any other name)."""
	return {var for event in EVENTS if event.name == name for var in event.variables}


def by_name(name: str, doctype: str, method: str) -> BusinessEvent | None:
	for event in EVENTS:
		if (event.name, event.doctype, event.method) == (name, doctype, method):
			return event
	return None


def _same(value: Any, wanted: Any) -> bool:
	if isinstance(wanted, int) and not isinstance(wanted, bool):
		try:
			return int(value or 0) == wanted
		except (TypeError, ValueError):
			return False
	return value == wanted


def is_raised(event: BusinessEvent, get: Callable[[str], Any], before: Callable[[str], Any] | None) -> bool:
	"""Whether the document (`get(field)`) raises `event`; `before` reads the saved values, None for a
	document just inserted."""
	if not all(_same(get(key), value) for key, value in event.when.items()):
		return False
	if event.field is None:
		return True
	if not any(_same(get(event.field), value) for value in event.to):
		return False
	return before is None or not any(_same(before(event.field), value) for value in event.to)


def variables(
	event: BusinessEvent,
	get: Callable[[str], Any],
	now: str,
	lookup: Callable[[str], Any] | None = None,
) -> dict:
	"""The variables `event` carries: `get(path)` reads a document path (`plans.0.plan`), `lookup(marker)`
	finds what a marker of `LOOKUPS` names (None without one)."""
	out = {}
	for name, path in event.variables.items():
		if path == NOW:
			value = now
		elif path in LOOKUPS:
			value = lookup(path) if lookup else None
		else:
			value = get(path)
		if name == "signed_at" and value in (None, ""):
			value = now  # signed without a date: now
		out[name] = value
	return out


def documentation(apps: Iterable[str] | None = None) -> list[dict]:
	"""One row per event for the README and the editor: name, doctypes, raised when, variables (only
	the rows a site with `apps` has, when given)."""
	apps = None if apps is None else list(apps)
	rows: dict[str, dict] = {}
	for event in EVENTS:
		if apps is not None and not event.available(apps):
			continue
		row = rows.setdefault(
			event.name, {"name": event.name, "doctypes": [], "raised_when": [], "variables": []}
		)
		row["doctypes"].append(event.doctype)
		row["raised_when"].append(event.raised_when)
		row["variables"] += [name for name in event.variables if name not in row["variables"]]
	return list(rows.values())
