"""Child runs at run time: call_flow starts another flow, for_each runs its body once per item.

A child run carries `parent_run` and `parent_step` (the step that started it); an item run of a
for_each also carries `scope` (that step: its definition is the body, templates.definition_for),
`item_index` and `item`. When a child ends, `on_run_ended` (a runtime/lifecycle listener) has
`child_ended` resume the parent's step after commit, under the parent's lock: a waiting call_flow
completes (or fails with the child's error: retry and on_error apply), a for_each records the item and
starts the next ones (at most `concurrency` open), and completes when every item ended.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import frappe
from frappe import _

from flow_engine.engine import children as loops
from flow_engine.kinds.base import StepFailed
from flow_engine.runtime import clock, jobs, steps, store
from flow_engine.runtime.store import RunRecord

MAX_ITEMS = 10000


# ---------------------------------------------------------------- starting children


def start_item(parent: RunRecord, step_id: str, index: int, item: Any) -> str:
	"""Insert the run of one item of for_each `step_id` (advanced once this transaction commits).

	Item runs are part of their parent's run: they pass no admission (flow limits, dedupe) and take
	the parent's document, customer, input and variables."""
	from flow_engine.runtime import leases, runs

	depth = int(parent.depth or 0) + 1
	if depth > runs.MAX_DEPTH:
		raise StepFailed(
			_("for_each '{0}': runs are nested {1} deep, the limit is {2}").format(
				step_id, depth, runs.MAX_DEPTH
			)
		)
	name = runs.new_run_name()
	now = clock.now()
	owner = jobs.schedule_advance(name)
	store.insert_row(
		"Flow Run",
		{
			"template": parent.template,
			"template_version": parent.template_version,
			"status": "running",
			"trigger_event": parent.trigger_event,
			"reference_doctype": parent.reference_doctype,
			"reference_name": parent.reference_name,
			"customer": parent.customer,
			"source": "parent",
			"started_by": frappe.session.user,
			"parent_run": parent.name,
			"parent_step": step_id,
			"scope": step_id,
			"item_index": index,
			"item": store.dumps(item),
			"schedule": parent.schedule,
			"depth": depth,
			"started_at": now,
			"waves": 0,
			"steps_executed": 0,
			"input": parent.input or {},
			"variables": dict(parent.variables or {}),
			"start_variables": dict(parent.variables or {}),
			"step_state": {},
			"doc_snapshot": parent.doc_snapshot or None,
			"lease_until": leases.until(now=now),
			"lease_owner": owner,
			"infra_failures": 0,
		},
		name=name,
	)
	return name


def resolve_items(step_id: str, items: Any) -> list:
	"""The items of a for_each: a rendered list, or the documents matching {doctype, filters, limit}
	that the acting (Run As) user may read."""
	if isinstance(items, Mapping) and items.get("doctype"):
		from flow_engine.kinds.base import ensure_doctype
		from flow_engine.runtime.identity import require

		doctype = str(items["doctype"])
		ensure_doctype(doctype)
		require("read", doctype, why=f"for_each '{step_id}' lists its documents")
		limit = int(items.get("limit") or 100)
		return frappe.get_list(
			doctype,
			filters=items.get("filters") or {},
			fields=["*"],
			limit_page_length=min(limit, MAX_ITEMS),
			order_by=items.get("order_by") or "creation asc",
		)
	if items in (None, ""):
		return []
	if isinstance(items, str):
		raise StepFailed(
			_("for_each '{0}': items must be a list, but the template gave text {1!r}").format(
				step_id, items[:80]
			)
		)
	if isinstance(items, Mapping):
		raise StepFailed(
			_("for_each '{0}': items must be a list (or documents with a 'doctype'), not an object").format(
				step_id
			)
		)
	items = [dict(item) if isinstance(item, Mapping) else item for item in items]
	if len(items) > MAX_ITEMS:
		raise StepFailed(_("for_each '{0}': {1} items, at most {2}").format(step_id, len(items), MAX_ITEMS))
	return items


def item_context(run: RunRecord, context: dict) -> None:
	"""An item run's template context: {{item}}, {{item_index}}, and the steps its parent ran before."""
	context["item"] = run.item
	context["item_index"] = run.item_index
	parent_states = store.loads(frappe.db.get_value("Flow Run", run.parent_run, "step_state"))
	before = {
		step_id: {"status": state.get("status"), "result": state.get("result") or {}}
		for step_id, state in parent_states.items()
		if isinstance(state, Mapping) and state.get("status") == "completed"
	}
	context["steps"] = {**before, **context["steps"]}


# ---------------------------------------------------------------- children ending


def on_run_ended(record: RunRecord) -> None:
	"""lifecycle listener: a child run ended, so its parent's step hears of it after commit; a run
	cancelled cancels the children it still waits for (after commit)."""
	if record.parent_run and record.parent_step:
		jobs.after_commit(
			"flow_engine.runtime.children.child_ended", parent=record.parent_run, child=record.name
		)
	if record.status == "cancelled" and any(
		state.get("waiting_for") in ("child_run", "items") for state in record.states.values()
	):
		jobs.after_commit("flow_engine.runtime.children.cancel_children", run=record.name)


def cancel_children(run: str) -> None:
	"""Cancel the open child runs of a cancelled run (each in its own transaction)."""
	from flow_engine.runtime import runs

	for child in frappe.get_all(
		"Flow Run",
		filters={"parent_run": run, "status": ["in", ("queued", "running", "waiting")]},
		pluck="name",
	):
		try:
			runs.cancel_run(child, _("Its parent run {0} was cancelled").format(run))
			frappe.db.commit()
		except Exception:
			frappe.db.rollback()
			frappe.log_error(title=f"flow_engine: could not cancel child run {child}")


def child_ended(parent: str, child: str) -> None:
	"""Resume the parent's step the child run `child` belonged to (under the parent's lock); commits."""
	from flow_engine.runtime import resilience

	resilience.retrying(_child_ended, parent, child)


def _child_ended(parent: str, child: str) -> None:
	from flow_engine.runtime import leases, runs, templates

	record = store.load_run(parent, lock=True)
	if record is None or record.is_terminal:
		frappe.db.commit()
		return
	record.definition = templates.definition_for(record.template, record.template_version, record.scope)
	row = frappe.db.get_value(
		"Flow Run",
		child,
		["status", "error", "variables", "step_state", "parent_step", "scope", "item_index"],
		as_dict=True,
	)
	step_id = row.parent_step if row else None
	state = record.states.get(step_id) if step_id else None
	if (
		not row
		or row.status not in store.TERMINAL
		or not record.definition.has_step(step_id)
		or not state
		or state.get("status") != "waiting"
	):
		frappe.db.commit()
		return
	step = record.definition.step(step_id)
	changed = False
	if state.get("waiting_for") == "child_run" and state.get("child") == child:
		changed = True
		if row.status == "completed":
			_complete(
				record,
				step,
				state,
				{"run": child, "status": "completed", "variables": store.loads(row.variables)},
			)
		else:
			error = row.error or row.status
			_fail(
				record,
				step,
				state,
				_("child run {0} of flow {1} {2}: {3}").format(
					child, step.payload.get("flow"), row.status, error
				),
				retryable=row.status == "failed",
			)
	elif state.get("waiting_for") == "items" and row.scope == step_id and isinstance(state.get("loop"), dict):
		loop = state["loop"]
		index = int(row.item_index or 0)
		ok = row.status == "completed"
		if loops.item_ended(loop, index, ok, _item_output(child, row) if ok else None):
			changed = True
			if not ok:
				state.setdefault("item_errors", {})[str(index)] = f"{child}: {row.error or row.status}"
			if loops.finished(loop):
				state.pop("items", None)
				if loop["stopped"]:
					_fail(
						record,
						step,
						state,
						_("item {0} failed (run {1}): {2}").format(index, child, row.error or row.status),
						retryable=False,
					)
				else:
					_complete(record, step, state, loops.result_of(loop))
			else:
				start_next(record, step.id, state)
	if not changed:
		frappe.db.commit()
		return
	runs.settle(record)
	if record.status == "running":
		leases.grant(record)
	runs.save(record)
	frappe.db.commit()


LOST_AFTER_SECONDS = 120  # a child's end not heard of by then: its resume job was lost


def resume_lost(limit: int = 100) -> int:
	"""Scheduler tick: resume parents still waiting on a step whose child run ended a while ago, unheard
	of since (the job that should have resumed it was lost with its worker). `child_ended` is
	idempotent: an item or a child already recorded is ignored."""
	import datetime

	before = clock.now() - datetime.timedelta(seconds=LOST_AFTER_SECONDS)
	rows = frappe.db.sql(
		"""select c.name, c.parent_run from `tabFlow Run` p
		join `tabFlow Run` c on c.parent_run = p.name
		where p.status = 'waiting' and ifnull(c.parent_step, '') != ''
		and c.status in ('completed', 'failed', 'cancelled')
		and c.completed_at < %s and p.modified < c.completed_at
		and json_unquote(json_extract(p.step_state, concat('$."', c.parent_step, '".status'))) = 'waiting'
		limit %s""",
		(before, limit),
		as_dict=True,
	)
	for row in rows:
		try:
			child_ended(row.parent_run, row.name)
		except Exception:
			frappe.db.rollback()
			frappe.log_error(title=f"flow_engine: could not resume {row.parent_run} after {row.name}")
	return len(rows)


def start_next(record: RunRecord, step_id: str, state: dict) -> list[str]:
	"""Start the items the for_each has room for; returns their runs."""
	loop = state["loop"]
	items = state.get("items") or []
	started = []
	for index in loops.to_start(loop):
		name = start_item(record, step_id, index, items[index] if index < len(items) else None)
		loops.started(loop, index, name)
		started.append(name)
	return started


def _item_output(child: str, row) -> dict:
	"""What an item contributes to the for_each's results: its steps' results by step id."""
	states = store.loads(row.step_state)
	return {
		step_id: state.get("result") or {}
		for step_id, state in states.items()
		if isinstance(state, Mapping) and state.get("status") == "completed"
	}


def _complete(record: RunRecord, step, state: dict, result: dict) -> None:
	steps.complete_waiting(record, step, result)


def _fail(record: RunRecord, step, state: dict, message: str, retryable: bool) -> None:
	attempt = int(state.get("attempts") or 1)
	steps.attempt_failed(
		record,
		step,
		state,
		attempt,
		StepFailed(message, retryable=retryable),
		clock.now(),
		time.perf_counter(),
		None,
		f"{record.name}:{step.id}",
		None,
	)


# ---------------------------------------------------------------- run view


def child_runs(run: str) -> list[dict]:
	"""The runs a run started (call_flow and for_each items), for the run view."""
	return frappe.get_all(
		"Flow Run",
		filters={"parent_run": run},
		fields=[
			"name",
			"template",
			"status",
			"parent_step",
			"item_index",
			"scope",
			"error",
			"started_at",
			"completed_at",
		],
		order_by="creation asc",
		limit_page_length=MAX_ITEMS,
	)


# ---------------------------------------------------------------- save-time checks


def check_flow_calls(doc, raw: Mapping) -> list:
	"""Issues for call_flow steps of the flow being saved: unknown flows, and cycles between flows
	(static flow names through call_flow steps, transitively), each naming the cycle."""
	from flow_engine.engine.definition import load
	from flow_engine.engine.errors import DefinitionError, Issue
	from flow_engine.kinds.registry import get_catalog

	resolve = get_catalog().resolve
	me = doc.name or doc.template_name
	own = loops.called_flows(raw, resolve)
	if not own:
		return []
	issues = []
	calls: dict[str, set[str]] = {me: {flow for _step, flow in own}}
	for row in frappe.get_all(
		"Flow Template", filters={"name": ["!=", me]}, fields=["name", "flow_definition", "draft_definition"]
	):
		flows: set[str] = set()
		for text in (row.flow_definition, row.draft_definition):
			if not text:
				continue
			try:
				flows |= {flow for _step, flow in loops.called_flows(load(text), resolve)}
			except DefinitionError:
				continue
		calls[row.name] = flows
	for step_id, flow in own:
		if flow != me and flow not in calls:
			issues.append(
				Issue(
					f"calls flow '{flow}', which does not exist",
					step_id,
					"payload.flow",
					None,
					"unknown_flow",
				)
			)
	cycle = loops.find_cycle(me, calls)
	if cycle:
		first = next((step_id for step_id, flow in own if flow == cycle[1]), own[0][0])
		issues.append(
			Issue(
				"flows would call each other in a cycle: " + " → ".join(cycle),
				first,
				"payload.flow",
				None,
				"flow_cycle",
			)
		)
	return issues
