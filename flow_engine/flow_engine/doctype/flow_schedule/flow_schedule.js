// Copyright (c) 2026, flow_engine developers and contributors
// For license information, please see license.txt

// The payload editor: a form generated from the flow's payload JSON Schema, or raw JSON; both
// write the `payload` field and are checked inline against the schema (the server re-checks on save).

const SCHEMA_TYPES = {
	string: "Data",
	integer: "Int",
	number: "Float",
	boolean: "Check",
};

function schema_fields(schema) {
	const required = new Set(schema.required || []);
	return Object.entries(schema.properties || {}).map(([name, prop]) => {
		let fieldtype = SCHEMA_TYPES[prop.type] || "Code";
		let options;
		if (Array.isArray(prop.enum)) {
			fieldtype = "Select";
			options = ["", ...prop.enum].join("\n");
		} else if (prop.type === "string" && prop.format === "date") {
			fieldtype = "Date";
		} else if (prop.type === "string" && prop.format === "date-time") {
			fieldtype = "Datetime";
		} else if (prop.type === "string" && (prop.maxLength || 0) > 140) {
			fieldtype = "Small Text";
		}
		return {
			fieldname: name,
			fieldtype,
			options: fieldtype === "Code" ? "JSON" : options,
			label: prop.title || frappe.unscrub(name),
			description: prop.description || (fieldtype === "Code" ? __("JSON ({0})", [prop.type || "any"]) : ""),
			reqd: required.has(name) ? 1 : 0,
			default: prop.default,
		};
	});
}

function current_payload(frm) {
	try {
		return JSON.parse(frm.doc.payload || "{}") || {};
	} catch (e) {
		return null;
	}
}

function show_problems(frm, problems) {
	const $box = frm.payload_editor.$problems;
	if (!problems || !problems.length) {
		$box.html(`<div class="text-success small">${__("Payload matches the flow's schema")}</div>`);
		return;
	}
	$box.html(
		`<div class="text-danger small">${problems
			.map((p) => frappe.utils.escape_html(p))
			.join("<br>")}</div>`
	);
}

const check = frappe.utils.debounce((frm) => {
	if (!frm.doc.template) return;
	frappe
		.call("flow_engine.api.check_schedule", {
			template: frm.doc.template,
			payload: frm.doc.payload || "{}",
			cron: frm.doc.schedule_type === "Recurring" ? frm.doc.cron : null,
			timezone: frm.doc.timezone,
		})
		.then(({ message }) => {
			show_problems(frm, message.payload_errors);
			const $next = frm.payload_editor.$next;
			if (frm.doc.schedule_type !== "Recurring") return $next.empty();
			if (message.cron_error) {
				$next.html(`<div class="text-danger small">${frappe.utils.escape_html(message.cron_error)}</div>`);
			} else if (message.next) {
				$next.html(
					`<div class="small text-muted">${__("Next fires")}: ${message.next
						.map((n) => frappe.utils.escape_html(n))
						.join(" · ")}</div>`
				);
			}
		});
}, 400);

function render_payload_editor(frm) {
	const wrapper = frm.get_field("payload_editor").$wrapper.empty();
	const editor = (frm.payload_editor = {
		mode: frm.payload_editor?.mode || "form",
		$next: $(`<div class="mb-2"></div>`).appendTo(wrapper),
		$toggle: $(`<div class="btn-group btn-group-sm mb-3" role="group">
			<button class="btn btn-default" data-mode="form">${__("Form")}</button>
			<button class="btn btn-default" data-mode="json">${__("JSON")}</button>
		</div>`).appendTo(wrapper),
		$form: $(`<div></div>`).appendTo(wrapper),
		$problems: $(`<div class="mt-2"></div>`).appendTo(wrapper),
	});
	if (!frm.doc.template) {
		editor.$form.html(`<div class="text-muted">${__("Choose a flow first.")}</div>`);
		return;
	}
	frappe.db.get_value("Flow Template", frm.doc.template, "payload_schema").then(({ message }) => {
		let schema = null;
		try {
			schema = JSON.parse(message.payload_schema || "null");
		} catch (e) {
			schema = null;
		}
		if (!schema || !schema.properties) {
			editor.mode = "json";
			editor.$toggle.hide();
			editor.$form.html(
				`<div class="text-muted small">${__(
					"This flow's payload schema has no properties to build a form from; edit the JSON below."
				)}</div>`
			);
		} else {
			const group = new frappe.ui.FieldGroup({ fields: schema_fields(schema), body: editor.$form });
			group.make();
			const payload = current_payload(frm) || {};
			Object.entries(payload).forEach(([key, value]) => {
				const field = group.get_field(key);
				if (!field) return;
				group.set_value(key, field.df.fieldtype === "Code" ? JSON.stringify(value, null, 1) : value);
			});
			Object.values(group.fields_dict).forEach((field) => {
				field.df.onchange = () => {
					const values = current_payload(frm) || {};
					const value = field.get_value();
					if (field.df.fieldtype === "Code") {
						try {
							values[field.df.fieldname] = value ? JSON.parse(value) : undefined;
						} catch (e) {
							return show_problems(frm, [__("{0}: not valid JSON", [field.df.label])]);
						}
					} else if (field.df.fieldtype === "Check") {
						values[field.df.fieldname] = !!value;
					} else {
						values[field.df.fieldname] = value === "" || value === null ? undefined : value;
					}
					frm.set_value("payload", JSON.stringify(values, null, 1));
				};
			});
		}
		const apply_mode = () => {
			editor.$toggle.find("button").removeClass("btn-primary");
			editor.$toggle.find(`[data-mode=${editor.mode}]`).addClass("btn-primary");
			editor.$form.toggle(editor.mode === "form");
			frm.toggle_display("payload", editor.mode === "json");
		};
		editor.$toggle.find("button").on("click", (e) => {
			editor.mode = $(e.currentTarget).attr("data-mode");
			if (editor.mode === "form") render_payload_editor(frm);
			apply_mode();
		});
		apply_mode();
		check(frm);
	});
}

frappe.ui.form.on("Flow Schedule", {
	setup(frm) {
		frm.set_query("template", () => ({ filters: { payload_schema: ["is", "set"] } }));
	},
	onload(frm) {
		if (window.moment?.tz) frm.set_df_property("timezone", "options", moment.tz.names());
		if (frm.is_new() && !frm.doc.timezone) frm.set_value("timezone", frappe.boot.time_zone?.system);
	},
	refresh(frm) {
		render_payload_editor(frm);
		if (frm.is_new()) return;
		if (frm.doc.enabled) {
			frm.add_custom_button(__("Pause"), () =>
				frappe.call("flow_engine.api.pause_schedule", { name: frm.doc.name }).then(() => frm.reload_doc())
			);
		} else if (frm.doc.status !== "Done") {
			frm.add_custom_button(__("Resume"), () =>
				frappe.call("flow_engine.api.resume_schedule", { name: frm.doc.name }).then(() => frm.reload_doc())
			);
		}
		frm.add_custom_button(__("Runs"), () =>
			frappe.set_route("List", "Flow Run", { schedule: frm.doc.name })
		);
		if (frm.doc.status === "Invalid") {
			frm.dashboard.set_headline_alert(frappe.utils.escape_html(frm.doc.last_error || ""), "red");
		}
	},
	template: render_payload_editor,
	payload: (frm) => check(frm),
	cron: (frm) => check(frm),
	timezone: (frm) => check(frm),
	schedule_type: (frm) => check(frm),
});
