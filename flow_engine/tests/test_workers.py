import frappe

from flow_engine.tests.utils import FlowTestCase, make_flow, new_test_doc, run_burst_worker, run_of


class TestWorkers(FlowTestCase):
	def test_runs_execute_in_rq_workers_after_commit(self):
		frappe.flags.flow_engine_inline = False
		template = make_flow(
			"rq",
			[
				{
					"id": "t",
					"kind": "create_doc",
					"payload": {
						"doctype": "ToDo",
						"fields": {"description": "from a worker {{doc.title}} [flowtest]"},
					},
				},
				{
					"id": "c",
					"kind": "comment",
					"depends_on": ["t"],
					"payload": {"text": "made {{steps.t.result.name}}"},
				},
			],
			event="after_insert",
		).name
		new_test_doc(title="queued")
		frappe.db.commit()
		self.assertEqual(run_of(template).status, "running", "the run waits for a worker")
		result = run_burst_worker()
		self.assertEqual(result.returncode, 0, result.stderr[-2000:])
		frappe.db.rollback()
		record = run_of(template)
		self.assertEqual(record.status, "completed", record.error)
		self.assertIn(
			"from a worker queued",
			frappe.db.get_value("ToDo", record.states["t"]["result"]["name"], "description"),
		)
