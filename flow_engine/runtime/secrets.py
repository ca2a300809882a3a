"""Flow Secrets: credentials webhook steps use, stored encrypted, referenced as `{{secrets.NAME}}`.

- Every write of a Flow Template moves clear secrets (a webhook's signing secret, sensitive header
  values written as literal text) into Flow Secrets and leaves references behind, so definitions,
  pinned versions, track-changes history and exports never hold them (`extract_clear_secrets`).
- Values live in Frappe's `__Auth` table, encrypted with the site's key (a Password field); Frappe
  never sends them to a browser. Only the webhook kind resolves references, right before sending
  (`render` / `resolve`); everything else (attempt records, dry runs, the run view) shows the
  reference. `redact` masks values in texts such as error messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import frappe
from frappe import _

from flow_engine.engine import secret_refs, templating
from flow_engine.engine.definition import dumps, load
from flow_engine.engine.errors import DefinitionError

DOCTYPE = "Flow Secret"
placeholder = secret_refs.placeholder
references = secret_refs.references


class MissingSecretError(frappe.ValidationError):
	"""A definition references a Flow Secret that does not exist (or has no value)."""


# ---------------------------------------------------------------- resolution (webhook kind)


def values(names: Iterable[str]) -> dict[str, str]:
	"""Decrypted values of the named secrets; a missing one raises MissingSecretError naming it."""
	from frappe.utils.password import get_decrypted_password

	found: dict[str, str] = {}
	for name in names:
		if name in found:
			continue
		value = None
		if secret_refs.is_valid_name(name) and frappe.db.exists(DOCTYPE, name):
			value = get_decrypted_password(DOCTYPE, name, "value", raise_exception=False)
		if value in (None, ""):
			raise MissingSecretError(_("Secret '{0}' does not exist; create it in Flow Secret").format(name))
		found[name] = value
	return found


def resolve(value: Any) -> Any:
	"""A copy of a JSON-like value with every `{{secrets.NAME}}` replaced by the secret's value.

	Use it on text the flow's author wrote (the raw payload, e.g. `payload.secret`), never on
	rendered payloads: a document value "{{secrets.x}}" would then be resolved too. To render
	and resolve a payload together, use `render`.
	"""
	names = references(value)
	return secret_refs.substitute(value, values(names)) if names else value


def render(value: Any, context: Mapping) -> Any:
	"""`value` rendered against `context` with its secrets resolved, in one pass (see templating)."""
	return templating.render(value, context, secrets=values(references(value)))


def used_values(value: Any) -> dict[str, str]:
	"""{name: value} of the secrets `value` references (for `redact`)."""
	return values(references(value))


def redact(value: Any, secret_values: Mapping[str, str]) -> Any:
	"""A copy of `value` where each secret value reads `{{secrets.NAME}}` (for error texts, outputs)."""
	return secret_refs.redact(value, secret_values)


# ---------------------------------------------------------------- clear secrets out of definitions


def extract_clear_secrets(doc, raw: dict) -> dict:
	"""Flow Template.validate: move clear secrets of `raw` into Flow Secrets; returns the new raw."""
	result, moved = move_clear_secrets(raw, doc.name or doc.template_name)
	if moved:
		lines = "".join(
			f"<li>{frappe.utils.escape_html(found.label)} → <code>{placeholder(name)}</code></li>"
			for found, name in moved
		)
		frappe.msgprint(
			_("These values were moved out of the flow into Flow Secret, where they are stored encrypted:")
			+ f"<ul>{lines}</ul>",
			title=_("Secrets stored encrypted"),
			indicator="blue",
		)
	return result


def move_clear_secrets(raw: Any, flow: str | None) -> tuple[Any, list]:
	"""(raw with references, [(ClearSecret, name)]); stores each value in a Flow Secret."""
	from flow_engine.kinds.registry import get_catalog

	catalog = get_catalog()
	return secret_refs.extract(raw, lambda found: store_clear(found, flow), catalog.resolve)


def move_clear_secrets_in_text(text: str | None, flow: str | None) -> tuple[str | None, list]:
	"""The same for definition text (pinned versions, history); text that is not a flow stays as is."""
	if not text:
		return text, []
	try:
		raw = load(text)
	except DefinitionError:
		return text, []
	result, moved = move_clear_secrets(raw, flow)
	return (dumps(result), moved) if moved else (text, [])


def store_clear(found: secret_refs.ClearSecret, flow: str | None) -> str:
	"""The name of a Flow Secret holding `found.value`: an existing one of the same origin with the
	same value (so saving the same pasted value twice makes one secret), else a new one."""
	from frappe.utils.password import get_decrypted_password

	tail = "secret" if found.path == ("secret",) else str(found.path[-1])
	base = "_".join(
		[
			secret_refs.slug(flow or "flow", 60),
			secret_refs.slug(found.step_id, 40),
			secret_refs.slug(tail, 30),
		]
	)
	for number in range(1, 1000):
		name = base if number == 1 else f"{base}_{number}"
		if not frappe.db.exists(DOCTYPE, name):
			break
		if get_decrypted_password(DOCTYPE, name, "value", raise_exception=False) == found.value:
			return name
	else:
		name = f"{base}_{frappe.generate_hash(length=8).lower()}"
	secret = frappe.get_doc(
		{
			"doctype": DOCTYPE,
			"secret_name": name,
			"value": found.value,
			"template": flow,
			"description": _("Moved out of flow '{0}' ({1})").format(flow, found.label),
		}
	)
	secret.flags.ignore_links = True  # a new flow is validated before it exists
	secret.insert(ignore_permissions=True)
	return secret.name


# ---------------------------------------------------------------- site checks


def missing(names: Iterable[str]) -> set[str]:
	"""The names among `names` that are no Flow Secret."""
	names = {name for name in names if secret_refs.is_valid_name(name)}
	if not names:
		return set()
	existing = frappe.get_all(DOCTYPE, filters={"name": ["in", list(names)]}, pluck="name")
	return names - {name.lower() for name in existing}


# ---------------------------------------------------------------- Flow Secret controller


def normalise_name(text: Any) -> str:
	return secret_refs.slug(text)


def on_autoname(doc) -> None:
	doc.secret_name = normalise_name(doc.secret_name)
	doc.name = doc.secret_name


def on_validate(doc) -> None:
	if doc.is_new() and doc.value and doc.is_dummy_password(doc.value):
		frappe.throw(_("A secret cannot be only asterisks"), frappe.ValidationError)
	if not secret_refs.is_valid_name(doc.name):
		frappe.throw(
			_("Secret name '{0}' may only use lowercase letters, digits, '_' and '-'").format(doc.name),
			frappe.ValidationError,
		)


def on_trash(doc) -> None:
	"""A secret a flow still references cannot be deleted (its webhook steps would fail)."""
	users = flows_using(doc.name)
	if users:
		frappe.throw(
			_("Secret '{0}' is used by flow(s) {1}; remove it from their webhook steps first").format(
				doc.name, ", ".join(f"'{flow}'" for flow in users)
			),
			frappe.LinkExistsError,
			title=_("Secret in use"),
		)


def flows_using(name: str) -> list[str]:
	rows = frappe.get_all(
		"Flow Template",
		filters={"flow_definition": ["like", f"%secrets.{name}%"]},
		fields=["name", "flow_definition"],
	)
	return [row.name for row in rows if name in references(_safe_load(row.flow_definition))]


def _safe_load(text: str | None) -> Any:
	try:
		return json.loads(text or "{}")
	except ValueError:
		return {}
