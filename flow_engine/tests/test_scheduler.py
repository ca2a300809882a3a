import time

import frappe
from frappe.utils import add_to_date, now_datetime

from flow_engine.runtime import runs, scheduler, store
from flow_engine.tests.utils import FlowTestCase, make_flow, run_in_subprocess

COUNT = 60
WORKERS = 4


class TestScheduler(FlowTestCase):
	def _due_runs(self, name, count):
		template = make_flow(
			name,
			[
				{"id": "d", "kind": "wait", "trigger": {"type": "after_delay", "delay_minutes": 1}},
				{
					"id": "t",
					"kind": "create_doc",
					"depends_on": ["d"],
					"payload": {"doctype": "ToDo", "fields": {"description": "{{run.name}} [flowtest]"}},
				},
			],
		).name
		start = add_to_date(now_datetime(), minutes=-5)
		with self.freeze_time(start):
			names = [runs.start_run(template) for _ in range(count)]
			frappe.db.commit()
		return template, names

	def test_claims_are_atomic_and_exclusive(self):
		template, names = self._due_runs("claims", 10)
		ours = set(frappe.get_all("Flow Step Pending", filters={"run": ["in", names]}, pluck="name"))
		token_a, first = scheduler.claim_due(limit=6)
		token_b, second = scheduler.claim_due(limit=100000)
		self.assertEqual(len(first), 6)
		self.assertFalse({r.name for r in first} & {r.name for r in second})
		self.assertTrue(ours <= {r.name for r in first} | {r.name for r in second})
		scheduler.fire_batch([r.name for r in first], token_b)  # wrong token: fires nothing
		self.assertEqual(frappe.db.count("Flow Step Attempt", {"run": ["in", names], "step_id": "t"}), 0)
		scheduler.fire_batch([r.name for r in first], token_a)
		scheduler.fire_batch([r.name for r in second], token_b)
		self.assertEqual(frappe.db.count("Flow Run", {"template": template, "status": "completed"}), 10)

	def test_concurrent_ticks_in_several_processes_never_double_fire(self):
		template, names = self._due_runs("concurrent", COUNT)
		code = (
			"frappe.flags.flow_engine_inline = True\nfrom flow_engine.runtime import scheduler\n"
			"print(scheduler.drain_due(inline=True))\nfrappe.db.commit()\n"
		)
		procs = [run_in_subprocess(code, wait=False) for _ in range(WORKERS)]
		claimed = 0
		for proc in procs:
			out, err = proc.communicate(timeout=300)
			self.assertEqual(proc.returncode, 0, err[-3000:])
			claimed += int(out.strip().splitlines()[-1])
		frappe.db.rollback()
		self.assertGreaterEqual(claimed, COUNT, "every due row is claimed (other due rows may exist)")
		attempts = frappe.db.sql(
			"""select run, count(*) from `tabFlow Step Attempt` where step_id='t' and run in %s
			group by run""",
			(tuple(names),),
		)
		self.assertEqual(len(attempts), COUNT)
		self.assertTrue(all(count == 1 for _, count in attempts), "a step fired twice")
		todos = frappe.db.sql("""select count(*) from tabToDo where description like '%%[flowtest]%%'
			and description like 'FR-%%'""")[0][0]
		self.assertEqual(todos, COUNT)
		self.assertEqual(frappe.db.count("Flow Run", {"template": template, "status": "completed"}), COUNT)

	def test_a_group_of_rows_fires_in_one_transaction_and_a_bad_row_costs_only_itself(self):
		template, names = self._due_runs("group", 7)
		mine = frappe.get_all("Flow Step Pending", filters={"run": ["in", names]}, fields=["name", "run"])
		run_of = {row.name: row.run for row in mine}
		token, _claimed = scheduler.claim_due(limit=100000)
		first, rest = [row.name for row in mine[:4]], [row.name for row in mine[4:]]
		self.assertTrue(scheduler.fire_group(first, token, [], run_of), "a clean group commits as one")
		bad_run = run_of[rest[0]]
		frappe.db.set_value("Flow Run", bad_run, "template_version", 999)  # its definition is gone
		frappe.db.commit()
		scheduler.fire_batch(rest, token, run_of)
		frappe.db.rollback()
		attempts = dict(
			frappe.db.sql(
				"select run, count(*) from `tabFlow Step Attempt` where step_id='t' and run in %s group by run",
				(tuple(names),),
			)
		)
		self.assertEqual(sorted(attempts), sorted(set(names) - {bad_run}))
		self.assertTrue(all(count == 1 for count in attempts.values()), "a step fired twice")
		self.assertEqual(
			len(attempts), frappe.db.count("Flow Run", {"template": template, "status": "completed"})
		)
		bad_row = frappe.db.get_value("Flow Step Pending", rest[0], ["status", "last_error"], as_dict=True)
		self.assertEqual(bad_row.status, "pending", "a row whose firing failed goes back for the next claim")
		self.assertIn("firing failed", bad_row.last_error)
		self.assertEqual(frappe.db.get_value("Flow Run", bad_run, "infra_failures"), 1)

	def test_a_killed_workers_claim_is_reclaimed_after_the_lease(self):
		template, names = self._due_runs("killed", 3)
		code = (
			"from flow_engine.runtime import scheduler\ntoken, rows = scheduler.claim_due()\n"
			"print(len(rows), flush=True)\nimport time\ntime.sleep(120)\n"
		)
		proc = run_in_subprocess(code, wait=False)
		claimed = int(proc.stdout.readline().strip())
		proc.kill()
		proc.wait()
		self.assertGreaterEqual(claimed, 3)
		frappe.db.rollback()
		self.assertEqual(frappe.db.count("Flow Step Pending", {"run": ["in", names], "status": "running"}), 3)
		scheduler.tick()
		self.assertEqual(
			frappe.db.count("Flow Step Pending", {"run": ["in", names], "status": "running"}),
			3,
			"rows inside their lease are not taken again",
		)
		later = add_to_date(now_datetime(), seconds=scheduler.LEASE_SECONDS + 5)
		with self.freeze_time(later):
			result = scheduler.tick()
		self.assertGreaterEqual(result["reclaimed"], 3)
		self.assertGreaterEqual(result["claimed"], 3)
		self.assertEqual(frappe.db.count("Flow Run", {"template": template, "status": "completed"}), 3)
		rows = frappe.get_all(
			"Flow Step Pending", filters={"run": ["in", names]}, fields=["status", "claims", "attempts"]
		)
		self.assertTrue(all(row.status == "completed" and row.claims == 2 for row in rows), rows)
		self.assertTrue(all(row.attempts == 0 for row in rows), "lease reclaims are not step attempts")

	def test_backlog_is_not_capped(self):
		template, names = self._due_runs("backlog", scheduler.BATCH + 7)
		self.assertGreaterEqual(scheduler.drain_due(inline=True), scheduler.BATCH + 7)
		self.assertEqual(
			frappe.db.count("Flow Run", {"template": template, "status": "completed"}), len(names)
		)

	def test_retries_with_backoff_then_fail_visibly(self):
		template = make_flow(
			"retries",
			[
				{
					"id": "u",
					"kind": "update_doc",
					"retry": {"max_attempts": 3, "backoff_seconds": 10, "backoff_factor": 2},
					"payload": {"doctype": "ToDo", "name": "nope", "fields": {"status": "Closed"}},
				}
			],
			doctype=None,
		).name
		# a missing document is not transient; make it retryable to exercise the path
		from flow_engine.kinds import base

		original = base.StepCall.target

		def flaky(call, *args, **kwargs):
			raise base.StepFailed("backend busy", retryable=True)

		base.StepCall.target = flaky
		try:
			start = now_datetime()
			with self.freeze_time(start):
				name = runs.start_run(template)
				frappe.db.commit()
			record = store.load_run(name)
			self.assertEqual(record.states["u"]["status"], "scheduled")
			row = record.states["u"]["pending"]
			self.assertEqual(frappe.db.get_value("Flow Step Pending", row, "purpose"), "retry")
			with self.freeze_time(add_to_date(start, seconds=11)):
				scheduler.tick()
			record = store.load_run(name)
			self.assertEqual((record.states["u"]["status"], record.states["u"]["attempts"]), ("scheduled", 2))
			due = frappe.db.get_value("Flow Step Pending", row, "trigger_at")
			self.assertGreaterEqual((due - add_to_date(start, seconds=11)).total_seconds(), 19)
			with self.freeze_time(add_to_date(start, seconds=40)):
				scheduler.tick()
		finally:
			base.StepCall.target = original
		record = store.load_run(name)
		self.assertEqual(record.status, "failed")
		self.assertIn("after 3 attempts", record.error)
		pending = frappe.get_doc("Flow Step Pending", row)
		self.assertEqual(pending.status, "failed")
		self.assertIn("backend busy", pending.last_error)
		self.assertEqual(frappe.db.count("Flow Step Attempt", {"run": name}), 3)

	def _timer_jobs(self):
		from frappe.utils.background_jobs import get_queue

		return [
			job
			for job in get_queue("long").get_jobs()
			if job and (job.kwargs or {}).get("method") == "flow_engine.runtime.scheduler.timer_loop"
		]

	def _drop_timer_jobs(self):
		for job in self._timer_jobs():
			job.delete()

	def test_timer_is_queued_once_however_often_it_is_asked_for(self):
		template = make_flow(
			"timer once",
			[{"id": "d", "kind": "wait", "trigger": {"type": "after_delay", "delay_seconds": 30}}],
		).name
		self._drop_timer_jobs()
		frappe.cache.delete(frappe.cache.make_key(scheduler.TIMER_LOCK))
		runs.start_run(template)
		frappe.db.commit()  # advanced here (inline): its step is now due in 30 s
		frappe.flags.flow_engine_inline = False
		try:
			for _ in range(5):  # every scheduled step, every minute tick asks for the timer
				scheduler.ensure_timer()
			queued = self._timer_jobs()
			self.assertEqual(len(queued), 1, "one timer job waits in the queue, not one per request")
			self.assertEqual(queued[0].kwargs["kwargs"], {"slot": 0})
			scheduler.ensure_timer(slot=1, handover=True)  # a timer at the end of its life hands over
			self.assertEqual(len(self._timer_jobs()), 2)
		finally:
			frappe.flags.flow_engine_inline = True
			self._drop_timer_jobs()

	def test_timer_with_nothing_due_soon_lets_its_worker_go_at_once(self):
		frappe.cache.delete(frappe.cache.make_key(scheduler.TIMER_LOCK))
		started = time.monotonic()
		self.assertEqual(scheduler.timer_loop(seconds=30), 0)
		self.assertLess(time.monotonic() - started, 1.0)
		self.assertFalse(frappe.cache.exists(scheduler.TIMER_LOCK))

	def test_timer_fires_within_a_second(self):
		template = make_flow(
			"timer", [{"id": "d", "kind": "wait", "trigger": {"type": "after_delay", "delay_seconds": 1}}]
		).name
		name = runs.start_run(template)
		frappe.db.commit()
		frappe.cache.delete(frappe.cache.make_key(scheduler.TIMER_LOCK))  # no other timer holds the site
		started = time.monotonic()
		claimed = scheduler.timer_loop(seconds=6)
		self.assertGreaterEqual(claimed, 1)
		self.assertLess(time.monotonic() - started, 6.5)
		record = store.load_run(name)
		self.assertEqual(record.status, "completed")
		due = frappe.utils.get_datetime(record.states["d"]["due"])
		fired = frappe.db.get_value("Flow Step Pending", record.states["d"]["pending"], "executed_at")
		self.assertLess((fired - due).total_seconds(), 1.0)
