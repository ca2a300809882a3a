"""Runs: start, advance, complete, custom events, list and read (redacted for document readers),
cancel, retry."""

from __future__ import annotations

from typing import Any

import frappe
from frappe import _

from flow_engine.api.permissions import check_doc_read, is_flow_manager, json_arg, require_flow_manager
from flow_engine.runtime import runs, store, templates


@frappe.whitelist(methods=["POST"])
def start_run(
	template: str,
	reference_doctype: str | None = None,
	reference_name: str | None = None,
	input: dict | str | None = None,
) -> str:
	"""Start a run of `template` (on a document, or with an input payload)."""
	require_flow_manager()
	check_doc_read(reference_doctype, reference_name)
	data = json_arg(input, "input")
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
	return runs.complete_step(run, step_id, result=json_arg(result, "result"), by=frappe.session.user)


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

	check_doc_read(reference_doctype, reference_name)
	doc = frappe.get_doc(reference_doctype, reference_name) if reference_doctype and reference_name else None
	return dispatch(event, doc=doc, payload=json_arg(payload, "payload") or {})


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
	check_doc_read(reference_doctype, reference_name)
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
		check_doc_read(row.reference_doctype, row.reference_name)
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
	definition = templates.definition_for(record.template, record.template_version, whole=True)
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
		**_family(record),
		"attempts": [
			dict(a, input=store.loads(a.input, None), output=store.loads(a.output, None)) for a in attempts
		],
	}


def _family(record: store.RunRecord) -> dict:
	"""Parent and child runs (call_flow, for_each items), so the run view links them and shows per-item
	progress: `children` [{name, status, parent_step, item_index, …}] in start order."""
	from flow_engine.runtime.children import child_runs

	return {
		"parent_run": record.parent_run,
		"parent_step": record.parent_step,
		"scope": record.scope,
		"item_index": record.item_index,
		"item": record.item,
		"depth": record.depth,
		"children": child_runs(record.name),
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
		"parent_run": record.parent_run,
		"item_index": record.item_index,
		"children": [
			{key: child[key] for key in ("name", "status", "parent_step", "item_index")}
			for child in _family(record)["children"]
		],
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
