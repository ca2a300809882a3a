import json

import frappe

from flow_engine.runtime import store
from flow_engine.runtime.publishing import publish
from flow_engine.runtime.templates import FlowValidationError
from flow_engine.tests.utils import PREFIX, TEST_DOCTYPE, FlowTestCase, make_flow, new_test_doc, run_of

TODO = {
	"id": "s1",
	"kind": "create_doc",
	"payload": {"doctype": "ToDo", "fields": {"description": "x [flowtest]"}},
}


class TestFlowTemplate(FlowTestCase):
	def test_invalid_definitions_are_refused_with_step_and_field(self):
		bad = [
			{"id": "s1", "kind": "create_doc", "label": "Make", "payload": {"fields": {}}},
			{"id": "s1", "kind": "teleport"},
		]
		with self.assertRaises(FlowValidationError) as error:
			make_flow("invalid", bad)
		text = str(error.exception)
		self.assertIn("Step 's1' (Make) → payload.doctype", text)
		self.assertIn("duplicate step id", text)
		self.assertFalse(frappe.db.exists("Flow Template", PREFIX + "invalid"))

	def test_malformed_json_is_refused(self):
		doc = frappe.get_doc(
			{"doctype": "Flow Template", "template_name": PREFIX + "json", "flow_definition": '{"steps": [}'}
		)
		with self.assertRaises(Exception) as error:
			doc.insert()
		self.assertIn("not valid JSON", str(error.exception))

	def test_unknown_doctype_field_and_template_path(self):
		with self.assertRaises(FlowValidationError) as error:
			make_flow(
				"fields",
				[
					{
						"id": "a",
						"kind": "create_doc",
						"payload": {"doctype": "No Such Type", "fields": {"x": 1}},
					},
					{
						"id": "b",
						"kind": "create_doc",
						"payload": {"doctype": "ToDo", "fields": {"colour": "red"}},
					},
					{
						"id": "c",
						"kind": "update_doc",
						"payload": {"fields": {"status": "{{doc.no_such_field}}"}},
					},
				],
			)
		text = str(error.exception)
		self.assertIn("DocType 'No Such Type' does not exist", text)
		self.assertIn("'colour' is not a field of ToDo", text)
		self.assertIn("has no field 'no_such_field'", text)

	def test_version_bumps_only_when_the_definition_changes(self):
		doc = make_flow("versions", [TODO])
		self.assertEqual(doc.version, 1)
		doc.description = "only the description"
		doc.save()
		self.assertEqual(doc.version, 1)
		definition = json.loads(doc.flow_definition)
		definition["steps"][0]["label"] = "renamed"
		doc.flow_definition = json.dumps(definition)
		doc.save()
		self.assertEqual((doc.version, doc.has_draft), (1, 1), "an edit is a draft")
		publish(doc.name)
		doc.reload()
		self.assertEqual((doc.version, doc.has_draft), (2, 0))
		self.assertEqual(doc.step_count, 1)
		self.assertTrue(frappe.db.exists("Flow Template Version", {"template": doc.name, "version": 2}))

	def test_trigger_fields_and_definition_stay_in_sync(self):
		doc = frappe.get_doc(
			{
				"doctype": "Flow Template",
				"template_name": PREFIX + "sync",
				"flow_definition": json.dumps(
					{
						"trigger": {
							"doctype": "ToDo",
							"event": "after_insert",
							"condition": {"field": "status", "op": "==", "value": "Open"},
						},
						"steps": [TODO],
					}
				),
			}
		).insert()
		self.assertEqual((doc.trigger_doctype, doc.trigger_event), ("ToDo", "after_insert"))
		self.assertEqual(json.loads(doc.trigger_condition)["value"], "Open")
		doc.trigger_event = "on_update"
		doc.save()
		self.assertEqual(json.loads(doc.draft_definition)["trigger"]["event"], "on_update")
		self.assertEqual(doc.trigger_event, "after_insert", "the published trigger stays until Publish")
		publish(doc.name)
		doc.reload()
		self.assertEqual(doc.trigger_event, "on_update")
		self.assertEqual(json.loads(doc.flow_definition)["trigger"]["event"], "on_update")

	def test_runs_are_pinned_to_their_version(self):
		doc = make_flow(
			"pinned",
			[
				{"id": "park", "kind": "wait", "trigger": {"type": "manual"}},
				{
					"id": "make",
					"kind": "create_doc",
					"depends_on": ["park"],
					"payload": {"doctype": "ToDo", "fields": {"description": "v1 [flowtest]"}},
				},
			],
		)
		from flow_engine.runtime import runs

		run = runs.start_run(doc.name, source="user")
		frappe.db.commit()
		definition = json.loads(doc.flow_definition)
		definition["steps"][1]["payload"]["fields"]["description"] = "v2 [flowtest]"
		doc.flow_definition = json.dumps(definition)
		doc.save()
		publish(doc.name)
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("Flow Template", doc.name, "version"), 2)
		runs.complete_step(run, "park")
		frappe.db.commit()
		record = store.load_run(run)
		self.assertEqual((record.status, record.template_version), ("completed", 1))
		todo = record.states["make"]["result"]["name"]
		self.assertEqual(frappe.db.get_value("ToDo", todo, "description"), "v1 [flowtest]")

	def test_system_templates_cannot_be_deleted_or_renamed_but_can_be_duplicated(self):
		from flow_engine.runtime.templates import duplicate

		doc = make_flow("system", [TODO])
		frappe.db.set_value("Flow Template", doc.name, "is_system", 1)
		doc.reload()
		with self.assertRaises(frappe.PermissionError):
			doc.delete()
		with self.assertRaises(frappe.PermissionError):
			frappe.rename_doc("Flow Template", doc.name, PREFIX + "system renamed")
		copy = duplicate(doc.name, PREFIX + "system copy")
		copied = frappe.get_doc("Flow Template", copy)
		self.assertEqual((copied.is_system, copied.is_active, copied.version), (0, 0, 1))

	def test_payload_schema_must_be_a_schema(self):
		with self.assertRaises(FlowValidationError):
			make_flow("schema", [TODO], payload_schema=json.dumps({"type": "nonsense"}))

	def test_run_input_is_checked_against_the_payload_schema(self):
		from flow_engine.runtime import runs

		schema = {"type": "object", "required": ["segment"], "properties": {"segment": {"type": "string"}}}
		doc = make_flow("input", [TODO], doctype=None, payload_schema=json.dumps(schema))
		with self.assertRaises(runs.FlowRunError) as error:
			runs.start_run(doc.name, source="api", input={"segment": 5})
		self.assertIn("segment", str(error.exception))
		name = runs.start_run(doc.name, source="api", input={"segment": "retail"})
		frappe.db.commit()
		self.assertEqual(store.load_run(name).status, "completed")

	def test_flow_on_test_doctype_reads_doc_fields(self):
		doc = make_flow(
			"fields ok",
			[{"id": "c", "kind": "comment", "payload": {"text": "{{doc.title}}"}}],
			event="after_insert",
		)
		new_test_doc(title="hello")
		frappe.db.commit()
		record = run_of(doc.name)
		self.assertEqual(record.status, "completed")
		self.assertEqual(record.reference_doctype, TEST_DOCTYPE)

	def test_deleting_a_flow_keeps_its_finished_runs_readable(self):
		from flow_engine import api
		from flow_engine.runtime import runs

		doc = make_flow("deleted", [TODO], doctype=None)
		name = runs.start_run(doc.name)
		frappe.db.commit()
		waiting = make_flow(
			"busy", [{"id": "m", "kind": "wait", "trigger": {"type": "manual"}}], doctype=None
		)
		runs.start_run(waiting.name)
		frappe.db.commit()
		with self.assertRaises(frappe.LinkExistsError):
			waiting.delete()
		doc.delete()
		frappe.db.commit()
		self.assertEqual(api.get_run(name)["status"], "completed")
		again = make_flow("deleted", [TODO], doctype=None)
		self.assertEqual(again.version, 2, "a re-created flow continues the version numbers")
