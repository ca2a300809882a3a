"""The design's HTTP surface (`flow_engine.api.design`), called over real HTTP (Frappe's WSGI app in a
thread) with the API key of a Flow Manager, and refused to a plain user's key and to Guest."""

import json

import frappe
from frappe.tests.test_api import make_request
from frappe.utils import get_test_client

from flow_engine.runtime import store
from flow_engine.tests.utils import PREFIX, FlowTestCase, ensure_user, make_flow, runs_of

BASE = "/api/method/flow_engine.api.design."
CLIENT = get_test_client()
MANAGER = "design.manager@example.com"
PLAIN = "design.plain@example.com"
CUSTOMER = "_Test Flow Design Customer"


def api_key(user: str) -> str:
	"""`token key:secret` for `user` (a fresh secret each time)."""
	doc = frappe.get_doc("User", user)
	doc.api_key = doc.api_key or frappe.generate_hash(length=15)
	secret = frappe.generate_hash(length=15)
	doc.api_secret = secret
	doc.save(ignore_permissions=True)
	frappe.db.commit()
	return f"token {doc.api_key}:{secret}"


def ensure_customer() -> str:
	if not frappe.db.exists("Customer", CUSTOMER):
		frappe.get_doc(
			{
				"doctype": "Customer",
				"customer_name": CUSTOMER,
				"customer_group": frappe.db.get_value("Customer Group", {"is_group": 0}, "name"),
				"territory": frappe.db.get_value("Territory", {"is_group": 0}, "name"),
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()
	return CUSTOMER


class TestDesignAPI(FlowTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		if not frappe.db.exists("DocType", "Customer"):
			raise cls.skipTest(cls, "needs ERPNext (Customer)")
		ensure_user(MANAGER, ["Flow Manager", "Sales User"])
		ensure_user(PLAIN, ["Sales User"])
		cls.manager_key = api_key(MANAGER)
		cls.plain_key = api_key(PLAIN)
		ensure_customer()

	def call(self, method, body=None, key=None, http="post"):
		"""(status, message, exc_type) of one request; the test's own transaction then sees its effects."""
		headers = {"Authorization": key} if key else {}
		target = getattr(CLIENT, http)
		kwargs = {"headers": headers}
		if http == "get":
			kwargs["query_string"] = {
				k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in (body or {}).items()
			}
		else:
			kwargs["json"] = body or {}
		response = make_request(target=target, args=(BASE + method,), kwargs=kwargs)
		frappe.db.rollback()  # a fresh snapshot: see what the request committed
		data = response.json if response.is_json else {}
		return response.status_code, data.get("message"), data.get("exc_type")

	def manager(self, method, body=None, http="post"):
		status, message, exc = self.call(method, body, self.manager_key, http)
		self.assertEqual(status, 200, f"{method}: {exc} {message}")
		return message

	def flow(self, name="design", **extra):
		return make_flow(
			name,
			[
				{
					"id": "v",
					"kind": "set_variables",
					"payload": {"variables": {"seen": "{{variables.amount}}/{{input.amount}}"}},
				},
				{
					"id": "later",
					"kind": "wait",
					"depends_on": ["v"],
					"trigger": {"type": "after_delay", "delay_hours": 2},
				},
				{"id": "person", "kind": "wait", "depends_on": ["v"], "trigger": {"type": "manual"}},
				{
					"id": "after",
					"kind": "set_variables",
					"depends_on": ["person"],
					"payload": {"variables": {"answer": "{{steps.person.result.ok}}"}},
				},
			],
			doctype="Customer",
			variables={"amount": 0},  # declared with a default; `variables` of a start override it
			**extra,
		).name

	def test_start_with_wait_runs_in_the_request_and_says_what_ran(self):
		template = self.flow()
		answer = self.manager(
			"start",
			{
				"template": template,
				"doctype": "Customer",
				"docname": CUSTOMER,
				"variables": {"amount": 42},
				"wait": 1,
			},
		)
		self.assertEqual(
			{k: answer[k] for k in ("status", "executed", "scheduled", "waiting", "queued")},
			{
				"status": "waiting",
				"executed": ["v"],
				"scheduled": ["later"],
				"waiting": ["person"],
				"queued": False,
			},
		)
		record = store.load_run(answer["run"])
		self.assertEqual(record.variables["seen"], "42/42")  # variables and input both carry them
		self.assertEqual((record.customer, record.reference_name, record.source), (CUSTOMER, CUSTOMER, "api"))
		self.assertEqual(record.started_by, MANAGER)

		# complete the manual step: it and the step after it ran in this request
		done = self.manager(
			"complete", {"run": answer["run"], "step_id": "person", "result": {"ok": "yes"}, "wait": 1}
		)
		self.assertEqual(
			(done["step_id"], sorted(done["executed"]), done["scheduled"]),
			("person", ["after", "person"], ["later"]),
		)
		self.assertEqual(store.load_run(answer["run"]).variables["answer"], "yes")

		# one run, and the runs list by customer / template / status
		one = self.manager("run", {"name": answer["run"]}, http="get")["run"]
		self.assertEqual((one["name"], one["steps"]["after"]["status"]), (answer["run"], "completed"))
		listed = self.manager(
			"runs", {"customer": CUSTOMER, "template": template, "status": "waiting"}, http="get"
		)
		self.assertEqual([row["name"] for row in listed["runs"]], [answer["run"]])
		self.assertEqual(listed["runs"][0]["customer"], CUSTOMER)
		self.assertEqual(
			self.manager("runs", {"template": template, "status": "completed"}, http="get")["runs"], []
		)

	def test_start_without_wait_is_queued_and_advance_moves_it(self):
		template = self.flow()
		answer = self.manager(
			"start", {"template": template, "customer": CUSTOMER, "variables": '{"amount": 7}'}
		)
		self.assertEqual(
			(answer["status"], answer["executed"], answer["queued"]), ("running", [], True)
		)  # not yet moved
		# hold the run, unless a running worker's pool job took it already (no worker runs in CI)
		frappe.db.sql(
			"update `tabFlow Run` set lease_owner='held-by-test' where name=%s and lease_owner='pool'",
			(answer["run"],),
		)
		held = frappe.db._cursor.rowcount == 1
		frappe.db.commit()
		record = store.load_run(answer["run"])
		self.assertEqual((record.customer, record.reference_name), (CUSTOMER, None))  # without a document
		self.assertEqual((record.variables["amount"], record.input), (7, {"amount": 7}))
		moved = self.manager("advance", {"run": answer["run"]})
		self.assertEqual(
			(moved["executed"] if held else ["v"], moved["scheduled"], moved["waiting"]),
			(["v"], ["later"], ["person"]),
		)
		self.assertEqual(self.manager("advance", {"run": answer["run"]})["executed"], [])  # nothing new ran

	def test_event_starts_the_listening_flows_with_variables_and_customer(self):
		template = make_flow(
			"design event",
			[
				{
					"id": "v",
					"kind": "set_variables",
					"payload": {"variables": {"seen": "{{variables.amount}}"}},
				}
			],
			event="custom",
			custom_event="flowtest_design_event",
			doctype=None,
			variables={"amount": 0},
		).name
		answer = self.manager(
			"event",
			{"event": "flowtest_design_event", "customer": CUSTOMER, "variables": {"amount": 5}},
		)
		self.assertEqual([r["template"] for r in answer["results"]], [template])
		run = answer["results"][0]["run"]
		self.assertEqual(frappe.db.get_value("Flow Run", run, "customer"), CUSTOMER)
		self.assertEqual(self.manager("advance", {"run": run})["status"], "completed")
		self.assertEqual(store.load_run(run).variables["seen"], 5)  # a lone template keeps its type
		self.assertEqual(self.manager("event", {"event": "flowtest_nobody_listens"})["results"], [])

	def test_template_crud_and_duplicate_with_the_design_fields(self):
		name = PREFIX + "design crud"
		definition = {
			"version": 1,
			"steps": [{"id": "v", "kind": "set_variables", "payload": {"variables": {"a": "1"}}}],
		}
		created = self.manager(
			"create_template",
			{
				"template_name": name,
				"applies_to": "Customer",
				"trigger_event": "on_contract_signed",
				"trigger_condition": "",
				"category": "residential",
				"flow_definition": definition,
			},
		)["template"]
		self.assertEqual(
			{k: created[k] for k in ("name", "applies_to", "trigger_event", "trigger_condition", "version")},
			{
				"name": name,
				"applies_to": "Customer",
				"trigger_event": "on_contract_signed",
				"trigger_condition": None,
				"version": 1,
			},
		)
		self.assertEqual(
			frappe.db.get_value("Flow Template", name, ["trigger_event", "custom_event"]),
			("custom", "on_contract_signed"),
		)

		listed = self.manager(
			"list_templates", {"trigger_event": "on_contract_signed", "applies_to": "Customer"}, http="get"
		)
		self.assertIn(name, [t["name"] for t in listed["templates"]])
		self.assertNotIn(
			name,
			[
				t["name"]
				for t in self.manager("list_templates", {"category": "billing"}, http="get")["templates"]
			],
		)
		self.assertEqual(
			self.manager("get_template", {"name": name}, http="get")["template"]["category"], "residential"
		)

		updated = self.manager("update_template", {"name": name, "description": "patched", "is_active": 0})[
			"template"
		]
		self.assertEqual(
			(updated["description"], updated["is_active"], updated["category"]), ("patched", 0, "residential")
		)
		status, _message, exc = self.call("update_template", {"name": name, "bogus": 1}, self.manager_key)
		self.assertEqual((status, exc), (417, "ValidationError"))

		copy = self.manager("duplicate_template", {"name": name, "new_name": PREFIX + "design copy"})[
			"template"
		]
		self.assertEqual(
			(copy["name"], copy["is_active"], copy["applies_to"]), (PREFIX + "design copy", 0, "Customer")
		)
		self.assertEqual(self.manager("delete_template", {"name": copy["name"]}), {"ok": True})
		self.assertFalse(frappe.db.exists("Flow Template", copy["name"]))

	def test_plain_users_and_guests_are_refused(self):
		template = self.flow()
		before = len(runs_of(template))
		calls = {
			"start": {"template": template, "customer": CUSTOMER, "wait": 1},
			"event": {"event": "flowtest_design_event"},
			"runs": {},
			"list_templates": {},
			"get_template": {"name": template},
			"create_template": {"template_name": PREFIX + "design intruder"},
			"update_template": {"name": template, "description": "hacked"},
			"delete_template": {"name": template},
			"duplicate_template": {"name": template, "new_name": PREFIX + "design stolen"},
		}
		for method, body in calls.items():
			for who, key in (("plain user", self.plain_key), ("guest", None)):
				status, _message, exc = self.call(method, body, key)
				self.assertEqual((status, exc), (403, "PermissionError"), f"{method} as {who}")
		self.assertEqual(len(runs_of(template)), before)
		self.assertFalse(frappe.db.exists("Flow Template", PREFIX + "design intruder"))
		self.assertFalse(frappe.db.exists("Flow Template", PREFIX + "design stolen"))
		self.assertNotEqual(frappe.db.get_value("Flow Template", template, "description"), "hacked")

		run = self.manager("start", {"template": template, "customer": CUSTOMER, "wait": 1})["run"]
		for method, body in (
			("advance", {"run": run}),
			("complete", {"run": run, "step_id": "person"}),
			("run", {"name": run}),
		):
			status, _message, exc = self.call(method, body, self.plain_key)
			self.assertEqual((status, exc), (403, "PermissionError"), method)
		self.assertEqual(store.load_run(run).states["person"]["status"], "waiting")
