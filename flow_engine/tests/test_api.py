import json

import frappe

from flow_engine import api
from flow_engine.runtime import runs, store
from flow_engine.tests.utils import FlowTestCase, make_flow, run_of

USER = "flow-plain-user@example.com"
MANAGER = "flow-manager-user@example.com"


def ensure_user(email, roles):
	if not frappe.db.exists("User", email):
		user = frappe.get_doc(
			{
				"doctype": "User",
				"email": email,
				"first_name": email.split("@")[0],
				"send_welcome_email": 0,
				"user_type": "System User",
			}
		)
		user.insert(ignore_permissions=True)
	user = frappe.get_doc("User", email)
	user.set("roles", [])
	user.add_roles(*roles)
	frappe.db.commit()
	return email


COMMENT = [{"id": "c", "kind": "comment", "payload": {"text": "hello"}}]


class TestApi(FlowTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_user(USER, ["Desk User"] if frappe.db.exists("Role", "Desk User") else ["Blogger"])
		ensure_user(MANAGER, ["Flow Manager"])

	def test_plain_user_cannot_edit_or_run_flows(self):
		template = make_flow("perm", COMMENT, doctype="ToDo").name
		frappe.set_user(USER)
		with self.assertRaises(frappe.PermissionError):
			frappe.get_doc(
				{
					"doctype": "Flow Template",
					"template_name": "_Test Flow sneaky",
					"flow_definition": json.dumps({"steps": COMMENT}),
				}
			).insert()
		with self.assertRaises(frappe.PermissionError):
			frappe.get_doc("Flow Template", template).save()
		for call in (
			lambda: api.start_run(template),
			lambda: api.validate("{}"),
			lambda: api.kinds(),
			lambda: api.dispatch_event("x"),
			lambda: api.list_runs(),
		):
			with self.assertRaises(frappe.PermissionError):
				call()

	def test_runs_of_documents_the_user_cannot_read_are_hidden(self):
		template = make_flow("perm runs", COMMENT, doctype="ToDo", event="after_insert").name
		frappe.set_user(USER)
		mine = frappe.get_doc(
			{"doctype": "ToDo", "description": "mine [flowtest]", "allocated_to": USER}
		).insert()
		frappe.set_user("Administrator")
		theirs = frappe.get_doc(
			{"doctype": "ToDo", "description": "theirs [flowtest]", "allocated_to": "Administrator"}
		)
		theirs.insert()
		frappe.db.commit()
		their_run = run_of(template, reference_name=theirs.name).name
		frappe.set_user(USER)
		self.assertEqual(
			len(api.list_runs(template=template, reference_doctype="ToDo", reference_name=mine.name)), 1
		)
		with self.assertRaises(frappe.PermissionError):
			api.list_runs(reference_doctype="ToDo", reference_name=theirs.name)
		with self.assertRaises(frappe.PermissionError):
			api.get_run(their_run)
		self.assertFalse(frappe.has_permission("Flow Run", "read", doc=their_run))

	def test_flow_manager_can_edit_and_run(self):
		frappe.set_user(MANAGER)
		doc = make_flow(
			"by manager",
			[{"id": "v", "kind": "set_variables", "payload": {"variables": {"a": "1"}}}],
			doctype=None,
		)
		name = api.start_run(doc.name)
		frappe.db.commit()
		self.assertEqual(api.get_run(name)["status"], "completed")
		self.assertTrue(api.list_runs(template=doc.name))

	def test_error_cases(self):
		template = make_flow(
			"errors", [{"id": "m", "kind": "wait", "trigger": {"type": "manual"}}], doctype=None
		).name
		with self.assertRaises(frappe.DoesNotExistError):
			api.start_run("No Such Flow")
		with self.assertRaises(frappe.DoesNotExistError):
			api.start_run(template, reference_doctype="ToDo", reference_name="does-not-exist")
		with self.assertRaises(frappe.ValidationError):
			api.start_run(template, input="{not json")
		name = api.start_run(template)
		frappe.db.commit()
		with self.assertRaises(frappe.DoesNotExistError):
			api.complete_step(name, "ghost")
		with self.assertRaises(api.CallbackRejected):
			api.callback(run=name, step="m", token="x")  # manual steps have no token
		api.cancel_run(name)
		frappe.db.commit()
		with self.assertRaises(runs.FlowRunError):
			api.complete_step(name, "m")
		with self.assertRaises(runs.FlowRunError):
			api.retry_run(name)

	def test_validate_endpoint(self):
		result = api.validate('{"steps": [{"id": "a", "kind": "nope"}]}')
		self.assertFalse(result["valid"])
		self.assertEqual(result["errors"][0]["step_id"], "a")
		self.assertEqual(result["errors"][0]["field"], "kind")
		self.assertFalse(api.validate("{oops")["valid"])
		self.assertTrue(api.validate(json.dumps({"steps": COMMENT}))["valid"])

	def test_dry_run_has_no_side_effects(self):
		todo = frappe.get_doc(
			{"doctype": "ToDo", "description": "dry [flowtest]", "priority": "High"}
		).insert()
		frappe.db.commit()
		definition = {
			"steps": [
				{
					"id": "c",
					"kind": "condition",
					"payload": {"condition": {"field": "doc.priority", "op": "==", "value": "High"}},
				},
				{
					"id": "make",
					"kind": "create_doc",
					"parent_id": "c",
					"branch": "yes",
					"payload": {
						"doctype": "ToDo",
						"fields": {"description": "follow {{doc.name}} [flowtest]"},
					},
				},
				{"id": "note", "kind": "comment", "parent_id": "c", "branch": "no", "payload": {"text": "x"}},
			]
		}
		before = frappe.db.count("ToDo")
		report = api.dry_run(
			definition=json.dumps(definition), reference_doctype="ToDo", reference_name=todo.name
		)
		self.assertEqual(frappe.db.count("ToDo"), before)
		steps = {s["step_id"]: s for s in report["steps"]}
		self.assertEqual(steps["c"]["branch"], "yes")
		self.assertEqual(steps["make"]["payload"]["fields"]["description"], f"follow {todo.name} [flowtest]")
		self.assertEqual(steps["note"]["action"], "skip")

	def test_duplicate_and_kinds(self):
		template = make_flow("dup", COMMENT, doctype=None).name
		copy = api.duplicate_template(template, "_Test Flow dup copy")
		self.assertEqual(frappe.db.get_value("Flow Template", copy, "is_active"), 0)
		names = {kind["name"] for kind in api.kinds()}
		self.assertTrue(
			{
				"create_doc",
				"update_doc",
				"notify",
				"webhook",
				"condition",
				"wait",
				"assign",
				"comment",
				"set_variables",
				"subscription_activate",
			}
			<= names
		)

	def test_get_run_shows_attempts(self):
		template = make_flow("attempts", COMMENT, doctype="ToDo", event="after_insert").name
		frappe.get_doc({"doctype": "ToDo", "description": "attempts [flowtest]"}).insert()
		frappe.db.commit()
		run = api.get_run(run_of(template).name)
		self.assertEqual(run["attempts"][0]["step_id"], "c")
		self.assertEqual(run["steps"]["c"]["status"], "completed")
		self.assertTrue(store.load_run(run["name"]))
