import json
from unittest.mock import patch

import frappe

from flow_engine.kinds import registry
from flow_engine.runtime import runs, store
from flow_engine.runtime.templates import FlowValidationError
from flow_engine.tests.utils import FlowTestCase, make_flow

real_get_hooks = frappe.get_hooks


def hooks_with_custom_kind(hook=None, *args, **kwargs):
	if hook == "flow_engine_kinds":
		return ["flow_engine.tests.custom_kinds"]
	return real_get_hooks(hook, *args, **kwargs)


class TestKindRegistry(FlowTestCase):
	def tearDown(self):
		frappe.local.flow_engine_kinds = None
		super().tearDown()

	def test_another_app_can_register_a_kind_through_hooks(self):
		with patch.object(frappe, "get_hooks", hooks_with_custom_kind):
			frappe.local.flow_engine_kinds = None
			self.assertIn("shout", registry.get_catalog())
			with self.assertRaises(FlowValidationError) as error:
				make_flow("shout missing", [{"id": "s", "kind": "shout", "payload": {}}], doctype=None)
			self.assertIn("payload.text", str(error.exception))
			template = make_flow(
				"shout", [{"id": "s", "kind": "shout", "payload": {"text": "hi {{input.who}}"}}], doctype=None
			).name
			name = runs.start_run(template, input={"who": "there"})
			frappe.db.commit()
			record = store.load_run(name)
		self.assertEqual(record.states["s"]["result"], {"text": "HI THERE"})
		frappe.local.flow_engine_kinds = None
		self.assertNotIn("shout", registry.get_catalog())

	def test_catalog_serves_the_editor_and_validation(self):
		catalog = {kind["name"]: kind for kind in registry.installed_kinds()}
		required = [f["name"] for f in catalog["create_doc"]["fields"] if f["required"]]
		self.assertEqual(required, ["doctype", "fields"])
		self.assertEqual(catalog["condition"]["branches"], ["yes", "no"])
		self.assertEqual(
			catalog["subscription_activate"]["available"], "erpnext" in frappe.get_installed_apps()
		)
		json.dumps(catalog)  # serialisable for the Desk
