# Copyright (c) 2026, flow_engine developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document


class FlowJobKey(Document):
	"""The job a `merge_key` names (dispatch_job / create_doc): a later step with the same key reuses
	that job while it is open. Written by flow_engine.kinds.documents."""
