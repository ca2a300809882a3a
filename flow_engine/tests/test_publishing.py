"""Draft → publish on a real site: edits wait as drafts, Publish makes a version, rollback, history with
changes, runs pinned to their version, moving waiting runs, who may publish."""

import json

import frappe

from flow_engine.api import versions as api
from flow_engine.runtime import publishing, runs, store, triggers
from flow_engine.tests.test_commands import bench
from flow_engine.tests.utils import FlowTestCase, ensure_user, make_flow, run_of

MANAGER = "publisher.flowtest@example.com"
CLERK = "clerk.flowtest@example.com"


def todo_step(description: str, step_id: str = "make", **extra) -> dict:
	return {
		"id": step_id,
		"kind": "create_doc",
		"payload": {"doctype": "ToDo", "fields": {"description": f"{description} [flowtest]"}},
		**extra,
	}


def edit(template: str, change) -> None:
	"""Edit a flow the way Desk and REST do: change the definition, save the document."""
	doc = frappe.get_doc("Flow Template", template)
	definition = publishing.working_definition(doc)
	change(definition)
	doc.flow_definition = json.dumps(definition)
	doc.save()
	frappe.db.commit()


def descriptions(record) -> list[str]:
	return [
		frappe.db.get_value("ToDo", state["result"]["name"], "description")
		for state in record.states.values()
		if state.get("status") == "completed" and (state.get("result") or {}).get("doctype") == "ToDo"
	]


class TestPublishing(FlowTestCase):
	def test_edits_wait_as_a_draft_until_publish(self):
		doc = make_flow("draft", [todo_step("v1")], doctype="Flow Test Doc", event="after_insert")
		self.assertEqual((doc.version, doc.has_draft), (1, 0))
		first = frappe.get_doc("Flow Template Version", {"template": doc.name, "version": 1})
		self.assertEqual((first.published_by, first.changes), ("Administrator", "first version"))

		edit(doc.name, lambda d: d["steps"][0]["payload"]["fields"].update(description="v2 [flowtest]"))
		doc.reload()
		self.assertEqual((doc.version, doc.has_draft, doc.draft_modified_by), (1, 1, "Administrator"))
		self.assertIn("v1 [flowtest]", doc.flow_definition, "the published definition is untouched")
		self.assertFalse(frappe.db.exists("Flow Template Version", {"template": doc.name, "version": 2}))

		# a document event still starts the published version
		frappe.get_doc({"doctype": "Flow Test Doc", "title": "before publish"}).insert()
		frappe.db.commit()
		record = run_of(doc.name)
		self.assertEqual((record.template_version, descriptions(record)), (1, ["v1 [flowtest]"]))

		changes = api.compare_versions(doc.name)
		self.assertEqual(changes["changed"][0]["id"], "make")
		self.assertIn(
			"~ step make: payload.fields.description v1 [flowtest] → v2 [flowtest]", changes["summary"]
		)

		result = api.publish_flow(doc.name, note="Say v2")
		frappe.db.commit()
		self.assertEqual(result, {"template": doc.name, "version": 2, "previous_version": 1})
		doc.reload()
		self.assertEqual((doc.version, doc.has_draft, doc.draft_definition), (2, 0, None))
		history = api.flow_versions(doc.name)
		self.assertEqual([row.version for row in history], [2, 1])
		self.assertEqual((history[0].published_by, history[0].note), ("Administrator", "Say v2"))
		self.assertIn("payload.fields.description v1 [flowtest] → v2 [flowtest]", history[0].changes)
		self.assertTrue(history[0].published_on)

		frappe.get_doc({"doctype": "Flow Test Doc", "title": "after publish"}).insert()
		frappe.db.commit()
		record = run_of(doc.name)
		self.assertEqual((record.template_version, descriptions(record)), (2, ["v2 [flowtest]"]))

		with self.assertRaises(publishing.PublishError):
			api.publish_flow(doc.name)  # nothing left to publish

	def test_saving_the_published_definition_again_drops_the_draft(self):
		doc = make_flow("undo", [todo_step("v1")])
		edit(doc.name, lambda d: d["steps"][0].update(label="changed"))
		self.assertEqual(frappe.db.get_value("Flow Template", doc.name, "has_draft"), 1)
		edit(doc.name, lambda d: d["steps"][0].pop("label"))
		doc.reload()
		self.assertEqual((doc.has_draft, doc.draft_definition, doc.version), (0, None, 1))

	def test_trigger_changes_are_drafts_too(self):
		doc = make_flow("trigger draft", [todo_step("t")], doctype="Flow Test Doc", event="after_insert")
		doc.trigger_event = "on_submit"
		doc.save()
		frappe.db.commit()
		triggers.clear_trigger_map()
		self.assertEqual(frappe.db.get_value("Flow Template", doc.name, "trigger_event"), "after_insert")
		self.assertIn(
			doc.name,
			[e["template"] for e in triggers.get_trigger_map()["doctypes"]["Flow Test Doc"]["after_insert"]],
		)
		api.publish_flow(doc.name)
		frappe.db.commit()
		triggers.clear_trigger_map()
		by_method = triggers.get_trigger_map()["doctypes"]["Flow Test Doc"]
		self.assertIn(doc.name, [e["template"] for e in by_method["on_submit"]])
		self.assertNotIn(doc.name, [e["template"] for e in by_method.get("after_insert", [])])

	def test_rollback_publishes_an_old_version_again_and_keeps_the_draft(self):
		doc = make_flow("rollback", [todo_step("v1")])
		edit(doc.name, lambda d: d["steps"].append(todo_step("extra", step_id="extra", depends_on=["make"])))
		api.publish_flow(doc.name)
		edit(doc.name, lambda d: d["steps"][0].update(label="work in progress"))
		result = api.rollback_flow(doc.name, 1)
		frappe.db.commit()
		self.assertEqual(result["version"], 3)
		doc.reload()
		self.assertEqual([s["id"] for s in json.loads(doc.flow_definition)["steps"]], ["make"])
		self.assertEqual(doc.has_draft, 1, "a rollback leaves the draft being worked on")
		latest = api.flow_versions(doc.name)[0]
		self.assertEqual(latest.note, "Rolled back to version 1")
		self.assertIn("- step extra", latest.changes)
		name = runs.start_run(doc.name)
		frappe.db.commit()
		self.assertEqual(store.load_run(name).template_version, 3)

	def test_runs_stay_on_their_version_and_compatible_waiting_runs_move(self):
		doc = make_flow(
			"migrate",
			[
				{"id": "park", "kind": "wait", "trigger": {"type": "manual"}},
				todo_step("v1", depends_on=["park"]),
			],
		)
		waiting = runs.start_run(doc.name)
		other = runs.start_run(doc.name)
		frappe.db.commit()
		# v2: the ToDo says v2 and a new step follows it
		edit(
			doc.name,
			lambda d: (
				d["steps"][1]["payload"]["fields"].update(description="v2 [flowtest]"),
				d["steps"].append(todo_step("added in v2", step_id="added", depends_on=["make"])),
			),
		)
		api.publish_flow(doc.name)
		# v3 removes the parked step: runs waiting on it cannot move to v3
		edit(doc.name, lambda d: (d["steps"].pop(0), d["steps"][0].update(depends_on=[])))
		api.publish_flow(doc.name)
		frappe.db.commit()

		to_v3 = api.migration_report(doc.name)
		self.assertEqual(to_v3["to_version"], 3)
		self.assertEqual(to_v3["compatible"], [])
		self.assertEqual(sorted(entry["run"] for entry in to_v3["incompatible"]), sorted([waiting, other]))
		self.assertIn(
			"step 'park' (waiting) does not exist in the new version", to_v3["incompatible"][0]["problems"]
		)

		to_v2 = api.migration_report(doc.name, 2)
		self.assertEqual(sorted(entry["run"] for entry in to_v2["compatible"]), sorted([waiting, other]))
		self.assertEqual(store.load_run(waiting).template_version, 1, "a report changes nothing")
		moved = api.migrate_runs(doc.name, 2, json.dumps([waiting]))
		frappe.db.commit()
		self.assertEqual(moved["moved"], [waiting])
		self.assertEqual(store.load_run(waiting).template_version, 2)
		self.assertEqual(store.load_run(other).template_version, 1, "only the runs asked for move")
		self.assertTrue(
			frappe.db.exists(
				"Comment",
				{"reference_name": waiting, "content": ["like", "Moved from version 1 to version 2%"]},
			)
		)
		for run in (waiting, other):
			runs.complete_step(run, "park")
			frappe.db.commit()
		self.assertEqual(
			sorted(descriptions(store.load_run(waiting))), ["added in v2 [flowtest]", "v2 [flowtest]"]
		)
		self.assertEqual(descriptions(store.load_run(other)), ["v1 [flowtest]"])

	def test_a_draft_does_not_move_run_as_and_the_publisher_answers_for_the_version(self):
		ensure_user(MANAGER, ["Flow Manager"])
		doc = make_flow("who", [todo_step("w")])
		self.assertEqual(doc.run_as, "Administrator")
		frappe.set_user(MANAGER)
		edit(doc.name, lambda d: d["steps"][0].update(label="edited by a manager"))
		self.assertEqual(frappe.db.get_value("Flow Template", doc.name, "run_as"), "Administrator")
		api.publish_flow(doc.name)
		frappe.db.commit()
		frappe.set_user("Administrator")
		self.assertEqual(frappe.db.get_value("Flow Template", doc.name, "run_as"), MANAGER)
		self.assertEqual(api.flow_versions(doc.name)[0].published_by, MANAGER)

	def test_only_flow_managers_with_write_access_publish(self):
		ensure_user(CLERK, ["Desk User"] if frappe.db.exists("Role", "Desk User") else [])
		doc = make_flow("guarded", [todo_step("g")])
		edit(doc.name, lambda d: d["steps"][0].update(label="pending"))
		frappe.set_user(CLERK)
		try:
			for call in (
				lambda: api.publish_flow(doc.name),
				lambda: api.rollback_flow(doc.name, 1),
				lambda: api.discard_draft(doc.name),
				lambda: api.flow_versions(doc.name),
				lambda: api.compare_versions(doc.name),
				lambda: api.migrate_runs(doc.name),
			):
				with self.assertRaises(frappe.PermissionError):
					call()
		finally:
			frappe.set_user("Administrator")
		self.assertEqual(frappe.db.get_value("Flow Template", doc.name, "version"), 1)
		api.discard_draft(doc.name)
		self.assertEqual(frappe.db.get_value("Flow Template", doc.name, "has_draft"), 0)

	def test_schedules_are_revalidated_on_publish_not_on_draft_saves(self):
		from flow_engine.tests.test_schedules import make_schedule

		doc = make_flow("scheduled", [todo_step("s")], payload_schema=json.dumps({"type": "object"}))
		if frappe.db.exists("Flow Schedule", "_Test Flow publish check"):
			frappe.delete_doc("Flow Schedule", "_Test Flow publish check", force=True)
		schedule = make_schedule("publish check", doc.name)
		frappe.db.set_value("Flow Schedule", schedule.name, {"status": "Invalid", "enabled": 0})
		frappe.db.commit()
		edit(doc.name, lambda d: d["steps"][0].update(label="draft only"))
		self.assertEqual(frappe.db.get_value("Flow Schedule", schedule.name, "status"), "Invalid")
		api.publish_flow(doc.name)
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("Flow Schedule", schedule.name, "status"), "Paused")
		frappe.delete_doc("Flow Schedule", schedule.name, force=True)
		frappe.db.commit()

	def test_the_editor_saves_drafts_and_publishes_on_request(self):
		from flow_engine.desk import editor_data, save_flow

		doc = make_flow("editor", [todo_step("e")])
		definition = editor_data(doc.name)["definition"]
		definition["steps"][0]["label"] = "from the editor"
		saved = save_flow(doc.name, json.dumps(definition))
		self.assertTrue(saved["saved"])
		self.assertEqual(saved["publishing"]["has_draft"], True)
		self.assertEqual(saved["definition"]["steps"][0]["label"], "from the editor")
		reopened = editor_data(doc.name)
		self.assertEqual(reopened["definition"]["steps"][0]["label"], "from the editor", "the draft reopens")
		self.assertEqual(reopened["publishing"], {**reopened["publishing"], "version": 1, "has_draft": True})
		published = save_flow(doc.name, json.dumps(definition), publish=1, note="editor")
		self.assertEqual(published["publishing"]["has_draft"], False)
		self.assertEqual(published["version"], 2)

	def test_bench_flow_publish_versions_and_rollback(self):
		doc = make_flow("cli", [todo_step("c")])
		edit(doc.name, lambda d: d["steps"][0].update(label="from the CLI"))
		out = bench("publish", doc.name, "--note", "CLI publish")
		self.assertEqual(out.returncode, 0, out.stderr)
		self.assertIn("~ step make: label set to from the CLI", out.stdout)
		self.assertIn("version 2 published", out.stdout)
		out = bench("versions", doc.name)
		self.assertIn("v2", out.stdout)
		self.assertIn("CLI publish", out.stdout)
		out = bench("rollback", doc.name, "1")
		self.assertEqual(out.returncode, 0, out.stderr)
		frappe.db.rollback()
		self.assertEqual(frappe.db.get_value("Flow Template", doc.name, "version"), 3)
		self.assertEqual(bench("publish", doc.name).returncode, 1, "nothing to publish")
