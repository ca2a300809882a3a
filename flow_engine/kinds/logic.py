"""Kinds that only compute: condition, wait, set_variables."""

from __future__ import annotations

from flow_engine.engine import logic
from flow_engine.engine.errors import ConditionError
from flow_engine.kinds.base import StepCall, StepFailed


def condition(call: StepCall) -> dict:
	try:
		branch = logic.branch_for(call.raw_payload, call.context)
	except ConditionError as error:
		raise StepFailed(f"condition is malformed: {error}") from None
	return {"branch": branch}


def wait(call: StepCall) -> dict:
	return {}


def set_variables(call: StepCall) -> dict:
	return {"variables": logic.compute_variables(call.raw_payload, call.context)}
