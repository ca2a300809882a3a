// Desk page `flow-inbox`: failed runs grouped by flow, then by failed step and error, with bulk
// actions (Retry, Skip the step and continue, Cancel) and per run: Replay from a step with edited input.
const API = "flow_engine.api.";

frappe.pages["flow-inbox"].on_page_load = function (wrapper) {
	const page = frappe.ui.make_app_page({ parent: wrapper, title: __("Failure Inbox"), single_column: true });
	wrapper.inbox = new FailureInbox(page);
};

frappe.pages["flow-inbox"].on_page_show = function (wrapper) {
	wrapper.inbox && wrapper.inbox.refresh();
};

class FailureInbox {
	constructor(page) {
		this.page = page;
		this.flow = page.add_field({
			fieldname: "template",
			fieldtype: "Link",
			options: "Flow Template",
			label: __("Flow"),
			change: () => this.refresh(),
		});
		page.set_primary_action(__("Retry selected"), () => this.bulk("retry_runs", __("Retry")), "refresh");
		page.add_button(__("Skip failed step"), () => this.bulk("skip_failed_steps", __("Skip the failed step of")), {
			btn_class: "btn-default inbox-skip",
		});
		page.add_button(__("Cancel selected"), () => this.bulk("cancel_runs", __("Cancel")), {
			btn_class: "btn-default inbox-cancel",
		});
		page.add_menu_item(__("Refresh"), () => this.refresh());
		this.$body = $(`<div class="flow-inbox"></div>`).appendTo(page.main);
		this.$body.on("change", ".select-group", (event) => {
			const checked = event.currentTarget.checked;
			$(event.currentTarget).closest(".inbox-group").find(".select-run").prop("checked", checked);
		});
		this.$body.on("click", ".replay-step", (event) => {
			const $row = $(event.currentTarget).closest("[data-run]");
			this.replay_dialog($row.data("run"), $row.data("step"));
		});
	}

	selected() {
		return this.$body.find(".select-run:checked").map((_i, el) => $(el).closest("[data-run]").data("run")).get();
	}

	refresh() {
		frappe.call(API + "failure_inbox", { template: this.flow.get_value() || null }).then(({ message }) => {
			this.render(message);
		});
	}

	render(data) {
		const esc = frappe.utils.escape_html;
		if (!data.flows.length) {
			this.$body.html(`<div class="text-muted text-center p-5 inbox-empty">${__("No failed runs")}</div>`);
			return;
		}
		const html = data.flows
			.map(
				(flow) => `
			<div class="frappe-card p-3 mb-3 inbox-flow" data-template="${esc(flow.template)}">
				<h5><a href="/app/flow-template/${encodeURIComponent(flow.template)}">${esc(flow.template)}</a>
					<span class="indicator-pill red">${flow.count} ${__("failed")}</span></h5>
				${flow.errors
					.map(
						(group) => `
					<div class="inbox-group mt-3">
						<label class="mb-1"><input type="checkbox" class="select-group">
							<b>${__("Step")} ${esc(group.step || "—")}</b> · ${esc(group.signature)}
							<span class="text-muted">(${group.count})</span></label>
						<table class="table table-sm mb-0">
							${group.runs
								.map(
									(run) => `
								<tr data-run="${esc(run.name)}" data-step="${esc(run.step || "")}">
									<td style="width:2em"><input type="checkbox" class="select-run"></td>
									<td><a href="/app/flow-editor/run/${encodeURIComponent(run.name)}">${esc(run.name)}</a>
										<span class="text-muted">v${run.version}</span></td>
									<td>${run.reference_name ? `${esc(__(run.reference_doctype))} ${esc(run.reference_name)}` : ""}</td>
									<td class="small">${esc(run.error || "")}</td>
									<td class="text-muted small">${esc(run.failed_at || "")}</td>
									<td>${run.step ? `<button class="btn btn-xs btn-default replay-step">${__("Replay from step…")}</button>` : ""}</td>
								</tr>`
								)
								.join("")}
						</table>
					</div>`
					)
					.join("")}
			</div>`
			)
			.join("");
		this.$body.html(html + (data.truncated ? `<p class="text-muted">${__("Showing the newest {0}", [data.total])}</p>` : ""));
	}

	bulk(method, verb) {
		const runs = this.selected();
		if (!runs.length) {
			frappe.show_alert({ message: __("Select runs first"), indicator: "orange" });
			return;
		}
		const go = (reason) =>
			frappe.call(API + method, { runs: JSON.stringify(runs), ...(reason ? { reason } : {}) }).then(({ message }) => {
				const refused = message.refused.map((r) => `${frappe.utils.escape_html(r.run)}: ${frappe.utils.escape_html(r.error)}`);
				frappe.show_alert({
					message: __("{0} done, {1} refused", [message.done.length, message.refused.length]),
					indicator: message.refused.length ? "orange" : "green",
				});
				if (refused.length) frappe.msgprint({ title: __("Refused"), message: refused.join("<br>") });
				this.refresh();
			});
		if (method === "cancel_runs") {
			frappe.prompt({ fieldname: "reason", fieldtype: "Data", label: __("Reason") }, ({ reason }) => go(reason), __("Cancel {0} runs", [runs.length]));
		} else {
			frappe.confirm(__("{0} {1} runs?", [verb, runs.length]), () => go());
		}
	}

	replay_dialog(run, step) {
		frappe.call(API + "step_input", { run, step_id: step }).then(({ message }) => {
			const dialog = new frappe.ui.Dialog({
				title: __("Replay {0} from step {1}", [run, step]),
				fields: [
					{
						fieldname: "step_id",
						fieldtype: "Data",
						label: __("From step"),
						default: step,
						reqd: 1,
						description: __("This step and every step after it run again; the steps before it keep their results."),
					},
					{
						fieldname: "payload",
						fieldtype: "Code",
						options: "JSON",
						label: __("Input of the step (edit, then replay)"),
						default: JSON.stringify(message, null, 2),
					},
				],
				primary_action_label: __("Replay"),
				primary_action: ({ step_id, payload }) => {
					try {
						JSON.parse(payload || "{}");
					} catch (error) {
						frappe.msgprint({ title: __("Not valid JSON"), message: frappe.utils.escape_html(String(error)), indicator: "red" });
						return;
					}
					frappe.call(API + "replay_from_step", { run, step_id, payload }).then(() => {
						dialog.hide();
						frappe.show_alert({ message: __("Replaying {0}", [run]), indicator: "green" });
						this.refresh();
					});
				},
			});
			dialog.$wrapper.addClass("flow-replay-dialog");
			dialog.show();
		});
	}
}
