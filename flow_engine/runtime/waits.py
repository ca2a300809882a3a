"""wait_for: steps parked until a document event or a custom event resumes them (not by polling).

A waiting step has one `Flow Wait` row (status `waiting`): the document type and event it waits for,
with filters rendered when it parked and an optional condition, or a custom event and correlation key.
The trigger handler (`triggers.on_doc_event`, `triggers.dispatch_event`) asks `waited()` first: a cached
set of what some row waits for, so a doctype nobody waits on costs one set lookup. A matching event
closes its rows (status `done`, under the row's lock, inside the saving transaction: concurrent events
resume a step exactly once, and a rolled-back save closes nothing) and, after that transaction commits,
`resume` completes the step with {"branch": "event", "doctype", "name"}. A step's timeout row completes
it with {"branch": "timeout"} instead (`on_timeout`). A run that ends closes its waits (`run_ended`).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import frappe

from flow_engine.engine import conditions, templating
from flow_engine.runtime import clock, jobs, resilience, steps, store
from flow_engine.runtime.store import RunRecord

DOCTYPE = "Flow Wait"
CACHE_KEY = "flow_engine:waited:v1"  # a Redis set: "doc:<DocType>" and "event:<custom event>" members
BUILT = "*built*"  # member marking a set rebuilt from the table (adds alone never mark it)
FLAG = "flow_engine_waited"
WAITING_FOR = "event"  # the parked step's state["waiting_for"]
SAVEPOINT = "flow_engine_wait"
LOST_AFTER_SECONDS = 120  # a closed wait not resumed by then lost its resume job (resume_lost)
lookups = {"doc": 0, "event": 0}  # table lookups this process made (tests: an unwaited doctype makes none)


# ---------------------------------------------------------------- what is waited for (cached)


def waited() -> frozenset[str]:
	"""Members `doc:<DocType>` / `event:<name>` some waiting row waits for (a superset: a closed row
	may linger until the next rebuild, which only costs a lookup that finds nothing)."""
	flags = frappe.local.flags
	found = flags.get(FLAG)
	if found is None:
		members = {_text(member) for member in frappe.cache.smembers(CACHE_KEY) or ()}
		if BUILT not in members:
			try:
				members |= _build()
			except frappe.db.TableMissingError as error:
				if not frappe.db.is_table_missing(error):
					raise
				return frozenset()  # the app is being installed or uninstalled (not cached)
			frappe.cache.sadd(CACHE_KEY, *members)  # a union: a wait added meanwhile is never dropped
		found = flags[FLAG] = frozenset(members)
	return found


def is_waited(doctype: str) -> bool:
	"""Whether some waiting row waits for a document event of `doctype` (cheap: a cached set)."""
	return f"doc:{doctype}" in waited()


def _build() -> set[str]:
	rows = frappe.db.sql(
		f"""select distinct document_type, custom_event from `tab{DOCTYPE}` where status='waiting'"""
	)
	members = {BUILT}
	for doctype, event in rows:
		if doctype:
			members.add(f"doc:{doctype}")
		if event:
			members.add(f"event:{event}")
	return members


def _text(value: Any) -> str:
	return value.decode() if isinstance(value, bytes) else str(value)


def _remember(member: str) -> None:
	"""A wait was added: its member joins the set now (a superset is harmless) and again after commit
	(a rebuild that read the table before this row committed cannot have dropped it for good)."""

	def add():
		frappe.cache.sadd(CACHE_KEY, member)
		frappe.local.flags[FLAG] = None

	add()
	frappe.db.after_commit.add(add)


def _forget() -> None:
	"""Waits were closed: the set is rebuilt from the table on next use (after this commit)."""
	frappe.db.after_commit.add(clear_cache)


def clear_cache() -> None:
	frappe.cache.delete_value(CACHE_KEY)
	frappe.local.flags[FLAG] = None


# ---------------------------------------------------------------- parking


def add(
	record_name: str,
	step_id: str,
	template: str | None,
	*,
	doctype: str | None = None,
	event: str | None = None,
	filters: Mapping | None = None,
	condition: Any = None,
	custom_event: str | None = None,
	correlation_key: str | None = None,
	expires_at: datetime.datetime | None = None,
) -> str:
	"""Insert the waiting row of a parking step (in the run's transaction)."""
	name = store.insert_row(
		DOCTYPE,
		{
			"run": record_name,
			"step_id": step_id,
			"template": template,
			"status": "waiting",
			"document_type": doctype,
			"event": event,
			"filters": dict(filters or {}) if doctype else None,
			"condition": condition if condition not in (None, {}, [], "") else None,
			"custom_event": custom_event,
			"correlation_key": correlation_key,
			"expires_at": expires_at,
		},
	)
	_remember(f"event:{custom_event}" if custom_event else f"doc:{doctype}")
	return name


def render_condition(condition: Any, context: Mapping) -> Any:
	"""The condition with its `value`s rendered against the run (its `field`s name the event's doc)."""
	if isinstance(condition, Mapping):
		rendered = {}
		for key, value in condition.items():
			if key == "value":
				rendered[key] = templating.render(value, context)
			elif key in ("all", "any") and isinstance(value, list):
				rendered[key] = [render_condition(item, context) for item in value]
			else:
				rendered[key] = value
		return rendered
	return condition


# ---------------------------------------------------------------- matching events


def on_doc_event(doc, method: str | None) -> None:
	"""From the "*" doc_events handler: close the waits this document event satisfies."""
	if not is_waited(doc.doctype):
		return
	lookups["doc"] += 1
	rows = frappe.db.sql(
		f"""select name, filters, `condition` from `tab{DOCTYPE}`
		where document_type=%s and event=%s and status='waiting'""",
		(doc.doctype, method),
		as_dict=True,
	)
	matched = [row.name for row in rows if _matches(row, doc)]
	if matched:
		result = {"branch": "event", "doctype": doc.doctype, "name": doc.name}
		_close_safely(matched, result, doc.doctype, doc.name)


def on_custom_event(event: str, doc=None, payload: Mapping | None = None) -> None:
	"""From `triggers.dispatch_event`: close the waits of `event` whose correlation key matches the
	payload's `correlation_key` (else the document's name)."""
	if not event or f"event:{event}" not in waited():
		return
	payload = dict(payload or {})
	key = payload.get("correlation_key")
	if key in (None, "") and doc is not None:
		key = doc.name
	if key in (None, ""):
		return
	lookups["event"] += 1
	matched = frappe.db.sql_list(
		f"""select name from `tab{DOCTYPE}` where custom_event=%s and correlation_key=%s
		and status='waiting'""",
		(event, str(key)),
	)
	if matched:
		result = {"branch": "event", "event": event, "payload": payload}
		if doc is not None:
			result.update(doctype=doc.doctype, name=doc.name)
		_close_safely(matched, result, doc.doctype if doc is not None else None, doc and doc.name)


def _matches(row, doc) -> bool:
	try:
		filters = store.loads(row.filters, default={}) or {}
		for key, expected in filters.items():
			if not field_equals(doc, key, expected):
				return False
		condition = store.loads(row.condition, default=None)
		if condition:
			from flow_engine.runtime.context import DocView

			return conditions.evaluate(condition, {"doc": DocView(doc)})
		return True
	except Exception:
		frappe.log_error(title=f"flow_engine: wait {row.name} could not be matched against {doc.doctype}")
		return False


def field_equals(doc, key: str, expected: Any) -> bool:
	"""`field` equals; `table.field`: some row of the child table does."""
	if "." in key:
		table, field = key.split(".", 1)
		return any(conditions.compare(row.get(field), "==", expected) for row in doc.get(table) or [])
	return conditions.compare(doc.get(key), "==", expected)


def _close_safely(names: list[str], result: dict, doctype: str | None, name: str | None) -> None:
	"""Close the waits beside the user's save (`resilience.beside_the_save`): resuming never fails it."""

	def close_all() -> None:
		for wait in names:
			close(wait, "done", result, doctype, name)

	resilience.beside_the_save(
		SAVEPOINT, f"flow_engine: could not resume waits on {doctype} {name}", close_all
	)


def close(
	wait: str, status: str, result: dict | None = None, doctype: str | None = None, name: str | None = None
) -> bool:
	"""Close a waiting row under its lock; False when someone closed it first. A `done` row's step is
	resumed after this transaction commits."""
	if _locked_status(wait) != "waiting":
		return False
	frappe.db.sql(
		f"""update `tab{DOCTYPE}` set status=%s, result=%s, matched_doctype=%s, matched_name=%s,
		closed_at=%s, modified=%s where name=%s""",
		(status, store.dumps(result) if result else None, doctype, name, clock.now(), clock.now(), wait),
	)
	_forget()
	if status == "done":
		jobs.after_commit("flow_engine.runtime.waits.resume", wait=wait)
	return True


def _locked_status(wait: str) -> str | None:
	"""The row's status, locked (`FOR UPDATE`): concurrent closers of one wait serialise here, and the
	second reads the first's committed status."""
	found = frappe.db.sql(f"select status from `tab{DOCTYPE}` where name=%s for update", (wait,))
	return found[0][0] if found else None


# ---------------------------------------------------------------- resuming


def resume(wait: str) -> None:
	"""After the event's transaction committed: complete the waiting step (exactly once)."""
	resilience.retrying(_resume, wait)


def _resume(wait: str) -> None:
	from flow_engine.runtime import leases, runs

	row = frappe.db.get_value(
		DOCTYPE, wait, ["run", "step_id", "status", "result", "resumed_at"], as_dict=True
	)
	if not row or row.status != "done" or row.resumed_at:
		return
	record = runs.locked_moving(row.run)  # None (lock let go) when the run ended meanwhile
	if record is not None:
		state = record.states.get(row.step_id) or {}
		if state.get("status") == "waiting" and state.get("wait") == wait:
			complete(record, record.definition.step(row.step_id), store.loads(row.result, default={}) or {})
			runs.settle(record)
			if record.status == "running":
				leases.grant(record)
			runs.save(record)
		# else its timeout completed it first (with this event's result)
	_resumed(wait)
	frappe.db.commit()


def _resumed(wait: str) -> None:
	frappe.db.sql(f"update `tab{DOCTYPE}` set resumed_at=%s where name=%s", (clock.now(), wait))


def resume_lost(limit: int = 100) -> int:
	"""Scheduler tick: resume steps whose wait an event closed but whose resume job never ran (its
	worker died, the queue was flushed)."""
	cutoff = clock.now() - datetime.timedelta(seconds=LOST_AFTER_SECONDS)
	names = frappe.db.sql_list(
		f"""select name from `tab{DOCTYPE}` where status='done' and resumed_at is null and closed_at < %s
		order by closed_at limit %s""",
		(cutoff, limit),
	)
	for wait in names:
		resume(wait)
	return len(names)


def complete(record: RunRecord, step, result: dict, firing_row: str | None = None) -> None:
	"""Complete a waiting wait_for step on its locked run (the caller settles and saves)."""
	state = record.states.setdefault(step.id, {})
	if state.get("timeout_row") and state["timeout_row"] != firing_row:
		frappe.db.sql(
			"update `tabFlow Step Pending` set status='cancelled', modified=%s where name=%s and status='pending'",
			(clock.now(), state["timeout_row"]),
		)
	steps.complete_waiting(record, step, result, by=frappe.session.user)


def on_timeout(record: RunRecord, step, firing_row: str) -> None:
	"""The step's timeout row fired (run locked by the scheduler): take the timeout branch, unless an
	event closed the wait first and its resume has not run yet: then its result."""
	state = record.states.get(step.id) or {}
	wait = state.get("wait")
	result = {"branch": "timeout"}
	if wait:
		found = frappe.db.sql(
			f"select status, result from `tab{DOCTYPE}` where name=%s for update", (wait,), as_dict=True
		)
		if found and found[0].status == "done":
			result = store.loads(found[0].result, default={}) or {"branch": "event"}
			_resumed(wait)
		else:
			close(wait, "timed_out", result)
	complete(record, step, result, firing_row=firing_row)


# ---------------------------------------------------------------- ending


def run_ended(record: RunRecord) -> None:
	"""lifecycle listener: a run that ends (cancelled, failed, completed) stops waiting."""
	if not any(state.get("wait") for state in record.states.values()):
		return
	frappe.db.sql(
		f"""update `tab{DOCTYPE}` set status='cancelled', closed_at=%s, modified=%s
		where run=%s and status='waiting'""",
		(clock.now(), clock.now(), record.name),
	)
	_forget()


def reopen(record: RunRecord, step_id: str, state: dict) -> None:
	"""A retried run's parked wait_for step waits again: its closed row is copied as a new waiting one."""
	old = state.get("wait")
	row = frappe.db.get_value(DOCTYPE, old, "*", as_dict=True) if old else None
	if not row or row.status == "waiting":
		return
	state["wait"] = add(
		record.name,
		step_id,
		record.template,
		doctype=row.document_type,
		event=row.event,
		filters=store.loads(row.filters, default={}) or {},
		condition=store.loads(row.condition, default=None),
		custom_event=row.custom_event,
		correlation_key=row.correlation_key,
		expires_at=row.expires_at,
	)


# ---------------------------------------------------------------- checks needing the site


def site_issues(step_id, label, payload: Mapping, field_names, unknown_doctype) -> list:
	"""Unknown doctypes and fields of a wait_for step's filters and condition (runtime/site_checks
	passes its `field_names` and `unknown_doctype`)."""
	from flow_engine.engine.errors import Issue

	issues: list = []
	doctype = payload.get("doctype")
	if not isinstance(doctype, str) or not doctype or "{{" in doctype:
		return issues
	missing = unknown_doctype(doctype, step_id, label)
	if missing:
		return [missing]
	meta = frappe.get_meta(doctype)
	known = field_names(doctype)

	def unknown(where: str, message: str):
		issues.append(Issue(message, step_id, where, label, "unknown_field"))

	filters = payload.get("filters")
	for key in filters if isinstance(filters, Mapping) else ():
		if not isinstance(key, str):
			continue
		if "." in key:
			table, field = key.split(".", 1)
			df = meta.get_field(table)
			if df is None or df.fieldtype not in ("Table", "Table MultiSelect"):
				unknown(f"payload.filters.{key}", f"'{table}' is not a child table of {doctype}")
			elif field not in field_names(df.options):
				unknown(
					f"payload.filters.{key}", f"'{field}' is not a field of {df.options} ({doctype}.{table})"
				)
		elif key not in known:
			unknown(f"payload.filters.{key}", f"'{key}' is not a field of {doctype}")
	for path, field in _condition_fields(payload.get("condition"), "payload.condition"):
		name = field.strip()
		if name.startswith("{{") and name.endswith("}}"):
			name = name[2:-2].strip()
		if name.startswith("doc."):
			name = name[4:]
		if name and "." not in name and name not in known:
			unknown(path, f"'{name}' is not a field of {doctype} (the condition reads the event's document)")
	return issues


def _condition_fields(node: Any, path: str):
	if isinstance(node, Mapping):
		for group in ("all", "any"):
			if isinstance(node.get(group), list):
				for index, item in enumerate(node[group]):
					yield from _condition_fields(item, f"{path}.{group}[{index}]")
				return
		if isinstance(node.get("field"), str):
			yield f"{path}.field", node["field"]
