"""Flow Template lifecycle: validation on every write, version bumps, pinned definitions, caches."""

from __future__ import annotations

import json
from collections.abc import Mapping

import frappe
from frappe import _

from flow_engine.engine import children, vocabulary
from flow_engine.engine import definition as definition_language
from flow_engine.engine.definition import Definition, build
from flow_engine.engine.errors import DefinitionError, Issue
from flow_engine.engine.validation import validate
from flow_engine.kinds.registry import get_catalog
from flow_engine.runtime import admission, identity, publishing, recent, secrets, site_checks, trigger_fields
from flow_engine.runtime.errors import FlowValidationError

TRIGGER_FIELDS = ("trigger_doctype", "trigger_event", "trigger_field", "custom_event", "trigger_condition")
DEFINITIONS_CACHE = "flow_engine:definitions"


# the vocabulary asks the site which apps it has (a design payload may name an app's doctype)
vocabulary.configure(installed_apps=frappe.get_installed_apps)


def validate_definition(raw_or_text, trigger_doctype: str | None = None, site: bool = True) -> list[Issue]:
	"""Every issue in a definition: the engine's checks plus the site's (doctypes, fields, apps)."""
	try:
		raw = definition_language.load(raw_or_text)
	except DefinitionError as error:
		return error.issues
	catalog = get_catalog()
	issues = validate(raw, catalog)
	if site:
		issues += site_checks.check(raw, catalog, trigger_doctype)
	return issues


def on_validate(doc) -> None:
	"""Flow Template.validate: normalise, sync the trigger, validate, bump the version."""
	raw = (
		definition_language.load(doc.flow_definition) if doc.flow_definition else {"version": 1, "steps": []}
	)
	raw.setdefault("version", 1)
	raw.setdefault("steps", [])
	raw = secrets.extract_clear_secrets(doc, raw)  # clear secrets → Flow Secret, before anything stores raw
	before = doc.get_doc_before_save()
	apply_design_fields(doc)
	definition_trigger = raw.get("trigger") if isinstance(raw.get("trigger"), Mapping) else {}
	definition_trigger = {k: v for k, v in definition_trigger.items() if v not in (None, "", {})}
	if before is None:
		if definition_trigger:  # the form's fields win; the definition fills those left empty
			fields = {
				k: v for k, v in trigger_fields.from_fields(doc).items() if (k, v) != ("event", "manual")
			}
			trigger_fields.set_fields(doc, vocabulary.merge_triggers(fields, definition_trigger))
	elif not any(doc.has_value_changed(field) for field in TRIGGER_FIELDS) and definition_trigger:
		if doc.get("applies_to") and not definition_trigger.get("doctype"):
			definition_trigger["doctype"] = doc.get("applies_to")  # the design's form names it there
		trigger_fields.set_fields(doc, definition_trigger)
	# keys of the definition's own trigger that the form's fields cannot hold are reported, not dropped
	issues = [
		issue
		for issue in validate({"trigger": raw.get("trigger")}, get_catalog())
		if issue.code == "unknown_field"
	]
	raw["trigger"] = trigger_fields.from_fields(doc)
	issues += validate_definition(raw, doc.trigger_doctype)
	from flow_engine.runtime.children import check_flow_calls

	issues += check_flow_calls(doc, raw)  # call_flow: unknown flows, cycles between flows
	if doc.payload_schema:
		schema_issues = _check_payload_schema(doc.payload_schema)
		issues += schema_issues
		if not schema_issues:
			doc.payload_schema = json.dumps(json.loads(doc.payload_schema), indent=1)
	if issues:
		error = DefinitionError(issues, flow=doc.template_name or doc.name)
		frappe.throw(
			as_html(error.describe()),
			FlowValidationError,
			title=_("Flow '{0}' is invalid").format(doc.template_name or doc.name),
		)
	text = definition_language.dumps(raw)
	old_print = None
	if before is not None and before.flow_definition:
		try:
			old_print = definition_language.fingerprint(definition_language.load(before.flow_definition))
		except DefinitionError:
			old_print = None
	doc.flow_definition = text
	doc.step_count = len(raw["steps"])
	if publishing.is_draft_save(doc, before):
		identity.check_draft(doc)  # the draft's steps, as whoever publishes it would run them
		publishing.keep_as_draft(doc, before, raw)  # the published definition, trigger and version stay
	elif before is None or definition_language.fingerprint(raw) != old_print or not doc.version:
		if before is not None:
			doc.version = int(before.version or 0) + 1
		else:  # a flow re-created under a deleted flow's name continues its version numbers
			latest = frappe.db.get_value(
				"Flow Template Version", {"template": doc.name or doc.template_name}, "max(version)"
			)
			doc.version = int(latest or 0) + 1
		doc.flags.flow_version_changed = True
	publishing.on_publish(doc)
	identity.on_validate(doc)  # Run As: default, who may set it, what it may do
	from flow_engine.runtime.alerts import validate_template as validate_alerts

	validate_alerts(doc)  # a flow is not its own error flow


def apply_design_fields(doc) -> None:
	"""The design's template fields on a Flow Template (Desk, REST, import, seeds): `applies_to` is the
	trigger doctype (the doctype the flow is offered on and whose documents start it), a business event
	in `trigger_event` is that custom event, and an empty `trigger_condition` is none."""
	applies_to = doc.get("applies_to")
	if applies_to:
		if doc.trigger_doctype and doc.trigger_doctype != applies_to:
			frappe.throw(
				_("'applies_to' ({0}) and 'trigger_doctype' ({1}) differ: give the doctype once").format(
					applies_to, doc.trigger_doctype
				),
				FlowValidationError,
			)
		doc.trigger_doctype = applies_to
	event = (doc.trigger_event or "").strip()
	if vocabulary.business_event(event):
		if doc.custom_event and doc.custom_event != event:
			frappe.throw(
				_(
					"Trigger event '{0}' is a business event, but Custom Event says '{1}': give it once"
				).format(event, doc.custom_event),
				FlowValidationError,
			)
		doc.trigger_event, doc.custom_event = "custom", event
	if isinstance(doc.trigger_condition, str) and not doc.trigger_condition.strip():
		doc.trigger_condition = None


def as_html(text: str) -> str:
	"""Multi-line plain text for a Desk message (quotes kept readable for API clients)."""
	safe = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
	return "<br>".join(safe.split("\n"))


def _check_payload_schema(text) -> list[Issue]:
	from flow_engine.engine.payload import check_schema

	try:
		schema = json.loads(text) if isinstance(text, str) else text
	except ValueError as error:
		return [Issue(f"is not valid JSON: {error}", field="payload_schema")]
	problem = check_schema(schema)
	return [Issue(problem, field="payload_schema")] if problem else []


def after_save(doc) -> None:
	"""Flow Template.on_update: keep the pinned version and clear trigger caches."""
	if doc.flags.flow_version_changed or not frappe.db.exists(
		"Flow Template Version", {"template": doc.name, "version": doc.version}
	):
		store_version(doc.name, doc.version, doc.flow_definition)
		publishing.record_version(doc)
	if doc.flags.flow_version_changed or doc.has_value_changed("payload_schema"):
		from flow_engine.runtime.schedules import revalidate_for_template

		revalidate_for_template(doc.name)
	clear_caches()
	# a request that read the old flows while this transaction ran may have cached them again
	frappe.db.after_commit.add(clear_caches)


def store_version(template: str, version: int, text: str) -> None:
	name = f"{template}-v{version}"
	if frappe.db.exists("Flow Template Version", name):
		frappe.db.set_value("Flow Template Version", name, "definition", text, update_modified=False)
	else:
		frappe.get_doc(
			{
				"doctype": "Flow Template Version",
				"name": name,
				"template": template,
				"version": version,
				"definition": text,
			}
		).db_insert()


def definition_for(template: str, version: int, scope: str | None = None, whole: bool = False) -> Definition:
	"""The definition a run is pinned to; edits never change it. A run plans the flow's top level; an
	item run of a for_each (`scope`: that step's id) plans only its body (engine/children.py).
	`whole`: every step, bodies included (what the editor draws)."""
	base = f"{template}::{version}"
	key = base + ("::*" if whole else f"::{scope}" if scope else "")
	local = getattr(frappe.local, "flow_engine_definitions", None)
	if local is None:
		local = frappe.local.flow_engine_definitions = {}
	if key in local:
		return local[key]
	text = frappe.cache.hget(DEFINITIONS_CACHE, base)
	if text is None:
		text = frappe.db.get_value(
			"Flow Template Version", {"template": template, "version": version}, "definition"
		)
		if text is None and frappe.db.get_value("Flow Template", template, "version") == version:
			text = frappe.db.get_value("Flow Template", template, "flow_definition")
		if text is None:
			raise FlowValidationError(_("Flow '{0}' has no version {1}").format(template, version))
		frappe.cache.hset(DEFINITIONS_CACHE, base, text)
	catalog = get_catalog()
	raw = definition_language.load(text)
	if not whole and (scope or children.has_bodies(raw, catalog.resolve)):
		raw = children.scoped(raw, scope, catalog.resolve)
	definition = build(raw, catalog)
	local[key] = definition
	return definition


def clear_caches(template: str | None = None) -> None:
	from flow_engine.runtime.triggers import clear_trigger_map

	clear_trigger_map()
	recent.forget(admission.CONTROLS, identity.RUN_AS)  # what this process read of the flows
	if template:
		frappe.cache.delete_value(DEFINITIONS_CACHE)
		frappe.local.flow_engine_definitions = {}


def on_trash(doc) -> None:
	if doc.is_system and not _system_change_allowed():
		frappe.throw(
			_(
				"'{0}' is a system flow and cannot be deleted. Deactivate it, or duplicate it to make your own."
			).format(doc.name),
			frappe.PermissionError,
			title=_("System flow"),
		)
	if frappe.db.exists("Flow Run", {"template": doc.name, "status": ["in", ("running", "waiting")]}):
		frappe.throw(
			_("Flow '{0}' has runs in progress; cancel them before deleting it").format(doc.name),
			frappe.LinkExistsError,
		)


def after_delete(doc) -> None:
	clear_caches(doc.name)
	frappe.db.after_commit.add(clear_caches)


def before_rename(doc, old: str, new: str) -> None:
	if doc.is_system and not _system_change_allowed():
		frappe.throw(
			_("'{0}' is a system flow and cannot be renamed; duplicate it instead").format(old),
			frappe.PermissionError,
			title=_("System flow"),
		)


def after_rename(old: str, new: str) -> None:
	clear_caches(new)


def _system_change_allowed() -> bool:
	flags = frappe.local.flags
	return bool(flags.in_install or flags.in_uninstall or flags.in_migrate or flags.flow_engine_seeding)


def duplicate(template: str, new_name: str) -> str:
	source = frappe.get_doc("Flow Template", template)
	if frappe.db.exists("Flow Template", new_name):
		frappe.throw(_("A flow named '{0}' already exists").format(new_name), frappe.DuplicateEntryError)
	copy = frappe.copy_doc(source)
	copy.template_name = new_name
	copy.is_system = 0
	copy.is_active = 0
	copy.version = 0
	identity.prepare_copy(copy)
	copy.insert()
	return copy.name
