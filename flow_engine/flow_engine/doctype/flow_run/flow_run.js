// Copyright (c) 2026, flow_engine developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Flow Run", {
	refresh(frm) {
		const status = frm.doc.status;
		if (["running", "waiting"].includes(status)) {
			frm.add_custom_button(__("Cancel run"), () =>
				frappe.confirm(__("Cancel this run?"), () =>
					frappe.call("flow_engine.api.cancel_run", { run: frm.doc.name }).then(() => frm.reload_doc())
				)
			);
		}
		if (status === "failed") {
			frm.add_custom_button(__("Retry"), () =>
				frappe.call("flow_engine.api.retry_run", { run: frm.doc.name }).then(() => frm.reload_doc())
			);
		}
		const states = JSON.parse(frm.doc.step_state || "{}");
		Object.entries(states)
			.filter(([, s]) => s.status === "waiting" && s.waiting_for === "manual")
			.forEach(([step]) =>
				frm.add_custom_button(__("Complete {0}", [step]), () =>
					frappe
						.call("flow_engine.api.complete_step", { run: frm.doc.name, step_id: step })
						.then(() => frm.reload_doc())
				, __("Complete step"))
			);
		frm.add_custom_button(__("Run view"), () => frappe.set_route("flow-editor", "run", frm.doc.name)).addClass(
			"btn-primary"
		);
		frm.add_custom_button(__("Attempts"), () =>
			frappe.set_route("List", "Flow Step Attempt", { run: frm.doc.name })
		);
		frappe.realtime.doc_subscribe("Flow Run", frm.doc.name);
		frappe.realtime.off("flow_run_update");
		frappe.realtime.on("flow_run_update", (data) => {
			if (data.run === frm.doc.name) frm.reload_doc();
		});
	},
});
