"""Comparing two versions of a flow, and which open runs may move from one to the other.

`diff` gives what an operator reads before publishing or rolling back: steps added, removed and
changed (field by field, payload keys included), and changes to the trigger and the variables.
`migration_problems` says why a run pinned to one version cannot continue on another: a step it has
begun, finished or is waiting on no longer exists there, or has become another kind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

STARTED = ("running", "waiting", "scheduled", "completed", "failed", "skipped", "cancelled")
MAX_VALUE_CHARS = 120


def _steps(definition: Mapping) -> dict[str, Mapping]:
	steps = definition.get("steps") if isinstance(definition, Mapping) else None
	return {
		step["id"]: step
		for step in steps or []
		if isinstance(step, Mapping) and isinstance(step.get("id"), str)
	}


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
	"""Dict fields as dotted paths (`payload.fields.status`); lists and scalars are leaves."""
	if isinstance(value, Mapping) and value:
		out: dict[str, Any] = {}
		for key, item in value.items():
			out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
		return out
	return {prefix: value}


def _changes(before: Any, after: Any, prefix: str = "") -> list[dict]:
	old, new = _flatten(before or {}, prefix), _flatten(after or {}, prefix)
	changes = []
	for path in sorted(set(old) | set(new)):
		if path in old and path in new and old[path] == new[path]:
			continue
		change = {"field": path}
		if path in old:
			change["before"] = old[path]
		if path in new:
			change["after"] = new[path]
		changes.append(change)
	return changes


def diff(before: Mapping | None, after: Mapping | None) -> dict:
	"""What changed from `before` to `after` (definitions as the app stores them)."""
	before, after = before or {}, after or {}
	old, new = _steps(before), _steps(after)
	changed = []
	for step_id in new:
		if step_id in old:
			fields = _changes(
				{key: value for key, value in old[step_id].items() if key != "id"},
				{key: value for key, value in new[step_id].items() if key != "id"},
			)
			if fields:
				changed.append({"id": step_id, "label": _label(new[step_id]), "fields": fields})
	return {
		"added": [
			{"id": step_id, "label": _label(step)} for step_id, step in new.items() if step_id not in old
		],
		"removed": [
			{"id": step_id, "label": _label(step)} for step_id, step in old.items() if step_id not in new
		],
		"changed": changed,
		"trigger": _changes(before.get("trigger"), after.get("trigger")),
		"variables": _changes(before.get("variables"), after.get("variables")),
	}


def is_empty(changes: Mapping) -> bool:
	return not any(changes.get(key) for key in ("added", "removed", "changed", "trigger", "variables"))


def _label(step: Mapping) -> str:
	return str(step.get("label") or step.get("kind") or "")


def _show(value: Any) -> str:
	text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
	return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def summary(changes: Mapping) -> str:
	"""The diff as lines a person reads (Flow Template Version `changes`, the CLI)."""
	lines = []
	for step in changes.get("added", []):
		lines.append(f"+ step {step['id']} ({step['label']}) added")
	for step in changes.get("removed", []):
		lines.append(f"- step {step['id']} ({step['label']}) removed")
	for step in changes.get("changed", []):
		for change in step["fields"]:
			lines.append(f"~ step {step['id']}: {_describe(change)}")
	for key in ("trigger", "variables"):
		for change in changes.get(key, []):
			lines.append(f"~ {key}: {_describe(change)}")
	return "\n".join(lines) or "no changes"


def _describe(change: Mapping) -> str:
	if "before" not in change:
		return f"{change['field']} set to {_show(change['after'])}"
	if "after" not in change:
		return f"{change['field']} removed (was {_show(change['before'])})"
	return f"{change['field']} {_show(change['before'])} → {_show(change['after'])}"


def migration_problems(states: Mapping, source: Mapping, target: Mapping) -> list[str]:
	"""Why a run on definition `source` with step `states` cannot continue on `target` (empty: it can):
	every step it has begun, finished or waits on must exist in `target` as the same kind."""
	old, new = _steps(source), _steps(target)
	problems = []
	for step_id, state in sorted(states.items()):
		status = state.get("status") if isinstance(state, Mapping) else None
		if status not in STARTED:
			continue
		if step_id not in new:
			problems.append(f"step '{step_id}' ({status}) does not exist in the new version")
		elif step_id in old and old[step_id].get("kind") != new[step_id].get("kind"):
			problems.append(
				f"step '{step_id}' ({status}) is a {old[step_id].get('kind')} in the run's version "
				f"and a {new[step_id].get('kind')} in the new one"
			)
	return problems
