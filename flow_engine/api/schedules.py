"""Flow Schedules: list, pause, resume, and the inline checks of the schedule form."""

from __future__ import annotations

from typing import Any

import frappe

from flow_engine.api.permissions import require_flow_manager


@frappe.whitelist()
def list_schedules(template: str | None = None, status: str | None = None) -> list[dict]:
	"""Flow Schedules with their timing and last outcome."""
	require_flow_manager()
	from flow_engine.runtime import schedules

	return schedules.list_schedules(template, status)


@frappe.whitelist(methods=["POST"])
def pause_schedule(name: str) -> str:
	require_flow_manager()
	frappe.has_permission("Flow Schedule", "write", doc=name, throw=True)
	from flow_engine.runtime.schedules import set_enabled

	return set_enabled(name, False)


@frappe.whitelist(methods=["POST"])
def resume_schedule(name: str) -> str:
	require_flow_manager()
	frappe.has_permission("Flow Schedule", "write", doc=name, throw=True)
	from flow_engine.runtime.schedules import set_enabled

	return set_enabled(name, True)


@frappe.whitelist()
def check_schedule(
	template: str,
	payload: str | dict | None = None,
	cron: str | None = None,
	timezone: str | None = None,
	count: int = 5,
) -> dict:
	"""Inline checks for the schedule form: payload errors by path, and the next slots of a cron."""
	require_flow_manager()
	from flow_engine.engine import schedule as schedule_maths
	from flow_engine.runtime import schedules

	result: dict[str, Any] = {
		"payload_errors": schedules.payload_problems(template, payload or {}),
		"schema": schedules.template_schema(template)
		if frappe.db.exists("Flow Template", template)
		else None,
	}
	if cron:
		zone = timezone or frappe.utils.get_system_timezone()
		problem = schedule_maths.check_cron(cron) or schedule_maths.check_timezone(zone)
		result["cron_error"] = problem
		if not problem:
			instants = schedule_maths.slots(
				cron, zone, frappe.utils.now_datetime().astimezone(), min(int(count), 20)
			)
			result["next"] = [
				instant.astimezone(schedule_maths.ZoneInfo(zone)).strftime("%a %Y-%m-%d %H:%M %Z")
				for instant in instants
			]
	return result
