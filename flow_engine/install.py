"""Install, migrate and uninstall: the Flow Manager role and the seeded system flows."""

from __future__ import annotations

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
	"""Create the shipped flows that are missing (inactive, is_system); never overwrite a site's edits."""
	apps = set(frappe.get_installed_apps())
	created = []
	frappe.flags.flow_engine_seeding = True
	try:
		for path in sorted(SEEDS.glob("*.json")):
			data = json.loads(path.read_text())
			if data.get("requires_app") and data["requires_app"] not in apps:
				continue
			if frappe.db.exists("Flow Template", data["template_name"]):
				continue
			doc = frappe.get_doc(
				{
					"doctype": "Flow Template",
					"template_name": data["template_name"],
					"category": data.get("category"),
					"description": data.get("description"),
					"icon": data.get("icon"),
					"is_system": 1,
					"is_active": 0,
					"flow_definition": json.dumps(data["definition"]),
					"payload_schema": json.dumps(data["payload_schema"])
					if data.get("payload_schema")
					else None,
					"tags": data.get("tags"),
				}
			)
			doc.insert(ignore_permissions=True)
			created.append(doc.name)
	finally:
		frappe.flags.flow_engine_seeding = False
	return created
