// Copyright (c) 2026, flow_engine developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Flow Template", {
	refresh(frm) {
		show_run_as(frm);
		if (frm.is_new()) return;
		frm.add_custom_button(__("Open in Flow Editor"), () => frappe.set_route("flow-editor", frm.doc.name)).addClass(
			"btn-primary"
		);
		frm.add_custom_button(__("Runs"), () =>
			frappe.set_route("List", "Flow Run", { template: frm.doc.name })
		);
		frm.add_custom_button(__("Validate"), () =>
			frappe
				.call("flow_engine.api.validate", {
					definition: frm.doc.flow_definition,
					trigger_doctype: frm.doc.trigger_doctype,
				})
				.then(({ message }) => {
					if (message.valid) {
						frappe.show_alert({ message: __("Flow is valid"), indicator: "green" });
					} else {
						frappe.msgprint({
							title: __("Flow is invalid"),
							indicator: "red",
							message: message.errors.map((e) => frappe.utils.escape_html(e.text)).join("<br>"),
						});
					}
				})
		);
		frm.add_custom_button(__("Duplicate"), () =>
			frappe.prompt(
				{ fieldname: "new_name", fieldtype: "Data", label: __("New name"), reqd: 1 },
				({ new_name }) =>
					frappe
						.call("flow_engine.api.duplicate_template", { template: frm.doc.name, new_name })
						.then(({ message }) => frappe.set_route("Form", "Flow Template", message))
			)
		);
		frm.add_custom_button(__("Start a run"), () =>
			frappe.prompt(
				[
					{ fieldname: "reference_name", fieldtype: "Dynamic Link", options: "reference_doctype",
						label: __("Document") },
					{ fieldname: "reference_doctype", fieldtype: "Link", options: "DocType", hidden: 1,
						default: frm.doc.trigger_doctype },
				],
				(values) =>
					frappe
						.call("flow_engine.api.start_run", { template: frm.doc.name, ...values })
						.then(({ message }) => frappe.set_route("Form", "Flow Run", message))
			)
		);
	},
	is_active(frm) {
		if (frm.doc.is_active && !frm.doc.run_as) ask_run_as(frm);
	},
	run_as(frm) {
		show_run_as(frm);
	},
});

// Every flow runs as a user (issue 10): show who, and ask when activating a flow that has none.
function show_run_as(frm) {
	const who = frm.doc.run_as
		? __("Steps act with the permissions of {0}.", [frappe.utils.escape_html(frm.doc.run_as)])
		: __("No Run As user yet: the flow will run as whoever activates it or next changes its definition.");
	const how = frappe.user.has_role("System Manager")
		? __("As a System Manager you may choose another user.")
		: __("Only a System Manager may choose another user; when you change the flow's behaviour it runs as you.");
	frm.set_df_property("run_as", "description", `${who} ${how}`);
}

function ask_run_as(frm) {
	const manager = frappe.user.has_role("System Manager");
	let confirmed = false;
	const dialog = new frappe.ui.Dialog({
		title: __("Run this flow as"),
		fields: [
			{
				fieldname: "run_as",
				fieldtype: "Link",
				options: "User",
				label: __("Run As"),
				reqd: 1,
				default: frappe.session.user,
				read_only: manager ? 0 : 1,
				description: manager
					? __("Its steps act with this user's permissions.")
					: __("Its steps act with your permissions; only a System Manager may choose another user."),
			},
		],
		primary_action_label: __("Activate"),
		primary_action(values) {
			confirmed = true;
			dialog.hide();
			if (manager) frm.set_value("run_as", values.run_as);
		},
	});
	dialog.onhide = () => {
		if (!confirmed) frm.set_value("is_active", 0);
	};
	dialog.show();
}
