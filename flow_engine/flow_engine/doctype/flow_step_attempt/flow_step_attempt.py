# Copyright (c) 2026, flow_engine developers and contributors
# For license information, please see license.txt

import frappe
from frappe.model.document import Document


class FlowStepAttempt(Document):
	"""One execution attempt of one step: rendered input, output, error, duration."""


def on_doctype_update():
	frappe.db.add_index("Flow Step Attempt", ["run", "step_id"])
