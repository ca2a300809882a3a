import frappe

from flow_engine.install import seed_templates
from flow_engine.tests.utils import FlowTestCase


class TestInstall(FlowTestCase):
	def test_role_and_seeds(self):
		self.assertTrue(frappe.db.exists("Role", "Flow Manager"))
		seed_templates()
		todo = frappe.get_doc("Flow Template", "ToDo Follow-up")
		self.assertEqual((todo.is_system, todo.is_active), (1, 0))
		self.assertGreaterEqual(todo.version, 1)
		erpnext = "erpnext" in frappe.get_installed_apps()
		for name in ("Quotation Follow-up", "Issue Triage"):
			self.assertEqual(bool(frappe.db.exists("Flow Template", name)), erpnext)
		with self.assertRaises(frappe.PermissionError):
			todo.delete()

	def test_seeding_never_overwrites_edits(self):
		frappe.db.set_value("Flow Template", "ToDo Follow-up", "is_active", 1)
		seed_templates()
		self.assertEqual(frappe.db.get_value("Flow Template", "ToDo Follow-up", "is_active"), 1)
		frappe.db.set_value("Flow Template", "ToDo Follow-up", "is_active", 0)
		frappe.db.commit()

	def test_hooks_are_wired(self):
		hooks = frappe.get_hooks("doc_events")["*"]
		for event in (
			"after_insert",
			"on_update",
			"on_submit",
			"on_cancel",
			"on_trash",
			"on_update_after_submit",
		):
			self.assertIn("flow_engine.runtime.triggers.on_doc_event", hooks[event])
		cron = frappe.get_hooks("scheduler_events")["cron"]["* * * * *"]
		self.assertIn("flow_engine.runtime.scheduler.tick", cron)
		self.assertTrue(
			frappe.db.exists("Scheduled Job Type", {"method": "flow_engine.runtime.scheduler.tick"})
		)

	def test_preflight_checks_run(self):
		from flow_engine.runtime.health import checks

		names = {check["name"] for check in checks()}
		self.assertTrue({"scheduler", "dormancy", "workers", "backlog"} <= names)
