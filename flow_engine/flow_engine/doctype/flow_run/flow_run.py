# Copyright (c) 2026, flow_engine developers and contributors
# For license information, please see license.txt

import frappe
from frappe.model.document import Document


class FlowRun(Document):
	"""Runs are written by flow_engine.runtime.runs with plain SQL; this controller only names them."""

	def autoname(self):
		from flow_engine.runtime.runs import new_run_name

		self.name = new_run_name()

	def on_trash(self):
		frappe.db.delete("Flow Step Pending", {"run": self.name})
		frappe.db.delete("Flow Step Attempt", {"run": self.name})
		frappe.db.delete("Flow Wait", {"run": self.name})


def on_doctype_update():
	frappe.db.add_index("Flow Run", ["reference_doctype", "reference_name"])
	frappe.db.add_index("Flow Run", ["status", "modified"])
	frappe.db.add_index("Flow Run", ["status", "lease_until"])
	frappe.db.add_index("Flow Run", ["status", "lease_owner"])
	frappe.db.add_index("Flow Run", ["template", "status", "creation"])  # admission: open runs, queue
	frappe.db.add_index("Flow Run", ["template", "started_at"])  # admission: rate window
	frappe.db.add_index("Flow Run", ["template", "dedupe_value"])  # admission: an open run of the key
	# a flow's failures newest first (failure inbox of one flow, the form's last failures) and its
	# runs ended in a window with their durations (insight): a range of this index, read from the
	# index alone, not every run of the flow
	frappe.db.add_index("Flow Run", ["template", "status", "modified", "completed_at", "started_at"])
	# the list sidebar's "Created By" counts (group by owner): an index scan, not the whole table
	frappe.db.add_index("Flow Run", ["owner"])
