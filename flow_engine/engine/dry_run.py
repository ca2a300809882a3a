"""Dry run: walk a flow against a context without performing anything.

Shows which steps would run, in which wave and order, which branch each condition and switch takes
(and which branches an inclusive gateway takes), when each join fires and on which of its inputs,
and every payload rendered. Delays and parked steps are noted and assumed to complete.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from flow_engine.engine import children, logic, planner, templating, timing
from flow_engine.engine.definition import Definition, build


def dry_run(definition: Definition, context: Mapping, now: datetime.datetime) -> dict[str, Any]:
	raw = definition.raw
	if children.has_bodies(raw):  # for_each bodies are walked once per item (_child)
		definition = build(children.scoped(raw, None))
	context = {**context, "variables": {**definition.variables, **(context.get("variables") or {})}}
	context.setdefault("steps", {})
	states: dict[str, dict] = {}
	entries: list[dict] = []
	wave = 0
	clock = now
	while wave <= len(definition.steps) + 1:
		decisions = planner.next_wave(definition, states, clock)
		if not decisions:
			break
		wave += 1
		settled = {step_id: dict(state) for step_id, state in states.items()}  # as the wave was planned
		for decision in decisions:
			step = definition.step(decision.step_id)
			entry = {
				"step_id": step.id,
				"label": step.title,
				"kind": step.kind,
				"wave": wave,
				"action": "skip" if decision.action == "skip" else "run",
				"note": decision.reason if decision.action == "skip" else "",
			}
			if decision.action == "skip":
				states[step.id] = {"status": "skipped"}
				entries.append(entry)
				continue
			if decision.action == "schedule":
				entry["note"] = f"waits {step.trigger.delay} (until {decision.due:%Y-%m-%d %H:%M})"
			elif decision.action == "schedule_on_date":
				rendered = templating.render(step.trigger.date, context)
				due = timing.date_due(rendered, step.trigger)
				entry["note"] = (
					f"waits until {due:%Y-%m-%d %H:%M}"
					if due
					else f"date {rendered!r} is not a date: would fail"
				)
			elif decision.action == "park":
				entry["note"] = (
					"waits for its webhook callback"
					if step.trigger.type == "on_webhook"
					else "waits for someone to complete it"
				)
			if len(step.inputs) > 1 or step.join != "all":
				entry["join"] = _join(step, settled)
				joined = f"joins {entry['join']['mode']} of {', '.join(step.inputs)}: fires in wave {wave}"
				entry["note"] = f"{joined}; {entry['note']}" if entry["note"] else joined
			result: dict[str, Any] = {"dry_run": True}
			if step.kind in ("condition", "switch"):
				try:
					if step.kind == "condition":
						result["branch"] = logic.branch_for(step.payload, context)
					else:
						result["branch"] = logic.switch_branch(step.payload, context)
					entry["branch"] = result["branch"]
				except Exception as error:
					entry["error"] = str(error)
				entry["payload"] = dict(step.payload)
			elif step.kind == "inclusive":
				try:
					result["branches"] = logic.inclusive_branches(step.payload, context)
					entry["branches"] = result["branches"]
				except Exception as error:
					entry["error"] = str(error)
				entry["payload"] = dict(step.payload)
			else:
				entry["payload"] = templating.render(step.payload, context)
			if step.kind in ("for_each", "call_flow"):
				result.update(_child(raw, step, entry, context, now))
			if step.kind == "wait_for":  # assumed to happen in time: its event branch is walked
				result["branch"] = entry["branch"] = "event"
				entry["note"] = _wait_note(entry.get("payload"))
			if step.kind == "approval":  # assumed approved: its approved branch is walked
				result["branch"] = entry["branch"] = "approved"
				entry["note"] = _approval_note(entry.get("payload"))
			if step.kind == "set_variables":
				values = logic.compute_variables(step.payload, context)
				context["variables"].update(values)
				result["variables"] = values
			states[step.id] = {"status": "completed", "result": result}
			context["steps"][step.id] = {"result": result, "status": "completed"}
			entries.append(entry)
	never = [step.id for step in definition.steps if step.id not in states]
	return {"steps": entries, "waves": wave, "never_reached": never, "variables": context["variables"]}


def _wait_note(payload: Any) -> str:
	payload = payload if isinstance(payload, Mapping) else {}
	if payload.get("custom_event"):
		what = f"custom event '{payload['custom_event']}' with key {payload.get('correlation_key')!r}"
	else:
		what = f"{payload.get('doctype')} {payload.get('event')}"
		if payload.get("filters"):
			what += " where " + ", ".join(f"{key} = {value!r}" for key, value in payload["filters"].items())
	hours = payload.get("timeout_hours")
	limit = f" (else the timeout branch after {hours} h)" if hours not in (None, "") else ""
	return f"waits for {what}{limit}; assumed to happen"


def _approval_note(payload: Any) -> str:
	payload = payload if isinstance(payload, Mapping) else {}
	who = [str(payload[key]) for key in ("approvers", "approver") if payload.get(key) not in (None, "", [])]
	if payload.get("role"):
		who.append(f"role {payload['role']}")
	note = f"waits for approval by {', '.join(who) or 'nobody'}"
	if payload.get("escalate_after_hours") not in (None, ""):
		note += f"; escalates to {payload.get('escalate_to')} after {payload['escalate_after_hours']} h"
	if payload.get("timeout_hours") not in (None, ""):
		note += f"; timed_out after {payload['timeout_hours']} h"
	return note + "; assumed approved"


def _join(step, states: Mapping) -> dict[str, Any]:
	"""How a step with several inputs fires: its mode and which inputs had completed when it did."""
	mode = step.join if step.join in ("all", "any") else f"{step.join} of {len(step.inputs)}"
	completed = [
		input_id for input_id in step.inputs if (states.get(input_id) or {}).get("status") == "completed"
	]
	return {"mode": mode, "inputs": list(step.inputs), "completed": completed}


DRY_RUN_ITEMS = 20  # items a dry run walks (the rest are counted)


def _child(raw: Mapping, step, entry: dict, context: dict, now: datetime.datetime) -> dict[str, Any]:
	"""call_flow: which flow it would start; for_each: its body walked for each item, payloads rendered
	with {{item}} and {{item_index}}."""
	payload = entry.get("payload") if isinstance(entry.get("payload"), Mapping) else {}
	if step.kind == "call_flow":
		wait = payload.get("wait", True) not in (False, 0, "0", "false")
		flow = payload.get("flow")
		entry["call_flow"] = {"flow": flow, "input": payload.get("input") or {}, "wait": wait}
		entry["note"] = f"would start flow '{flow}'" + (" and wait for it to end" if wait else "")
		return {"run": None, "status": "completed", "variables": {}} if wait else {"run": None}
	items = payload.get("items")
	if isinstance(items, Mapping):
		entry["note"] = (
			f"repeats its body for each {items.get('doctype')} matching {items.get('filters') or {}}"
		)
		entry["items"], entry["each"] = None, []
		return {"count": None, "results": [], "failed": []}
	if not isinstance(items, list | tuple):
		entry["error"] = f"items {items!r} is not a list: the step would fail"
		return {}
	body = build(children.scoped(raw, step.id))
	walked = []
	results = []
	for index, item in enumerate(list(items)[:DRY_RUN_ITEMS]):
		item_context = {
			**context,
			"item": item,
			"item_index": index,
			"steps": dict(context.get("steps") or {}),
			"variables": dict(context.get("variables") or {}),
		}
		report = dry_run(body, item_context, now)
		for sub in report["steps"]:
			walked.append({**sub, "item_index": index})
		results.append(
			{sub["step_id"]: {"dry_run": True} for sub in report["steps"] if sub["action"] == "run"}
		)
	entry["items"] = len(items)
	entry["each"] = walked
	shown = min(len(items), DRY_RUN_ITEMS)
	entry["note"] = f"repeats its body for {len(items)} items" + (
		f" (the first {shown} shown)" if shown < len(items) else ""
	)
	return {"count": len(items), "results": results, "failed": []}
