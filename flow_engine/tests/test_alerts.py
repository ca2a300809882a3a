"""Alerts when a run fails: Desk notifications, the throttled email digest, the error flow."""

from __future__ import annotations

import datetime
import quopri
import time

import frappe

from flow_engine.runtime import alerts, clock, runs, scheduler, store
from flow_engine.runtime.templates import FlowValidationError
from flow_engine.tests.utils import PREFIX, FlowTestCase, ensure_user, make_flow, run_burst_worker, run_of

OWNER = "alerts-owner@example.com"
SUBSCRIBER = "alerts-subscriber@example.com"
DISABLED = "alerts-disabled@example.com"
NO_ACCESS = "alerts-noaccess@example.com"


def failing_step(step_id: str = "bad") -> dict:
	"""A step that fails at once (a ToDo status that does not exist), without retries."""
	return {
		"id": step_id,
		"kind": "create_doc",
		"payload": {"doctype": "ToDo", "fields": {"description": "bad [flowtest]", "status": "Nonsense"}},
	}


def recording_step() -> dict:
	return {
		"id": "record",
		"kind": "create_doc",
		"payload": {"doctype": "ToDo", "fields": {"description": "{{input.failed_run}} [flowtest]"}},
	}


class TestAlerts(FlowTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_user(OWNER, ["Flow Manager"])
		ensure_user(SUBSCRIBER, ["Flow Manager"])
		ensure_user(DISABLED, ["Flow Manager"], enabled=0)
		ensure_user(NO_ACCESS, ["Blogger"])

	def setUp(self):
		super().setUp()
		self.clear_alerts()

	def tearDown(self):
		self.clear_alerts()
		super().tearDown()

	def clear_alerts(self):
		frappe.db.rollback()
		frappe.db.delete("Notification Log", {"for_user": ["in", [OWNER, SUBSCRIBER, DISABLED, NO_ACCESS]]})
		queued = frappe.get_all(
			"Email Queue",
			filters={"reference_doctype": "Flow Template", "reference_name": ["like", PREFIX + "%"]},
			pluck="name",
		)
		if queued:
			frappe.db.delete("Email Queue Recipient", {"parent": ["in", queued]})
			frappe.db.delete("Email Queue", {"name": ["in", queued]})
		frappe.db.commit()
		for member in alerts._raw("smembers", alerts._key(alerts.DIGEST_FLOWS)):
			flow = member.decode() if isinstance(member, bytes) else member
			if flow.startswith(PREFIX):
				alerts._take(flow)

	def alerting_flow(self, name: str, steps: list | None = None, **extra) -> str:
		template = make_flow(
			name,
			steps or [failing_step()],
			doctype=None,
			subscribers=[{"user": SUBSCRIBER}, {"user": DISABLED}, {"user": NO_ACCESS}],
			**extra,
		).name
		frappe.db.set_value("Flow Template", template, "owner", OWNER, update_modified=False)
		frappe.db.commit()
		return template

	def fail_once(self, template: str) -> str:
		name = runs.start_run(template)
		frappe.db.commit()
		self.assertEqual(store.load_run(name).status, "failed")
		return name

	def notified(self, run: str) -> list[str]:
		return sorted(
			frappe.get_all(
				"Notification Log",
				filters={"document_type": "Flow Run", "document_name": run, "type": "Alert"},
				pluck="for_user",
			)
		)

	def digests(self, template: str) -> list[frappe._dict]:
		mails = frappe.get_all(
			"Email Queue",
			filters={"reference_doctype": "Flow Template", "reference_name": template},
			fields=["name", "message"],
			order_by="creation asc",
		)
		for mail in mails:
			# the stored message is quoted-printable: soft line breaks may split a link
			mail.message = quopri.decodestring(mail.message.encode()).decode("utf-8", "replace")
			mail.recipients = sorted(
				frappe.get_all("Email Queue Recipient", filters={"parent": mail.name}, pluck="recipient")
			)
		return mails

	def close_window(self, template: str) -> None:
		"""Pretend the flow's digest window opened one interval (and a minute) ago."""
		opened = alerts.window_opened(template)
		self.assertIsNotNone(opened, "a failure opened a digest window")
		moved = opened - datetime.timedelta(minutes=alerts.digest_minutes() + 1)
		alerts._raw("set", alerts.window_key(template), moved.isoformat(sep=" "))

	def test_failure_notifies_owner_and_subscribers_in_desk(self):
		template = self.alerting_flow("alert desk")
		run = self.fail_once(template)
		self.assertEqual(
			self.notified(run), [OWNER, SUBSCRIBER], "not the disabled one, not one without access"
		)
		log = frappe.get_all(
			"Notification Log",
			filters={"document_name": run, "for_user": OWNER},
			fields=["subject", "document_type", "type"],
		)[0]
		self.assertEqual((log.document_type, log.type), ("Flow Run", "Alert"))
		self.assertIn(template, log.subject)
		self.assertIn("bad", log.subject)
		self.assertIn("Nonsense", log.subject)

	def test_a_completed_or_rolled_back_failure_notifies_nobody(self):
		template = self.alerting_flow("alert quiet", [recording_step()])
		run = runs.start_run(template)
		frappe.db.commit()
		self.assertEqual(store.load_run(run).status, "completed")
		self.assertEqual(self.notified(run), [])
		self.assertEqual(alerts.pending(template), [])

	def test_a_retried_run_that_fails_again_alerts_again(self):
		template = self.alerting_flow("alert retry")
		run = self.fail_once(template)
		self.assertEqual(len(self.notified(run)), 2)
		runs.retry_run(run)
		frappe.db.commit()
		self.assertEqual(store.load_run(run).status, "failed")
		self.assertEqual(len(self.notified(run)), 4, "each failure alerts once")
		self.assertEqual([item["failed_run"] for item in alerts.pending(template)], [run, run])

	def test_one_digest_per_interval_lists_every_failure(self):
		template = self.alerting_flow("alert digest")
		first, second = self.fail_once(template), self.fail_once(template)
		self.assertEqual(alerts.flush_digests(), 0, "the interval has not passed")
		self.assertEqual(self.digests(template), [])
		self.close_window(template)
		self.assertEqual(alerts.flush_digests(), 1)
		mails = self.digests(template)
		self.assertEqual(len(mails), 1, "two failures in one interval: one email")
		self.assertEqual(mails[0].recipients, [OWNER, SUBSCRIBER])
		for run in (first, second):
			self.assertIn(run, mails[0].message)
			self.assertIn(f"/app/flow-run/{run}", mails[0].message)
		self.assertIn("Nonsense", mails[0].message)

		third = self.fail_once(template)
		self.assertEqual(alerts.flush_digests(), 0, "a new window opened with the third failure")
		self.assertEqual(len(self.digests(template)), 1)
		self.close_window(template)
		self.assertEqual(scheduler.tick()["alert_digests"], 1, "the minute tick sends due digests")
		mails = self.digests(template)
		self.assertEqual(len(mails), 2)
		self.assertIn(third, mails[1].message)
		self.assertNotIn(first, mails[1].message)
		self.assertEqual(alerts.flush_digests(), 0, "nothing is sent twice")

	def test_the_error_flow_starts_with_the_failed_runs_details(self):
		handler = make_flow("alert handler", [recording_step()], doctype=None).name
		template = self.alerting_flow("alert with handler", error_flow=handler)
		run = self.fail_once(template)
		failed = store.load_run(run)
		handled = run_of(handler)
		self.assertIsNotNone(handled, "the error flow started")
		self.assertEqual((handled.source, handled.parent_run), ("error_flow", run))
		self.assertEqual(handled.status, "completed", handled.error)
		self.assertEqual(
			handled.input,
			{
				"failed_run": run,
				"flow": template,
				"step": "bad",
				"error": failed.error,
				"reference_doctype": None,
				"reference_name": None,
				"customer": None,
				"failed_at": failed.completed_at.isoformat(sep=" ", timespec="seconds"),
			},
		)
		self.assertTrue(frappe.db.exists("ToDo", {"description": f"{run} [flowtest]"}))

	def test_a_failing_error_flow_starts_no_error_flow(self):
		last = make_flow("alert last resort", [recording_step()], doctype=None).name
		handler = self.alerting_flow("alert failing handler", error_flow=last)
		template = self.alerting_flow("alert chained", error_flow=handler)
		run = self.fail_once(template)
		handled = run_of(handler)
		self.assertEqual((handled.source, handled.status), ("error_flow", "failed"))
		self.assertEqual(self.notified(handled.name), [OWNER, SUBSCRIBER], "its failure still alerts")
		self.assertIsNone(run_of(last), "a run started as an error flow starts no error flow")
		# the same flow failing on its own does start its error flow: the guard is the run's source
		direct = self.fail_once(handler)
		self.assertEqual(run_of(last).parent_run, direct)
		self.assertEqual(run_of(last).input["failed_run"], direct)
		self.assertNotEqual(run, direct)

	def test_alerts_run_in_a_worker_after_the_failure_commits(self):
		frappe.flags.flow_engine_inline = False
		handler = make_flow("alert worker handler", [recording_step()], doctype=None).name
		template = self.alerting_flow("alert worker", error_flow=handler)
		run = runs.start_run(template)
		frappe.db.commit()
		self.assertEqual(store.load_run(run).status, "running", "the run waits for a worker")
		for _round in range(20):  # other sites' burst workers share the queue and may hold our jobs a while
			result = run_burst_worker()
			self.assertEqual(result.returncode, 0, result.stderr[-2000:])
			frappe.db.rollback()
			handled = run_of(handler)
			if handled is not None and handled.is_terminal and len(self.notified(run)) == 2:
				break
			time.sleep(0.5)
		self.assertEqual(store.load_run(run).status, "failed")
		self.assertEqual(self.notified(run), [OWNER, SUBSCRIBER])
		self.assertEqual([item["failed_run"] for item in alerts.pending(template)], [run])
		handled = run_of(handler)
		self.assertEqual(
			(handled.source, handled.parent_run, handled.status), ("error_flow", run, "completed")
		)

	def test_a_flow_cannot_be_its_own_error_flow(self):
		template = frappe.get_doc("Flow Template", self.alerting_flow("alert self"))
		template.error_flow = template.name
		with self.assertRaises(FlowValidationError) as caught:
			template.save()
		self.assertIn("cannot be its own error flow", str(caught.exception))
		frappe.db.rollback()
		self.assertFalse(frappe.db.get_value("Flow Template", template.name, "error_flow"))
		template.reload()
		template.error_flow = make_flow("alert other", [recording_step()], doctype=None).name
		template.save()  # another flow is fine

	def test_failed_step_is_the_one_that_failed(self):
		record = store.RunRecord(
			name="x",
			template="t",
			template_version=1,
			status="failed",
			trigger_event=None,
			reference_doctype=None,
			reference_name=None,
			customer=None,
			source="user",
			started_by=None,
			parent_run=None,
			schedule=None,
			depth=0,
			started_at=None,
			completed_at=clock.now(),
			waves=1,
			steps_executed=1,
			error="Run stopped",
			input={},
			variables={},
			states={"a": {"status": "completed"}, "b": {"status": "cancelled"}},
			doc_snapshot=None,
		)
		self.assertIsNone(alerts.failed_step(record))
		self.assertIn("failed:", alerts.notification_subject(alerts.describe(record)))
		record.states["b"] = {"status": "failed", "error": "boom", "completed_at": "2026-01-01 00:00:00"}
		self.assertEqual(alerts.describe(record)["step"], "b")
		self.assertEqual(alerts.describe(record)["step_error"], "boom")
