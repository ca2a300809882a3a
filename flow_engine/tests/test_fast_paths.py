"""The short cuts of the hot path, and that each falls back to the usual way when something is amiss.

- A trigger starts a flow without concurrency controls with its one insert and no savepoint.
- Inline mode advances a run it has just started from the record it inserted: no read, no lock,
  no savepoints, and a first save that writes only if nobody changed the run meanwhile.
- Pool groups run steps without savepoints; a failing step has the group redone run by run.
In every fallback the outcome is the usual way's: each step's effect committed once, one attempt
record per attempt, the user's save intact.
"""

import contextlib
import tempfile

import frappe
import pymysql

from flow_engine.runtime import resilience, runs, store, triggers
from flow_engine.tests.utils import (
	BARRIER,
	TEST_DOCTYPE,
	FlowTestCase,
	make_flow,
	new_test_doc,
	run_in_subprocess,
	run_of,
)

CREATE_THEN_CLOSE = [
	{
		"id": "t",
		"kind": "create_doc",
		"payload": {"doctype": "ToDo", "fields": {"description": "{{run.name}} fast [flowtest]"}},
	},
	{
		"id": "u",
		"kind": "update_doc",
		"depends_on": ["t"],
		"payload": {"doctype": "ToDo", "name": "{{steps.t.result.name}}", "fields": {"status": "Closed"}},
	},
]


@contextlib.contextmanager
def statements():
	"""The SQL statements this process sends meanwhile (lower-cased, whitespace collapsed)."""
	sent: list[str] = []
	original = frappe.db.sql

	def sql(query, *args, **kwargs):
		sent.append(" ".join(str(query).split()).lower())
		return original(query, *args, **kwargs)

	frappe.db.sql = sql
	try:
		yield sent
	finally:
		frappe.db.sql = original


# process A starts a run inline and executes its step unlocked; process B advances the same run the
# usual way (locked) and commits while A waits; then A saves. CONDITIONAL False (the control) makes A's
# first save unconditional, as if it held the lock: the race then really doubles the step's effect.
RACE_A = """
from flow_engine.runtime import runs, steps, store
_execute, _save_run = steps.execute, store.save_run
def execute(run, step, pending_row=None):
	status = _execute(run, step, pending_row)
	if run.expected is not None and not getattr(run, "raced", False):
		run.raced = True
		barrier("a-executed", 2, 30)
		barrier("b-done", 2, 60)
	return status
def save_run(run):
	if not CONDITIONAL:
		run.expected = None
	return _save_run(run)
steps.execute, store.save_run = execute, save_run
frappe.flags.flow_engine_inline = True
runs.start_run(TEMPLATE)
frappe.db.commit()
"""
RACE_B = """
from flow_engine.runtime import runs
barrier("a-executed", 2, 30)
(name,) = frappe.get_all("Flow Run", filters={"template": TEMPLATE}, pluck="name")
runs.advance(name)
barrier("b-done", 2, 60)
"""


def todos_of(run: str) -> list[dict]:
	return frappe.get_all(
		"ToDo", filters={"description": f"{run} fast [flowtest]"}, fields=["name", "status"]
	)


def attempts_of(run: str) -> list[tuple]:
	return sorted(
		(row.step_id, row.status)
		for row in frappe.get_all("Flow Step Attempt", filters={"run": run}, fields=["step_id", "status"])
	)


class TestFastPaths(FlowTestCase):
	def test_an_inline_run_is_advanced_from_its_insert_without_read_lock_or_savepoints(self):
		template = make_flow("fast inline", CREATE_THEN_CLOSE, event="after_insert").name
		triggers.get_trigger_map()  # (built once for every save after it)
		with statements() as sent:
			new_test_doc(title="fast")
			frappe.db.commit()
		record = run_of(template)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual([todo.status for todo in todos_of(record.name)], ["Closed"])
		self.assertEqual(attempts_of(record.name), [("t", "completed"), ("u", "completed")])
		self.assertFalse([s for s in sent if s.startswith("savepoint")], "no savepoint on the fast path")
		self.assertFalse(
			[s for s in sent if "from `tabflow run`" in s],
			"the run is neither read nor locked before its save",
		)
		self.assertFalse([s for s in sent if "payload_schema" in s], "the flow's row comes with the map")

	def test_a_run_changed_before_its_first_save_is_advanced_the_usual_way(self):
		template = make_flow("fast changed", CREATE_THEN_CLOSE, event="after_insert").name
		ran = []
		doc = new_test_doc(title="changed")
		name = run_of(template).name
		# someone else's change, committed with the start: the record the trigger kept is now stale
		frappe.db.sql(
			"update `tabFlow Run` set modified=%s where name=%s", (frappe.utils.now_datetime(), name)
		)
		frappe.db.after_commit.add(lambda: ran.append(doc.name))  # the user's own after-commit work
		with statements() as sent:
			frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(ran, [doc.name], "the user's after-commit work runs once, rollback or not")
		self.assertEqual(
			[todo.status for todo in todos_of(name)], ["Closed"], "one ToDo: the first try's is gone"
		)
		self.assertEqual(attempts_of(name), [("t", "completed"), ("u", "completed")])
		self.assertTrue([s for s in sent if s.startswith("rollback")], "the first try was rolled back")
		self.assertTrue([s for s in sent if "for update" in s and "`tabflow run`" in s], "then locked")

	def race(self, conditional: bool) -> str:
		template = make_flow("fast race", CREATE_THEN_CLOSE[:1]).name
		folder = tempfile.mkdtemp(prefix="flow-barrier-")
		prelude = (
			f"BARRIER_DIR = {folder!r}\nTEMPLATE = {template!r}\nCONDITIONAL = {conditional!r}\n" + BARRIER
		)
		procs = [run_in_subprocess(prelude + code, wait=False) for code in (RACE_A, RACE_B)]
		for proc in procs:
			_out, err = proc.communicate(timeout=120)
			self.assertEqual(proc.returncode, 0, err[-3000:])
		frappe.db.rollback()
		return frappe.get_all("Flow Run", filters={"template": template}, pluck="name")[0]

	def test_a_run_advanced_elsewhere_meanwhile_keeps_one_effect(self):
		name = self.race(conditional=True)
		self.assertEqual(store.load_run(name).status, "completed")
		self.assertEqual(len(todos_of(name)), 1, "the unlocked try's ToDo was rolled back")
		self.assertEqual(attempts_of(name), [("t", "completed")])

	def test_control_an_unconditional_first_save_doubles_the_effect_under_the_same_race(self):
		name = self.race(conditional=False)
		self.assertEqual(len(todos_of(name)), 2, "the race is real: only the condition prevents it")

	def test_a_failing_step_on_the_fast_path_is_redone_with_savepoints(self):
		steps = [
			CREATE_THEN_CLOSE[0],
			{
				"id": "u",
				"kind": "update_doc",
				"depends_on": ["t"],
				"payload": {"doctype": "ToDo", "name": "no such todo", "fields": {"status": "Closed"}},
			},
		]
		template = make_flow("fast failing", steps, event="after_insert").name
		with statements() as sent:
			new_test_doc(title="failing")
			frappe.db.commit()
		record = run_of(template)
		self.assertEqual(record.status, "failed")
		self.assertIn("does not exist", record.states["u"]["error"])
		self.assertEqual(
			[todo.status for todo in todos_of(record.name)], ["Open"], "step t's effect committed once"
		)
		self.assertEqual(attempts_of(record.name), [("t", "completed"), ("u", "failed")])
		self.assertTrue([s for s in sent if s.startswith("savepoint flow_engine_step")], "redone guarded")

	def test_a_pool_group_with_a_failing_step_is_redone_run_by_run(self):
		steps = [
			{
				"id": "t",
				"kind": "create_doc",
				"payload": {
					"doctype": "ToDo",
					"fields": {"description": "{{run.name}} fast [flowtest]", "status": "{{input.status}}"},
				},
			},
			CREATE_THEN_CLOSE[1],
		]
		template = make_flow("fast group", steps).name
		frappe.flags.flow_engine_inline = False
		names = [runs.start_run(template, input={"status": "Bogus" if i == 2 else "Open"}) for i in range(4)]
		frappe.db.commit()
		self.assertFalse(runs.advance_group(names, [], guarded_steps=False), "a failing step fails the group")
		frappe.db.rollback()
		self.assertEqual(todos_of(names[0]), [], "the group's work was rolled back whole")
		runs.advance_claimed(names, None)
		frappe.db.rollback()
		for index, name in enumerate(names):
			record = store.load_run(name)
			if index == 2:
				self.assertEqual(record.status, "failed")
				self.assertEqual(todos_of(name), [])
				self.assertEqual(attempts_of(name), [("t", "failed")])
			else:
				self.assertEqual(record.status, "completed", record.error)
				self.assertEqual([todo.status for todo in todos_of(name)], ["Closed"])
				self.assertEqual(attempts_of(name), [("t", "completed"), ("u", "completed")])

	def test_a_start_that_fails_without_a_savepoint_leaves_the_save_whole(self):
		template = make_flow("fast start fails", CREATE_THEN_CLOSE, event="after_insert").name
		self.assertIsNone(runs.start_savepoint(frappe._dict(max_concurrent_runs=0, dedupe_key="")))
		original = store.insert_row

		def broken_insert(doctype, values, name=None):
			frappe.db.sql("insert into `tabFlow Run` (name, no_such_column) values (%s, 1)", (name,))

		store.insert_row = broken_insert
		errors_before = frappe.db.count("Error Log")
		try:
			with statements() as sent:
				doc = new_test_doc(title="saved anyway")
			frappe.db.set_value(TEST_DOCTYPE, doc.name, "notes", "written after the failed start")
			frappe.db.commit()
		finally:
			store.insert_row = original
		self.assertEqual(
			frappe.db.get_value(TEST_DOCTYPE, doc.name, "notes"), "written after the failed start"
		)
		self.assertIsNone(run_of(template))
		self.assertGreater(frappe.db.count("Error Log"), errors_before)
		self.assertFalse([s for s in sent if s.startswith("savepoint")])

	def test_a_flow_with_controls_starts_behind_a_savepoint(self):
		self.assertEqual(
			runs.start_savepoint(frappe._dict(max_concurrent_runs=2, dedupe_key="")), "flow_engine_trigger"
		)
		self.assertEqual(
			runs.start_savepoint(frappe._dict(max_concurrent_runs=0, dedupe_key="{{doc.name}}")),
			"flow_engine_trigger",
		)

	def test_which_errors_lose_the_transaction(self):
		deadlock = frappe.QueryDeadlockError("deadlock")
		self.assertTrue(resilience.transaction_lost(deadlock))
		self.assertTrue(resilience.transaction_lost(pymysql.err.OperationalError(2013, "lost connection")))
		timeout = frappe.QueryTimeoutError("lock wait")
		timeout.__cause__ = pymysql.err.OperationalError(1205, "Lock wait timeout exceeded")
		self.assertFalse(resilience.transaction_lost(timeout), "a lock wait timeout undoes one statement")
		self.assertFalse(resilience.transaction_lost(pymysql.err.OperationalError(1054, "unknown column")))
		self.assertFalse(resilience.transaction_lost(ValueError("not the database")))

	def test_a_long_job_sees_a_flow_deactivated_elsewhere_within_a_second(self):
		template = make_flow("fast deactivated", CREATE_THEN_CLOSE, event="after_insert").name
		new_test_doc(title="before")
		frappe.db.commit()
		self.assertIsNotNone(run_of(template), "the map (with the flow's row) is now this job's")
		# another process deactivates the flow: the row changes and the map in Redis is dropped
		frappe.db.set_value("Flow Template", template, "is_active", 0)
		frappe.db.commit()
		frappe.cache.delete_value(triggers.CACHE_KEY)
		frappe.local.flags.flow_engine_trigger_map_at -= triggers.MAP_SECONDS + 0.1  # a second later
		new_test_doc(title="after")
		frappe.db.commit()
		self.assertEqual(len(frappe.get_all("Flow Run", filters={"template": template})), 1)
