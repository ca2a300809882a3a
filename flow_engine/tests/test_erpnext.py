import unittest

import frappe

from flow_engine.install import seed_templates
from flow_engine.runtime.templates import validate_definition
from flow_engine.tests.utils import FlowTestCase, make_flow, run_of


@unittest.skipUnless("erpnext" in frappe.get_installed_apps(), "ERPNext is not installed on this site")
class TestWithERPNext(FlowTestCase):
	def test_seeded_erpnext_flows_validate_against_real_doctypes(self):
		seed_templates()
		for name in ("Quotation Follow-up", "Issue Triage"):
			doc = frappe.get_doc("Flow Template", name)
			self.assertEqual(validate_definition(doc.flow_definition, doc.trigger_doctype), [], name)

	def test_issue_flow_runs_on_an_issue(self):
		template = make_flow(
			"issue",
			[
				{
					"id": "urgent",
					"kind": "condition",
					"payload": {"condition": {"field": "doc.priority", "op": "==", "value": "High"}},
				},
				{
					"id": "note",
					"kind": "comment",
					"parent_id": "urgent",
					"branch": "yes",
					"payload": {"text": "urgent: {{doc.subject}}"},
				},
			],
			doctype="Issue",
			event="after_insert",
		).name
		if not frappe.db.exists("Issue Priority", "High"):
			frappe.get_doc({"doctype": "Issue Priority", "name": "High"}).insert(ignore_permissions=True)
		issue = frappe.get_doc(
			{
				"doctype": "Issue",
				"subject": "Printer on fire [flowtest]",
				"priority": "High",
				"raised_by": "customer@example.com",
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()
		record = run_of(template)
		self.assertEqual(record.status, "completed", record.error)
		self.assertTrue(
			frappe.db.exists(
				"Comment", {"reference_name": issue.name, "content": "urgent: Printer on fire [flowtest]"}
			)
		)
		frappe.delete_doc("Issue", issue.name, force=True, ignore_permissions=True)
		frappe.db.commit()

	def test_subscription_activate_reports_missing_subscriptions(self):
		from flow_engine.runtime import runs, store

		template = make_flow(
			"subscription",
			[
				{
					"id": "s",
					"kind": "subscription_activate",
					"payload": {"subscription": "{{input.subscription}}"},
				}
			],
			doctype=None,
		).name
		name = runs.start_run(template, input={"subscription": "NO-SUCH-SUB"})
		frappe.db.commit()
		self.assertIn("Subscription 'NO-SUCH-SUB' does not exist", store.load_run(name).error)
