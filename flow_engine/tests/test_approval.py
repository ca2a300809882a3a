"""Approvals on real ERPNext documents: a Quotation approval with a 48 h timeout and escalation after
24 h, both decisions and their branches, who may decide, two concurrent decisions, the signed email
links and reminders. Time is moved by moving the pending rows' trigger_at into the past."""

import unittest

import frappe
from frappe.utils import add_days, add_to_date, now_datetime, nowdate

from flow_engine.api import approvals as api
from flow_engine.engine.validation import validate
from flow_engine.runtime import approvals, runs, scheduler, steps, store
from flow_engine.tests.test_concurrency import race
from flow_engine.tests.utils import FlowTestCase, cleanup, ensure_user, make_flow, run_of

TAG = "[flowtest]"
APPROVER = "approver.flowtest-approval@example.com"
SECOND = "second.flowtest-approval@example.com"
BOSS = "boss.flowtest-approval@example.com"
OUTSIDER = "outsider.flowtest-approval@example.com"
USERS = (APPROVER, SECOND, BOSS, OUTSIDER, "manager.flowtest-approval@example.com")
ITEM = "_Test Flow Approval Item"


def first(doctype: str, filters=None) -> str:
	name = frappe.db.get_value(doctype, filters or {}, "name")
	assert name, f"this site has no {doctype} {filters or ''}"
	return name


def approval_flow(name: str, event: str = "manual", extra=(), **payload) -> str:
	"""approve → approved / rejected / timed_out children, each making a ToDo that names the run."""
	children = [
		{
			"id": branch,
			"kind": "create_doc",
			"parent_id": "approve",
			"branch": branch,
			"payload": {
				"doctype": "ToDo",
				"fields": {"description": f"{branch} {{{{doc.name}}}} {{{{run.name}}}} {TAG}"},
			},
		}
		for branch in ("approved", "rejected", "timed_out")
	]
	step = {
		"id": "approve",
		"kind": "approval",
		"label": "Manager approval",
		"payload": {"subject": f"Approve {{{{doc.name}}}} {TAG}", "approvers": [APPROVER], **payload},
	}
	return make_flow(name, [step, *children, *extra], doctype="Quotation", event=event).name


def branch_todos(run: str) -> list[str]:
	rows = frappe.get_all("ToDo", filters={"description": ["like", f"%{run}%"]}, pluck="description")
	return sorted(row.split(" ")[0] for row in rows)


def move_due(run: str, purpose: str) -> None:
	"""Time passes: the run's pending rows of `purpose` are due now."""
	frappe.db.sql(
		"update `tabFlow Step Pending` set trigger_at=%s where run=%s and purpose=%s and status='pending'",
		(add_to_date(now_datetime(), minutes=-1), run, purpose),
	)
	frappe.db.commit()


@unittest.skipUnless("erpnext" in frappe.get_installed_apps(), "ERPNext is not installed on this site")
class TestApproval(FlowTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		for user in USERS:
			ensure_user(user, ["Sales User"])
		cls.company = frappe.defaults.get_global_default("company") or first("Company")
		customer = frappe.db.get_value("Customer", {"customer_name": f"Approvals {TAG}"}, "name")
		if not customer:
			customer = (
				frappe.get_doc(
					{
						"doctype": "Customer",
						"customer_name": f"Approvals {TAG}",
						"customer_type": "Company",
						"customer_group": first("Customer Group", {"is_group": 0}),
						"territory": first("Territory", {"is_group": 0}),
					}
				)
				.insert(ignore_permissions=True)
				.name
			)
		cls.customer = customer
		if not frappe.db.exists("Item", ITEM):
			frappe.get_doc(
				{
					"doctype": "Item",
					"item_code": ITEM,
					"item_group": first("Item Group", {"is_group": 0}),
					"stock_uom": first("UOM", {"name": "Nos"}),
					"is_stock_item": 0,
				}
			).insert(ignore_permissions=True)
		frappe.db.commit()

	def setUp(self):
		super().setUp()
		self.quotations = []

	def tearDown(self):
		frappe.set_user("Administrator")
		frappe.db.rollback()
		approvals_ = frappe.get_all("Flow Approval", filters={"subject": ["like", f"%{TAG}%"]}, pluck="name")
		if approvals_:
			frappe.db.delete(
				"ToDo", {"reference_type": "Flow Approval", "reference_name": ["in", approvals_]}
			)
			frappe.db.delete("Flow Approval Approver", {"parent": ["in", approvals_]})
			frappe.db.delete("Flow Approval", {"name": ["in", approvals_]})
			frappe.db.delete("Version", {"ref_doctype": "Flow Approval", "docname": ["in", approvals_]})
			mails = frappe.get_all(
				"Email Queue",
				filters={"reference_doctype": "Flow Approval", "reference_name": ["in", approvals_]},
				pluck="name",
			)
			if mails:
				frappe.db.delete("Email Queue Recipient", {"parent": ["in", mails]})
				frappe.db.delete("Email Queue", {"name": ["in", mails]})
		frappe.db.delete("Notification Log", {"for_user": ["in", USERS]})
		for name in self.quotations:
			doc = frappe.get_doc("Quotation", name)
			if doc.docstatus == 1:
				doc.cancel()
			frappe.delete_doc("Quotation", name, force=True, ignore_permissions=True)
		frappe.db.commit()
		cleanup()

	def quotation(self, submit: bool = False):
		doc = frappe.get_doc(
			{
				"doctype": "Quotation",
				"quotation_to": "Customer",
				"party_name": self.customer,
				"company": self.company,
				"transaction_date": nowdate(),
				"valid_till": add_days(nowdate(), 30),
				"items": [{"item_code": ITEM, "qty": 3, "rate": 400}],
			}
		).insert(ignore_permissions=True)
		self.quotations.append(doc.name)
		if submit:
			doc.submit()
		frappe.db.commit()
		return doc

	def start(self, template: str) -> tuple[str, str]:
		"""A run of `template` on a fresh Quotation, parked at its approval: (run, approval)."""
		quotation = self.quotation()
		run = runs.start_run(template, doc=quotation)
		frappe.db.commit()
		state = store.load_run(run).states["approve"]
		self.assertEqual((state["status"], state["waiting_for"]), ("waiting", "approval"), state)
		return run, state["approval"]

	def as_user(self, user, method, *args, **kwargs):
		frappe.set_user(user)
		try:
			return method(*args, **kwargs)
		finally:
			frappe.set_user("Administrator")

	def open_todos(self, approval: str) -> list[str]:
		return sorted(
			frappe.get_all(
				"ToDo",
				filters={"reference_type": "Flow Approval", "reference_name": approval, "status": "Open"},
				pluck="allocated_to",
			)
		)

	# ---------------------------------------------------------------- the issue's scenario

	def test_a_quotation_approval_with_a_48_h_timeout_escalation(self):
		template = approval_flow(
			"quotation approval",
			event="on_submit",
			escalate_after_hours=24,
			escalate_to=BOSS,
			timeout_hours=48,
		)
		quotation = self.quotation(submit=True)  # the flow starts on submit
		record = run_of(template)
		self.assertIsNotNone(record, "submitting the Quotation starts the flow")
		self.assertEqual(record.status, "waiting", record.error)
		approval = frappe.get_doc("Flow Approval", record.states["approve"]["approval"])
		self.assertEqual(
			(approval.status, approval.reference_doctype, approval.reference_name, approval.flow),
			("Pending", "Quotation", quotation.name, template),
		)
		self.assertEqual([row.user for row in approval.approvers], [APPROVER])
		hours = lambda moment: round((moment - approval.creation).total_seconds() / 3600)  # noqa: E731
		self.assertEqual((hours(approval.escalate_at), hours(approval.expires_at)), (24, 48))
		self.assertEqual(self.open_todos(approval.name), [APPROVER], "assigned: in the approver's to-do list")
		self.assertEqual([row.name for row in self.as_user(APPROVER, api.my_approvals)], [approval.name])
		self.assertEqual(self.as_user(BOSS, api.my_approvals), [], "not the boss's yet")
		rows = frappe.get_all(
			"Flow Step Pending", filters={"run": record.name, "status": "pending"}, pluck="purpose"
		)
		self.assertEqual(sorted(rows), ["escalation", "timeout"])

		move_due(record.name, "escalation")  # 24 hours later
		scheduler.drain_due(inline=True)
		approval.reload()
		self.assertTrue(approval.escalated)
		self.assertEqual([(row.user, row.added_by) for row in approval.approvers][-1], (BOSS, "escalation"))
		self.assertEqual(self.open_todos(approval.name), [APPROVER, BOSS])
		self.assertTrue(
			frappe.db.exists("Notification Log", {"for_user": BOSS, "document_name": approval.name}),
			"the boss is told",
		)
		self.assertEqual([row.name for row in self.as_user(BOSS, api.my_approvals)], [approval.name])
		self.assertEqual(store.load_run(record.name).status, "waiting", "escalation does not decide")

		move_due(record.name, "timeout")  # 48 hours later, nobody decided
		scheduler.drain_due(inline=True)
		record = store.load_run(record.name)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(
			record.states["approve"]["result"], {"branch": "timed_out", "decided_by": None, "comment": None}
		)
		self.assertEqual(branch_todos(record.name), ["timed_out"], "only the timed_out branch ran")
		self.assertEqual(frappe.db.get_value("Flow Approval", approval.name, "status"), "Timed Out")
		self.assertEqual(self.open_todos(approval.name), [], "the approvers' to-dos are closed")
		self.assertEqual(self.as_user(APPROVER, api.my_approvals), [])
		with self.assertRaises(approvals.AlreadyDecided):
			self.as_user(APPROVER, api.approve, approval.name)

	# ---------------------------------------------------------------- decisions

	def test_approve_runs_the_approved_branch(self):
		run, approval = self.start(approval_flow("approve", timeout_hours=48))
		outcome = self.as_user(APPROVER, api.approve, approval, comment="fine by me")
		frappe.db.commit()
		self.assertEqual(outcome["status"], "Approved")
		record = store.load_run(run)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(
			record.states["approve"]["result"],
			{"branch": "approved", "decided_by": APPROVER, "comment": "fine by me"},
		)
		self.assertEqual(branch_todos(run), ["approved"])
		self.assertEqual(
			frappe.db.get_value("Flow Approval", approval, ["status", "decided_by", "comment"]),
			("Approved", APPROVER, "fine by me"),
		)
		self.assertEqual(self.open_todos(approval), [])
		self.assertEqual(
			frappe.get_all("Flow Step Pending", filters={"run": run, "status": "pending"}),
			[],
			"timeout dropped",
		)
		quotation = store.load_run(run).reference_name
		frappe.delete_doc("Quotation", quotation)  # the approval (history) never blocks it
		self.quotations.remove(quotation)
		self.assertTrue(frappe.db.exists("Flow Approval", approval))

	def test_reject_runs_the_rejected_branch(self):
		run, approval = self.start(approval_flow("reject", role="Sales User", approvers=[]))
		members = frappe.get_doc("Flow Approval", approval).approvers
		self.assertIn(SECOND, [row.user for row in members], "a role's enabled users approve")
		self.as_user(SECOND, api.reject, approval, comment="too expensive")
		frappe.db.commit()
		record = store.load_run(run)
		self.assertEqual(record.states["approve"]["result"]["branch"], "rejected")
		self.assertEqual(record.states["approve"]["result"]["decided_by"], SECOND)
		self.assertEqual(branch_todos(run), ["rejected"])
		self.assertEqual(record.status, "completed", record.error)

	def test_an_approver_named_by_template(self):
		template = approval_flow("by template", approvers=[], approver="{{doc.owner}}")
		quotation = self.as_user(APPROVER, self.quotation)  # the approver owns the Quotation
		run = runs.start_run(template, doc=quotation)
		frappe.db.commit()
		approval = store.load_run(run).states["approve"]["approval"]
		self.assertEqual(approvals.approvers_of(approval), [APPROVER])

	def test_a_user_who_is_not_an_approver_is_refused(self):
		run, approval = self.start(approval_flow("outsider"))
		with self.assertRaises(frappe.PermissionError):
			self.as_user(OUTSIDER, api.approve, approval, comment="let me")
		frappe.db.rollback()
		self.assertEqual(frappe.db.get_value("Flow Approval", approval, "status"), "Pending")
		self.assertEqual(store.load_run(run).states["approve"]["status"], "waiting")
		self.assertFalse(frappe.has_permission("Flow Approval", "read", doc=approval, user=OUTSIDER))
		self.assertTrue(frappe.has_permission("Flow Approval", "read", doc=approval, user=APPROVER))
		self.assertEqual(self.as_user(OUTSIDER, frappe.get_list, "Flow Approval", pluck="name"), [])
		self.assertEqual(self.as_user(APPROVER, frappe.get_list, "Flow Approval", pluck="name"), [approval])
		self.assertEqual(self.as_user(OUTSIDER, api.my_approvals), [])
		manager = ensure_user("manager.flowtest-approval@example.com", ["System Manager"])
		self.as_user(manager, api.reject, approval, comment="overruled")  # a System Manager may decide
		frappe.db.commit()
		self.assertEqual(
			store.load_run(run).states["approve"]["result"],
			{"branch": "rejected", "decided_by": manager, "comment": "overruled"},
		)

	def test_two_concurrent_decisions_decide_once(self):
		run, approval = self.start(approval_flow("race", approvers=[APPROVER, SECOND]))
		code = (
			f"APPROVAL = {approval!r}\n"
			"from flow_engine.runtime import approvals\n"
			"frappe.flags.flow_engine_inline = True\n"
			"user, action = sys.argv[1].split(':')\n"
			"frappe.set_user(user)\n"
			"try:\n"
			"\tapprovals.decide(APPROVAL, action, 'race')\n"
			"\tfrappe.db.commit()\n"
			"\tprint('decided', action)\n"
			"except approvals.AlreadyDecided:\n"
			"\tfrappe.db.rollback()\n"
			"\tprint('refused', action)\n"
		)
		outputs = race(code, [f"{APPROVER}:approve", f"{SECOND}:reject"])
		results = sorted(out.strip().splitlines()[-1] for out in outputs)
		self.assertEqual([line.split()[0] for line in results], ["decided", "refused"], outputs)
		winner = next(line.split()[1] for line in results if line.startswith("decided"))
		branch = {"approve": "approved", "reject": "rejected"}[winner]
		record = store.load_run(run)
		self.assertEqual(record.states["approve"]["result"]["branch"], branch)
		self.assertEqual(branch_todos(run), [branch], "one branch ran, once")
		self.assertEqual(
			frappe.db.get_value("Flow Approval", approval, "status"), branch.capitalize(), "decided once"
		)
		self.assertEqual(
			frappe.db.count("Flow Step Attempt", {"run": run, "step_id": "approve", "status": "completed"}), 1
		)

	# ---------------------------------------------------------------- email links

	def test_an_email_link_approves_once_and_a_tampered_one_is_refused(self):
		run, approval = self.start(approval_flow("email", send_email=1, approvers=[APPROVER, SECOND]))
		mails = frappe.get_all(
			"Email Queue",
			filters={"reference_doctype": "Flow Approval", "reference_name": approval},
			pluck="name",
		)
		self.assertEqual(len(mails), 2, "one email per approver")
		token = approvals.link_token(approval, APPROVER, "approve")
		self.assertIn("token=", approvals.link_url(approval, APPROVER, "approve"))
		tampered = [
			(approval, APPROVER, "approve", token[:-1] + ("A" if token[-1] != "A" else "B")),  # changed MAC
			(approval, APPROVER, "reject", token),  # another action
			(approval, SECOND, "approve", token),  # another approver
			(approval, OUTSIDER, "approve", approvals.link_token(approval, OUTSIDER, "approve")),  # not one
			("nope", APPROVER, "approve", token),
			(approval, APPROVER, "approve", None),
		]
		for args in tampered:
			with self.assertRaises(approvals.LinkRejected, msg=str(args)):
				approvals.decide_by_link(*args)
		frappe.db.rollback()
		self.assertEqual(frappe.db.get_value("Flow Approval", approval, "status"), "Pending")

		expires = frappe.db.get_value("Flow Approval", approval, "expires_at")
		frappe.db.set_value("Flow Approval", approval, "expires_at", add_to_date(now_datetime(), minutes=-1))
		with self.assertRaises(approvals.LinkRejected, msg="a link expires with its approval"):
			approvals.decide_by_link(approval, APPROVER, "approve", token)
		frappe.db.set_value("Flow Approval", approval, "expires_at", expires)
		frappe.db.commit()
		self.respond("GET", approval, APPROVER, "approve", token)  # the confirmation page decides nothing
		self.assertIn("<form method='POST'", frappe.local.message)
		self.assertEqual(frappe.db.get_value("Flow Approval", approval, "status"), "Pending")
		self.respond("POST", approval, APPROVER, "approve", token, comment="from my phone")
		self.assertNotEqual(frappe.local.response.get("http_status_code"), 403, frappe.local.message)
		frappe.db.commit()
		record = store.load_run(run)
		self.assertEqual(
			record.states["approve"]["result"],
			{"branch": "approved", "decided_by": APPROVER, "comment": "from my phone"},
		)
		self.assertEqual(branch_todos(run), ["approved"])
		self.respond("POST", approval, APPROVER, "approve", token)  # the same link again
		self.assertEqual(frappe.local.response.get("http_status_code"), 403, "a link works once")
		self.assertIn("not valid", frappe.local.message)
		self.assertEqual(branch_todos(run), ["approved"])

	def respond(self, method: str, *args, comment=None) -> None:
		from werkzeug.test import EnvironBuilder
		from werkzeug.wrappers import Request

		frappe.local.request = Request(EnvironBuilder(method=method).get_environ())
		frappe.local.request_ip = "127.0.0.1"
		frappe.local.response = frappe._dict()
		frappe.local.message = None
		frappe.set_user("Guest")
		try:
			api.respond(*args, comment=comment)
		finally:
			frappe.set_user("Administrator")
			frappe.local.request = None

	# ---------------------------------------------------------------- reminders, cancelling

	def test_reminders_notify_only_pending_approvers(self):
		hold = {"id": "hold", "kind": "wait", "trigger": {"type": "manual"}}  # the run stays open
		template = approval_flow("remind", remind_after_hours=12, timeout_hours=48, extra=[hold])
		decided_run, decided = self.start(template)
		pending_run, pending = self.start(
			approval_flow("remind second", remind_after_hours=12, timeout_hours=48, approvers=[SECOND])
		)
		self.as_user(APPROVER, api.approve, decided)
		frappe.db.commit()
		self.assertEqual(store.load_run(decided_run).status, "waiting", "still open: its row is fired")
		frappe.db.delete("Notification Log", {"for_user": ["in", USERS]})
		frappe.db.commit()
		for run in (decided_run, pending_run):
			frappe.db.sql(  # also the decided one's cancelled row: it must not notify anybody
				"update `tabFlow Step Pending` set trigger_at=%s, status='pending' where run=%s and purpose='reminder'",
				(add_to_date(now_datetime(), minutes=-1), run),
			)
		frappe.db.commit()
		scheduler.drain_due(inline=True)
		reminded = frappe.get_all(
			"Notification Log", filters={"for_user": ["in", USERS]}, fields=["for_user", "document_name"]
		)
		self.assertEqual([(row.for_user, row.document_name) for row in reminded], [(SECOND, pending)])
		row = frappe.get_all(
			"Flow Step Pending",
			filters={"run": pending_run, "purpose": "reminder"},
			fields=["status", "trigger_at"],
		)[0]
		self.assertEqual(row.status, "pending", "armed again for the next reminder")
		self.assertGreater(row.trigger_at, add_to_date(now_datetime(), hours=11))
		self.assertEqual(frappe.db.get_value("Flow Approval", pending, "reminders_sent"), 1)
		self.assertEqual(store.load_run(pending_run).status, "waiting")

	def test_cancelling_the_run_closes_its_approval(self):
		run, approval = self.start(approval_flow("cancel", timeout_hours=48))
		runs.cancel_run(run)
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("Flow Approval", approval, "status"), "Cancelled")
		self.assertEqual(self.open_todos(approval), [])
		with self.assertRaises(approvals.AlreadyDecided):
			self.as_user(APPROVER, api.approve, approval)

	def test_a_failed_run_retried_asks_again(self):
		run, approval = self.start(approval_flow("retry", timeout_hours=48))
		record = runs.locked(run)
		steps.fail_run(record, "Step 'other' failed: boom")  # as a failing parallel step would
		runs.save(record)
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("Flow Approval", approval, "status"), "Cancelled")
		self.assertEqual(self.open_todos(approval), [])
		runs.retry_run(run)
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("Flow Approval", approval, "status"), "Pending")
		self.assertEqual(self.open_todos(approval), [APPROVER])
		self.assertEqual(
			frappe.get_all("Flow Step Pending", filters={"run": run, "status": "pending"}, pluck="purpose"),
			["timeout"],
		)
		self.as_user(APPROVER, api.approve, approval)
		frappe.db.commit()
		self.assertEqual(store.load_run(run).status, "completed")
		self.assertEqual(branch_todos(run), ["approved"])

	def test_my_approvals_page_is_open_to_approvers(self):
		frappe.set_user(OUTSIDER)
		try:
			self.assertTrue(frappe.get_doc("Page", "my-approvals").is_permitted())
		finally:
			frappe.set_user("Administrator")

	def test_validation_names_the_step_and_field(self):
		definition = {
			"version": 1,
			"steps": [
				{"id": "ask", "kind": "approval", "payload": {"subject": "x", "timeout_hours": -2}},
				{"id": "late", "kind": "wait", "parent_id": "ask", "branch": "expired"},
			],
		}
		found = {(issue.step_id, issue.field) for issue in validate(definition)}
		self.assertIn(("ask", "payload.approvers"), found)
		self.assertIn(("ask", "payload.timeout_hours"), found)
		self.assertIn(("late", "branch"), found)
