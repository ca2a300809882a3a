"""Document and custom-event triggers.

The `"*"` doc_events handler is as cheap as Frappe's webhooks: a per-doctype map of active flows
is cached in Redis and in the request's flags, so a document of a doctype without flows costs one
dict lookup. Matching flows get a Flow Run row inside the user's transaction (a rollback removes
it) and are advanced only after commit. A broken flow never breaks the user's save: errors go to
the Error Log. A flow whose own step saves its trigger document does not re-trigger itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

import frappe

from flow_engine.engine import conditions
from flow_engine.kinds import dispatch
from flow_engine.runtime import business_events, jobs, resilience, runs, store, waits
from flow_engine.runtime.context import DocView, resolve_customer

# the map's shape is part of the key: code reading a new shape never meets a map cached by older code
CACHE_KEY = "flow_engine:trigger_map:v5"
OWN_DOCTYPES = frozenset(
	{
		"Flow Template",
		"Flow Template Version",
		"Flow Run",
		"Flow Step Pending",
		"Flow Step Attempt",
		"Flow Schedule",
		"Flow Wait",
	}
)
IGNORED_DOCTYPES = OWN_DOCTYPES | {
	"Error Log",
	"Scheduled Job Log",
	"Version",
	"Activity Log",
	"Access Log",
	"Route History",
	"Sessions",
	"RQ Job",
	"Deleted Document",
}
INSERT_EVENTS = ("after_insert",)
VALUE_CHANGED_METHODS = ("on_update", "on_update_after_submit")


INDEX_KEY = "equality_index"  # in a doctype's entry of the trigger map: {method: index}

SKIP_FLAGS = (
	"in_install",
	"in_migrate",
	"in_import",
	"in_patch",
	"in_uninstall",
	"in_setup_wizard",
	"flow_engine_disabled",
)


def _skip_now() -> bool:
	return any(map(frappe.local.flags.get, SKIP_FLAGS))  # dict.get in C: no attribute lookups


EMPTY_MAP = {"doctypes": {}, "custom": {}}


MAP_SECONDS = 1.0  # how long a request or job trusts its copy of the map (long jobs see edits soon)


def get_trigger_map() -> dict:
	"""Which flows listen to what, with what starting a run reads of each flow (`runs.START_FIELDS`):
	from Redis, kept in the request's flags for up to MAP_SECONDS (a flow saved elsewhere is seen
	within that, and at once in the process that saved it)."""
	flags = frappe.local.flags
	found = flags.get("flow_engine_trigger_map")
	now = time.monotonic()
	if found is None or now - flags.get("flow_engine_trigger_map_at", 0.0) > MAP_SECONDS:
		found = frappe.cache.get_value(CACHE_KEY, expires=True)  # (not kept in frappe.local.cache)
		if found is None:
			try:
				found = build_trigger_map()
			except frappe.db.TableMissingError as error:
				if not frappe.db.is_table_missing(error) and error.args[:1] != ("DocType",):
					raise
				return EMPTY_MAP  # the app is being installed or uninstalled: nothing listens (not cached)
			frappe.cache.set_value(CACHE_KEY, found)
		flags.flow_engine_trigger_map = found
		flags.flow_engine_trigger_map_at = now
	return found


def build_trigger_map() -> dict:
	doctypes: dict[str, dict[str, list]] = {}  # doctype → document event → flows
	custom: dict[str, list] = {}
	rows = frappe.get_all(
		"Flow Template",
		filters={"is_active": 1},
		fields=[
			"name",
			"trigger_doctype",
			"trigger_event",
			"trigger_field",
			"custom_event",
			"trigger_condition",
			"flow_definition",
			*runs.START_FIELDS,
		],
		order_by="name asc",
	)
	for row in rows:
		entry = {
			"template": row.name,
			"row": {field: row[field] for field in runs.START_FIELDS},  # what starting a run reads
			"event": row.trigger_event,
			"field": row.trigger_field,
			"doctype": row.trigger_doctype,
			"condition": store.loads(row.trigger_condition, default={}) or None,
			"condition_text": row.trigger_condition or "",
		}
		if entry["condition"]:  # a condition may read the flow's variables
			definition = store.loads(row.flow_definition, default={}) or {}
			entry["variables"] = (definition.get("variables") or {}) if isinstance(definition, dict) else {}
		if row.trigger_event == "custom" and row.custom_event:
			custom.setdefault(row.custom_event, []).append(entry)
		elif row.trigger_doctype and row.trigger_event not in ("manual", "custom", None, ""):
			by_method = doctypes.setdefault(row.trigger_doctype, {})
			methods = VALUE_CHANGED_METHODS if row.trigger_event == "value_changed" else (row.trigger_event,)
			for method in methods:
				by_method.setdefault(method, []).append(entry)
	for by_method in doctypes.values():
		indexes = {
			method: _equality_index(entries) for method, entries in by_method.items() if len(entries) > 1
		}
		if any(indexes.values()):
			by_method[INDEX_KEY] = {method: index for method, index in indexes.items() if index}
	# the design's business events some flow listens to, under their doctype (one lookup when none)
	for doctype, by_method in business_events.listened(custom).items():
		doctypes.setdefault(doctype, {})[business_events.KEY] = by_method
	return {"doctypes": doctypes, "custom": custom}


def _equality_index(entries: list[dict]) -> dict | None:
	"""Flows of one document event whose condition is `field == text` (conditions.equality_key), by
	field and text: a save finds the flows its values can start with a lookup, and evaluates only the
	others (`rest`). Positions index `entries`, so flows still start in their order."""
	fields: dict[str, dict[str, list[int]]] = {}
	rest: list[int] = []
	for position, entry in enumerate(entries):
		key = conditions.equality_key(entry.get("condition"))
		if key is None or entry["event"] == "value_changed":
			rest.append(position)
		else:
			fields.setdefault(key[0], {}).setdefault(key[1], []).append(position)
	if not fields:
		return None
	return {"fields": fields, "rest": rest}


def _candidates(by_method: dict, method: str | None, entries: list[dict], doc) -> list[dict]:
	"""The entries of `method` that may start for `doc`: all of them, or with an equality index, those
	whose text equals the document's value plus those the index cannot decide."""
	index = (by_method.get(INDEX_KEY) or {}).get(method)
	if not index:
		return entries
	positions = list(index["rest"])
	for field, table in index["fields"].items():
		key = conditions.value_key(doc.get(field))
		if key is not None and key in table:
			positions += table[key]
	return [entries[position] for position in sorted(positions)]


def clear_trigger_map() -> None:
	frappe.cache.delete_value(CACHE_KEY)
	frappe.local.flags.flow_engine_trigger_map = None


def on_doc_event(doc, method: str | None = None) -> None:
	"""doc_events["*"] handler for every supported event."""
	doctype = doc.doctype
	by_method = get_trigger_map()["doctypes"].get(doctype)
	# on_change reaches waits through on_doc_change, for every doctype
	waited = method != "on_change" and waits.is_waited(doctype)
	if not (by_method or waited) or doctype in IGNORED_DOCTYPES or _skip_now():
		return  # a doctype no flow and no wait listens to: two set lookups, no flag read
	if waited:
		_resume_waits(waits.on_doc_event, doc, method)
	if not by_method:
		return
	raised = by_method.get(business_events.KEY)
	if raised and method in raised:
		business_events.raise_events(doc, method, raised[method])
	entries = by_method.get(method)
	if not entries:
		return
	matched = [
		entry for entry in _candidates(by_method, method, entries, doc) if _event_matches(entry, doc, method)
	]
	if not matched:
		return
	busy = jobs.executing_templates_on(doc.doctype, doc.name)
	parent = jobs.current_execution()
	depth = (parent["depth"] + 1) if parent else 0
	data = None
	for entry in matched:
		if entry["template"] in busy:
			continue  # this flow is saving its own trigger document: do not loop
		if depth > runs.MAX_DEPTH:
			frappe.log_error(
				title=f"flow_engine: '{entry['template']}' not started (flows nested {depth} deep)",
				message=f"{doc.doctype} {doc.name} {method}; parent run {parent and parent['run']}",
			)
			continue
		try:
			if entry.get("condition"):
				data = data or {"doc": DocView(doc), "customer": TriggerCustomer(doc)}
				if not _compiled(entry)({**data, "variables": entry.get("variables") or {}}):
					continue
			_start_safely(
				entry,
				doc=doc,
				event=_event_name(entry, method),
				source="event",
				parent_run=parent["run"] if parent else None,
				depth=depth,
			)
		except Exception:
			frappe.log_error(
				title=f"flow_engine: trigger of flow '{entry['template']}' failed on {doc.doctype} {doc.name}"
			)


def on_doc_change(doc, method: str | None = None) -> None:
	"""doc_events["*"]["on_change"]: a dispatch job turning completed (its close webhook), and
	wait_for steps waiting for a change (a save, a submit, a db_set). Two set lookups when neither."""
	doctype = doc.doctype
	job = dispatch.is_watched(doctype)
	waited = waits.is_waited(doctype)
	if not (job or waited) or doctype in IGNORED_DOCTYPES or _skip_now():
		return
	if job:
		dispatch.on_job_change(doc, method)
	if waited:
		_resume_waits(waits.on_doc_event, doc, "on_change")


def _resume_waits(check: Callable, *args) -> None:
	"""Resume the wait_for steps an event satisfies; whatever goes wrong, the user's save goes on
	(unless the database has rolled their transaction back: then the error goes up, see _start_safely)."""
	try:
		check(*args)
	except frappe.QueryDeadlockError:
		raise
	except Exception:
		frappe.log_error(title="flow_engine: resuming wait_for steps failed")


class TriggerCustomer(Mapping):
	"""The trigger document's customer, as a trigger condition reads it (`customer.customer_group`):
	loaded only when a condition asks for it."""

	__slots__ = ("_data", "_doc")

	def __init__(self, doc):
		self._doc, self._data = doc, None

	def _load(self) -> dict:
		if self._data is None:
			name = resolve_customer(self._doc)
			self._data = {}
			if (
				name
				and frappe.db.table_exists("Customer", cached=True)
				and frappe.db.exists("Customer", name)
			):
				self._data = frappe.get_doc("Customer", name).as_dict(convert_dates_to_str=True)
		return self._data

	def __getitem__(self, key: str):
		return self._load()[key]

	def __contains__(self, key: object) -> bool:
		return key in self._load()

	def __iter__(self) -> Iterator[str]:
		return iter(self._load())

	def __len__(self) -> int:
		return len(self._load())


_COMPILED: dict[str, Callable[[Mapping], bool]] = {}


def _compiled(entry: Mapping) -> Callable[[Mapping], bool]:
	"""The entry's condition compiled once per process (keyed by its text, so an edit recompiles)."""
	key = entry["condition_text"]
	check = _COMPILED.get(key)
	if check is None:
		if len(_COMPILED) > 2000:
			_COMPILED.clear()
		check = _COMPILED[key] = conditions.compile_condition(entry["condition"])
	return check


def _event_name(entry: Mapping, method: str | None) -> str:
	return "value_changed" if entry["event"] == "value_changed" else (method or "")


def _event_matches(entry: Mapping, doc, method: str | None) -> bool:
	event = entry["event"]
	if event == method:
		return True
	if event == "value_changed" and method in VALUE_CHANGED_METHODS:
		if doc.flags.in_insert or not entry.get("field"):
			return False
		return bool(doc.get_doc_before_save()) and doc.has_value_changed(entry["field"])
	return False


def _start_safely(entry: Mapping, **kwargs) -> str | None:
	"""Start a run of the map entry's flow beside the user's save (`resilience.beside_the_save`):
	whatever goes wrong with the flow, the save goes on, unless the database rolled the whole
	transaction back. The flow's row comes with the map (read when the map was built)."""
	row = frappe._dict(entry["row"])
	return resilience.beside_the_save(
		runs.start_savepoint(row),
		f"flow_engine: could not start flow '{entry['template']}'",
		runs.start_run,
		entry["template"],
		require_active=True,
		row=row,
		**kwargs,
	)


def dispatch_event(
	event: str, doc=None, payload: Mapping | None = None, customer: str | None = None
) -> list[str]:
	"""Start every active flow listening to custom event `event`. Returns the new run names.
	`customer`: the runs' customer, instead of the one read from `doc`."""
	if _skip_now():
		return []
	entries = get_trigger_map()["custom"].get(event) or []
	parent = jobs.current_execution()
	depth = (parent["depth"] + 1) if parent else 0
	started = []
	if isinstance(doc, str):
		raise TypeError("dispatch_event takes a Document (or None) for doc")
	_resume_waits(waits.on_custom_event, event, doc, payload)  # wait_for steps with this correlation key
	for entry in entries:
		if entry.get("doctype") and doc is not None and doc.doctype != entry["doctype"]:
			continue
		if depth > runs.MAX_DEPTH:
			frappe.log_error(title=f"flow_engine: custom event '{event}' nested {depth} deep; not started")
			continue
		if entry.get("condition"):
			data = {
				"doc": DocView(doc) if doc is not None else {},
				"input": dict(payload or {}),
				"variables": {**(entry.get("variables") or {}), **dict(payload or {})},
				"customer": TriggerCustomer(doc),
			}
			if not _compiled(entry)(data):
				continue
		name = _start_safely(
			entry,
			doc=doc,
			event=event,
			source="custom",
			input=dict(payload or {}),
			variables=dict(payload or {}),  # the design's run variables: {{variables.amount}}
			parent_run=parent["run"] if parent else None,
			depth=depth,
			customer=customer,
		)
		if name:
			started.append(name)
	return started
