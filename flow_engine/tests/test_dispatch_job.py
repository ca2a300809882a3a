"""dispatch_job `merge_key`: a second job with the same key reuses the open one (and is assigned
again only to whom it is not yet assigned); once that job is completed, the key makes a new one."""

import frappe

from flow_engine.runtime import runs
from flow_engine.tests.utils import PREFIX, FlowTestCase, make_flow, run_in_subprocess, run_of

SUBJECT = "[flowtest] merge job"


class TestDispatchJobMerge(FlowTestCase):
	def setUp(self):
		super().setUp()
		if not frappe.db.exists("User Group", PREFIX + "Merge Techs"):
			frappe.get_doc(
				{"doctype": "User Group", "user_group_members": [{"user": "Administrator"}]}
			).insert(ignore_permissions=True, set_name=PREFIX + "Merge Techs")
		self.template = make_flow(
			"merge job",
			[
				{
					"id": "job",
					"kind": "dispatch_job",
					"payload": {
						"subject": SUBJECT + " {{input.site}}",
						"priority": "medium",
						"assigned_group": PREFIX + "Merge Techs",
						"merge_key": "site-{{input.site}}",
					},
				}
			],
			doctype=None,
		).name
		self.doctype = "Task" if "erpnext" in frappe.get_installed_apps() else "ToDo"
		self.field = "subject" if self.doctype == "Task" else "description"

	def tearDown(self):
		for name in frappe.get_all(self.doctype, filters={self.field: ["like", SUBJECT + "%"]}, pluck="name"):
			frappe.delete_doc(self.doctype, name, force=True, ignore_permissions=True)
		frappe.db.delete("ToDo", {"description": ["like", SUBJECT + "%"]})
		frappe.db.delete("Flow Job Key", {"merge_key": ["like", "site-%"]})
		frappe.db.commit()
		super().tearDown()

	def start(self, site: str):
		name = runs.start_run(self.template, input={"site": site})
		frappe.db.commit()
		record = run_of(self.template, name=name)
		self.assertEqual(record.status, "completed", record.error)
		return record.states["job"]["result"]

	def jobs(self):
		filters = {self.field: ["like", SUBJECT + "%"]}
		if self.doctype == "ToDo":  # the jobs, not the ToDos that assign them (those reference a ToDo)
			filters["reference_type"] = ["is", "not set"]
		return frappe.get_all(self.doctype, filters=filters, pluck="name")

	def test_an_open_job_with_the_same_key_is_reused(self):
		first = self.start("A")
		self.assertEqual((first["doctype"], first["merged"]), (self.doctype, False))
		again = self.start("A")
		self.assertEqual((again["name"], again["merged"]), (first["name"], True))
		other = self.start("B")  # another key: another job
		self.assertNotEqual(other["name"], first["name"])
		self.assertEqual(sorted(self.jobs()), sorted([first["name"], other["name"]]))
		assigned = frappe.get_all(
			"ToDo",
			filters={"reference_type": self.doctype, "reference_name": first["name"], "status": "Open"},
			pluck="allocated_to",
		)
		self.assertEqual(assigned, ["Administrator"])  # assigned once, not once per run

		# the job is done: the key opens a new one
		frappe.db.set_value(
			self.doctype, first["name"], "status", "Completed" if self.doctype == "Task" else "Closed"
		)
		frappe.db.commit()
		fresh = self.start("A")
		self.assertEqual(fresh["merged"], False)
		self.assertNotIn(fresh["name"], (first["name"], other["name"]))
		self.assertEqual(len(self.jobs()), 3)

	def test_a_job_committed_by_a_concurrent_step_is_reused(self):
		"""Two runs with one key: the second is mid-transaction (its snapshot taken) while the first
		creates the job and commits in another process; the second still finds that job."""
		frappe.flags.flow_engine_inline = False
		first = runs.start_run(self.template, input={"site": "C"})
		second = runs.start_run(self.template, input={"site": "C"})
		# held: no pool job of a running worker claims them; this test advances them
		frappe.db.sql(
			"update `tabFlow Run` set lease_owner='held-by-test' where name in %s", ((first, second),)
		)
		frappe.db.commit()
		frappe.get_all(self.doctype, limit=1)  # this transaction's snapshot starts here
		run_in_subprocess(
			f"from flow_engine.runtime import runs\nruns.advance({first!r})\nfrappe.db.commit()"
		)
		runs.advance(second)
		frappe.db.commit()
		results = [run_of(self.template, name=name).states["job"]["result"] for name in (first, second)]
		self.assertEqual([result["merged"] for result in results], [False, True])
		self.assertEqual(results[0]["name"], results[1]["name"])
		self.assertEqual(self.jobs(), [results[0]["name"]])
