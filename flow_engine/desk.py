"""Endpoints of the Desk Flow Editor and the "Flows" form menu (permission checks at the door).

The editor loads a template with the kind catalog in one call, saves the definition, trigger and node
positions in one call (refusing an invalid definition with structured errors the editor puts on the
nodes at fault), and creates new flows. Everything else goes through `flow_engine.api`.
"""

from __future__ import annotations

import json

import frappe
from frappe import _

from flow_engine.api.permissions import json_arg, require_flow_manager
from flow_engine.engine import business_events, vocabulary
from flow_engine.engine import definition as definition_language
from flow_engine.engine.errors import DefinitionError
from flow_engine.runtime import identity, publishing, store, templates, trigger_fields

TEMPLATE_FIELDS = (
	"name",
	"template_name",
	"is_active",
	"is_system",
	"category",
	"icon",
	"version",
	"step_count",
	"description",
	"trigger_doctype",
	"trigger_event",
	"trigger_field",
	"custom_event",
	"trigger_condition",
	"run_as",
	"last_changed_by",
	"last_changed_on",
	"modified",
)
RUN_STATUSES = ("running", "waiting", "failed", "completed", "cancelled")


@frappe.whitelist()
def editor_data(template: str) -> dict:
	"""A template as the editor needs it: fields, definition (trigger synced), layout, kinds."""
	require_flow_manager()
	if not frappe.db.exists("Flow Template", template):
		frappe.throw(_("Flow Template '{0}' does not exist").format(template), frappe.DoesNotExistError)
	frappe.has_permission("Flow Template", "read", doc=template, throw=True)
	doc = frappe.get_doc("Flow Template", template)
	try:
		definition = publishing.working_definition(doc)  # the draft when there is one
	except DefinitionError:
		definition = {}
	definition = definition if isinstance(definition, dict) else {}
	definition.setdefault("version", 1)
	definition.setdefault("steps", [])
	if not doc.has_draft:
		definition["trigger"] = trigger_fields.from_fields(doc)
	from flow_engine.kinds.registry import installed_kinds

	return {
		"template": {
			**{field: doc.get(field) for field in TEMPLATE_FIELDS},
			"can_set_run_as": identity.is_system_manager(),  # others see Run As read-only
		},
		"definition": definition,
		"publishing": publishing_state(doc),
		"layout": store.loads(doc.editor_layout, {}) or {},
		"kinds": installed_kinds(),
		"trigger_events": ["manual", *definition_language.DOC_EVENTS, "custom"],
		# the design's business events (a custom event the app raises itself), offered as events
		"business_events": business_events.documentation(frappe.get_installed_apps()),
		"can_write": bool(frappe.has_permission("Flow Template", "write", doc=template)),
		"apps": frappe.get_installed_apps(),
	}


@frappe.whitelist(methods=["POST"])
def save_flow(
	template: str,
	definition: dict | str,
	layout: dict | str | None = None,
	is_active: int | str | None = None,
	run_as: str | None = None,
	publish: int | str | None = None,
	note: str | None = None,
) -> dict:
	"""Save definition, trigger (from `definition.trigger`) and node positions of a template: the
	definition and trigger as the flow's draft (runs keep the published version), published at once
	with `publish` (and `note`).

	An invalid definition is not saved: `{saved: false, errors: [...]}` with every error's step and
	field, so the editor can show them on the nodes at fault. The document's own validation (the same
	checks) still runs on save and stays the authority.
	"""
	require_flow_manager()
	frappe.has_permission("Flow Template", "write", doc=template, throw=True)
	raw = json_arg(definition, "definition")
	if not isinstance(raw, dict):
		frappe.throw(_("'definition' must be a JSON object"))
	raw = definition_language.load(raw)  # the design's vocabulary → the app's own form
	trigger = raw.get("trigger") if isinstance(raw.get("trigger"), dict) else {}
	trigger = {k: v for k, v in trigger.items() if v not in (None, "", {})}
	raw["trigger"] = trigger
	issues = templates.validate_definition(raw, trigger.get("doctype"))
	if issues:
		return {"saved": False, "errors": [issue.as_dict() for issue in issues]}
	doc = frappe.get_doc("Flow Template", template)
	trigger_fields.set_fields(doc, trigger)
	doc.flow_definition = definition_language.dumps(raw)
	if is_active not in (None, ""):
		doc.is_active = 1 if frappe.utils.cint(is_active) else 0
	if run_as not in (None, "") and run_as != doc.run_as:
		identity.check_may_set(run_as, doc.name)
		doc.run_as = run_as
	layout_value = json_arg(layout, "layout")
	if layout_value is not None:
		doc.editor_layout = json.dumps(layout_value, sort_keys=True)
	try:
		doc.save()
	except identity.StepNotPermitted:
		frappe.clear_last_message()  # the editor shows the errors on the steps at fault
		return {"saved": False, "errors": [issue.as_dict() for issue in doc.flags.run_as_issues or []]}
	if frappe.utils.cint(publish) and doc.has_draft:
		publishing.publish(doc.name, note=note)
		doc = frappe.get_doc("Flow Template", doc.name)
	return {
		"saved": True,
		"errors": [],
		"definition": publishing.working_definition(doc),
		"publishing": publishing_state(doc),
		"run_as": doc.run_as,
		"version": doc.version,
		"step_count": doc.step_count,
		"modified": str(doc.modified),
	}


def publishing_state(doc) -> dict:
	"""What the editor shows beside Publish: the published version and whether a draft waits."""
	return {
		"version": doc.version,
		"has_draft": bool(doc.has_draft),
		"draft_modified_by": doc.draft_modified_by,
		"draft_modified_on": str(doc.draft_modified_on) if doc.draft_modified_on else None,
	}


@frappe.whitelist(methods=["POST"])
def import_definition(text: str) -> dict:
	"""What the editor's *Import JSON* reads, in the app's own form: a definition, a list of steps, or a
	Flow Template export (its trigger fields, `applies_to` among them, fill the definition's trigger)."""
	require_flow_manager()
	data = json_arg(text, "text")
	if isinstance(data, list):
		data = {"version": 1, "steps": data}
	if not isinstance(data, dict):
		frappe.throw(_("Not a flow definition: expected a JSON object with a 'steps' list"))
	if "flow_definition" in data:  # a Flow Template export
		fields_trigger = vocabulary.template_trigger(data)
		data = json_arg(data["flow_definition"], "flow_definition") or {}
		if not isinstance(data, dict):
			frappe.throw(_("'flow_definition' must be a JSON object with a 'steps' list"))
		data["trigger"] = vocabulary.merge_triggers(data.get("trigger") or {}, fields_trigger)
	return {"definition": definition_language.load(data)}


@frappe.whitelist(methods=["POST"])
def create_flow(
	template_name: str,
	trigger_doctype: str | None = None,
	trigger_event: str = "manual",
	applies_to: str | None = None,
) -> str:
	"""A new, inactive, empty flow (for "New flow for this doctype" and the editor's start dialog).
	`applies_to` is the design's name for the trigger doctype."""
	require_flow_manager()
	frappe.has_permission("Flow Template", "create", throw=True)
	doc = frappe.get_doc(
		{
			"doctype": "Flow Template",
			"template_name": template_name,
			"trigger_doctype": trigger_doctype or None,
			"applies_to": applies_to or None,  # the controller maps it (and refuses a conflict)
			"trigger_event": trigger_event or "manual",
			"is_active": 0,
			"flow_definition": json.dumps({"version": 1, "steps": []}),
		}
	)
	doc.insert()
	return doc.name


@frappe.whitelist()
def document_flows(doctype: str, name: str | None = None) -> dict:
	"""For the "Flows" form menu: flows of this doctype and the latest runs of this document."""
	from flow_engine.api.permissions import check_doc_read, is_flow_manager

	if name:
		check_doc_read(doctype, name)
	else:
		frappe.has_permission(doctype, "read", throw=True)

	manager = is_flow_manager()
	flows = (
		frappe.get_all(
			"Flow Template",
			filters={"trigger_doctype": doctype},
			fields=["name", "is_active", "trigger_event"],
			order_by="template_name asc",
		)
		if manager
		else []
	)
	runs = []
	if name:
		runs = frappe.get_all(
			"Flow Run",
			# item runs of a for_each are listed under their parent run (its run view), not here
			filters={"reference_doctype": doctype, "reference_name": name, "scope": ["is", "not set"]},
			fields=["name", "template", "status", "started_at"],
			order_by="creation desc",
			limit_page_length=10,
			ignore_permissions=True,
		)
	return {"is_flow_manager": manager, "flows": flows, "runs": runs}


@frappe.whitelist()
def run_counts() -> dict:
	"""Runs by status (for the workspace and the editor's header)."""
	require_flow_manager()
	rows = frappe.get_all(
		"Flow Run", fields=["status", "count(name) as count"], group_by="status", ignore_permissions=True
	)
	counts = dict.fromkeys(RUN_STATUSES, 0)
	counts.update({row.status: row.count for row in rows if row.status})
	return counts
