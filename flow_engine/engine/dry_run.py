"""Dry run: walk a flow against a context without performing anything.

Shows which steps would run, in which wave and order, which branch each condition takes, and
every payload rendered. Delays and parked steps are noted and assumed to complete.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from flow_engine.engine import logic, planner, templating, timing
from flow_engine.engine.definition import Definition


def dry_run(definition: Definition, context: Mapping, now: datetime.datetime) -> dict[str, Any]:
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
			result: dict[str, Any] = {"dry_run": True}
			if step.kind == "condition":
				try:
					result["branch"] = logic.branch_for(step.payload, context)
					entry["branch"] = result["branch"]
				except Exception as error:
					entry["error"] = str(error)
				entry["payload"] = dict(step.payload)
			else:
				entry["payload"] = templating.render(step.payload, context)
			if step.kind == "set_variables":
				values = logic.compute_variables(step.payload, context)
				context["variables"].update(values)
				result["variables"] = values
			states[step.id] = {"status": "completed", "result": result}
			context["steps"][step.id] = {"result": result, "status": "completed"}
			entries.append(entry)
	never = [step.id for step in definition.steps if step.id not in states]
	return {"steps": entries, "waves": wave, "never_reached": never, "variables": context["variables"]}
