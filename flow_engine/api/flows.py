"""Flows: validate and dry-run a definition, duplicate a flow, the kind catalog."""

from __future__ import annotations

import frappe
from frappe import _

from flow_engine.api.permissions import check_doc_read, json_arg, require_flow_manager
from flow_engine.engine.dry_run import dry_run as engine_dry_run
from flow_engine.runtime import store, templates
from flow_engine.runtime.context import build_context


@frappe.whitelist()
def validate(definition: dict | str | None = None, trigger_doctype: str | None = None) -> dict:
	"""Validate a definition without saving it: {valid, errors: [{step_id, field, message, text}]}."""
	require_flow_manager()
	issues = templates.validate_definition(
		definition if isinstance(definition, dict) else (definition or ""), trigger_doctype
	)
	return {"valid": not issues, "errors": [issue.as_dict() for issue in issues]}


@frappe.whitelist()
def dry_run(
	template: str | None = None,
	definition: dict | str | None = None,
	reference_doctype: str | None = None,
	reference_name: str | None = None,
	input: dict | str | None = None,
) -> dict:
	"""Walk a flow against a real document with no side effects: order, branches, rendered payloads."""
	require_flow_manager()
	check_doc_read(reference_doctype, reference_name)
	from flow_engine.engine.definition import build, load
	from flow_engine.engine.errors import DefinitionError
	from flow_engine.kinds.registry import get_catalog

	if definition in (None, "") and template:
		definition = frappe.db.get_value("Flow Template", template, "flow_definition")
	raw = load(definition if isinstance(definition, dict) else (definition or ""))
	issues = templates.validate_definition(raw, reference_doctype)
	if issues:
		error = DefinitionError(issues, flow=template)
		frappe.throw(
			templates.as_html(error.describe()),
			templates.FlowValidationError,
			title=_("Flow is invalid"),
		)
	compiled = build(raw, get_catalog())
	record = store.RunRecord(
		name="(dry run)",
		template=template or "(unsaved)",
		template_version=0,
		status="running",
		trigger_event="manual",
		reference_doctype=reference_doctype,
		reference_name=reference_name,
		customer=None,
		source="user",
		started_by=frappe.session.user,
		parent_run=None,
		schedule=None,
		depth=0,
		started_at=frappe.utils.now_datetime(),
		completed_at=None,
		waves=0,
		steps_executed=0,
		error=None,
		input=json_arg(input, "input") or {},
		variables={},
		states={},
		doc_snapshot=None,
		definition=compiled,
	)
	if reference_doctype and reference_name:
		from flow_engine.runtime.context import resolve_customer

		record.customer = resolve_customer(frappe.get_doc(reference_doctype, reference_name))
	context = build_context(record)
	context["doc"] = dict(context["doc"])
	context["customer"] = dict(context["customer"])
	return engine_dry_run(compiled, context, frappe.utils.now_datetime())


@frappe.whitelist(methods=["POST"])
def duplicate_template(template: str, new_name: str) -> str:
	require_flow_manager()
	frappe.has_permission("Flow Template", "create", throw=True)
	return templates.duplicate(template, new_name)


@frappe.whitelist()
def kinds() -> list[dict]:
	"""The kind catalog (field descriptors) that drives the editor's step forms."""
	require_flow_manager()
	from flow_engine.kinds.registry import installed_kinds

	return installed_kinds()
