"""Retention: delete old finished runs and clear old step data, a little at a time.

Flow Engine Settings says how long to keep completed (and cancelled) runs, failed runs and the
inputs/outputs of step attempts (0: keep forever). The daily job (hooks.py `scheduler_events`) and the
settings' "Run retention now" button call `run`.

Nothing here holds a lock for long or locks a range a new row could land in:
- rows to remove are found with plain (non-locking) reads, then deleted or updated by primary key,
  in READ COMMITTED transactions: InnoDB then locks only those rows, never a gap of an index (under
  Frappe's default REPEATABLE READ, `where name in (…)` also takes a next-key lock on the row after
  each one, and a new attempt whose random name sorts into that gap waits for the batch's commit);
- every transaction touches at most `retention_batch_size` rows and commits, then pauses briefly;
- a run is deleted only while locked and still terminal and old (`for update` on its own row), so
  a run that is retried or replayed in the meantime is never removed; its attempts, pending rows and
  comments go first, the run row last (an interrupted purge leaves a run, never orphans).
"""

from __future__ import annotations

import datetime
import time

import frappe
from frappe.utils import add_to_date, cint

from flow_engine.runtime import clock

SETTINGS = "Flow Engine Settings"
STATUSES = ("queued", "running", "waiting", "completed", "failed", "cancelled")
TERMINAL = ("completed", "failed", "cancelled")
DONE = ("completed", "cancelled")
DEFAULTS = {
	"keep_completed_days": 90,
	"keep_failed_days": 365,
	"keep_step_data_days": 30,
	"retention_batch_size": 500,
}
MAX_BATCH = 5000
PAUSE = 0.05  # seconds between batches: other transactions get the rows and the CPU
LOCK = "flow_engine_retention"
# what belongs to a run and goes with it: (table, column naming the run, extra condition)
CHILDREN = (
	("Flow Step Pending", "run", ""),
	("Flow Step Attempt", "run", ""),
	("Flow Wait", "run", ""),  # a wait_for step's wait (closed when its run ended)
	("Comment", "reference_name", "and reference_doctype='Flow Run'"),
)


def read_settings() -> dict:
	"""The retention settings; a value never saved falls back to its default (0 stays 0: keep forever)."""
	stored = frappe.db.get_singles_dict(SETTINGS)
	values = {}
	for key, default in DEFAULTS.items():
		value = stored.get(key)
		values[key] = default if value in (None, "") else cint(value)
	values["retention_batch_size"] = min(max(values["retention_batch_size"], 1), MAX_BATCH)
	return values


def cutoff(days: int) -> datetime.datetime:
	return add_to_date(clock.now(), days=-days)


def run(**overrides) -> dict:
	"""The daily job: apply every retention setting. Returns what it did (also for the Desk button)."""
	options = {**read_settings(), **overrides}
	batch = min(max(cint(options["retention_batch_size"]), 1), MAX_BATCH)
	report = {"runs_deleted": 0, "rows_deleted": 0, "attempts_cleared": 0, "batches": []}
	if not _acquire():
		report["skipped"] = "retention is already running"
		return report
	frappe.db.sql("set session transaction isolation level read committed")
	frappe.db.commit()  # (Frappe begins the next transaction at once: it runs read committed)
	try:
		if cint(options["keep_completed_days"]) > 0:
			purge_runs(DONE, cutoff(cint(options["keep_completed_days"])), batch, report)
		if cint(options["keep_failed_days"]) > 0:
			purge_runs(("failed",), cutoff(cint(options["keep_failed_days"])), batch, report)
		if cint(options["keep_step_data_days"]) > 0:
			clear_step_data(cutoff(cint(options["keep_step_data_days"])), batch, report)
	finally:
		frappe.db.sql("set session transaction isolation level repeatable read")
		frappe.db.commit()
		_release()
	return report


def purge_runs(statuses: tuple, before: datetime.datetime, batch: int, report: dict) -> None:
	"""Delete runs in `statuses` last changed before `before`, with their rows, `batch` rows a commit."""
	assert set(statuses) <= set(TERMINAL), "only terminal runs are ever deleted"
	params = {"statuses": statuses, "before": before, "limit": batch}
	while True:
		# status_modified_index: a plain read of the oldest matches, no lock taken
		names = frappe.db.sql_list(
			"""select name from `tabFlow Run` where status in %(statuses)s and modified < %(before)s
			limit %(limit)s""",
			params,
		)
		if not names:
			return
		# lock exactly these rows (primary key), and only those still terminal and old
		runs = frappe.db.sql_list(
			"""select name from `tabFlow Run` where name in %(names)s and status in %(statuses)s
			and modified < %(before)s for update""",
			{**params, "names": names},
		)
		budget, removed, complete = batch, 0, True
		for table, column, extra in CHILDREN:
			if not runs:
				break
			if budget <= 0:
				complete = False
				break
			rows = frappe.db.sql_list(
				f"select name from `tab{table}` where {column} in %(runs)s {extra} limit %(limit)s",
				{"runs": runs, "limit": budget},
			)
			if rows:
				frappe.db.sql(f"delete from `tab{table}` where name in %(rows)s", {"rows": rows})
			if len(rows) == budget:  # the limit was reached: there may be more
				complete = False
			budget -= len(rows)
			removed += len(rows)
		if runs and complete and budget > 0:
			doomed = runs[:budget]
			frappe.db.sql("delete from `tabFlow Run` where name in %(runs)s", {"runs": doomed})
			removed += len(doomed)
			report["runs_deleted"] += len(doomed)
		report["rows_deleted"] += removed
		end_batch(report, removed)
		if not removed:
			return  # nothing matched any more (changed under us): tomorrow's job looks again


def clear_step_data(before: datetime.datetime, batch: int, report: dict) -> None:
	"""Clear the input and output of step attempts recorded before `before` (the attempts stay)."""
	last_modified, last_name = datetime.datetime(1900, 1, 1), ""
	while True:
		# walk the `modified` index in order from where the last batch stopped: each row read once
		rows = frappe.db.sql(
			"""select name, modified from `tabFlow Step Attempt`
			where modified < %(before)s
			and (modified > %(last_modified)s or (modified = %(last_modified)s and name > %(last_name)s))
			and (input is not null or output is not null)
			order by modified, name limit %(limit)s""",
			{"before": before, "last_modified": last_modified, "last_name": last_name, "limit": batch},
		)
		if not rows:
			return
		names = [row[0] for row in rows]
		frappe.db.sql(
			"update `tabFlow Step Attempt` set input=null, output=null where name in %(names)s",
			{"names": names},
		)
		report["attempts_cleared"] += len(names)
		end_batch(report, len(names))
		last_name, last_modified = rows[-1][0], rows[-1][1]


def end_batch(report: dict, rows: int) -> None:
	"""Commit what this batch did and let others in before the next."""
	frappe.db.commit()
	report["batches"].append(rows)
	time.sleep(PAUSE)


def _acquire() -> bool:
	"""One retention pass at a time per site (the daily job and the Desk button may meet)."""
	return bool(frappe.db.sql("select get_lock(%s, 0)", (_lock_name(),))[0][0])


def _release() -> None:
	frappe.db.sql("select release_lock(%s)", (_lock_name(),))


def _lock_name() -> str:
	return f"{LOCK}:{frappe.conf.db_name}"


def row_counts() -> dict:
	"""Rows per table (runs by status) and how many retention would remove now, for the settings page."""
	by_status = dict(frappe.db.sql("select status, count(*) from `tabFlow Run` group by status"))
	options = read_settings()
	due = {}
	for key, statuses in (("keep_completed_days", DONE), ("keep_failed_days", ("failed",))):
		days = options[key]
		due[key] = (
			frappe.db.sql(
				"select count(*) from `tabFlow Run` where status in %(statuses)s and modified < %(before)s",
				{"statuses": statuses, "before": cutoff(days)},
			)[0][0]
			if days > 0
			else 0
		)
	return {
		"runs": {status: cint(by_status.get(status)) for status in STATUSES},
		"runs_total": sum(cint(count) for count in by_status.values()),
		"attempts": frappe.db.sql("select count(*) from `tabFlow Step Attempt`")[0][0],
		"pending": frappe.db.sql("select count(*) from `tabFlow Step Pending`")[0][0],
		"pending_open": frappe.db.sql(
			"select count(*) from `tabFlow Step Pending` where status in ('pending', 'running')"
		)[0][0],
		"due_for_deletion": due["keep_completed_days"] + due["keep_failed_days"],
		"settings": options,
	}


def enqueue_now() -> str:
	"""Queue a retention pass now (one at a time: a second click while one is queued is a no-op)."""
	frappe.enqueue(
		"flow_engine.runtime.retention.run",
		queue="long",
		job_id=f"flow_engine_retention::{frappe.local.site}",
		deduplicate=True,
	)
	return "queued"
