import os
import signal
import subprocess
import sys
import time

import frappe

from flow_engine.install import seed_templates
from flow_engine.runtime.health import checks
from flow_engine.tests.utils import FlowTestCase, make_flow


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

	def test_unedited_system_flows_follow_the_seeds_and_edited_ones_stay(self):
		"""An app update that changes a seed reaches the sites that never edited that flow."""
		import json

		from flow_engine.install import SEEDS, seed_digest

		seed_templates()
		name = "ToDo Follow-up"
		shipped = frappe.get_doc("Flow Template", name)
		seeded_label = json.loads((SEEDS / "todo_follow_up.json").read_text())["definition"]["steps"][0][
			"label"
		]
		older = json.loads(shipped.flow_definition)
		older["steps"][0]["label"] = "As an older release shipped it"
		try:
			# as an older release left it: its own definition, with that definition's digest
			frappe.db.set_value("Flow Template", name, "flow_definition", json.dumps(older))
			frappe.db.set_value(
				"Flow Template", name, "seed_digest", seed_digest(frappe.get_doc("Flow Template", name))
			)
			self.assertIn(name, seed_templates())
			upgraded = frappe.get_doc("Flow Template", name)
			self.assertEqual(json.loads(upgraded.flow_definition)["steps"][0]["label"], seeded_label)
			self.assertEqual(upgraded.seed_digest, seed_digest(upgraded))
			self.assertGreater(upgraded.version, shipped.version)
			self.assertEqual(seed_templates(), [], "nothing left to upgrade")

			edited = frappe.get_doc("Flow Template", name)
			edited.description = "Ours now"
			edited.save()  # an operator's edit
			frappe.db.set_value("Flow Template", name, "flow_definition", json.dumps(older))
			self.assertEqual(seed_templates(), [])
			self.assertEqual(json.loads(frappe.db.get_value("Flow Template", name, "flow_definition")), older)
		finally:
			frappe.db.rollback()
			frappe.db.set_value("Flow Template", name, "flow_definition", shipped.flow_definition)
			frappe.db.set_value("Flow Template", name, "description", shipped.description)
			frappe.db.set_value("Flow Template", name, "seed_digest", shipped.seed_digest)
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
		"""Each check reports this site's real state: scheduler, workers, backlog, runs."""
		from frappe.utils import add_to_date, now_datetime

		from flow_engine.runtime import runs

		def check(name):
			found = {row["name"]: row for row in checks()}
			return found.get(name)

		enabled = frappe.db.get_single_value("System Settings", "enable_scheduler")
		try:
			frappe.db.set_single_value("System Settings", "enable_scheduler", 0)
			scheduler = check("scheduler")
			self.assertEqual(scheduler["level"], "fail")
			self.assertIn("bench --site SITE enable-scheduler", scheduler["detail"])
			frappe.db.set_single_value("System Settings", "enable_scheduler", 1)
			self.assertEqual((check("scheduler")["level"], check("scheduler")["detail"]), ("ok", "enabled"))
			frappe.local.conf.pause_scheduler = 1
			scheduler = check("scheduler")
			self.assertEqual(scheduler["level"], "fail")
			self.assertIn("pause_scheduler", scheduler["detail"])
		finally:
			frappe.local.conf.pop("pause_scheduler", None)
			frappe.db.set_single_value("System Settings", "enable_scheduler", enabled)

		# a run waiting 30 minutes: in progress, its pending step not overdue; 10 minutes late: overdue
		overdue = frappe.db.count(
			"Flow Step Pending",
			{"status": "pending", "trigger_at": ["<", add_to_date(now_datetime(), minutes=-5)]},
		)
		in_progress = frappe.db.count("Flow Run", {"status": ["in", ("running", "waiting")]})
		template = make_flow(
			"preflight",
			[{"id": "later", "kind": "wait", "trigger": {"type": "after_delay", "delay_minutes": 30}}],
		).name
		name = runs.start_run(template)
		frappe.db.commit()  # the run is advanced (inline here) once its transaction commits
		self.assertEqual(frappe.db.get_value("Flow Run", name, "status"), "waiting")
		self.assertTrue(check("runs")["detail"].startswith(f"{in_progress + 1} in progress, "))
		self.assertEqual(
			(check("backlog")["level"], check("backlog")["detail"]),
			("ok" if not overdue else "warn", f"{overdue} pending step(s) overdue by more than 5 minutes"),
		)
		row = frappe.db.get_value("Flow Step Pending", {"run": name}, "name")
		frappe.db.set_value("Flow Step Pending", row, "trigger_at", add_to_date(now_datetime(), minutes=-10))
		self.assertEqual(
			(check("backlog")["level"], check("backlog")["detail"]),
			("warn", f"{overdue + 1} pending step(s) overdue by more than 5 minutes"),
		)

	def test_preflight_sees_the_workers_that_listen(self):
		"""No worker on 'default' is a failure naming `bench worker`; a real worker started here is seen."""
		from frappe.utils.background_jobs import get_workers

		def queues():
			return {q.name.rsplit(":", 1)[-1] for w in get_workers() for q in w.queues}

		if "default" not in queues():  # nobody else's worker is up: the failure is visible
			workers = next(row for row in checks() if row["name"] == "workers")
			self.assertEqual(workers["level"], "fail")
			self.assertIn("`bench worker`", workers["detail"])
		worker = subprocess.Popen(
			[sys.executable, "-m", "frappe.utils.bench_helper", "frappe", "worker", "--queue", "default"],
			cwd=frappe.local.sites_path,
			stdout=subprocess.DEVNULL,
			stderr=subprocess.DEVNULL,
			start_new_session=True,
		)
		try:
			deadline = time.monotonic() + 60
			while "default" not in queues() and time.monotonic() < deadline:
				time.sleep(0.5)
			found = {row["name"]: row for row in checks()}
			self.assertEqual(found["workers"]["level"], "ok", found["workers"])
			self.assertRegex(found["workers"]["detail"], r"^\d+ worker\(s\) on .*\bdefault\b")
			# delayed steps fire within seconds only when some worker takes the 'long' queue
			self.assertEqual("timer" in found, "long" not in queues())
		finally:
			os.killpg(worker.pid, signal.SIGTERM)
			worker.wait(timeout=30)
