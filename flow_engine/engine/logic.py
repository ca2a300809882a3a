"""Pure step logic shared by the runtime kinds and the dry run: conditions, gateways and variables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flow_engine.engine import catalog, conditions, templating
from flow_engine.engine.errors import ConditionError


def condition_of(payload: Mapping) -> Any:
	"""A condition step's condition: `payload.condition`, or the payload itself when it is one."""
	if "condition" in payload:
		return payload["condition"]
	return {key: value for key, value in payload.items() if key in ("field", "op", "value", "all", "any")}


def branch_for(payload: Mapping, context: Mapping) -> str:
	return "yes" if conditions.evaluate(condition_of(payload), context) else "no"


def switch_branch(payload: Mapping, context: Mapping) -> str:
	"""The first case whose condition holds, else the default branch (conditions as the condition kind)."""
	for index, case in enumerate(_named(payload, "cases", "case")):
		if _holds(case, index, "case", context):
			return case["name"]
	return catalog.default_case(payload)


def inclusive_branches(payload: Mapping, context: Mapping) -> list[str]:
	"""Every branch whose own condition holds, in the order written (possibly none)."""
	return [
		branch["name"]
		for index, branch in enumerate(_named(payload, "branches", "branch"))
		if _holds(branch, index, "branch", context)
	]


def _named(payload: Mapping, key: str, noun: str) -> list[Mapping]:
	entries = payload.get(key)
	if not isinstance(entries, list) or not entries:
		raise ConditionError(f"'{key}' must be a non-empty list of {{name, condition}} {noun}s")
	for index, entry in enumerate(entries):
		if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry["name"]:
			raise ConditionError(f"{noun} #{index + 1} of '{key}' needs a name and a condition")
	return entries


def _holds(entry: Mapping, index: int, noun: str, context: Mapping) -> bool:
	try:
		return conditions.evaluate(entry.get("condition"), context)
	except ConditionError as error:
		raise ConditionError(f"{noun} '{entry['name']}' (#{index + 1}): {error}") from None


def compute_variables(payload: Mapping, context: Mapping) -> dict:
	"""Render each variable in order; later ones can read earlier ones as {{variables.x}}."""
	values: dict = {}
	scope = dict(context)
	scope["variables"] = dict(context.get("variables") or {})
	for name, template in (payload.get("variables") or {}).items():
		value = templating.render(template, scope)
		values[name] = value
		scope["variables"][name] = value
	return values
