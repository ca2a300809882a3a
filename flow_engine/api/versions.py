"""Draft → publish, version history, diff, rollback and moving waiting runs (Flow Managers)."""

from __future__ import annotations

import frappe

from flow_engine.api.permissions import json_arg, require_flow_manager
from flow_engine.runtime import migration, publishing


def _writable(template: str) -> None:
	require_flow_manager()
	frappe.has_permission("Flow Template", "write", doc=template, throw=True)


def _readable(template: str) -> None:
	require_flow_manager()
	frappe.has_permission("Flow Template", "read", doc=template, throw=True)


@frappe.whitelist(methods=["POST"])
def publish_flow(template: str, note: str | None = None) -> dict:
	"""Publish the flow's draft as its next version; new runs start on it."""
	_writable(template)
	return publishing.publish(template, note=note)


@frappe.whitelist(methods=["POST"])
def discard_draft(template: str) -> dict:
	_writable(template)
	publishing.discard_draft(template)
	return {"template": template, "has_draft": False}


@frappe.whitelist(methods=["POST"])
def rollback_flow(template: str, version: int | str, note: str | None = None) -> dict:
	"""Publish an old version again, as the next version."""
	_writable(template)
	return publishing.rollback(template, int(version), note=note)


@frappe.whitelist()
def flow_versions(template: str) -> list[dict]:
	"""Published versions, newest first: who, when, note, changes."""
	_readable(template)
	return publishing.history(template)


@frappe.whitelist()
def compare_versions(template: str, base: str = "published", target: str = "draft") -> dict:
	"""Steps added, removed and changed from `base` to `target` (a version number, "published" or
	"draft")."""
	_readable(template)
	return publishing.compare(template, base, target)


@frappe.whitelist()
def migration_report(template: str, to_version: int | str | None = None) -> dict:
	"""Dry report: which open runs could move to `to_version` (default: published) and which could not."""
	_readable(template)
	return migration.migration_report(template, int(to_version) if to_version else None)


@frappe.whitelist(methods=["POST"])
def migrate_runs(template: str, to_version: int | str | None = None, runs: list | str | None = None) -> dict:
	"""Move the compatible open runs (all, or those listed) to `to_version`; the others stay."""
	_writable(template)
	wanted = json_arg(runs, "runs") if runs else None
	return migration.migrate_runs(template, int(to_version) if to_version else None, wanted)
