"""Pure step logic shared by the runtime kinds and the dry run: conditions and variables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flow_engine.engine import conditions, templating


def condition_of(payload: Mapping) -> Any:
	"""A condition step's condition: `payload.condition`, or the payload itself when it is one."""
	if "condition" in payload:
		return payload["condition"]
	return {key: value for key, value in payload.items() if key in ("field", "op", "value", "all", "any")}


def branch_for(payload: Mapping, context: Mapping) -> str:
	return "yes" if conditions.evaluate(condition_of(payload), context) else "no"


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
