# Copyright (c) 2026, flow_engine developers and contributors
# For license information, please see license.txt

import frappe
from frappe.model.document import Document

from flow_engine.api.permissions import require_flow_manager


class FlowEngineSettings(Document):
	"""Retention and alert settings; the work is in flow_engine.runtime.retention."""

	def validate(self):
		for field in ("keep_completed_days", "keep_failed_days", "keep_step_data_days"):
			if (self.get(field) or 0) < 0:
				frappe.throw(
					frappe._("{0} cannot be negative (0 keeps forever)").format(
						frappe.bold(self.meta.get_label(field))
					)
				)
		if self.retention_batch_size is not None and self.retention_batch_size < 1:
			frappe.throw(frappe._("Rows per Batch must be at least 1"))


@frappe.whitelist()
def get_row_counts() -> dict:
	"""Rows per table for the settings page (Flow Managers only)."""
	require_flow_manager()
	from flow_engine.runtime import retention

	return retention.row_counts()


@frappe.whitelist(methods=["POST"])
def run_retention_now() -> dict:
	"""Queue a retention pass now (runs in this request in inline mode: tests, CLI)."""
	require_flow_manager()
	from flow_engine.runtime import jobs, retention

	if jobs.inline_mode():
		return {"status": "done", "report": retention.run()}
	return {"status": retention.enqueue_now()}
