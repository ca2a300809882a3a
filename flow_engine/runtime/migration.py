"""Moving open runs of a flow to another of its versions (after a publish or a rollback).

`migration_report` says, changing nothing, which open runs of other versions could continue on the
target version and why the others cannot (a step they began, finished or wait on no longer exists there,
or became another kind); `migrate_runs` moves the compatible ones, each re-checked under its lock.
"""

from __future__ import annotations

import frappe
from frappe import _

from flow_engine.engine import versions
from flow_engine.runtime import leases, store
from flow_engine.runtime import runs as run_engine
from flow_engine.runtime.publishing import OPEN, definition_of


def migration_report(template: str, to_version: int | None = None) -> dict:
	"""Which open runs of other versions could move to `to_version` (default: published), and why the
	others cannot. Changes nothing."""
	target_version = int(to_version or frappe.db.get_value("Flow Template", template, "version"))
	target = definition_of(template, target_version)
	rows = frappe.get_all(
		"Flow Run",
		filters={"template": template, "status": ["in", OPEN], "template_version": ["!=", target_version]},
		fields=["name", "template_version", "status"],
		order_by="creation asc",
	)
	sources: dict[int, dict] = {}
	compatible, incompatible = [], []
	for row in rows:
		if row.template_version not in sources:
			sources[row.template_version] = definition_of(template, row.template_version)
		record = store.load_run(row.name)
		problems = versions.migration_problems(record.states, sources[row.template_version], target)
		entry = {"run": row.name, "from_version": row.template_version, "status": row.status}
		if problems:
			incompatible.append({**entry, "problems": problems})
		else:
			compatible.append(entry)
	return {
		"template": template,
		"to_version": target_version,
		"compatible": compatible,
		"incompatible": incompatible,
	}


def migrate_runs(template: str, to_version: int | None = None, runs: list[str] | None = None) -> dict:
	"""Move the compatible open runs (all, or those in `runs`) to `to_version`, each under its lock,
	checked again there; each moved run is advanced so steps new to it become ready. Records a
	comment on every run moved."""
	frappe.has_permission("Flow Template", "write", doc=template, throw=True)
	report = migration_report(template, to_version)
	target_version = report["to_version"]
	target = definition_of(template, target_version)
	wanted = set(runs) if runs else None
	moved, refused = [], list(report["incompatible"])
	for entry in report["compatible"]:
		if wanted is not None and entry["run"] not in wanted:
			continue
		record = run_engine.locked(entry["run"])
		source = definition_of(template, record.template_version)
		problems = versions.migration_problems(record.states, source, target)
		if record.is_terminal or problems:
			refused.append({**entry, "problems": problems or [_("the run has ended")]})
			frappe.db.rollback()
			continue
		frappe.db.set_value(
			"Flow Run", record.name, "template_version", target_version, update_modified=False
		)
		frappe.get_doc("Flow Run", record.name).add_comment(
			"Info",
			_("Moved from version {0} to version {1} by {2}").format(
				record.template_version, target_version, frappe.session.user
			),
		)
		record.status = "running"  # driven once on its new version: steps new to it may be ready
		leases.grant(record)
		run_engine.save(record)
		frappe.db.commit()
		moved.append(entry["run"])
	return {"template": template, "to_version": target_version, "moved": moved, "refused": refused}
