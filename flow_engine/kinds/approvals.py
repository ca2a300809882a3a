"""The approval kind: wait for a person's decision (see flow_engine/runtime/approvals.py)."""

from __future__ import annotations

from flow_engine.kinds.base import Park, StepCall


def approval(call: StepCall) -> Park:
	from flow_engine.runtime.approvals import open_approval

	return open_approval(call)
