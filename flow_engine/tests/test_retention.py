"""Retention (flow_engine/runtime/retention.py): old finished runs go with their rows, open and new
runs stay, old step data is cleared, batches stay small, and a batch never blocks a new run.

Rows are seeded with the store's plain inserts at chosen ages; `retention.run` is called for real.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import time

import frappe
from frappe.utils import add_to_date

from flow_engine.runtime import clock, retention, runs, store
from flow_engine.tests.utils import FlowTestCase, insert_run, make_flow, run_in_subprocess

MARK = "[flowtest]"
KEEP_ALL = {"keep_completed_days": 0, "keep_failed_days": 0, "keep_step_data_days": 0}


def seed_run(
	template: str,
	status: str,
	age_days: float,
	attempts: int = 2,
	pending: int = 1,
	comment: bool = True,
	attempt_age_days: float | None = None,
) -> str:
	"""A run last changed `age_days` ago, with attempts (input/output), pending rows and a comment."""
	when = add_to_date(clock.now(), days=-age_days)
	attempt_when = add_to_date(
		clock.now(), days=-(age_days if attempt_age_days is None else attempt_age_days)
	)
	terminal = status in store.TERMINAL
	name = insert_run(template, status, when, when, steps_executed=attempts)
	for index in range(attempts):
		store.insert_row(
			"Flow Step Attempt",
			{
				"run": name,
				"step_id": f"s{index}",
				"kind": "create_doc",
				"attempt": 1,
				"status": "completed",
				"started_at": attempt_when,
				"duration_ms": 1.0,
				"input": {"in": index},
				"output": {"out": index},
				"error": "kept",
				"idempotency_key": f"{name}:s{index}:1",
				"creation": attempt_when,
				"modified": attempt_when,
			},
		)
	for index in range(pending):
		store.insert_row(
			"Flow Step Pending",
			{
				"run": name,
				"step_id": f"w{index}",
				"purpose": "delay",
				# an open run's row is due in the future: no tick fires it during the test
				"trigger_at": when if terminal else add_to_date(clock.now(), days=1),
				"status": "completed" if terminal else "pending",
				"attempts": 0,
				"claims": 0,
				"creation": when,
				"modified": when,
			},
		)
	if comment:
		frappe.get_doc(
			{
				"doctype": "Comment",
				"comment_type": "Comment",
				"reference_doctype": "Flow Run",
				"reference_name": name,
				"content": f"retried by someone {MARK}",
			}
		).insert(ignore_permissions=True)
	return name


def rows_of(name: str) -> dict:
	return {
		"run": frappe.db.exists("Flow Run", name),
		"attempts": frappe.db.count("Flow Step Attempt", {"run": name}),
		"pending": frappe.db.count("Flow Step Pending", {"run": name}),
		"comments": frappe.db.count("Comment", {"reference_doctype": "Flow Run", "reference_name": name}),
	}


class RetentionTestCase(FlowTestCase):
	def setUp(self):
		super().setUp()
		self.template = make_flow(
			"retention", [{"id": "w", "kind": "wait", "trigger": {"type": "manual"}}]
		).name
		# the settings as stored (none at all on a fresh site: the form then shows the defaults)
		self.stored = frappe.db.sql(
			"select field, value from `tabSingles` where doctype=%s", (retention.SETTINGS,)
		)

	def tearDown(self):
		frappe.db.rollback()
		frappe.db.delete("Comment", {"reference_doctype": "Flow Run", "content": ["like", f"%{MARK}%"]})
		frappe.db.delete("Singles", {"doctype": retention.SETTINGS})
		for field, value in self.stored:
			frappe.db.sql(
				"insert into `tabSingles` (doctype, field, value) values (%s, %s, %s)",
				(retention.SETTINGS, field, value),
			)
		frappe.db.commit()
		frappe.clear_document_cache(retention.SETTINGS, retention.SETTINGS)
		super().tearDown()


class TestRetention(RetentionTestCase):
	def test_old_finished_runs_go_with_their_rows_open_and_new_runs_stay(self):
		t = self.template
		gone = {
			"old completed": seed_run(t, "completed", 100),
			"old cancelled": seed_run(t, "cancelled", 100),
			"old failed": seed_run(t, "failed", 60),
		}
		kept = {
			"new completed": seed_run(t, "completed", 10),
			"new failed": seed_run(t, "failed", 10),
			"old running": seed_run(t, "running", 100),
			"old waiting": seed_run(t, "waiting", 100),
			"old queued": seed_run(t, "queued", 100),
		}
		frappe.db.commit()
		# from the settings, as the daily job reads them
		frappe.db.set_single_value(retention.SETTINGS, "keep_completed_days", 30)
		frappe.db.set_single_value(retention.SETTINGS, "keep_failed_days", 45)
		frappe.db.set_single_value(retention.SETTINGS, "keep_step_data_days", 0)
		frappe.db.commit()

		report = retention.run()

		for label, name in gone.items():
			self.assertEqual(rows_of(name), {"run": None, "attempts": 0, "pending": 0, "comments": 0}, label)
		for label, name in kept.items():
			self.assertEqual(rows_of(name), {"run": name, "attempts": 2, "pending": 1, "comments": 1}, label)
		self.assertGreaterEqual(report["runs_deleted"], 3)
		# the open runs' step data is untouched (step data retention was off)
		self.assertEqual(
			frappe.db.get_value("Flow Step Attempt", {"run": kept["old waiting"], "step_id": "s0"}, "output"),
			'{"out":0}',
		)

	def test_failed_runs_follow_their_own_setting_and_zero_keeps_forever(self):
		t = self.template
		completed, failed = seed_run(t, "completed", 1000), seed_run(t, "failed", 1000)
		frappe.db.commit()

		retention.run(**KEEP_ALL, retention_batch_size=100)
		self.assertTrue(rows_of(completed)["run"] and rows_of(failed)["run"], "0 keeps forever")

		retention.run(keep_completed_days=30, keep_failed_days=0, keep_step_data_days=0)
		self.assertIsNone(rows_of(completed)["run"])
		self.assertEqual(rows_of(failed)["attempts"], 2, "failed runs are kept while their setting is 0")

		retention.run(keep_completed_days=0, keep_failed_days=2000, keep_step_data_days=0)
		self.assertTrue(rows_of(failed)["run"], "younger than its setting")
		retention.run(keep_completed_days=0, keep_failed_days=500, keep_step_data_days=0)
		self.assertIsNone(rows_of(failed)["run"])

	def test_old_step_data_is_cleared_and_the_attempts_stay(self):
		t = self.template
		# an open run whose early attempts are old and a recent finished run
		waiting = seed_run(t, "waiting", 1, attempt_age_days=40)
		recent = seed_run(t, "completed", 1)
		frappe.db.commit()

		report = retention.run(keep_completed_days=0, keep_failed_days=0, keep_step_data_days=30)

		old = frappe.get_all(
			"Flow Step Attempt", filters={"run": waiting}, fields=["input", "output", "error", "status"]
		)
		self.assertEqual(len(old), 2, "the attempts stay")
		for row in old:
			self.assertEqual((row.input, row.output), (None, None))
			self.assertEqual((row.error, row.status), ("kept", "completed"))
		self.assertGreaterEqual(report["attempts_cleared"], 2)
		new = frappe.get_all("Flow Step Attempt", filters={"run": recent}, fields=["input", "output"])
		self.assertEqual(sorted(row.input for row in new), ['{"in":0}', '{"in":1}'])
		self.assertTrue(rows_of(waiting)["run"] and rows_of(recent)["run"])

	def test_batches_respect_the_batch_size(self):
		t = self.template
		names = [seed_run(t, "completed", 100, attempts=2, pending=1) for _ in range(5)]
		frappe.db.commit()
		# nothing else on the site is that old: the deletes below are ours
		others = frappe.db.sql(
			"""select count(*) from `tabFlow Run` where status in ('completed', 'cancelled')
			and modified < %s and name not in %s""",
			(retention.cutoff(30), names),
		)[0][0]
		self.assertEqual(others, 0)

		report = retention.run(
			keep_completed_days=30, keep_failed_days=0, keep_step_data_days=0, retention_batch_size=3
		)

		# 5 runs × (2 attempts + 1 pending row + 1 comment + the run) = 25 rows, at most 3 a commit
		self.assertEqual(sum(report["batches"]), 25, report)
		self.assertLessEqual(max(report["batches"]), 3, report)
		self.assertGreaterEqual(len(report["batches"]), 9, report)
		self.assertEqual(report["runs_deleted"], 5)
		for name in names:
			self.assertIsNone(rows_of(name)["run"])

		names = [seed_run(t, "waiting", 1, attempts=7, pending=0, comment=False, attempt_age_days=40)]
		frappe.db.commit()
		report = retention.run(
			keep_completed_days=0, keep_failed_days=0, keep_step_data_days=30, retention_batch_size=3
		)
		self.assertEqual(report["batches"][:3], [3, 3, 1], report)
		self.assertEqual(frappe.db.count("Flow Step Attempt", {"run": names[0], "output": ["is", "set"]}), 0)

	def test_row_counts_for_the_settings_page(self):
		t = self.template
		before = retention.row_counts()
		seed_run(t, "failed", 1, attempts=3, pending=2)
		seed_run(t, "waiting", 1, attempts=1, pending=1)
		frappe.db.commit()
		from flow_engine.flow_engine.doctype.flow_engine_settings.flow_engine_settings import get_row_counts

		after = get_row_counts()
		self.assertEqual(after["runs"]["failed"] - before["runs"]["failed"], 1)
		self.assertEqual(after["runs"]["waiting"] - before["runs"]["waiting"], 1)
		self.assertEqual(after["runs_total"] - before["runs_total"], 2)
		self.assertEqual(after["attempts"] - before["attempts"], 4)
		self.assertEqual(after["pending"] - before["pending"], 3)
		self.assertEqual(after["pending_open"] - before["pending_open"], 1)

	def test_run_now_button_and_settings_are_for_flow_managers(self):
		from flow_engine.flow_engine.doctype.flow_engine_settings import flow_engine_settings
		from flow_engine.tests.utils import ensure_user

		old = seed_run(self.template, "completed", 200)
		frappe.db.commit()
		frappe.db.set_single_value(retention.SETTINGS, "keep_completed_days", 100)
		frappe.db.commit()
		frappe.set_user(ensure_user("flow-retention-low@example.com", ["Blogger"]))
		self.assertRaises(frappe.PermissionError, flow_engine_settings.run_retention_now)
		self.assertRaises(frappe.PermissionError, flow_engine_settings.get_row_counts)
		frappe.set_user(ensure_user("flow-retention-mgr@example.com", ["Flow Manager"]))
		result = flow_engine_settings.run_retention_now()  # inline mode: runs in the request
		self.assertEqual(result["status"], "done")
		frappe.set_user("Administrator")
		self.assertIsNone(rows_of(old)["run"])

	def test_settings_reject_negative_days(self):
		settings = frappe.get_single(retention.SETTINGS)
		settings.keep_failed_days = -1
		self.assertRaises(frappe.ValidationError, settings.save)


# The subprocess runs retention and stops inside its first batch, before the commit (locks held);
# this process then starts a run (run row, attempt, pending row) and times it.
PAUSE_IN_BATCH = """
import os, pathlib, time
folder = pathlib.Path(BARRIER_DIR)
def hold_locks():
	(folder / "in-batch").touch()
	end = time.monotonic() + HOLD
	while not (folder / "inserted").exists() and time.monotonic() < end:
		time.sleep(0.005)
from flow_engine.runtime import retention
_end_batch = retention.end_batch
def end_batch(report, rows):
	if not (folder / "in-batch").exists():
		hold_locks()
	_end_batch(report, rows)
retention.end_batch = end_batch
"""

RETENTION = PAUSE_IN_BATCH + "print(retention.run(**SETTINGS))\n"

# the control: clearing step data with one statement on an unindexed column locks every row and gap
NAIVE_CLEAR = PAUSE_IN_BATCH + (
	"frappe.db.sql('update `tabFlow Step Attempt` set input=null, output=null where creation < %s', "
	"(retention.cutoff(30),))\nhold_locks()\nfrappe.db.commit()\n"
)


class TestRetentionDoesNotBlock(RetentionTestCase):
	HOLD = 4.0  # seconds the subprocess holds its batch open unless the insert finished first

	def _flow(self) -> str:
		return make_flow(
			"retention insert",
			[
				{
					"id": "t",
					"kind": "create_doc",
					"payload": {"doctype": "ToDo", "fields": {"description": f"new {{{{run.name}}}} {MARK}"}},
				},
				{
					"id": "d",
					"kind": "wait",
					"trigger": {"type": "after_delay", "delay_minutes": 60},
					"depends_on": ["t"],
				},
			],
		).name

	def _insert_latency_during(self, code: str, settings: dict) -> tuple[float, str]:
		flow = self._flow()
		folder = tempfile.mkdtemp(prefix="flow-retention-")
		prelude = f"BARRIER_DIR = {folder!r}\nHOLD = {self.HOLD!r}\nSETTINGS = {settings!r}\n"
		process = run_in_subprocess(prelude + code, wait=False)
		end = time.monotonic() + 120
		while not os.path.exists(os.path.join(folder, "in-batch")):
			if process.poll() is not None or time.monotonic() > end:
				out, err = process.communicate()
				raise AssertionError(f"retention never reached a batch: {out}\n{err[-3000:]}")
			time.sleep(0.005)
		started = time.monotonic()
		name = runs.start_run(flow)
		frappe.db.commit()  # inline: the run advances after commit (attempt and pending rows)
		latency = time.monotonic() - started
		pathlib.Path(folder, "inserted").touch()
		out, err = process.communicate(timeout=180)
		self.assertEqual(process.returncode, 0, err[-3000:])
		record = store.load_run(name)
		self.assertEqual(record.status, "waiting", "the new run ran its first step and waits")
		self.assertEqual(frappe.db.count("Flow Step Attempt", {"run": name}), 1)
		self.assertEqual(frappe.db.count("Flow Step Pending", {"run": name, "status": "pending"}), 1)
		return latency, out

	def _seed_old(self, count: int = 60) -> list[str]:
		names = [seed_run(self.template, "completed", 100, attempts=3, pending=1) for _ in range(count)]
		frappe.db.commit()
		return names

	def test_a_new_run_is_not_blocked_while_a_deleting_batch_holds_its_locks(self):
		names = self._seed_old()
		settings = {**KEEP_ALL, "keep_completed_days": 30, "retention_batch_size": 50}
		latency, out = self._insert_latency_during(RETENTION, settings)
		self.assertLess(latency, 1.0, f"insert waited {latency:.2f}s behind a retention batch")
		self.assertTrue(all(rows_of(name)["run"] is None for name in names), out)

	def test_a_new_run_is_not_blocked_while_a_clearing_batch_holds_its_locks(self):
		self._seed_old()
		settings = {**KEEP_ALL, "keep_step_data_days": 30, "retention_batch_size": 50}
		latency, out = self._insert_latency_during(RETENTION, settings)
		self.assertLess(latency, 1.0, f"insert waited {latency:.2f}s behind a retention batch")
		self.assertIn("'attempts_cleared': 180", out)

	def test_control_a_naive_clear_blocks_the_new_run(self):
		self._seed_old(20)
		latency, _out = self._insert_latency_during(NAIVE_CLEAR, {})
		self.assertGreater(latency, 1.0, "the barrier forces the naive statement's locks to block the insert")
