// Copyright (c) 2026, flow_engine developers and contributors
// For license information, please see license.txt

const SETTINGS_METHODS = "flow_engine.flow_engine.doctype.flow_engine_settings.flow_engine_settings";

frappe.ui.form.on("Flow Engine Settings", {
	refresh(frm) {
		render_row_counts(frm);
		frm.add_custom_button(__("Refresh counts"), () => render_row_counts(frm));
		frm.add_custom_button(__("Run retention now"), () =>
			frappe.confirm(
				__("Delete runs and clear step data older than these settings now, in batches?"),
				() =>
					frappe
						.call({ method: `${SETTINGS_METHODS}.run_retention_now`, freeze: true })
						.then(({ message }) => {
							if (message.status === "done") {
								const report = message.report;
								frappe.show_alert({
									message: __("Retention done: {0} runs deleted, {1} attempts cleared", [
										report.runs_deleted,
										report.attempts_cleared,
									]),
									indicator: "green",
								});
							} else {
								frappe.show_alert({
									message: __("Retention queued; refresh the counts in a moment"),
									indicator: "blue",
								});
							}
							render_row_counts(frm);
						})
			)
		);
	},
});

function render_row_counts(frm) {
	const field = frm.get_field("row_counts");
	if (!field) return;
	field.$wrapper.html(`<div class="text-muted small">${__("Counting rows…")}</div>`);
	frappe.call(`${SETTINGS_METHODS}.get_row_counts`).then(({ message }) => {
		const fmt = (n) => format_number(n, null, 0);
		const rows = Object.entries(message.runs)
			.map(
				([status, count]) =>
					`<tr><td>${__("Flow Run")}: <a href="/app/flow-run?status=${status}">${__(
						status
					)}</a></td><td class="text-right">${fmt(count)}</td></tr>`
			)
			.join("");
		field.$wrapper.html(`
			<table class="table table-sm table-bordered" style="max-width: 28rem">
				<tbody>
					${rows}
					<tr class="font-weight-bold"><td>${__("Flow Run (all)")}</td>
						<td class="text-right">${fmt(message.runs_total)}</td></tr>
					<tr><td>${__("Flow Step Attempt")}</td><td class="text-right">${fmt(message.attempts)}</td></tr>
					<tr><td>${__("Flow Step Pending")} (${__("open")}: ${fmt(message.pending_open)})</td>
						<td class="text-right">${fmt(message.pending)}</td></tr>
					<tr><td>${__("Runs retention would delete now")}</td>
						<td class="text-right">${fmt(message.due_for_deletion)}</td></tr>
				</tbody>
			</table>`);
	});
}
