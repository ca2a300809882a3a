"""Child runs on a real site: call_flow (wait, fire and forget, failure, cycles refused at save) and
for_each (a Sales Order's items creating Tasks, the concurrency bound, failed items)."""

from __future__ import annotations

import unittest

import frappe
from frappe.utils import add_days, nowdate

from flow_engine.runtime import runs, store
from flow_engine.runtime.errors import FlowValidationError
from flow_engine.tests.utils import (
	PREFIX,
	TEST_DOCTYPE,
	FlowTestCase,
	ensure_user,
	make_flow,
	new_test_doc,
)

TAG = "[flowtest]"


def children_of(run: str) -> list[frappe._dict]:
	return frappe.get_all(
		"Flow Run",
		filters={"parent_run": run},
		fields=["name", "status", "parent_step", "item_index", "scope", "source", "depth", "error"],
		order_by="item_index asc, creation asc",
	)


def hold(step_id: str = "hold", **extra) -> dict:
	"""A step that waits until a test completes it (an item "in progress")."""
	return {"id": step_id, "kind": "wait", "trigger": {"type": "manual"}, **extra}


def loop(items, concurrency=5, on_item_error="stop", **extra) -> dict:
	return {
		"id": "loop",
		"kind": "for_each",
		"payload": {"items": items, "concurrency": concurrency, "on_item_error": on_item_error},
		**extra,
	}


class TestCallFlow(FlowTestCase):
	def test_wait_returns_the_childs_variables(self):
		child = make_flow(
			"child total",
			[
				{
					"id": "calc",
					"kind": "set_variables",
					"payload": {"variables": {"total": "{{input.amount}}"}},
				}
			],
			doctype=None,
		)
		parent = make_flow(
			"parent waits",
			[
				{
					"id": "call",
					"kind": "call_flow",
					"payload": {"flow": child.name, "input": {"amount": "{{doc.amount}}"}, "wait": 1},
				},
				{
					"id": "after",
					"kind": "set_variables",
					"depends_on": ["call"],
					"payload": {"variables": {"got": "{{steps.call.result.variables.total}}"}},
				},
			],
		)
		doc = new_test_doc(amount=42)
		name = runs.start_run(parent.name, doc=doc)
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		(kid,) = children_of(name)
		self.assertEqual(
			(kid.status, kid.parent_step, kid.source, kid.depth), ("completed", "call", "parent", 1)
		)
		result = record.states["call"]["result"]
		self.assertEqual((result["run"], result["status"]), (kid.name, "completed"))
		self.assertEqual(float(result["variables"]["total"]), 42)
		self.assertEqual(float(record.variables["got"]), 42)

	def test_without_wait_the_parent_goes_on_at_once(self):
		child = make_flow("child parks", [hold()], doctype=None)
		parent = make_flow(
			"parent fire and forget",
			[{"id": "call", "kind": "call_flow", "payload": {"flow": child.name, "wait": 0}}],
		)
		name = runs.start_run(parent.name)
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		(kid,) = children_of(name)
		self.assertEqual(kid.status, "waiting")
		self.assertEqual(record.states["call"]["result"], {"run": kid.name})
		runs.complete_step(kid.name, "hold")
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("Flow Run", kid.name, "status"), "completed")
		self.assertEqual(store.load_run(name).status, "completed")

	def test_a_waiting_parent_resumes_when_its_child_is_completed_later(self):
		child = make_flow("child later", [hold()], doctype=None)
		parent = make_flow(
			"parent later",
			[
				{"id": "call", "kind": "call_flow", "payload": {"flow": child.name}},
				{"id": "after", "kind": "wait", "depends_on": ["call"]},
			],
		)
		name = runs.start_run(parent.name)
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual((record.status, record.states["call"]["status"]), ("waiting", "waiting"))
		self.assertEqual(record.states["call"]["waiting_for"], "child_run")
		(kid,) = children_of(name)
		runs.complete_step(kid.name, "hold")
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.states["after"]["status"], "completed")

	def test_child_failure_fails_the_step_with_the_childs_error(self):
		child = make_flow(
			"child fails",
			[
				{
					"id": "bad",
					"kind": "update_doc",
					"payload": {"doctype": TEST_DOCTYPE, "name": "no-such-doc", "fields": {"title": "x"}},
				}
			],
			doctype=None,
		)
		parent = make_flow(
			"parent of failure", [{"id": "call", "kind": "call_flow", "payload": {"flow": child.name}}]
		)
		name = runs.start_run(parent.name)
		frappe.db.commit()
		record = store.load_run(name)
		(kid,) = children_of(name)
		self.assertEqual(kid.status, "failed")
		self.assertEqual(record.status, "failed")
		self.assertEqual(record.states["call"]["status"], "failed")
		self.assertIn(kid.name, record.error)
		self.assertIn("no-such-doc", record.error)

	def test_on_error_continue_applies_to_a_failed_child(self):
		child = make_flow(
			"child fails softly",
			[
				{
					"id": "bad",
					"kind": "update_doc",
					"payload": {"doctype": TEST_DOCTYPE, "name": "no-such-doc", "fields": {"title": "x"}},
				}
			],
			doctype=None,
		)
		parent = make_flow(
			"parent goes on",
			[
				{"id": "call", "kind": "call_flow", "on_error": "continue", "payload": {"flow": child.name}},
				{"id": "after", "kind": "wait", "depends_on": ["call"]},
			],
		)
		name = runs.start_run(parent.name)
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		self.assertTrue(record.states["call"]["result"]["failed"])
		self.assertIn("no-such-doc", record.states["call"]["result"]["error"])
		self.assertEqual(record.states["after"]["status"], "completed")

	def test_the_tick_resumes_a_parent_whose_childs_end_went_unheard(self):
		from frappe.utils import add_to_date, now_datetime

		from flow_engine.runtime import children

		child = make_flow("child unheard", [hold()], doctype=None)
		parent = make_flow(
			"parent unheard", [{"id": "call", "kind": "call_flow", "payload": {"flow": child.name}}]
		)
		name = runs.start_run(parent.name)
		frappe.db.commit()
		(kid,) = children_of(name)
		# the child ended five minutes ago, and the job that should have told its parent was lost
		ended = add_to_date(now_datetime(), minutes=-5)
		frappe.db.sql(
			"update `tabFlow Run` set status='completed', completed_at=%s where name=%s", (ended, kid.name)
		)
		frappe.db.sql(
			"update `tabFlow Run` set modified=%s where name=%s", (add_to_date(ended, minutes=-1), name)
		)
		frappe.db.commit()
		self.assertEqual(store.load_run(name).status, "waiting")
		self.assertEqual(children.resume_lost(), 1)
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.states["call"]["result"]["run"], kid.name)
		self.assertEqual(children.resume_lost(), 0, "nothing is left to resume")

	def test_cancelling_the_child_fails_the_waiting_step(self):
		child = make_flow("child cancelled", [hold()], doctype=None)
		parent = make_flow(
			"parent of cancelled", [{"id": "call", "kind": "call_flow", "payload": {"flow": child.name}}]
		)
		name = runs.start_run(parent.name)
		frappe.db.commit()
		(kid,) = children_of(name)
		runs.cancel_run(kid.name, "no longer needed")
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "failed")
		self.assertIn("cancelled", record.error)

	def test_cycles_between_flows_are_refused_at_save(self):
		first = make_flow("cycle A", [{"id": "c", "kind": "comment", "payload": {"text": "x"}}])
		second = make_flow(
			"cycle B", [{"id": "call_a", "kind": "call_flow", "payload": {"flow": first.name}}]
		)
		first.reload()
		first.flow_definition = frappe.as_json(
			{"version": 1, "steps": [{"id": "call_b", "kind": "call_flow", "payload": {"flow": second.name}}]}
		)
		with self.assertRaises(FlowValidationError) as caught:
			first.save()
		message = str(caught.exception)
		self.assertIn(f"{first.name} → {second.name} → {first.name}", message)
		self.assertIn("call_b", message)
		frappe.db.rollback()
		with self.assertRaises(FlowValidationError) as caught:
			make_flow(
				"calls itself",
				[{"id": "me", "kind": "call_flow", "payload": {"flow": PREFIX + "calls itself"}}],
			)
		self.assertIn("cycle", str(caught.exception))
		frappe.db.rollback()

	def test_recursion_through_a_templated_flow_name_stops_at_max_depth(self):
		template = make_flow(
			"recursive",
			[
				{
					"id": "again",
					"kind": "call_flow",
					"payload": {"flow": "{{input.flow}}", "input": {"flow": "{{input.flow}}"}},
				}
			],
			doctype=None,
		)
		name = runs.start_run(template.name, input={"flow": template.name})
		frappe.db.commit()
		chain = [name]
		while True:
			kids = children_of(chain[-1])
			if not kids:
				break
			chain.append(kids[0].name)
		self.assertEqual(len(chain), runs.MAX_DEPTH + 1, "the top run and MAX_DEPTH nested ones")
		deepest = store.load_run(chain[-1])
		self.assertEqual(deepest.status, "failed")
		self.assertIn(f"the limit is {runs.MAX_DEPTH}", deepest.error)
		self.assertEqual(store.load_run(name).status, "failed", "the failure travels up the chain")

	def test_unknown_flow_is_refused_at_save(self):
		with self.assertRaises(FlowValidationError) as caught:
			make_flow(
				"calls nobody", [{"id": "call", "kind": "call_flow", "payload": {"flow": "No Such Flow"}}]
			)
		self.assertIn("'No Such Flow', which does not exist", str(caught.exception))
		frappe.db.rollback()


class TestForEach(FlowTestCase):
	def test_items_from_the_input_with_results_in_item_order(self):
		template = make_flow(
			"loop input",
			[
				loop("{{input.lines}}", concurrency=2),
				{
					"id": "note",
					"kind": "set_variables",
					"parent_id": "loop",
					"branch": "each",
					"payload": {"variables": {"line": "{{item.code}}-{{item_index}}-{{input.tag}}"}},
				},
			],
			doctype=None,
		)
		lines = [{"code": code} for code in ("a", "b", "c", "d", "e")]
		name = runs.start_run(template.name, input={"lines": lines, "tag": "T"})
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		result = record.states["loop"]["result"]
		self.assertEqual((result["count"], result["failed"]), (5, []))
		self.assertEqual(
			[item["note"]["variables"]["line"] for item in result["results"]],
			["a-0-T", "b-1-T", "c-2-T", "d-3-T", "e-4-T"],
		)
		kids = children_of(name)
		self.assertEqual([kid.item_index for kid in kids], [0, 1, 2, 3, 4])
		self.assertTrue(all(kid.scope == "loop" and kid.parent_step == "loop" for kid in kids))
		self.assertNotIn("note", record.states, "the body runs in the item runs, not in the parent")

	def test_nested_for_each(self):
		template = make_flow(
			"loop nested",
			[
				loop("{{input.groups}}", concurrency=2),
				{
					"id": "inner",
					"kind": "for_each",
					"parent_id": "loop",
					"branch": "each",
					"payload": {"items": "{{item.parts}}", "concurrency": 1},
				},
				{
					"id": "part",
					"kind": "set_variables",
					"parent_id": "inner",
					"branch": "each",
					"payload": {"variables": {"label": "{{item}}@{{item_index}}"}},
				},
			],
			doctype=None,
		)
		name = runs.start_run(template.name, input={"groups": [{"parts": ["a", "b"]}, {"parts": ["c"]}]})
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		outer = record.states["loop"]["result"]
		labels = [
			[part["part"]["variables"]["label"] for part in group["inner"]["results"]]
			for group in outer["results"]
		]
		self.assertEqual(labels, [["a@0", "b@1"], ["c@0"]])
		self.assertEqual([kid.depth for kid in children_of(name)], [1, 1])

	def test_concurrency_bound_is_respected(self):
		template = make_flow(
			"loop bound",
			[
				loop("{{input.lines}}", concurrency=2),
				hold(parent_id="loop", branch="each"),
				{"id": "after", "kind": "wait", "depends_on": ["loop"]},
			],
			doctype=None,
		)
		name = runs.start_run(template.name, input={"lines": list(range(5))})
		frappe.db.commit()
		most_open = 0
		finished = []
		for _round in range(10):
			kids = children_of(name)
			open_kids = [kid for kid in kids if kid.status in ("running", "waiting")]
			most_open = max(most_open, len(open_kids))
			self.assertLessEqual(len(open_kids), 2, [kid.item_index for kid in open_kids])
			if not open_kids:
				break
			last = open_kids[-1]  # finish out of order: the newest open item first
			runs.complete_step(last.name, "hold")
			frappe.db.commit()
			finished.append(last.item_index)
		self.assertEqual(most_open, 2)
		self.assertEqual(sorted(finished), [0, 1, 2, 3, 4])
		self.assertEqual(len(children_of(name)), 5, "each item ran exactly once")
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.states["loop"]["result"]["count"], 5)
		self.assertEqual(record.states["after"]["status"], "completed")

	def failing_items_flow(self, policy: str):
		existing = new_test_doc(title="exists").name
		template = make_flow(
			f"loop {policy}",
			[
				loop("{{input.names}}", concurrency=1, on_item_error=policy),
				{
					"id": "touch",
					"kind": "update_doc",
					"parent_id": "loop",
					"branch": "each",
					"payload": {
						"doctype": TEST_DOCTYPE,
						"name": "{{item}}",
						"fields": {"notes": "item {{item_index}}"},
					},
				},
			],
			doctype=None,
		)
		frappe.db.commit()
		name = runs.start_run(template.name, input={"names": [existing, "missing-doc", existing]})
		frappe.db.commit()
		return store.load_run(name)

	def test_on_item_error_continue_reports_the_failed_items(self):
		record = self.failing_items_flow("continue")
		self.assertEqual(record.status, "completed", record.error)
		result = record.states["loop"]["result"]
		self.assertEqual((result["count"], result["failed"]), (3, [1]))
		self.assertIsNone(result["results"][1])
		self.assertIn("touch", result["results"][2])
		self.assertEqual(
			[kid.status for kid in children_of(record.name)], ["completed", "failed", "completed"]
		)

	def test_on_item_error_stop_fails_at_the_first_failed_item(self):
		record = self.failing_items_flow("stop")
		self.assertEqual(record.status, "failed")
		self.assertIn("item 1 failed", record.error)
		self.assertIn("missing-doc", record.error)
		kids = children_of(record.name)
		self.assertEqual([kid.status for kid in kids], ["completed", "failed"], "item 2 never starts")

	def test_items_are_the_parents_work_not_runs_of_their_own(self):
		"""Open items do not count against the flow's max_concurrent_runs (a second run still starts),
		and a failed item does not alert by itself: the run it belongs to does."""
		template = make_flow(
			"loop limited",
			[
				loop("{{input.lines}}", concurrency=2, on_item_error="continue"),
				{
					"id": "touch",
					"kind": "update_doc",
					"parent_id": "loop",
					"branch": "each",
					"payload": {"doctype": "ToDo", "name": "{{item.todo}}", "fields": {"status": "Closed"}},
				},
				hold("w", parent_id="loop", branch="each", depends_on=["touch"]),
			],
			doctype=None,
			max_concurrent_runs=2,
		).name
		todo = frappe.get_doc({"doctype": "ToDo", "description": "loop limited [flowtest]"}).insert()
		first = runs.start_run(template, input={"lines": [{"todo": todo.name}, {"todo": "missing-doc"}]})
		frappe.db.commit()
		kids = children_of(first)
		self.assertEqual(sorted(kid.status for kid in kids), ["failed", "waiting"])
		second = runs.start_run(template, input={"lines": []})
		frappe.db.commit()
		self.assertNotEqual(store.load_run(second).status, "queued", "one open run of two allowed")
		failed_item = [kid.name for kid in kids if kid.status == "failed"]
		self.assertFalse(
			frappe.db.exists("Notification Log", {"document_name": failed_item[0]}), "an item does not alert"
		)
		waiting = next(kid.name for kid in kids if kid.status == "waiting")
		runs.complete_step(waiting, "w")
		frappe.db.commit()
		record = store.load_run(first)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.states["loop"]["result"]["failed"], [1])

	def test_documents_matching_filters(self):
		docs = [new_test_doc(title=f"match {TAG}", amount=index) for index in range(3)]
		new_test_doc(title="other")
		frappe.db.commit()
		template = make_flow(
			"loop documents",
			[
				loop({"doctype": TEST_DOCTYPE, "filters": {"title": f"match {TAG}"}, "limit": 10}),
				{
					"id": "touch",
					"kind": "update_doc",
					"parent_id": "loop",
					"branch": "each",
					"payload": {
						"doctype": TEST_DOCTYPE,
						"name": "{{item.name}}",
						"fields": {"notes": "seen {{item_index}}"},
					},
				},
			],
			doctype=None,
		)
		name = runs.start_run(template.name)
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.states["loop"]["result"]["count"], 3)
		notes = sorted(frappe.db.get_value(TEST_DOCTYPE, doc.name, "notes") for doc in docs)
		self.assertEqual(notes, ["seen 0", "seen 1", "seen 2"])

	def test_documents_are_read_as_the_run_as_user(self):
		reader = ensure_user("flow-loop-reader@example.com", ["Flow Manager"])  # may not read Flow Test Doc
		new_test_doc(title=f"match {TAG}")
		template = make_flow(
			"loop as reader",
			[
				loop({"doctype": TEST_DOCTYPE, "filters": {"title": f"match {TAG}"}}),
				{"id": "note", "kind": "wait", "parent_id": "loop", "branch": "each"},
			],
			doctype=None,
			run_as=reader,
		)
		name = runs.start_run(template.name)
		frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "failed")
		self.assertIn(f"Run As '{reader}' may not read {TEST_DOCTYPE}", record.error)
		self.assertEqual(children_of(name), [])

	def test_cancelling_the_parent_cancels_its_open_items(self):
		template = make_flow(
			"loop cancelled",
			[loop("{{input.lines}}", concurrency=2), hold(parent_id="loop", branch="each")],
			doctype=None,
		)
		name = runs.start_run(template.name, input={"lines": [1, 2, 3]})
		frappe.db.commit()
		self.assertEqual([kid.status for kid in children_of(name)], ["waiting", "waiting"])
		runs.cancel_run(name, "stop it")
		frappe.db.commit()
		self.assertEqual([kid.status for kid in children_of(name)], ["cancelled", "cancelled"])
		self.assertEqual(store.load_run(name).status, "cancelled")

	def test_run_view_lists_child_runs(self):
		from flow_engine.api.runs import get_run

		template = make_flow(
			"loop view",
			[loop("{{input.lines}}", concurrency=1), hold(parent_id="loop", branch="each")],
			doctype=None,
		)
		name = runs.start_run(template.name, input={"lines": ["x", "y"]})
		frappe.db.commit()
		data = get_run(name)
		self.assertEqual(
			[(kid["item_index"], kid["status"], kid["parent_step"]) for kid in data["children"]],
			[(0, "waiting", "loop")],
		)
		self.assertEqual(data["steps"]["loop"]["loop"]["count"], 2)
		child = get_run(data["children"][0]["name"])
		self.assertEqual((child["parent_run"], child["scope"], child["item_index"]), (name, "loop", 0))
		self.assertEqual(list(child["steps"]), ["hold"])


@unittest.skipUnless("erpnext" in frappe.get_installed_apps(), "ERPNext is not installed on this site")
class TestSalesOrderItems(FlowTestCase):
	def first(self, doctype, filters=None):
		name = frappe.db.get_value(doctype, filters or {}, "name")
		if not name:
			self.skipTest(f"this site has no {doctype} (run erpnext.setup.utils.before_tests)")
		return name

	def test_a_sales_order_for_each_item_creates_a_task(self):
		company = frappe.defaults.get_global_default("company") or self.first("Company")
		customer = frappe.db.get_value("Customer", {"customer_name": f"Loop {TAG}"}, "name")
		if not customer:
			customer = (
				frappe.get_doc(
					{
						"doctype": "Customer",
						"customer_name": f"Loop {TAG}",
						"customer_type": "Company",
						"customer_group": self.first("Customer Group", {"is_group": 0}),
						"territory": self.first("Territory", {"is_group": 0}),
					}
				)
				.insert(ignore_permissions=True)
				.name
			)
		codes = ["_Test Flow Loop Bolt", "_Test Flow Loop Nut", "_Test Flow Loop Washer"]
		for code in codes:
			if not frappe.db.exists("Item", code):
				frappe.get_doc(
					{
						"doctype": "Item",
						"item_code": code,
						"item_group": self.first("Item Group", {"is_group": 0}),
						"stock_uom": self.first("UOM", {"name": "Nos"}),
						"is_stock_item": 0,
					}
				).insert(ignore_permissions=True)
		template = make_flow(
			"sales order tasks",
			[
				loop("{{doc.items}}", concurrency=2),
				{
					"id": "task",
					"kind": "create_doc",
					"parent_id": "loop",
					"branch": "each",
					"payload": {
						"doctype": "Task",
						"fields": {
							"subject": "Prepare {{item.item_code}} x{{item.qty}} for {{doc.name}} {TAG}".replace(
								"{TAG}", TAG
							)
						},
					},
				},
			],
			doctype="Sales Order",
		)
		order = frappe.get_doc(
			{
				"doctype": "Sales Order",
				"customer": customer,
				"company": company,
				"transaction_date": nowdate(),
				"delivery_date": add_days(nowdate(), 7),
				"items": [
					{"item_code": code, "qty": index + 1, "rate": 10, "delivery_date": add_days(nowdate(), 7)}
					for index, code in enumerate(codes)
				],
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()
		try:
			from flow_engine.api.flows import dry_run

			report = dry_run(
				template=template.name, reference_doctype="Sales Order", reference_name=order.name
			)
			(entry,) = report["steps"]
			self.assertEqual(entry["items"], 3)
			self.assertEqual(
				[(sub["item_index"], sub["payload"]["fields"]["subject"]) for sub in entry["each"]],
				[
					(index, f"Prepare {code} x{index + 1} for {order.name} {TAG}")
					for index, code in enumerate(codes)
				],
			)
			self.assertEqual(
				frappe.db.count("Flow Run", {"template": template.name}), 0, "a dry run starts nothing"
			)
			name = runs.start_run(template.name, doc=order)
			frappe.db.commit()
			record = store.load_run(name)
			self.assertEqual(record.status, "completed", record.error)
			result = record.states["loop"]["result"]
			self.assertEqual((result["count"], result["failed"]), (3, []))
			tasks = [item["task"]["name"] for item in result["results"]]
			subjects = [frappe.db.get_value("Task", task, "subject") for task in tasks]
			self.assertEqual(
				subjects,
				[f"Prepare {code} x{index + 1} for {order.name} {TAG}" for index, code in enumerate(codes)],
			)
			self.assertEqual(len(children_of(name)), 3)
		finally:
			frappe.db.delete("Task", {"subject": ["like", f"%{TAG}%"]})
			frappe.delete_doc("Sales Order", order.name, force=True, ignore_permissions=True)
			frappe.db.commit()
