"""The design's business events raised from real ERPNext documents, and its example flows (seeds)."""

import datetime
import json
import unittest

import frappe
from frappe.utils import add_days, nowdate

from flow_engine.engine import business_events
from flow_engine.install import SEEDS, seed_templates
from flow_engine.runtime import triggers
from flow_engine.runtime.templates import validate_definition
from flow_engine.tests.utils import PREFIX, FlowTestCase, make_flow, run_of, runs_of

TAG = "[flowtest-be]"


def listen(event: str, doctype: str, variables: list[str]) -> str:
	"""An active flow on business event `event` whose one step copies the event's variables."""
	return make_flow(
		event,
		[
			{
				"id": "copy",
				"kind": "set_variables",
				"payload": {"variables": {f"seen_{v}": f"{{{{variables.{v}}}}}" for v in variables}},
			}
		],
		doctype=doctype,
		event=event,  # the design's form: a business event as the trigger event
	).name


def first(doctype: str, filters=None) -> str:
	name = frappe.db.get_value(doctype, filters or {}, "name")
	assert name, f"this site has no {doctype} {filters or ''} (run erpnext.setup.utils.before_tests)"
	return name


@unittest.skipUnless("erpnext" in frappe.get_installed_apps(), "ERPNext is not installed on this site")
class TestBusinessEvents(FlowTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.company = frappe.defaults.get_global_default("company") or first("Company")
		customer = frappe.db.get_value("Customer", {"customer_name": f"Ada {TAG}"}, "name")
		if not customer:
			customer = (
				frappe.get_doc(
					{
						"doctype": "Customer",
						"customer_name": f"Ada {TAG}",
						"customer_type": "Individual",
						"customer_group": first("Customer Group", {"is_group": 0}),
						"territory": first("Territory", {"is_group": 0}),
					}
				)
				.insert(ignore_permissions=True)
				.name
			)
		cls.customer = customer
		if not frappe.db.exists("Item", "_Test Flow BE Item"):
			frappe.get_doc(
				{
					"doctype": "Item",
					"item_code": "_Test Flow BE Item",
					"item_group": first("Item Group", {"is_group": 0}),
					"stock_uom": first("UOM", {"name": "Nos"}),
					"is_stock_item": 0,
				}
			).insert(ignore_permissions=True)
		frappe.db.commit()

	def assert_started(self, template: str, customer: str | None, expected: dict):
		record = run_of(template)
		self.assertIsNotNone(record, f"no run of {template}")
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.customer, customer)
		for key, value in expected.items():
			self.assertEqual(record.variables.get(key), value, key)  # the event's variables
			self.assertEqual(record.variables.get(f"seen_{key}"), value, key)  # as steps read them
		return record

	def test_the_editor_offers_them_and_the_map_costs_nothing_without_listeners(self):
		from flow_engine.desk import editor_data

		template = make_flow("editor", [], doctype=None, event="manual").name
		offered = {row["name"] for row in editor_data(template)["business_events"]}
		self.assertEqual(offered, set(business_events.NAMES))
		triggers.clear_trigger_map()
		self.assertNotIn("Contract", triggers.get_trigger_map()["doctypes"])
		listen("on_contract_signed", "Contract", ["contract"])
		triggers.clear_trigger_map()
		self.assertEqual(
			triggers.get_trigger_map()["doctypes"]["Contract"]["business_events"],
			{"on_change": ["on_contract_signed"]},
		)

	def test_customer_created(self):
		template = listen("on_customer_created", "Customer", ["customer_name", "customer_type"])
		customer = frappe.get_doc(
			{
				"doctype": "Customer",
				"customer_name": f"Bob {TAG}",
				"customer_type": "Company",
				"customer_group": first("Customer Group", {"is_group": 0}),
				"territory": first("Territory", {"is_group": 0}),
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()
		try:
			self.assert_started(
				template, customer.name, {"customer_name": f"Bob {TAG}", "customer_type": "Company"}
			)
			customer.save()  # a later save is not a creation
			frappe.db.commit()
			self.assertEqual(len(runs_of(template)), 1)
		finally:
			frappe.delete_doc("Customer", customer.name, force=True, ignore_permissions=True)
			frappe.db.commit()

	def test_contract_signed_when_is_signed_turns_on(self):
		template = listen("on_contract_signed", "Contract", ["contract", "signed_at"])
		contract = frappe.get_doc(
			{
				"doctype": "Contract",
				"party_type": "Customer",
				"party_name": self.customer,
				"contract_terms": f"Fibre {TAG}",
				"start_date": nowdate(),
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()
		self.assertEqual(runs_of(template), [], "an unsigned contract is not signed")
		contract.is_signed = 1
		contract.signed_on = "2026-05-01 10:00:00"
		contract.save(ignore_permissions=True)
		frappe.db.commit()
		self.assert_started(
			template, self.customer, {"contract": contract.name, "signed_at": "2026-05-01 10:00:00"}
		)
		contract.contract_terms += " (amended)"
		contract.save(ignore_permissions=True)  # still signed: not signed again
		frappe.db.commit()
		self.assertEqual(len(runs_of(template)), 1)
		frappe.delete_doc("Contract", contract.name, force=True, ignore_permissions=True)
		frappe.db.commit()

	def test_issue_opened(self):
		template = listen("on_issue_opened", "Issue", ["subject", "issue"])
		issue = frappe.get_doc(
			{"doctype": "Issue", "subject": f"No signal {TAG}", "customer": self.customer}
		).insert(ignore_permissions=True)
		frappe.db.commit()
		self.assert_started(template, self.customer, {"subject": f"No signal {TAG}", "issue": issue.name})
		frappe.delete_doc("Issue", issue.name, force=True, ignore_permissions=True)
		frappe.db.commit()

	def make_quotation(self):
		return frappe.get_doc(
			{
				"doctype": "Quotation",
				"quotation_to": "Customer",
				"party_name": self.customer,
				"company": self.company,
				"transaction_date": nowdate(),
				"valid_till": add_days(nowdate(), 30),
				"items": [{"item_code": "_Test Flow BE Item", "qty": 2, "rate": 50}],
			}
		).insert(ignore_permissions=True)

	def test_quotation_created_and_accepted(self):
		from erpnext.selling.doctype.quotation.quotation import make_sales_order

		created = listen("on_quotation_created", "Quotation", ["quotation", "grand_total"])
		accepted = listen("on_quotation_accepted", "Quotation", ["quotation"])
		quotation = self.make_quotation()
		frappe.db.commit()
		self.assert_started(created, self.customer, {"quotation": quotation.name, "grand_total": 100.0})
		quotation.submit()
		frappe.db.commit()
		self.assertEqual(runs_of(accepted), [], "submitted is not accepted")
		order = make_sales_order(quotation.name)
		order.delivery_date = add_days(nowdate(), 7)
		for row in order.items:
			row.delivery_date = order.delivery_date
		order.insert(ignore_permissions=True)
		order.submit()  # ERPNext sets the quotation Ordered with db_set
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("Quotation", quotation.name, "status"), "Ordered")
		record = self.assert_started(accepted, self.customer, {"quotation": quotation.name})
		self.assertTrue(record.variables.get("accepted_at"))
		self.assertEqual(len(runs_of(created)), 1)
		order.cancel()
		quotation.reload()
		quotation.cancel()
		frappe.db.commit()

	def draft_payment(self, amount: float, reference: str):
		"""A customer's payment received, inserted as a draft."""
		company = frappe.get_cached_doc("Company", self.company)
		return frappe.get_doc(
			{
				"doctype": "Payment Entry",
				"payment_type": "Receive",
				"company": self.company,
				"posting_date": nowdate(),
				"party_type": "Customer",
				"party": self.customer,
				"paid_from": company.default_receivable_account,
				"paid_to": company.default_cash_account,
				"paid_amount": amount,
				"received_amount": amount,
				"source_exchange_rate": 1,
				"target_exchange_rate": 1,
				"reference_no": reference,
				"reference_date": nowdate(),
			}
		).insert(ignore_permissions=True)

	def test_payment_received(self):
		template = listen("on_payment_received", "Payment Entry", ["amount", "payment_intent"])
		entry = self.draft_payment(120.5, "pi_123")
		frappe.db.commit()
		self.assertEqual(runs_of(template), [], "a draft is not a payment")
		entry.submit()
		frappe.db.commit()
		self.assert_started(template, self.customer, {"amount": 120.5, "payment_intent": "pi_123"})
		entry.cancel()
		frappe.db.commit()

	def test_the_payment_received_example_flow_runs_end_to_end(self):
		"""The design's example, as shipped (its own vocabulary), activated and run on a real payment."""
		seed_templates()
		flow = frappe.get_doc("Flow Template", "Payment Received")
		flow.is_active = 1
		flow.save()  # activated by Administrator: it runs as Administrator
		frappe.db.set_value("Customer", self.customer, "email_id", "ada.flowtest@example.com")
		frappe.conf.mail_server = frappe.conf.get("mail_server") or "localhost"  # emails are only queued
		frappe.db.commit()
		entry = None
		try:
			entry = self.draft_payment(1500, "pi_example")
			entry.submit()
			frappe.db.commit()
			record = run_of("Payment Received", reference_name=entry.name)
			self.assertIsNotNone(record, "the business event started the example flow")
			self.assertEqual(record.status, "completed", record.error)
			self.assertEqual(record.states["large"]["result"]["branch"], "yes")
			mail = frappe.get_all(
				"Email Queue",
				filters={"reference_doctype": "Payment Entry", "reference_name": entry.name},
				fields=["message"],
			)
			self.assertEqual(len(mail), 1, "the customer is thanked once")
			self.assertIn("we received your payment of 1500", mail[0].message)
			self.assertTrue(
				frappe.db.exists(
					"Notification Log",
					{"document_name": entry.name, "subject": ["like", "Large payment from%"]},
				),
				"the payment's author is told of a large payment",
			)
		finally:
			frappe.conf.pop("mail_server", None) if frappe.conf.get("mail_server") == "localhost" else None
			frappe.db.rollback()
			frappe.db.set_value("Flow Template", "Payment Received", "is_active", 0)
			if entry is not None and frappe.db.get_value("Payment Entry", entry.name, "docstatus") == 1:
				frappe.get_doc("Payment Entry", entry.name).cancel()
			frappe.db.commit()
			triggers.clear_trigger_map()

	def activate_example(self, name: str):
		"""Activate a shipped example flow (as Administrator: it runs as Administrator)."""
		seed_templates()
		flow = frappe.get_doc("Flow Template", name)
		flow.is_active = 1
		flow.save()
		frappe.conf.mail_server = frappe.conf.get("mail_server") or "localhost"  # emails are only queued
		frappe.db.commit()

	def deactivate_example(self, name: str):
		if frappe.conf.get("mail_server") == "localhost":
			frappe.conf.pop("mail_server", None)
		frappe.db.rollback()
		frappe.db.set_value("Flow Template", name, "is_active", 0)
		frappe.db.commit()
		triggers.clear_trigger_map()

	def emails_for(self, doctype: str, name: str) -> list[str]:
		return frappe.get_all(
			"Email Queue",
			filters={"reference_doctype": doctype, "reference_name": name},
			pluck="message",
			order_by="creation asc",
		)

	def test_the_residential_onboarding_example_flow_runs_end_to_end(self):
		"""Signing a contract for a (cancelled) subscription: the installation is dispatched to the
		"Tech Targo" group, the customer gets the welcome SMS, the subscription is active again; the
		survey goes 24 h later and the renewal reminder 335 days later (fired with a moved clock)."""
		from flow_engine.runtime import scheduler
		from flow_engine.runtime.clock import now as site_now
		from flow_engine.tests.test_webhook import Receiver

		made = []
		if not frappe.db.exists("Task Type", "Installation"):
			frappe.get_doc({"doctype": "Task Type"}).insert(ignore_permissions=True, set_name="Installation")
			made.append(("Task Type", "Installation"))
		if not frappe.db.exists("User Group", "Tech Targo"):
			frappe.get_doc(
				{"doctype": "User Group", "user_group_members": [{"user": "Administrator"}]}
			).insert(ignore_permissions=True, set_name="Tech Targo")
			made.append(("User Group", "Tech Targo"))
		frappe.db.set_value(
			"Customer",
			self.customer,
			{"mobile_no": "+15550100", "email_id": "ada.flowtest@example.com"},
		)
		started = frappe.utils.now_datetime()
		subscription = self.make_subscription()
		subscription.cancel_subscription()
		self.assertEqual(frappe.db.get_value("Subscription", subscription.name, "status"), "Cancelled")
		contract = frappe.get_doc(
			{
				"doctype": "Contract",
				"party_type": "Customer",
				"party_name": self.customer,
				"contract_terms": f"Fibre 1 Gb {TAG}",
				"start_date": nowdate(),
			}
		).insert(ignore_permissions=True)
		frappe.db.delete("Email Queue", {"reference_doctype": "Contract", "reference_name": contract.name})
		settings = frappe.get_single("SMS Settings")
		saved = {
			key: settings.get(key) for key in ("sms_gateway_url", "message_parameter", "receiver_parameter")
		}
		self.activate_example("Residential Onboarding")
		record = None
		try:
			with Receiver([200]) as gateway:
				settings.update(
					{"sms_gateway_url": gateway.url, "message_parameter": "text", "receiver_parameter": "to"}
				)
				settings.save(ignore_permissions=True)
				frappe.db.commit()
				contract.is_signed = 1
				contract.signed_on = "2026-05-01 10:00:00"
				contract.save(ignore_permissions=True)
				frappe.db.commit()
			record = run_of("Residential Onboarding", reference_name=contract.name)
			self.assertIsNotNone(record, "signing the contract started the example flow")
			self.assertEqual(record.customer, self.customer)
			self.assertEqual(record.status, "waiting", record.error)  # the survey and the renewal wait
			task = frappe.get_doc("Task", record.states["install"]["result"]["name"])
			self.assertEqual(
				(task.subject, task.type, task.priority, task.expected_time),
				(f"Installation Ada {TAG}", "Installation", "Medium", 2),
			)
			self.assertIn("Administrator", json.loads(frappe.db.get_value("Task", task.name, "_assign")))
			self.assertEqual(len(gateway.requests), 1, "one welcome SMS")
			self.assertIn("to=%2B15550100", gateway.requests[0]["path"])
			self.assertIn("Welcome+Ada", gateway.requests[0]["path"])
			self.assertEqual(record.states["has_subscription"]["result"]["branch"], "yes")
			self.assertEqual(frappe.db.get_value("Subscription", subscription.name, "status"), "Active")
			self.assertEqual(self.emails_for("Contract", contract.name), [])

			scheduler.drain_due(inline=True, now=site_now() + datetime.timedelta(hours=23))
			self.assertEqual(self.emails_for("Contract", contract.name), [], "not before 24 h")
			scheduler.drain_due(inline=True, now=site_now() + datetime.timedelta(hours=25))
			frappe.db.commit()
			mails = self.emails_for("Contract", contract.name)
			self.assertEqual(len(mails), 1)
			self.assertIn("How was your installation?", mails[0])
			scheduler.drain_due(inline=True, now=site_now() + datetime.timedelta(days=336))
			frappe.db.commit()
			mails = self.emails_for("Contract", contract.name)
			self.assertEqual(len(mails), 2)
			self.assertIn("renews next month", mails[1])
			self.assertIn("2026-05-01 10:00:00", mails[1])
			record = run_of("Residential Onboarding", reference_name=contract.name)
			self.assertEqual(record.status, "completed", record.error)
			self.assertEqual(
				frappe.db.count(
					"Flow Run",
					{
						"template": "Residential Onboarding",
						"reference_name": contract.name,
						"creation": [">=", started],
					},
				),
				1,
				"signed once, started once",
			)
		finally:
			for key, value in saved.items():
				frappe.db.set_single_value("SMS Settings", key, value)
			self.deactivate_example("Residential Onboarding")
			if record and record.states.get("install", {}).get("result"):
				frappe.delete_doc("Task", record.states["install"]["result"]["name"], force=True)
			frappe.delete_doc("Contract", contract.name, force=True, ignore_permissions=True)
			self.drop_subscription(subscription.name)
			for doctype, name in made:
				frappe.delete_doc(doctype, name, force=True, ignore_permissions=True)
			frappe.db.commit()

	def test_the_quotation_accepted_example_flow_runs_end_to_end(self):
		"""A quotation turned into a sales order: three emails to its contact, at D+3, D+7 and D+14."""
		from erpnext.selling.doctype.quotation.quotation import make_sales_order

		from flow_engine.runtime import scheduler
		from flow_engine.runtime.clock import now as site_now

		self.activate_example("Quotation Accepted Follow-up")
		quotation = order = None
		try:
			quotation = self.make_quotation()
			quotation.db_set("contact_email", "ada.flowtest@example.com")
			quotation.reload()
			quotation.submit()
			order = make_sales_order(quotation.name)
			order.delivery_date = add_days(nowdate(), 7)
			for row in order.items:
				row.delivery_date = order.delivery_date
			order.insert(ignore_permissions=True)
			order.submit()
			frappe.db.commit()
			record = run_of("Quotation Accepted Follow-up", reference_name=quotation.name)
			self.assertIsNotNone(record, "accepting the quotation started the example flow")
			self.assertEqual((record.status, record.customer), ("waiting", self.customer), record.error)
			self.assertEqual(self.emails_for("Quotation", quotation.name), [])
			expected = ["Thank you for your order", "Your order is on its way", "How are we doing?"]
			for sent, days in enumerate((3, 7, 14), start=1):
				scheduler.drain_due(inline=True, now=site_now() + datetime.timedelta(days=days, hours=-1))
				frappe.db.commit()
				self.assertEqual(
					len(self.emails_for("Quotation", quotation.name)), sent - 1, f"not before D+{days}"
				)
				scheduler.drain_due(inline=True, now=site_now() + datetime.timedelta(days=days, hours=1))
				frappe.db.commit()
				mails = self.emails_for("Quotation", quotation.name)
				self.assertEqual(len(mails), sent, f"D+{days}")
				self.assertIn(expected[sent - 1], mails[-1])
				latest = frappe.get_all(
					"Email Queue",
					filters={"reference_name": quotation.name},
					pluck="name",
					order_by="creation desc",
				)[0]
				recipients = frappe.get_all(
					"Email Queue Recipient", filters={"parent": latest}, pluck="recipient"
				)
				self.assertEqual(recipients, ["ada.flowtest@example.com"])
			self.assertIn(quotation.name, mails[0])
			record = run_of("Quotation Accepted Follow-up", reference_name=quotation.name)
			self.assertEqual(record.status, "completed", record.error)
		finally:
			self.deactivate_example("Quotation Accepted Follow-up")
			if order is not None and frappe.db.get_value("Sales Order", order.name, "docstatus") == 1:
				frappe.get_doc("Sales Order", order.name).cancel()
			if quotation is not None and frappe.db.get_value("Quotation", quotation.name, "docstatus") == 1:
				frappe.get_doc("Quotation", quotation.name).cancel()
			frappe.db.commit()

	def make_subscription(self):
		plan = "_Test Flow BE Plan"
		if not frappe.db.exists("Subscription Plan", plan):
			frappe.get_doc(
				{
					"doctype": "Subscription Plan",
					"plan_name": plan,
					"item": "_Test Flow BE Item",
					"price_determination": "Fixed Rate",
					"cost": 30,
					"currency": frappe.get_cached_value("Company", self.company, "default_currency"),
					"billing_interval": "Month",
					"billing_interval_count": 1,
				}
			).insert(ignore_permissions=True)
		return frappe.get_doc(
			{
				"doctype": "Subscription",
				"party_type": "Customer",
				"party": self.customer,
				"company": self.company,
				"start_date": nowdate(),
				"plans": [{"plan": plan, "qty": 1}],
			}
		).insert(ignore_permissions=True)

	def drop_subscription(self, name: str):
		"""Delete a subscription and the invoices it made (deleting the newest name reverts its naming
		series, and a next subscription under that name would inherit their outstanding amounts)."""
		for invoice in frappe.get_all("Sales Invoice", filters={"subscription": name}, pluck="name"):
			doc = frappe.get_doc("Sales Invoice", invoice)
			if doc.docstatus == 1:
				doc.cancel()
			frappe.delete_doc("Sales Invoice", invoice, force=True, ignore_permissions=True)
		frappe.delete_doc("Subscription", name, force=True, ignore_permissions=True)

	def test_subscription_active(self):
		template = listen("on_subscription_active", "Subscription", ["subscription", "plan"])
		plan = "_Test Flow BE Plan"
		subscription = self.make_subscription()
		frappe.db.commit()
		self.assertEqual(subscription.status, "Active")
		self.assert_started(template, self.customer, {"subscription": subscription.name, "plan": plan})
		self.drop_subscription(subscription.name)
		frappe.db.commit()

	def test_dispatch_completed_with_the_projects_customer(self):
		template = listen("on_dispatch_completed", "Task", ["job", "subject"])
		project = frappe.get_doc(
			{"doctype": "Project", "project_name": f"Install {TAG} {frappe.generate_hash(length=6)}"}
		)
		project.customer = self.customer
		project.insert(ignore_permissions=True)
		task = frappe.get_doc(
			{"doctype": "Task", "subject": f"Install fibre {TAG}", "project": project.name}
		).insert(ignore_permissions=True)
		frappe.db.commit()
		self.assertEqual(runs_of(template), [])
		task.status = "Completed"
		task.completed_on = nowdate()
		task.save(ignore_permissions=True)
		frappe.db.commit()
		self.assert_started(template, self.customer, {"job": task.name, "subject": f"Install fibre {TAG}"})
		frappe.delete_doc("Task", task.name, force=True, ignore_permissions=True)
		frappe.delete_doc("Project", project.name, force=True, ignore_permissions=True)
		frappe.db.commit()

	def test_a_listener_on_another_doctype_is_not_started(self):
		template = listen("on_issue_opened", "Contract", ["subject"])  # applies_to Contract
		issue = frappe.get_doc({"doctype": "Issue", "subject": f"Other {TAG}"}).insert(
			ignore_permissions=True
		)
		frappe.db.commit()
		self.assertEqual(runs_of(template), [])
		frappe.delete_doc("Issue", issue.name, force=True, ignore_permissions=True)
		frappe.db.commit()


DESIGN_SEEDS = {
	"residential_onboarding": "Residential Onboarding",
	"quotation_accepted_follow_up": "Quotation Accepted Follow-up",
	"payment_received": "Payment Received",
}


@unittest.skipUnless("erpnext" in frappe.get_installed_apps(), "ERPNext is not installed on this site")
class TestDesignExampleFlows(FlowTestCase):
	def test_seeded_inactive_and_valid_against_real_doctypes(self):
		seed_templates()
		for file, name in DESIGN_SEEDS.items():
			doc = frappe.get_doc("Flow Template", name)
			self.assertEqual((doc.is_system, doc.is_active), (1, 0), name)
			raw = json.loads((SEEDS / f"{file}.json").read_text())["definition"]
			self.assertEqual(doc.trigger_event, "custom", name)
			self.assertEqual(doc.custom_event, raw["trigger"]["event"], name)
			self.assertEqual(validate_definition(doc.flow_definition, doc.trigger_doctype), [], name)

	def test_save_export_import_gives_the_same_plan(self):
		from flow_engine.api import dry_run
		from flow_engine.desk import create_flow, import_definition, save_flow

		seed_templates()  # saved (from the design's vocabulary)
		for name in DESIGN_SEEDS.values():
			original = frappe.get_doc("Flow Template", name)
			exported = frappe.as_json(original.as_dict())  # a Flow Template export
			definition = import_definition(exported)["definition"]  # the editor's Import JSON
			copy = create_flow(PREFIX + name)
			self.assertTrue(save_flow(copy, json.dumps(definition), publish=1)["saved"], name)
			copied = frappe.get_doc("Flow Template", copy)
			self.assertEqual(json.loads(original.flow_definition), json.loads(copied.flow_definition), name)
			self.assertEqual(
				(original.trigger_doctype, original.trigger_event, original.custom_event),
				(copied.trigger_doctype, copied.trigger_event, copied.custom_event),
				name,
			)
			plan = dry_run(template=name)
			self.assertTrue(plan["steps"], name)
			self.assertEqual(plan, dry_run(template=copy), name)
