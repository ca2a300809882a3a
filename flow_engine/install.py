"""Install, migrate and uninstall: the Flow Manager role and the seeded system flows."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import frappe

ROLE = "Flow Manager"
SEEDS = Path(__file__).parent / "seeds"


def before_install() -> None:
	ensure_role()


def after_install() -> None:
	ensure_role()
	seed_templates()
	refresh_installed_applications()


def refresh_installed_applications() -> None:
	"""Frappe's install-app adds the app to `installed_apps` but refreshes the Installed Applications
	table (what `bench list-apps` and Desk show) only on migrate and uninstall, so after an uninstall
	and a reinstall the app was installed but not listed. Refresh it here."""
	try:
		frappe.get_single("Installed Applications").update_versions()
	except Exception:
		frappe.log_error(title="flow_engine: could not refresh Installed Applications")


def after_migrate() -> None:
	ensure_role()
	seed_templates()


def after_app_install(app_name: str) -> None:
	if app_name != "flow_engine":
		seed_templates()  # e.g. ERPNext installed after flow_engine: add its flows


def before_uninstall() -> None:
	from flow_engine.runtime.triggers import clear_trigger_map

	clear_trigger_map()


def ensure_role() -> None:
	if not frappe.db.exists("Role", ROLE):
		frappe.get_doc({"doctype": "Role", "role_name": ROLE, "desk_access": 1}).insert(
			ignore_permissions=True
		)


def seed_templates() -> list[str]:
	"""Create the shipped flows that are missing (inactive, is_system), and bring the ones a site has
	not edited up to date with the app's seeds; never overwrite a site's edits."""
	apps = set(frappe.get_installed_apps())
	changed = []
	frappe.flags.flow_engine_seeding = True
	try:
		for path in sorted(SEEDS.glob("*.json")):
			data = json.loads(path.read_text())
			if data.get("requires_app") and data["requires_app"] not in apps:
				continue
			fields = {
				"category": data.get("category"),
				"description": data.get("description"),
				"icon": data.get("icon"),
				# a seed may use the design's template fields (the controller maps them)
				**_trigger_fields(data),
				"flow_definition": _text(data.get("definition", data.get("flow_definition"))),
				"payload_schema": json.dumps(data["payload_schema"]) if data.get("payload_schema") else None,
				"tags": data.get("tags"),
			}
			name = data["template_name"]
			if not frappe.db.exists("Flow Template", name):
				doc = frappe.get_doc(
					{
						"doctype": "Flow Template",
						"template_name": name,
						"is_system": 1,
						"is_active": 0,
						**fields,
					}
				)
				doc.insert(ignore_permissions=True)
			else:
				doc = frappe.get_doc("Flow Template", name)
				if not doc.is_system or not _unedited(doc):
					continue
				before = seed_digest(doc)
				doc.update(fields)
				doc.save(ignore_permissions=True)
				if seed_digest(doc) == before:
					if not doc.seed_digest:  # seeded before digests were kept: tracked from now on
						doc.db_set("seed_digest", before, update_modified=False)
					continue
			doc.db_set("seed_digest", seed_digest(doc), update_modified=False)
			changed.append(doc.name)
	finally:
		frappe.flags.flow_engine_seeding = False
	return changed


def seed_digest(doc) -> str:
	"""What a seeded flow looks like to an operator: its definition, trigger and description."""
	from flow_engine.engine import definition

	text = definition.fingerprint(
		{
			"definition": json.loads(doc.flow_definition or "{}"),
			**{key: doc.get(key) for key in (*TRIGGER_FIELDS[1:], "trigger_condition", "description")},
		}
	)
	return hashlib.sha256(text.encode()).hexdigest()


def _unedited(doc) -> bool:
	if doc.seed_digest:
		return doc.seed_digest == seed_digest(doc)
	return int(doc.version or 0) <= 1  # seeded before digests were kept: unchanged since its version 1


TRIGGER_FIELDS = ("applies_to", "trigger_doctype", "trigger_event", "trigger_field", "custom_event")


def _trigger_fields(data: dict) -> dict:
	fields = {key: data[key] for key in TRIGGER_FIELDS if data.get(key) not in (None, "")}
	if data.get("trigger_condition") not in (None, "", {}):
		fields["trigger_condition"] = _text(data["trigger_condition"])
	return fields


def _text(value) -> str | None:
	return value if isinstance(value, str) or value is None else json.dumps(value)
