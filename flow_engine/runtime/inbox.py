"""The failure inbox: failed runs grouped by flow and by error, and what an operator does about them.

Actions work run by run, each under the run's lock and in its own transaction, and each is recorded on
the run as a comment (who, when, what): retry, skip the failed step and continue, replay from a chosen
step with edited input, cancel. A replay of a whole run (a new run from the old one's trigger: same
document, input and variables, on the current or the original version) is `replay_run`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import frappe
from frappe import _

from flow_engine.engine.definition import Definition
from flow_engine.runtime import clock, leases, publishing, store, templates
from flow_engine.runtime import runs as run_engine

MAX_RUNS = 2000
NUMBERS_AND_NAMES = re.compile(r"'[^']*'|\"[^\"]*\"|\b[A-Z]{2,}-[\w-]+\b|\b\d+(?:[.:]\d+)*\b")


class InboxError(frappe.ValidationError):
	pass


def error_signature(error: str | None) -> str:
	"""An error's first line with names, quoted values and numbers blanked: failures of one cause
	group together whatever document they hit."""
	line = (error or "").strip().splitlines()[0] if (error or "").strip() else _("(no error message)")
	return NUMBERS_AND_NAMES.sub("…", line)[:160]


def failed_step(states: dict) -> str | None:
	failed = [step_id for step_id, state in states.items() if state.get("status") == "failed"]
	return failed[0] if failed else None


def failures(template: str | None = None, limit: int = MAX_RUNS) -> dict:
	"""Failed runs, newest first, grouped by flow, then by failed step and error signature."""
	filters = {"status": "failed"}
	if template:
		filters["template"] = template
	rows = frappe.get_all(
		"Flow Run",
		filters=filters,
		fields=[
			"name",
			"template",
			"template_version",
			"error",
			"completed_at",
			"reference_doctype",
			"reference_name",
			"step_state",
		],
		# a failed run's last write is its failure: `modified` orders them like completed_at, and an
		# index (status, modified; for one flow template, status, modified, …) reads the newest first
		# instead of sorting every failed run (200,000 runs: 260-360 ms -> ~80 ms, benchmarks/volume.py)
		order_by="modified desc",
		limit=limit,
	)
	flows: dict[str, dict] = {}
	for row in rows:
		states = store.loads(row.step_state, default={}) or {}
		step = failed_step(states)
		error = (states.get(step) or {}).get("error") if step else None
		error = error or row.error
		flow = flows.setdefault(row.template, {"template": row.template, "count": 0, "errors": {}})
		flow["count"] += 1
		key = (step or "", error_signature(error))
		group = flow["errors"].setdefault(key, {"step": step, "signature": key[1], "count": 0, "runs": []})
		group["count"] += 1
		group["runs"].append(
			{
				"name": row.name,
				"version": row.template_version,
				"step": step,
				"error": error,
				"failed_at": str(row.completed_at) if row.completed_at else None,
				"reference_doctype": row.reference_doctype,
				"reference_name": row.reference_name,
			}
		)
	out = []
	for flow in sorted(flows.values(), key=lambda item: -item["count"]):
		errors = sorted(flow["errors"].values(), key=lambda item: -item["count"])
		out.append({"template": flow["template"], "count": flow["count"], "errors": errors})
	return {"flows": out, "total": len(rows), "truncated": len(rows) >= limit}


def record(run: str, text: str) -> None:
	"""What an operator did to a run, on the run (its timeline shows who and when)."""
	frappe.get_doc("Flow Run", run).add_comment("Info", text)


def _each(runs: Iterable[str], action) -> dict:
	"""Apply `action(run)` to each run in its own transaction; one refused run stops none of the others."""
	done, refused = [], []
	for run in dict.fromkeys(runs):
		try:
			action(run)
			frappe.db.commit()
			done.append(run)
		except Exception as error:
			frappe.db.rollback()
			frappe.clear_last_message()
			refused.append({"run": run, "error": str(error)})
	return {"done": done, "refused": refused}


def retry(runs: Iterable[str]) -> dict:
	def action(run: str) -> None:
		run_engine.retry_run(run)
		record(run, _("Retried by {0} from the failure inbox").format(frappe.session.user))

	return _each(runs, action)


def cancel(runs: Iterable[str], reason: str | None = None) -> dict:
	user = frappe.session.user

	def action(run: str) -> None:
		why = _("Cancelled by {0}").format(user) + (f": {reason}" if reason else "")
		record_ = run_engine.locked(run)
		if record_.status == "failed":  # dismissed from the inbox: it will not be retried
			record_.status = "cancelled"
			record_.error = f"{why}\n{record_.error or ''}".strip()
			run_engine.save(record_)
		else:
			run_engine.cancel_run(run, why)
		record(run, why)

	return _each(runs, action)


def skip_step(runs: Iterable[str]) -> dict:
	"""Mark each run's failed step done (with no result) and let the run go on after it."""

	def action(run: str) -> None:
		record_ = run_engine.locked(run)
		if record_.status != "failed":
			frappe.throw(_("Flow Run '{0}' is {1}, not failed").format(run, record_.status), InboxError)
		step = failed_step(record_.states)
		if not step:
			frappe.throw(_("Flow Run '{0}' has no failed step to skip").format(run), InboxError)
		user = frappe.session.user
		record_.states[step].update(
			status="completed",
			completed_at=clock.now().isoformat(sep=" "),
			result={"skipped_by": user},
			skipped_by=user,
		)
		record_.states[step].pop("error", None)
		_resume(record_)
		record(run, _("Step '{0}' skipped by {1}; the run goes on after it").format(step, user))

	return _each(runs, action)


def downstream(definition: Definition, step_id: str) -> list[str]:
	"""`step_id` and every step that follows it (dependents and branch children, transitively)."""
	found = [step_id]
	changed = True
	while changed:
		changed = False
		for step in definition.steps:
			if step.id in found:
				continue
			if step.parent_id in found or any(dep in found for dep in step.depends_on):
				found.append(step.id)
				changed = True
	return found


def check_payload(record_, step_id: str, payload) -> dict:
	"""Edited input for a step: a JSON object the step's kind accepts (the flow's validation, with
	that payload in place). Raises InboxError naming the flow, step and fields at fault."""
	if isinstance(payload, str):
		try:
			payload = json.loads(payload)
		except ValueError as error:
			frappe.throw(
				_("The input for step '{0}' is not valid JSON: {1}").format(step_id, error), InboxError
			)
	if not isinstance(payload, dict):
		frappe.throw(_("The input for step '{0}' must be a JSON object").format(step_id), InboxError)
	raw = publishing.definition_of(record_.template, record_.template_version)
	for step in raw.get("steps") or []:
		if step.get("id") == step_id:
			step["payload"] = payload
	issues = templates.validate_definition(raw, (raw.get("trigger") or {}).get("doctype"))
	issues = [issue for issue in issues if issue.step_id == step_id]
	if issues:
		frappe.throw(
			_("Flow '{0}', step '{1}': the edited input is refused:").format(record_.template, step_id)
			+ "<br>"
			+ "<br>".join(frappe.utils.escape_html(str(issue)) for issue in issues),
			InboxError,
		)
	return payload


def replay_from_step(run: str, step_id: str, payload=None) -> dict:
	"""Run a failed (or ended) run again from `step_id`: that step and all that follow it are reset,
	the step gets `payload` (edited input) when given, the steps before it keep their results."""
	record_ = run_engine.locked(run)
	if record_.status not in store.TERMINAL:
		frappe.throw(
			_("Flow Run '{0}' is {1}: only an ended run is replayed from a step").format(run, record_.status),
			InboxError,
		)
	if step_id not in {step.id for step in record_.definition.steps}:
		frappe.throw(
			_("Flow '{0}' version {1} has no step '{2}'").format(
				record_.template, record_.template_version, step_id
			),
			InboxError,
		)
	edited = check_payload(record_, step_id, payload) if payload not in (None, "") else None
	reset = downstream(record_.definition, step_id)
	for step in reset:
		record_.states.pop(step, None)
	store.cancel_pending(run)
	if edited is not None:
		record_.states[step_id] = {"status": "pending", "payload_override": edited}
	_resume(record_)
	text = _("Replayed from step '{0}' by {1}").format(step_id, frappe.session.user)
	if edited is not None:
		text += _(" with edited input: {0}").format(frappe.as_json(edited, indent=None))
	record(run, text)
	frappe.db.commit()
	return {"run": run, "reset": reset}


def _resume(record_) -> None:
	record_.status = "running"
	record_.error = None
	record_.completed_at = None
	record_.infra_failures = 0
	leases.grant(record_)
	run_engine.save(record_)


def replay_run(run: str, version: str = "current") -> str:
	"""A new run from `run`'s trigger: the same document, input and starting variables, on the flow's
	current version or (`version="original"`) the one `run` ran on. Returns the new run's name."""
	source = frappe.get_doc("Flow Run", run)
	if version not in ("current", "original"):
		frappe.throw(
			_("Replay on the 'current' or the 'original' version, not '{0}'").format(version), InboxError
		)
	doc = None
	if source.reference_doctype and source.reference_name:
		if not frappe.db.exists(source.reference_doctype, source.reference_name):
			frappe.throw(
				_("Flow Run '{0}' cannot be replayed: its {1} '{2}' no longer exists").format(
					run, source.reference_doctype, source.reference_name
				),
				InboxError,
			)
		doc = frappe.get_doc(source.reference_doctype, source.reference_name)
	variables = store.loads(source.get("start_variables"), default=None)
	if variables is None:
		variables = store.loads(source.variables, default={}) or {}
	name = run_engine.start_run(
		source.template,
		doc=doc,
		event=source.trigger_event or "manual",
		source="user",
		input=store.loads(source.input, default={}) or None,
		customer=source.customer,
		variables=variables,
		replay_of=run,
		version=source.template_version if version == "original" else None,
	)
	record(run, _("Replayed as {0} on the {1} version by {2}").format(name, version, frappe.session.user))
	record(name, _("Replay of {0}").format(run))
	return name


def compare_runs(first: str, second: str) -> dict:
	"""Two runs side by side, step by step (a run and its replay)."""
	runs = [store.load_run(first), store.load_run(second)]
	if None in runs:
		frappe.throw(_("Both runs must exist"), frappe.DoesNotExistError)
	order: list[str] = []
	labels: dict[str, str] = {}
	for record_ in runs:
		definition = templates.definition_for(record_.template, record_.template_version, record_.scope)
		for step in definition.steps:
			labels.setdefault(step.id, step.label or step.kind)
			if step.id not in order:
				order.append(step.id)

	def cell(record_, step_id: str) -> dict:
		state = record_.states.get(step_id) or {}
		return {
			"status": state.get("status") or "not reached",
			"result": state.get("result"),
			"error": state.get("error"),
			"attempts": state.get("attempts"),
		}

	return {
		"runs": [
			{
				"name": r.name,
				"status": r.status,
				"version": r.template_version,
				"started_at": str(r.started_at),
			}
			for r in runs
		],
		"steps": [
			{"id": step_id, "label": labels[step_id], "cells": [cell(r, step_id) for r in runs]}
			for step_id in order
		],
	}


def working_payload(run: str, step_id: str) -> dict:
	"""What the replay dialog starts from: the input of the step's last attempt, else its payload."""
	last = frappe.get_all(
		"Flow Step Attempt",
		filters={"run": run, "step_id": step_id},
		fields=["input"],
		order_by="attempt desc",
		limit=1,
	)
	if last and last[0].input:
		value = store.loads(last[0].input, default=None)
		if isinstance(value, dict):
			return value
	record_ = store.load_run(run)
	definition = templates.definition_for(record_.template, record_.template_version, record_.scope)
	steps = {step.id: step for step in definition.steps}
	return dict(steps[step_id].payload) if step_id in steps else {}
