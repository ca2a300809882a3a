"""Flow Schedules: validation, next-fire bookkeeping, exactly-once firing, revalidation.

A due schedule row is locked with `FOR UPDATE SKIP LOCKED`; its run is inserted and its next slot
written in the same transaction, so each slot fires exactly once however many ticks overlap. After
downtime a missed slot fires once and the next slot is computed from now (no burst of catch-ups).
Times in the database are naive site-local datetimes, as everywhere in Frappe.
"""

from __future__ import annotations

import datetime
import json
from zoneinfo import ZoneInfo

import frappe
from frappe import _
from frappe.utils import get_datetime, get_system_timezone, now_datetime

from flow_engine.engine import schedule as schedule_maths
from flow_engine.engine.payload import check_schema, payload_errors
from flow_engine.runtime import runs
from flow_engine.runtime.templates import FlowValidationError, as_html

BATCH = 50
TIMING_FIELDS = ("schedule_type", "cron", "timezone", "run_at", "enabled", "template")


def _site_zone() -> ZoneInfo:
	return ZoneInfo(get_system_timezone())


def to_site(instant: datetime.datetime) -> datetime.datetime:
	return instant.astimezone(_site_zone()).replace(tzinfo=None)


def from_site(moment: datetime.datetime) -> datetime.datetime:
	return moment.replace(tzinfo=_site_zone(), fold=0).astimezone(datetime.timezone.utc)


def template_schema(template: str) -> dict | None:
	text = frappe.db.get_value("Flow Template", template, "payload_schema")
	if not text:
		return None
	try:
		schema = json.loads(text)
	except ValueError:
		return None
	return schema if check_schema(schema) is None else None


def parse_payload(text) -> tuple[object, str | None]:
	if text in (None, ""):
		return {}, None
	if isinstance(text, dict):
		return text, None
	try:
		return json.loads(text), None
	except ValueError as error:
		return None, f"is not valid JSON: {error}"


def payload_problems(template: str, payload_text) -> list[str]:
	"""Why this payload cannot be used for `template` (empty list: it can)."""
	if not frappe.db.exists("Flow Template", template):
		return [_("Flow '{0}' does not exist").format(template)]
	schema = template_schema(template)
	if schema is None:
		return [
			_("Flow '{0}' has no valid payload schema; add one on the flow before scheduling it").format(
				template
			)
		]
	payload, problem = parse_payload(payload_text)
	if problem:
		return [f"payload {problem}"]
	return [f"payload → {path}: {message}" for path, message in payload_errors(schema, payload)]


def next_slot(doc, after: datetime.datetime | None = None) -> datetime.datetime | None:
	"""The next site-local slot of a schedule after `after` (site-local, default now)."""
	after = after or now_datetime()
	if doc.schedule_type == "One-time":
		return get_datetime(doc.run_at) if doc.run_at else None
	instant = schedule_maths.next_fire(
		doc.cron.strip(), doc.timezone or get_system_timezone(), from_site(after)
	)
	return to_site(instant)


def on_validate(doc) -> None:
	"""Flow Schedule.validate."""
	doc.timezone = (doc.timezone or "").strip() or get_system_timezone()
	problems = payload_problems(doc.template, doc.payload)
	if doc.schedule_type == "Recurring":
		for field, check in (
			("cron", schedule_maths.check_cron(doc.cron or "")),
			("timezone", schedule_maths.check_timezone(doc.timezone)),
		):
			if check:
				problems.append(f"{field}: {check}")
	elif not doc.run_at:
		problems.append("run_at: is required for a one-time schedule")
	if problems:
		frappe.throw(
			as_html(
				_("Schedule '{0}' cannot be saved:").format(doc.schedule_name or doc.name)
				+ "\n- "
				+ "\n- ".join(problems)
			),
			FlowValidationError,
			title=_("Invalid schedule"),
		)
	payload, _problem = parse_payload(doc.payload)
	doc.payload = json.dumps(payload, indent=1)
	timing_changed = doc.is_new() or any(doc.has_value_changed(field) for field in TIMING_FIELDS)
	if doc.status == "Invalid" or timing_changed:
		doc.last_error = None if doc.status == "Invalid" else doc.last_error
		doc.status = None
	if doc.status == "Done" and not timing_changed:
		return
	doc.status = "Active" if doc.enabled else "Paused"
	if timing_changed or not doc.next_fire_at:
		doc.next_fire_at = next_slot(doc)


def revalidate_for_template(template: str) -> dict:
	"""After a flow's definition or payload schema changed: disable schedules it broke."""
	outcome = {"valid": 0, "invalid": 0}
	version = frappe.db.get_value("Flow Template", template, "version")
	for row in frappe.get_all(
		"Flow Schedule", filters={"template": template}, fields=["name", "payload", "status"]
	):
		problems = payload_problems(template, row.payload)
		if problems:
			outcome["invalid"] += 1
			frappe.db.set_value(
				"Flow Schedule",
				row.name,
				{
					"enabled": 0,
					"status": "Invalid",
					"last_error": _("Invalid for version {0} of flow '{1}': {2}").format(
						version, template, "; ".join(problems)
					),
				},
			)
		else:
			outcome["valid"] += 1
			if row.status == "Invalid":
				frappe.db.set_value(
					"Flow Schedule",
					row.name,
					{
						"status": "Paused",
						"last_error": _(
							"The payload is valid again for version {0}; resume the schedule to fire it"
						).format(version),
					},
				)
	return outcome


LIST_FIELDS = (
	"name",
	"template",
	"schedule_type",
	"cron",
	"timezone",
	"run_at",
	"enabled",
	"status",
	"next_fire_at",
	"last_fired_at",
	"last_run",
	"fire_count",
	"last_error",
)


def list_schedules(template: str | None = None, status: str | None = None) -> list[dict]:
	"""Schedules with their timing and last outcome, soonest first."""
	filters = {key: value for key, value in (("template", template), ("status", status)) if value}
	return frappe.get_all(
		"Flow Schedule", filters=filters, fields=list(LIST_FIELDS), order_by="next_fire_at asc"
	)


def fire_due(now: datetime.datetime | None = None) -> int:
	"""Fire every due schedule once; return how many fired."""
	now = now or now_datetime()
	fired = 0
	while True:
		names = frappe.db.sql_list(
			"""select name from `tabFlow Schedule` where enabled=1 and status='Active' and next_fire_at <= %s
			order by next_fire_at limit %s for update skip locked""",
			(now, BATCH),
		)
		for name in names:
			fired += _fire_one(name, now)
		frappe.db.commit()
		if len(names) < BATCH:
			return fired


def _fire_one(name: str, now: datetime.datetime) -> int:
	doc = frappe.get_doc("Flow Schedule", name)
	slot = get_datetime(doc.next_fire_at)
	values = {
		"last_fired_at": now,
		"last_slot": slot,
		"fire_count": (doc.fire_count or 0) + 1,
		"last_error": None,
	}
	problems = payload_problems(doc.template, doc.payload)
	fired = 0
	if problems:
		values.update(
			enabled=0, status="Invalid", last_error="; ".join(problems), fire_count=doc.fire_count or 0
		)
	else:
		frappe.db.savepoint("flow_engine_schedule")
		try:
			values["last_run"] = runs.start_run(
				doc.template,
				event="schedule",
				source="schedule",
				input=parse_payload(doc.payload)[0],
				schedule=doc.name,
				schedule_slot=slot,
			)
			fired = 1
		except Exception as error:
			frappe.db.rollback(save_point="flow_engine_schedule")
			values["last_error"] = frappe.utils.strip_html_tags(str(error)) or error.__class__.__name__
			frappe.log_error(title=f"flow_engine: schedule '{name}' could not start its flow")
	if doc.schedule_type == "One-time":
		values.update(status="Done", next_fire_at=None)
	elif values.get("status") != "Invalid":
		values["next_fire_at"] = next_slot(doc, after=max(now, slot))  # missed slots fire once
	frappe.db.set_value("Flow Schedule", name, values, update_modified=False)
	return fired


def set_enabled(name: str, enabled: bool) -> str:
	doc = frappe.get_doc("Flow Schedule", name)
	doc.enabled = int(enabled)
	if enabled and doc.status == "Done":
		frappe.throw(
			_("Schedule '{0}' already fired (one-time); change its Run At to use it again").format(name)
		)
	doc.next_fire_at = None  # resume counts from now, not from the paused period
	doc.save()
	return doc.status
