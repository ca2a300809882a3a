"""Concurrency controls of a flow: at most N open runs, a dedupe key, a rate limit.

A Flow Template may set `max_concurrent_runs` (open = running or waiting), `rate_limit_per_minute`
(runs started in the last 60 seconds) and a `dedupe_key` template (e.g. `{{doc.customer}}`) with a
`dedupe_policy`: `skip` (no run) or `queue`. A run that may not start yet is inserted as `queued`:
no lease, no job. It starts, oldest first, when an open run of its flow ends (`run_ended`), and the
scheduler's minute tick admits whatever still has room (`admit_all`: rate windows, safety net).

Admission of one flow is serialised by a lock on its Flow Template row (`SELECT … FOR UPDATE`),
taken by `start_run` and held until its transaction commits. Under that lock every read that decides
(open runs, runs started in the window, a live run with the same key, the queue) is a *locking* read:
the transaction of a user's save has usually read other rows before, and a plain read would see its
REPEATABLE READ snapshot, from before a concurrent trigger committed its run, and admit N+1.

Lock order is the flow's row, then run rows. A run that ends holds its own row, so its release only
*tries* the flow's row (`SKIP LOCKED`): free, it admits in the transaction that ends the run; taken
(an admission of that flow is under way), it admits right after that transaction commits, in a fresh
one. So a worker ending a run never waits for the flow while an admission waits for its run.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

import frappe

from flow_engine.engine import templating
from flow_engine.runtime import clock, jobs, leases, realtime, recent, resilience
from flow_engine.runtime.context import DocView

OPEN = ("running", "waiting")  # runs of a for_each's items (`scope` set) are the parent's work: not counted
LIVE = ("queued", "running", "waiting")
WINDOW_SECONDS = 60
BATCH = 50
MAX_KEY_LENGTH = 140  # the dedupe_value column (Data)
LIMIT_FIELDS = ("max_concurrent_runs", "rate_limit_per_minute", "dedupe_key", "dedupe_policy")
LIMIT_COLUMNS = ", ".join(LIMIT_FIELDS)


@dataclass
class Limits:
	max_open: int
	per_minute: int
	dedupe_key: str
	policy: str

	@property
	def any(self) -> bool:
		return bool(self.max_open or self.per_minute or self.dedupe_key)


@dataclass
class Admission:
	status: str  # "running" or "queued"
	dedupe_value: str | None = None


def limits(template: str, lock: str = "") -> Limits | None:
	"""The flow's controls; `lock` = "for update" (or "for update skip locked": None when taken)."""
	rows = frappe.db.sql(
		f"select {LIMIT_COLUMNS} from `tabFlow Template` where name=%s {lock}", (template,), as_dict=True
	)
	if not rows:
		return None
	return limits_of(rows[0])


def limits_of(row) -> Limits:
	"""The controls in a Flow Template row read with LIMIT_COLUMNS."""
	return Limits(
		max_open=max(int(row.max_concurrent_runs or 0), 0),
		per_minute=max(int(row.rate_limit_per_minute or 0), 0),
		dedupe_key=(row.dedupe_key or "").strip(),
		policy=row.dedupe_policy or "skip",
	)


CONTROLS = "controls"  # (runtime/recent.py)
CONTROLS_TTL = 2.0  # seconds a job trusts its reading of whether a flow has controls


def has_controls(template: str) -> bool:
	"""Whether the flow has any concurrency control, read at most every CONTROLS_TTL seconds per job.

	Every run's end asks, and nearly every flow has none: a backlog of ended runs then reads the
	flow's row once, not once a run. Saving a flow forgets the reading (templates.clear_caches); a
	change made elsewhere meanwhile is caught by the minute tick (admit_all)."""
	return recent.read(CONTROLS, template, CONTROLS_TTL, _has_controls_now)


def _has_controls_now(template: str) -> bool:
	found = limits(template)
	return bool(found and found.any)


def admit_new(
	template: str,
	*,
	doc=None,
	input: dict | None = None,
	variables: dict | None = None,
	event: str | None = None,
	schedule: str | None = None,
	row=None,
) -> Admission | None:
	"""How a new run of `template` starts: running, queued, or None (a duplicate, policy skip).

	Called by `runs.start_run` before it inserts the run; for a flow with controls it locks the flow's
	row until the caller's transaction ends, so the run it inserts is counted by the next admission.
	`row`: the flow's row as the caller read it (with LIMIT_COLUMNS), saving a read."""
	found = limits_of(row) if row is not None else limits(template)
	if found is None or not found.any:
		return Admission("running")  # no controls: one primary-key read, no lock
	found = limits(template, lock="for update")
	if found is None or not found.any:
		return Admission("running")
	now = clock.now()
	value = (
		dedupe_value(found.dedupe_key, doc, input, variables, event, schedule) if found.dedupe_key else None
	)
	admit_queued(template, found, now)  # those waiting go first
	if value and _live(template, value, LIVE):
		if found.policy == "queue":
			return Admission("queued", value)
		frappe.logger("flow_engine").debug(
			f"flow '{template}': not started, a run with dedupe key {value!r} is still open"
		)
		return None
	room = _room(template, found, now)
	return Admission("queued" if room is not None and room <= 0 else "running", value)


def dedupe_value(key: str, doc=None, input=None, variables=None, event=None, schedule=None) -> str | None:
	"""The dedupe key rendered against the trigger (doc, customer, input, variables, event); None
	when it renders empty (no deduplication for that run)."""
	from flow_engine.runtime.triggers import TriggerCustomer

	context = {
		"doc": DocView(doc) if doc is not None else {},
		"customer": TriggerCustomer(doc) if doc is not None else {},
		"input": dict(input or {}),
		"variables": dict(variables or {}),
		"event": {"name": event, "schedule": schedule},
	}
	try:
		text = templating.to_text(templating.render_string(key, context)).strip()
	except Exception:
		frappe.log_error(title=f"flow_engine: dedupe key {key!r} could not be rendered")
		return None
	if len(text) > MAX_KEY_LENGTH:
		text = "sha1:" + hashlib.sha1(text.encode()).hexdigest()
	return text or None


def _live(template: str, value: str, statuses: tuple) -> bool:
	"""Whether a run of the flow with this dedupe value is in one of `statuses` (locking read)."""
	return bool(
		frappe.db.sql(
			"""select name from `tabFlow Run` force index (template_dedupe_value_index)
			where dedupe_value=%s and template=%s and status in %s limit 1 lock in share mode""",
			(value, template, statuses),
		)
	)


def _room(template: str, found: Limits, now: datetime.datetime) -> int | None:
	"""How many more runs may start now (None: no limit). Locking reads: see the module's note."""
	room = None
	if found.max_open:
		open_runs = frappe.db.sql(
			"""select count(*) from `tabFlow Run` force index (template_status_creation_index)
			where template=%s and status in %s and ifnull(scope, '')='' lock in share mode""",
			(template, OPEN),
		)[0][0]
		room = found.max_open - int(open_runs)
	if found.per_minute:
		started = frappe.db.sql(
			"""select count(*) from `tabFlow Run` force index (template_started_at_index) where template=%s
			and started_at > %s and status != 'queued' and ifnull(scope, '')='' lock in share mode""",
			(template, now - datetime.timedelta(seconds=WINDOW_SECONDS)),
		)[0][0]
		left = found.per_minute - int(started)
		room = left if room is None else min(room, left)
	return room


def admit_queued(template: str, found: Limits | None, now: datetime.datetime | None = None) -> list[str]:
	"""Start the flow's queued runs, oldest first, while it has room; a run whose dedupe key has an
	open run keeps waiting (later ones may go). The caller holds the flow's row lock."""
	now = now or clock.now()
	found = found or Limits(0, 0, "", "skip")  # the flow is gone or has no controls now: all go
	room = _room(template, found, now)
	admitted: list[str] = []
	after = None
	while room is None or room > 0:
		rows = frappe.db.sql(
			"""select name, creation, dedupe_value from `tabFlow Run` force index (template_status_creation_index)
			where template=%s and status='queued'"""
			+ (" and (creation > %s or (creation = %s and name > %s))" if after else "")
			+ " order by creation, name limit %s for update",
			(template, *((after.creation, after.creation, after.name) if after else ()), BATCH),
			as_dict=True,
		)
		for row in rows:
			if room is not None and room <= 0:
				break
			if found.dedupe_key and row.dedupe_value and _live(template, row.dedupe_value, OPEN):
				continue
			start(row.name, now)
			admitted.append(row.name)
			if room is not None:
				room -= 1
		if len(rows) < BATCH:
			break
		after = rows[-1]
	return admitted


def start(run: str, now: datetime.datetime) -> None:
	"""Turn a queued run into a running one, leased to the job that will advance it (as start_run)."""
	owner = jobs.schedule_advance(run)
	frappe.db.sql(
		"""update `tabFlow Run` set status='running', started_at=%s, lease_until=%s, lease_owner=%s,
		modified=%s where name=%s and status='queued'""",
		(now, leases.until(now=now), owner, now, run),
	)
	realtime.publish_run_update(run, {"run": run, "status": "running", "states": {}, "error": None})


def run_ended(record) -> None:
	"""`lifecycle` listener: a run ended, so the next queued runs of its flow may start.

	In this transaction when the flow's row is free, else right after it commits (see the note)."""
	if not has_controls(record.template):
		return  # (queued runs of a flow whose controls were removed: the tick starts them)
	found = limits(record.template, lock="for update skip locked")
	if found is None:  # an admission of this flow holds its row: admit once this transaction commits
		template = record.template
		frappe.db.after_commit.add(lambda: admit_later(template))
		return
	admit_queued(record.template, found if found.any else None)


def admit_later(template: str) -> list[str]:
	"""Admit the flow's queued runs in a transaction of their own (never raises)."""
	try:
		return resilience.retrying(_admit_now, template)
	except Exception:
		resilience.reset_connection()
		frappe.log_error(title=f"flow_engine: could not start queued runs of flow '{template}'")
		return []


def _admit_now(template: str) -> list[str]:
	frappe.db.commit()
	found = limits(template, lock="for update")
	admitted = admit_queued(template, found if found is not None and found.any else None)
	frappe.db.commit()
	return admitted


def admit_all() -> int:
	"""Scheduler tick: start queued runs of every flow that has room now (rate windows that moved on,
	runs that ended without a release, limits raised). Returns how many started."""
	templates = frappe.db.sql_list("select distinct template from `tabFlow Run` where status='queued'")
	return sum(len(admit_later(template)) for template in templates)
