# Copyright (c) 2026, flow_engine developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document

from flow_engine.runtime import secrets


class FlowSecret(Document):
	"""Thin controller: see flow_engine.runtime.secrets."""

	@property
	def usage(self):
		return secrets.placeholder(self.secret_name or self.name or "NAME")

	def autoname(self):
		secrets.on_autoname(self)

	def validate(self):
		secrets.on_validate(self)

	def on_trash(self):
		secrets.on_trash(self)
