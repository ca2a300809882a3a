// Copyright (c) 2026, flow_engine developers and contributors
// For license information, please see license.txt

// The Flow Template form's own figures: its runs by status, failure rate and p95 duration over 30 days,
// and its last failures (error, step, link). Data: flow_engine.api.insight.template_insight.
// Registered with hooks.py doctype_js, beside the form's own flow_template.js.

frappe.ui.form.on("Flow Template", {
	refresh(frm) {
		if (frm.is_new()) return;
		const template = frm.doc.name;
		frappe
			.call({
				method: "flow_engine.api.insight.template_insight",
				args: { template },
				type: "GET",
			})
			.then(({ message }) => {
				if (!message || frm.doc.name !== template) return;
				frm.dashboard.parent.find(".flow-insight").remove();
				frm.dashboard.add_section(flow_insight_html(message), __("Runs"), "custom flow-insight");
				frm.dashboard.show();
			})
			.catch(() => {}); // no permission to read runs: the form shows no figures
	},
});

const FLOW_STATUS_COLORS = {
	queued: "gray",
	running: "blue",
	waiting: "orange",
	completed: "green",
	failed: "red",
	cancelled: "gray",
};

function flow_insight_html(data) {
	const esc = frappe.utils.escape_html;
	const list_link = (status, label) =>
		`<a href="/app/flow-run?template=${encodeURIComponent(data.template)}${
			status ? `&status=${status}` : ""
		}">${label}</a>`;
	const badges = Object.entries(data.counts)
		.map(
			([status, count]) => `<span class="indicator-pill ${FLOW_STATUS_COLORS[status]} mr-2 mb-2">
				${list_link(status, `${__(status)}: ${format_number(count, null, 0)}`)}</span>`
		)
		.join("");
	const figures = [
		`${__("All runs")}: ${list_link(null, format_number(data.total, null, 0))}`,
		data.failure_rate_30d == null
			? null
			: `${__("Failure rate (30 days)")}: ${data.failure_rate_30d}%`,
		data.p95_duration_30d == null
			? null
			: `${__("p95 duration (30 days)")}: ${format_seconds(data.p95_duration_30d)}`,
	]
		.filter(Boolean)
		.join(" · ");
	const failures = data.last_failures.length
		? `<table class="table table-sm mt-2 mb-0">
			<thead><tr><th>${__("Failed run")}</th><th>${__("When")}</th><th>${__("Step")}</th>
				<th>${__("Error")}</th></tr></thead>
			<tbody>${data.last_failures
				.map(
					(row) => `<tr>
						<td><a href="/app/flow-run/${encodeURIComponent(row.run)}">${esc(row.run)}</a></td>
						<td class="text-nowrap">${frappe.datetime.comment_when(row.failed_at)}</td>
						<td>${esc(row.step || "")}</td>
						<td class="text-muted small" style="white-space: pre-wrap">${esc(row.error || "")}</td>
					</tr>`
				)
				.join("")}</tbody></table>`
		: `<div class="text-muted small mt-2">${__("No failed runs")}</div>`;
	return `<div class="flow-insight-body">
		<div class="d-flex flex-wrap">${badges}</div>
		<div class="small">${figures}</div>
		${failures}
	</div>`;
}

function format_seconds(seconds) {
	if (seconds < 60) return `${Math.round(seconds * 10) / 10} s`;
	if (seconds < 3600) return `${Math.round(seconds / 6) / 10} min`;
	if (seconds < 86400) return `${Math.round(seconds / 360) / 10} h`;
	return `${Math.round(seconds / 8640) / 10} d`;
}
