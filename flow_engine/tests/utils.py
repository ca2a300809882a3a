"""Helpers for the site tier (real Frappe site; run with `bench --site SITE run-tests --app flow_engine`)."""

from __future__ import annotations

import json
import subprocess
import sys

import frappe
from frappe.tests.utils import FrappeTestCase

from flow_engine.runtime import store

TEST_DOCTYPE = "Flow Test Doc"
PREFIX = "_Test Flow "


TEST_DOCTYPE_MODULE = "Custom"  # Frappe's own module: the Flow Engine workspace never lists it


def ensure_test_doctype() -> str:
	"""A small submittable doctype, so submit/cancel events can be tested on plain Frappe too.

	It lives in Frappe's "Custom" module, not "Flow Engine": a custom doctype of a module shows under
	"Custom Documents" in that module's workspace, and a test doctype has no place in the product's."""
	if frappe.db.get_value("DocType", TEST_DOCTYPE, "module") not in (None, TEST_DOCTYPE_MODULE):
		frappe.db.set_value("DocType", TEST_DOCTYPE, "module", TEST_DOCTYPE_MODULE, update_modified=False)
		frappe.clear_cache(doctype=TEST_DOCTYPE)
		frappe.db.commit()
	if not frappe.db.exists("DocType", TEST_DOCTYPE):
		frappe.get_doc(
			{
				"doctype": "DocType",
				"name": TEST_DOCTYPE,
				"module": TEST_DOCTYPE_MODULE,
				"custom": 1,
				"is_submittable": 1,
				"autoname": "hash",
				"fields": [
					{"fieldname": "title", "fieldtype": "Data", "label": "Title"},
					{
						"fieldname": "status",
						"fieldtype": "Select",
						"label": "Status",
						"options": "Open\nClosed",
						"default": "Open",
						"allow_on_submit": 1,
					},
					{"fieldname": "amount", "fieldtype": "Float", "label": "Amount", "allow_on_submit": 1},
					{"fieldname": "due_on", "fieldtype": "Datetime", "label": "Due On"},
					{"fieldname": "notes", "fieldtype": "Small Text", "label": "Notes", "allow_on_submit": 1},
				],
				"permissions": [
					{
						"role": "System Manager",
						"read": 1,
						"write": 1,
						"create": 1,
						"delete": 1,
						"submit": 1,
						"cancel": 1,
					}
				],
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()
	return TEST_DOCTYPE


def make_flow(
	name: str,
	steps: list,
	doctype: str | None = TEST_DOCTYPE,
	event: str = "manual",
	active: bool = True,
	condition=None,
	field: str | None = None,
	custom_event: str | None = None,
	variables=None,
	**extra,
):
	definition = {"version": 1, "steps": steps}
	if variables:
		definition["variables"] = variables
	doc = frappe.get_doc(
		{
			"doctype": "Flow Template",
			"template_name": PREFIX + name,
			"trigger_doctype": doctype,
			"trigger_event": event,
			"trigger_field": field,
			"custom_event": custom_event,
			"trigger_condition": json.dumps(condition) if condition else None,
			"is_active": int(active),
			"flow_definition": json.dumps(definition),
			**extra,
		}
	)
	doc.insert()
	frappe.db.commit()
	return doc


def ensure_user(email: str, roles: list[str], enabled: int = 1) -> str:
	"""A real user with exactly `roles` (created on first use), committed."""
	if not frappe.db.exists("User", email):
		frappe.get_doc(
			{
				"doctype": "User",
				"email": email,
				"first_name": email.split("@")[0],
				"send_welcome_email": 0,
				"user_type": "System User",
			}
		).insert(ignore_permissions=True)
	user = frappe.get_doc("User", email)
	user.enabled = enabled
	user.set("roles", [{"role": role} for role in roles])
	user.save(ignore_permissions=True)
	frappe.db.commit()
	return email


def new_test_doc(**values):
	ensure_test_doctype()
	doc = frappe.get_doc({"doctype": TEST_DOCTYPE, "title": "T", **values})
	doc.insert()
	return doc


# for code run in separate processes (run_in_subprocess): `barrier(name, parties, timeout)` waits until
# `parties` processes reached it (files in BARRIER_DIR), so a test forces the overlap it checks
BARRIER = """
import os, pathlib, time
def barrier(name, parties, timeout):
	folder = pathlib.Path(BARRIER_DIR)
	(folder / f"{name}.{os.getpid()}").touch()
	end = time.monotonic() + timeout
	while len(list(folder.glob(f"{name}.*"))) < parties and time.monotonic() < end:
		time.sleep(0.005)
"""


def insert_run(template: str, status: str, started, ended=None, **values) -> str:
	"""A Flow Run row written directly (no steps run): for tests of what reads runs in bulk."""
	from flow_engine.runtime import runs

	name = runs.new_run_name()
	row = {
		"template": template,
		"template_version": 1,
		"status": status,
		"source": "user",
		"depth": 0,
		"waves": 1,
		"steps_executed": 1,
		"infra_failures": 0,
		"started_at": started,
		"completed_at": ended if status in store.TERMINAL else None,
		"creation": started,
		"modified": ended or started,
		"input": {},
		"variables": {},
		"step_state": {},
	}
	row.update(values)
	store.insert_row("Flow Run", row, name=name)
	return name


def run_of(template: str, **filters) -> store.RunRecord | None:
	names = frappe.get_all(
		"Flow Run", filters={"template": template, **filters}, pluck="name", order_by="creation desc"
	)
	return store.load_run(names[0]) if names else None


def runs_of(template: str) -> list[str]:
	return frappe.get_all("Flow Run", filters={"template": template}, pluck="name")


def cleanup() -> None:
	frappe.db.rollback()
	frappe.flags.flow_engine_inline = False
	templates = frappe.get_all("Flow Template", filters={"name": ["like", PREFIX + "%"]}, pluck="name")
	if templates:
		runs = frappe.get_all("Flow Run", filters={"template": ["in", templates]}, pluck="name")
		for chunk in range(0, len(runs), 500):
			part = runs[chunk : chunk + 500]
			frappe.db.delete("Flow Step Pending", {"run": ["in", part]})
			frappe.db.delete("Flow Step Attempt", {"run": ["in", part]})
			frappe.db.delete("Flow Run", {"name": ["in", part]})
		frappe.db.delete("Flow Template Version", {"template": ["in", templates]})
		frappe.db.delete("Flow Template", {"name": ["in", templates]})
	secrets = frappe.get_all("Flow Secret", filters={"template": ["like", PREFIX + "%"]}, pluck="name")
	if secrets:
		frappe.db.delete("Flow Secret", {"name": ["in", secrets]})
		frappe.db.delete("__Auth", {"doctype": "Flow Secret", "name": ["in", secrets]})
	if frappe.db.exists("DocType", TEST_DOCTYPE):
		frappe.db.delete(TEST_DOCTYPE)
	frappe.db.delete("ToDo", {"description": ["like", "%[flowtest]%"]})
	frappe.db.commit()
	from flow_engine.runtime.templates import clear_caches

	clear_caches("*")


def run_burst_worker(queue: str = "default") -> subprocess.CompletedProcess:
	"""A real RQ worker that works off what is queued, then exits (`bench worker --burst`)."""
	return subprocess.run(
		[sys.executable, "-m", "frappe.utils.bench_helper", "frappe", "worker", "--queue", queue, "--burst"],
		cwd=frappe.local.sites_path,
		capture_output=True,
		text=True,
		timeout=300,
	)


def run_in_subprocess(code: str, wait: bool = True, **popen):
	"""Run Python `code` in a fresh process connected to this site (a separate worker)."""
	prelude = (
		"import sys, frappe\n"
		f"frappe.init(site={frappe.local.site!r}, sites_path={frappe.local.sites_path!r})\n"
		"frappe.connect()\nfrappe.set_user('Administrator')\n"
	)
	process = subprocess.Popen(
		[sys.executable, "-c", prelude + code],
		cwd=frappe.local.sites_path,
		stdout=subprocess.PIPE,
		stderr=subprocess.PIPE,
		text=True,
		**popen,
	)
	if not wait:
		return process
	out, err = process.communicate(timeout=300)
	if process.returncode != 0:
		raise AssertionError(f"subprocess failed ({process.returncode}):\n{err[-3000:]}")
	return out


class FlowTestCase(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_test_doctype()

	def setUp(self):
		frappe.set_user("Administrator")
		frappe.flags.flow_engine_inline = True

	def tearDown(self):
		frappe.set_user("Administrator")
		cleanup()
