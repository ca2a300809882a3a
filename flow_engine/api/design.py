"""The design's HTTP surface for integrators, with the design's argument names.

The design exposes `/flow/start`, `/flow/advance`, `/flow/complete`, `/flow/event`, `/flow/runs` and
`/flow/templates`; here they are whitelisted methods under `/api/method/flow_engine.api.design.<name>`,
callable with a Frappe API key (`Authorization: token <key>:<secret>`) or a Desk session. They check
what the app's own endpoints check (Flow Manager or System Manager; read access to the document a
run starts on) and call the same runtime. README "The design's HTTP API" has the mapping.

`executed` / `scheduled` in an answer describe the run when the answer is sent. A run is normally
advanced by a worker after the request commits (`queued: true`, nothing executed yet); with `wait=1`
the request commits and advances the run itself first, as the design's runtime did, so the answer
lists the steps that ran.
"""

from __future__ import annotations

from typing import Any

import frappe
from frappe import _
from frappe.utils import cint

from flow_engine.api.permissions import check_doc_read, json_arg, require_flow_manager
from flow_engine.api.runs import _source
from flow_engine.api.runs import get_run as _get_run
from flow_engine.engine import vocabulary
from flow_engine.runtime import runs as runtime
from flow_engine.runtime import store, templates

FINISHED = ("completed", "failed")


def _states(run: str) -> dict:
	row = frappe.db.get_value("Flow Run", run, "step_state")
	return store.loads(row, {}) or {}


def _report(run: str, before: dict | None = None, queued: bool = False) -> dict:
	"""{run, status, executed, scheduled, waiting, queued}: the steps that finished since `before`
	(completed or failed), the steps waiting for a time, and those waiting for a completion."""
	states = _states(run)
	before = before or {}
	executed = [
		step_id
		for step_id, state in states.items()
		if state.get("status") in FINISHED
		and (before.get(step_id) or {}).get("status") != state.get("status")
	]
	return {
		"run": run,
		"status": frappe.db.get_value("Flow Run", run, "status"),
		"executed": executed,
		"scheduled": [sid for sid, state in states.items() if state.get("status") == "scheduled"],
		"waiting": [sid for sid, state in states.items() if state.get("status") == "waiting"],
		"queued": queued,
	}


def _variables(variables: Any) -> dict:
	data = json_arg(variables, "variables")
	if data is not None and not isinstance(data, dict):
		frappe.throw(_("'variables' must be a JSON object"), frappe.ValidationError)
	return data or {}


def _customer(customer: str | None) -> str | None:
	if not customer:
		return None
	if not frappe.db.exists("DocType", "Customer"):
		frappe.throw(_("'customer' needs ERPNext's Customer doctype, which this site does not have"))
	check_doc_read("Customer", customer)
	return customer


def _drive(run: str) -> None:
	"""Commit (the run row and the caller's work become visible), then advance the run here."""
	frappe.db.commit()
	runtime.advance(run)
	frappe.db.commit()


@frappe.whitelist(methods=["POST"])
def start(
	template: str,
	doctype: str | None = None,
	docname: str | None = None,
	customer: str | None = None,
	variables: dict | str | None = None,
	wait: int | str | None = 0,
) -> dict:
	"""Start a run of `template` on a document (or none): {run, status, executed, scheduled, …}.

	`variables` become the run's variables ({{variables.x}}) and its input ({{input.x}}, checked
	against the flow's payload schema); `customer` overrides the customer read from the document."""
	require_flow_manager()
	if bool(doctype) != bool(docname):
		frappe.throw(_("Give both 'doctype' and 'docname', or neither"), frappe.ValidationError)
	check_doc_read(doctype, docname)
	data = _variables(variables)
	name = runtime.start_run(
		template,
		reference_doctype=doctype,
		reference_name=docname,
		event="manual",
		source=_source(),
		input=data,
		customer=_customer(customer),
		variables=data,
	)
	if name is None:  # the flow's dedupe key: a run for the same key is open (policy "skip")
		return {
			"run": None,
			"status": "skipped",
			"reason": _("Flow '{0}' already has an open run with the same dedupe key").format(template),
			"executed": [],
			"scheduled": [],
			"waiting": [],
			"queued": False,
		}
	if cint(wait):
		_drive(name)
		return _report(name)
	return _report(name, queued=True)


@frappe.whitelist(methods=["POST"])
def advance(run: str) -> dict:
	"""Advance a run now, in this request: {run, status, executed (in this call), scheduled, …}."""
	require_flow_manager()
	if not frappe.db.exists("Flow Run", run):
		frappe.throw(_("Flow Run '{0}' does not exist").format(run), frappe.DoesNotExistError)
	before = _states(run)
	_drive(run)
	return _report(run, before)


@frappe.whitelist(methods=["POST"])
def complete(run: str, step_id: str, result: dict | str | None = None, wait: int | str | None = 0) -> dict:
	"""Complete a parked manual / on_webhook step as the caller; with `wait=1` the run then goes on in
	this request. {run, step_id, status, executed, scheduled, …}."""
	require_flow_manager()
	before = _states(run)
	runtime.complete_step(run, step_id, result=json_arg(result, "result"), by=frappe.session.user)
	if cint(wait):
		_drive(run)
		return {**_report(run, before), "step_id": step_id}
	return {**_report(run, before, queued=True), "step_id": step_id}


@frappe.whitelist(methods=["POST"])
def event(
	event: str,
	doctype: str | None = None,
	docname: str | None = None,
	customer: str | None = None,
	variables: dict | str | None = None,
) -> dict:
	"""Raise a business (custom) event: every active flow listening to it starts.
	{results: [{template, run}]}; the runs go on in a worker."""
	require_flow_manager()
	from flow_engine.runtime.triggers import dispatch_event

	if bool(doctype) != bool(docname):
		frappe.throw(_("Give both 'doctype' and 'docname', or neither"), frappe.ValidationError)
	check_doc_read(doctype, docname)
	data = _variables(variables)
	customer = _customer(customer)
	doc = frappe.get_doc(doctype, docname) if doctype else None
	started = dispatch_event(event, doc=doc, payload=data, customer=customer or None)
	results = [
		{"run": name, "template": frappe.db.get_value("Flow Run", name, "template")} for name in started
	]
	return {"results": results}


RUN_FIELDS = (
	"name",
	"template",
	"template_version",
	"status",
	"trigger_event",
	"reference_doctype",
	"reference_name",
	"customer",
	"source",
	"started_at",
	"completed_at",
	"error",
)


@frappe.whitelist()
def runs(
	status: str | None = None,
	template: str | None = None,
	customer: str | None = None,
	limit: int = 20,
	start: int = 0,
) -> dict:
	"""Runs, newest first, filtered by status, template and customer: {runs: [...]} (Flow Managers;
	a document's readers use `flow_engine.api.list_runs` with the document)."""
	require_flow_manager()
	filters = {
		key: value
		for key, value in (("status", status), ("template", template), ("customer", customer))
		if value
	}
	rows = frappe.get_all(
		"Flow Run",
		filters=filters,
		fields=list(RUN_FIELDS),
		order_by="creation desc",
		limit_start=max(cint(start), 0),
		limit_page_length=min(max(cint(limit), 1), 500),
		ignore_permissions=True,
	)
	return {"runs": rows}


@frappe.whitelist()
def run(name: str) -> dict:
	"""One run with its step states: {run: {...}} (as `flow_engine.api.get_run`: a document's readers
	get the redacted view)."""
	return {"run": _get_run(name)}


TEMPLATE_FIELDS = (
	"template_name",
	"category",
	"icon",
	"description",
	"is_active",
	"is_system",
	"version",
	"step_count",
	"trigger_doctype",
	"trigger_event",
	"trigger_field",
	"custom_event",
	"trigger_condition",
	"run_as",
	"flow_definition",
	"payload_schema",
	"tags",
	"notes",
	"modified",
)
# what a caller may write (the design's `applies_to` is read by the template's validation)
WRITABLE = frozenset(
	(
		"template_name",
		"category",
		"icon",
		"description",
		"is_active",
		"trigger_doctype",
		"trigger_event",
		"trigger_field",
		"custom_event",
		"trigger_condition",
		"run_as",
		"flow_definition",
		"payload_schema",
		"tags",
		"notes",
		"editor_layout",
		"applies_to",
	)
)


def _template_dict(doc) -> dict:
	"""A template as the design reads it: its fields, `applies_to` (the trigger doctype) and the
	business event in `trigger_event` when the flow listens to one."""
	data = {"name": doc.name, **{field: doc.get(field) for field in TEMPLATE_FIELDS}}
	data["applies_to"] = doc.trigger_doctype
	if doc.trigger_event == "custom" and doc.custom_event:
		data["trigger_event"] = doc.custom_event
	return data


def _fields(values: dict) -> dict:
	values = {k: v for k, v in values.items() if k not in ("cmd", "data")}
	unknown = sorted(set(values) - WRITABLE)
	if unknown:
		frappe.throw(
			_("Unknown or read-only template field(s): {0}. Writable fields: {1}").format(
				", ".join(unknown), ", ".join(sorted(WRITABLE))
			),
			frappe.ValidationError,
		)
	for key in ("flow_definition", "payload_schema", "trigger_condition"):
		if isinstance(values.get(key), dict | list):
			values[key] = frappe.as_json(values[key])
	return values


@frappe.whitelist()
def list_templates(
	category: str | None = None,
	applies_to: str | None = None,
	is_active: int | str | None = None,
	trigger_event: str | None = None,
) -> dict:
	"""{templates: [...]} filtered as the design's GET /flow/templates."""
	require_flow_manager()
	filters: dict[str, Any] = {}
	if category:
		filters["category"] = category
	if applies_to:
		filters["trigger_doctype"] = applies_to
	if is_active not in (None, ""):
		filters["is_active"] = cint(is_active)
	if trigger_event:
		if vocabulary.business_event(trigger_event):
			filters.update(trigger_event="custom", custom_event=trigger_event)
		else:
			filters["trigger_event"] = trigger_event
	names = frappe.get_list("Flow Template", filters=filters, pluck="name", order_by="template_name asc")
	return {"templates": [_template_dict(frappe.get_doc("Flow Template", name)) for name in names]}


@frappe.whitelist()
def get_template(name: str) -> dict:
	require_flow_manager()
	doc = frappe.get_doc("Flow Template", name)
	doc.check_permission("read")
	return {"template": _template_dict(doc)}


@frappe.whitelist(methods=["POST"])
def create_template(**values) -> dict:
	"""Create a template from the design's fields ({template_name, …}): {template}."""
	require_flow_manager()
	doc = frappe.get_doc({"doctype": "Flow Template", **_fields(values)})
	doc.insert()
	return {"template": _template_dict(doc)}


@frappe.whitelist(methods=["POST", "PUT"])
def update_template(name: str, **values) -> dict:
	"""Patch a template with the given fields: {template}."""
	require_flow_manager()
	doc = frappe.get_doc("Flow Template", name)
	fields = _fields(values)
	if fields.get("template_name", doc.template_name) != doc.template_name:
		frappe.throw(
			_(
				"A template is renamed with Desk's rename (it keeps its runs); 'template_name' cannot be patched"
			),
			frappe.ValidationError,
		)
	if "applies_to" in fields and "trigger_doctype" not in fields:
		fields["trigger_doctype"] = None  # applies_to replaces it (both given and differing is an error)
	doc.update(fields)
	doc.save()
	return {"template": _template_dict(doc)}


@frappe.whitelist(methods=["POST", "DELETE"])
def delete_template(name: str) -> dict:
	"""Delete a template (system flows refuse): {ok: true}."""
	require_flow_manager()
	frappe.delete_doc("Flow Template", name)
	return {"ok": True}


@frappe.whitelist(methods=["POST"])
def duplicate_template(name: str, new_name: str | None = None) -> dict:
	"""Copy a template (inactive, not a system flow): {template}. `new_name` defaults to "<name> (copy)"."""
	require_flow_manager()
	frappe.has_permission("Flow Template", "create", throw=True)
	new_name = new_name or _("{0} (copy)").format(name)
	return {"template": _template_dict(frappe.get_doc("Flow Template", templates.duplicate(name, new_name)))}
