// Copyright (c) 2026, flow_engine developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Flow Template", {
	refresh(frm) {
		show_run_as(frm);
		if (frm.is_new()) return;
		frm.add_custom_button(__("Open in Flow Editor"), () => frappe.set_route("flow-editor", frm.doc.name)).addClass(
			"btn-primary"
		);
		add_publishing(frm);
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

// Draft → publish (issue 13): edits wait as a draft; Publish shows the changes, then makes a version.
function add_publishing(frm) {
	const group = __("Versions");
	if (frm.doc.has_draft) {
		frm.dashboard.set_headline_alert(
			__("Unpublished changes by {0}: runs still use version {1} until you publish.", [
				frappe.utils.escape_html(frm.doc.draft_modified_by || ""),
				frm.doc.version,
			]),
			"orange"
		);
		frm.add_custom_button(__("Publish"), () => publish_dialog(frm)).addClass("btn-primary publish-flow");
		frm.add_custom_button(__("Discard draft"), () =>
			frappe.confirm(__("Discard the unpublished changes of {0}?", [frm.doc.name]), () =>
				frappe
					.call("flow_engine.api.discard_draft", { template: frm.doc.name })
					.then(() => frm.reload_doc())
			), group
		);
	}
	frm.add_custom_button(__("History"), () => history_dialog(frm), group);
	frm.add_custom_button(__("Move waiting runs"), () => migration_dialog(frm), group);
}

function publish_dialog(frm) {
	frappe
		.call("flow_engine.api.compare_versions", { template: frm.doc.name, base: "published", target: "draft" })
		.then(({ message }) => {
			const dialog = new frappe.ui.Dialog({
				title: __("Publish {0} as version {1}", [frm.doc.name, frm.doc.version + 1]),
				fields: [
					{ fieldtype: "HTML", fieldname: "diff", options: message.html },
					{ fieldtype: "Small Text", fieldname: "note", label: __("Note (what and why)") },
				],
				primary_action_label: __("Publish"),
				primary_action({ note }) {
					frappe
						.call("flow_engine.api.publish_flow", { template: frm.doc.name, note })
						.then(({ message: result }) => {
							dialog.hide();
							frappe.show_alert({ message: __("Version {0} published", [result.version]), indicator: "green" });
							frm.reload_doc();
						});
				},
			});
			dialog.show();
		});
}

function history_dialog(frm) {
	frappe.call("flow_engine.api.flow_versions", { template: frm.doc.name }).then(({ message }) => {
		const esc = frappe.utils.escape_html;
		const rows = message
			.map(
				(v) => `<tr data-version="${v.version}">
					<td><b>v${v.version}</b>${v.version === frm.doc.version ? ` <span class="indicator-pill green">${__("published")}</span>` : ""}</td>
					<td>${esc(v.published_by || "")}<br><span class="text-muted">${esc(v.published_on || "")}</span></td>
					<td>${esc(v.note || "")}<pre class="small text-muted" style="white-space:pre-wrap">${esc(v.changes || "")}</pre></td>
					<td>${v.version === frm.doc.version ? "" : `<button class="btn btn-xs btn-default rollback" data-version="${v.version}">${__("Publish again")}</button>`}</td>
				</tr>`
			)
			.join("");
		const dialog = new frappe.ui.Dialog({
			title: __("Versions of {0}", [frm.doc.name]),
			size: "large",
			fields: [{ fieldtype: "HTML", fieldname: "table", options: `<table class="table table-sm flow-versions">${rows}</table>` }],
		});
		dialog.$wrapper.on("click", ".rollback", (event) => {
			const version = $(event.currentTarget).data("version");
			frappe.confirm(__("Publish version {0} again, as version {1}?", [version, frm.doc.version + 1]), () =>
				frappe.call("flow_engine.api.rollback_flow", { template: frm.doc.name, version }).then(() => {
					dialog.hide();
					frm.reload_doc();
				})
			);
		});
		dialog.show();
	});
}

function migration_dialog(frm) {
	frappe.call("flow_engine.api.migration_report", { template: frm.doc.name }).then(({ message }) => {
		const esc = frappe.utils.escape_html;
		const ok = message.compatible.map((r) => `<li>${esc(r.run)} (v${r.from_version}, ${esc(r.status)})</li>`).join("");
		const no = message.incompatible
			.map((r) => `<li>${esc(r.run)} (v${r.from_version}): ${r.problems.map(esc).join("; ")}</li>`)
			.join("");
		const dialog = new frappe.ui.Dialog({
			title: __("Move waiting runs to version {0}", [message.to_version]),
			fields: [
				{
					fieldtype: "HTML",
					fieldname: "report",
					options: `<p>${__("Can move")}: ${message.compatible.length}</p><ul class="can-move">${ok}</ul>
						<p>${__("Cannot move (they stay on their version)")}: ${message.incompatible.length}</p><ul class="cannot-move">${no}</ul>`,
				},
			],
			primary_action_label: __("Move {0} runs", [message.compatible.length]),
			primary_action() {
				frappe
					.call("flow_engine.api.migrate_runs", { template: frm.doc.name, to_version: message.to_version })
					.then(({ message: result }) => {
						dialog.hide();
						frappe.show_alert({ message: __("{0} runs moved", [result.moved.length]), indicator: "green" });
					});
			},
		});
		if (!message.compatible.length) dialog.get_primary_btn().prop("disabled", true);
		dialog.show();
	});
}
