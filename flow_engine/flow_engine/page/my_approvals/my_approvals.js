// Desk page `my-approvals`: the session user's pending Flow Approvals (oldest first) with Approve /
// Reject and an optional comment. Decisions go through flow_engine.api.approvals (decided once).
const APPROVALS_API = "flow_engine.api.approvals.";

frappe.pages["my-approvals"].on_page_load = function (wrapper) {
	const page = frappe.ui.make_app_page({ parent: wrapper, title: __("My Approvals"), single_column: true });
	wrapper.my_approvals = new MyApprovals(page);
};

frappe.pages["my-approvals"].on_page_show = function (wrapper) {
	wrapper.my_approvals && wrapper.my_approvals.refresh();
};

class MyApprovals {
	constructor(page) {
		this.page = page;
		page.set_primary_action(__("Refresh"), () => this.refresh(), "refresh");
		this.$body = $(`<div class="my-approvals"></div>`).appendTo(page.main);
		this.$body.on("click", ".approval-decide", (event) => {
			const $button = $(event.currentTarget);
			const $row = $button.closest("[data-approval]");
			this.decide($row.data("approval"), $button.data("action"), $row.find(".approval-subject").text());
		});
		frappe.realtime.on("list_update", (data) => {
			if (data && data.doctype === "Flow Approval") this.refresh();
		});
	}

	refresh() {
		frappe.call(APPROVALS_API + "my_approvals").then(({ message }) => this.render(message || []));
	}

	render(rows) {
		const esc = frappe.utils.escape_html;
		if (!rows.length) {
			this.$body.html(`<div class="text-muted text-center p-5 approvals-empty">${__("Nothing waits for your decision")}</div>`);
			return;
		}
		const link = (row) =>
			row.reference_doctype && row.reference_name
				? `<a href="/app/${frappe.router.slug(row.reference_doctype)}/${encodeURIComponent(row.reference_name)}">${esc(
						__(row.reference_doctype)
				  )} ${esc(row.reference_name)}</a>`
				: "";
		this.$body.html(`
			<table class="table table-hover frappe-card approvals-table">
				<thead><tr>
					<th>${__("Subject")}</th><th>${__("Flow")}</th><th>${__("Document")}</th>
					<th>${__("Waiting since")}</th><th></th>
				</tr></thead>
				<tbody>
				${rows
					.map(
						(row) => `
					<tr data-approval="${esc(row.name)}">
						<td><a class="approval-subject" href="/app/flow-approval/${encodeURIComponent(row.name)}">${esc(row.subject || row.name)}</a>
							${row.escalated ? `<span class="indicator-pill orange">${__("Escalated")}</span>` : ""}
							${row.message ? `<div class="text-muted small">${esc(row.message)}</div>` : ""}</td>
						<td>${esc(row.flow || "")}</td>
						<td>${link(row)}</td>
						<td>${frappe.datetime.comment_when(row.waiting_since)}
							${row.expires_at ? `<div class="text-muted small">${__("expires {0}", [esc(frappe.datetime.str_to_user(row.expires_at))])}</div>` : ""}</td>
						<td class="text-right text-nowrap">
							<button class="btn btn-xs btn-primary approval-decide" data-action="approve">${__("Approve")}</button>
							<button class="btn btn-xs btn-danger approval-decide" data-action="reject">${__("Reject")}</button>
						</td>
					</tr>`
					)
					.join("")}
				</tbody>
			</table>`);
	}

	decide(approval, action, subject) {
		const verb = action === "approve" ? __("Approve") : __("Reject");
		frappe.prompt(
			{ fieldname: "comment", fieldtype: "Small Text", label: __("Comment") },
			({ comment }) =>
				frappe
					.call({ method: APPROVALS_API + action, args: { approval, comment: comment || "" }, freeze: true })
					.then(({ message }) => {
						frappe.show_alert({ message: `${__(message.status)}: ${frappe.utils.escape_html(subject || approval)}`, indicator: "green" });
						this.refresh();
					}),
			`${verb}: ${frappe.utils.escape_html(subject || approval)}`,
			verb
		);
	}
}
