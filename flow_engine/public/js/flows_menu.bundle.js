// "Flows" menu on every form: new flow for this doctype, run a flow on this document, runs of it.
const SKIP = new Set(["Flow Template", "Flow Run", "Flow Step Attempt", "Flow Step Pending", "Flow Template Version"]);

function is_flow_manager() {
	return frappe.session.user === "Administrator" || frappe.user.has_role(["Flow Manager", "System Manager"]);
}

function add_flows_menu(frm) {
	if (!frm || !frm.doc || frm.is_new() || SKIP.has(frm.doctype) || frm.meta.istable) return;
	if (!is_flow_manager()) return;
	const group = __("Flows");
	frm.add_custom_button(__("Run a flow on this document"), () => run_flow_dialog(frm), group);
	frm.add_custom_button(
		__("Runs for this document"),
		() =>
			frappe.set_route("List", "Flow Run", {
				reference_doctype: frm.doctype,
				reference_name: frm.doc.name,
			}),
		group
	);
	frm.add_custom_button(__("New flow for {0}", [__(frm.doctype)]), () => new_flow_dialog(frm.doctype), group);
	frm.add_custom_button(
		__("Flows of {0}", [__(frm.doctype)]),
		() => frappe.set_route("List", "Flow Template", { trigger_doctype: frm.doctype }),
		group
	);
}

function run_flow_dialog(frm) {
	const d = new frappe.ui.Dialog({
		title: __("Run a flow on {0}", [frm.doc.name]),
		fields: [
			{
				fieldname: "template",
				fieldtype: "Link",
				options: "Flow Template",
				label: __("Flow"),
				reqd: 1,
				get_query: () => ({ filters: { trigger_doctype: frm.doctype } }),
				description: __("Flows whose document type is {0}", [__(frm.doctype)]),
			},
			{ fieldname: "test", fieldtype: "Check", label: __("Test run only (dry run, no side effects)") },
		],
		primary_action_label: __("Run"),
		primary_action({ template, test }) {
			d.hide();
			if (test) {
				frappe
					.call("flow_engine.api.dry_run", {
						template,
						reference_doctype: frm.doctype,
						reference_name: frm.doc.name,
					})
					.then(({ message }) => show_dry_run(message));
				return;
			}
			frappe
				.call("flow_engine.api.start_run", {
					template,
					reference_doctype: frm.doctype,
					reference_name: frm.doc.name,
				})
				.then(({ message }) => frappe.set_route("flow-editor", "run", message));
		},
	});
	d.show();
}

function show_dry_run(result) {
	const rows = (result.steps || [])
		.map(
			(s, i) => `<tr><td>${i + 1}</td><td>${frappe.utils.escape_html(s.label || s.step_id)}</td>
			<td>${frappe.utils.escape_html(s.action || "")}${s.branch ? ` → <b>${frappe.utils.escape_html(s.branch)}</b>` : ""}</td>
			<td><pre class="small mb-0">${frappe.utils.escape_html(JSON.stringify(s.payload || {}, null, 1))}</pre></td></tr>`
		)
		.join("");
	frappe.msgprint({
		title: __("Test run (nothing was changed)"),
		wide: true,
		message: `<table class="table table-bordered small"><thead><tr><th>#</th><th>${__("Step")}</th><th>${__(
			"Does"
		)}</th><th>${__("Payload")}</th></tr></thead><tbody>${rows}</tbody></table>`,
	});
}

function new_flow_dialog(doctype) {
	const d = new frappe.ui.Dialog({
		title: __("New flow for {0}", [__(doctype)]),
		fields: [
			{ fieldname: "template_name", fieldtype: "Data", label: __("Flow name"), reqd: 1 },
			{
				fieldname: "trigger_event",
				fieldtype: "Select",
				label: __("Starts"),
				options: "after_insert\non_update\non_submit\non_cancel\non_trash\non_update_after_submit\nvalue_changed\ncustom\nmanual",
				default: "after_insert",
			},
		],
		primary_action_label: __("Create and open editor"),
		primary_action({ template_name, trigger_event }) {
			frappe
				.call("flow_engine.desk.create_flow", { template_name, trigger_doctype: doctype, trigger_event })
				.then(({ message }) => {
					d.hide();
					frappe.set_route("flow-editor", message);
				});
		},
	});
	d.show();
}

$(document).on("form-refresh", (event, frm) => {
	try {
		add_flows_menu(frm);
	} catch (e) {
		console.error("flow_engine: Flows menu", e);
	}
});

frappe.provide("flow_engine");
flow_engine.new_flow_dialog = new_flow_dialog;
