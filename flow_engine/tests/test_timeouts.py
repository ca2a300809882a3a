"""Step timeouts for every kind (inline, external) and run deadlines (cancel, alert once)."""

import datetime
import tempfile
import time

import frappe

from flow_engine.kinds import registry
from flow_engine.runtime import clock, deadlines, runs, scheduler, store
from flow_engine.tests import custom_kinds
from flow_engine.tests.test_concurrency import BARRIER
from flow_engine.tests.test_webhook import Receiver
from flow_engine.tests.utils import PREFIX, FlowTestCase, ensure_user, make_flow, run_in_subprocess

SUBSCRIBER = "flow-deadline-subscriber@example.com"


def use_test_kinds() -> None:
	"""Register the kinds of custom_kinds the way the flow_engine_kinds hook would, for this site."""
	catalog, handlers = registry._load()
	for spec, handler in custom_kinds.KINDS:
		catalog.add(spec)
		handlers[spec.name] = handler
	frappe.local.flow_engine_kinds = (catalog, handlers)


def slow(step_id, seconds, marker, **extra):
	return {
		"id": step_id,
		"kind": "slow_todo",
		"payload": {"description": f"{marker} [flowtest]", "seconds": seconds},
		**extra,
	}


def todos(marker) -> list[str]:
	return frappe.get_all("ToDo", filters={"description": ["like", f"{marker}%"]}, pluck="name")


def attempts(run, step_id) -> list:
	return frappe.get_all(
		"Flow Step Attempt",
		filters={"run": run, "step_id": step_id},
		fields=["attempt", "status", "error"],
		order_by="attempt asc",
	)


def forget_run_notes() -> None:
	"""Comments and notifications about the test flows' runs go with the runs (utils.cleanup)."""
	frappe.db.rollback()
	names = frappe.get_all("Flow Run", filters={"template": ["like", PREFIX + "%"]}, pluck="name")
	if names:
		frappe.db.delete("Comment", {"reference_doctype": "Flow Run", "reference_name": ["in", names]})
		frappe.db.delete("Notification Log", {"document_type": "Flow Run", "document_name": ["in", names]})
	frappe.db.commit()


class TestStepTimeouts(FlowTestCase):
	def setUp(self):
		super().setUp()
		use_test_kinds()

	def tearDown(self):
		frappe.conf.pop(deadlines.CONFIG_KEY, None)
		frappe.conf.pop("flow_engine_outbound_allow", None)
		frappe.local.flow_engine_kinds = None
		forget_run_notes()
		super().tearDown()

	def test_an_inline_step_past_its_timeout_fails_and_its_write_is_rolled_back(self):
		template = make_flow(
			"slow inline",
			[
				{
					"id": "first",
					"kind": "create_doc",
					"payload": {"doctype": "ToDo", "fields": {"description": "kept first [flowtest]"}},
				},
				slow("slow", 0.8, "slow-once", depends_on=["first"], timeout=0.3),
				slow("never", 0, "never-runs", depends_on=["slow"]),
			],
			doctype=None,
		).name
		name = runs.start_run(template)
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "failed")
		self.assertEqual(record.states["slow"]["status"], "failed")
		self.assertNotIn("never", record.states)
		for part in (f"Flow '{template}'", "step 'slow'", "past its timeout of 0.3s", "rolled back"):
			self.assertIn(part, record.error)
		self.assertEqual(todos("slow-once"), [])  # the slow step's write was undone
		self.assertEqual(todos("never-runs"), [])
		self.assertTrue(frappe.db.exists("ToDo", record.states["first"]["result"]["name"]))  # kept
		self.assertEqual([row.status for row in attempts(name, "slow")], ["failed"])

	def test_an_inline_step_within_its_timeout_completes(self):
		template = make_flow("quick inline", [slow("slow", 0.05, "quick-one", timeout=5)], doctype=None).name
		name = runs.start_run(template)
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(todos("quick-one"), [record.states["slow"]["result"]["todo"]])

	def test_a_timed_out_step_is_retried_per_its_policy_then_fails(self):
		template = make_flow(
			"slow retried",
			[slow("slow", 0.6, "slow-retried", timeout=0.2, retry={"max_attempts": 2, "backoff_seconds": 0})],
			doctype=None,
		).name
		name = runs.start_run(template)
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.states["slow"]["status"], "scheduled")  # a timeout is worth another try
		self.assertIn("past its timeout of 0.2s", record.states["slow"]["error"])
		self.assertEqual(todos("slow-retried"), [])
		scheduler.tick()  # the retry is due at once (backoff 0)
		record = store.load_run(name)
		self.assertEqual(record.status, "failed")
		self.assertIn("Step 'slow' failed after 2 attempts", record.error)
		self.assertIn("past its timeout of 0.2s", record.error)
		self.assertEqual([row.status for row in attempts(name, "slow")], ["retrying", "failed"])
		self.assertEqual(todos("slow-retried"), [])  # neither attempt left its ToDo behind

	def test_the_site_default_applies_to_steps_without_a_timeout(self):
		frappe.conf[deadlines.CONFIG_KEY] = 0.3
		template = make_flow("slow default", [slow("slow", 0.7, "slow-default")], doctype=None).name
		name = runs.start_run(template)
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "failed")
		self.assertIn(f"the site's default step timeout ({deadlines.CONFIG_KEY}) of 0.3s", record.error)
		self.assertEqual(todos("slow-default"), [])
		frappe.conf[deadlines.CONFIG_KEY] = 0  # off
		name = runs.start_run(template)
		frappe.db.commit()
		self.assertEqual(store.load_run(name).status, "completed")
		self.assertEqual(len(todos("slow-default")), 1)

	def test_a_webhook_step_times_out_at_the_step_timeout(self):
		frappe.conf.flow_engine_outbound_allow = ["127.0.0.1"]
		with Receiver([200, 200], delay=3) as receiver:
			template = make_flow(
				"hook step timeout",
				[
					{
						"id": "call",
						"kind": "webhook",
						"timeout": 1,
						"retry": {"max_attempts": 1},
						# the payload asks for longer: the step's timeout still bounds the call
						"payload": {"url": receiver.url, "method": "POST", "body": {"a": 1}, "timeout": 20},
					}
				],
				doctype=None,
			).name
			began = time.monotonic()
			name = runs.start_run(template)
			frappe.db.commit()
			took = time.monotonic() - began
		record = store.load_run(name)
		self.assertEqual(record.status, "failed")
		self.assertIn("within 1s", record.error)
		self.assertLess(took, 2.5)
		self.assertEqual(len(receiver.requests), 1)


class TestRunDeadlines(FlowTestCase):
	def setUp(self):
		super().setUp()
		ensure_user(SUBSCRIBER, ["Flow Manager"])

	def tearDown(self):
		forget_run_notes()
		super().tearDown()

	def _waiting_flow(self, name, days=None, action=None, **extra):
		values = {"run_deadline_days": days, "run_deadline_action": action} if days else {}
		return make_flow(
			name,
			[{"id": "approve", "kind": "wait", "trigger": {"type": "manual"}}],
			doctype=None,
			**values,
			**extra,
		).name

	def _past_deadline(self, run):
		frappe.db.set_value(
			"Flow Run", run, "deadline_at", clock.now() - datetime.timedelta(minutes=1), update_modified=False
		)
		frappe.db.commit()

	def test_a_run_gets_its_deadline_when_it_starts(self):
		template = self._waiting_flow("deadline set", days=2.5, action="alert")
		name = runs.start_run(template)
		frappe.db.commit()
		started, deadline = frappe.db.get_value("Flow Run", name, ["started_at", "deadline_at"])
		self.assertEqual(deadline - started, datetime.timedelta(days=2.5))
		plain = runs.start_run(self._waiting_flow("no deadline"))
		frappe.db.commit()
		self.assertIsNone(frappe.db.get_value("Flow Run", plain, "deadline_at"))

	def test_a_run_past_its_deadline_is_cancelled_by_the_tick(self):
		template = self._waiting_flow("deadline cancel", days=1, action="cancel")
		late, on_time = runs.start_run(template), runs.start_run(template)
		frappe.db.commit()
		self.assertEqual(store.load_run(late).status, "waiting")
		self._past_deadline(late)
		scheduler.tick()
		record = store.load_run(late)
		self.assertEqual(record.status, "cancelled")
		self.assertEqual(record.states["approve"]["status"], "cancelled")
		self.assertIn("passed its deadline", record.error)
		self.assertIn(f"Flow '{template}' gives a run 1 days", record.error)
		self.assertEqual(store.load_run(on_time).status, "waiting")  # its deadline is a day away
		with self.assertRaises(runs.FlowRunError):  # it is over: nothing completes it any more
			runs.complete_step(late, "approve")

	def test_a_run_past_its_deadline_is_alerted_on_once(self):
		template = self._waiting_flow(
			"deadline alert", days=3, action="alert", subscribers=[{"user": SUBSCRIBER}]
		)
		name = runs.start_run(template)
		frappe.db.commit()
		self._past_deadline(name)
		scheduler.tick()
		record = store.load_run(name)
		self.assertEqual(record.status, "waiting")  # an alert does not stop the run
		self.assertTrue(frappe.db.get_value("Flow Run", name, "deadline_alerted"))
		comments = frappe.get_all(
			"Comment", filters={"reference_doctype": "Flow Run", "reference_name": name}, pluck="content"
		)
		self.assertEqual(len(comments), 1)
		self.assertIn("passed its deadline", comments[0])
		logs = frappe.get_all(
			"Notification Log",
			filters={"document_type": "Flow Run", "document_name": name},
			pluck="for_user",
		)
		owner = frappe.db.get_value("Flow Template", template, "owner")
		self.assertEqual(sorted(logs), sorted([owner, SUBSCRIBER]))
		scheduler.tick()  # later ticks do not alert again
		deadlines.enforce()
		self.assertEqual(
			frappe.db.count("Comment", {"reference_doctype": "Flow Run", "reference_name": name}), 1
		)
		self.assertEqual(
			frappe.db.count("Notification Log", {"document_type": "Flow Run", "document_name": name}), 2
		)
		runs.complete_step(name, "approve")  # the run can still finish
		frappe.db.commit()
		self.assertEqual(store.load_run(name).status, "completed")

	def test_overlapping_ticks_alert_once(self):
		template = self._waiting_flow("deadline alert race", days=1, action="alert")
		name = runs.start_run(template)
		frappe.db.commit()
		self._past_deadline(name)
		folder = tempfile.mkdtemp(prefix="flow-barrier-")
		code = (
			f"BARRIER_DIR = {folder!r}\n" + BARRIER + "from flow_engine.runtime import deadlines\n"
			f"rows = [row for row in deadlines.overdue() if row.name == {name!r}]\n"
			"frappe.db.commit()\n"
			"barrier('read', 2, 20)  # both saw the run not alerted yet\n"
			"print(deadlines._enforce_one(rows[0], None) if rows else 'not overdue')\n"
		)
		procs = [run_in_subprocess(code, wait=False) for _ in range(2)]
		outputs = []
		for proc in procs:
			out, err = proc.communicate(timeout=120)
			self.assertEqual(proc.returncode, 0, err[-3000:])
			outputs.append(out.strip().splitlines()[-1])
		self.assertEqual(sorted(outputs), ["None", "alerted"])
		self.assertEqual(
			frappe.db.count("Comment", {"reference_doctype": "Flow Run", "reference_name": name}), 1
		)

	def test_ended_runs_are_left_alone(self):
		template = self._waiting_flow("deadline ended", days=1, action="cancel")
		name = runs.start_run(template)
		frappe.db.commit()
		runs.complete_step(name, "approve")
		frappe.db.commit()
		self._past_deadline(name)
		self.assertNotIn(name, [row.name for row in deadlines.overdue()])
		scheduler.tick()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed")
		self.assertIsNone(record.error)
