"""The failure inbox on a real site: grouping, bulk retry / skip / cancel, replay from a step with
edited input, replaying a whole run, every action recorded on the run, and who may act."""

import json

import frappe

from flow_engine.api import inbox as api
from flow_engine.runtime import runs, store
from flow_engine.tests.utils import FlowTestCase, ensure_user, make_flow

CLERK = "inbox-clerk.flowtest@example.com"


def failing_flow(name: str = "inbox"):
	"""Creates a ToDo, then closes the ToDo named by the input (missing: the step fails), then notes it."""
	return make_flow(
		name,
		[
			{
				"id": "make",
				"kind": "create_doc",
				"payload": {"doctype": "ToDo", "fields": {"description": "{{input.label}} [flowtest]"}},
			},
			{
				"id": "close",
				"kind": "update_doc",
				"depends_on": ["make"],
				"payload": {"doctype": "ToDo", "name": "{{input.todo}}", "fields": {"status": "Closed"}},
			},
			{
				"id": "after",
				"kind": "create_doc",
				"depends_on": ["close"],
				"payload": {"doctype": "ToDo", "fields": {"description": "after {{input.label}} [flowtest]"}},
			},
		],
		doctype=None,
	)


def start(template: str, **input) -> str:
	name = runs.start_run(template, input=input)
	frappe.db.commit()
	return name


def comments(run: str) -> list[str]:
	return frappe.get_all(
		"Comment",
		filters={"reference_doctype": "Flow Run", "reference_name": run, "comment_type": "Info"},
		pluck="content",
		order_by="creation asc",
	)


class TestFailureInbox(FlowTestCase):
	def test_failures_are_grouped_by_flow_and_by_error(self):
		flow = failing_flow("grouped").name
		other = make_flow(
			"grouped other",
			[
				{
					"id": "boom",
					"kind": "update_doc",
					"payload": {"doctype": "ToDo", "name": "nope-1", "fields": {"status": "Closed"}},
				}
			],
			doctype=None,
		).name
		failed = [start(flow, label=f"g{i}", todo=f"missing-{i}") for i in range(3)]
		start(other)
		ok = start(flow, label="fine", todo="")  # fails too: empty name — a different error
		inbox = api.failure_inbox()
		mine = {group["template"]: group for group in inbox["flows"] if group["template"] in (flow, other)}
		self.assertEqual(mine[flow]["count"], 4)
		self.assertEqual(mine[other]["count"], 1)
		errors = mine[flow]["errors"]
		self.assertEqual(errors[0]["count"], 3, errors)  # one cause, three documents
		self.assertEqual(sorted(run["name"] for run in errors[0]["runs"]), sorted(failed))
		self.assertEqual(errors[0]["step"], "close")
		self.assertIn(ok, [run["name"] for group in errors[1:] for run in group["runs"]])
		only = api.failure_inbox(template=other)
		self.assertEqual([group["template"] for group in only["flows"]], [other])

	def test_bulk_retry_skip_and_cancel_are_recorded_on_each_run(self):
		flow = failing_flow("bulk").name
		a, b, c, d = (start(flow, label=x, todo=f"missing-{x}") for x in "abcd")
		# retry after fixing the cause: the ToDo the step closes now exists
		todo = frappe.get_doc({"doctype": "ToDo", "description": "to close [flowtest]"}).insert()
		frappe.db.commit()
		frappe.db.set_value("Flow Run", a, "input", json.dumps({"label": "a", "todo": todo.name}))
		frappe.db.commit()
		result = api.retry_runs(json.dumps([a]))
		self.assertEqual(result, {"done": [a], "refused": []})
		self.assertEqual(store.load_run(a).status, "completed")
		self.assertEqual(frappe.db.get_value("ToDo", todo.name, "status"), "Closed")

		result = api.skip_failed_steps(json.dumps([b, c]))
		self.assertEqual(sorted(result["done"]), sorted([b, c]))
		for run in (b, c):
			record = store.load_run(run)
			self.assertEqual(record.status, "completed", record.error)
			self.assertEqual(record.states["close"]["result"], {"skipped_by": "Administrator"})
			self.assertEqual(record.states["after"]["status"], "completed", "the run went on after it")
			self.assertIn("Step 'close' skipped by Administrator", comments(run)[-1])

		result = api.cancel_runs(json.dumps([d, a]), reason="bad batch")
		self.assertEqual(result["done"], [d])
		self.assertEqual(result["refused"][0]["run"], a, "a completed run cannot be cancelled")
		self.assertEqual(store.load_run(d).status, "cancelled")
		self.assertIn("Cancelled by Administrator: bad batch", comments(d)[-1])
		self.assertIn("Retried by Administrator", comments(a)[-1])

	def test_replay_from_a_step_with_edited_input(self):
		flow = failing_flow("replay step").name
		run = start(flow, label="r", todo="missing-r")
		record = store.load_run(run)
		made = record.states["make"]["result"]["name"]
		self.assertEqual(api.step_input(run, "close")["name"], "missing-r")  # the failed attempt's input
		todo = frappe.get_doc({"doctype": "ToDo", "description": "edited target [flowtest]"}).insert()
		frappe.db.commit()

		with self.assertRaises(frappe.ValidationError) as refused:
			api.replay_from_step(run, "close", "{not json")
		self.assertIn("not valid JSON", str(refused.exception))
		with self.assertRaises(frappe.ValidationError) as refused:
			api.replay_from_step(run, "close", json.dumps({"doctype": "ToDo", "name": todo.name}))
		self.assertIn("step 'close'", str(refused.exception))  # `fields` is required: named, refused
		self.assertEqual(store.load_run(run).status, "failed", "a refused replay changes nothing")

		edited = {"doctype": "ToDo", "name": todo.name, "fields": {"status": "Closed"}}
		result = api.replay_from_step(run, "close", json.dumps(edited))
		self.assertEqual(result["reset"], ["close", "after"])
		record = store.load_run(run)
		self.assertEqual(record.status, "completed", record.error)
		self.assertEqual(record.states["make"]["result"]["name"], made, "steps before it are kept")
		self.assertEqual(frappe.db.get_value("ToDo", todo.name, "status"), "Closed")
		self.assertEqual(record.states["close"]["payload_override"], edited)
		self.assertIn("Replayed from step 'close' by Administrator with edited input", comments(run)[-1])
		with self.assertRaises(frappe.ValidationError):
			api.replay_from_step(run, "nope")

	def test_replay_a_run_on_the_current_or_original_version_and_compare(self):
		from flow_engine.runtime.publishing import publish, working_definition

		flow = failing_flow("replay run")
		run = start(flow.name, label="v1", todo="missing-v1")
		doc = frappe.get_doc("Flow Template", flow.name)
		definition = working_definition(doc)
		definition["steps"][1]["payload"]["name"] = (
			"{{steps.make.result.name}}"  # the fix: close what it made
		)
		doc.flow_definition = json.dumps(definition)
		doc.save()
		publish(flow.name)
		frappe.db.commit()

		current = api.replay_run(run)
		frappe.db.commit()
		replay = store.load_run(current)
		self.assertEqual((replay.status, replay.template_version), ("completed", 2), replay.error)
		self.assertEqual(replay.input, {"label": "v1", "todo": "missing-v1"})
		self.assertEqual(frappe.db.get_value("Flow Run", current, "replay_of"), run)

		original = api.replay_run(run, version="original")
		frappe.db.commit()
		again = store.load_run(original)
		self.assertEqual((again.status, again.template_version), ("failed", 1))

		side_by_side = api.compare_runs(run, current)
		self.assertEqual([r["name"] for r in side_by_side["runs"]], [run, current])
		close = next(row for row in side_by_side["steps"] if row["id"] == "close")
		self.assertEqual([cell["status"] for cell in close["cells"]], ["failed", "completed"])
		self.assertIn(f"Replayed as {current} on the current version", comments(run)[0])

	def test_a_user_without_the_flow_manager_role_is_refused(self):
		ensure_user(CLERK, [])
		flow = failing_flow("guarded inbox").name
		run = start(flow, label="x", todo="missing-x")
		frappe.set_user(CLERK)
		try:
			for call in (
				lambda: api.failure_inbox(),
				lambda: api.retry_runs(json.dumps([run])),
				lambda: api.skip_failed_steps(json.dumps([run])),
				lambda: api.cancel_runs(json.dumps([run])),
				lambda: api.replay_from_step(run, "close"),
				lambda: api.replay_run(run),
				lambda: api.compare_runs(run, run),
			):
				with self.assertRaises(frappe.PermissionError):
					call()
		finally:
			frappe.set_user("Administrator")
		self.assertEqual(store.load_run(run).status, "failed")

	def test_the_failure_views_read_indexes(self):
		"""At volume (benchmarks/volume.py: 200,000 runs) these keep the inbox, the form's last failures
		and figures, and the list sidebar's "Created By" counts from sorting or reading every run."""
		for index in ("template_status_modified_completed_at_started_at_index", "owner_index"):
			self.assertTrue(frappe.db.has_index("tabFlow Run", index), index)
		plan = frappe.db.sql(
			"""explain select name from `tabFlow Run` force index (status_modified_index)
			where status='failed' order by modified desc limit 2000""",
			as_dict=True,
		)
		self.assertNotIn("filesort", plan[0].get("Extra") or "", plan)
