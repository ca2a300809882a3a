// Desk page `flow-editor`:
//   /app/flow-editor/<template>   the Flow Editor (Vue 3 + Vue Flow, flow_editor.bundle.js)
//   /app/flow-editor/run/<run>    the live run view of a Flow Run
//   /app/flow-editor              pick or create a flow
let page_wrapper = null;

frappe.pages["flow-editor"].on_page_load = function (wrapper) {
	page_wrapper = wrapper;
	frappe.ui.make_app_page({ parent: wrapper, title: __("Flow Editor"), single_column: true });
	$(wrapper).find(".layout-main-section-wrapper").css({ "margin-bottom": 0 });
	// leaving the page: a clean editor is unmounted now (on_page_show builds a new one on the way back
	// anyway); one with unsaved edits stays mounted, as it was. Without this, coming back to a large
	// flow first laid out the hidden old graph and then tore it down before the new one could start.
	$(wrapper).on("hide", (event) => {
		if (event.target !== wrapper) return; // a dropdown or tooltip's own "hide" bubbling up
		const editor = window.flow_engine && flow_engine.editor;
		if (!editor || editor.dirty) return;
		editor.destroy();
		flow_engine.editor = null;
		$(wrapper).find(".layout-main-section").empty();
	});
	// unsaved-changes guard: leaving Desk, or navigating away inside Desk
	window.addEventListener("beforeunload", (event) => {
		if (flow_engine.editor && flow_engine.editor.dirty) {
			event.preventDefault();
			event.returnValue = "";
		}
	});
	frappe.router.on("change", () => {
		const editor = flow_engine.editor;
		const route = frappe.get_route();
		if (!editor || !editor.dirty || flow_engine.leaving) return;
		if (route[0] === "flow-editor" && route.slice(1).join("/") === editor.route_key) return;
		const back = ["flow-editor", ...editor.route_key.split("/")];
		frappe.confirm(
			__("You have unsaved changes in {0}. Discard them?", [`<b>${frappe.utils.escape_html(editor.name)}</b>`]),
			() => {
				editor.store.dirty = false;
				flow_engine.leaving = false;
				// going to another flow of this page: open it now that the edits are discarded
				if (frappe.get_route()[0] === "flow-editor" && page_wrapper) {
					frappe.pages["flow-editor"].on_page_show(page_wrapper);
				}
			},
			() => {
				flow_engine.leaving = true;
				frappe.set_route(back).then(() => (flow_engine.leaving = false));
			}
		);
	});
};

frappe.pages["flow-editor"].on_page_show = function (wrapper) {
	const route = frappe.get_route();
	const $parent = $(wrapper).find(".layout-main-section");
	let mode = "edit";
	let name = route.slice(1).join("/");
	if (route[1] === "run" && route.length > 2) {
		mode = "run";
		name = route.slice(2).join("/");
	}
	const key = mode === "run" ? `run/${name}` : name;
	frappe.provide("flow_engine");
	// unsaved edits: keep them (same flow), or let the route guard ask before replacing them
	if (flow_engine.editor && flow_engine.editor.dirty) return;
	if (!name) {
		flow_engine.editor && flow_engine.editor.destroy();
		flow_engine.editor = null;
		$parent.empty();
		return pick_flow(wrapper);
	}
	frappe.require("flow_editor.bundle.js").then(() => {
		flow_engine.editor && flow_engine.editor.destroy();
		$parent.empty();
		const $mount = $('<div class="flow-editor-mount"></div>').appendTo($parent);
		flow_engine.editor = new flow_engine.FlowEditor({ wrapper: $mount, page: wrapper.page, mode, name });
		flow_engine.editor.route_key = key;
	});
};

function pick_flow(wrapper) {
	wrapper.page.set_title(__("Flow Editor"));
	wrapper.page.clear_actions();
	const d = new frappe.ui.Dialog({
		title: __("Open or create a flow"),
		fields: [
			{
				fieldname: "action",
				fieldtype: "Select",
				label: __("Action"),
				options: [
					{ label: __("Edit an existing flow"), value: "edit" },
					{ label: __("Create a new flow"), value: "create" },
				],
				default: frappe.route_options && frappe.route_options.doctype ? "create" : "edit",
			},
			{
				fieldname: "template",
				fieldtype: "Link",
				options: "Flow Template",
				label: __("Flow"),
				depends_on: "eval:doc.action==='edit'",
				mandatory_depends_on: "eval:doc.action==='edit'",
			},
			{
				fieldname: "template_name",
				fieldtype: "Data",
				label: __("New flow name"),
				depends_on: "eval:doc.action==='create'",
				mandatory_depends_on: "eval:doc.action==='create'",
			},
			{
				fieldname: "trigger_doctype",
				fieldtype: "Link",
				options: "DocType",
				label: __("Document Type"),
				filters: { istable: 0 },
				default: frappe.route_options ? frappe.route_options.doctype : null,
				depends_on: "eval:doc.action==='create'",
			},
			{
				fieldname: "trigger_event",
				fieldtype: "Select",
				label: __("Event"),
				options: "manual\nafter_insert\non_update\non_submit\non_cancel\non_trash\non_update_after_submit\nvalue_changed\ncustom",
				default: "after_insert",
				depends_on: "eval:doc.action==='create'",
			},
		],
		primary_action_label: __("Open"),
		primary_action(values) {
			if (values.action === "edit") {
				d.hide();
				frappe.set_route("flow-editor", values.template);
				return;
			}
			frappe
				.call("flow_engine.desk.create_flow", {
					template_name: values.template_name,
					trigger_doctype: values.trigger_doctype,
					trigger_event: values.trigger_doctype ? values.trigger_event : "manual",
				})
				.then(({ message }) => {
					d.hide();
					frappe.set_route("flow-editor", message);
				});
		},
	});
	frappe.route_options = null;
	d.show();
}
