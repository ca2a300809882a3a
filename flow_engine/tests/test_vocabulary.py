"""A flow pasted from the design, in the design's vocabulary, through every entry point: it is stored
in the app's own form and runs; unknown keys are refused with the step, the key and a suggestion."""

import json
import os
import tempfile
import unittest
from pathlib import Path

import frappe

from flow_engine import desk, install
from flow_engine.runtime import runs, templates, triggers
from flow_engine.tests.test_commands import bench
from flow_engine.tests.test_webhook import Receiver
from flow_engine.tests.utils import PREFIX, TEST_DOCTYPE, FlowTestCase, make_flow, new_test_doc, run_of


def design_flow(url: str) -> dict:
	"""Written as the design documents it: business event, `condition: ""`, condition fields in the
	payload, webhook `body_template` (JSON text), notify `to` / `body`, erp_update `docname_ref` /
	`fields_json`, step fields with nulls."""
	return {
		"version": 1,
		"trigger": {"event": "on_contract_signed", "condition": "", "applies_to": TEST_DOCTYPE},
		"variables": {"offer": "Fibre 1G"},
		"steps": [
			{
				"id": "is_open",
				"kind": "condition",
				"label": "Still open?",
				"parent_id": None,
				"branch": None,
				"depends_on": [],
				"trigger": {"type": "on_flow_start"},
				"payload": {"field": "doc.status", "op": "==", "value": "Open"},
			},
			{
				"id": "crm",
				"kind": "webhook",
				"label": "Tell the CRM",
				"parent_id": "is_open",
				"branch": "yes",
				"depends_on": [],
				"trigger": {"type": "on_prev_complete"},
				"payload": {
					"url": url,
					"method": "post",
					"body_template": '{"contract": "{{doc.title}}", "amount": {{doc.amount}}, '
					'"offer": "{{variables.offer}}", "run": "{{run.name}}"}',
				},
			},
			{
				"id": "tell",
				"kind": "notify",
				"label": "Tell the owner",
				"parent_id": None,
				"branch": None,
				"depends_on": ["crm"],
				"payload": {
					"channel": "system",
					"to": "{{doc.owner}}",
					"subject": "Contract {{doc.title}} signed",
					"body": "CRM answered {{steps.crm.result.status_code}}",
					"template_id": "",
				},
			},
			{
				"id": "note",
				"kind": "erp_update",
				"label": "Record it",
				"depends_on": ["tell"],
				"payload": {
					"doctype": TEST_DOCTYPE,
					"docname_ref": "{{doc.name}}",
					"fields_json": '{"notes": "synced {{steps.crm.result.status_code}}"}',
				},
			},
		],
	}


class TestDesignVocabulary(FlowTestCase):
	def setUp(self):
		super().setUp()
		frappe.conf.flow_engine_outbound_allow = ["127.0.0.1"]  # the local receiver of these tests

	def tearDown(self):
		frappe.conf.pop("flow_engine_outbound_allow", None)
		super().tearDown()

	def assert_app_form(self, doc):
		"""The stored definition and the form's fields are the app's own: no design key is left."""
		self.assertEqual(
			(doc.trigger_doctype, doc.trigger_event, doc.custom_event, doc.trigger_condition),
			(TEST_DOCTYPE, "custom", "on_contract_signed", None),
		)
		stored = json.loads(doc.flow_definition)
		steps = {step["id"]: step for step in stored["steps"]}
		self.assertEqual(
			steps["is_open"]["payload"], {"condition": {"field": "doc.status", "op": "==", "value": "Open"}}
		)
		self.assertEqual(steps["crm"]["payload"]["method"], "POST")
		self.assertEqual(
			steps["crm"]["payload"]["body"],
			{
				"contract": "{{doc.title}}",
				"amount": "{{doc.amount}}",
				"offer": "{{variables.offer}}",
				"run": "{{run.name}}",
			},
		)
		self.assertNotIn("body_template", steps["crm"]["payload"])
		self.assertEqual(
			steps["tell"]["payload"],
			{
				"channel": "system",
				"recipients": "{{doc.owner}}",
				"subject": "Contract {{doc.title}} signed",
				"message": "CRM answered {{steps.crm.result.status_code}}",
			},
		)
		self.assertEqual(steps["note"]["kind"], "update_doc")
		self.assertEqual(
			steps["note"]["payload"],
			{
				"doctype": TEST_DOCTYPE,
				"name": "{{doc.name}}",
				"fields": {"notes": "synced {{steps.crm.result.status_code}}"},
			},
		)

	def assert_runs(self, template: str, receiver: Receiver):
		"""The business event starts it; the webhook receives the templated body; the rest follows."""
		doc = new_test_doc(title="Contract 7", amount=120.5)
		started = frappe.get_attr("flow_engine.dispatch_event")("on_contract_signed", doc=doc)
		frappe.db.commit()
		self.assertEqual(len(started), 1)
		record = run_of(template)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(len(receiver.requests), 1)
		request = receiver.requests[0]
		self.assertEqual(request["method"], "POST")
		self.assertEqual(request["headers"]["Content-Type"], "application/json")
		self.assertEqual(
			json.loads(request["body"]),
			{"contract": "Contract 7", "amount": 120.5, "offer": "Fibre 1G", "run": record.name},
		)
		self.assertTrue(
			frappe.db.exists(
				"Notification Log",
				{
					"for_user": "Administrator",
					"subject": "Contract Contract 7 signed",
					"document_name": doc.name,
				},
			)
		)
		self.assertEqual(frappe.db.get_value(TEST_DOCTYPE, doc.name, "notes"), "synced 200")

	def test_controller_insert_stores_the_app_form_and_runs(self):
		with Receiver([200]) as receiver:
			doc = frappe.get_doc(
				{
					"doctype": "Flow Template",
					"template_name": PREFIX + "design insert",
					"is_active": 1,
					"flow_definition": json.dumps(design_flow(receiver.url)),
				}
			).insert()
			frappe.db.commit()
			self.assert_app_form(doc)
			version = frappe.get_value(
				"Flow Template Version", {"template": doc.name, "version": doc.version}, "definition"
			)
			self.assertEqual(json.loads(version), json.loads(doc.flow_definition))
			self.assert_runs(doc.name, receiver)

	def test_template_fields_of_the_design_on_insert(self):
		"""applies_to and trigger_event (a business event) as template fields, `trigger_condition: ""`."""
		definition = design_flow("https://crm.example/hook")
		del definition["trigger"]
		doc = frappe.get_doc(
			{
				"doctype": "Flow Template",
				"template_name": PREFIX + "design fields",
				"applies_to": TEST_DOCTYPE,
				"trigger_event": "on_contract_signed",
				"trigger_condition": "",
				"flow_definition": json.dumps(definition),
			}
		).insert()
		self.assert_app_form(doc)
		with self.assertRaises(templates.FlowValidationError) as refused:
			frappe.get_doc(
				{
					"doctype": "Flow Template",
					"template_name": PREFIX + "design conflict",
					"applies_to": "ToDo",
					"trigger_doctype": TEST_DOCTYPE,
					"flow_definition": json.dumps(definition),
				}
			).insert()
		self.assertIn("give the doctype once", str(refused.exception))

	def test_desk_save_flow_stores_the_app_form_and_runs(self):
		frappe.db.commit()
		name = desk.create_flow(PREFIX + "design desk", applies_to=TEST_DOCTYPE)
		self.assertEqual(frappe.db.get_value("Flow Template", name, "trigger_doctype"), TEST_DOCTYPE)
		with Receiver([200]) as receiver:
			result = desk.save_flow(name, json.dumps(design_flow(receiver.url)), is_active=1, publish=1)
			frappe.db.commit()
			self.assertTrue(result["saved"], result["errors"])
			self.assertEqual(
				result["definition"]["steps"][1]["payload"]["method"], "POST"
			)  # the editor shows it
			doc = frappe.get_doc("Flow Template", name)
			self.assert_app_form(doc)
			self.assertEqual(result["definition"], json.loads(doc.flow_definition))
			self.assert_runs(name, receiver)

	def test_editor_import_reads_a_template_export_in_the_design_vocabulary(self):
		definition = design_flow("https://crm.example/hook")
		del definition["trigger"]
		export = {
			"template_name": "Residential onboarding",
			"applies_to": TEST_DOCTYPE,
			"trigger_event": "on_contract_signed",
			"trigger_condition": "",
			"flow_definition": json.dumps(definition),
		}
		imported = desk.import_definition(json.dumps(export))["definition"]
		self.assertEqual(
			imported["trigger"],
			{"doctype": TEST_DOCTYPE, "event": "custom", "custom_event": "on_contract_signed"},
		)
		self.assertEqual(imported["steps"][2]["payload"]["recipients"], "{{doc.owner}}")
		self.assertEqual(templates.validate_definition(imported), [])

	def test_bench_flow_validate_reads_the_design_vocabulary(self):
		definition = design_flow("https://crm.example/hook")
		bare = {key: value for key, value in definition.items() if key != "trigger"}
		export = {"applies_to": TEST_DOCTYPE, "trigger_event": "on_contract_signed", "flow_definition": bare}
		typo = json.loads(json.dumps(definition))
		typo["steps"][2]["payload"]["bdy"] = typo["steps"][2]["payload"].pop("body")
		wrong_field = json.loads(json.dumps(export))  # applies_to reaches the field checks
		wrong_field["flow_definition"]["steps"][2]["payload"]["subject"] = "{{doc.no_such_field}}"
		wrong_event = {**export, "trigger_event": "after_insrt"}  # the export's trigger fields are checked
		files = []
		try:
			for data in (definition, export, typo, wrong_field, wrong_event):
				with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
					json.dump(data, handle)
				files.append(handle.name)
			for path in files[:2]:
				result = bench("validate", path)
				self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
				self.assertIn("valid", result.stdout)
			bad = bench("validate", files[2])
			unknown_field = bench("validate", files[3])
			unknown_event = bench("validate", files[4])
		finally:
			for path in files:
				os.unlink(path)
		self.assertEqual(bad.returncode, 1, bad.stdout)
		self.assertIn("Step 'tell' (Tell the owner) → payload.bdy: unknown key 'bdy'", bad.stdout)
		self.assertIn("did you mean 'body'?", bad.stdout)
		self.assertEqual(unknown_field.returncode, 1, unknown_field.stdout)
		self.assertIn(f"{TEST_DOCTYPE} has no field 'no_such_field'", unknown_field.stdout)
		self.assertEqual(unknown_event.returncode, 1, unknown_event.stdout)
		self.assertIn(
			"trigger.event: unknown event 'after_insrt' (did you mean 'after_insert'?)", unknown_event.stdout
		)

	def test_api_validate_and_dry_run_read_the_design_vocabulary(self):
		from flow_engine import api

		definition = design_flow("https://crm.example/hook")
		self.assertEqual(api.validate(json.dumps(definition)), {"valid": True, "errors": []})
		doc = new_test_doc(title="Dry", amount=3)
		report = api.dry_run(
			definition=json.dumps(definition), reference_doctype=TEST_DOCTYPE, reference_name=doc.name
		)
		crm = next(entry for entry in report["steps"] if entry["step_id"] == "crm")
		self.assertEqual(crm["payload"]["body"]["contract"], "Dry")
		self.assertEqual(crm["payload"]["body"]["amount"], 3)

	def test_seeds_may_use_the_design_template_fields(self):
		definition = design_flow("https://crm.example/hook")
		del definition["trigger"]
		seed = {
			"template_name": PREFIX + "design seed",
			"applies_to": TEST_DOCTYPE,
			"trigger_event": "on_contract_signed",
			"trigger_condition": "",
			"definition": definition,
		}
		shipped = install.SEEDS
		with tempfile.TemporaryDirectory() as folder:
			Path(folder, "design.json").write_text(json.dumps(seed))
			install.SEEDS = Path(folder)
			try:
				created = install.seed_templates()
			finally:
				install.SEEDS = shipped
		self.assertEqual(created, [PREFIX + "design seed"])
		self.assert_app_form(frappe.get_doc("Flow Template", PREFIX + "design seed"))

	def test_unknown_keys_are_refused_on_every_write_path(self):
		definition = design_flow("https://crm.example/hook")
		definition["steps"][2]["payload"]["recipents"] = "x@example.com"
		definition["steps"][0]["lable"] = "typo"
		with self.assertRaises(templates.FlowValidationError) as refused:
			make_flow("design typo", definition["steps"], doctype=TEST_DOCTYPE)
		text = str(refused.exception)
		self.assertIn("Step 'tell' (Tell the owner) → payload.recipents", text)
		self.assertIn("did you mean 'recipients'?", text)
		self.assertIn("Step 'is_open' (Still open?) → lable", text)
		flow = make_flow("design typo desk", [], doctype=TEST_DOCTYPE)
		result = desk.save_flow(flow.name, json.dumps(definition))
		self.assertFalse(result["saved"])
		located = {(error["step_id"], error["field"]) for error in result["errors"]}
		self.assertIn(("tell", "payload.recipents"), located)
		self.assertIn(("is_open", "lable"), located)
		bad_json = design_flow("https://crm.example/hook")
		bad_json["steps"][3]["payload"]["fields_json"] = '{"notes": }'
		result = desk.save_flow(flow.name, json.dumps(bad_json))
		self.assertIn(
			("note", "payload.fields_json"),
			{(error["step_id"], error["field"]) for error in result["errors"]},
		)

	def test_trigger_conditions_read_the_flows_variables_and_the_event_payload(self):
		condition = {"==": [{"var": "variables.region"}, "north"]}
		north = make_flow(
			"design north",
			[{"id": "w", "kind": "wait"}],
			event="after_insert",
			condition=condition,
			variables={"region": "north"},
		).name
		south = make_flow(
			"design south",
			[{"id": "w", "kind": "wait"}],
			event="after_insert",
			condition=condition,
			variables={"region": "south"},
		).name
		event = make_flow(
			"design paid",
			[{"id": "w", "kind": "wait"}],
			event="custom",
			custom_event="order_paid",
			condition={">=": [{"var": "variables.amount"}, 100]},
			variables={"amount": 0},
		).name
		triggers.clear_trigger_map()
		doc = new_test_doc(title="Regions")
		frappe.db.commit()
		self.assertIsNotNone(run_of(north))
		self.assertIsNone(run_of(south))
		self.assertEqual(triggers.dispatch_event("order_paid", doc=doc, payload={"amount": 20}), [])
		self.assertEqual(len(triggers.dispatch_event("order_paid", doc=doc, payload={"amount": 150})), 1)
		self.assertIsNotNone(run_of(event))


@unittest.skipUnless("erpnext" in frappe.get_installed_apps(), "ERPNext is not installed on this site")
class TestDesignVocabularyWithERPNext(FlowTestCase):
	"""issue → an ERPNext Issue for the trigger's customer; dispatch_job → a Task assigned to the
	members of a User Group; notify SMS with `template_id` → the Email Template's text."""

	def setUp(self):
		super().setUp()
		for doctype, name in (
			("Issue Priority", "High"),
			("Issue Type", "Install"),
			("Task Type", "Installation"),
		):
			if not frappe.db.exists(doctype, name):
				frappe.get_doc({"doctype": doctype}).insert(ignore_permissions=True, set_name=name)
		if not frappe.db.exists("User Group", PREFIX + "Techs"):
			frappe.get_doc(
				{"doctype": "User Group", "user_group_members": [{"user": "Administrator"}]}
			).insert(ignore_permissions=True, set_name=PREFIX + "Techs")
		if not frappe.db.exists("Email Template", PREFIX + "Welcome SMS"):
			frappe.get_doc(
				{
					"doctype": "Email Template",
					"name": PREFIX + "Welcome SMS",
					"subject": "Welcome",
					"response": "<p>Welcome {{ customer_name }} &amp; thanks</p>",
				}
			).insert(ignore_permissions=True)
		self.customer = frappe.get_doc(
			{"doctype": "Customer", "customer_name": "Ada [flowtest]", "customer_type": "Individual"}
		).insert(ignore_permissions=True, ignore_mandatory=True)
		frappe.db.commit()

	def tearDown(self):
		for doctype in ("Issue", "Task"):
			for name in frappe.get_all(doctype, filters={"subject": ["like", "%[flowtest]%"]}, pluck="name"):
				frappe.delete_doc(doctype, name, force=True, ignore_permissions=True)
		frappe.db.delete("ToDo", {"reference_type": "Task", "description": ["like", "%[flowtest]%"]})
		frappe.delete_doc("Customer", self.customer.name, force=True, ignore_permissions=True)
		frappe.db.commit()
		super().tearDown()

	def test_issue_dispatch_job_and_sms_template(self):
		steps = [
			{
				"id": "ticket",
				"kind": "issue",
				"payload": {
					"subject": "Install for {{doc.customer_name}} [flowtest]",
					"description": "New contract",
					"priority": "high",
					"issue_type": "Install",
				},
			},
			{
				"id": "job",
				"kind": "dispatch_job",
				"label": "Installation",
				"depends_on": ["ticket"],
				"payload": {
					"subject": "Installation {{doc.customer_name}} [flowtest]",
					"job_type": "Installation",
					"priority": "medium",
					"duration_h": 2,
					"assigned_group": PREFIX + "Techs",
					"merge_key": "",
				},
			},
			{
				"id": "sms",
				"kind": "notify",
				"depends_on": ["job"],
				"payload": {"channel": "sms", "to": "+1 555 0100", "template_id": PREFIX + "Welcome SMS"},
			},
		]
		with Receiver([200]) as gateway:
			settings = frappe.get_single("SMS Settings")
			saved = settings.as_dict()
			settings.update(
				{"sms_gateway_url": gateway.url, "message_parameter": "text", "receiver_parameter": "to"}
			)
			settings.save(ignore_permissions=True)
			try:
				template = make_flow("design erpnext", steps, doctype="Customer").name
				self.assertEqual(
					[
						step["id"]
						for step in json.loads(
							frappe.db.get_value("Flow Template", template, "flow_definition")
						)["steps"]
					],
					["ticket", "job", "job_assign", "sms"],
				)
				name = runs.start_run(template, doc=self.customer)
				frappe.db.commit()
				record = run_of(template)
				self.assertEqual(record.name, name)
				self.assertEqual(record.status, "completed", record.error)
			finally:
				for key in ("sms_gateway_url", "message_parameter", "receiver_parameter"):
					frappe.db.set_single_value("SMS Settings", key, saved.get(key))
				frappe.db.commit()
		issue = frappe.get_doc("Issue", record.states["ticket"]["result"]["name"])
		self.assertEqual(
			(issue.subject, issue.priority, issue.issue_type, issue.customer),
			("Install for Ada [flowtest] [flowtest]", "High", "Install", self.customer.name),
		)
		task = frappe.get_doc("Task", record.states["job"]["result"]["name"])
		self.assertEqual(
			(task.subject, task.type, task.priority, task.expected_time),
			("Installation Ada [flowtest] [flowtest]", "Installation", "Medium", 2),
		)
		self.assertEqual(record.states["job_assign"]["result"]["assigned"], ["Administrator"])
		self.assertIn(
			"Administrator",
			json.loads(task.get("_assign") or frappe.db.get_value("Task", task.name, "_assign")),
		)
		self.assertEqual(len(gateway.requests), 1)
		query = gateway.requests[0]["path"]
		self.assertIn("text=Welcome+Ada+%5Bflowtest%5D+%26+thanks", query)
