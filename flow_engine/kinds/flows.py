"""Kinds that start child runs: call_flow (another flow) and for_each (the body once per item).

See runtime/children.py for how a child's end resumes the step.
"""

from __future__ import annotations

from collections.abc import Mapping

import frappe
from frappe import _

from flow_engine.engine import children as loops
from flow_engine.kinds.base import Park, StepCall, StepFailed
from flow_engine.runtime import jobs, store


def _truthy(value) -> bool:
	if isinstance(value, str):
		return value.strip().lower() not in ("", "0", "false", "no", "off")
	return bool(value)


def call_flow(call: StepCall):
	from flow_engine.runtime import runs

	payload = call.payload
	flow = str(payload.get("flow") or "").strip()
	if not flow:
		raise StepFailed(_("call_flow '{0}': name the flow to call ('flow')").format(call.step.id))
	if not frappe.db.exists("Flow Template", flow):
		raise StepFailed(_("call_flow '{0}': flow '{1}' does not exist").format(call.step.id, flow))
	data = payload.get("input")
	if data in (None, ""):
		data = {}
	if not isinstance(data, Mapping):
		raise StepFailed(_("call_flow '{0}': 'input' must be an object").format(call.step.id))
	frame = jobs.current_execution() or {}
	depth = int(frame.get("depth") or 0) + 1
	if depth > runs.MAX_DEPTH:
		raise StepFailed(
			_("call_flow '{0}': flows are nested {1} deep calling '{2}', the limit is {3}").format(
				call.step.id, depth, flow, runs.MAX_DEPTH
			)
		)
	reference = {}
	trigger_doctype = frappe.db.get_value("Flow Template", flow, "trigger_doctype")
	if (
		call.reference_doctype
		and call.reference_name
		and trigger_doctype in (None, "", call.reference_doctype)
	):
		reference = {"reference_doctype": call.reference_doctype, "reference_name": call.reference_name}
	try:
		child = runs.start_run(
			flow,
			**reference,
			event="manual",
			source="parent",
			input=dict(data),
			parent_run=call.run,
			parent_step=call.step.id,
			depth=depth,
		)
	except frappe.ValidationError as error:
		frappe.clear_last_message()
		raise StepFailed(
			_("call_flow '{0}': could not start '{1}': {2}").format(
				call.step.id, flow, frappe.utils.strip_html_tags(str(error))
			)
		) from None
	if child is None:
		return {
			"run": None,
			"status": "skipped",
			"reason": _("a run of '{0}' with the same key is open").format(flow),
		}
	if not _truthy(payload.get("wait", True)):
		return {"run": child}
	return Park("child_run", {"child": child, "flow": flow})


def for_each(call: StepCall):
	from flow_engine.runtime import children

	payload = call.payload
	items = children.resolve_items(call.step.id, payload.get("items"))
	try:
		concurrency = int(payload.get("concurrency") or loops.DEFAULT_CONCURRENCY)
	except (TypeError, ValueError):
		raise StepFailed(
			_("for_each '{0}': concurrency must be a whole number").format(call.step.id)
		) from None
	concurrency = max(1, min(concurrency, loops.MAX_CONCURRENCY))
	loop = loops.new_loop(len(items), concurrency, payload.get("on_item_error") or "stop")
	if not items:
		return loops.result_of(loop)
	parent = store.load_run(call.run)  # locked by this transaction already
	parent.variables = dict(call.context.get("variables") or {})
	parent.input = call.context.get("input") or {}
	state = {"loop": loop, "items": items}
	children.start_next(parent, call.step.id, state)
	return Park("items", state)
