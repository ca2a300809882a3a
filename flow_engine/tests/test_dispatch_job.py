"""dispatch_job `merge_key`: a second job with the same key reuses the open one (and is assigned
again only to whom it is not yet assigned); once that job is completed, the key makes a new one."""

import json

import frappe

from flow_engine.runtime import runs
from flow_engine.tests.test_webhook import Receiver
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


HOOKED = "[flowtest] hooked job"


class TestDispatchJobSettingsAndWebhooks(FlowTestCase):
	"""Flow Dispatch Settings choose the job's doctype and fields; on_open_webhook is called once when
	the job is created, on_close_webhook once when it is completed (from the job's own save)."""

	def setUp(self):
		super().setUp()
		self.doctype = "Task" if "erpnext" in frappe.get_installed_apps() else "ToDo"
		self.field = "subject" if self.doctype == "Task" else "description"
		self.done = "Completed" if self.doctype == "Task" else "Closed"
		frappe.conf.flow_engine_outbound_allow = ["127.0.0.1"]  # the local receiver of these tests

	def tearDown(self):
		frappe.conf.pop("flow_engine_outbound_allow", None)
		settings = frappe.get_single("Flow Dispatch Settings")
		settings.update({"job_doctype": None, "subject_field": None, "completed_values": None})
		settings.save(ignore_permissions=True)
		for doctype, field in ((self.doctype, self.field), ("Note", "title")):
			for name in frappe.get_all(doctype, filters={field: ["like", HOOKED + "%"]}, pluck="name"):
				frappe.delete_doc(doctype, name, force=True, ignore_permissions=True)
		frappe.db.delete("Flow Job Key", {"job_doctype": ["in", (self.doctype, "Note")]})
		frappe.db.delete("Error Log", {"method": ["like", "flow_engine: % webhook of %"]})
		frappe.db.commit()
		super().tearDown()

	def flow(self, name, **payload):
		return make_flow(
			name,
			[
				{
					"id": "job",
					"kind": "dispatch_job",
					"payload": {"subject": HOOKED + " {{input.site}}", **payload},
				}
			],
			doctype=None,
		).name

	def start(self, template, site="A"):
		name = runs.start_run(template, input={"site": site})
		frappe.db.commit()  # the open webhook goes out after commit (inline here, in a worker live)
		record = run_of(template, name=name)
		self.assertEqual(record.status, "completed", record.error)
		return record.states["job"]["result"]

	def test_settings_choose_the_doctype_and_the_field_mapping(self):
		template = self.flow("settings job", job_type="Repair", priority="low", duration_h=2)
		default = self.start(template)
		self.assertEqual(default["doctype"], self.doctype)  # no settings: Task (ERPNext), else ToDo

		settings = frappe.get_single("Flow Dispatch Settings")
		settings.update({"job_doctype": "Note", "subject_field": "no_such_field"})
		with self.assertRaises(frappe.ValidationError) as refused:
			settings.save(ignore_permissions=True)
		self.assertIn("Note has no field 'no_such_field'", str(refused.exception))
		settings = frappe.get_single("Flow Dispatch Settings")
		settings.update({"job_doctype": "Note", "subject_field": "title"})
		settings.save(ignore_permissions=True)
		frappe.db.commit()

		job = self.start(template, site="B")
		self.assertEqual(job["doctype"], "Note")
		# no field for job_type, duration_h: they go into the subject text
		self.assertEqual(frappe.db.get_value("Note", job["name"], "title"), f"{HOOKED} B — Repair (2 h)")

	def test_open_webhook_once_on_creation_close_webhook_once_on_completion(self):
		with Receiver([]) as hooks:
			template = self.flow(
				"hooked job",
				merge_key="hooked-{{input.site}}",
				on_open_webhook=hooks.url + "?open",
				on_close_webhook=hooks.url + "?close",
			)
			job = self.start(template)
			self.assertEqual([request["path"] for request in hooks.requests], ["/hook?open"])
			opened = hooks.requests[0]
			self.assertEqual(
				json.loads(opened["body"]),
				{
					"event": "opened",
					"doctype": self.doctype,
					"name": job["name"],
					"key": "hooked-A",
					"flow_run": frappe.db.get_value("Flow Job Key", {"job_name": job["name"]}, "flow_run"),
				},
			)
			self.assertTrue(opened["headers"].get("Idempotency-Key"))

			merged = self.start(template)  # the same key: merged into the open job, not opened again
			self.assertEqual((merged["name"], merged["merged"]), (job["name"], True))
			self.assertEqual(len(hooks.requests), 1)

			doc = frappe.get_doc(self.doctype, job["name"])
			doc.priority = "High"  # another save: no call
			doc.save(ignore_permissions=True)
			frappe.db.commit()
			self.assertEqual(len(hooks.requests), 1)

			doc.reload()
			doc.status = self.done
			doc.save(ignore_permissions=True)
			frappe.db.commit()
			self.assertEqual([request["path"] for request in hooks.requests], ["/hook?open", "/hook?close"])
			closed = hooks.requests[1]
			self.assertEqual(json.loads(closed["body"])["event"], "completed")
			self.assertNotEqual(closed["headers"]["Idempotency-Key"], opened["headers"]["Idempotency-Key"])

			doc.reload()
			doc.priority = "Low"  # saved again once completed: no second close call
			doc.save(ignore_permissions=True)
			frappe.db.commit()
			self.assertEqual(len(hooks.requests), 2)

	def test_a_refused_webhook_is_logged_and_the_job_still_made(self):
		frappe.conf.pop("flow_engine_outbound_allow", None)  # 127.0.0.1 is internal: refused
		with Receiver([]) as hooks:
			job = self.start(self.flow("refused hook", on_open_webhook=hooks.url))
			self.assertEqual(hooks.requests, [])
		self.assertTrue(frappe.db.exists(self.doctype, job["name"]))
		logged = frappe.get_all(
			"Error Log", filters={"method": f"flow_engine: open webhook of {self.doctype} {job['name']}"}
		)
		self.assertEqual(len(logged), 1)
