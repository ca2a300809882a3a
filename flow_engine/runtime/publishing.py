"""Draft → publish: edits wait in a draft; runs and triggers use the published version until Publish.

A Flow Template's `flow_definition` and trigger fields are always the published version (what new runs
start on, what the trigger map reads); `version` is its number. Any write that changes the definition
or the trigger — the editor, the Desk form, REST, an import — is kept as the draft instead
(`draft_definition`, `has_draft`), validated like a publish would be. Publish makes the draft the next
version and records who, when, a note and the changes; rolling back publishes an old version again.
A new flow's first save is its version 1. Runs stay on the version they started with; `migration`
moves waiting runs to another version when every step they began still exists there as the same kind.
"""

from __future__ import annotations

import json

import frappe
from frappe import _

from flow_engine.engine import definition as definition_language
from flow_engine.engine import versions
from flow_engine.runtime import clock, trigger_fields

OPEN = ("queued", "running", "waiting")
TRIGGER_FIELDS = ("trigger_doctype", "trigger_event", "trigger_field", "custom_event", "trigger_condition")


class PublishError(frappe.ValidationError):
	pass


def _published_form(doc) -> dict:
	"""A template's stored definition with its trigger fields, as on_validate builds a definition."""
	try:
		raw = definition_language.load(doc.flow_definition) if doc.flow_definition else {}
	except Exception:
		raw = {}
	raw = dict(raw) if isinstance(raw, dict) else {}
	raw.setdefault("version", 1)
	raw.setdefault("steps", [])
	raw["trigger"] = trigger_fields.from_fields(doc)
	return raw


def is_draft_save(doc, before) -> bool:
	"""Whether this save of a template keeps its definition changes as a draft: every save of a flow
	that exists, except a publish (and seeding, which publishes the app's own flows)."""
	return before is not None and not doc.flags.flow_publishing and not frappe.flags.flow_engine_seeding


def keep_as_draft(doc, before, raw: dict) -> None:
	"""In Flow Template.validate: keep the definition being saved as the draft and put the published
	definition, trigger and version back. Saving what is published again drops the draft."""
	published = _published_form(before)
	if definition_language.fingerprint(raw) == definition_language.fingerprint(published):
		doc.has_draft = 0
		doc.draft_definition = doc.draft_modified_by = doc.draft_modified_on = None
	elif not doc.has_draft or definition_language.dumps(raw) != doc.draft_definition:
		doc.has_draft = 1
		doc.draft_definition = definition_language.dumps(raw)
		doc.draft_modified_by = frappe.session.user
		doc.draft_modified_on = clock.now()
	_restore(doc, before)


def _restore(doc, before) -> None:
	doc.flow_definition = before.flow_definition
	for field in (*TRIGGER_FIELDS, "version", "step_count"):
		doc.set(field, before.get(field))


def draft_of(doc) -> dict | None:
	"""The draft definition (trigger included), or None."""
	if not doc.has_draft or not doc.draft_definition:
		return None
	return definition_language.load(doc.draft_definition)


def working_definition(doc) -> dict:
	"""What the editor edits: the draft when there is one, else the published definition."""
	return draft_of(doc) or _published_form(doc)


def publish(template: str, note: str | None = None, definition: dict | None = None) -> dict:
	"""Publish the draft (or `definition`, for a rollback) as the flow's next version."""
	doc = frappe.get_doc("Flow Template", template)
	doc.check_permission("write")
	if definition is None:
		definition = draft_of(doc)
		doc.flags.flow_publishing_draft = True
		if definition is None:
			frappe.throw(
				_("Flow '{0}' has no unpublished changes: version {1} is published").format(
					template, doc.version
				),
				PublishError,
			)
	previous = doc.version
	trigger_fields.set_fields(doc, definition.get("trigger") or {})
	doc.flow_definition = definition_language.dumps(definition)
	doc.flags.flow_publishing = True
	doc.flags.flow_publish_note = note
	doc.save()
	if doc.version == previous:
		frappe.throw(
			_("Flow '{0}': version {1} is already this definition; nothing to publish").format(
				template, previous
			),
			PublishError,
		)
	return {"template": doc.name, "version": doc.version, "previous_version": previous}


def on_publish(doc) -> None:
	"""In validate, after a save that publishes (or creates the flow): no draft is left."""
	if doc.flags.flow_publishing_draft:
		doc.has_draft = 0
		doc.draft_definition = doc.draft_modified_by = doc.draft_modified_on = None


def record_version(doc) -> None:
	"""After a publish (or a new flow's first save): who, when, note and changes on its version row."""
	name = frappe.db.get_value("Flow Template Version", {"template": doc.name, "version": doc.version})
	if not name:
		return
	before_text = frappe.db.get_value(
		"Flow Template Version",
		{"template": doc.name, "version": ["<", doc.version]},
		"definition",
		order_by="version desc",
	)
	new = json.loads(doc.flow_definition or "{}")
	if before_text:
		changes = versions.summary(versions.diff(json.loads(before_text), new))
	else:
		changes = _("first version")
	frappe.db.set_value(
		"Flow Template Version",
		name,
		{
			"published_by": frappe.session.user,
			"published_on": clock.now(),
			"note": doc.flags.flow_publish_note,
			"changes": changes,
		},
		update_modified=False,
	)


def rollback(template: str, version: int, note: str | None = None) -> dict:
	"""Publish an old version again (as the next version number)."""
	text = frappe.db.get_value(
		"Flow Template Version", {"template": template, "version": version}, "definition"
	)
	if text is None:
		frappe.throw(_("Flow '{0}' has no version {1}").format(template, version), PublishError)
	return publish(
		template, note=note or _("Rolled back to version {0}").format(version), definition=json.loads(text)
	)


def discard_draft(template: str) -> None:
	doc = frappe.get_doc("Flow Template", template)
	doc.check_permission("write")
	frappe.db.set_value(
		"Flow Template",
		template,
		{"has_draft": 0, "draft_definition": None, "draft_modified_by": None, "draft_modified_on": None},
	)


def definition_of(template: str, version: int | str) -> dict:
	"""Version `version` of a flow, `"draft"` for its draft, `"published"` for the published one."""
	doc = frappe.get_doc("Flow Template", template)
	if version == "draft":
		draft = draft_of(doc)
		if draft is None:
			frappe.throw(_("Flow '{0}' has no draft").format(template), PublishError)
		return draft
	if version in ("published", None, ""):
		version = doc.version
	text = frappe.db.get_value(
		"Flow Template Version", {"template": template, "version": int(version)}, "definition"
	)
	if text is None:
		frappe.throw(_("Flow '{0}' has no version {1}").format(template, version), PublishError)
	return json.loads(text)


def compare(template: str, base: int | str = "published", target: int | str = "draft") -> dict:
	changes = versions.diff(definition_of(template, base), definition_of(template, target))
	return {
		**changes,
		"summary": versions.summary(changes),
		"html": changes_html(changes),
		"base": base,
		"target": target,
	}


def changes_html(changes: dict) -> str:
	"""The diff for Desk (the Publish dialog of the form and of the editor)."""
	from frappe.utils import escape_html

	def value(item) -> str:
		return escape_html(item if isinstance(item, str) else json.dumps(item, default=str))

	def field(change: dict) -> str:
		name = f"<code>{escape_html(change['field'])}</code>"
		if "before" not in change:
			return f"{name} {_('set to')} <b>{value(change['after'])}</b>"
		if "after" not in change:
			return f"{name} {_('removed')} (<s>{value(change['before'])}</s>)"
		return f"{name} <s>{value(change['before'])}</s> → <b>{value(change['after'])}</b>"

	def step(entry: dict) -> str:
		return f"{_('Step')} <b>{escape_html(entry['id'])}</b> {escape_html(entry['label'])}"

	rows = [f'<li class="diff-added text-success">+ {step(entry)}</li>' for entry in changes["added"]]
	rows += [f'<li class="diff-removed text-danger">− {step(entry)}</li>' for entry in changes["removed"]]
	for entry in changes["changed"]:
		items = "".join(f"<li>{field(change)}</li>" for change in entry["fields"])
		rows.append(f'<li class="diff-changed">~ {step(entry)}<ul>{items}</ul></li>')
	for key, label in (("trigger", _("Trigger")), ("variables", _("Variables"))):
		rows += [f'<li class="diff-{key}">~ {label}: {field(change)}</li>' for change in changes[key]]
	if not rows:
		return f"<p>{_('No changes')}</p>"
	return f'<ul class="flow-diff list-unstyled">{"".join(rows)}</ul>'


def history(template: str) -> list[dict]:
	return frappe.get_all(
		"Flow Template Version",
		filters={"template": template},
		fields=["name", "version", "published_by", "published_on", "note", "changes"],
		order_by="version desc",
	)
