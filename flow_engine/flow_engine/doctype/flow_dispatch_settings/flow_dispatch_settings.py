# Copyright (c) 2026, flow_engine developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document


class FlowDispatchSettings(Document):
	"""Where `dispatch_job` creates its field jobs on this site, and how its fields map onto them.
	Read by flow_engine.kinds.dispatch (empty: ERPNext Task, or ToDo on a site without ERPNext)."""

	def validate(self):
		from flow_engine.kinds.dispatch import check_settings

		check_settings(self)
