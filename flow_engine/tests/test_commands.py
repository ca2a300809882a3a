import json
import os
import subprocess
import sys
import tempfile

import frappe

from flow_engine.tests.utils import FlowTestCase, make_flow, run_of


def bench(*args):
	"""Run `bench --site SITE flow …` in a separate process, as an administrator would."""
	command = [
		sys.executable,
		"-m",
		"frappe.utils.bench_helper",
		"frappe",
		"--site",
		frappe.local.site,
		"flow",
		*args,
	]
	return subprocess.run(command, cwd=frappe.local.sites_path, capture_output=True, text=True, timeout=300)


class TestCommands(FlowTestCase):
	def test_validate(self):
		ok = bench("validate", "ToDo Follow-up")
		self.assertEqual(ok.returncode, 0, ok.stderr)
		self.assertIn("valid", ok.stdout)
		with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
			json.dump(
				{"steps": [{"id": "a", "kind": "nope"}, {"id": "b", "kind": "wait", "depends_on": ["zz"]}]},
				handle,
			)
		try:
			bad = bench("validate", handle.name)
		finally:
			os.unlink(handle.name)
		self.assertEqual(bad.returncode, 1)
		self.assertIn("Step 'a' → kind: unknown kind 'nope'", bad.stdout)
		self.assertIn("Step 'b' → depends_on", bad.stdout)

	def test_run_runs_tick_complete_and_preflight(self):
		template = make_flow(
			"cli",
			[
				{"id": "m", "kind": "wait", "trigger": {"type": "manual"}},
				{
					"id": "v",
					"kind": "set_variables",
					"depends_on": ["m"],
					"payload": {"variables": {"x": "{{input.x}}"}},
				},
			],
			doctype=None,
		).name
		started = bench("run", template, "--input", '{"x": "1"}')
		self.assertEqual(started.returncode, 0, started.stderr)
		self.assertIn(": waiting", started.stdout)
		name = started.stdout.split(":")[0].strip()
		listed = bench("runs", "--template", template)
		self.assertIn(name, listed.stdout)
		completed = bench("complete", name, "m", "--result", '{"ok": true}')
		self.assertEqual(completed.returncode, 0, completed.stderr)
		self.assertIn("run completed", completed.stdout)
		frappe.db.rollback()
		self.assertEqual(run_of(template).variables, {"x": "1"})
		tick = bench("tick")
		self.assertEqual(tick.returncode, 0, tick.stderr)
		self.assertIn("claimed", tick.stdout)
		preflight = bench("preflight")
		self.assertIn("scheduler", preflight.stdout)
		self.assertIn("workers", preflight.stdout)

	def test_workers_fork_with_the_engine_loaded(self):
		"""`bench worker` loads every app's commands before forking its jobs: ours bring the engine."""
		probe = (
			"import sys; from frappe.utils.bench_helper import get_app_groups; get_app_groups(); "
			"print(all(m in sys.modules for m in "
			"('flow_engine.runtime.runs', 'flow_engine.runtime.scheduler', 'flow_engine.kinds.documents')))"
		)
		out = subprocess.run(
			[sys.executable, "-c", probe],
			cwd=frappe.local.sites_path,
			capture_output=True,
			text=True,
			timeout=120,
		)
		self.assertEqual(out.stdout.strip().splitlines()[-1:], ["True"], out.stderr[-2000:])
