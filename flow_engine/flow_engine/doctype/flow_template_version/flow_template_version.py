# Copyright (c) 2026, flow_engine developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document


class FlowTemplateVersion(Document):
	"""An immutable definition a run can be pinned to; written by the Flow Template controller."""

	def autoname(self):
		self.name = f"{self.template}-v{self.version}"


def on_doctype_update():
	import frappe

	frappe.db.add_unique("Flow Template Version", ["template", "version"], constraint_name="template_version")
