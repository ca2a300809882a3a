# Copyright (c) 2026, flow_engine developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document


class FlowApprovalApprover(Document):
	pass
