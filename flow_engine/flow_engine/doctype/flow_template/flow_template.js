// Copyright (c) 2026, flow_engine developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Flow Template", {
	refresh(frm) {
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
});
