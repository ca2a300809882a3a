// Flow Approval: its approvers (and System Managers) decide here; the decision goes through
// flow_engine.api.approvals (decided once, the flow goes on in the approved or rejected branch).
frappe.ui.form.on("Flow Approval", {
	refresh(frm) {
		if (frm.doc.status !== "Pending") return;
		const approvers = (frm.doc.approvers || []).map((row) => row.user);
		if (!approvers.includes(frappe.session.user) && !frappe.user.has_role("System Manager")) return;
		for (const action of ["approve", "reject"]) {
			const label = action === "approve" ? __("Approve") : __("Reject");
			const button = frm.add_custom_button(label, () => decide(frm, action));
			button.addClass(action === "approve" ? "btn-primary" : "btn-danger");
		}
	},
});

function decide(frm, action) {
	const verb = action === "approve" ? __("Approve") : __("Reject");
	frappe.prompt(
		{ fieldname: "comment", fieldtype: "Small Text", label: __("Comment") },
		({ comment }) =>
			frappe
				.call({
					method: "flow_engine.api.approvals." + action,
					args: { approval: frm.doc.name, comment: comment || "" },
					freeze: true,
				})
				.then(() => frm.reload_doc()),
		`${verb}: ${frappe.utils.escape_html(frm.doc.subject || frm.doc.name)}`,
		verb
	);
}
