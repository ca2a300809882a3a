"""Run identity (issue 10): flows act with exactly the rights someone gave them.

The attacker is a real user holding only Flow Manager; every attack goes through the path a user
would take (a document insert/save in their session, the editor's save, duplicate, the API).
"""

import email
import json
from pathlib import Path

import frappe

from flow_engine import api, desk
from flow_engine.runtime import identity
from flow_engine.runtime.publishing import publish
from flow_engine.tests.utils import (
	PREFIX,
	TEST_DOCTYPE,
	FlowTestCase,
	ensure_user,
	make_flow,
	new_test_doc,
	run_of,
)

ATTACKER = "flow-attacker@example.com"
OTHER_MANAGER = "flow-other-manager@example.com"
SYSTEM_MANAGER = "flow-system-manager@example.com"
READER = "flow-document-reader@example.com"
LATER_DISABLED = "flow-later-disabled@example.com"

GRANT = [
	{
		"id": "grant",
		"kind": "update_doc",
		"payload": {
			"doctype": "User",
			"name": ATTACKER,
			"fields": {"roles": [{"role": "System Manager"}, {"role": "Flow Manager"}]},
		},
	}
]
HARMLESS = [{"id": "v", "kind": "set_variables", "payload": {"variables": {"a": "1"}}}]


def roles_in_db(user: str) -> set[str]:
	return set(frappe.get_all("Has Role", filters={"parent": user, "parenttype": "User"}, pluck="role"))


def flow_doc(name: str, steps: list, doctype: str | None = None, **extra):
	return frappe.get_doc(
		{
			"doctype": "Flow Template",
			"template_name": PREFIX + name,
			"trigger_doctype": doctype,
			"trigger_event": "manual",
			"flow_definition": json.dumps({"version": 1, "steps": steps}),
			**extra,
		}
	)


class TestRunIdentity(FlowTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_user(SYSTEM_MANAGER, ["System Manager"])
		ensure_user(READER, ["Desk User"] if frappe.db.exists("Role", "Desk User") else ["Blogger"])

	def setUp(self):
		super().setUp()
		ensure_user(ATTACKER, ["Flow Manager"])
		ensure_user(OTHER_MANAGER, ["Flow Manager"])
		ensure_user(LATER_DISABLED, ["Flow Manager"])

	def tearDown(self):
		frappe.set_user("Administrator")
		frappe.db.rollback()
		frappe.db.delete("Note", {"title": ["like", "[flowtest]%"]})
		frappe.db.commit()
		super().tearDown()

	# ------------------------------------------------------------------ the escalation of the issue

	def test_escalation_is_refused_when_the_attacker_saves_it(self):
		frappe.set_user(ATTACKER)
		with self.assertRaises(identity.StepNotPermitted) as caught:
			flow_doc("grant", GRANT).insert()
		self.assertIn(
			f"Step 'grant' → payload.fields.roles: Run As '{ATTACKER}' may not write field 'roles' of User",
			str(caught.exception),
		)
		frappe.db.rollback()
		# a harmless flow of theirs, then the grant saved over it
		doc = flow_doc("grant later", HARMLESS).insert()
		frappe.db.commit()
		doc.flow_definition = json.dumps({"version": 1, "steps": GRANT})
		with self.assertRaises(identity.StepNotPermitted):
			doc.save()
		frappe.db.rollback()
		self.assertNotIn("update_doc", frappe.db.get_value("Flow Template", doc.name, "flow_definition"))
		# the editor's save refuses it too, with the error on the step and field at fault
		outcome = desk.save_flow(doc.name, {"version": 1, "steps": GRANT}, is_active=1)
		self.assertFalse(outcome["saved"])
		self.assertIn(
			("grant", "payload.fields.roles"), [(e["step_id"], e["field"]) for e in outcome["errors"]]
		)
		self.assertNotIn("update_doc", frappe.db.get_value("Flow Template", doc.name, "flow_definition"))
		self.assertNotIn("System Manager", roles_in_db(ATTACKER))

	def test_a_system_manager_is_warned_and_the_step_fails_when_it_runs(self):
		frappe.set_user(SYSTEM_MANAGER)
		frappe.clear_messages()
		doc = flow_doc("grant by sm", GRANT, run_as=ATTACKER).insert()
		frappe.db.commit()
		warning = " ".join(str(m.get("message")) for m in frappe.local.message_log)
		self.assertIn(
			f"Step 'grant' → payload.fields.roles: Run As '{ATTACKER}' may not write field", warning
		)
		self.assertEqual(doc.run_as, ATTACKER)

		frappe.set_user(ATTACKER)
		name = api.start_run(doc.name)
		frappe.db.commit()
		frappe.set_user("Administrator")
		record = run_of(doc.name)
		self.assertEqual(record.name, name)
		self.assertEqual(record.status, "failed")
		self.assertIn(f"Run As '{ATTACKER}' may not write field 'roles' of User", record.error)
		self.assertNotIn("System Manager", roles_in_db(ATTACKER))
		self.assertNotIn("System Manager", frappe.get_roles(ATTACKER))

	# ------------------------------------------------------------------ only what they could do by hand

	def test_a_flow_manager_flow_does_only_what_they_could_by_hand(self):
		frappe.set_user(ATTACKER)
		mine = make_flow(
			"by hand",
			[
				{
					"id": "note",
					"kind": "create_doc",
					"payload": {"doctype": "Note", "fields": {"title": "[flowtest] {{run.name}}"}},
				},
				{
					"id": "todo",
					"kind": "create_doc",
					"depends_on": ["note"],
					"payload": {
						"doctype": "ToDo",
						"fields": {"description": "mine [flowtest]", "allocated_to": ATTACKER},
					},
				},
				{
					"id": "close",
					"kind": "update_doc",
					"depends_on": ["todo"],
					"payload": {
						"doctype": "ToDo",
						"name": "{{steps.todo.result.name}}",
						"fields": {"status": "Closed"},
					},
				},
			],
			doctype=None,
		)
		self.assertEqual(mine.run_as, ATTACKER)
		name = api.start_run(mine.name)
		frappe.db.commit()
		frappe.set_user("Administrator")
		record = run_of(mine.name)
		self.assertEqual(record.status, "completed", record.error)
		note = record.states["note"]["result"]["name"]
		self.assertEqual(frappe.db.get_value("Note", note, "owner"), ATTACKER)
		todo = record.states["todo"]["result"]["name"]
		self.assertEqual(frappe.db.get_value("ToDo", todo, "status"), "Closed")
		self.assertEqual(record.name, name)

		# what they could not do by hand is refused when saved ...
		frappe.set_user(ATTACKER)
		for steps, field, text in (
			(
				[
					{
						"id": "u",
						"kind": "create_doc",
						"payload": {"doctype": "User", "fields": {"email": "x@y.z"}},
					}
				],
				"payload.doctype",
				"may not create User",
			),
			(
				[
					{
						"id": "d",
						"kind": "create_doc",
						"payload": {"doctype": TEST_DOCTYPE, "fields": {"title": "x"}},
					}
				],
				"payload.doctype",
				f"may not create {TEST_DOCTYPE}",
			),
		):
			with self.assertRaises(identity.StepNotPermitted) as caught:
				flow_doc("refused " + field, steps).insert()
			self.assertIn(text, str(caught.exception))
			frappe.db.rollback()
		with self.assertRaises(identity.StepNotPermitted) as caught:
			flow_doc(
				"refused trigger doc",
				[{"id": "w", "kind": "update_doc", "payload": {"fields": {"status": "Closed"}}}],
				doctype=TEST_DOCTYPE,
			).insert()
		self.assertIn(f"may not write {TEST_DOCTYPE} (the trigger document)", str(caught.exception))
		frappe.db.rollback()

		# ... and when a System Manager made them the Run As anyway, refused when it runs
		frappe.set_user(SYSTEM_MANAGER)
		theirs = make_flow(
			"runs as attacker",
			[{"id": "w", "kind": "update_doc", "payload": {"fields": {"status": "Closed"}}}],
			event="after_insert",
			run_as=ATTACKER,
		)
		frappe.set_user("Administrator")
		target = new_test_doc(title="not theirs")
		frappe.db.commit()
		record = run_of(theirs.name)
		self.assertEqual(record.status, "failed")
		self.assertIn(f"Run As '{ATTACKER}' may not write {TEST_DOCTYPE} '{target.name}'", record.error)
		self.assertEqual(frappe.db.get_value(TEST_DOCTYPE, target.name, "status"), "Open")

	def test_each_kind_checks_the_run_as_user_before_acting(self):
		"""A System Manager made the attacker the Run As (a warning only); every step is refused."""
		cases = {
			"create": (
				{
					"kind": "create_doc",
					"payload": {"doctype": "User", "fields": {"email": "made@example.com"}},
				},
				f"Run As '{ATTACKER}' may not create User",
			),
			"comment": (
				{"kind": "comment", "payload": {"text": "hi"}},
				f"Run As '{ATTACKER}' may not read {TEST_DOCTYPE} '{{doc}}' (needed to comment on it)",
			),
			"assign": (
				{"kind": "assign", "payload": {"assign_to": [ATTACKER]}},
				f"Run As '{ATTACKER}' may not read {TEST_DOCTYPE} '{{doc}}' (needed to assign it)",
			),
			"notify": (
				{
					"kind": "notify",
					# no {{doc…}} in the message: the kind's own check refuses (reading a value would too)
					"payload": {
						"channel": "system",
						"recipients": [ATTACKER],
						"subject": "about your document",
					},
				},
				f"Run As '{ATTACKER}' may not read {TEST_DOCTYPE} '{{doc}}' (its values go into the message)",
			),
		}
		frappe.set_user(SYSTEM_MANAGER)
		flows = {
			case: make_flow(f"kind {case}", [{"id": "s", **step}], run_as=ATTACKER).name
			for case, (step, _message) in cases.items()
		}
		frappe.set_user("Administrator")
		target = new_test_doc(title="secret")
		frappe.db.commit()
		from flow_engine.runtime import runs

		for case, (_step, message) in cases.items():
			runs.start_run(flows[case], doc=target)
			frappe.db.commit()
			record = run_of(flows[case])
			with self.subTest(case=case):
				self.assertEqual(record.status, "failed")
				self.assertIn(message.format(doc=target.name), record.error)
		self.assertFalse(frappe.db.exists("User", "made@example.com"))
		self.assertFalse(frappe.db.exists("Comment", {"reference_name": target.name, "content": "hi"}))
		self.assertFalse(frappe.db.exists("ToDo", {"reference_name": target.name}))
		self.assertFalse(frappe.db.exists("Notification Log", {"document_name": target.name}))

	# ------------------------------------------------------------------ who may set Run As

	def test_the_attacker_cannot_set_run_as_to_someone_else(self):
		frappe.set_user(ATTACKER)
		for target in ("Administrator", SYSTEM_MANAGER):
			# with ignore_permissions the controller still refuses ...
			with self.assertRaises(identity.RunAsNotAllowed):
				flow_doc("set " + target, HARMLESS, run_as=target).insert(ignore_permissions=True)
			frappe.db.rollback()
			# ... and through Desk / REST the permlevel drops it: the flow runs as the attacker
			doc = flow_doc("set " + target, HARMLESS, run_as=target).insert()
			frappe.db.commit()
			self.assertEqual(frappe.db.get_value("Flow Template", doc.name, "run_as"), ATTACKER)
			doc = frappe.get_doc("Flow Template", doc.name)
			doc.run_as = target
			with self.assertRaises(identity.RunAsNotAllowed):
				doc.save(ignore_permissions=True)
			frappe.db.rollback()
			doc = frappe.get_doc("Flow Template", doc.name)
			doc.run_as = target
			doc.flow_definition = json.dumps({"version": 1, "steps": [*HARMLESS, dict(HARMLESS[0], id="w")]})
			doc.save()
			frappe.db.commit()
			self.assertEqual(frappe.db.get_value("Flow Template", doc.name, "run_as"), ATTACKER)
			saved = frappe.client.save(
				dict(frappe.get_doc("Flow Template", doc.name).as_dict(), run_as=target)
			)
			self.assertEqual(saved["run_as"], ATTACKER)
			with self.assertRaises(identity.RunAsNotAllowed):
				desk.save_flow(doc.name, {"version": 1, "steps": HARMLESS}, run_as=target)
			frappe.db.rollback()
			self.assertEqual(frappe.db.get_value("Flow Template", doc.name, "run_as"), ATTACKER)

		# a copy of an Administrator-run flow runs as the one who copied it
		frappe.set_user("Administrator")
		source = make_flow("admin source", HARMLESS, doctype=None)
		self.assertEqual(source.run_as, "Administrator")
		frappe.set_user(ATTACKER)
		copy = api.duplicate_template(source.name, PREFIX + "attacker copy")
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("Flow Template", copy, "run_as"), ATTACKER)
		# a System Manager's copy keeps the original's Run As
		frappe.set_user(SYSTEM_MANAGER)
		copy = api.duplicate_template(source.name, PREFIX + "sm copy")
		self.assertEqual(frappe.db.get_value("Flow Template", copy, "run_as"), "Administrator")

	def test_the_controller_decides_even_when_the_permlevel_is_granted(self):
		"""A site that gives Flow Managers write at permlevel 1 (Role Permission Manager) stays safe."""
		from frappe.permissions import reset_perms, update_permission_property

		frappe.set_user("Administrator")
		source = make_flow("granted source", HARMLESS, doctype=None)
		update_permission_property("Flow Template", "Flow Manager", 1, "read", 1, validate=False)
		update_permission_property("Flow Template", "Flow Manager", 1, "write", 1, validate=False)
		frappe.clear_cache(doctype="Flow Template")
		frappe.db.commit()
		try:
			frappe.set_user(ATTACKER)
			self.assertIn(1, identity.write_levels("Flow Template", ATTACKER))
			with self.assertRaises(identity.RunAsNotAllowed):
				flow_doc("granted", HARMLESS, run_as="Administrator").insert()
			frappe.db.rollback()
			copy = api.duplicate_template(source.name, PREFIX + "granted copy")
			self.assertEqual(frappe.db.get_value("Flow Template", copy, "run_as"), ATTACKER)
		finally:
			frappe.set_user("Administrator")
			frappe.db.rollback()
			reset_perms("Flow Template")
			frappe.clear_cache(doctype="Flow Template")
			frappe.db.commit()

	def test_a_system_manager_may_choose_any_enabled_user(self):
		frappe.set_user(SYSTEM_MANAGER)
		doc = make_flow("sm chooses", HARMLESS, doctype=None, run_as=OTHER_MANAGER)
		self.assertEqual(doc.run_as, OTHER_MANAGER)
		outcome = desk.save_flow(doc.name, {"version": 1, "steps": HARMLESS}, run_as=ATTACKER)
		self.assertTrue(outcome["saved"])
		self.assertEqual(outcome["run_as"], ATTACKER)
		ensure_user(LATER_DISABLED, ["Flow Manager"], enabled=0)
		frappe.set_user(SYSTEM_MANAGER)
		doc.reload()
		doc.run_as = LATER_DISABLED
		with self.assertRaises(frappe.ValidationError) as caught:
			doc.save()
		self.assertIn("is disabled", str(caught.exception))

	# ------------------------------------------------------------------ the default and its changes

	def test_default_run_as_is_whoever_last_changed_the_behaviour(self):
		frappe.set_user(ATTACKER)
		doc = make_flow("default", HARMLESS, doctype=None, active=False)
		self.assertEqual((doc.run_as, doc.last_changed_by), (ATTACKER, ATTACKER))
		self.assertTrue(doc.last_changed_on)

		frappe.set_user(OTHER_MANAGER)
		doc = frappe.get_doc("Flow Template", doc.name)
		doc.description = "only the description"
		doc.save()
		self.assertEqual((doc.run_as, doc.last_changed_by), (ATTACKER, ATTACKER))
		doc.is_active = 1  # activating is a change of behaviour
		doc.save()
		self.assertEqual((doc.run_as, doc.last_changed_by), (OTHER_MANAGER, OTHER_MANAGER))

		frappe.set_user(ATTACKER)
		doc = frappe.get_doc("Flow Template", doc.name)
		doc.trigger_condition = json.dumps({"field": "variables.a", "op": "==", "value": "1"})
		doc.save()
		self.assertEqual(doc.run_as, OTHER_MANAGER, "a draft changes no behaviour")
		publish(doc.name)  # publishing it does: the publisher answers for it
		doc.reload()
		self.assertEqual(doc.run_as, ATTACKER)
		frappe.set_user(OTHER_MANAGER)
		desk.save_flow(doc.name, {"version": 1, "steps": [*HARMLESS, dict(HARMLESS[0], id="w")]}, publish=1)
		self.assertEqual(frappe.db.get_value("Flow Template", doc.name, "run_as"), OTHER_MANAGER)
		frappe.set_user(ATTACKER)
		doc = frappe.get_doc("Flow Template", doc.name)
		doc.payload_schema = json.dumps({"type": "object"})
		doc.save()
		self.assertEqual(doc.run_as, ATTACKER)

		# a System Manager's edit keeps the flow's Run As
		frappe.set_user(SYSTEM_MANAGER)
		doc = frappe.get_doc("Flow Template", doc.name)
		doc.flow_definition = json.dumps({"version": 1, "steps": HARMLESS})
		doc.save()
		publish(doc.name)
		doc.reload()
		self.assertEqual((doc.run_as, doc.last_changed_by), (ATTACKER, SYSTEM_MANAGER))

	def test_seeded_flows_have_no_run_as_until_activated(self):
		from flow_engine.install import seed_templates

		seeded = "ToDo Follow-up"
		if not frappe.db.count("Flow Run", {"template": seeded}):  # seed it afresh
			frappe.flags.flow_engine_seeding = True
			try:
				frappe.delete_doc("Flow Template", seeded, force=True, ignore_missing=True)
			finally:
				frappe.flags.flow_engine_seeding = False
		seed_templates()
		frappe.db.commit()
		if not frappe.db.count("Flow Run", {"template": seeded}):
			self.assertEqual(
				frappe.db.get_value("Flow Template", seeded, ["is_active", "run_as", "last_changed_by"]),
				(0, None, None),
			)
		before = frappe.db.get_value("Flow Template", seeded, ["is_active", "run_as"], as_dict=True)
		frappe.db.set_value("Flow Template", seeded, {"is_active": 0, "run_as": None})
		frappe.db.commit()
		try:
			with self.assertRaises(identity.RunAsError) as caught:
				identity.run_as_for(seeded)
			self.assertEqual(
				str(caught.exception),
				f"Flow '{seeded}' has no Run As user: open it and set one (System Manager) or re-activate it",
			)
			frappe.set_user(ATTACKER)
			doc = frappe.get_doc("Flow Template", seeded)
			doc.is_active = 1
			doc.save()
			self.assertEqual(doc.run_as, ATTACKER)
			self.assertEqual(identity.run_as_for(seeded), ATTACKER)
		finally:
			frappe.set_user("Administrator")
			frappe.db.rollback()
			frappe.db.set_value("Flow Template", seeded, dict(before))
			frappe.db.commit()

	# ------------------------------------------------------------------ unusable Run As users

	def test_a_disabled_or_missing_run_as_user_fails_the_run_clearly(self):
		frappe.set_user(SYSTEM_MANAGER)
		doc = make_flow("disabled", HARMLESS, doctype=None, run_as=LATER_DISABLED)
		self.assertEqual(identity.run_as_for(doc.name), LATER_DISABLED)
		frappe.set_user("Administrator")
		ensure_user(LATER_DISABLED, ["Flow Manager"], enabled=0)
		with self.assertRaises(identity.RunAsError) as caught:
			identity.run_as_for(doc.name)
		self.assertIn(
			f"Run As user '{LATER_DISABLED}' of flow '{doc.name}' is disabled", str(caught.exception)
		)
		api.start_run(doc.name)
		frappe.db.commit()
		record = run_of(doc.name)
		self.assertEqual(record.status, "failed")
		self.assertIn(f"Run As user '{LATER_DISABLED}' of flow '{doc.name}' is disabled", record.error)
		self.assertNotIn("completed", {state.get("status") for state in record.states.values()})

		frappe.db.set_value("Flow Template", doc.name, "run_as", "nobody-here@example.com")
		with self.assertRaises(identity.RunAsError) as caught:
			identity.run_as_for(doc.name)
		self.assertIn("'nobody-here@example.com' of flow", str(caught.exception))
		self.assertIn("does not exist", str(caught.exception))

	# ------------------------------------------------------------------ the README's table

	def test_who_may_do_what_matches_the_readme(self):
		table = readme_table()
		self.assertEqual(
			set(table),
			{"System Manager", "Flow Manager", "a user who can read the document", "Guest"},
		)
		users = {
			"System Manager": SYSTEM_MANAGER,
			"Flow Manager": ATTACKER,
			"a user who can read the document": READER,
			"Guest": "Guest",
		}
		frappe.set_user("Administrator")
		shared = make_flow(
			"table",
			[{"id": "m", "kind": "wait", "trigger": {"type": "manual"}}],
			doctype="ToDo",
		)
		todo = frappe.get_doc(  # readable by its assignee and its assigner
			{
				"doctype": "ToDo",
				"description": "readable [flowtest]",
				"allocated_to": READER,
				"assigned_by": ATTACKER,
			}
		).insert()
		frappe.db.commit()
		for row, user in users.items():
			expected = table[row]
			frappe.set_user(user)
			with self.subTest(row=row, column="create / edit / activate flows"):
				self.assertEqual(self._can_edit_flows(row), expected[0].startswith("yes"))
			with self.subTest(row=row, column="set Run As"):
				self.assertEqual(self._can_set_run_as(shared.name), expected[1].startswith("any"))
			with self.subTest(row=row, column="start / cancel / retry / complete runs"):
				self.assertEqual(self._can_run(shared.name, todo.name), expected[2].startswith("yes"))
			frappe.set_user("Administrator")
			frappe.db.rollback()
		frappe.db.delete("ToDo", {"name": todo.name})
		frappe.db.commit()

	def _can_edit_flows(self, row: str) -> bool:
		try:
			doc = flow_doc(f"table {row}", HARMLESS).insert()
			doc.description = "edited"
			doc.save()
			doc.is_active = 1
			doc.save()
			return frappe.db.get_value("Flow Template", doc.name, "is_active") == 1
		except frappe.PermissionError:
			frappe.db.rollback()
			return False

	def _can_set_run_as(self, template: str) -> bool:
		frappe.db.set_value("Flow Template", template, "run_as", "Administrator")
		try:
			doc = frappe.get_doc("Flow Template", template)
			doc.run_as = OTHER_MANAGER
			doc.save(ignore_permissions=True)  # the controller decides, not the permlevel
			return frappe.db.get_value("Flow Template", template, "run_as") == OTHER_MANAGER
		except frappe.PermissionError:
			frappe.db.rollback()
			return False

	def _can_run(self, template: str, todo: str) -> bool:
		try:
			run = api.start_run(template, "ToDo", todo)
			frappe.db.commit()
			api.complete_step(run, "m")
			frappe.db.commit()
			run = api.start_run(template, "ToDo", todo)
			frappe.db.commit()
			api.cancel_run(run)
			frappe.db.commit()
			try:
				api.retry_run(run)  # the door lets them in; a cancelled run then cannot be retried
			except frappe.ValidationError:
				frappe.db.rollback()
			return True
		except frappe.PermissionError:
			frappe.db.rollback()
			return False


def readme_table() -> dict[str, list[str]]:
	"""Rows of README's "Who may do what" table: {row: [cell, ...]}."""
	readme = Path(frappe.get_app_path("flow_engine")).parent / "README.md"
	section = readme.read_text().split("### Who may do what", 1)[1].split("###", 1)[0]
	rows = {}
	for line in section.splitlines():
		cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
		if len(cells) < 4 or not cells[0] or set(cells[0]) <= {"-"}:
			continue
		rows[cells[0]] = cells[1:]
	return rows


class TestEmailEscaping(FlowTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		if not frappe.db.exists("Email Account", {"enable_outgoing": 1, "default_outgoing": 1}):
			frappe.get_doc(
				{
					"doctype": "Email Account",
					"email_account_name": "_Test Flow Outgoing",
					"email_id": "flows@example.com",
					"enable_outgoing": 1,
					"default_outgoing": 1,
					"smtp_server": "localhost",
					"no_smtp_authentication": 1,
				}
			).insert(ignore_permissions=True)
			frappe.db.commit()

	def tearDown(self):
		frappe.db.rollback()
		names = frappe.get_all("Note", filters={"title": ["like", "[flowtest]%"]}, pluck="name")
		if names:
			frappe.db.delete("Email Queue", {"reference_name": ["in", names]})
			frappe.db.delete("Note", {"name": ["in", names]})
		frappe.db.delete("Email Template", {"name": PREFIX + "escape"})
		frappe.db.commit()
		super().tearDown()

	def _email_html(self, note: str) -> str:
		message = frappe.db.get_value("Email Queue", {"reference_name": note}, "message")
		self.assertTrue(message, "no email was queued")
		parts = [
			part.get_payload(decode=True).decode()
			for part in email.message_from_string(message).walk()
			if part.get_content_type() == "text/html"
		]
		return "\n".join(parts)

	def _run_on_note(self, template: str) -> str:
		"""A Note whose title holds raw HTML (as db_set, imports or integrations can store; a Desk
		save would sanitise it), a Text Editor content with markup, and a run on it."""
		note = frappe.get_doc(
			{"doctype": "Note", "title": "[flowtest] note", "content": "<p>kept <b>bold</b></p>"}
		).insert()
		frappe.db.set_value("Note", note.name, "title", "[flowtest] <script>alert(1)</script>")
		frappe.db.commit()
		api.start_run(template, "Note", note.name, input={"who": "<b onmouseover=alert(2)>me</b>"})
		frappe.db.commit()
		self.assertEqual(run_of(template).status, "completed", run_of(template).error)
		return note.name

	def test_document_values_are_escaped_in_the_message(self):
		flow = make_flow(
			"escape message",
			[
				{
					"id": "e",
					"kind": "notify",
					"payload": {
						"channel": "email",
						"recipients": ["someone@example.com"],
						"subject": "About {{doc.title}}",
						"message": "<p>Title: {{doc.title}}</p><p>By: {{input.who}}</p><div>{{doc.content}}</div>",
					},
				}
			],
			doctype="Note",
		)
		body = self._email_html(self._run_on_note(flow.name))
		self.assertIn("Title: [flowtest] &lt;script&gt;alert(1)&lt;/script&gt;", body)
		self.assertIn("By: &lt;b onmouseover=alert(2)&gt;me&lt;/b&gt;", body)
		self.assertNotIn("<script>", body)
		self.assertNotIn("<b onmouseover", body)
		self.assertIn("<b>bold</b>", body)  # a Text Editor field holds HTML on purpose
		self.assertIn("<p", body)  # the flow's own markup is kept

	def test_document_values_are_escaped_in_email_templates(self):
		frappe.get_doc(
			{
				"doctype": "Email Template",
				"name": PREFIX + "escape",
				"subject": "About {{ title }}",
				"use_html": 1,
				"response_html": "<p>Title: {{ title }}</p><div>{{ content }}</div>",
			}
		).insert()
		flow = make_flow(
			"escape template",
			[
				{
					"id": "e",
					"kind": "notify",
					"payload": {
						"channel": "email",
						"recipients": ["someone@example.com"],
						"email_template": PREFIX + "escape",
					},
				}
			],
			doctype="Note",
		)
		body = self._email_html(self._run_on_note(flow.name))
		self.assertIn("Title: [flowtest] &lt;script&gt;alert(1)&lt;/script&gt;", body)
		self.assertNotIn("<script>", body)
		self.assertIn("<b>bold</b>", body)
