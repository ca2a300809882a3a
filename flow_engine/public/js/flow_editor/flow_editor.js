// Mounts the Vue app on the `flow-editor` page: /app/flow-editor/<template> (editor) or
// /app/flow-editor/run/<run> (live run view). Modelled on Frappe's Workflow Builder.
import { createApp } from "vue";
import { createPinia } from "pinia";
import FlowEditorApp from "./FlowEditor.vue";
import { useFlowStore } from "./store.js";

class FlowEditor {
	constructor({ wrapper, page, mode, name }) {
		this.$wrapper = $(wrapper);
		this.page = page;
		this.mode = mode;
		this.name = name;
		this.setup_app();
		this.setup_page();
	}

	setup_app() {
		this.pinia = createPinia();
		this.app = createApp(FlowEditorApp);
		SetVueGlobals(this.app);
		this.app.use(this.pinia);
		this.store = useFlowStore(this.pinia);
		this.store.page = this.page;
		this.app.mount(this.$wrapper.get(0));
		this.store.open(this.mode, this.name).then(() => this.setup_page());
	}

	setup_page() {
		const page = this.page;
		const store = this.store;
		page.clear_actions();
		page.clear_menu();
		page.clear_custom_actions();
		page.clear_indicator();
		if (this.mode === "run") {
			page.set_title(__("Run {0}", [this.name]));
			page.set_primary_action(__("Refresh"), () => store.refresh_run());
			if (store.run) {
				if (["queued", "running", "waiting"].includes(store.run.status)) {
					page.add_button(__("Cancel run"), () => store.cancel_run());
				}
				if (store.run.status === "failed") page.add_button(__("Retry"), () => store.retry_run());
				page.add_menu_item(__("Open flow in editor"), () =>
					frappe.set_route("flow-editor", store.run.template)
				);
				page.add_menu_item(__("Open Flow Run form"), () =>
					frappe.set_route("Form", "Flow Run", this.name)
				);
				if (store.run.reference_doctype && store.run.reference_name) {
					page.add_menu_item(__("Open {0}", [__(store.run.reference_doctype)]), () =>
						frappe.set_route("Form", store.run.reference_doctype, store.run.reference_name)
					);
				}
			}
			this.set_breadcrumbs(__("Flow Run"), "flow-run");
			return;
		}
		page.set_title(this.name);
		page.set_primary_action(__("Save"), () => store.save());
		const publishing = store.publishing || {};
		page.add_button(
			publishing.has_draft ? __("Publish") : __("Published v{0}", [publishing.version]),
			() => store.publish()
		).addClass("btn-publish");
		if (publishing.has_draft && !store.dirty) {
			page.set_indicator(__("Draft: runs use v{0}", [publishing.version]), "orange");
		}
		page.add_button(__("Test run"), () => store.test_run());
		page.add_menu_item(__("Undo"), () => store.undo(), false, "Ctrl+Z");
		page.add_menu_item(__("Redo"), () => store.redo(), false, "Ctrl+Y");
		page.add_menu_item(__("Tidy up layout"), () => store.tidy());
		page.add_menu_item(__("Export JSON"), () => store.export_json());
		page.add_menu_item(__("Import JSON"), () => store.import_json());
		page.add_menu_item(__("Runs of this flow"), () =>
			frappe.set_route("List", "Flow Run", { template: this.name })
		);
		page.add_menu_item(__("Open Flow Template form"), () =>
			frappe.set_route("Form", "Flow Template", this.name)
		);
		this.set_breadcrumbs(__("Flow Template"), "flow-template");
	}

	set_breadcrumbs(label, slug) {
		frappe.breadcrumbs.clear();
		frappe.breadcrumbs.$breadcrumbs.append(`
			<li><a href="/app/flow-engine">${__("Flow Engine")}</a></li>
			<li><a href="/app/${slug}">${label}</a></li>
			<li class="disabled"><a href="#">${frappe.utils.escape_html(this.name)}</a></li>`);
	}

	get dirty() {
		return this.store && this.store.dirty;
	}

	destroy() {
		this.store && this.store.stop();
		this.app && this.app.unmount();
	}
}

frappe.provide("flow_engine");
flow_engine.FlowEditor = FlowEditor;
export default FlowEditor;
