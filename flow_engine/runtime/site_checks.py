"""Checks of a definition that need the site: doctypes, fields, apps. The engine checks the rest."""

from __future__ import annotations

from collections.abc import Mapping

import frappe

from flow_engine.engine import templating
from flow_engine.engine.catalog import Catalog
from flow_engine.engine.errors import Issue
from flow_engine.kinds.base import STANDARD_FIELDS


def unknown_doctype(doctype: str, step_id, label) -> Issue | None:
	"""The issue of a step's `payload.doctype` naming a DocType this site does not have, or None."""
	if _doctype_exists(doctype):
		return None
	return Issue(
		f"DocType '{doctype}' does not exist on this site",
		step_id,
		"payload.doctype",
		label,
		"unknown_doctype",
	)


def _doctype_exists(doctype: str) -> bool:
	return bool(doctype) and bool(frappe.db.exists("DocType", doctype))


def _field_names(doctype: str) -> set[str]:
	meta = frappe.get_meta(doctype)
	return {field.fieldname for field in meta.fields} | STANDARD_FIELDS


def check(raw: Mapping, catalog: Catalog, trigger_doctype: str | None) -> list[Issue]:
	issues: list[Issue] = []
	apps = set(frappe.get_installed_apps())
	trigger = raw.get("trigger") or {}
	trigger_doctype = trigger_doctype or trigger.get("doctype")
	if trigger_doctype and not _doctype_exists(trigger_doctype):
		issues.append(
			Issue(f"DocType '{trigger_doctype}' does not exist on this site", field="trigger.doctype")
		)
		trigger_doctype = None
	doc_fields = _field_names(trigger_doctype) if trigger_doctype else None
	if doc_fields is not None and trigger.get("event") == "value_changed" and trigger.get("field"):
		if trigger["field"] not in doc_fields:
			issues.append(
				Issue(f"'{trigger['field']}' is not a field of {trigger_doctype}", field="trigger.field")
			)

	for step in raw.get("steps") or []:
		if not isinstance(step, Mapping):
			continue
		step_id, label = step.get("id"), step.get("label") or None
		spec = catalog.get(step.get("kind"))
		payload = step.get("payload") if isinstance(step.get("payload"), Mapping) else {}
		issues += _missing_secrets(step_id, label, spec, payload)
		if spec is not None and spec.requires_app and spec.requires_app not in apps:
			issues.append(
				Issue(
					f"kind '{spec.name}' needs the app '{spec.requires_app}', which is not installed",
					step_id,
					"kind",
					label,
					"missing_app",
				)
			)
		if spec is not None and spec.name == "wait_for":  # the document type and fields it waits on
			from flow_engine.runtime import waits

			issues += waits.site_issues(step_id, label, payload, _field_names, unknown_doctype)
		if spec is not None and spec.name in ("create_doc", "update_doc", "assign", "comment"):
			doctype = payload.get("doctype")
			if isinstance(doctype, str) and doctype and "{{" not in doctype:
				missing = unknown_doctype(doctype, step_id, label)
				if missing:
					issues.append(missing)
					continue
				target_fields = _field_names(doctype)
			elif not doctype:
				target_fields = doc_fields if spec.name != "create_doc" else None
			else:
				target_fields = None
			fields = payload.get("fields")
			if target_fields is not None and isinstance(fields, Mapping):
				for name in fields:
					if name not in target_fields:
						where = doctype or trigger_doctype
						issues.append(
							Issue(
								f"'{name}' is not a field of {where}",
								step_id,
								f"payload.fields.{name}",
								label,
								"unknown_field",
							)
						)
		if doc_fields is not None:
			for where in ("payload", "trigger"):
				for path in templating.placeholders(step.get(where)):
					parts = path.split(".")
					if parts[0] == "doc" and len(parts) > 1 and parts[1] not in doc_fields:
						issues.append(
							Issue(
								f"'{{{{{path}}}}}': {trigger_doctype} has no field '{parts[1]}'",
								step_id,
								where,
								label,
								"unknown_field",
							)
						)
	return issues


def _missing_secrets(step_id, label, spec, payload: Mapping) -> list[Issue]:
	"""References to Flow Secrets that do not exist (webhook steps; elsewhere the engine refuses them)."""
	from flow_engine.engine import secret_refs
	from flow_engine.runtime import secrets

	if spec is None or spec.name not in secret_refs.SECRET_KINDS:
		return []
	found = list(secret_refs.reference_fields(payload))
	absent = secrets.missing(name for _field, name in found)
	return [
		Issue(
			f"secret '{name}' does not exist; create it in Flow Secret",
			step_id,
			field,
			label,
			"missing_secret",
		)
		for field, name in found
		if name in absent
	]
