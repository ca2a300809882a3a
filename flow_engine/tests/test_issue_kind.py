"""The `issue` kind on ERPNext: a real Issue for the run's customer, written in the design's payload;
an unknown priority or type fails the step before anything is inserted."""

import frappe

from flow_engine.runtime import runs
from flow_engine.tests.test_design_api import CUSTOMER, ensure_customer
from flow_engine.tests.utils import FlowTestCase, make_flow, run_of

SUBJECT = "[flowtest] Install"


def ensure(doctype: str, name: str) -> None:
	if not frappe.db.exists(doctype, name):
		frappe.get_doc({"doctype": doctype}).insert(set_name=name, ignore_permissions=True)


class TestIssueKind(FlowTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		if not frappe.db.exists("DocType", "Issue"):
			raise cls.skipTest(cls, "needs ERPNext (Issue)")
		ensure("Issue Priority", "Medium")
		ensure("Issue Type", "Install")
		ensure_customer()
		frappe.db.commit()

	def tearDown(self):
		frappe.db.delete("Issue", {"subject": ["like", SUBJECT + "%"]})
		frappe.db.commit()
		super().tearDown()

	def run_issue(self, payload: dict):
		template = make_flow(
			"issue kind", [{"id": "ticket", "kind": "issue", "payload": payload}], doctype="Customer"
		)
		runs.start_run(template.name, doc=frappe.get_doc("Customer", CUSTOMER))
		frappe.db.commit()
		return run_of(template.name)

	def issues(self):
		return frappe.get_all(
			"Issue",
			filters={"subject": ["like", SUBJECT + "%"]},
			fields=["name", "subject", "description", "priority", "issue_type", "customer"],
		)

	def test_opens_an_issue_for_the_trigger_documents_customer(self):
		record = self.run_issue(
			{
				"subject": SUBJECT + " {{doc.customer_name}}",
				"description": "Fibre install",
				"priority": "medium",  # the design writes it in lower case
				"issue_type": "Install",
			}
		)
		self.assertEqual(record.status, "completed", record.error)
		[issue] = self.issues()
		self.assertEqual(
			(issue.subject, issue.priority, issue.issue_type, issue.customer),
			(f"{SUBJECT} {CUSTOMER}", "Medium", "Install", CUSTOMER),
		)
		self.assertIn("Fibre install", issue.description)
		self.assertEqual(
			record.states["ticket"]["result"], {"doctype": "Issue", "name": issue.name, "customer": CUSTOMER}
		)

	def assert_refused(self, payload: dict, words: list[str]) -> None:
		record = self.run_issue(payload)
		self.assertEqual(record.status, "failed", payload)
		for word in words:
			self.assertIn(word, record.error)
		self.assertEqual(self.issues(), [])  # nothing inserted

	def test_an_unknown_priority_fails_before_inserting(self):
		self.assert_refused(
			{"subject": SUBJECT, "priority": "Urgentissimo"},
			["priority 'Urgentissimo'", "'priority'", "Medium"],
		)

	def test_an_unknown_type_fails_before_inserting(self):
		self.assert_refused(
			{"subject": SUBJECT, "issue_type": "Nope"}, ["issue type 'Nope'", "'issue_type'", "Install"]
		)

	def test_an_unknown_customer_fails_before_inserting(self):
		self.assert_refused(
			{"subject": SUBJECT, "customer": "No Such Customer"}, ["Customer 'No Such Customer'"]
		)


class TestIssueKindOnHelpdesk(FlowTestCase):
	"""With Helpdesk installed, `issue` opens an HD Ticket (its priority, ticket type and HD Customer)."""

	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		if "helpdesk" not in frappe.get_installed_apps():
			raise cls.skipTest(cls, "needs Helpdesk (HD Ticket)")
		if not frappe.db.exists("HD Customer", "Ada [flowtest]"):
			frappe.get_doc({"doctype": "HD Customer", "customer_name": "Ada [flowtest]"}).insert(
				ignore_permissions=True
			)
		frappe.db.commit()

	def tearDown(self):
		frappe.db.delete("HD Ticket", {"subject": ["like", SUBJECT + "%"]})
		frappe.db.commit()
		super().tearDown()

	def run_issue(self, payload: dict):
		template = make_flow(
			"hd ticket", [{"id": "ticket", "kind": "issue", "payload": payload}], doctype=None
		)
		runs.start_run(template.name)
		frappe.db.commit()
		return run_of(template.name)

	def test_opens_an_hd_ticket_for_the_customer(self):
		record = self.run_issue(
			{
				"subject": SUBJECT + " on Helpdesk",
				"description": "Fibre install",
				"priority": "high",
				"issue_type": "Bug",
				"customer": "Ada [flowtest]",
			}
		)
		self.assertEqual(record.status, "completed", record.error)
		result = record.states["ticket"]["result"]
		self.assertEqual(result["doctype"], "HD Ticket")
		ticket = frappe.get_doc("HD Ticket", result["name"])
		self.assertEqual(
			(ticket.subject, ticket.priority, ticket.ticket_type, ticket.customer),
			(SUBJECT + " on Helpdesk", "High", "Bug", "Ada [flowtest]"),
		)
		self.assertIn("Fibre install", ticket.description)
		self.assertFalse(frappe.db.exists("DocType", "Issue"), "a Frappe + Helpdesk site: no ERPNext Issue")

	def test_an_unknown_priority_names_the_choices_and_opens_nothing(self):
		record = self.run_issue({"subject": SUBJECT + " unknown", "priority": "whenever"})
		self.assertEqual(record.status, "failed")
		self.assertIn("Unknown priority 'whenever'", record.error)
		self.assertIn("HD Ticket Priority", record.error)
		self.assertFalse(frappe.db.exists("HD Ticket", {"subject": SUBJECT + " unknown"}))
