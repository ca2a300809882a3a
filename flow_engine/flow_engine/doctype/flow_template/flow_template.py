# Copyright (c) 2026, flow_engine developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document

from flow_engine.runtime import templates


class FlowTemplate(Document):
	"""Thin controller: the lifecycle lives in flow_engine.runtime.templates."""

	def validate(self):
		templates.on_validate(self)

	def on_update(self):
		templates.after_save(self)

	def on_trash(self):
		templates.on_trash(self)

	def after_delete(self):
		templates.after_delete(self)

	def before_rename(self, old, new, merge=False):
		templates.before_rename(self, old, new)

	def after_rename(self, old, new, merge=False):
		templates.after_rename(old, new)
