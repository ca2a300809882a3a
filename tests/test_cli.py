"""`python -m flow_engine validate|dry-run`: flows checked and walked with no Frappe, as CI runs them."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.factories import cond, flow, step, todo

ROOT = Path(__file__).resolve().parent.parent


def cli(tmp_path, *args, extra_path=()):
	env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *map(str, extra_path)])}
	return subprocess.run(
		[sys.executable, "-m", "flow_engine", *map(str, args)],
		cwd=tmp_path,
		env=env,
		capture_output=True,
		text=True,
		timeout=120,
	)


def write(tmp_path, name, data):
	path = tmp_path / name
	path.write_text(data if isinstance(data, str) else json.dumps(data))
	return path


def urgent_flow():
	return flow(
		step("v", "set_variables", payload={"variables": {"who": "{{doc.owner}}"}}),
		cond("c", field="doc.priority", value="High", depends_on=["v"], label="Urgent?"),
		step(
			"hi",
			"create_doc",
			parent_id="c",
			branch="yes",
			payload={
				"doctype": "ToDo",
				"fields": {"description": "Urgent {{doc.name}} for {{variables.who}}"},
			},
		),
		step("lo", "comment", parent_id="c", branch="no", payload={"text": "later"}),
		step(
			"hook",
			"webhook",
			depends_on=["hi", "lo"],
			trigger={"type": "after_delay", "delay_days": 3},
			payload={
				"method": "PUT",
				"url": "https://crm.example/todo/{{doc.name}}",
				"body": {"by": "{{input.by}}"},
			},
		),
		trigger={
			"doctype": "ToDo",
			"event": "on_update",
			"condition": {"field": "doc.status", "op": "==", "value": "Open"},
		},
	)


DOC = {"doctype": "ToDo", "name": "TD-1", "status": "Open", "priority": "High", "owner": "a@b.c"}


def test_validate_a_valid_flow_exits_0_and_says_site_checks_were_skipped(tmp_path):
	path = write(tmp_path, "flow.json", urgent_flow())
	result = cli(tmp_path, "validate", path)
	assert result.returncode == 0, result.stderr
	lines = result.stdout.splitlines()
	assert lines[0] == f"{path}: valid (5 steps)"
	assert lines[-1].startswith("site checks skipped: doctypes and fields")


def test_validate_reports_every_problem_by_step_and_field_and_exits_1(tmp_path):
	broken = flow(
		todo("a"),
		step("b", "nope", depends_on=["a"]),
		step("c", "create_doc", depends_on=["ghost"], payload={"fields": {"x": "{{steps.zz.result}}"}}),
	)
	result = cli(tmp_path, "validate", write(tmp_path, "broken.json", broken))
	assert result.returncode == 1
	out = result.stdout
	assert "broken.json: invalid, 4 problems" in out
	assert "  - Step 'b' → kind: unknown kind 'nope'" in out
	assert "  - Step 'c' → payload.doctype: 'Document type' is required" in out
	assert "  - Step 'c' → depends_on: refers to step 'ghost', which does not exist" in out
	assert "  - Step 'c' → payload: '{{steps.zz.result}}' refers to step 'zz', which does not exist" in out


def test_malformed_json_is_an_invalid_flow_naming_the_line(tmp_path):
	path = write(tmp_path, "bad.json", '{"version": 1,\n "steps": [,]}')
	result = cli(tmp_path, "validate", path, write(tmp_path, "ok.json", flow(todo("a"))))
	assert result.returncode == 1
	assert "bad.json: invalid, 1 problem\n  - flow_definition: is not valid JSON at line 2" in result.stdout
	assert "ok.json: valid (1 step)" in result.stdout


def test_exported_templates_and_fixture_lists_are_read(tmp_path):
	export = {
		"doctype": "Flow Template",
		"name": "Urgent ToDos",
		"flow_definition": json.dumps(urgent_flow()),
		"trigger_doctype": "ToDo",
	}
	broken = {"name": "Broken", "flow_definition": json.dumps(flow(step("x", "nope")))}
	assert cli(tmp_path, "validate", write(tmp_path, "export.json", export)).returncode == 0
	result = cli(tmp_path, "validate", write(tmp_path, "fixtures.json", [export, broken]))
	assert result.returncode == 1
	assert "fixtures.json [Urgent ToDos]: valid (5 steps)" in result.stdout
	assert "fixtures.json [Broken]: invalid, 1 problem\n  - Step 'x' → kind: unknown kind" in result.stdout


def test_validate_json_report(tmp_path):
	result = cli(tmp_path, "validate", "--json", write(tmp_path, "f.json", flow(step("a", "nope"))))
	assert result.returncode == 1
	report = json.loads(result.stdout)
	assert report["valid"] is False and report["site_checks"] == "skipped"
	[problem] = report["flows"][0]["problems"]
	assert (problem["step_id"], problem["field"], problem["code"]) == ("a", "kind", "unknown_kind")


def test_dry_run_prints_waves_branches_and_rendered_payloads(tmp_path):
	path = write(tmp_path, "flow.json", urgent_flow())
	doc = write(tmp_path, "doc.json", DOC)
	result = cli(
		tmp_path, "dry-run", path, "--doc", doc, "--input", '{"by": "ci"}', "--now", "2026-05-01T09:00"
	)
	assert result.returncode == 0, result.stderr
	assert result.stdout.splitlines()[:4] == [
		f"{path}: dry run on ToDo TD-1 at 2026-05-01 09:00 (nothing is performed)",
		"Trigger: ToDo on_update, when doc.status equals 'Open': met",
		"Wave 1",
		"  v [set_variables]: sets who = a@b.c",
	]
	out = result.stdout
	assert "Wave 2\n  c (Urgent?) [condition]: doc.priority equals 'High' → branch 'yes'\n" in out
	assert (
		"Wave 3\n  hi [create_doc]: would create ToDo with "
		'{"description": "Urgent TD-1 for a@b.c"}\n'
		'      payload: {"doctype": "ToDo", "fields": {"description": "Urgent TD-1 for a@b.c"}}\n'
		"  lo [comment]: skipped: branch 'no' of 'c' not taken (took 'yes')\n"
	) in out
	assert '  hook [webhook]: would PUT https://crm.example/todo/TD-1 with body {"by": "ci"}\n' in out
	assert "(until 2026-05-04 09:00)" in out
	assert "Never reached: none" in out


def test_dry_run_takes_the_other_branch_and_reports_an_unmet_trigger(tmp_path):
	doc = write(tmp_path, "doc.json", {**DOC, "priority": "Low", "status": "Closed"})
	result = cli(tmp_path, "dry-run", write(tmp_path, "flow.json", urgent_flow()), "--doc", doc, "--json")
	assert result.returncode == 0, result.stderr
	report = json.loads(result.stdout)
	by_id = {entry["step_id"]: entry for entry in report["steps"]}
	assert report["trigger"]["met"] is False
	assert by_id["c"]["branch"] == "no"
	assert by_id["hi"]["action"] == "skip"
	assert by_id["lo"]["effect"] == "would comment on the trigger document (ToDo TD-1): later"


def test_dry_run_checks_the_input_against_the_exported_payload_schema(tmp_path):
	export = {
		"name": "Needs a reason",
		"flow_definition": json.dumps(
			flow(step("c", "comment", payload={"text": "because {{input.reason}}"}))
		),
		"payload_schema": json.dumps({"type": "object", "required": ["reason"]}),
	}
	path = write(tmp_path, "export.json", export)
	missing = cli(tmp_path, "dry-run", path)
	assert missing.returncode == 1
	assert "  - input → (root): 'reason' is a required property" in missing.stdout
	given = cli(
		tmp_path, "dry-run", path, "--input", "@" + str(write(tmp_path, "in.json", {"reason": "late"}))
	)
	assert given.returncode == 0, given.stderr
	assert "  c [comment]: would comment on the trigger document: because late" in given.stdout


def test_a_step_that_would_fail_makes_the_dry_run_exit_1(tmp_path):
	dated = flow(step("d", "wait", trigger={"type": "on_date", "date": "{{doc.due}}"}))
	doc = write(tmp_path, "doc.json", {"due": "soon"})
	result = cli(tmp_path, "dry-run", write(tmp_path, "f.json", dated), "--doc", doc)
	assert result.returncode == 1
	assert "date 'soon' is not a date: would fail" in result.stdout


def test_usage_errors_exit_2(tmp_path):
	path = write(tmp_path, "flow.json", urgent_flow())
	cases = [
		(("validate", tmp_path / "missing.json"), "cannot read"),
		(("dry-run", path, "--input", "{nope"), "--input is not valid JSON"),
		(("dry-run", path, "--doc", write(tmp_path, "list.json", [1])), "--doc must hold one JSON object"),
		(("dry-run", path, "--now", "soon"), "--now 'soon' is not an ISO date"),
		(("validate", "--bogus", path), "unrecognized arguments"),
		((), "usage:"),
	]
	for args, message in cases:
		result = cli(tmp_path, *args)
		assert (result.returncode, result.stdout) == (2, ""), (args, result.stdout, result.stderr)
		assert message in result.stderr, (args, result.stderr)


def test_kinds_from_another_app_module(tmp_path):
	(tmp_path / "my_kinds.py").write_text(
		textwrap.dedent(
			"""
			from flow_engine.engine.catalog import FieldSpec, KindSpec
			KINDS = [(KindSpec("sms_blast", "SMS blast", fields=(FieldSpec("to", "To", required=True),),
				external=True), "my_app.kinds.sms_blast")]
			"""
		)
	)
	path = write(tmp_path, "f.json", flow(step("s", "sms_blast", payload={"to": "{{doc.phone}}"})))
	assert "unknown kind 'sms_blast'" in cli(tmp_path, "validate", path).stdout
	assert cli(tmp_path, "validate", path, "--kinds", "my_kinds", extra_path=[tmp_path]).returncode == 0
	result = cli(tmp_path, "dry-run", path, "--kinds", "my_kinds", extra_path=[tmp_path])
	assert "  s [sms_blast]: would run SMS blast (an external call)" in result.stdout


BLOCK_FRAPPE = """
import sys

class BlockFrappe:
	def find_spec(self, name, path=None, target=None):
		if name == "frappe" or name.startswith("frappe."):
			sys.stderr.write(f"BLOCKED IMPORT {name}\\n")
			raise ImportError(f"{name} is blocked: this process must run without Frappe")
		return None

sys.meta_path.insert(0, BlockFrappe())
"""


def test_runs_where_frappe_cannot_be_imported(tmp_path):
	"""A sitecustomize makes any `import frappe` fail loudly, even on a bench's Python."""
	hook = tmp_path / "hook"
	hook.mkdir()
	(hook / "sitecustomize.py").write_text(BLOCK_FRAPPE)
	env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)])}

	def run(*args):
		return subprocess.run(
			[sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
		)

	control = run("-c", "import flow_engine.commands")  # the bench commands do need frappe
	assert "BLOCKED IMPORT frappe" in control.stderr and control.returncode != 0

	path = write(tmp_path, "flow.json", urgent_flow())
	doc = write(tmp_path, "doc.json", DOC)
	checked = run("-m", "flow_engine", "validate", path)
	walked = run("-m", "flow_engine", "dry-run", path, "--doc", doc, "--input", '{"by": "x"}')
	for result in (checked, walked):
		assert result.returncode == 0, result.stderr
		assert "BLOCKED IMPORT" not in result.stderr
	assert "valid (5 steps)" in checked.stdout
	assert "would create ToDo" in walked.stdout
