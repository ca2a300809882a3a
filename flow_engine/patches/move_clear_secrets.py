"""Move clear secrets out of stored flows (issue 10): definitions, pinned versions, history, attempts.

Flows saved before Flow Secret existed may hold webhook signing secrets and auth header values in
clear. Each value moves into a Flow Secret (encrypted) and is replaced by `{{secrets.NAME}}`, without
bumping the flow's version (the definition means the same, and runs stay pinned to it). Track-changes
history (Version rows of Flow Template) and the input/output/error of webhook attempts lose those
values too.
"""

import json

import frappe

from flow_engine.engine import secret_refs
from flow_engine.runtime import secrets, templates


def execute():
	moved_values: dict[str, str] = {}  # secret name → clear value, to redact texts that are no flows

	def move(text, flow):
		new_text, moved = secrets.move_clear_secrets_in_text(text, flow)
		moved_values.update({name: found.value for found, name in moved})
		return new_text, bool(moved)

	for row in frappe.get_all("Flow Template", fields=["name", "flow_definition"]):
		text, changed = move(row.flow_definition, row.name)
		if changed:
			frappe.db.set_value("Flow Template", row.name, "flow_definition", text, update_modified=False)
	for row in frappe.get_all("Flow Template Version", fields=["name", "template", "definition"]):
		text, changed = move(row.definition, row.template)
		if changed:
			frappe.db.set_value("Flow Template Version", row.name, "definition", text, update_modified=False)
	scrub_history(move, moved_values)
	scrub_attempts(moved_values)
	templates.clear_caches("*")


def scrub_history(move, moved_values: dict[str, str]) -> None:
	"""Version rows of Flow Template: definitions in their diffs get references, other texts masks."""
	for row in frappe.get_all(
		"Version", filters={"ref_doctype": "Flow Template"}, fields=["name", "docname", "data"]
	):
		try:
			data = json.loads(row.data or "{}")
		except ValueError:
			continue
		before = json.dumps(data, sort_keys=True)
		for change in data.get("changed") or []:
			if isinstance(change, list) and len(change) == 3 and change[0] == "flow_definition":
				for index in (1, 2):
					if isinstance(change[index], str):
						change[index] = move(change[index], row.docname)[0]
		data = secret_refs.redact(data, moved_values)
		if json.dumps(data, sort_keys=True) != before:
			frappe.db.set_value(
				"Version",
				row.name,
				"data",
				frappe.as_json(data, indent=None, separators=(",", ":")),
				update_modified=False,
			)


def scrub_attempts(moved_values: dict[str, str]) -> None:
	"""Webhook attempts recorded the rendered payload, which held the clear values."""
	if not moved_values:
		return
	for row in frappe.get_all(
		"Flow Step Attempt", filters={"kind": "webhook"}, fields=["name", "input", "output", "error"]
	):
		values = {}
		for field in ("input", "output", "error"):
			text = row.get(field)
			if isinstance(text, str) and text:
				redacted = secret_refs.redact(text, moved_values)
				if redacted != text:
					values[field] = redacted
		if values:
			frappe.db.set_value("Flow Step Attempt", row.name, values, update_modified=False)
