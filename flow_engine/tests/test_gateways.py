"""Gateways on a real site (#14): parallel branches joined (all / any), switch and inclusive on real
documents, and per-step on_error (continue / branch) — the run goes on and no alert fires.

The concurrency test forces two completions of parallel parked branches to overlap at a barrier (as in
test_concurrency.py): the join still fires exactly once; its control, without the run lock, loses an
update, so the test can fail.
"""

from __future__ import annotations

import frappe
from frappe.utils import add_to_date, now_datetime

from flow_engine.runtime import runs, scheduler, store
from flow_engine.tests.test_concurrency import race
from flow_engine.tests.test_webhook import Receiver
from flow_engine.tests.utils import FlowTestCase, ensure_user, make_flow, new_test_doc

SUBSCRIBER = "gateways-subscriber@example.com"
MAILBOX = "gateways-team@example.com"


def todo_doc(description: str, **values) -> frappe.model.document.Document:
	return frappe.get_doc({"doctype": "ToDo", "description": f"{description} [flowtest]", **values}).insert()


def attempts(run: str, step_id: str) -> int:
	return frappe.db.count("Flow Step Attempt", {"run": run, "step_id": step_id})


def comments_on(doctype: str, name: str) -> list[str]:
	return sorted(
		frappe.get_all(
			"Comment",
			filters={"reference_doctype": doctype, "reference_name": name, "comment_type": "Comment"},
			pluck="content",
		)
	)


def failing_step(step_id: str, **extra) -> dict:
	"""Fails at once, without retries (a ToDo status that does not exist)."""
	return {
		"id": step_id,
		"kind": "create_doc",
		"payload": {"doctype": "ToDo", "fields": {"description": "bad [flowtest]", "status": "Nonsense"}},
		**extra,
	}


def comment(step_id: str, text: str, **extra) -> dict:
	return {"id": step_id, "kind": "comment", "payload": {"text": text}, **extra}


class TestParallelJoin(FlowTestCase):
	def setUp(self):
		super().setUp()
		frappe.conf.flow_engine_outbound_allow = ["127.0.0.1"]  # the local receiver

	def tearDown(self):
		frappe.conf.pop("flow_engine_outbound_allow", None)
		frappe.db.rollback()
		frappe.db.delete("ToDo", {"description": ["like", "%[flowtest]%"]})
		frappe.db.commit()
		super().tearDown()

	def notify_and_hook(self, name: str, url: str, join="all", **close) -> str:
		return make_flow(
			name,
			[
				{
					"id": "tell",
					"kind": "notify",
					"payload": {
						"channel": "email",
						"recipients": [MAILBOX],
						"subject": "Closing {{doc.name}}",
						"message": "{{doc.description}} is about to close",
					},
				},
				{
					"id": "hook",
					"kind": "webhook",
					"payload": {"url": url, "method": "POST", "body": {"todo": "{{doc.name}}"}},
				},
				{
					"id": "close",
					"kind": "update_doc",
					"depends_on": ["tell", "hook"],
					"join": join,
					"payload": {"fields": {"status": "Closed"}},
					**close,
				},
			],
			doctype="ToDo",
		).name

	def test_a_parallel_notify_and_webhook_joined_before_closing_a_todo(self):
		todo = todo_doc("close me")
		frappe.db.commit()
		with Receiver([200]) as receiver:
			template = self.notify_and_hook("parallel close", receiver.url)
			name = runs.start_run(template, doc=todo)
			frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		# tell and hook ran in the same wave, close after both
		self.assertEqual(
			[record.states[step]["status"] for step in ("tell", "hook", "close")], ["completed"] * 3
		)
		self.assertEqual(len(receiver.requests), 1)
		self.assertIn(todo.name, receiver.requests[0]["body"].decode())
		queued = frappe.get_all(
			"Email Queue", filters={"reference_doctype": "ToDo", "reference_name": todo.name}, pluck="name"
		)
		self.assertEqual(len(queued), 1)
		recipients = frappe.get_all("Email Queue Recipient", filters={"parent": queued[0]}, pluck="recipient")
		self.assertEqual(recipients, [MAILBOX])
		self.assertEqual(frappe.db.get_value("ToDo", todo.name, "status"), "Closed")
		self.assertEqual(attempts(name, "close"), 1)
		closed_at = record.states["close"]["completed_at"]
		self.assertGreaterEqual(closed_at, record.states["hook"]["completed_at"])
		self.assertGreaterEqual(closed_at, record.states["tell"]["completed_at"])

	def test_a_join_waits_for_a_failing_branch_and_never_closes_early(self):
		"""join all: a webhook still retrying holds the join; it closes the ToDo once the call succeeds."""
		todo = todo_doc("close later")
		frappe.db.commit()
		start = now_datetime()
		with Receiver([500, 200]) as receiver:
			template = make_flow(
				"join waits",
				[
					{"id": "mark", "kind": "comment", "payload": {"text": "closing soon"}},
					{
						"id": "hook",
						"kind": "webhook",
						"retry": {"max_attempts": 2, "backoff_seconds": 30},
						"payload": {"url": receiver.url, "method": "POST", "body": {"todo": "{{doc.name}}"}},
					},
					{
						"id": "close",
						"kind": "update_doc",
						"depends_on": ["mark", "hook"],
						"payload": {"fields": {"status": "Closed"}},
					},
				],
				doctype="ToDo",
			).name
			with self.freeze_time(start):
				name = runs.start_run(template, doc=todo)
				frappe.db.commit()
			record = store.load_run(name)
			self.assertEqual(record.states["hook"]["status"], "scheduled")
			self.assertNotIn("close", record.states)
			self.assertEqual(frappe.db.get_value("ToDo", todo.name, "status"), "Open")
			with self.freeze_time(add_to_date(start, seconds=31)):
				scheduler.tick()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(frappe.db.get_value("ToDo", todo.name, "status"), "Closed")
		self.assertEqual(attempts(name, "close"), 1)

	def test_join_any_fires_on_the_first_input_and_never_again(self):
		todo = todo_doc("first wins")
		frappe.db.commit()
		template = make_flow(
			"join any",
			[
				{"id": "a", "kind": "wait", "trigger": {"type": "manual"}},
				{"id": "b", "kind": "wait", "trigger": {"type": "manual"}},
				{
					"id": "note",
					"kind": "comment",
					"depends_on": ["a", "b"],
					"join": "any",
					"payload": {"text": "first of a/b done"},
				},
			],
			doctype="ToDo",
		).name
		name = runs.start_run(template, doc=todo)
		frappe.db.commit()
		self.assertEqual(store.load_run(name).status, "waiting")
		runs.complete_step(name, "b")
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.states["note"]["status"], "completed")
		self.assertEqual(record.status, "waiting")  # a is still parked
		runs.complete_step(name, "a")
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(attempts(name, "note"), 1)
		self.assertEqual(comments_on("ToDo", todo.name), ["first of a/b done"])


class TestSwitchAndInclusive(FlowTestCase):
	def tearDown(self):
		frappe.db.rollback()
		frappe.db.delete("ToDo", {"description": ["like", "%[flowtest]%"]})
		frappe.db.commit()
		super().tearDown()

	def test_switch_routes_each_todo_by_priority(self):
		template = make_flow(
			"switch priority",
			[
				{
					"id": "route",
					"kind": "switch",
					"payload": {
						"cases": [
							{
								"name": "urgent",
								"condition": {"field": "doc.priority", "op": "==", "value": "High"},
							},
							{
								"name": "normal",
								"condition": {"field": "doc.priority", "op": "==", "value": "Medium"},
							},
						]
					},
				},
				comment("escalate", "escalated", parent_id="route", branch="urgent"),
				comment("queue", "queued", parent_id="route", branch="normal"),
				comment("later", "someday", parent_id="route", branch="default"),
				{
					"id": "close",
					"kind": "update_doc",
					"depends_on": ["escalate", "queue", "later"],
					"payload": {"fields": {"status": "Closed"}},
				},
			],
			doctype="ToDo",
		).name
		expected = {
			"High": ("urgent", "escalated"),
			"Medium": ("normal", "queued"),
			"Low": ("default", "someday"),
		}
		for priority, (branch, text) in expected.items():
			todo = todo_doc(f"switch {priority}", priority=priority)
			frappe.db.commit()
			name = runs.start_run(template, doc=todo)
			frappe.db.commit()
			record = store.load_run(name)
			self.assertEqual(record.status, "completed", record.error)
			self.assertEqual(record.states["route"]["result"], {"branch": branch})
			self.assertEqual(comments_on("ToDo", todo.name), [text])
			skipped = sorted(
				s for s in ("escalate", "queue", "later") if record.states[s]["status"] == "skipped"
			)
			self.assertEqual(len(skipped), 2)
			self.assertEqual(frappe.db.get_value("ToDo", todo.name, "status"), "Closed")

	def test_inclusive_takes_every_branch_whose_condition_holds(self):
		template = make_flow(
			"inclusive",
			[
				{
					"id": "fan",
					"kind": "inclusive",
					"payload": {
						"branches": [
							{"name": "large", "condition": {"field": "doc.amount", "op": ">", "value": 1000}},
							{
								"name": "vip",
								"condition": {"field": "doc.title", "op": "starts_with", "value": "VIP"},
							},
							{
								"name": "closed",
								"condition": {"field": "doc.status", "op": "==", "value": "Closed"},
							},
						]
					},
				},
				comment("big", "large amount", parent_id="fan", branch="large"),
				comment("vip", "vip customer", parent_id="fan", branch="vip"),
				comment("shut", "already closed", parent_id="fan", branch="closed"),
				{
					"id": "done",
					"kind": "update_doc",
					"depends_on": ["big", "vip", "shut"],
					"payload": {"fields": {"notes": "reviewed"}},
				},
			],
		).name
		cases = [
			({"title": "VIP order", "amount": 5000}, ["large", "vip"]),
			({"title": "plain", "amount": 10}, []),
			({"title": "VIP small", "amount": 10}, ["vip"]),
		]
		texts = {"large": "large amount", "vip": "vip customer", "closed": "already closed"}
		for values, taken in cases:
			doc = new_test_doc(**values)
			frappe.db.commit()
			name = runs.start_run(template, doc=doc)
			frappe.db.commit()
			record = store.load_run(name)
			self.assertEqual(record.status, "completed", record.error)
			self.assertEqual(record.states["fan"]["result"], {"branches": taken})
			self.assertEqual(comments_on(doc.doctype, doc.name), sorted(texts[b] for b in taken))
			self.assertEqual(frappe.db.get_value(doc.doctype, doc.name, "notes"), "reviewed")
			self.assertEqual(attempts(name, "done"), 1)


class TestOnError(FlowTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_user(SUBSCRIBER, ["Flow Manager"])

	def setUp(self):
		super().setUp()
		frappe.conf.flow_engine_outbound_allow = ["127.0.0.1"]

	def tearDown(self):
		frappe.conf.pop("flow_engine_outbound_allow", None)
		frappe.db.rollback()
		frappe.db.delete("Notification Log", {"for_user": SUBSCRIBER})
		frappe.db.commit()
		super().tearDown()

	def flow(self, name: str, steps: list) -> str:
		return make_flow(name, steps, subscribers=[{"user": SUBSCRIBER}]).name

	def alerted(self, run: str) -> int:
		frappe.db.commit()  # alerts are sent after the run's commit
		return frappe.db.count(
			"Notification Log", {"document_type": "Flow Run", "document_name": run, "for_user": SUBSCRIBER}
		)

	def test_on_error_continue_records_the_failure_and_goes_on(self):
		template = self.flow(
			"on_error continue",
			[
				failing_step("bad", on_error="continue"),
				comment("after", "went on: {{steps.bad.result.error}}", depends_on=["bad"]),
			],
		)
		doc = new_test_doc(title="continue")
		frappe.db.commit()
		name = runs.start_run(template, doc=doc)
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		bad = record.states["bad"]
		self.assertEqual(bad["status"], "completed")
		self.assertTrue(bad["result"]["failed"])
		self.assertIn("Nonsense", bad["result"]["error"])
		self.assertEqual(record.states["after"]["status"], "completed")
		(text,) = comments_on(doc.doctype, doc.name)
		self.assertIn("went on:", text)
		self.assertIn("Nonsense", text)
		self.assertEqual(self.alerted(name), 0)
		self.assertEqual(
			frappe.db.get_value("Flow Step Attempt", {"run": name, "step_id": "bad"}, "status"), "failed"
		)

	def test_control_on_error_fail_fails_the_run_and_alerts(self):
		template = self.flow(
			"on_error fail", [failing_step("bad"), comment("after", "went on", depends_on=["bad"])]
		)
		name = runs.start_run(template, doc=new_test_doc(title="fail"))
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "failed")
		self.assertEqual(record.states["bad"]["status"], "failed")
		self.assertEqual(self.alerted(name), 1)

	def test_on_error_branch_after_retries_takes_the_error_branch(self):
		start = now_datetime()
		with Receiver([500, 503]) as receiver:
			template = self.flow(
				"on_error branch",
				[
					{
						"id": "call",
						"kind": "webhook",
						"on_error": "branch",
						"retry": {"max_attempts": 2, "backoff_seconds": 30},
						"payload": {"url": receiver.url, "method": "POST", "body": {"doc": "{{doc.name}}"}},
					},
					comment(
						"recover",
						"call failed: {{steps.call.result.error}}",
						parent_id="call",
						branch="error",
					),
					comment("child", "call worked", parent_id="call"),
					comment("after", "after the call", depends_on=["call"]),
				],
			)
			doc = new_test_doc(title="branch")
			frappe.db.commit()
			with self.freeze_time(start):
				name = runs.start_run(template, doc=doc)
				frappe.db.commit()
			self.assertEqual(store.load_run(name).states["call"]["status"], "scheduled")  # retrying
			with self.freeze_time(add_to_date(start, seconds=31)):
				scheduler.tick()
		self.assertEqual(len(receiver.requests), 2)
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		call = record.states["call"]
		self.assertEqual(call["status"], "completed")
		self.assertEqual(call["result"]["branch"], "error")
		self.assertIn("503", call["result"]["error"])
		self.assertEqual(record.states["recover"]["status"], "completed")
		self.assertEqual(record.states["child"]["status"], "skipped")
		self.assertEqual(record.states["after"]["status"], "skipped")
		self.assertIn("took its error branch", record.states["after"]["reason"])
		(text,) = comments_on(doc.doctype, doc.name)
		self.assertTrue(text.startswith("call failed:"), text)
		self.assertIn("503", text)
		self.assertEqual(self.alerted(name), 0)

	def test_a_parked_step_that_times_out_takes_its_error_branch(self):
		template = self.flow(
			"on_error timeout",
			[
				{
					"id": "ask",
					"kind": "wait",
					"trigger": {"type": "manual"},
					"timeout": 60,
					"on_error": "branch",
				},
				comment(
					"late", "nobody answered: {{steps.ask.result.error}}", parent_id="ask", branch="error"
				),
				comment("answered", "answered", parent_id="ask"),
			],
		)
		doc = new_test_doc(title="timeout")
		frappe.db.commit()
		start = now_datetime()
		with self.freeze_time(start):
			name = runs.start_run(template, doc=doc)
			frappe.db.commit()
		self.assertEqual(store.load_run(name).status, "waiting")
		with self.freeze_time(add_to_date(start, seconds=61)):
			scheduler.tick()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.states["ask"]["result"]["branch"], "error")
		self.assertEqual(record.states["answered"]["status"], "skipped")
		(text,) = comments_on(doc.doctype, doc.name)
		self.assertIn("nobody answered: timed out after 60s", text)
		self.assertEqual(self.alerted(name), 0)

	def test_on_error_branch_not_taken_when_the_step_succeeds(self):
		template = self.flow(
			"on_error branch ok",
			[
				{
					"id": "make",
					"kind": "create_doc",
					"on_error": "branch",
					"payload": {"doctype": "ToDo", "fields": {"description": "ok [flowtest]"}},
				},
				comment("recover", "failed", parent_id="make", branch="error"),
				comment("child", "made {{steps.make.result.name}}", parent_id="make"),
			],
		)
		doc = new_test_doc(title="ok")
		frappe.db.commit()
		name = runs.start_run(template, doc=doc)
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.states["recover"]["status"], "skipped")
		self.assertEqual(
			comments_on(doc.doctype, doc.name), [f"made {record.states['make']['result']['name']}"]
		)
		frappe.db.delete("ToDo", {"description": "ok [flowtest]"})
		frappe.db.commit()


class TestConcurrentJoin(FlowTestCase):
	COMPLETE = "from flow_engine.runtime import runs\nfrappe.flags.flow_engine_inline = True\n" + (
		"runs.complete_step(RUN, sys.argv[1])\nfrappe.db.commit()\n"
	)

	def tearDown(self):
		frappe.db.rollback()
		frappe.db.delete("ToDo", {"description": ["like", "%[flowtest]%"]})
		frappe.db.commit()
		super().tearDown()

	def _parallel_run(self, join) -> str:
		template = make_flow(
			f"concurrent join {join}",
			[
				{"id": "a", "kind": "wait", "trigger": {"type": "manual"}},
				{"id": "b", "kind": "wait", "trigger": {"type": "manual"}},
				{
					"id": "join",
					"kind": "create_doc",
					"depends_on": ["a", "b"],
					"join": join,
					"payload": {
						"doctype": "ToDo",
						"fields": {"description": "joined {{run.name}} [flowtest]"},
					},
				},
			],
		).name
		name = runs.start_run(template)
		frappe.db.commit()
		return name

	def _joined(self, name: str) -> int:
		return frappe.db.count("ToDo", {"description": f"joined {name} [flowtest]"})

	def test_concurrent_completions_of_parallel_branches_fire_the_join_once(self):
		for join in ("any", "all"):
			name = self._parallel_run(join)
			race(f"RUN = {name!r}\n" + self.COMPLETE, ["a", "b"])
			record = store.load_run(name)
			self.assertEqual(
				(record.states["a"]["status"], record.states["b"]["status"]), ("completed", "completed")
			)
			self.assertEqual(record.status, "completed", record.error)
			self.assertEqual(attempts(name, "join"), 1, join)
			self.assertEqual(self._joined(name), 1, join)

	def test_control_without_the_run_lock_an_update_is_lost(self):
		name = self._parallel_run("any")
		race(f"RUN = {name!r}\n" + self.COMPLETE, ["a", "b"], locked=False)
		record = store.load_run(name)
		statuses = sorted(record.states[step].get("status") or "" for step in ("a", "b"))
		self.assertEqual(statuses, ["completed", "waiting"], "the barrier forces the lost update")
