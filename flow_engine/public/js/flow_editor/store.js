// State of the Flow Editor and the run view (Pinia). Graph operations live in graph.js (pure, tested).
import { defineStore } from "pinia";
import { ref, computed, watch } from "vue";
import * as graph from "./graph.js";

const API = "flow_engine.api.";
const DESK = "flow_engine.desk.";

export const useFlowStore = defineStore("flow-editor", () => {
	const page = ref(null);
	const mode = ref("edit");
	const name = ref(null);
	const loading = ref(true);
	const template = ref(null);
	const publishing = ref({ version: 0, has_draft: false }); // the published version, and whether a draft waits
	const definition = ref(graph.emptyDefinition());
	const positions = ref({});
	const kinds = ref([]);
	const trigger_events = ref(["manual"]); // served by the engine with the template (editor_data)
	const business_events = ref([]); // the design's business events the app raises: [{name, doctypes, …}]
	const selected = ref(null); // {type: "step"|"edge"|"trigger", id}
	const errors = ref([]);
	const validating = ref(false);
	const dirty = ref(false);
	const doc_fields = ref([]);
	const run = ref(null);
	const dry_run = ref(null);
	const message = ref(null);
	const fit_request = ref(0); // bump to fit the graph into view
	const history = new graph.History(200);
	const history_state = ref({ undo: false, redo: false });
	let validate_timer = null;
	let validate_seq = 0;
	let poll_timer = null;
	let realtime_handler = null;

	const kind_map = computed(() => Object.fromEntries(kinds.value.map((k) => [k.name, k])));
	const grouped_errors = computed(() => graph.groupErrors(errors.value));
	const selected_step = computed(() =>
		selected.value && selected.value.type === "step"
			? graph.stepById(definition.value, selected.value.id)
			: null
	);
	const trigger_doctype = computed(() => (definition.value.trigger || {}).doctype || null);
	// the test run's rows by step id, built once per result (each node reads its own)
	const dry_index = computed(() => graph.dryRunIndex(dry_run.value));

	// ------------------------------------------------------------ loading

	async function open(new_mode, new_name) {
		stop();
		mode.value = new_mode;
		name.value = new_name;
		loading.value = true;
		try {
			if (new_mode === "run") await load_run(new_name);
			else await load_template(new_name);
		} finally {
			loading.value = false;
		}
	}

	async function load_template(template_name) {
		const { message: data } = await frappe.call(DESK + "editor_data", { template: template_name });
		template.value = data.template;
		publishing.value = data.publishing || { version: data.template.version, has_draft: false };
		kinds.value = data.kinds;
		trigger_events.value = data.trigger_events;
		business_events.value = data.business_events || [];
		const def = graph.normalise(data.definition);
		def.trigger = def.trigger || { event: "manual" };
		definition.value = def;
		positions.value = graph.positionsFor(def, data.layout, kind_map.value);
		history.reset(snapshot());
		sync_history();
		dirty.value = false;
		selected.value = def.steps.length ? null : { type: "trigger" };
		// the server validates while the graph renders (Vue renders after this function yields): on a
		// large flow the render is the longer of the two, so the answer costs the open nothing
		validate_now();
		await load_doc_fields();
	}

	async function load_doc_fields() {
		const doctype = trigger_doctype.value;
		if (!doctype) {
			doc_fields.value = [];
			return;
		}
		try {
			await frappe.model.with_doctype(doctype);
			doc_fields.value = frappe.meta
				.get_docfields(doctype, null, { fieldtype: ["not in", frappe.model.no_value_type] })
				.map((df) => ({ fieldname: df.fieldname, label: df.label, fieldtype: df.fieldtype }));
		} catch (e) {
			doc_fields.value = [];
		}
	}

	// ------------------------------------------------------------ editing

	function snapshot() {
		return { definition: definition.value, positions: positions.value };
	}

	function sync_history() {
		history_state.value = { undo: history.canUndo, redo: history.canRedo };
	}

	/** Replace the definition with a new one (from graph.js) and record it. */
	function commit(new_definition, options = {}) {
		const def = graph.normalise(new_definition);
		definition.value = def;
		positions.value = graph.positionsFor(def, { positions: positions.value }, kind_map.value);
		if (options.select !== undefined) selected.value = options.select;
		if (history.push(snapshot())) {
			dirty.value = true;
			sync_history();
		}
		validate_soon();
	}

	function apply_result(result, select_id) {
		if (result.error) {
			frappe.show_alert({ message: __(result.error), indicator: "orange" });
			return false;
		}
		commit(result.definition || result, select_id ? { select: { type: "step", id: select_id } } : {});
		return true;
	}

	function update_step(id, mutate) {
		const def = graph.clone(definition.value);
		const step = graph.stepById(def, id);
		if (!step) return;
		mutate(step, def);
		commit(def);
	}

	function set_payload(id, key, value) {
		update_step(id, (step) => {
			step.payload = step.payload || {};
			if (value === undefined || value === null || value === "") delete step.payload[key];
			else step.payload[key] = value;
		});
	}

	function set_trigger(changes) {
		const def = graph.clone(definition.value);
		def.trigger = { ...(def.trigger || {}), ...changes };
		for (const [key, value] of Object.entries(def.trigger)) {
			if (value === null || value === undefined || value === "") delete def.trigger[key];
		}
		const doctype_changed = "doctype" in changes;
		commit(def);
		if (doctype_changed) load_doc_fields();
	}

	function add_step(kind, options = {}) {
		const spec = kind_map.value[kind];
		const sel = selected_step.value;
		const opts = { payload: graph.kindDefaults(spec), label: "", ...options };
		let from_tail = false;
		if (!opts.parent_id && !opts.after) {
			if (sel) opts.after = sel.id;
			else {
				opts.after = graph.topLevelTail(definition.value);
				from_tail = true;
			}
		}
		const after = opts.after && !opts.parent_id && !opts.no_branch ? graph.stepById(definition.value, opts.after) : null;
		// with nothing selected, a flow ending in a loop continues after the loop
		const into = after && !(from_tail && after.kind === "for_each") ? graph.addBranch(after, kind_map.value[after.kind]) : null;
		delete opts.no_branch;
		if (into) {
			// after a condition / switch / loop …: go into its first branch (a for_each: into the loop)
			opts.parent_id = opts.after;
			opts.branch = into;
			delete opts.after;
		}
		opts.insert = true;
		const result = graph.addStep(definition.value, kind, opts);
		apply_result(result, result.id);
		return result.id;
	}

	function set_join(id, mode, n) {
		commit(graph.setJoin(definition.value, id, mode, n));
	}
	function set_on_error(id, mode) {
		commit(graph.setOnError(definition.value, id, mode));
	}
	function rename_branch(id, old_name, new_name) {
		return apply_result(graph.renameBranch(definition.value, id, old_name, new_name));
	}

	function remove_step(id) {
		commit(graph.removeStep(definition.value, id), { select: null });
	}
	function duplicate_step(id) {
		const result = graph.duplicateStep(definition.value, id);
		apply_result(result, result.id);
	}
	function move_step(id, direction) {
		apply_result(graph.moveStep(definition.value, id, direction), id);
	}
	function connect(source, target, branch) {
		return apply_result(graph.connect(definition.value, source, target, branch));
	}
	function disconnect(source, target) {
		commit(graph.disconnect(definition.value, source, target), { select: null });
	}
	function rename_step(old_id, new_id) {
		const result = graph.renameStep(definition.value, old_id, new_id);
		if (result.error) {
			frappe.show_alert({ message: __(result.error), indicator: "orange" });
			return false;
		}
		const pos = { ...positions.value };
		pos[new_id] = pos[old_id];
		delete pos[old_id];
		positions.value = pos;
		commit(result.definition, { select: { type: "step", id: new_id } });
		return true;
	}

	function move_node(id, position) {
		positions.value = { ...positions.value, [id]: { x: Math.round(position.x), y: Math.round(position.y) } };
		if (history.push(snapshot())) {
			dirty.value = true;
			sync_history();
		}
	}

	function tidy() {
		positions.value = graph.autoLayout(definition.value, kind_map.value);
		fit_request.value += 1;
		if (history.push(snapshot())) {
			dirty.value = true;
			sync_history();
		}
	}

	function restore(state) {
		if (!state) return;
		definition.value = state.definition;
		positions.value = state.positions;
		if (selected.value?.type === "step" && !graph.stepById(state.definition, selected.value.id)) {
			selected.value = null;
		}
		dirty.value = true;
		sync_history();
		validate_soon();
	}
	function undo() {
		restore(history.undo());
	}
	function redo() {
		restore(history.redo());
	}

	// ------------------------------------------------------------ validation and saving

	function validate_soon() {
		clearTimeout(validate_timer);
		validating.value = true; // errors shown are stale until the next answer
		validate_timer = setTimeout(validate_now, 350);
	}

	async function validate_now() {
		if (mode.value !== "edit") return;
		const seq = ++validate_seq;
		validating.value = true;
		try {
			const { message: result } = await frappe.call({
				method: API + "validate",
				args: {
					definition: JSON.stringify(definition.value),
					trigger_doctype: trigger_doctype.value,
				},
				freeze: false,
			});
			if (seq === validate_seq) errors.value = result.errors || [];
			return result;
		} finally {
			if (seq === validate_seq) validating.value = false;
		}
	}

	function show_errors(list, title) {
		const items = list
			.map((e) => `<li>${frappe.utils.escape_html(e.text || e.message)}</li>`)
			.join("");
		frappe.msgprint({
			title: title || __("Flow is invalid"),
			indicator: "red",
			message: `<p>${__("Fix these problems, then save again:")}</p><ul>${items}</ul>`,
		});
		const first = list.find((e) => e.step_id && graph.stepById(definition.value, e.step_id));
		if (first) selected.value = { type: "step", id: first.step_id };
		else if (list.some((e) => (e.field || "").startsWith("trigger"))) selected.value = { type: "trigger" };
	}

	async function save() {
		if (mode.value !== "edit") return;
		clearTimeout(validate_timer);
		const result = await validate_now();
		if (result && !result.valid) {
			show_errors(result.errors, __("Not saved: the flow is invalid"));
			return false;
		}
		const { message: outcome } = await frappe.call({
			method: DESK + "save_flow",
			args: {
				template: name.value,
				definition: JSON.stringify(definition.value),
				layout: JSON.stringify({ positions: positions.value }),
				is_active: template.value.is_active ? 1 : 0,
				run_as: template.value.can_set_run_as ? template.value.run_as || "" : "",
			},
			freeze: true,
			freeze_message: __("Saving..."),
		});
		if (!outcome.saved) {
			errors.value = outcome.errors;
			show_errors(outcome.errors, __("Not saved: the flow is invalid"));
			return false;
		}
		template.value = {
			...template.value,
			version: outcome.version,
			modified: outcome.modified,
			run_as: outcome.run_as,
		};
		if (outcome.publishing) publishing.value = outcome.publishing;
		// adopt what the server stored: the app's own vocabulary, and secrets moved into Flow Secrets
		// (a pasted clear value must not linger in the editor, its undo history or an export)
		if (outcome.definition && Array.isArray(outcome.definition.steps)) {
			const stored = graph.normalise(outcome.definition);
			stored.trigger = stored.trigger || definition.value.trigger;
			definition.value = stored;
			history.reset(snapshot());
			sync_history();
		}
		dirty.value = false;
		frappe.show_alert({
			message: publishing.value.has_draft
				? __("Saved as a draft: runs use version {0} until you publish", [outcome.version])
				: __("Saved (version {0})", [outcome.version]),
			indicator: "green",
		});
		flow_engine.editor && flow_engine.editor.setup_page();
		return true;
	}

	// Draft → publish: saving keeps a draft; Publish shows what changed, then makes the next version.
	async function publish() {
		if (mode.value !== "edit") return;
		if (dirty.value && !(await save())) return;
		if (!publishing.value.has_draft) {
			frappe.show_alert({ message: __("Nothing to publish: version {0} is current", [publishing.value.version]) });
			return;
		}
		const { message: changes } = await frappe.call(API + "compare_versions", {
			template: name.value,
			base: "published",
			target: "draft",
		});
		const dialog = new frappe.ui.Dialog({
			title: __("Publish as version {0}", [publishing.value.version + 1]),
			fields: [
				{ fieldtype: "HTML", fieldname: "diff", options: changes.html },
				{ fieldtype: "Small Text", fieldname: "note", label: __("Note (what and why)") },
			],
			primary_action_label: __("Publish"),
			primary_action: async ({ note }) => {
				const { message: result } = await frappe.call(API + "publish_flow", { template: name.value, note });
				dialog.hide();
				publishing.value = { ...publishing.value, version: result.version, has_draft: false };
				template.value = { ...template.value, version: result.version };
				frappe.show_alert({ message: __("Version {0} published", [result.version]), indicator: "green" });
				flow_engine.editor && flow_engine.editor.setup_page();
			},
		});
		dialog.$wrapper.addClass("flow-publish-dialog");
		dialog.show();
	}

	function set_run_as(value) {
		template.value = { ...template.value, run_as: value || null };
		dirty.value = true;
	}

	function set_active(value) {
		template.value = { ...template.value, is_active: value ? 1 : 0 };
		dirty.value = true;
	}

	// ------------------------------------------------------------ import / export

	function export_json() {
		const text = graph.exportDefinition(definition.value);
		const blob = new Blob([text], { type: "application/json" });
		const a = document.createElement("a");
		a.href = URL.createObjectURL(blob);
		a.download = `${frappe.scrub(name.value || "flow")}.json`;
		document.body.appendChild(a);
		a.click();
		a.remove();
		const d = new frappe.ui.Dialog({
			title: __("Export JSON"),
			size: "large",
			fields: [
				{
					fieldname: "json",
					fieldtype: "Code",
					options: "JSON",
					label: __("Flow definition (also downloaded)"),
					read_only: 1,
					default: text,
				},
			],
			primary_action_label: __("Copy to clipboard"),
			primary_action() {
				frappe.utils.copy_to_clipboard(text);
				d.hide();
			},
		});
		d.show();
		return text;
	}

	function import_json() {
		const d = new frappe.ui.Dialog({
			title: __("Import JSON"),
			size: "large",
			fields: [
				{
					fieldname: "json",
					fieldtype: "Code",
					options: "JSON",
					label: __("Flow definition"),
					description: __(
						"A definition {version, trigger, variables, steps} — what <code>bench flow validate FILE.json</code> reads — or a Flow Template export. Replaces the steps in the editor (undo restores them)."
					),
					reqd: 1,
				},
			],
			primary_action_label: __("Import"),
			async primary_action({ json }) {
				let def;
				try {
					graph.parseImport(json); // shape check here, then the server reads the design's vocabulary
					const { message } = await frappe.call({
						method: DESK + "import_definition",
						args: { text: json },
					});
					def = graph.parseImport(message.definition);
				} catch (e) {
					if (e && e.message) {
						frappe.msgprint({ title: __("Cannot import"), indicator: "red", message: e.message });
					}
					return;
				}
				if (!def.trigger || !Object.keys(def.trigger).length) def.trigger = definition.value.trigger;
				positions.value = {};
				commit(def, { select: null });
				positions.value = graph.autoLayout(definition.value, kind_map.value);
				fit_request.value += 1;
				load_doc_fields();
				d.hide();
			},
		});
		d.show();
		return d;
	}

	// ------------------------------------------------------------ test run (dry run)

	function test_run() {
		const doctype = trigger_doctype.value;
		const fields = [];
		if (doctype) {
			fields.push({
				fieldname: "reference_name",
				fieldtype: "Link",
				options: doctype,
				label: __("{0} to test against", [__(doctype)]),
				reqd: 1,
			});
		}
		fields.push({
			fieldname: "input",
			fieldtype: "Code",
			options: "JSON",
			label: __("Input (optional JSON)"),
			max_height: 80,
		});
		const d = new frappe.ui.Dialog({
			title: __("Test run (dry run: nothing is created, sent or changed)"),
			fields,
			primary_action_label: __("Run test"),
			async primary_action(values) {
				d.hide();
				await do_dry_run(values.reference_name, values.input);
			},
		});
		d.show();
		return d;
	}

	async function do_dry_run(reference_name, input) {
		const { message: result } = await frappe.call({
			method: API + "dry_run",
			args: {
				definition: JSON.stringify(definition.value),
				reference_doctype: trigger_doctype.value,
				reference_name: reference_name || null,
				input: input || null,
			},
			freeze: true,
			freeze_message: __("Walking the flow..."),
		});
		dry_run.value = { ...result, reference_name };
		selected.value = { type: "dry_run" };
		return result;
	}

	function clear_dry_run() {
		dry_run.value = null;
		if (selected.value?.type === "dry_run") selected.value = null;
	}

	// ------------------------------------------------------------ run view

	async function load_run(run_name) {
		const { message: data } = await frappe.call(API + "get_run", { run: run_name });
		run.value = data;
		if (!kinds.value.length) {
			try {
				const { message: k } = await frappe.call({ method: API + "kinds", freeze: false });
				kinds.value = k;
			} catch (e) {
				kinds.value = [];
			}
		}
		const def = graph.normalise(data.definition);
		if (data.scope && graph.stepById(def, data.scope)) {
			// an item run of a for_each: show the loop's body only
			const body = new Set(graph.branchBody(def, data.scope, "each"));
			def.steps = def.steps.filter((step) => body.has(step.id));
		}
		definition.value = def;
		let layout = null;
		try {
			const { message: tpl } = await frappe.call({
				method: DESK + "editor_data",
				args: { template: data.template },
				freeze: false,
			});
			if (tpl && tpl.definition && tpl.template.version === data.template_version) layout = tpl.layout;
		} catch (e) {
			layout = null;
		}
		positions.value = graph.positionsFor(definition.value, layout, kind_map.value);
		subscribe(run_name);
	}

	async function refresh_run() {
		if (!name.value || mode.value !== "run") return;
		const before = run.value && run.value.status;
		const { message: data } = await frappe.call({
			method: API + "get_run",
			args: { run: name.value },
			freeze: false,
		});
		run.value = data;
		if (before !== data.status && page.value && flow_engine.editor) flow_engine.editor.setup_page();
		if (!["queued", "running", "waiting"].includes(data.status)) clearInterval(poll_timer);
	}

	function subscribe(run_name) {
		frappe.realtime.doc_subscribe("Flow Run", run_name);
		realtime_handler = (data) => {
			if (data && data.run === run_name) {
				if (run.value) {
					run.value = {
						...run.value,
						status: data.status,
						error: data.error,
						// the server sends only the steps that changed since its last message
						steps: Object.fromEntries(
							Object.entries({ ...(run.value.steps || {}), ...(data.states || {}) }).map(
								([id, state]) => [id, { ...((run.value.steps || {})[id] || {}), ...state }]
							)
						),
					};
				}
				refresh_run();
			}
		};
		frappe.realtime.on("flow_run_update", realtime_handler);
		// polling fallback (no socket.io, or a missed event)
		clearInterval(poll_timer);
		if (["queued", "running", "waiting"].includes(run.value.status)) {
			poll_timer = setInterval(() => refresh_run(), 3000);
		}
	}

	function stop() {
		clearInterval(poll_timer);
		clearTimeout(validate_timer);
		if (realtime_handler) {
			frappe.realtime.off("flow_run_update", realtime_handler);
			if (name.value) frappe.realtime.doc_unsubscribe?.("Flow Run", name.value);
			realtime_handler = null;
		}
	}

	async function cancel_run() {
		frappe.confirm(__("Cancel this run? Pending steps will not run."), async () => {
			await frappe.call(API + "cancel_run", { run: name.value });
			await refresh_run();
			flow_engine.editor && flow_engine.editor.setup_page();
		});
	}

	async function retry_run() {
		await frappe.call(API + "retry_run", { run: name.value });
		await refresh_run();
		restart_polling();
		flow_engine.editor && flow_engine.editor.setup_page();
	}

	function restart_polling() {
		clearInterval(poll_timer);
		poll_timer = setInterval(() => refresh_run(), 3000);
	}

	async function complete_step(step_id, result) {
		await frappe.call(API + "complete_step", {
			run: name.value,
			step_id,
			result: result ? JSON.stringify(result) : null,
		});
		frappe.show_alert({ message: __("Step {0} completed", [step_id]), indicator: "green" });
		await refresh_run();
		restart_polling();
	}

	watch(dirty, (value) => {
		if (!page.value || mode.value !== "edit") return;
		if (value) page.value.set_indicator(__("Not Saved"), "orange");
		else page.value.clear_indicator();
	});

	return {
		page,
		mode,
		name,
		loading,
		template,
		definition,
		positions,
		kinds,
		trigger_events,
		business_events,
		kind_map,
		selected,
		selected_step,
		errors,
		grouped_errors,
		validating,
		dirty,
		doc_fields,
		run,
		dry_run,
		dry_index,
		message,
		fit_request,
		history_state,
		trigger_doctype,
		open,
		stop,
		commit,
		update_step,
		set_payload,
		set_trigger,
		set_active,
		set_run_as,
		add_step,
		remove_step,
		duplicate_step,
		move_step,
		connect,
		disconnect,
		rename_step,
		set_join,
		set_on_error,
		rename_branch,
		move_node,
		tidy,
		undo,
		redo,
		validate_now,
		save,
		publish,
		publishing,
		export_json,
		import_json,
		test_run,
		do_dry_run,
		clear_dry_run,
		refresh_run,
		cancel_run,
		retry_run,
		complete_step,
	};
});
