"""Chaos: real RQ workers, one killed with SIGKILL mid-batch, their database connections killed
while they advance runs. Every run must complete, each in-ERP effect exactly once, within a bound."""

import os
import signal
import subprocess
import sys
import time

import frappe
from frappe.utils.background_jobs import get_queue

from flow_engine.runtime import leases, runs, scheduler
from flow_engine.tests.utils import FlowTestCase, make_flow, new_test_doc

RUNS = 90
BOUND_SECONDS = 150  # from the last injected fault to the last run completed


def start_worker() -> subprocess.Popen:
	return subprocess.Popen(
		[sys.executable, "-m", "frappe.utils.bench_helper", "frappe", "worker", "--queue", "default,long"],
		cwd=frappe.local.sites_path,
		stdout=subprocess.DEVNULL,
		stderr=subprocess.DEVNULL,
		start_new_session=True,  # its own process group: SIGKILL takes the work horse down with it
	)


def kill_worker_connections() -> int:
	"""KILL CONNECTION every other connection to this site's database (the workers' ones)."""
	ids = frappe.db.sql_list(
		"""select id from information_schema.processlist where db=%s and id != connection_id()""",
		(frappe.conf.db_name,),
	)
	killed = 0
	for connection_id in ids:
		try:
			frappe.db.sql(f"kill connection {int(connection_id)}")
			killed += 1
		except Exception:
			pass  # it ended by itself meanwhile
	return killed


class TestChaos(FlowTestCase):
	def setUp(self):
		super().setUp()
		frappe.flags.flow_engine_inline = False
		self.workers = []

	def tearDown(self):
		for worker in self.workers:
			if worker.poll() is None:
				os.killpg(worker.pid, signal.SIGTERM)
				try:
					worker.wait(timeout=20)
				except subprocess.TimeoutExpired:
					os.killpg(worker.pid, signal.SIGKILL)
		super().tearDown()

	def test_killed_worker_and_killed_connections_lose_nothing_and_double_nothing(self):
		template = make_flow(
			"chaos",
			[
				{
					"id": "make",
					"kind": "create_doc",
					"payload": {"doctype": "ToDo", "fields": {"description": "{{run.name}} [flowtest]"}},
				},
				{
					"id": "pause",
					"kind": "wait",
					"depends_on": ["make"],
					"trigger": {"type": "after_delay", "delay_seconds": 2},
				},
				{
					"id": "close",
					"kind": "update_doc",
					"depends_on": ["pause"],
					"payload": {
						"doctype": "ToDo",
						"name": "{{steps.make.result.name}}",
						"fields": {"status": "Closed"},
					},
				},
			],
			event="after_insert",
		).name
		self.workers = [start_worker(), start_worker()]
		time.sleep(3)  # let them register

		killed_connections = 0
		for index in range(RUNS):
			new_test_doc(title=f"chaos {index}")
			if index % 5 == 4:
				frappe.db.commit()  # a job of a few runs per commit, as users save
			if index == RUNS // 3:
				os.killpg(self.workers[0].pid, signal.SIGKILL)  # mid-batch: work horse and all
			if RUNS // 3 < index and index % 10 == 0:
				frappe.db.commit()
				killed_connections += kill_worker_connections()
		frappe.db.commit()
		for _round in range(6):  # the database drops the workers a few more times while they work
			time.sleep(0.5)
			killed_connections += kill_worker_connections()
		faults_over = time.monotonic()
		self.assertGreater(killed_connections, 0, "the chaos reached the workers")

		last_tick = time.monotonic()
		while time.monotonic() - faults_over < BOUND_SECONDS:
			frappe.db.rollback()
			done = frappe.db.count("Flow Run", {"template": template, "status": "completed"})
			if done == RUNS:
				break
			if time.monotonic() - last_tick >= 60:  # what `bench schedule` does once a minute
				scheduler.tick()
				last_tick = time.monotonic()
			time.sleep(1)
		recovered_in = time.monotonic() - faults_over
		frappe.db.rollback()
		statuses = frappe.db.sql(
			"select status, count(*) from `tabFlow Run` where template=%s group by status", (template,)
		)
		stuck = frappe.db.sql(
			"""select name, status, lease_owner, lease_until, infra_failures, last_infra_error, step_state
			from `tabFlow Run` where template=%s and status != 'completed' limit 5""",
			(template,),
			as_dict=True,
		)
		self.assertEqual(dict(statuses), {"completed": RUNS}, f"after {recovered_in:.0f}s: {stuck}")
		effects = frappe.db.sql(
			"""select count(*), sum(status='Closed'), count(distinct description) from tabToDo
			where description like 'FR-%%[flowtest]'"""
		)[0]
		self.assertEqual(int(effects[0]), RUNS, "one ToDo per run: none lost, none doubled")
		self.assertEqual(int(effects[1]), RUNS, "each closed")
		self.assertEqual(int(effects[2]), RUNS)
		doubled = frappe.db.sql(
			"""select run, step_id, count(*) c from `tabFlow Step Attempt` where status='completed'
			and run in (select name from `tabFlow Run` where template=%s) group by run, step_id having c > 1""",
			(template,),
		)
		self.assertEqual(doubled, (), "no step completed twice")
		self.assertEqual(
			frappe.db.count("Flow Run", {"template": template, "lease_until": ["is", "set"]}),
			0,
			"finished runs hold no lease",
		)
		print(f"chaos: {RUNS} runs completed {recovered_in:.1f}s after the last fault")

	def test_a_run_whose_job_never_ran_is_recovered_after_its_lease(self):
		template = make_flow(
			"lost job", [{"id": "v", "kind": "set_variables", "payload": {"variables": {"x": "1"}}}]
		).name
		name = runs.start_run(template)
		frappe.local.flow_engine_to_advance = None  # the job is lost: nothing goes out at commit
		frappe.db.after_commit.reset()
		frappe.db.commit()
		self.assertEqual(leases.recover(), 0, "inside its lease nothing is taken")
		later = frappe.utils.add_to_date(frappe.utils.now_datetime(), seconds=leases.lease_seconds() + 1)
		frappe.flags.flow_engine_inline = True
		with self.freeze_time(later):
			self.assertEqual(leases.recover(), 1)
		frappe.db.rollback()
		row = frappe.db.get_value(
			"Flow Run", name, ["status", "infra_failures", "lease_until", "error"], as_dict=True
		)
		self.assertEqual(row.status, "completed", row.error)
		self.assertEqual(row.infra_failures, 0, "a job that never ran is not the run's fault")
		self.assertIsNone(row.lease_until)

	def test_a_timer_killed_with_its_worker_is_replaced_at_once(self):
		template = make_flow(
			"timer killed",
			[{"id": "d", "kind": "wait", "trigger": {"type": "after_delay", "delay_seconds": 40}}],
		).name
		frappe.flags.flow_engine_inline = True
		runs.start_run(template)
		frappe.db.commit()
		frappe.flags.flow_engine_inline = False
		frappe.cache.delete(frappe.cache.make_key(scheduler.TIMER_LOCK))
		scheduler.ensure_timer()  # a step is due within the horizon: a timer job is queued
		self.workers = [start_worker()]
		for _ in range(100):  # the worker takes the timer job, which holds the lock while it waits
			if frappe.cache.exists(scheduler.TIMER_LOCK):
				break
			time.sleep(0.1)
		self.assertTrue(frappe.cache.exists(scheduler.TIMER_LOCK), "a timer runs")
		os.killpg(self.workers[0].pid, signal.SIGKILL)
		self.workers[0].wait()
		self.assertTrue(frappe.cache.exists(scheduler.TIMER_LOCK), "its lock outlives it")
		scheduler.ensure_timer()
		queued = [
			job
			for job in get_queue("long").get_jobs()
			if job and (job.kwargs or {}).get("method") == "flow_engine.runtime.scheduler.timer_loop"
		]
		self.assertEqual(len(queued), 1, "a successor is queued at once, not after the lock's TTL")
		for job in queued:
			job.delete()
