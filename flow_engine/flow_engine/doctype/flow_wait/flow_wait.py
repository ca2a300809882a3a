# Copyright (c) 2026, flow_engine developers and contributors
# For license information, please see license.txt

import frappe
from frappe.model.document import Document


class FlowWait(Document):
	"""A wait_for step waiting for a document event or a custom event; see flow_engine.runtime.waits."""


def on_doctype_update():
	frappe.db.add_index("Flow Wait", ["document_type", "event", "status"])
	frappe.db.add_index("Flow Wait", ["custom_event", "correlation_key", "status"])
	frappe.db.add_index("Flow Wait", ["status", "resumed_at", "closed_at"])  # waits.resume_lost
