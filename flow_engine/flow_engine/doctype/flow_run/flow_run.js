// Copyright (c) 2026, flow_engine developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Flow Run", {
	refresh(frm) {
		const status = frm.doc.status;
		if (["queued", "running", "waiting"].includes(status)) {
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
		add_replay(frm);
		add_family(frm);
		frappe.realtime.doc_subscribe("Flow Run", frm.doc.name);
		frappe.realtime.off("flow_run_update");
		frappe.realtime.on("flow_run_update", (data) => {
			if (data.run === frm.doc.name) frm.reload_doc();
		});
	},
});

// Child runs (issue 14): the runs a call_flow or for_each step started, and the run that started this one.
function add_family(frm) {
	if (frm.doc.parent_run) {
		frm.add_custom_button(__("Parent run"), () => frappe.set_route("Form", "Flow Run", frm.doc.parent_run));
	}
	frappe.db.count("Flow Run", { filters: { parent_run: frm.doc.name } }).then((count) => {
		if (!count) return;
		frm.add_custom_button(__("Child runs ({0})", [count]), () =>
			frappe.set_route("List", "Flow Run", { parent_run: frm.doc.name })
		);
	});
}

// Replay (issue 13): a new run from this run's trigger on the current or the original version, and
// the two side by side.
function add_replay(frm) {
	if (!["completed", "failed", "cancelled"].includes(frm.doc.status)) return;
	frm.add_custom_button(
		__("Replay run"),
		() =>
			frappe.prompt(
				{
					fieldname: "version",
					fieldtype: "Select",
					label: __("On version"),
					options: [
						{ value: "current", label: __("The flow's current version") },
						{ value: "original", label: __("Version {0} (this run's)", [frm.doc.template_version]) },
					],
					default: "current",
				},
				({ version }) =>
					frappe
						.call("flow_engine.api.replay_run", { run: frm.doc.name, version })
						.then(({ message }) => compare_dialog(frm.doc.name, message)),
				__("Replay {0}", [frm.doc.name])
			),
		__("Replay")
	);
	if (frm.doc.replay_of) {
		frm.add_custom_button(__("Compare with {0}", [frm.doc.replay_of]), () => compare_dialog(frm.doc.replay_of, frm.doc.name), __("Replay"));
	}
}

function compare_dialog(first, second) {
	frappe.call("flow_engine.api.compare_runs", { first, second }).then(({ message }) => {
		const esc = frappe.utils.escape_html;
		const colour = { completed: "green", failed: "red", cancelled: "grey", skipped: "grey" };
		const cell = (c) =>
			`<span class="indicator-pill ${colour[c.status] || "orange"}">${esc(c.status)}</span>` +
			(c.error ? `<div class="small text-danger">${esc(c.error)}</div>` : "") +
			(c.result ? `<pre class="small">${esc(JSON.stringify(c.result, null, 1))}</pre>` : "");
		const head = message.runs
			.map((r) => `<th><a href="/app/flow-run/${encodeURIComponent(r.name)}">${esc(r.name)}</a> v${r.version} · ${esc(r.status)}</th>`)
			.join("");
		const rows = message.steps
			.map((s) => `<tr data-step="${esc(s.id)}"><td><b>${esc(s.id)}</b><div class="text-muted small">${esc(s.label)}</div></td>${s.cells.map((c) => `<td>${cell(c)}</td>`).join("")}</tr>`)
			.join("");
		const dialog = new frappe.ui.Dialog({
			title: __("Side by side"),
			size: "extra-large",
			fields: [{ fieldtype: "HTML", fieldname: "table", options: `<table class="table table-sm run-compare"><tr><th>${__("Step")}</th>${head}</tr>${rows}</table>` }],
			primary_action_label: __("Open {0}", [second]),
			primary_action: () => {
				dialog.hide();
				frappe.set_route("Form", "Flow Run", second);
			},
		});
		dialog.show();
	});
}
