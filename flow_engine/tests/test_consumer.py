"""The long-lived consumer (`bench flow consume`, runtime/consumer.py): woken after a trigger's commit,
it advances the run without a worker job; without one the dispatcher queues pool jobs as before."""

import time

import frappe

from flow_engine.runtime import consumer, jobs, runs
from flow_engine.tests.utils import FlowTestCase, make_flow, run_in_subprocess

TODO = [
	{
		"id": "t",
		"kind": "create_doc",
		"payload": {"doctype": "ToDo", "fields": {"description": "{{run.name}} [flowtest consumer]"}},
	}
]


def _serve(seconds: float, sites: list[str]):
	code = (
		"from flow_engine.runtime import consumer\n"
		f"print('served', consumer.serve({sites!r}, lifetime={seconds}))\n"
	)
	return run_in_subprocess(code, wait=False)


def _wait_alive(expected: bool, seconds: float = 15) -> bool:
	deadline = time.monotonic() + seconds
	while time.monotonic() < deadline:
		if consumer.alive(fresh=True) == expected:
			return True
		time.sleep(0.1)
	return False


def _preflight(name: str) -> dict:
	from flow_engine.runtime.health import checks

	return {row["name"]: row for row in checks()}[name]


def _drop_pool_jobs() -> None:
	"""Pool jobs this test queued: removed from RQ so no later worker advances stale runs."""
	from frappe.utils.background_jobs import get_job

	for member in frappe.cache.smembers(jobs.POOL_QUEUED):
		job = get_job(member.decode() if isinstance(member, bytes) else member)
		if job is not None:
			job.delete()
	frappe.cache.delete_key(jobs.POOL_QUEUED)


class TestConsumer(FlowTestCase):
	def setUp(self):
		super().setUp()
		frappe.flags.flow_engine_inline = False  # the dispatcher's real path: a consumer or the workers

	def tearDown(self):
		frappe.flags.flow_engine_inline = False
		_drop_pool_jobs()
		super().tearDown()

	def test_a_woken_consumer_advances_the_run_without_a_worker_job(self):
		template = make_flow("consumer takes", TODO).name
		process = _serve(8, [frappe.local.site])
		try:
			self.assertTrue(_wait_alive(True), "the consumer's heartbeat never appeared")
			self.assertEqual(_preflight("consumer")["level"], "ok")
			consumer.wake("no-such-site.localhost")  # a bad batch first: the consumer goes on
			frappe.db.commit()
			run = runs.start_run(template)
			frappe.db.commit()
			started = time.monotonic()
			status = None
			while time.monotonic() - started < 6 and status != "completed":
				time.sleep(0.05)
				frappe.db.rollback()
				status = frappe.db.get_value("Flow Run", run, "status")
			self.assertEqual(status, "completed", "the consumer did not advance the run")
			self.assertEqual(jobs.jobs_queued(jobs.POOL_JOBS), 0, "a pool job was queued beside the consumer")
			self.assertTrue(frappe.db.exists("ToDo", {"description": f"{run} [flowtest consumer]"}))
		finally:
			out, err = process.communicate(timeout=60)
		self.assertEqual(process.returncode, 0, err[-3000:])
		self.assertGreaterEqual(int(out.split("served")[-1]), 1)
		self.assertTrue(_wait_alive(False), "a consumer that stopped leaves no heartbeat")

	def test_without_a_consumer_the_dispatcher_queues_a_pool_job(self):
		self.assertTrue(_wait_alive(False), "no consumer may run during this test")
		self.assertEqual(_preflight("consumer")["level"], "warn")
		self.assertIn("bench flow consume", _preflight("consumer")["detail"])
		template = make_flow("no consumer", TODO).name
		_drop_pool_jobs()
		run = runs.start_run(template)
		frappe.db.commit()
		self.assertGreaterEqual(jobs.jobs_queued(jobs.POOL_JOBS), 1)
		self.assertEqual(frappe.db.get_value("Flow Run", run, "lease_owner"), jobs.POOL)
		_drop_pool_jobs()
		runs.advance(run)
		self.assertEqual(frappe.db.get_value("Flow Run", run, "status"), "completed")
