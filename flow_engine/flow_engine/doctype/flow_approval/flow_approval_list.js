// Flow Approval list: status colours (approvers see only theirs: see runtime/approvals.py)
const FLOW_APPROVAL_COLOURS = {
	Pending: "orange",
	Approved: "green",
	Rejected: "red",
	"Timed Out": "gray",
	Cancelled: "darkgrey",
};

frappe.listview_settings["Flow Approval"] = {
	add_fields: ["status"],
	get_indicator(doc) {
		return [__(doc.status), FLOW_APPROVAL_COLOURS[doc.status] || "gray", `status,=,${doc.status}`];
	},
};
