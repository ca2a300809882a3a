"""Whitelisted API. Every endpoint checks permissions at the door, then calls the runtime.

Roles "Flow Manager" and "System Manager" may edit and run flows. Users who can read a document
may list that document's runs. External systems complete `on_webhook` steps through `callback`
with the step's secret token (no login).
"""

from __future__ import annotations

import json
from typing import Any

import frappe
from frappe import _
from frappe.rate_limiter import rate_limit

from flow_engine.engine.dry_run import dry_run as engine_dry_run
from flow_engine.runtime import runs, store, templates
from flow_engine.runtime.context import build_context

FLOW_ROLES = ("Flow Manager", "System Manager")


def require_flow_manager() -> None:
	"""Only Flow Managers and System Managers may edit and run flows (checked in tests too)."""
	if not is_flow_manager():
		frappe.throw(
			_("Only a Flow Manager or System Manager may do this"),
			frappe.PermissionError,
			title=_("Not permitted"),
		)


def is_flow_manager(user: str | None = None) -> bool:
	user = user or frappe.session.user
	return user == "Administrator" or bool(set(FLOW_ROLES) & set(frappe.get_roles(user)))


def _json_arg(value: Any, name: str) -> Any:
	if value is None or isinstance(value, dict | list):
		return value
	if isinstance(value, str):
		if not value.strip():
			return None
		try:
			return json.loads(value)
		except ValueError as error:
			frappe.throw(_("'{0}' is not valid JSON: {1}").format(name, error), frappe.ValidationError)
	frappe.throw(_("'{0}' must be a JSON object").format(name))


def _check_doc_read(doctype: str | None, name: str | None) -> None:
	if doctype and name:
		if not frappe.db.exists("DocType", doctype):
			frappe.throw(_("DocType '{0}' does not exist").format(doctype), frappe.DoesNotExistError)
		if not frappe.db.exists(doctype, name):
			frappe.throw(_("{0} '{1}' does not exist").format(doctype, name), frappe.DoesNotExistError)
		frappe.has_permission(doctype, "read", doc=name, throw=True)


@frappe.whitelist(methods=["POST"])
def start_run(
	template: str,
	reference_doctype: str | None = None,
	reference_name: str | None = None,
	input: dict | str | None = None,
) -> str:
	"""Start a run of `template` (on a document, or with an input payload)."""
	require_flow_manager()
	_check_doc_read(reference_doctype, reference_name)
	data = _json_arg(input, "input")
	return runs.start_run(
		template,
		reference_doctype=reference_doctype,
		reference_name=reference_name,
		event="manual",
		source=_source(),
		input=data,
	)


def _source() -> str:
	"""'api' for token/key-authenticated calls, 'user' for Desk sessions."""
	request = getattr(frappe.local, "request", None)
	return "api" if request is not None and request.headers.get("Authorization") else "user"


@frappe.whitelist(methods=["POST"])
def advance(run: str) -> str | None:
	"""Advance a run now, in this request."""
	require_flow_manager()
	frappe.db.commit()
	return runs.advance(run)


@frappe.whitelist(methods=["POST"])
def complete_step(run: str, step_id: str, result: dict | str | None = None) -> dict:
	"""Complete a parked manual (or on_webhook) step as the current user."""
	require_flow_manager()
	return runs.complete_step(run, step_id, result=_json_arg(result, "result"), by=frappe.session.user)


class CallbackRejected(frappe.PermissionError):
	"""One answer for every bad callback (unknown run, unknown step, wrong or stale token, a step that
	is not waiting), so the endpoint tells a prober nothing."""


CALLBACK_REJECTED = (
	"This callback is not valid: the run, the step or the token is wrong, or the step is no longer waiting."
)
MAX_CALLBACK_RESULT = 64 * 1024


def _callback_rate_limit() -> int:
	return frappe.utils.cint(frappe.conf.get("flow_engine_callback_rate_limit")) or 60


@frappe.whitelist(allow_guest=True, methods=["POST"])
@rate_limit(limit=_callback_rate_limit, seconds=60)
def callback(run=None, step=None, token=None, result=None, **_ignored) -> dict:
	"""External completion of an `on_webhook` step, authenticated by the step's secret token.

	The token is checked (an HMAC, no database access) before any read or lock; every failure gets the
	same 403. The step is completed as the flow's Run As user, never as Administrator.
	"""
	from flow_engine.runtime import tokens

	if not (tokens.well_formed(run, step, token) or tokens.legacy_match(run, step, token)):
		_reject()
	data = result
	if isinstance(data, str):
		if len(data) > MAX_CALLBACK_RESULT:
			_reject(
				_("The result is larger than {0} bytes").format(MAX_CALLBACK_RESULT), frappe.ValidationError
			)
		try:
			data = json.loads(data) if data.strip() else None
		except ValueError:
			_reject(_("'result' is not valid JSON"), frappe.ValidationError)
	elif data is not None and len(json.dumps(data, default=str)) > MAX_CALLBACK_RESULT:
		_reject(_("The result is larger than {0} bytes").format(MAX_CALLBACK_RESULT), frappe.ValidationError)
	template = frappe.db.get_value("Flow Run", run, "template")
	if not template:
		_reject()
	try:
		user = runs.run_as(template)
	except Exception:
		user = None
	previous = frappe.session.user
	try:
		if user:
			frappe.set_user(user)
		outcome = runs.complete_step(run, step, result=data, token=token, by="webhook")
	except (frappe.DoesNotExistError, frappe.AuthenticationError, runs.FlowRunError):
		frappe.db.rollback()
		frappe.clear_messages()
		_reject()
	finally:
		frappe.set_user(previous)
	return {"run": outcome["run"], "step": outcome["step"], "status": outcome["status"]}


def _reject(message: str | None = None, exc: type[Exception] = CallbackRejected):
	frappe.clear_messages()
	frappe.throw(message or _(CALLBACK_REJECTED), exc, title=_("Callback rejected"))


@frappe.whitelist(methods=["POST"])
def dispatch_event(
	event: str,
	reference_doctype: str | None = None,
	reference_name: str | None = None,
	payload: dict | str | None = None,
) -> list[str]:
	"""Raise a custom event; every active flow listening to it starts. Returns the run names."""
	require_flow_manager()
	from flow_engine.runtime.triggers import dispatch_event as dispatch

	_check_doc_read(reference_doctype, reference_name)
	doc = frappe.get_doc(reference_doctype, reference_name) if reference_doctype and reference_name else None
	return dispatch(event, doc=doc, payload=_json_arg(payload, "payload") or {})


@frappe.whitelist()
def list_runs(
	template: str | None = None,
	status: str | None = None,
	reference_doctype: str | None = None,
	reference_name: str | None = None,
	limit: int = 20,
	start: int = 0,
) -> list[dict]:
	"""Runs, newest first. Flow Managers see all; others only the runs of a document they can read."""
	filters: dict[str, Any] = {}
	if not is_flow_manager():
		if not (reference_doctype and reference_name):
			frappe.throw(
				_("Give reference_doctype and reference_name to list a document's runs"),
				frappe.PermissionError,
			)
	_check_doc_read(reference_doctype, reference_name)
	for key, value in (
		("template", template),
		("status", status),
		("reference_doctype", reference_doctype),
		("reference_name", reference_name),
	):
		if value:
			filters[key] = value
	rows = frappe.get_all(
		"Flow Run",
		filters=filters,
		fields=[
			"name",
			"template",
			"template_version",
			"status",
			"reference_doctype",
			"reference_name",
			"trigger_event",
			"source",
			"started_at",
			"completed_at",
			"error",
		],
		order_by="creation desc",
		limit_start=max(int(start), 0),
		limit_page_length=min(max(int(limit), 1), 500),
		ignore_permissions=True,
	)
	if not is_flow_manager():  # error texts may quote data the document's reader may not see
		for row in rows:
			row.error = _("The flow failed") if row.status == "failed" else None
	return rows


READER_STEP_KEYS = ("status", "started_at", "completed_at", "attempts")
# Flow Managers see a parked step's callback token (the run view is where they hand it to the external
# system); document readers never see step state beyond READER_STEP_KEYS
HIDDEN_STATE_KEYS = ("call_id",)


@frappe.whitelist()
def get_run(run: str) -> dict:
	"""A run with its step states and attempts.

	Flow Managers see all of it but callback tokens. A user who may only read the run's document
	sees its status and each step's status, times and attempt count: no input, variables, results,
	attempts, definition or error texts, which may hold data that user may not see.
	"""
	row = frappe.db.get_value("Flow Run", run, ["name", "reference_doctype", "reference_name"], as_dict=True)
	if not row:
		frappe.throw(_("Flow Run '{0}' does not exist").format(run), frappe.DoesNotExistError)
	manager = is_flow_manager()
	if not manager:
		if not row.reference_doctype:
			frappe.throw(_("Not permitted"), frappe.PermissionError)
		_check_doc_read(row.reference_doctype, row.reference_name)
	record = store.load_run(run)
	if not manager:
		return _run_for_reader(record)
	attempts = frappe.get_all(
		"Flow Step Attempt",
		filters={"run": run},
		fields=["step_id", "attempt", "status", "started_at", "duration_ms", "input", "output", "error"],
		order_by="creation asc",
		ignore_permissions=True,
	)
	definition = templates.definition_for(record.template, record.template_version)
	states = {
		sid: {k: v for k, v in s.items() if k not in HIDDEN_STATE_KEYS} for sid, s in record.states.items()
	}
	return {
		"name": record.name,
		"template": record.template,
		"template_version": record.template_version,
		"status": record.status,
		"error": record.error,
		"reference_doctype": record.reference_doctype,
		"reference_name": record.reference_name,
		"started_at": record.started_at,
		"completed_at": record.completed_at,
		"variables": record.variables,
		"input": record.input,
		"steps": states,
		"definition": definition.raw,
		"attempts": [
			dict(a, input=store.loads(a.input, None), output=store.loads(a.output, None)) for a in attempts
		],
	}


def _run_for_reader(record: store.RunRecord) -> dict:
	failed = [sid for sid, state in record.states.items() if state.get("status") == "failed"]
	error = None
	if record.status == "failed":
		error = _("Failed at step '{0}'").format(failed[0]) if failed else _("The flow failed")
	return {
		"name": record.name,
		"template": record.template,
		"template_version": record.template_version,
		"status": record.status,
		"error": error,
		"reference_doctype": record.reference_doctype,
		"reference_name": record.reference_name,
		"started_at": record.started_at,
		"completed_at": record.completed_at,
		"steps": {
			sid: {key: state[key] for key in READER_STEP_KEYS if key in state}
			for sid, state in record.states.items()
		},
		"redacted": True,
	}


@frappe.whitelist(methods=["POST"])
def cancel_run(run: str, reason: str | None = None) -> str:
	require_flow_manager()
	return runs.cancel_run(run, reason)


@frappe.whitelist(methods=["POST"])
def retry_run(run: str) -> str:
	require_flow_manager()
	return runs.retry_run(run)


@frappe.whitelist()
def validate(definition: dict | str | None = None, trigger_doctype: str | None = None) -> dict:
	"""Validate a definition without saving it: {valid, errors: [{step_id, field, message, text}]}."""
	require_flow_manager()
	issues = templates.validate_definition(
		definition if isinstance(definition, dict) else (definition or ""), trigger_doctype
	)
	return {"valid": not issues, "errors": [issue.as_dict() for issue in issues]}


@frappe.whitelist()
def dry_run(
	template: str | None = None,
	definition: dict | str | None = None,
	reference_doctype: str | None = None,
	reference_name: str | None = None,
	input: dict | str | None = None,
) -> dict:
	"""Walk a flow against a real document with no side effects: order, branches, rendered payloads."""
	require_flow_manager()
	_check_doc_read(reference_doctype, reference_name)
	from flow_engine.engine.definition import build, load
	from flow_engine.engine.errors import DefinitionError
	from flow_engine.kinds.registry import get_catalog

	if definition in (None, "") and template:
		definition = frappe.db.get_value("Flow Template", template, "flow_definition")
	raw = load(definition if isinstance(definition, dict) else (definition or ""))
	issues = templates.validate_definition(raw, reference_doctype)
	if issues:
		error = DefinitionError(issues, flow=template)
		frappe.throw(
			templates.as_html(error.describe()),
			templates.FlowValidationError,
			title=_("Flow is invalid"),
		)
	compiled = build(raw, get_catalog())
	record = store.RunRecord(
		name="(dry run)",
		template=template or "(unsaved)",
		template_version=0,
		status="running",
		trigger_event="manual",
		reference_doctype=reference_doctype,
		reference_name=reference_name,
		customer=None,
		source="user",
		started_by=frappe.session.user,
		parent_run=None,
		schedule=None,
		depth=0,
		started_at=frappe.utils.now_datetime(),
		completed_at=None,
		waves=0,
		steps_executed=0,
		error=None,
		input=_json_arg(input, "input") or {},
		variables={},
		states={},
		doc_snapshot=None,
		definition=compiled,
	)
	if reference_doctype and reference_name:
		from flow_engine.runtime.context import resolve_customer

		record.customer = resolve_customer(frappe.get_doc(reference_doctype, reference_name))
	context = build_context(record)
	context["doc"] = dict(context["doc"])
	context["customer"] = dict(context["customer"])
	return engine_dry_run(compiled, context, frappe.utils.now_datetime())


@frappe.whitelist(methods=["POST"])
def duplicate_template(template: str, new_name: str) -> str:
	require_flow_manager()
	frappe.has_permission("Flow Template", "create", throw=True)
	return templates.duplicate(template, new_name)


@frappe.whitelist()
def kinds() -> list[dict]:
	"""The kind catalog (field descriptors) that drives the editor's step forms."""
	require_flow_manager()
	from flow_engine.kinds.registry import installed_kinds

	return installed_kinds()


# ---------------------------------------------------------------- schedules


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
