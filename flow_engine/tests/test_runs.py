import datetime

import frappe
from frappe.utils import add_to_date, now_datetime

from flow_engine.runtime import runs, scheduler, store
from flow_engine.tests.utils import TEST_DOCTYPE, FlowTestCase, make_flow, new_test_doc, run_of


def todo(step_id, text, **extra):
	return {
		"id": step_id,
		"kind": "create_doc",
		"payload": {"doctype": "ToDo", "fields": {"description": f"{text} [flowtest]"}},
		**extra,
	}


class TestRuns(FlowTestCase):
	def test_branch_and_delay_complete_through_the_scheduler(self):
		template = make_flow(
			"branch delay",
			[
				{
					"id": "big",
					"kind": "condition",
					"payload": {"condition": {"field": "doc.amount", "op": ">", "value": 100}},
				},
				todo("yes_todo", "big order {{doc.title}}", parent_id="big", branch="yes"),
				{
					"id": "no_note",
					"kind": "comment",
					"parent_id": "big",
					"branch": "no",
					"payload": {"text": "small"},
				},
				{
					"id": "later",
					"kind": "wait",
					"depends_on": ["yes_todo", "no_note"],
					"trigger": {"type": "after_delay", "delay_hours": 2},
				},
				{
					"id": "close",
					"kind": "update_doc",
					"depends_on": ["later"],
					"payload": {"fields": {"status": "Closed"}},
				},
			],
			event="after_insert",
		).name
		start = now_datetime()
		with self.freeze_time(start):
			doc = new_test_doc(title="B1", amount=500)
			frappe.db.commit()
		record = run_of(template)
		self.assertEqual(record.status, "waiting")
		self.assertEqual(record.states["big"]["result"]["branch"], "yes")
		self.assertEqual(record.states["no_note"]["status"], "skipped")
		self.assertEqual(record.states["later"]["status"], "scheduled")
		pending = frappe.get_doc("Flow Step Pending", record.states["later"]["pending"])
		self.assertEqual(pending.status, "pending")
		todo_name = record.states["yes_todo"]["result"]["name"]
		self.assertIn("big order B1", frappe.db.get_value("ToDo", todo_name, "description"))

		with self.freeze_time(add_to_date(start, hours=1)):
			scheduler.tick()
		self.assertEqual(run_of(template).status, "waiting")
		with self.freeze_time(add_to_date(start, hours=2, seconds=1)):
			self.assertGreaterEqual(scheduler.tick()["claimed"], 1)
		record = run_of(template)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(frappe.db.get_value(TEST_DOCTYPE, doc.name, "status"), "Closed")
		self.assertEqual(frappe.db.get_value("Flow Step Pending", pending.name, "status"), "completed")
		self.assertEqual(frappe.db.count("Flow Step Attempt", {"run": record.name}), 4)

	def test_a_group_of_runs_advances_in_one_transaction_and_a_bad_run_costs_only_itself(self):
		template = make_flow("pool group", [todo("t", "{{run.name}} grouped")]).name
		frappe.flags.flow_engine_inline = False
		names = [runs.start_run(template) for _ in range(5)]
		frappe.db.commit()
		self.assertTrue(runs.advance_group(names[:3], []), "a clean group commits as one")
		frappe.db.rollback()
		self.assertEqual({frappe.db.get_value("Flow Run", n, "status") for n in names[:3]}, {"completed"})
		frappe.db.set_value("Flow Run", names[3], "template_version", 999)  # its definition is gone
		frappe.db.commit()
		runs.advance_claimed(names[3:], None)
		frappe.db.rollback()
		self.assertEqual(frappe.db.get_value("Flow Run", names[4], "status"), "completed")
		self.assertEqual(frappe.db.get_value("Flow Run", names[3], "infra_failures"), 1)
		made = frappe.get_all(
			"ToDo", filters={"description": ["like", "% grouped [flowtest]"]}, pluck="description"
		)
		self.assertEqual(sorted(made), sorted(f"{n} grouped [flowtest]" for n in names if n != names[3]))

	def test_on_date_steps(self):
		due = add_to_date(now_datetime(), days=3)
		template = make_flow(
			"on date",
			[
				{"id": "at", "kind": "wait", "trigger": {"type": "on_date", "date": "{{doc.due_on}}"}},
				{"id": "past", "kind": "wait", "trigger": {"type": "on_date", "date": "2020-01-01"}},
				{
					"id": "bad",
					"kind": "wait",
					"depends_on": ["at"],
					"trigger": {"type": "on_date", "date": "{{doc.title}}"},
				},
			],
			event="after_insert",
		).name
		new_test_doc(title="not a date", due_on=due)
		frappe.db.commit()
		record = run_of(template)
		self.assertEqual(record.states["past"]["status"], "completed")
		self.assertEqual(record.states["at"]["status"], "scheduled")
		with self.freeze_time(add_to_date(due, seconds=1)):
			scheduler.tick()
		record = run_of(template)
		self.assertEqual(record.status, "failed")
		self.assertIn("'not a date'", record.error)

	def test_manual_step_parks_until_completed(self):
		template = make_flow(
			"manual",
			[
				{"id": "approve", "kind": "wait", "trigger": {"type": "manual"}},
				todo("after", "approved by {{steps.approve.result.by}}", depends_on=["approve"]),
			],
		).name
		name = runs.start_run(template)
		frappe.db.commit()
		self.assertEqual(store.load_run(name).status, "waiting")
		with self.assertRaises(runs.FlowRunError):
			runs.complete_step(name, "after")  # not parked
		runs.complete_step(name, "approve", result={"by": "boss"})
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed")
		self.assertIn(
			"approved by boss",
			frappe.db.get_value("ToDo", record.states["after"]["result"]["name"], "description"),
		)
		with self.assertRaises(runs.FlowRunError):
			runs.complete_step(name, "approve")  # already completed

	def test_parked_step_timeout(self):
		template = make_flow(
			"timeout", [{"id": "approve", "kind": "wait", "timeout": 60, "trigger": {"type": "manual"}}]
		).name
		start = now_datetime()
		with self.freeze_time(start):
			name = runs.start_run(template)
			frappe.db.commit()
		with self.freeze_time(add_to_date(start, seconds=61)):
			scheduler.tick()
		record = store.load_run(name)
		self.assertEqual(record.status, "failed")
		self.assertIn("timed out", record.error)

	def test_failure_rolls_back_the_step_effect_and_fails_visibly(self):
		template = make_flow(
			"failing",
			[
				todo("ok", "kept"),
				{
					"id": "bad",
					"kind": "update_doc",
					"depends_on": ["ok"],
					"payload": {
						"doctype": "ToDo",
						"name": "{{steps.ok.result.name}}",
						"fields": {"status": "Nonsense"},
					},
				},
				todo("never", "never", depends_on=["bad"]),
			],
		).name
		name = runs.start_run(template)
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "failed")
		self.assertIn("Step 'bad' failed", record.error)
		self.assertEqual(frappe.db.get_value("ToDo", record.states["ok"]["result"]["name"], "status"), "Open")
		self.assertNotIn("never", record.states)
		attempt = frappe.get_all(
			"Flow Step Attempt", filters={"run": name, "step_id": "bad"}, fields=["status", "error"]
		)
		self.assertEqual(attempt[0].status, "failed")

	def test_unknown_field_at_runtime_names_the_field(self):
		template = make_flow(
			"runtime field",
			[
				{
					"id": "u",
					"kind": "update_doc",
					"payload": {
						"doctype": "{{input.dt}}",
						"name": "{{input.dn}}",
						"fields": {"colour": "red"},
					},
				}
			],
			doctype=None,
		).name
		todo_doc = frappe.get_doc({"doctype": "ToDo", "description": "target [flowtest]"}).insert()
		name = runs.start_run(template, input={"dt": "ToDo", "dn": todo_doc.name})
		frappe.db.commit()
		self.assertIn("'colour' is not a field of ToDo", store.load_run(name).error)

	def test_cancel_and_retry(self):
		template = make_flow(
			"cancel", [{"id": "d", "kind": "wait", "trigger": {"type": "after_delay", "delay_days": 1}}]
		).name
		name = runs.start_run(template)
		frappe.db.commit()
		record = store.load_run(name)
		runs.cancel_run(name)
		frappe.db.commit()
		self.assertEqual(store.load_run(name).status, "cancelled")
		self.assertEqual(
			frappe.db.get_value("Flow Step Pending", record.states["d"]["pending"], "status"), "cancelled"
		)
		with self.assertRaises(runs.FlowRunError):
			runs.cancel_run(name)

		template = make_flow(
			"retry",
			[
				{
					"id": "u",
					"kind": "update_doc",
					"payload": {"doctype": "ToDo", "name": "{{input.todo}}", "fields": {"status": "Closed"}},
				}
			],
			doctype=None,
		).name
		name = runs.start_run(template, input={"todo": "missing-todo"})
		frappe.db.commit()
		self.assertEqual(store.load_run(name).status, "failed")
		todo_doc = frappe.get_doc({"doctype": "ToDo", "description": "retry [flowtest]"}).insert()
		frappe.db.set_value("Flow Run", name, "input", store.dumps({"todo": todo_doc.name}))
		runs.retry_run(name)
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.states["u"]["attempts"], 2)
		self.assertEqual(frappe.db.get_value("ToDo", todo_doc.name, "status"), "Closed")

	def test_set_variables_and_templates_across_steps(self):
		template = make_flow(
			"variables",
			[
				{
					"id": "v",
					"kind": "set_variables",
					"payload": {"variables": {"who": "{{doc.title}}", "greeting": "hi {{variables.who}}"}},
				},
				todo("t", "{{variables.greeting}} / {{variables.group}}", depends_on=["v"]),
			],
			variables={"group": "L1"},
			event="after_insert",
		).name
		new_test_doc(title="Ann")
		frappe.db.commit()
		record = run_of(template)
		self.assertEqual(record.variables, {"who": "Ann", "greeting": "hi Ann"})
		self.assertIn(
			"hi Ann / L1", frappe.db.get_value("ToDo", record.states["t"]["result"]["name"], "description")
		)

	def test_assign_and_notify_kinds(self):
		if not frappe.db.exists("Email Account", {"enable_outgoing": 1, "default_outgoing": 1}):
			frappe.get_doc(
				{
					"doctype": "Email Account",
					"email_account_name": "_Test Flow Outgoing",
					"email_id": "flows@example.com",
					"enable_outgoing": 1,
					"default_outgoing": 1,
					"smtp_server": "localhost",
					"no_smtp_authentication": 1,
				}
			).insert(ignore_permissions=True)
		template = make_flow(
			"assign notify",
			[
				{
					"id": "a",
					"kind": "assign",
					"payload": {"assign_to": ["Administrator"], "description": "look [flowtest]"},
				},
				{
					"id": "n",
					"kind": "notify",
					"payload": {
						"channel": "system",
						"recipients": ["Administrator"],
						"subject": "flow says hi",
						"message": "about {{doc.title}}",
					},
				},
				{
					"id": "e",
					"kind": "notify",
					"payload": {
						"channel": "email",
						"recipients": ["someone@example.com"],
						"subject": "Hello {{doc.title}}",
						"message": "Body",
					},
				},
			],
			event="after_insert",
		).name
		doc = new_test_doc(title="Notify me")
		frappe.db.commit()
		record = run_of(template)
		self.assertEqual(record.status, "completed", record.error)
		self.assertTrue(
			frappe.db.exists("ToDo", {"reference_name": doc.name, "allocated_to": "Administrator"})
		)
		self.assertTrue(
			frappe.db.exists("Notification Log", {"document_name": doc.name, "subject": "flow says hi"})
		)
		self.assertTrue(frappe.db.exists("Email Queue", {"reference_name": doc.name}))
		frappe.db.delete("ToDo", {"reference_name": doc.name})

	def test_sms_without_settings_fails_clearly(self):
		gateway = frappe.db.get_single_value("SMS Settings", "sms_gateway_url")
		if gateway:  # this test is about a site without a gateway
			frappe.db.set_single_value("SMS Settings", "sms_gateway_url", None)
			self.addCleanup(frappe.db.set_single_value, "SMS Settings", "sms_gateway_url", gateway)
		template = make_flow(
			"sms",
			[
				{
					"id": "s",
					"kind": "notify",
					"payload": {"channel": "sms", "recipients": ["+15550001"], "message": "hi"},
				}
			],
		).name
		name = runs.start_run(template)
		frappe.db.commit()
		expected = "SMS Settings" if frappe.db.table_exists("SMS Log") else "SMS Log doctype (ERPNext)"
		self.assertIn(expected, store.load_run(name).error)

	def test_depth_guard_stops_ping_pong(self):
		# flow A on insert of ToDo creates a ToDo: each run would start another, forever
		template = make_flow("ping pong", [todo("again", "again")], doctype="ToDo", event="after_insert").name
		frappe.get_doc({"doctype": "ToDo", "description": "seed [flowtest]"}).insert()
		frappe.db.commit()
		count = frappe.db.count("Flow Run", {"template": template})
		self.assertLessEqual(count, runs.MAX_DEPTH + 1)
		self.assertGreaterEqual(count, 2)

	def test_run_duration_is_bounded(self):
		template = make_flow(
			"long", [{"id": "d", "kind": "wait", "trigger": {"type": "after_delay", "delay_days": 500}}]
		).name
		start = now_datetime()
		with self.freeze_time(start):
			name = runs.start_run(template)
			frappe.db.commit()
		with self.freeze_time(start + datetime.timedelta(days=501)):
			scheduler.tick()
		record = store.load_run(name)
		self.assertEqual(record.status, "failed")
		self.assertIn("longer than", record.error)

	def test_desk_hears_each_commit_in_the_run_room_and_nothing_after_a_rollback(self):
		import json

		from frappe.utils.background_jobs import get_redis_connection_without_auth

		template = make_flow(
			"realtime",
			[
				{"id": "a", "kind": "set_variables", "payload": {"variables": {"x": 1}}},
				{"id": "m", "kind": "wait", "depends_on": ["a"], "trigger": {"type": "manual"}},
			],
		).name
		pubsub = get_redis_connection_without_auth().pubsub(ignore_subscribe_messages=True)
		pubsub.subscribe("events")

		def heard(run):
			messages, deadline = [], datetime.datetime.now() + datetime.timedelta(seconds=2)
			while datetime.datetime.now() < deadline:
				raw = pubsub.get_message(timeout=0.1)
				if raw:
					data = json.loads(raw["data"])
					if data["event"] == "flow_run_update" and data["message"]["run"] == run:
						messages.append(data)
			return messages

		try:
			name = runs.start_run(template)
			frappe.db.commit()  # advanced here (inline): one commit, one message
			[message] = heard(name)
			self.assertEqual(message["room"], f"doc:Flow Run/{name}")
			self.assertEqual(message["namespace"], frappe.local.site)
			self.assertEqual(message["message"]["status"], "waiting")
			self.assertEqual(message["message"]["states"]["a"]["status"], "completed")
			self.assertEqual(message["message"]["states"]["m"]["status"], "waiting")
			self.assertNotIn("token", message["message"]["states"]["m"])

			runs.cancel_run(name)
			frappe.db.rollback()
			self.assertEqual(heard(name), [], "a rolled-back change is never announced")

			runs.cancel_run(name)
			frappe.db.commit()
			[message] = heard(name)
			self.assertEqual(message["message"]["status"], "cancelled")
			self.assertEqual(message["message"]["states"]["m"]["status"], "cancelled")
		finally:
			pubsub.close()
