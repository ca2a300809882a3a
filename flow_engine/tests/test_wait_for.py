"""wait_for: steps resumed by real document events and custom events, exactly once, or by their timeout."""

import tempfile
import unittest

import frappe
from frappe.utils import add_days, add_to_date, now_datetime, nowdate

from flow_engine.kinds.registry import get_catalog
from flow_engine.runtime import runs, scheduler, site_checks, store, triggers, waits
from flow_engine.tests.utils import (
	BARRIER,
	PREFIX,
	TEST_DOCTYPE,
	FlowTestCase,
	make_flow,
	new_test_doc,
	run_burst_worker,
	run_in_subprocess,
	run_of,
)

ITEM = "_Test Flow Wait Item"


def outcome_steps(wait_payload: dict, **wait_extra) -> list:
	"""A wait_for step `w` whose event and timeout branches each record which one ran."""
	return [
		{"id": "w", "kind": "wait_for", "payload": wait_payload, **wait_extra},
		{
			"id": "on_event",
			"kind": "set_variables",
			"parent_id": "w",
			"branch": "event",
			"payload": {"variables": {"outcome": "event", "by": "{{steps.w.result.name}}"}},
		},
		{
			"id": "on_timeout",
			"kind": "set_variables",
			"parent_id": "w",
			"branch": "timeout",
			"payload": {"variables": {"outcome": "timeout"}},
		},
	]


def wait_row(run: str) -> dict:
	return frappe.db.get_value("Flow Wait", {"run": run}, "*", as_dict=True)


class WaitTestCase(FlowTestCase):
	def tearDown(self):
		super().tearDown()  # rolls back, then deletes the test flows and their runs
		frappe.db.delete("Flow Wait", {"template": ["like", PREFIX + "%"]})
		frappe.db.commit()
		waits.clear_cache()

	def start(self, template: str, doc=None) -> str:
		name = runs.start_run(template, doc=doc)
		frappe.db.commit()
		return name


class TestWaitFor(WaitTestCase):
	def test_parks_with_rendered_filters_and_a_timeout_row(self):
		doc = new_test_doc(title="watched")
		template = make_flow(
			"park",
			outcome_steps(
				{
					"doctype": TEST_DOCTYPE,
					"event": "on_update",
					"filters": {"title": "{{doc.title}}", "status": "Closed"},
					"timeout_hours": 2,
				}
			),
		).name
		run = self.start(template, doc)
		record = store.load_run(run)
		state = record.states["w"]
		self.assertEqual(
			(record.status, state["status"], state["waiting_for"]), ("waiting", "waiting", "event")
		)
		row = wait_row(run)
		self.assertEqual(row.status, "waiting")
		self.assertEqual((row.document_type, row.event), (TEST_DOCTYPE, "on_update"))
		self.assertEqual(store.loads(row.filters), {"title": "watched", "status": "Closed"})
		self.assertEqual(state["wait"], row.name)
		pending = frappe.db.get_value(
			"Flow Step Pending", state["timeout_row"], ["purpose", "status", "trigger_at"], as_dict=True
		)
		self.assertEqual((pending.purpose, pending.status), ("timeout", "pending"))
		self.assertEqual(pending.trigger_at, row.expires_at)
		self.assertIn(f"doc:{TEST_DOCTYPE}", waits.waited())

	def test_unrelated_documents_and_events_do_not_resume(self):
		doc = new_test_doc(title="mine")
		template = make_flow(
			"unrelated",
			outcome_steps(
				{
					"doctype": TEST_DOCTYPE,
					"event": "on_update",
					"filters": {"title": "{{doc.title}}"},
					"condition": {"field": "status", "op": "==", "value": "Closed"},
				}
			),
		).name
		run = self.start(template, doc)
		other = new_test_doc(title="someone else's", status="Closed")  # after_insert, then filters differ
		other.save()
		doc.reload()
		doc.notes = "still open"
		doc.save()  # filters hold, the condition does not
		frappe.db.commit()
		doc.reload()
		doc.submit()  # the right document, but on_submit is not the awaited event
		frappe.db.commit()
		self.assertEqual(store.load_run(run).states["w"]["status"], "waiting")
		self.assertEqual(wait_row(run).status, "waiting")
		doc.reload()
		doc.status = "Closed"
		doc.save()  # on_update_after_submit: still not on_update
		frappe.db.commit()
		self.assertEqual(store.load_run(run).states["w"]["status"], "waiting")

	def test_a_matching_save_resumes_after_commit_and_a_rollback_resumes_nothing(self):
		doc = new_test_doc(title="closing")
		template = make_flow(
			"resume",
			outcome_steps(
				{
					"doctype": TEST_DOCTYPE,
					"event": "on_update",
					"filters": {"title": "{{doc.title}}"},
					"condition": {"field": "status", "op": "==", "value": "Closed"},
					"timeout_hours": 24,
				}
			),
		).name
		run = self.start(template, doc)
		timeout_row = store.load_run(run).states["w"]["timeout_row"]
		doc.reload()
		doc.status = "Closed"
		doc.save()
		frappe.db.rollback()  # the save never happened: neither did its resume
		self.assertEqual(wait_row(run).status, "waiting")
		self.assertEqual(store.load_run(run).states["w"]["status"], "waiting")
		doc.reload()
		doc.status = "Closed"
		doc.save()
		self.assertEqual(store.load_run(run).states["w"]["status"], "waiting", "not before commit")
		frappe.db.commit()
		record = store.load_run(run)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(
			record.states["w"]["result"], {"branch": "event", "doctype": TEST_DOCTYPE, "name": doc.name}
		)
		self.assertEqual(record.variables, {"outcome": "event", "by": doc.name})
		self.assertEqual(record.states["on_timeout"]["status"], "skipped")
		row = wait_row(run)
		self.assertEqual(
			(row.status, row.matched_doctype, row.matched_name), ("done", TEST_DOCTYPE, doc.name)
		)
		self.assertEqual(frappe.db.get_value("Flow Step Pending", timeout_row, "status"), "cancelled")

	def test_workers_resume_it_when_runs_are_not_inline(self):
		doc = new_test_doc(title="queued")
		template = make_flow(
			"worker",
			outcome_steps(
				{"doctype": TEST_DOCTYPE, "event": "on_update", "filters": {"name": "{{doc.name}}"}}
			),
		).name
		run = self.start(template, doc)
		frappe.flags.flow_engine_inline = False
		doc.reload()
		doc.save()
		frappe.db.commit()  # the resume is a job now
		self.assertEqual(wait_row(run).status, "done")
		self.assertEqual(store.load_run(run).states["w"]["status"], "waiting")
		for _round in range(3):  # resume, then the run's advance, each in a worker
			run_burst_worker()
			frappe.db.rollback()  # a fresh snapshot: see what the workers committed
			if store.load_run(run).status == "completed":
				break
		record = store.load_run(run)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.variables, {"outcome": "event", "by": doc.name})

	def test_a_lost_resume_job_is_made_up_by_the_tick(self):
		doc = new_test_doc(title="lost")
		template = make_flow(
			"lost",
			outcome_steps(
				{"doctype": TEST_DOCTYPE, "event": "on_update", "filters": {"name": "{{doc.name}}"}}
			),
		).name
		run = self.start(template, doc)
		wait = wait_row(run).name
		result = {"branch": "event", "doctype": TEST_DOCTYPE, "name": doc.name}
		frappe.db.sql(  # closed by an event whose resume job never ran
			"update `tabFlow Wait` set status='done', result=%s, closed_at=%s where name=%s",
			(store.dumps(result), add_to_date(now_datetime(), minutes=-1), wait),
		)
		frappe.db.commit()
		self.assertEqual(waits.resume_lost(), 0, "not yet: its job may still be on its way")
		frappe.db.set_value("Flow Wait", wait, "closed_at", add_to_date(now_datetime(), minutes=-5))
		frappe.db.commit()
		self.assertEqual(waits.resume_lost(), 1)
		record = store.load_run(run)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.states["w"]["result"], result)
		self.assertTrue(wait_row(run).resumed_at)
		self.assertEqual(waits.resume_lost(), 0)
		waits.resume(wait)  # a late duplicate of the job changes nothing
		self.assertEqual(frappe.db.count("Flow Step Attempt", {"run": run, "step_id": "w"}), 1)

	def test_timeout_takes_the_timeout_branch(self):
		doc = new_test_doc(title="never closed")
		template = make_flow(
			"timeout",
			outcome_steps(
				{
					"doctype": TEST_DOCTYPE,
					"event": "on_submit",
					"filters": {"name": "{{doc.name}}"},
					"timeout_hours": 1,
				}
			),
		).name
		run = self.start(template, doc)
		row = store.load_run(run).states["w"]["timeout_row"]
		frappe.db.set_value("Flow Step Pending", row, "trigger_at", add_to_date(now_datetime(), minutes=-1))
		frappe.db.commit()
		scheduler.drain_due(inline=True)
		record = store.load_run(run)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.states["w"]["result"], {"branch": "timeout"})
		self.assertEqual(record.variables, {"outcome": "timeout"})
		self.assertEqual(record.states["on_event"]["status"], "skipped")
		self.assertEqual(wait_row(run).status, "timed_out")
		doc.reload()
		doc.submit()  # too late: the wait is closed
		frappe.db.commit()
		self.assertEqual(store.load_run(run).states["w"]["result"], {"branch": "timeout"})
		self.assertEqual(frappe.db.count("Flow Step Attempt", {"run": run, "step_id": "w"}), 1)

	def test_completing_it_by_hand_closes_its_wait(self):
		doc = new_test_doc(title="by hand")
		template = make_flow(
			"by hand",
			outcome_steps(
				{
					"doctype": TEST_DOCTYPE,
					"event": "on_update",
					"filters": {"name": "{{doc.name}}"},
					"timeout_hours": 1,
				}
			),
		).name
		run = self.start(template, doc)
		runs.complete_step(run, "w", {"branch": "timeout"})
		frappe.db.commit()
		record = store.load_run(run)
		self.assertEqual(
			(record.status, record.variables), ("completed", {"outcome": "timeout"}), record.error
		)
		self.assertEqual(wait_row(run).status, "cancelled")
		doc.reload()
		doc.save()
		frappe.db.commit()
		self.assertEqual(store.load_run(run).variables, {"outcome": "timeout"})

	def test_custom_event_with_a_correlation_key(self):
		template = make_flow(
			"custom",
			outcome_steps(
				{
					"custom_event": "flowtest_payment_confirmed",
					"correlation_key": "{{doc.name}}",
					"timeout_hours": 5,
				}
			),
		).name
		first, second = new_test_doc(title="A"), new_test_doc(title="B")
		run_a, run_b = self.start(template, first), self.start(template, second)
		self.assertIn("event:flowtest_payment_confirmed", waits.waited())
		triggers.dispatch_event("flowtest_payment_confirmed", payload={"correlation_key": "nobody"})
		triggers.dispatch_event("flowtest_other_event", payload={"correlation_key": first.name})
		frappe.db.commit()
		self.assertEqual(store.load_run(run_a).states["w"]["status"], "waiting")
		triggers.dispatch_event(
			"flowtest_payment_confirmed", payload={"correlation_key": first.name, "amount": 12}
		)
		frappe.db.commit()
		record = store.load_run(run_a)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.states["w"]["result"]["branch"], "event")
		self.assertEqual(
			record.states["w"]["result"]["payload"], {"correlation_key": first.name, "amount": 12}
		)
		self.assertEqual(store.load_run(run_b).states["w"]["status"], "waiting")
		triggers.dispatch_event("flowtest_payment_confirmed", doc=second)  # no key: the document's name
		frappe.db.commit()
		record = store.load_run(run_b)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.states["w"]["result"]["name"], second.name)

	def test_cancelling_the_run_closes_its_wait_and_an_unwaited_doctype_costs_nothing(self):
		waits.clear_cache()
		self.assertNotIn("doc:ToDo", waits.waited())
		self.assertIn(waits.BUILT, waits.waited())
		before = dict(waits.lookups)
		todo = frappe.get_doc({"doctype": "ToDo", "description": "no waiters [flowtest]"}).insert()
		todo.save()
		frappe.db.commit()
		self.assertEqual(waits.lookups, before, "a doctype nobody waits on is never looked up")

		doc = new_test_doc(title="cancelled")
		template = make_flow(
			"cancel",
			outcome_steps(
				{"doctype": TEST_DOCTYPE, "event": "on_update", "filters": {"name": "{{doc.name}}"}}
			),
		).name
		run = self.start(template, doc)
		self.assertIn(f"doc:{TEST_DOCTYPE}", waits.waited())
		new_test_doc(title="looked up")
		self.assertGreater(waits.lookups["doc"], before["doc"], "a waited doctype is looked up")
		frappe.db.rollback()
		runs.cancel_run(run)
		frappe.db.commit()
		self.assertEqual(wait_row(run).status, "cancelled")
		self.assertNotIn(f"doc:{TEST_DOCTYPE}", waits.waited(), "closing the last wait clears the set")
		doc.reload()
		doc.save()
		frappe.db.commit()
		self.assertEqual(store.load_run(run).status, "cancelled")
		frappe.delete_doc("Flow Template", template)  # its waits never block deleting a flow or a run
		frappe.delete_doc("Flow Run", run)
		self.assertFalse(frappe.db.exists("Flow Wait", {"run": run}))

	def test_a_retried_run_waits_again(self):
		doc = new_test_doc(title="retry")
		target = f"flowtest-retry-{frappe.generate_hash(length=6)}"
		steps = outcome_steps(
			{
				"doctype": TEST_DOCTYPE,
				"event": "on_update",
				"filters": {"name": "{{doc.name}}"},
				"timeout_hours": 3,
			}
		)
		steps.append(
			{
				"id": "touch",
				"kind": "update_doc",
				"payload": {"doctype": "ToDo", "name": target, "fields": {"status": "Closed"}},
			}
		)
		template = make_flow("retry", steps).name
		run = self.start(template, doc)
		record = store.load_run(run)
		self.assertEqual(record.status, "failed")  # ToDo `target` does not exist yet
		self.assertEqual(wait_row(run).status, "cancelled")
		frappe.get_doc({"doctype": "ToDo", "description": "retry [flowtest]"}).insert(set_name=target)
		runs.retry_run(run)
		frappe.db.commit()
		record = store.load_run(run)
		self.assertEqual((record.status, record.states["w"]["status"]), ("waiting", "waiting"), record.error)
		fresh = frappe.db.get_value("Flow Wait", {"run": run, "status": "waiting"}, "name")
		self.assertEqual(record.states["w"]["wait"], fresh)
		self.assertEqual(
			frappe.db.get_value("Flow Step Pending", record.states["w"]["timeout_row"], "status"), "pending"
		)
		doc.reload()
		doc.save()
		frappe.db.commit()
		record = store.load_run(run)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.variables["outcome"], "event")

	def test_wait_for_steps_are_checked_against_the_site(self):
		raw = {
			"steps": [
				{
					"id": "w",
					"kind": "wait_for",
					"payload": {
						"doctype": TEST_DOCTYPE,
						"event": "on_update",
						"filters": {"titel": "x", "name": "{{doc.name}}"},
						"condition": {
							"all": [
								{"field": "status", "op": "==", "value": "Closed"},
								{"field": "colour", "op": "empty"},
							]
						},
					},
				},
				{
					"id": "v",
					"kind": "wait_for",
					"payload": {"doctype": "No Such Doctype", "event": "on_update"},
				},
				{
					"id": "t",
					"kind": "wait_for",
					"payload": {
						"doctype": "User",
						"event": "on_update",
						"filters": {"roles.rol": "x", "email.x": 1},
					},
				},
			]
		}
		issues = {
			(issue.step_id, issue.field): issue.message
			for issue in site_checks.check(raw, get_catalog(), TEST_DOCTYPE)
		}
		self.assertIn(f"'titel' is not a field of {TEST_DOCTYPE}", issues[("w", "payload.filters.titel")])
		self.assertIn("'colour' is not a field", issues[("w", "payload.condition.all[1].field")])
		self.assertNotIn(("w", "payload.filters.name"), issues)
		self.assertNotIn(("w", "payload.condition.all[0].field"), issues)
		self.assertIn("'No Such Doctype' does not exist", issues[("v", "payload.doctype")])
		self.assertIn("'rol' is not a field of Has Role", issues[("t", "payload.filters.roles.rol")])
		self.assertIn("'email' is not a child table of User", issues[("t", "payload.filters.email.x")])
		with self.assertRaises(frappe.ValidationError) as refused:  # saving the flow is refused
			make_flow(
				"bad wait",
				[
					{
						"id": "w",
						"kind": "wait_for",
						"payload": {"doctype": "ToDo", "event": "on_update", "filters": {"stat": "Open"}},
					}
				],
			)
		self.assertIn("Step 'w'", str(refused.exception))
		self.assertIn("'stat' is not a field of ToDo", str(refused.exception))


# two processes save a matching document at once; each reports whether it closed the wait
RACE = """
frappe.flags.flow_engine_inline = True
from flow_engine.runtime import waits
from flow_engine.tests.utils import new_test_doc
_status = waits._locked_status
def locked_status(wait):
	barrier("before-lock", 2, 20)
	if LOCKED:
		status = _status(wait)
	else:
		status = frappe.db.sql("select status from `tabFlow Wait` where name=%s", (wait,))[0][0]
	barrier("after-read", 2, 3)
	return status
waits._locked_status = locked_status
_close = waits.close
def close(wait, status, *args, **kwargs):
	closed = _close(wait, status, *args, **kwargs)
	print("closed" if closed else "not closed")
	return closed
waits.close = close
new_test_doc(title=TITLE, notes=sys.argv[1])
frappe.db.commit()
"""


class TestExactlyOnce(WaitTestCase):
	def race(self, locked: bool) -> tuple[str, list[str]]:
		title = f"race {frappe.generate_hash(length=6)}"
		template = make_flow(
			"race",
			outcome_steps({"doctype": TEST_DOCTYPE, "event": "after_insert", "filters": {"title": title}}),
		).name
		run = self.start(template)
		folder = tempfile.mkdtemp(prefix="flow-barrier-")
		prelude = f"BARRIER_DIR = {folder!r}\nLOCKED = {locked!r}\nTITLE = {title!r}\n" + BARRIER
		procs = [
			run_in_subprocess(f"sys.argv[1:] = [{arg!r}]\n" + prelude + RACE, wait=False)
			for arg in ("p1", "p2")
		]
		outputs = []
		for proc in procs:
			out, err = proc.communicate(timeout=180)
			self.assertEqual(proc.returncode, 0, err[-3000:])
			outputs += [line for line in out.splitlines() if line in ("closed", "not closed")]
		frappe.db.rollback()
		return run, outputs

	def test_two_concurrent_matching_events_resume_the_step_once(self):
		run, outputs = self.race(locked=True)
		self.assertEqual(sorted(outputs), ["closed", "not closed"])
		record = store.load_run(run)
		self.assertEqual(record.status, "completed", record.error)
		winner = frappe.get_all(
			TEST_DOCTYPE, filters={"name": record.states["w"]["result"]["name"]}, pluck="notes"
		)
		self.assertEqual(winner, ["p1" if outputs[0] == "closed" else "p2"])
		self.assertEqual(frappe.db.count("Flow Step Attempt", {"run": run, "step_id": "w"}), 1)
		self.assertEqual(frappe.db.count("Flow Step Attempt", {"run": run, "step_id": "on_event"}), 1)

	def test_control_without_the_row_lock_both_events_close_the_wait(self):
		run, outputs = self.race(locked=False)
		self.assertEqual(outputs, ["closed", "closed"], "the barrier forces the double close")
		self.assertEqual(
			frappe.db.count("Flow Step Attempt", {"run": run, "step_id": "w"}), 1, "the run lock"
		)


@unittest.skipUnless("erpnext" in frappe.get_installed_apps(), "ERPNext is not installed on this site")
class TestWaitForERPNext(WaitTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.company = frappe.defaults.get_global_default("company") or frappe.db.get_value(
			"Company", {}, "name"
		)
		name = "_Test Flow Wait Customer"
		if not frappe.db.exists("Customer", name):
			frappe.get_doc(
				{
					"doctype": "Customer",
					"customer_name": name,
					"customer_type": "Company",
					"customer_group": frappe.db.get_value("Customer Group", {"is_group": 0}, "name"),
					"territory": frappe.db.get_value("Territory", {"is_group": 0}, "name"),
				}
			).insert(ignore_permissions=True)
		cls.customer = name
		if not frappe.db.exists("Item", ITEM):
			frappe.get_doc(
				{
					"doctype": "Item",
					"item_code": ITEM,
					"item_group": frappe.db.get_value("Item Group", {"is_group": 0}, "name"),
					"stock_uom": "Nos",
					"is_stock_item": 0,
				}
			).insert(ignore_permissions=True)
		frappe.db.commit()

	def invoice(self, rate: float = 100):
		doc = frappe.get_doc(
			{
				"doctype": "Sales Invoice",
				"customer": self.customer,
				"company": self.company,
				"posting_date": nowdate(),
				"due_date": nowdate(),
				"items": [{"item_code": ITEM, "qty": 1, "rate": rate}],
			}
		).insert(ignore_permissions=True)
		return doc

	def payment(self, invoice: str):
		from erpnext.accounts.doctype.payment_entry.payment_entry import get_payment_entry

		entry = get_payment_entry("Sales Invoice", invoice)
		entry.reference_no = f"flowtest-{invoice}"
		entry.reference_date = nowdate()
		return entry.insert(ignore_permissions=True)

	def test_a_payment_entry_submit_resumes_the_invoice_flow(self):
		template = make_flow(
			"invoice paid",
			[
				{
					"id": "w",
					"kind": "wait_for",
					"payload": {
						"doctype": "Payment Entry",
						"event": "on_submit",
						"filters": {"party": "{{doc.customer}}", "references.reference_name": "{{doc.name}}"},
						"condition": {"field": "paid_amount", "op": ">=", "value": "{{doc.grand_total}}"},
						"timeout_hours": 48,
					},
				},
				{
					"id": "thank",
					"kind": "comment",
					"parent_id": "w",
					"branch": "event",
					"payload": {"text": "Paid by {{steps.w.result.name}} [flowtest]"},
				},
				{
					"id": "remind",
					"kind": "comment",
					"parent_id": "w",
					"branch": "timeout",
					"payload": {"text": "Still unpaid [flowtest]"},
				},
			],
			doctype="Sales Invoice",
			event="on_submit",
		).name
		invoice, other = self.invoice(), self.invoice(rate=70)
		invoice.submit()
		other.submit()
		frappe.db.commit()
		record = run_of(template, reference_name=invoice.name)
		self.assertEqual(record.states["w"]["status"], "waiting", record.error)
		self.assertEqual(
			store.loads(wait_row(record.name).filters),
			{"party": self.customer, "references.reference_name": invoice.name},
		)
		self.assertEqual(  # condition values are rendered against the run when it starts waiting
			store.loads(wait_row(record.name).condition),
			{"field": "paid_amount", "op": ">=", "value": invoice.grand_total},
		)
		unrelated = self.payment(other.name)  # the same customer, another invoice
		unrelated.submit()
		frappe.db.commit()
		self.assertEqual(store.load_run(record.name).states["w"]["status"], "waiting")
		entry = self.payment(invoice.name)
		frappe.db.commit()
		self.assertEqual(store.load_run(record.name).states["w"]["status"], "waiting", "a draft is not paid")
		entry.submit()
		frappe.db.commit()
		record = store.load_run(record.name)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(
			record.states["w"]["result"], {"branch": "event", "doctype": "Payment Entry", "name": entry.name}
		)
		self.assertEqual(record.states["remind"]["status"], "skipped")
		comments = frappe.get_all(
			"Comment",
			filters={
				"reference_doctype": "Sales Invoice",
				"reference_name": invoice.name,
				"comment_type": "Comment",
			},
			pluck="content",
		)
		self.assertTrue(any(f"Paid by {entry.name}" in text for text in comments), comments)
		for doc in (entry, unrelated, invoice, other):
			doc.reload()
			doc.cancel()
		frappe.db.commit()

	def test_a_quotation_turning_ordered_resumes(self):
		from erpnext.selling.doctype.quotation.quotation import make_sales_order

		quotation = frappe.get_doc(
			{
				"doctype": "Quotation",
				"quotation_to": "Customer",
				"party_name": self.customer,
				"company": self.company,
				"transaction_date": nowdate(),
				"valid_till": add_days(nowdate(), 30),
				"items": [{"item_code": ITEM, "qty": 2, "rate": 50}],
			}
		).insert(ignore_permissions=True)
		template = make_flow(
			"quotation ordered",
			outcome_steps(
				{
					"doctype": "Quotation",
					"event": "on_change",
					"filters": {"name": "{{doc.name}}"},
					"condition": {"field": "status", "op": "==", "value": "Ordered"},
				}
			),
			doctype="Quotation",
		).name
		run = self.start(template, quotation)
		quotation.submit()  # a change, but not Ordered
		frappe.db.commit()
		self.assertEqual(store.load_run(run).states["w"]["status"], "waiting")
		order = make_sales_order(quotation.name)
		order.delivery_date = add_days(nowdate(), 7)
		for row in order.items:
			row.delivery_date = order.delivery_date
		order.insert(ignore_permissions=True)
		order.submit()  # ERPNext sets the quotation Ordered with db_set (on_change, no on_update)
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("Quotation", quotation.name, "status"), "Ordered")
		record = store.load_run(run)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.variables["outcome"], "event")
		self.assertEqual(record.states["w"]["result"]["name"], quotation.name)
		order.cancel()
		quotation.reload()
		quotation.cancel()
		frappe.db.commit()
