"""Kinds that only compute: condition, switch, inclusive, wait, set_variables."""

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


def switch(call: StepCall) -> dict:
	"""The first case whose condition holds, else the default branch."""
	try:
		branch = logic.switch_branch(call.raw_payload, call.context)
	except ConditionError as error:
		raise StepFailed(f"switch is malformed: {error}") from None
	return {"branch": branch}


def inclusive(call: StepCall) -> dict:
	"""Every branch whose own condition holds (result["branches"]; no single "branch")."""
	try:
		branches = logic.inclusive_branches(call.raw_payload, call.context)
	except ConditionError as error:
		raise StepFailed(f"inclusive gateway is malformed: {error}") from None
	return {"branches": branches}


def wait(call: StepCall) -> dict:
	return {}


def set_variables(call: StepCall) -> dict:
	return {"variables": logic.compute_variables(call.raw_payload, call.context)}
