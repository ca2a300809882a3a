"""Persistence of runs, pending rows and attempt records with lean SQL.

The hot path (one wave of a run) reads and writes the run row directly instead of loading and
saving a Document: a run's state is one JSON column, attempts are separate rows, so a step costs a
constant number of statements however long the run is.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

import frappe

from flow_engine.engine.definition import Definition
from flow_engine.runtime import clock

TERMINAL = ("completed", "failed", "cancelled")
RUN_COLUMNS = (
	"name, template, template_version, status, trigger_event, reference_doctype, reference_name, customer, "
	"source, started_by, parent_run, schedule, depth, started_at, completed_at, waves, steps_executed, error, "
	"input, variables, step_state, doc_snapshot, modified, lease_until, lease_owner, infra_failures, "
	"parent_step, item_index, scope, item"
)


def loads(value: Any, default: Any = None) -> Any:
	if value in (None, ""):
		return {} if default is None else default
	if isinstance(value, dict | list):
		return value
	try:
		return json.loads(value)
	except (TypeError, ValueError):
		return {} if default is None else default


def dumps(value: Any) -> str:
	return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def _json_default(value: Any) -> Any:
	if isinstance(value, datetime.datetime | datetime.date | datetime.time):
		return value.isoformat()
	return str(value)


@dataclass
class RunRecord:
	name: str
	template: str
	template_version: int
	status: str
	trigger_event: str | None
	reference_doctype: str | None
	reference_name: str | None
	customer: str | None
	source: str | None
	started_by: str | None
	parent_run: str | None
	schedule: str | None
	depth: int
	started_at: datetime.datetime | None
	completed_at: datetime.datetime | None
	waves: int
	steps_executed: int
	error: str | None
	input: dict
	variables: dict
	states: dict
	doc_snapshot: dict | None
	modified: datetime.datetime | None = None
	lease_until: datetime.datetime | None = None  # see runtime/leases.py
	lease_owner: str | None = None
	infra_failures: int = 0
	definition: Definition | None = None
	published: dict = field(default_factory=dict)
	unsaved_attempts: list = field(default_factory=list)  # written with the run row (save_run)
	calls: list = field(default_factory=list)  # external calls begun, to make once committed (runs.py)
	loaded_status: str | None = None  # the status stored when loaded: `lifecycle` tells a run just ended
	parent_step: str | None = None  # the parent run's call_flow / for_each step that started it
	item_index: int | None = None  # for_each: this run's item (see runtime/children.py)
	expected: tuple | None = None  # unlocked: (modified, lease_owner, lease_until) the next save expects
	unguarded: bool = False  # steps without savepoints: a failing one rolls back the caller's whole try
	scope: str | None = None  # for_each: the step whose body this run plans
	item: Any = None

	@property
	def is_terminal(self) -> bool:
		return self.status in TERMINAL


def template_row(template: str, fields: tuple[str, ...]) -> frappe._dict | None:
	"""The Flow Template's `fields` (runs.START_FIELDS: what starting a run needs), one indexed read."""
	rows = frappe.db.sql(
		f"select {', '.join(f'`{field}`' for field in fields)} from `tabFlow Template` where name=%s",
		(template,),
		as_dict=True,
	)
	return rows[0] if rows else None


def load_run(name: str, lock: bool = False) -> RunRecord | None:
	rows = frappe.db.sql(
		f"select {RUN_COLUMNS} from `tabFlow Run` where name=%s" + (" for update" if lock else ""),
		(name,),
		as_dict=True,
	)
	return record_from_row(rows[0]) if rows else None


def record_from_row(row) -> RunRecord:
	return RunRecord(
		name=row.name,
		template=row.template,
		template_version=int(row.template_version or 0),
		status=row.status,
		loaded_status=row.status,
		trigger_event=row.trigger_event,
		reference_doctype=row.reference_doctype,
		reference_name=row.reference_name,
		customer=row.customer,
		source=row.source,
		started_by=row.started_by,
		parent_run=row.parent_run,
		schedule=row.schedule,
		depth=int(row.depth or 0),
		started_at=row.started_at,
		completed_at=row.completed_at,
		waves=int(row.waves or 0),
		steps_executed=int(row.steps_executed or 0),
		error=row.error,
		input=loads(row.input),
		variables=loads(row.variables),
		states=loads(row.step_state),
		doc_snapshot=loads(row.doc_snapshot, default=None) or None,
		modified=row.modified,
		lease_until=row.lease_until,
		lease_owner=row.lease_owner,
		infra_failures=int(row.infra_failures or 0),
		parent_step=row.parent_step,
		item_index=row.item_index if row.scope else None,
		scope=row.scope or None,
		item=loads(row.item, default=None) if row.scope else None,
	)


def relock(run: RunRecord) -> bool:
	"""Lock the run row again; True when nobody changed it since we saved it (keep the state in memory)."""
	row = frappe.db.sql("select modified from `tabFlow Run` where name=%s for update", (run.name,))
	return bool(row) and run.modified is not None and row[0][0] == run.modified


class Changed(Exception):
	"""A run saved without its lock (`RunRecord.expected`) was changed by someone else meanwhile."""


def save_run(run: RunRecord) -> None:
	"""Write the run row and the attempts recorded since the last save (one statement each).

	A record read without the lock (`expected` set) is written only if the row is still as read
	(raises Changed, writing nothing, if not); the update locks the row from then on."""
	expected, run.modified = run.expected, clock.now()
	frappe.db.sql(
		"""update `tabFlow Run` set status=%s, step_state=%s, variables=%s, error=%s, completed_at=%s,
		waves=%s, steps_executed=%s, modified=%s, lease_until=%s, lease_owner=%s, infra_failures=%s
		where name=%s"""
		+ (" and modified=%s and lease_owner<=>%s and lease_until<=>%s" if expected else ""),
		(
			run.status,
			dumps(run.states),
			dumps(run.variables),
			run.error,
			run.completed_at,
			run.waves,
			run.steps_executed,
			run.modified,
			run.lease_until,
			run.lease_owner,
			run.infra_failures,
			run.name,
			*(expected or ()),
		),
	)
	if expected:
		if frappe.db._cursor.rowcount != 1:
			raise Changed(run.name)
		run.expected = None
	if run.unsaved_attempts:
		group = transaction_group()
		if group is None:
			insert_rows("Flow Step Attempt", run.unsaved_attempts)
		else:  # written with the group's other attempts before it commits (flush_attempts)
			user = frappe.session.user
			group["attempts"].extend(
				{**attempt, "owner": user, "modified_by": user} for attempt in run.unsaved_attempts
			)
		run.unsaved_attempts = []


def transaction_group() -> dict | None:
	"""The work of many runs sharing this transaction (runs.in_one_transaction), or None.

	Its keys: `attempts` (attempt rows to insert together) and `finished` (pending rows fired, updated
	together); `flush_attempts` / the scheduler write them before the group commits."""
	return getattr(frappe.local, "flow_engine_group", None) or None


def flush_attempts() -> None:
	"""Insert the attempts a fire group deferred, in one statement (before anything reads them)."""
	group = transaction_group()
	if group and group["attempts"]:
		attempts, group["attempts"] = group["attempts"], []
		insert_rows("Flow Step Attempt", attempts)


def load_runs(names: list[str]) -> dict[str, RunRecord]:
	"""Several runs, locked in one statement (primary-key order, as every other locker meets them)."""
	rows = frappe.db.sql(
		f"select {RUN_COLUMNS} from `tabFlow Run` where name in %s order by name for update",
		(tuple(names),),
		as_dict=True,
	)
	return {row.name: record_from_row(row) for row in rows}


def insert_row(doctype: str, values: dict, name: str | None = None) -> str:
	"""Insert one row without a Document round-trip (no hooks: internal doctypes only)."""
	return insert_rows(doctype, [values], [name])[0]


def insert_rows(doctype: str, rows: list[dict], names: list[str | None] | None = None) -> list[str]:
	"""Insert rows that share their columns in one statement (no hooks: internal doctypes only, whose
	columns all default to NULL or are given)."""
	now = clock.now()
	user = frappe.session.user if getattr(frappe.local, "session", None) else "Administrator"
	names = [name or frappe.generate_hash(length=12) for name in (names or [None] * len(rows))]
	records = []
	for name, values in zip(names, rows, strict=True):
		record = {
			"name": name,
			"creation": now,
			"modified": now,
			"owner": user,
			"modified_by": user,
			"docstatus": 0,
			"idx": 0,
		}
		for key, value in values.items():
			record[key] = dumps(value) if isinstance(value, dict | list) else value
		records.append(record)
	# a column no row has a value for takes its default (NULL): fewer values to send and parse
	columns = [key for key in records[0] if any(record[key] is not None for record in records)]
	placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
	frappe.db.sql(
		f"insert into `tab{doctype}` ({', '.join(f'`{key}`' for key in columns)}) values "
		+ ", ".join([placeholders] * len(records)),
		tuple(record[key] for record in records for key in columns),
	)
	return names


def record_attempt(
	run: RunRecord,
	step_id: str,
	kind: str,
	attempt: int,
	status: str,
	started: datetime.datetime,
	duration_ms: float,
	input: Any,
	output: Any,
	error: str | None,
	idempotency_key: str,
) -> None:
	"""Record an attempt; it is written with the run's state by the next `save_run`, in the same
	transaction as the step's effect (a run of many instant steps writes them all in one statement)."""
	now = clock.now()
	run.unsaved_attempts.append(
		{
			"creation": now,  # when it happened, not when it was written: attempts list in order
			"modified": now,
			"run": run.name,
			"step_id": step_id,
			"kind": kind,
			"attempt": attempt,
			"status": status,
			"started_at": started,
			"duration_ms": round(duration_ms, 3),
			"input": truncate_json(input),
			"output": truncate_json(output),
			"error": error,
			"idempotency_key": idempotency_key,
		}
	)


def truncate_json(value: Any, limit: int = 64 * 1024) -> Any:
	if value is None:
		return None
	text = dumps(value)
	if len(text) <= limit:
		return text
	return dumps({"truncated": True, "preview": text[:limit]})


def insert_pending(
	run: str,
	step_id: str,
	trigger_at: datetime.datetime,
	purpose: str = "delay",
	attempts: int = 0,
	last_error: str | None = None,
) -> str:
	return insert_row(
		"Flow Step Pending",
		{
			"run": run,
			"step_id": step_id,
			"purpose": purpose,
			"trigger_at": trigger_at,
			"status": "pending",
			"attempts": attempts,
			"claims": 0,
			"last_error": last_error,
		},
	)


def cancel_pending(run: str, except_name: str | None = None) -> None:
	frappe.db.sql(
		"""update `tabFlow Step Pending` set status='cancelled', modified=%s
		where run=%s and status in ('pending', 'running') and name != %s""",
		(clock.now(), run, except_name or ""),
	)
