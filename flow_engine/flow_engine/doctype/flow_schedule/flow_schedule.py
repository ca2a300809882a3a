# Copyright (c) 2026, flow_engine developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document

from flow_engine.runtime import schedules


class FlowSchedule(Document):
	"""Thin controller: see flow_engine.runtime.schedules."""

	def validate(self):
		schedules.on_validate(self)


def on_doctype_update():
	import frappe

	frappe.db.add_index("Flow Schedule", ["enabled", "status", "next_fire_at"])
