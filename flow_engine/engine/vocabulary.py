"""The design's flow vocabulary, read into the app's own form.

The design this app implements (a flow editor for one ERPNext deployment) names some payload
fields, trigger fields and events differently: notify `to` / `body` / `template_id`, webhook
`body_template` (JSON text), erp_update `docname_ref` / `fields_json` (JSON text), a condition's
`{field, op, value}` directly in the payload, subscription_activate `subscription_ref`, the
`dispatch_job` payload, a trigger `event` holding a business event (`on_contract_signed`),
`condition: ""`, and the template field `applies_to`. `normalise` rewrites a definition written that
way into the app's form, so every entry point (Desk, REST, editor, CLI, seeds, API) stores and runs
the same thing and the editor shows the app's fields. README "The design's vocabulary" has the table.

`normalise` never raises, never changes its input and is idempotent. What it cannot translate
(JSON text that does not parse, an alias given together with a different canonical value) stays
where it is, and `leftover_problem` says why,
so validation reports it on the step and key instead of anything being dropped.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flow_engine.engine.definition import FLOW_EVENTS

# business events of the design (raised by the app's own integrations, or by code via dispatch_event)
DESIGN_EVENTS = (
	"on_contract_signed",
	"on_payment_received",
	"on_subscription_active",
	"on_quotation_created",
	"on_quotation_accepted",
	"on_issue_opened",
	"on_customer_created",
	"on_dispatch_completed",
)
# Frappe document methods that are not events a flow listens to: never read as business events
DOCUMENT_METHODS = (
	"validate",
	"before_validate",
	"before_insert",
	"before_naming",
	"autoname",
	"before_save",
	"before_submit",
	"before_cancel",
	"before_update_after_submit",
	"on_change",
	"before_rename",
	"after_rename",
	"after_delete",
	"before_discard",
	"on_discard",
)
TOP_KEYS = ("version", "trigger", "variables", "steps")
FLOW_TRIGGER_KEYS = ("doctype", "event", "field", "custom_event", "condition")
# design / template-field names of the flow trigger's keys
FLOW_TRIGGER_ALIASES = {
	"applies_to": "doctype",
	"trigger_doctype": "doctype",
	"trigger_event": "event",
	"trigger_field": "field",
	"trigger_condition": "condition",
}
STEP_TRIGGER_ALIASES = {"at": "date"}
# canonical kind → {design key: app key}
PAYLOAD_ALIASES: dict[str, dict[str, str]] = {
	"notify": {"to": "recipients", "body": "message", "template_id": "email_template"},
	"webhook": {"body_template": "body"},
	"update_doc": {"docname_ref": "name", "fields_json": "fields"},
	"subscription_activate": {"subscription_ref": "subscription"},
}
JSON_TEXT_KEYS = ("body_template", "fields_json")  # hold JSON text: parsed, then templated as usual
CONDITION_KEYS = ("field", "op", "value", "all", "any")
KIND_ALIASES = {"erp_update": "update_doc"}
JOB_KEYS = (
	"subject",
	"job_type",
	"priority",
	"duration_h",
	"assigned_group",
	"on_open_webhook",
	"on_close_webhook",
	"merge_key",
)
EMPTY = (None, "", [], {})

# installed apps of the current site, when the runtime provides them (for site-dependent aliases;
# none today: dispatch_job's doctype is chosen when its step runs)
_installed_apps: Callable[[], Iterable[str]] | None = None


def configure(installed_apps: Callable[[], Iterable[str]] | None) -> None:
	"""Let the runtime say which apps the current site has (called once per process, never per site)."""
	global _installed_apps
	_installed_apps = installed_apps


# ---------------------------------------------------------------- normalise


def normalise(raw: Any, apps: Iterable[str] | None = None) -> Any:
	"""The definition in the app's own form (a new object; `raw` is not changed)."""
	if not isinstance(raw, Mapping):
		return raw
	data = copy.deepcopy(dict(raw))
	if "trigger" in data:
		data["trigger"] = normalise_flow_trigger(data["trigger"])
	steps = data.get("steps")
	if isinstance(steps, list):
		out = []
		taken = {step.get("id") for step in steps if isinstance(step, Mapping)}
		for step in steps:
			out += _normalise_step(step, apps, taken)
		data["steps"] = out
	return data


def normalise_flow_trigger(trigger: Any) -> Any:
	if not isinstance(trigger, Mapping):
		return trigger
	out = _apply_aliases(trigger, FLOW_TRIGGER_ALIASES)
	if "condition" in out:
		condition = out["condition"]
		if isinstance(condition, str) and condition.strip():
			try:
				condition = json.loads(condition)
			except ValueError:
				pass  # validation says it is not JSON
		if condition in EMPTY or (isinstance(condition, str) and not condition.strip()):
			del out["condition"]
		else:
			out["condition"] = condition
	event = out.get("event")
	if isinstance(event, str) and event.strip() != event:
		event = out["event"] = event.strip()
	if business_event(event) and out.get("custom_event") in (None, "", event):
		out["event"] = "custom"
		out["custom_event"] = event
	for key in ("doctype", "field", "custom_event"):
		if key in out and out[key] in (None, ""):
			del out[key]
	return out


def business_event(event: Any) -> bool:
	"""True for an event name that is not one of the app's events: the design's business events, and
	any other plain name that is not a near-miss of a document event (`after_insrt` is a typo)."""
	if not isinstance(event, str) or not event or event in FLOW_EVENTS or event in DOCUMENT_METHODS:
		return False
	if event in DESIGN_EVENTS:
		return True
	if not re.match(r"^[A-Za-z][\w.:-]{0,139}$", event):
		return False
	return not difflib.get_close_matches(event, FLOW_EVENTS, n=1, cutoff=0.6)


def template_trigger(template: Mapping) -> dict:
	"""The trigger a Flow Template export (or a seed) gives in its fields, in the definition's form."""
	names = {
		"trigger_doctype": "doctype",
		"applies_to": "applies_to",
		"trigger_event": "event",
		"trigger_field": "field",
		"custom_event": "custom_event",
		"trigger_condition": "condition",
	}
	trigger = {names[key]: value for key, value in template.items() if key in names and value not in EMPTY}
	if trigger.get("event") == "manual" and len(trigger) == 1:
		return {}
	return normalise_flow_trigger(trigger)


def merge_triggers(primary: Any, secondary: Any) -> Any:
	"""`primary` completed with what `secondary` sets and it leaves empty (event 'manual' is empty)."""
	if not isinstance(secondary, Mapping) or not secondary:
		return primary
	if not isinstance(primary, Mapping):
		return dict(secondary) if primary in EMPTY else primary
	merged = dict(primary)
	for key, value in secondary.items():
		if merged.get(key) in EMPTY or (key == "event" and merged.get(key) == "manual"):
			merged[key] = value
	return normalise_flow_trigger(merged)


def _normalise_step(step: Any, apps, taken: set) -> list:
	if not isinstance(step, Mapping):
		return [step]
	step = dict(step)
	if isinstance(step.get("trigger"), Mapping):
		step["trigger"] = _apply_aliases(step["trigger"], STEP_TRIGGER_ALIASES)
	kind = step.get("kind")
	payload = step.get("payload")
	if not isinstance(payload, Mapping):
		if isinstance(kind, str) and kind in KIND_ALIASES:
			step["kind"] = KIND_ALIASES[kind]
		return [step]
	payload = dict(payload)
	extra: list[dict] = []
	if kind == "issue" and ("doctype" in payload or "fields" in payload):
		step["kind"] = "create_doc"  # `issue` as the alias of create_doc it once was
	elif kind == "dispatch_job" and ("doctype" in payload or "fields" in payload):
		step["kind"] = "create_doc"  # `dispatch_job` as the alias of create_doc it once was
	elif kind == "dispatch_job":
		payload, extra = _job(step, payload, taken)
	elif isinstance(kind, str) and kind in KIND_ALIASES:
		step["kind"] = KIND_ALIASES[kind]
	kind = step["kind"]
	if kind in PAYLOAD_ALIASES:
		payload = _apply_aliases(payload, PAYLOAD_ALIASES[kind], json_keys=JSON_TEXT_KEYS)
	if kind == "condition" and "condition" not in payload:
		inline = {key: payload.pop(key) for key in CONDITION_KEYS if key in payload}
		if inline:
			payload = {"condition": inline, **payload}
	if kind == "webhook" and isinstance(payload.get("method"), str) and "{{" not in payload["method"]:
		payload["method"] = payload["method"].strip().upper()
	step["payload"] = payload
	return [step, *extra]


def _apply_aliases(mapping: Mapping, aliases: Mapping[str, str], json_keys: Iterable[str] = ()) -> dict:
	"""Rename alias keys (in place of the alias, keeping the order); leave what cannot be renamed."""
	out: dict = {}
	for key, value in mapping.items():
		target = aliases.get(key)
		if target is None:
			if key not in out:
				out[key] = value
			continue
		if key in json_keys and isinstance(value, str):
			if not value.strip():
				continue
			parsed, error = parse_json_text(value)
			if error:
				out[key] = value  # validation reports the JSON error on this key
				continue
			value = parsed  # "{}" is an empty body: kept
		elif value in EMPTY:
			continue
		canonical = mapping.get(target)
		if canonical in EMPTY or canonical == value:
			out[target] = value
		else:
			out[key] = value  # a different value under both names: validation asks to keep one
	return out


def _title(value: Any) -> Any:
	"""Priorities as ERPNext spells them (`medium` → `Medium`); templates are left alone."""
	if isinstance(value, str) and value and "{{" not in value:
		return value.strip().title()
	return value


def _job(step: Mapping, payload: Mapping, taken: set) -> tuple[dict, list[dict]]:
	"""dispatch_job's payload (priority spelled as ERPNext does), plus an assign step for
	`assigned_group`. The job's doctype and field mapping are the site's (Flow Dispatch Settings),
	read when the step runs: the assign step names the doctype from the step's result."""
	out = {}
	for key, value in payload.items():
		if key == "assigned_group":
			continue
		if key in JOB_KEYS and value in EMPTY:
			continue
		out[key] = _title(value) if key == "priority" else value
	extra = []
	group = payload.get("assigned_group")
	step_id = step.get("id")
	if group not in EMPTY and isinstance(step_id, str):
		assign_id = _free_id(f"{step_id}_assign", taken)
		assign = {
			"id": assign_id,
			"kind": "assign",
			"label": f"{step.get('label') or step_id}: assign to {group}",
			"depends_on": [step_id],
			"payload": {
				"doctype": f"{{{{steps.{step_id}.result.doctype}}}}",
				"name": f"{{{{steps.{step_id}.result.name}}}}",
				"group": group,
			},
		}
		if step.get("parent_id"):
			assign["parent_id"], assign["branch"] = step["parent_id"], step.get("branch")
		extra.append(assign)
	return out, extra


def _free_id(wanted: str, taken: set) -> str:
	candidate, number = wanted, 2
	while candidate in taken:
		candidate, number = f"{wanted}_{number}", number + 1
	taken.add(candidate)
	return candidate


# ---------------------------------------------------------------- JSON text


def parse_json_text(text: str) -> tuple[Any, str | None]:
	"""(value, None) or (None, error) for JSON text; a bare `{{path}}` outside a string is read as the
	string "{{path}}", which renders to the value with its type (`{"amount": {{doc.total}}}` works)."""
	try:
		return json.loads(text), None
	except ValueError as error:
		first = error
	quoted = _quote_placeholders(text)
	if quoted != text:
		try:
			return json.loads(quoted), None
		except ValueError:
			pass
	where = ""
	if isinstance(first, json.JSONDecodeError):
		where = f" at line {first.lineno}, column {first.colno}"
	return None, f"is not valid JSON text{where}: {getattr(first, 'msg', first)}"


def _quote_placeholders(text: str) -> str:
	out, index, in_string = [], 0, False
	while index < len(text):
		char = text[index]
		if in_string:
			out.append(char)
			if char == "\\" and index + 1 < len(text):
				out.append(text[index + 1])
				index += 1
			elif char == '"':
				in_string = False
		elif char == '"':
			in_string = True
			out.append(char)
		elif text.startswith("{{", index):
			end = text.find("}}", index)
			if end < 0:
				out.append(text[index:])
				break
			out.append(json.dumps(text[index : end + 2]))
			index = end + 1
		else:
			out.append(char)
		index += 1
	return "".join(out)


# ---------------------------------------------------------------- what validation says


def did_you_mean(word: Any, candidates: Iterable[str]) -> str:
	"""' (did you mean 'x'?)' when a candidate is close, else ''."""
	if not isinstance(word, str):
		return ""
	close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
	return f" (did you mean '{close[0]}'?)" if close else ""


def payload_aliases(kind: str) -> dict[str, str]:
	aliases = dict(PAYLOAD_ALIASES.get(kind, {}))
	if kind == "condition":
		aliases.update({key: "condition" for key in CONDITION_KEYS})
	return aliases


def leftover_problem(kind: str, key: str, payload: Mapping) -> str | None:
	"""Why a design key is still in a normalised payload (None when `key` is not one)."""
	target = payload_aliases(kind).get(key)
	if target is None:
		return None
	value = payload.get(key)
	if key in JSON_TEXT_KEYS and isinstance(value, str):
		_parsed, error = parse_json_text(value)
		if error:
			return f"{error} (the design's JSON text for '{target}')"
	if target in payload:
		return f"is the design's name for '{target}', which is also given with another value; keep one"
	return f"is the design's name for '{target}'"
