"""Secrets are never stored in clear; readers of a document see only a run's status (issue 10)."""

import json

import frappe
import frappe.client
import frappe.desk.form.load
from frappe.utils.password import get_decrypted_password

from flow_engine import api, desk
from flow_engine.engine import templating
from flow_engine.runtime import secrets, store, templates
from flow_engine.runtime.publishing import publish
from flow_engine.tests.utils import PREFIX, FlowTestCase, ensure_user, make_flow, run_of

SYSTEM_MANAGER = "flow-secrets-sm@example.com"
MANAGER = "flow-secrets-fm@example.com"
READER = "flow-secrets-reader@example.com"
OTHER = "flow-secrets-other@example.com"

SIGNING = "whsec_Zq81-signing-value"
BEARER = "Bearer crm-token-55aa17"
API_KEY = "ak_live_0042x"
MARK = "confidential-7731"  # document data that must not reach a mere reader


def webhook_step(secret=SIGNING, authorization=BEARER, step_id="notify_crm"):
	return {
		"id": step_id,
		"kind": "webhook",
		"payload": {
			"url": "https://crm.example.com/hooks/flow",
			"method": "POST",
			"headers": {"Authorization": authorization, "X-Api-Key": API_KEY, "X-Request-Source": "erp"},
			"body": {"name": "{{doc.name}}"},
			"secret": secret,
		},
	}


def stored_texts(template: str) -> list[str]:
	"""Every text Frappe keeps of a flow: its row, pinned versions, track-changes history, its export."""
	doc = frappe.get_doc("Flow Template", template)
	texts = [doc.flow_definition, frappe.as_json(doc.as_dict())]
	texts += frappe.get_all("Flow Template Version", filters={"template": template}, pluck="definition")
	texts += frappe.get_all(
		"Version", filters={"ref_doctype": "Flow Template", "docname": template}, pluck="data"
	)
	return texts


def flow_secret_names():
	return frappe.get_all("Flow Secret", filters={"name": ["like", "test_flow_%"]}, pluck="name")


class TestSecrets(FlowTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		reader_role = "Desk User" if frappe.db.exists("Role", "Desk User") else "Blogger"
		ensure_user(SYSTEM_MANAGER, ["System Manager"])
		ensure_user(MANAGER, ["Flow Manager"])
		ensure_user(READER, [reader_role])
		ensure_user(OTHER, [reader_role])

	def tearDown(self):
		frappe.set_user("Administrator")
		frappe.db.rollback()
		names = flow_secret_names()
		if names:
			frappe.db.delete("Flow Secret", {"name": ["in", names]})
			frappe.db.delete("__Auth", {"doctype": "Flow Secret", "name": ["in", names]})
		frappe.db.delete("Version", {"ref_doctype": "Flow Template", "docname": ["like", PREFIX + "%"]})
		frappe.db.commit()
		super().tearDown()

	def make_secret(self, name, value):
		return frappe.get_doc({"doctype": "Flow Secret", "secret_name": name, "value": value}).insert().name

	# ------------------------------------------------------------ clear secrets are moved out

	def test_pasted_clear_secrets_are_stored_as_references_only(self):
		frappe.set_user(MANAGER)
		frappe.clear_messages()
		doc = make_flow("secrets paste", [webhook_step()], doctype=None)
		told = " ".join(str(message) for message in frappe.message_log)
		self.assertIn("moved out of the flow into Flow Secret", told)
		self.assertIn("payload.headers.Authorization", told)

		payload = json.loads(doc.flow_definition)["steps"][0]["payload"]
		names = {
			"secret": secrets.references(payload["secret"]),
			"Authorization": secrets.references(payload["headers"]["Authorization"]),
			"X-Api-Key": secrets.references(payload["headers"]["X-Api-Key"]),
		}
		self.assertEqual(payload["headers"]["X-Request-Source"], "erp")  # not a credential: kept
		self.assertEqual(payload["body"], {"name": "{{doc.name}}"})
		for field, value in (("secret", SIGNING), ("Authorization", BEARER), ("X-Api-Key", API_KEY)):
			self.assertEqual(len(names[field]), 1, field)
			name = names[field][0]
			# encrypted at rest: the __Auth row is not the clear value; decryption gives it back
			raw = frappe.db.sql(
				"select password from `__Auth` where doctype='Flow Secret' and name=%s and fieldname='value'",
				name,
			)[0][0]
			self.assertNotIn(value, raw)
			self.assertEqual(get_decrypted_password("Flow Secret", name, "value"), value)
			self.assertNotIn(value, frappe.db.get_value("Flow Secret", name, "value"))
			self.assertEqual(frappe.db.get_value("Flow Secret", name, "template"), doc.name)

		# an edit pasting the same value again reuses its secret; a new value gets a new one
		frappe.clear_messages()
		changed = json.loads(doc.flow_definition)
		changed["steps"][0]["payload"]["headers"]["Authorization"] = BEARER
		changed["steps"][0]["payload"]["secret"] = SIGNING + "-rotated"
		doc.reload()
		doc.flow_definition = json.dumps(changed)
		doc.save(ignore_version=False)  # tests skip track changes unless asked: write the Version as in Desk
		publish(doc.name)
		doc.reload()
		payload = json.loads(doc.flow_definition)["steps"][0]["payload"]
		self.assertEqual(secrets.references(payload["headers"]["Authorization"]), names["Authorization"])
		rotated = secrets.references(payload["secret"])[0]
		self.assertNotEqual(rotated, names["secret"][0])
		self.assertEqual(get_decrypted_password("Flow Secret", rotated, "value"), SIGNING + "-rotated")
		self.assertEqual(doc.version, 2)

		# nothing Frappe keeps of the flow holds a clear value: row, pinned versions, history, export
		texts = stored_texts(doc.name)
		self.assertGreaterEqual(len(texts), 5)  # row, export, 2 pinned versions, ≥1 Version
		self.assertTrue(frappe.get_meta("Flow Template").track_changes)
		for text in texts:
			for value in (SIGNING, "crm-token-55aa17", API_KEY):
				self.assertNotIn(value, text)
		self.assertTrue(any("{{secrets." in text for text in texts[4:]))

		# deleting the flow keeps its secrets (other flows may use them)
		frappe.delete_doc("Flow Template", doc.name)
		self.assertEqual(get_decrypted_password("Flow Secret", rotated, "value"), SIGNING + "-rotated")

	def test_the_editor_save_path_moves_secrets_too(self):
		frappe.set_user(MANAGER)
		template = make_flow("secrets editor", [], doctype=None).name
		result = desk.save_flow(template, json.dumps({"version": 1, "steps": [webhook_step()]}))
		self.assertTrue(result["saved"])
		for text in stored_texts(template):
			self.assertNotIn(SIGNING, text)
			self.assertNotIn("crm-token-55aa17", text)

	def test_a_flow_manager_reads_a_secret_only_masked(self):
		name = self.make_secret("test_flow_crm_token", "tok-998877")
		frappe.db.commit()
		frappe.set_user(MANAGER)
		value = frappe.client.get("Flow Secret", name)["value"]
		self.assertTrue(value and set(value) == {"*"})
		frappe.local.response = frappe._dict({"docs": []})
		frappe.desk.form.load.getdoc("Flow Secret", name)
		self.assertEqual(set(frappe.response.docs[0].value), {"*"})
		self.assertNotIn("tok-998877", frappe.as_json(frappe.response.docs))
		self.assertNotIn("tok-998877", str(frappe.client.get_value("Flow Secret", "value", {"name": name})))
		frappe.flags.in_test = False  # frappe.only_for lets everyone through in tests
		try:
			with self.assertRaises(frappe.PermissionError):
				frappe.client.get_password("Flow Secret", name, "value")
		finally:
			frappe.flags.in_test = True
		frappe.set_user(READER)
		with self.assertRaises(frappe.PermissionError):
			frappe.client.get("Flow Secret", name)

	def test_secret_names_are_slugs_and_a_used_secret_cannot_be_deleted(self):
		name = self.make_secret("Test Flow CRM Token", "tok-1")
		self.assertEqual(name, "test_flow_crm_token")
		template = make_flow(
			"secrets in use", [webhook_step(secret="{{secrets.test_flow_crm_token}}")], doctype=None
		).name
		with self.assertRaises(frappe.LinkExistsError):
			frappe.delete_doc("Flow Secret", name)
		frappe.delete_doc("Flow Template", template)
		frappe.delete_doc("Flow Secret", name)
		self.assertFalse(frappe.db.exists("Flow Secret", name))

	# ------------------------------------------------------------ resolution

	def test_resolve_gives_the_value_and_render_keeps_the_reference(self):
		self.make_secret("test_flow_crm_token", "tok-42")
		payload = {"headers": {"Authorization": "Bearer {{secrets.test_flow_crm_token}}"}, "n": 1}
		self.assertEqual(secrets.resolve(payload), {"headers": {"Authorization": "Bearer tok-42"}, "n": 1})
		self.assertEqual(templating.render(payload, {"doc": {}}), payload)
		# render + resolve in one pass: document data shaped like a reference stays data
		context = {"doc": {"description": "{{secrets.test_flow_crm_token}}"}}
		rendered = secrets.render({**payload, "body": "{{doc.description}}"}, context)
		self.assertEqual(rendered["headers"]["Authorization"], "Bearer tok-42")
		self.assertEqual(rendered["body"], "{{secrets.test_flow_crm_token}}")
		self.assertEqual(
			secrets.redact("401 for Bearer tok-42", secrets.used_values(payload)),
			"401 for Bearer {{secrets.test_flow_crm_token}}",
		)
		with self.assertRaises(secrets.MissingSecretError) as caught:
			secrets.resolve("{{secrets.test_flow_nope}}")
		self.assertIn("'test_flow_nope' does not exist", str(caught.exception))
		self.assertTrue(issubclass(secrets.MissingSecretError, frappe.ValidationError))

	def test_a_missing_secret_is_a_validation_error_naming_step_and_field(self):
		with self.assertRaises(templates.FlowValidationError) as caught:
			make_flow(
				"secrets missing",
				[webhook_step(authorization="Bearer {{secrets.test_flow_nope}}")],
				doctype=None,
			)
		self.assertIn(
			"Step 'notify_crm' → payload.headers.Authorization: secret 'test_flow_nope' does not exist; "
			"create it in Flow Secret",
			str(caught.exception),
		)
		frappe.db.rollback()
		self.make_secret("test_flow_crm_token", "x")
		with self.assertRaises(templates.FlowValidationError) as caught:
			make_flow(
				"secrets in comment",
				[{"id": "c", "kind": "comment", "payload": {"text": "{{secrets.test_flow_crm_token}}"}}],
				doctype=None,
			)
		self.assertIn("secrets can only be used in webhook steps", str(caught.exception))

	# ------------------------------------------------------------ what each reader sees of a run

	def make_runs(self):
		"""A failed run on READER's ToDo (its error quotes the document) and a parked one."""
		template = make_flow(
			"secrets runs",
			[
				{
					"id": "v",
					"kind": "set_variables",
					"payload": {"variables": {"note": "{{doc.description}}"}},
				},
				{
					"id": "fail",
					"kind": "update_doc",
					"depends_on": ["v"],
					"payload": {
						"doctype": "ToDo",
						"name": "{{doc.description}}-missing",
						"fields": {"description": "x"},
					},
				},
			],
			doctype="ToDo",
			event="after_insert",
		).name
		parked = make_flow(
			"secrets parked",
			[{"id": "p", "kind": "wait", "trigger": {"type": "on_webhook"}}],
			doctype="ToDo",
		).name
		frappe.set_user(READER)
		todo = frappe.get_doc(
			{"doctype": "ToDo", "description": f"{MARK} [flowtest]", "allocated_to": READER}
		).insert()
		frappe.db.commit()
		frappe.set_user("Administrator")
		failed = run_of(template, reference_name=todo.name)
		self.assertEqual(failed.status, "failed")
		self.assertIn(MARK, failed.error)  # the error text quotes the document
		waiting = api.start_run(parked, reference_doctype="ToDo", reference_name=todo.name)
		frappe.db.commit()
		self.assertTrue(store.load_run(waiting).states["p"].get("token"))
		return failed.name, waiting, todo.name

	def test_managers_see_everything_including_the_callback_token_to_hand_out(self):
		failed, waiting, _todo = self.make_runs()
		for user in (SYSTEM_MANAGER, MANAGER):
			frappe.set_user(user)
			run = api.get_run(failed)
			self.assertIn(MARK, run["error"], user)
			self.assertEqual(run["variables"], {"note": f"{MARK} [flowtest]"})
			self.assertTrue(run["attempts"] and run["definition"]["steps"])
			self.assertIn(MARK, api.list_runs(template=run["template"])[0]["error"])
			parked = api.get_run(waiting)
			self.assertEqual(parked["steps"]["p"]["status"], "waiting")
			self.assertEqual(
				parked["steps"]["p"]["token"], store.load_run(waiting).states["p"]["token"], user
			)

	def test_a_document_reader_sees_only_status(self):
		failed, waiting, todo = self.make_runs()
		frappe.set_user(READER)
		run = api.get_run(failed)
		self.assertEqual(
			set(run),
			{
				"name",
				"template",
				"template_version",
				"status",
				"error",
				"reference_doctype",
				"reference_name",
				"started_at",
				"completed_at",
				"steps",
				"parent_run",  # the family of runs, by name and status only (call_flow, for_each)
				"item_index",
				"children",
				"redacted",
			},
		)
		self.assertEqual(run["children"], [])
		self.assertEqual(run["status"], "failed")
		self.assertEqual(run["error"], "Failed at step 'fail'")
		self.assertEqual(run["steps"]["v"]["status"], "completed")
		self.assertEqual(run["steps"]["fail"]["attempts"], 1)
		for state in run["steps"].values():
			self.assertLessEqual(set(state), {"status", "started_at", "completed_at", "attempts"})
		self.assertNotIn(MARK, frappe.as_json(run))
		listed = api.list_runs(reference_doctype="ToDo", reference_name=todo)
		self.assertEqual(len(listed), 2)
		self.assertNotIn(MARK, frappe.as_json(listed))
		self.assertNotIn("token", frappe.as_json(api.get_run(waiting)))
		# the Flow Run form is for Flow Managers: Desk's own endpoints refuse it
		with self.assertRaises(frappe.PermissionError):
			frappe.client.get("Flow Run", failed)
		with self.assertRaises(frappe.PermissionError):
			frappe.desk.form.load.getdoc("Flow Run", failed)
		with self.assertRaises(frappe.PermissionError):
			frappe.client.get_list("Flow Run", fields=["error"])

	def test_users_who_cannot_read_the_document_get_nothing(self):
		failed, _waiting, todo = self.make_runs()
		for user in (OTHER, "Guest"):
			frappe.set_user(user)
			with self.assertRaises(frappe.PermissionError, msg=user):
				api.get_run(failed)
			with self.assertRaises(frappe.PermissionError, msg=user):
				api.list_runs(reference_doctype="ToDo", reference_name=todo)

	# ------------------------------------------------------------ migration of existing flows

	def test_patch_moves_clear_secrets_of_existing_flows(self):
		from flow_engine.patches import move_clear_secrets

		self.make_secret("test_flow_sig", "unused")
		doc = make_flow("secrets legacy", [webhook_step(secret="{{secrets.test_flow_sig}}")], doctype=None)
		old = json.dumps({"version": 1, "steps": [webhook_step(secret="whsec_old_value_1")]}, indent=1)
		clear = json.dumps({"version": 1, "steps": [webhook_step()]}, indent=1)
		frappe.db.set_value("Flow Template", doc.name, "flow_definition", clear, update_modified=False)
		frappe.db.set_value(
			"Flow Template Version", f"{doc.name}-v1", "definition", clear, update_modified=False
		)
		frappe.get_doc(
			{
				"doctype": "Version",
				"ref_doctype": "Flow Template",
				"docname": doc.name,
				"data": frappe.as_json({"changed": [["flow_definition", old, clear]]}),
			}
		).insert(ignore_permissions=True)
		frappe.get_doc(
			{
				"doctype": "Flow Step Attempt",
				"run": "legacy-run",
				"step_id": "notify_crm",
				"kind": "webhook",
				"attempt": 1,
				"status": "failed",
				"input": json.dumps(webhook_step()["payload"]),
				"error": f"Webhook answered 401 for {BEARER}",
			}
		).db_insert()
		frappe.db.commit()
		try:
			move_clear_secrets.execute()
			frappe.db.commit()
			texts = stored_texts(doc.name)
			attempt = frappe.db.get_value(
				"Flow Step Attempt", {"run": "legacy-run"}, ["input", "error"], as_dict=True
			)
			for text in [*texts, attempt.input, attempt.error]:
				for value in (SIGNING, "crm-token-55aa17", API_KEY, "whsec_old_value_1"):
					self.assertNotIn(value, text)
			self.assertEqual(frappe.db.get_value("Flow Template", doc.name, "version"), 1)
			payload = json.loads(frappe.db.get_value("Flow Template", doc.name, "flow_definition"))["steps"][
				0
			]["payload"]
			resolved = secrets.resolve(payload)
			self.assertEqual(resolved["secret"], SIGNING)
			self.assertEqual(resolved["headers"]["Authorization"], BEARER)
			self.assertIn("{{secrets.", attempt.error)
			before = set(flow_secret_names())
			move_clear_secrets.execute()  # a second run finds nothing to move
			self.assertEqual(set(flow_secret_names()), before)
			self.assertEqual(templates.validate_definition(texts[0]), [])
		finally:
			frappe.db.delete("Flow Step Attempt", {"run": "legacy-run"})
			frappe.db.commit()
