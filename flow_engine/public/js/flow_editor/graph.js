// Pure graph logic of the Flow Editor: no Vue, no Frappe, no DOM. Unit-tested with `node --test tests/js/`.
//
// A definition is the JSON of SPEC §3: {version, trigger, variables, steps: [{id, kind, label, parent_id,
// branch, depends_on, trigger, payload, retry, timeout}]}. Every operation here takes a definition and
// returns a NEW definition (inputs are never mutated), so the editor can keep an undo history of snapshots.

export const NODE_WIDTH = 240;
export const NODE_HEIGHT = 64;
export const GAP_X = 48;
export const GAP_Y = 56;

export const STEP_TRIGGER_TYPES = [
	"on_flow_start",
	"on_prev_complete",
	"after_delay",
	"on_date",
	"on_webhook",
	"manual",
];
export const DELAY_KEYS = ["delay_seconds", "delay_minutes", "delay_hours", "delay_days"];
export const CONDITION_OPS = [
	["==", "equals"],
	["!=", "does not equal"],
	["<", "is less than"],
	[">", "is greater than"],
	["<=", "is at most"],
	[">=", "is at least"],
	["in", "is one of"],
	["not_in", "is not one of"],
	["empty", "is empty"],
	["not_empty", "is not empty"],
	["contains", "contains"],
	["starts_with", "starts with"],
	["ends_with", "ends with"],
];
export const UNARY_OPS = ["empty", "not_empty"];
export const LIST_OPS = ["in", "not_in"];

// ------------------------------------------------------------------ basics

export function clone(value) {
	return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

export function emptyDefinition(trigger = {}) {
	return { version: 1, trigger: { event: "manual", ...trigger }, variables: {}, steps: [] };
}

/** A definition with every step normalised: depends_on a list, parent_id/branch null when absent. */
export function normalise(definition) {
	const def = clone(definition || {}) || {};
	def.version = def.version || 1;
	def.steps = Array.isArray(def.steps) ? def.steps : [];
	def.steps = def.steps.map((step) => ({
		...step,
		depends_on: Array.isArray(step.depends_on)
			? [...step.depends_on]
			: step.depends_on
			? [step.depends_on]
			: [],
		parent_id: step.parent_id || null,
		branch: step.branch || null,
		payload: step.payload && typeof step.payload === "object" ? step.payload : {},
	}));
	return def;
}

export function stepById(definition, id) {
	return (definition.steps || []).find((step) => step.id === id) || null;
}

export function predecessors(step) {
	const preds = [...(step.depends_on || [])];
	if (step.parent_id && !preds.includes(step.parent_id)) preds.push(step.parent_id);
	return preds;
}

/** Ids of the steps that depend on `id` (through depends_on). */
export function dependents(definition, id) {
	return definition.steps.filter((s) => (s.depends_on || []).includes(id)).map((s) => s.id);
}

/** Every step that runs before `id` (transitive depends_on and parent_id). */
export function ancestors(definition, id) {
	const seen = new Set();
	const stack = [...predecessors(stepById(definition, id) || {})];
	while (stack.length) {
		const current = stack.pop();
		if (seen.has(current)) continue;
		seen.add(current);
		const step = stepById(definition, current);
		if (step) stack.push(...predecessors(step));
	}
	return definition.steps.filter((s) => seen.has(s.id)).map((s) => s.id);
}

/** Would adding `source` to target's predecessors make a cycle? */
export function wouldCycle(definition, source, target) {
	return source === target || ancestors(definition, source).includes(target);
}

export function newStepId(definition, kind) {
	const base = String(kind || "step").replace(/[^A-Za-z0-9_-]/g, "_");
	const taken = new Set(definition.steps.map((s) => s.id));
	let n = 1;
	while (taken.has(`${base}_${n}`)) n += 1;
	return `${base}_${n}`;
}

export function kindDefaults(kindSpec) {
	const payload = {};
	for (const field of (kindSpec && kindSpec.fields) || []) {
		if (field.default !== null && field.default !== undefined) payload[field.name] = clone(field.default);
	}
	return payload;
}

// ------------------------------------------------------------------ edges

/**
 * Edges to draw: a `depends` edge for each depends_on entry and a `branch` edge (labelled with the
 * branch) from a branching parent to the first step(s) of each branch.
 */
export function edgesOf(definition) {
	const edges = [];
	const ids = new Set(definition.steps.map((s) => s.id));
	for (const step of definition.steps) {
		const sameBranchDep = (step.depends_on || []).some((dep) => {
			const other = stepById(definition, dep);
			return other && other.parent_id === step.parent_id && other.branch === step.branch;
		});
		if (step.parent_id && ids.has(step.parent_id) && !sameBranchDep) {
			edges.push({
				id: `b:${step.parent_id}>${step.id}`,
				source: step.parent_id,
				target: step.id,
				type: "branch",
				branch: step.branch || "",
				label: step.branch || "",
			});
		}
		for (const dep of step.depends_on || []) {
			if (!ids.has(dep)) continue;
			if (dep === step.parent_id && !sameBranchDep) continue; // drawn as the branch edge
			edges.push({ id: `d:${dep}>${step.id}`, source: dep, target: step.id, type: "depends", label: "" });
		}
	}
	return edges;
}

// ------------------------------------------------------------------ layout

/** Rank of each step: the length of its longest chain of predecessors. Cycles are cut. */
export function ranks(definition) {
	const rank = {};
	const visiting = new Set();
	const visit = (id) => {
		if (rank[id] !== undefined) return rank[id];
		if (visiting.has(id)) return 0;
		visiting.add(id);
		const step = stepById(definition, id);
		let r = 0;
		for (const pred of step ? predecessors(step) : []) {
			if (stepById(definition, pred)) r = Math.max(r, visit(pred) + 1);
		}
		visiting.delete(id);
		rank[id] = r;
		return r;
	};
	definition.steps.forEach((s) => visit(s.id));
	return rank;
}

/**
 * Automatic top-down layout: one row per rank, children under their parents, the `yes` branch to the
 * left of the `no` branch, nodes never overlapping. Returns {id: {x, y}}.
 */
export function autoLayout(definition) {
	const rank = ranks(definition);
	const rows = [];
	definition.steps.forEach((step, index) => {
		(rows[rank[step.id]] = rows[rank[step.id]] || []).push({ step, index });
	});
	const positions = {};
	const pitch = NODE_WIDTH + GAP_X;
	rows.forEach((row, r) => {
		if (!row) return;
		for (const item of row) {
			const preds = predecessors(item.step).filter((p) => positions[p]);
			let hint = preds.length
				? preds.reduce((sum, p) => sum + positions[p].x, 0) / preds.length
				: item.index * 0.001;
			if (item.step.parent_id && positions[item.step.parent_id]) {
				const parent = stepById(definition, item.step.parent_id);
				const sameBranchDep = (item.step.depends_on || []).some(
					(dep) => stepById(definition, dep)?.branch === item.step.branch
				);
				if (!sameBranchDep) {
					const branches = branchesOf(parent);
					const i = Math.max(0, branches.indexOf(item.step.branch));
					hint = positions[item.step.parent_id].x + (i - (branches.length - 1) / 2) * pitch;
				}
			}
			item.hint = hint;
		}
		row.sort((a, b) => a.hint - b.hint || a.index - b.index);
		// place at hints, then push apart left to right, then centre the row on its hints
		let last = -Infinity;
		const xs = row.map((item) => {
			const x = Math.max(item.hint, last + pitch);
			last = x;
			return x;
		});
		const shift =
			(row.reduce((s, item) => s + item.hint, 0) - xs.reduce((s, x) => s + x, 0)) / row.length;
		row.forEach((item, i) => {
			positions[item.step.id] = { x: Math.round(xs[i] + shift), y: r * (NODE_HEIGHT + GAP_Y) };
		});
	});
	return positions;
}

const DEFAULT_BRANCHES = ["yes", "no"];
function branchesOf(step) {
	return (step && step._branches) || DEFAULT_BRANCHES;
}

/** Saved positions where present; the automatic layout for steps without one. */
export function positionsFor(definition, layout) {
	const saved = (layout && layout.positions) || layout || {};
	const auto = autoLayout(definition);
	const out = {};
	const anySaved = definition.steps.some((s) => saved[s.id]);
	for (const step of definition.steps) {
		if (saved[step.id] && Number.isFinite(saved[step.id].x)) {
			out[step.id] = { x: saved[step.id].x, y: saved[step.id].y };
		} else if (anySaved) {
			// a new step: below its lowest predecessor (or below everything)
			const preds = predecessors(step).filter((p) => out[p] || saved[p]);
			const below = preds.map((p) => out[p] || saved[p]);
			const maxY = Math.max(0, ...Object.values(out).map((p) => p.y), ...below.map((p) => p.y));
			const x = below.length ? below.reduce((s, p) => s + p.x, 0) / below.length : 0;
			out[step.id] = { x: Math.round(x), y: (below.length ? Math.max(...below.map((p) => p.y)) : maxY) + NODE_HEIGHT + GAP_Y };
		} else {
			out[step.id] = auto[step.id];
		}
	}
	return out;
}

// ------------------------------------------------------------------ building

/**
 * Add a step of `kind`. Options: `after` (id: the new step depends on it and takes its place before
 * its dependents), `parent_id` + `branch` (inside a condition's branch, appended to the end of that
 * branch), `id`, `label`, `payload`. Returns {definition, id}.
 */
export function addStep(definition, kind, options = {}) {
	const def = normalise(definition);
	const id = options.id || newStepId(def, kind);
	const step = {
		id,
		kind,
		label: options.label || "",
		parent_id: null,
		branch: null,
		depends_on: [],
		payload: clone(options.payload) || {},
	};
	if (options.parent_id) {
		step.parent_id = options.parent_id;
		step.branch = options.branch || "yes";
		const tail = branchTail(def, options.parent_id, step.branch);
		step.depends_on = tail ? [tail] : [];
	} else if (options.after && stepById(def, options.after)) {
		const after = stepById(def, options.after);
		step.parent_id = after.parent_id;
		step.branch = after.branch;
		step.depends_on = [after.id];
		// insert into a sequential chain: after's single dependent now follows the new step
		const next = def.steps.filter((s) => s.depends_on.includes(after.id));
		if (options.insert && next.length === 1) {
			next[0].depends_on = next[0].depends_on.map((d) => (d === after.id ? id : d));
		}
	}
	if (options.trigger) step.trigger = clone(options.trigger);
	const afterIndex = options.after ? def.steps.findIndex((s) => s.id === options.after) : -1;
	if (afterIndex >= 0) def.steps.splice(afterIndex + 1, 0, step);
	else def.steps.push(step);
	return { definition: def, id };
}

/** The last step of a branch (a step of that branch no other step of the branch depends on). */
export function branchTail(definition, parentId, branch) {
	const members = definition.steps.filter((s) => s.parent_id === parentId && s.branch === branch);
	const tails = members.filter((m) => !members.some((o) => (o.depends_on || []).includes(m.id)));
	return tails.length ? tails[tails.length - 1].id : null;
}

/** Leaves of the top level (nothing depends on them): where a palette add goes with no selection. */
export function topLevelTail(definition) {
	const top = definition.steps.filter((s) => !s.parent_id);
	const tails = top.filter((m) => !definition.steps.some((o) => (o.depends_on || []).includes(m.id)));
	return tails.length === 1 ? tails[0].id : tails.length ? tails[tails.length - 1].id : null;
}

/**
 * Delete a step. Its dependents take over its depends_on (a chain stays a chain); the steps inside its
 * branches are deleted with it.
 */
export function removeStep(definition, id) {
	let def = normalise(definition);
	const children = def.steps.filter((s) => s.parent_id === id).map((s) => s.id);
	for (const child of children) def = removeStep(def, child);
	const step = stepById(def, id);
	if (!step) return def;
	for (const other of def.steps) {
		if (other.depends_on.includes(id)) {
			// outside the branch, the first step of a branch is replaced by the branching parent
			const sameBranch = other.parent_id === step.parent_id && other.branch === step.branch;
			const instead =
				step.depends_on.length || sameBranch || !step.parent_id ? step.depends_on : [step.parent_id];
			const replaced = [];
			for (const dep of other.depends_on) {
				for (const d of dep === id ? instead : [dep]) {
					if (!replaced.includes(d) && d !== other.id) replaced.push(d);
				}
			}
			other.depends_on = replaced;
		}
	}
	def.steps = def.steps.filter((s) => s.id !== id);
	return def;
}

/** A copy of a step next to it (same predecessors, so it runs in parallel). Returns {definition, id}. */
export function duplicateStep(definition, id) {
	const def = normalise(definition);
	const index = def.steps.findIndex((s) => s.id === id);
	if (index < 0) return { definition: def, id: null };
	const copy = clone(def.steps[index]);
	copy.id = newStepId(def, copy.kind);
	copy.label = copy.label ? `${copy.label} (copy)` : "";
	def.steps.splice(index + 1, 0, copy);
	return { definition: def, id: copy.id };
}

/**
 * Connect source → target. From a branch handle (`branch` given, source branches) the target moves
 * into that branch; otherwise target depends on source. Refuses cycles: returns {definition, error}.
 */
export function connect(definition, source, target, branch = null) {
	const def = normalise(definition);
	const s = stepById(def, source);
	const t = stepById(def, target);
	if (!s || !t) return { definition: def, error: "unknown step" };
	if (wouldCycle(def, source, target)) {
		return { definition: def, error: `connecting '${source}' to '${target}' would make a cycle` };
	}
	if (branch) {
		t.parent_id = source;
		t.branch = branch;
		t.depends_on = t.depends_on.filter((d) => d !== source);
	} else if (!t.depends_on.includes(source)) {
		t.depends_on.push(source);
	}
	return { definition: def, error: null };
}

/** Remove the edge source → target (a dependency, or a branch membership). */
export function disconnect(definition, source, target) {
	const def = normalise(definition);
	const t = stepById(def, target);
	if (!t) return def;
	if (t.depends_on.includes(source)) {
		t.depends_on = t.depends_on.filter((d) => d !== source);
	} else if (t.parent_id === source) {
		t.parent_id = null;
		t.branch = null;
	}
	return def;
}

/**
 * Move a step up (`-1`) or down (`+1`) a sequential chain, rewriting depends_on. A chain link is
 * P → X where X depends only on P, only X depends on P, and both sit in the same branch. Other (DAG)
 * parts of the flow are left intact. Returns {definition, error}.
 */
export function moveStep(definition, id, direction) {
	const def = normalise(definition);
	const x = stepById(def, id);
	if (!x) return { definition: def, error: "unknown step" };
	if (direction > 0) {
		const next = def.steps.filter((s) => s.depends_on.includes(id));
		if (next.length !== 1) {
			return { definition: def, error: `'${id}' is not followed by a single step` };
		}
		return moveStep(def, next[0].id, -1).error
			? { definition: def, error: `'${id}' cannot move down here` }
			: moveStep(def, next[0].id, -1);
	}
	if (x.depends_on.length !== 1) {
		return { definition: def, error: `'${id}' does not follow a single step` };
	}
	const p = stepById(def, x.depends_on[0]);
	if (!p) return { definition: def, error: "dangling dependency" };
	if (p.parent_id !== x.parent_id || p.branch !== x.branch) {
		return { definition: def, error: `'${id}' is the first step of its branch` };
	}
	if (dependents(def, p.id).length !== 1) {
		return { definition: def, error: `'${p.id}' has several following steps` };
	}
	const followers = dependents(def, x.id);
	x.depends_on = [...p.depends_on];
	p.depends_on = [x.id];
	for (const fid of followers) {
		const f = stepById(def, fid);
		f.depends_on = f.depends_on.map((d) => (d === x.id ? p.id : d));
	}
	// a first step of the flow keeps its start trigger; a follower goes back to the default
	if (p.trigger && p.trigger.type === "on_flow_start") {
		x.trigger = { ...p.trigger };
		delete p.trigger;
	}
	const pi = def.steps.indexOf(p);
	const xi = def.steps.indexOf(x);
	if (xi > pi) {
		def.steps.splice(xi, 1);
		def.steps.splice(pi, 0, x);
	}
	return { definition: def, error: null };
}

/** Change a step's id everywhere it is referenced (depends_on, parent_id, templates `steps.<id>.`). */
export function renameStep(definition, oldId, newId) {
	const def = normalise(definition);
	if (!newId || oldId === newId) return { definition: def, error: null };
	if (!/^[A-Za-z0-9_-]+$/.test(newId)) {
		return { definition: def, error: "an id may hold letters, digits, _ and - only" };
	}
	if (stepById(def, newId)) return { definition: def, error: `a step '${newId}' exists already` };
	const text = JSON.stringify(def.steps).split(`steps.${oldId}.`).join(`steps.${newId}.`);
	def.steps = JSON.parse(text);
	for (const step of def.steps) {
		if (step.id === oldId) step.id = newId;
		if (step.parent_id === oldId) step.parent_id = newId;
		step.depends_on = step.depends_on.map((d) => (d === oldId ? newId : d));
	}
	return { definition: def, error: null };
}

// ------------------------------------------------------------------ undo / redo

/** Snapshot history for undo/redo. States are stored as JSON text. */
export class History {
	constructor(limit = 100) {
		this.limit = limit;
		this.stack = [];
		this.index = -1;
	}
	reset(state) {
		this.stack = [JSON.stringify(state)];
		this.index = 0;
	}
	push(state) {
		const text = JSON.stringify(state);
		if (this.stack[this.index] === text) return false;
		this.stack = this.stack.slice(0, this.index + 1);
		this.stack.push(text);
		if (this.stack.length > this.limit) this.stack.shift();
		this.index = this.stack.length - 1;
		return true;
	}
	get canUndo() {
		return this.index > 0;
	}
	get canRedo() {
		return this.index < this.stack.length - 1;
	}
	undo() {
		if (!this.canUndo) return null;
		this.index -= 1;
		return JSON.parse(this.stack[this.index]);
	}
	redo() {
		if (!this.canRedo) return null;
		this.index += 1;
		return JSON.parse(this.stack[this.index]);
	}
}

// ------------------------------------------------------------------ validation errors

/** Server errors grouped by step: {steps: {id: [error]}, general: [error]}. */
export function groupErrors(errors) {
	const out = { steps: {}, general: [] };
	for (const error of errors || []) {
		if (error.step_id) (out.steps[error.step_id] = out.steps[error.step_id] || []).push(error);
		else out.general.push(error);
	}
	return out;
}

/**
 * The errors of one step keyed by the editor field they belong to: `payload.fields.x` → `fields`,
 * `trigger.delay_minutes` → `trigger`, `depends_on` → `depends_on`.
 */
export function fieldErrors(errors, stepId) {
	const out = {};
	for (const error of errors || []) {
		if (error.step_id !== stepId) continue;
		const path = error.field || "";
		let key = path.split(".")[0] || "step";
		if (key === "payload") key = path.split(".")[1] || "payload";
		(out[key] = out[key] || []).push(error.message);
	}
	return out;
}

// ------------------------------------------------------------------ condition builder

/**
 * The condition builder's model: {match: "all"|"any", rows: [{field, op, value}]}, or null when the
 * condition cannot be shown as one flat group (nested groups, JSONLogic): then only JSON is edited.
 */
export function conditionToRows(condition) {
	if (condition === null || condition === undefined || condition === "" || isEmptyObject(condition)) {
		return { match: "all", rows: [] };
	}
	if (typeof condition !== "object" || Array.isArray(condition)) return null;
	const leaf = (c) =>
		c && typeof c === "object" && !Array.isArray(c) && "field" in c && !("all" in c) && !("any" in c);
	if (leaf(condition)) return { match: "all", rows: [rowOf(condition)] };
	for (const match of ["all", "any"]) {
		if (Array.isArray(condition[match]) && Object.keys(condition).length === 1) {
			if (!condition[match].every(leaf)) return null;
			return { match, rows: condition[match].map(rowOf) };
		}
	}
	return null;
}

function rowOf(c) {
	let value = c.value;
	if (Array.isArray(value)) value = value.join(", ");
	return { field: c.field || "", op: c.op || "==", value: value === undefined || value === null ? "" : value };
}

function isEmptyObject(value) {
	return typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 0;
}

/** Back from rows to the stored condition ({} when there are no rows). */
export function rowsToCondition(model) {
	const rows = (model.rows || []).filter((r) => r.field);
	const leaves = rows.map((r) => {
		const leaf = { field: r.field, op: r.op || "==" };
		if (UNARY_OPS.includes(leaf.op)) return leaf;
		let value = r.value;
		if (LIST_OPS.includes(leaf.op) && typeof value === "string") {
			value = value
				.split(",")
				.map((v) => v.trim())
				.filter((v) => v !== "");
		}
		leaf.value = value;
		return leaf;
	});
	if (!leaves.length) return {};
	if (leaves.length === 1 && model.match !== "any") return leaves[0];
	return { [model.match === "any" ? "any" : "all"]: leaves };
}

// ------------------------------------------------------------------ variables

/**
 * What a template in step `stepId` may refer to: [{path, label, group}] — the trigger document's
 * fields, `customer`, variables, earlier steps' results, run/template, `now`/`today`, `input`.
 */
export function variablePaths(definition, stepId, docFields = [], kinds = {}) {
	const out = [];
	const add = (path, label, group) => out.push({ path, label: label || path, group });
	add("doc.name", "Name (ID)", "Document");
	for (const df of docFields) add(`doc.${df.fieldname}`, df.label || df.fieldname, "Document");
	add("customer.name", "Customer", "Document");
	const vars = new Set(Object.keys(definition.variables || {}));
	const earlier = stepId ? ancestors(definition, stepId) : definition.steps.map((s) => s.id);
	for (const id of earlier) {
		const step = stepById(definition, id);
		if (step && step.kind === "set_variables" && step.payload && step.payload.variables) {
			Object.keys(step.payload.variables).forEach((v) => vars.add(v));
		}
	}
	for (const v of vars) add(`variables.${v}`, v, "Variables");
	for (const id of earlier) {
		const step = stepById(definition, id);
		const title = (step && step.label) || id;
		add(`steps.${id}.result`, `${title}: result`, "Earlier steps");
		for (const key of resultKeys(step && step.kind, kinds)) {
			add(`steps.${id}.result.${key}`, `${title}: ${key}`, "Earlier steps");
		}
	}
	add("now", "Now (date and time)", "Run");
	add("today", "Today", "Run");
	add("run.name", "Run ID", "Run");
	add("template.name", "Flow name", "Run");
	add("template.version", "Flow version", "Run");
	add("input", "Run input", "Run");
	return out;
}

function resultKeys(kind) {
	return (
		{
			create_doc: ["name", "doctype"],
			condition: ["branch"],
			webhook: ["status_code", "body"],
			assign: ["assigned"],
			update_doc: ["name"],
		}[kind] || []
	);
}

/** Insert `{{path}}` into `text` at [start, end); returns {text, cursor}. */
export function insertAt(text, start, end, path) {
	const token = `{{${path}}}`;
	const value = text || "";
	const s = Math.max(0, Math.min(start ?? value.length, value.length));
	const e = Math.max(s, Math.min(end ?? s, value.length));
	return { text: value.slice(0, s) + token + value.slice(e), cursor: s + token.length };
}

// ------------------------------------------------------------------ triggers of steps

/** The step's trigger with its type filled in (the engine's defaults). */
export function stepTrigger(step) {
	const trigger = { ...(step.trigger || {}) };
	if (!trigger.type) {
		trigger.type = predecessors(step).length ? "on_prev_complete" : "on_flow_start";
	}
	return trigger;
}

/** A short human description of a step trigger for the node ("after 5 minutes"). */
export function describeTrigger(trigger) {
	if (!trigger || !trigger.type) return "";
	if (trigger.type === "after_delay") {
		const parts = [];
		for (const key of ["delay_days", "delay_hours", "delay_minutes", "delay_seconds"]) {
			const v = trigger[key];
			if (v !== undefined && v !== null && v !== "" && Number(v) !== 0) {
				parts.push(`${v} ${key.replace("delay_", "")}`);
			}
		}
		return parts.length ? `after ${parts.join(" ")}` : "after a delay";
	}
	if (trigger.type === "on_date") return `on ${trigger.date || "a date"}${trigger.time ? " " + trigger.time : ""}`;
	if (trigger.type === "manual") return "waits for a user";
	if (trigger.type === "on_webhook") return "waits for a callback";
	return "";
}

// ------------------------------------------------------------------ import / export

/** Pretty JSON of a definition (what `bench … flow validate FILE.json` reads). */
export function exportDefinition(definition) {
	const def = normalise(definition);
	def.steps = def.steps.map((step) => {
		const out = {};
		for (const [key, value] of Object.entries(step)) {
			if (key.startsWith("_")) continue;
			if ((key === "parent_id" || key === "branch") && !value) continue;
			if (key === "label" && !value) continue;
			out[key] = value;
		}
		return out;
	});
	return JSON.stringify(def, null, 1);
}

/** Parse imported JSON: a definition, or a Flow Template export holding `flow_definition`. */
export function parseImport(text) {
	let data = typeof text === "string" ? JSON.parse(text) : text;
	if (data && typeof data.flow_definition === "string") data = JSON.parse(data.flow_definition);
	else if (data && data.flow_definition && typeof data.flow_definition === "object") data = data.flow_definition;
	if (Array.isArray(data)) data = { version: 1, steps: data };
	if (!data || typeof data !== "object" || !Array.isArray(data.steps)) {
		throw new Error("not a flow definition: expected an object with a 'steps' list");
	}
	return normalise(data);
}

// ------------------------------------------------------------------ run view

export const STATUS_COLORS = {
	completed: "green",
	running: "blue",
	scheduled: "orange",
	waiting: "orange",
	failed: "red",
	cancelled: "gray",
	skipped: "gray",
	blocked: "red",
	pending: "gray",
};

export function statusOf(states, id) {
	const state = (states || {})[id];
	return (state && state.status) || "pending";
}

/** Steps a run can complete from Desk: parked `manual` / `on_webhook` steps. */
export function parkedSteps(definition, states) {
	return (definition.steps || [])
		.filter((step) => statusOf(states, step.id) === "waiting")
		.filter((step) => ["manual", "on_webhook"].includes(stepTrigger(step).type))
		.map((step) => step.id);
}
