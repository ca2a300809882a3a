"""Recovery without chaos tooling: poison runs, a killed database connection, Redis away during a save,
and a failed run's retry that must bring back its timers and tokens."""

import os
import subprocess
import time

import frappe
import pymysql
from frappe.utils import add_to_date, get_bench_path, now_datetime

from flow_engine.runtime import leases, resilience, runs, scheduler, store
from flow_engine.tests.utils import FlowTestCase, make_flow, run_burst_worker


def other_connection():
	"""A second, independent connection to the site's database (a DBA's console)."""
	conf = frappe.conf
	return pymysql.connect(
		host=conf.db_host or "127.0.0.1",
		port=int(conf.db_port or 3306),
		user=conf.db_name,
		password=conf.db_password,
		database=conf.db_name,
	)


def redis(conf_name: str, action: str) -> None:
	"""Stop or start one of the bench's Redis servers for real."""
	bench = get_bench_path()
	config = os.path.join(bench, "config", conf_name)
	port = next(line.split()[1] for line in open(config) if line.startswith("port "))
	if action == "stop":
		subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], capture_output=True)
	else:
		subprocess.run(["redis-server", config, "--daemonize", "yes"], cwd=bench, capture_output=True)
	for _ in range(50):
		up = subprocess.run(["redis-cli", "-p", port, "ping"], capture_output=True, text=True).stdout.strip()
		if (up == "PONG") == (action == "start"):
			return
		time.sleep(0.1)
	raise AssertionError(f"redis on {port} did not {action}")


class TestRecovery(FlowTestCase):
	def test_a_killed_connection_is_reconnected_and_the_work_retried(self):
		mine = frappe.db.sql("select connection_id()")[0][0]
		console = other_connection()
		try:
			with console.cursor() as cursor:
				cursor.execute(f"kill connection {int(mine)}")
		finally:
			console.close()
		with self.assertRaises(Exception) as raised:
			frappe.db.sql("select 1")
		self.assertTrue(resilience.is_transient(raised.exception), repr(raised.exception))
		resilience.reset_connection()
		calls = []

		def work():
			calls.append(1)
			if len(calls) == 1:  # the first try meets a dropped connection, as after a restart
				killer = other_connection()
				with killer.cursor() as cursor:
					cursor.execute(f"kill connection {int(frappe.db.sql('select connection_id()')[0][0])}")
				killer.close()
			return frappe.db.sql("select 42")[0][0]

		self.assertEqual(resilience.retrying(work, sleep=lambda _s: None), 42)
		self.assertEqual(len(calls), 2)
		with self.assertRaises(ZeroDivisionError):  # other errors are not retried
			resilience.retrying(lambda: 1 / 0)

	def test_a_poison_run_is_retried_a_bounded_number_of_times_then_fails_once_visibly(self):
		template = make_flow(
			"poison", [{"id": "v", "kind": "set_variables", "payload": {"variables": {"a": "1"}}}]
		).name
		frappe.flags.flow_engine_inline = False
		name = runs.start_run(template)
		frappe.db.commit()
		frappe.local.flow_engine_to_advance = None
		# an engine-side fault: the run is pinned to a version that does not exist
		frappe.db.sql("update `tabFlow Run` set template_version=999 where name=%s", (name,))
		frappe.db.commit()
		logs_before = frappe.db.count("Error Log", {"method": ["like", f"%{name}%"]})
		for attempt in range(1, leases.MAX_INFRA_FAILURES + 1):
			# the failing one alerts here (inline) like any failed run
			frappe.flags.flow_engine_inline = attempt == leases.MAX_INFRA_FAILURES
			runs.advance_many([name])
			frappe.db.rollback()
			row = frappe.db.get_value(
				"Flow Run",
				name,
				["status", "infra_failures", "lease_until", "error", "last_infra_error"],
				as_dict=True,
			)
			if attempt < leases.MAX_INFRA_FAILURES:
				self.assertEqual((row.status, row.infra_failures), ("running", attempt))
				self.assertIn("no version 999", row.last_infra_error)
				self.assertGreater(row.lease_until, now_datetime(), "retried later, with backoff")
				self.assertEqual(frappe.db.count("Error Log", {"method": ["like", f"%{name}%"]}), logs_before)
		self.assertEqual(row.status, "failed")
		self.assertIn(f"failed {leases.MAX_INFRA_FAILURES} times", row.error)
		self.assertIn("no version 999", row.error)
		self.assertEqual(frappe.db.count("Error Log", {"method": ["like", f"%{name}%"]}), logs_before + 1)
		self.assertTrue(
			frappe.db.exists("Notification Log", {"document_name": name, "for_user": "Administrator"}),
			"the flow's owner is told",
		)

	def test_a_save_while_redis_is_away_succeeds_and_its_run_starts_once_redis_is_back(self):
		template = make_flow(
			"redis away",
			[{"id": "c", "kind": "comment", "payload": {"text": "seen [flowtest]"}}],
			doctype="ToDo",
			event="after_insert",
		).name
		frappe.flags.flow_engine_inline = False
		redis("redis_queue.conf", "stop")
		try:
			todo = frappe.get_doc(
				{"doctype": "ToDo", "description": "while redis is away [flowtest]"}
			).insert()
			frappe.db.commit()  # the save goes through; handing the run to a worker fails quietly
		finally:
			redis("redis_queue.conf", "start")
		run = frappe.db.get_value("Flow Run", {"template": template, "reference_name": todo.name}, "name")
		self.assertEqual(store.load_run(run).status, "running", "the run is durable and leased")
		with self.freeze_time(add_to_date(now_datetime(), seconds=leases.lease_seconds() + 1)):
			self.assertGreaterEqual(scheduler.tick()["recovered_runs"], 1)
		worker = run_burst_worker()
		self.assertEqual(worker.returncode, 0, worker.stderr[-2000:])
		frappe.db.rollback()
		self.assertEqual(store.load_run(run).status, "completed")
		self.assertEqual(
			frappe.db.count(
				"Comment", {"reference_name": todo.name, "content": ["like", "%seen [flowtest]%"]}
			),
			1,
		)

	def test_retry_brings_back_timers_and_tokens_and_a_fresh_retry_budget(self):
		frappe.conf.flow_engine_outbound_allow = ["127.0.0.1"]
		self.addCleanup(frappe.conf.pop, "flow_engine_outbound_allow", None)
		template = make_flow(
			"retry rearm",
			[
				{"id": "later", "kind": "wait", "trigger": {"type": "after_delay", "delay_minutes": 5}},
				{"id": "hook", "kind": "wait", "trigger": {"type": "on_webhook"}, "timeout": 3600},
				{
					"id": "boom",
					"kind": "webhook",
					"retry": {"max_attempts": 2, "backoff_seconds": 1},
					"payload": {"url": "http://127.0.0.1:9/closed", "method": "POST"},  # connection refused
				},
			],
			doctype=None,
		).name
		start = now_datetime()
		with self.freeze_time(start):
			name = runs.start_run(template)
			frappe.db.commit()
		self.assertEqual(store.load_run(name).states["boom"]["status"], "scheduled", "a retry waits")
		with self.freeze_time(add_to_date(start, seconds=5)):
			scheduler.tick()
		record = store.load_run(name)
		self.assertEqual(record.status, "failed", "the second attempt used the budget of 2")
		later_row, timeout_row = record.states["later"]["pending"], record.states["hook"]["timeout_row"]
		self.assertEqual(frappe.db.get_value("Flow Step Pending", later_row, "status"), "cancelled")
		self.assertEqual(frappe.db.get_value("Flow Step Pending", timeout_row, "status"), "cancelled")
		with self.freeze_time(add_to_date(start, seconds=10)):
			runs.retry_run(name)
			frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.states["later"]["status"], "scheduled")
		self.assertNotEqual(
			record.states["later"]["pending"], later_row, "a new timer replaces the cancelled one"
		)
		self.assertEqual(
			frappe.db.get_value("Flow Step Pending", record.states["later"]["pending"], "status"), "pending"
		)
		self.assertNotEqual(record.states["hook"]["timeout_row"], timeout_row)
		self.assertEqual(
			frappe.db.get_value("Flow Step Pending", record.states["hook"]["timeout_row"], "status"),
			"pending",
		)
		self.assertTrue(record.states["hook"].get("token"), "the parked step can still be completed")
		self.assertEqual(record.states["boom"]["attempts"], 3)
		self.assertEqual(
			record.states["boom"]["status"],
			"scheduled",
			"attempt 3 is the first of a fresh budget: it retries",
		)
		self.assertEqual(record.status, "waiting")
