# Copyright (c) 2026, flow_engine developers and contributors
# For license information, please see license.txt
"""A person's decision a flow waits for; see flow_engine/runtime/approvals.py (decisions go through
flow_engine.api.approvals, never through saving the form)."""

from frappe.model.document import Document


class FlowApproval(Document):
	pass
