# Copyright (c) 2026, flow_engine developers and contributors
# For license information, please see license.txt

import frappe
from frappe.model.document import Document


class FlowStepPending(Document):
	"""A step waiting on time; claimed and fired by flow_engine.runtime.scheduler."""


def on_doctype_update():
	frappe.db.add_index("Flow Step Pending", ["status", "trigger_at"])
