import json

import frappe

from flow_engine import desk
from flow_engine.tests.test_api import MANAGER, USER, ensure_user
from flow_engine.tests.utils import PREFIX, TEST_DOCTYPE, FlowTestCase, make_flow, new_test_doc

STEPS = [
	{"id": "hello", "kind": "comment", "payload": {"text": "hi {{doc.title}}"}},
	{
		"id": "check",
		"kind": "condition",
		"depends_on": ["hello"],
		"payload": {"condition": {"field": "doc.status", "op": "==", "value": "Open"}},
	},
	{
		"id": "rest",
		"kind": "wait",
		"parent_id": "check",
		"branch": "yes",
		"trigger": {"type": "after_delay", "delay_minutes": 5},
	},
]


class TestDesk(FlowTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_user(USER, ["Desk User"] if frappe.db.exists("Role", "Desk User") else ["Blogger"])
		ensure_user(MANAGER, ["Flow Manager"])

	def test_editor_data_has_definition_trigger_layout_and_kinds(self):
		flow = make_flow(
			"Desk Data",
			STEPS,
			event="after_insert",
			editor_layout='{"positions": {"hello": {"x": 1, "y": 2}}}',
		)
		data = desk.editor_data(flow.name)
		self.assertEqual([s["id"] for s in data["definition"]["steps"]], ["hello", "check", "rest"])
		self.assertEqual(data["definition"]["trigger"], {"doctype": TEST_DOCTYPE, "event": "after_insert"})
		self.assertEqual(data["layout"], {"positions": {"hello": {"x": 1, "y": 2}}})
		kinds = {k["name"]: k for k in data["kinds"]}
		self.assertEqual(kinds["condition"]["branches"], ["yes", "no"])
		self.assertTrue(any(f["required"] for f in kinds["comment"]["fields"]))
		self.assertTrue(data["can_write"])
		self.assertEqual(data["template"]["version"], flow.version)
		from flow_engine.engine.definition import FLOW_EVENTS

		self.assertEqual(sorted(data["trigger_events"]), sorted(FLOW_EVENTS))  # one list, the engine's
		self.assertEqual(data["trigger_events"][0], "manual")

	def test_save_flow_saves_definition_trigger_layout_and_bumps_version(self):
		flow = make_flow("Desk Save", STEPS[:1])
		definition = {
			"version": 1,
			"trigger": {
				"doctype": TEST_DOCTYPE,
				"event": "value_changed",
				"field": "status",
				"condition": {"field": "doc.status", "op": "==", "value": "Closed"},
			},
			"steps": STEPS,
		}
		layout = {"positions": {"hello": {"x": 10, "y": 20}}}
		draft = desk.save_flow(flow.name, json.dumps(definition), json.dumps(layout), is_active=0)
		self.assertTrue(draft["saved"], draft)
		self.assertEqual((draft["version"], draft["publishing"]["has_draft"]), (flow.version, True))
		result = desk.save_flow(flow.name, json.dumps(definition), json.dumps(layout), is_active=0, publish=1)
		self.assertTrue(result["saved"], result)
		self.assertEqual(result["version"], flow.version + 1)
		doc = frappe.get_doc("Flow Template", flow.name)
		self.assertEqual(doc.trigger_event, "value_changed")
		self.assertEqual(doc.trigger_field, "status")
		self.assertEqual(json.loads(doc.trigger_condition), definition["trigger"]["condition"])
		self.assertEqual(doc.step_count, 3)
		self.assertEqual(doc.is_active, 0)
		self.assertEqual(json.loads(doc.editor_layout), layout)
		saved = json.loads(doc.flow_definition)
		self.assertEqual(saved["steps"][2]["parent_id"], "check")
		self.assertEqual(saved["trigger"]["field"], "status")
		# positions only: the definition is unchanged, so is the version
		again = desk.save_flow(flow.name, json.dumps(definition), json.dumps({"positions": {}}))
		self.assertEqual(again["version"], result["version"])

	def test_save_flow_refuses_an_invalid_definition_with_located_errors(self):
		flow = make_flow("Desk Invalid", STEPS[:1])
		bad = {
			"version": 1,
			"trigger": {"doctype": TEST_DOCTYPE, "event": "manual"},
			"steps": [
				{"id": "a", "kind": "comment", "payload": {}},
				{"id": "b", "kind": "wait", "depends_on": ["ghost"]},
			],
		}
		result = desk.save_flow(flow.name, bad)
		self.assertFalse(result["saved"])
		located = {(e["step_id"], e["field"]) for e in result["errors"]}
		self.assertIn(("a", "payload.text"), located)
		self.assertIn(("b", "depends_on"), located)
		doc = frappe.get_doc("Flow Template", flow.name)
		self.assertEqual(doc.version, flow.version)
		self.assertEqual(json.loads(doc.flow_definition)["steps"][0]["id"], "hello")

	def test_create_flow_and_document_flows(self):
		name = desk.create_flow(PREFIX + "Desk New", TEST_DOCTYPE, "after_insert")
		doc = frappe.get_doc("Flow Template", name)
		self.assertEqual(
			(doc.trigger_doctype, doc.trigger_event, doc.is_active), (TEST_DOCTYPE, "after_insert", 0)
		)
		self.assertEqual(json.loads(doc.flow_definition)["steps"], [])
		flow = make_flow("Desk Doc", STEPS[:1])
		target = new_test_doc()
		from flow_engine import api

		run = api.start_run(flow.name, TEST_DOCTYPE, target.name)
		info = desk.document_flows(TEST_DOCTYPE, target.name)
		self.assertTrue(info["is_flow_manager"])
		self.assertIn(name, [f["name"] for f in info["flows"]])
		self.assertEqual([r["name"] for r in info["runs"]], [run])

	def test_run_counts(self):
		flow = make_flow("Desk Counts", STEPS[:1])
		before = desk.run_counts()
		from flow_engine import api

		api.start_run(flow.name, TEST_DOCTYPE, new_test_doc().name)
		after = desk.run_counts()
		self.assertEqual(sum(after.values()), sum(before.values()) + 1)
		self.assertEqual(set(after), {"running", "waiting", "failed", "completed", "cancelled"})

	def test_permissions(self):
		flow = make_flow("Desk Perms", STEPS[:1])
		frappe.set_user(USER)
		for call in (
			lambda: desk.editor_data(flow.name),
			lambda: desk.save_flow(flow.name, {"version": 1, "steps": []}),
			lambda: desk.create_flow(PREFIX + "Desk Nope"),
			lambda: desk.run_counts(),
			lambda: desk.document_flows(TEST_DOCTYPE),
		):
			self.assertRaises(frappe.PermissionError, call)
		frappe.set_user(MANAGER)
		self.assertEqual(desk.editor_data(flow.name)["template"]["name"], flow.name)
		self.assertEqual(desk.document_flows("ToDo")["runs"], [])

	def test_editor_page_and_workspace_are_installed(self):
		self.assertTrue(frappe.db.exists("Page", "flow-editor"))
		roles = set(frappe.get_all("Has Role", filters={"parent": "flow-editor"}, pluck="role"))
		self.assertEqual(roles, {"Flow Manager", "System Manager"})
		workspace = frappe.get_doc("Workspace", "Flow Engine")
		stats = {s.label: json.loads(s.stats_filter) for s in workspace.shortcuts if s.stats_filter}
		self.assertEqual(stats["Running"], {"status": "running"})
		self.assertEqual(stats["Waiting"], {"status": "waiting"})
		self.assertEqual(stats["Failed"], {"status": "failed"})
		hooks = frappe.get_hooks("app_include_js", app_name="flow_engine")
		self.assertIn("flows_menu.bundle.js", hooks)
