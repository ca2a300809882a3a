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
		for (const pred of step ? layoutPredecessors(definition, step) : []) {
			if (stepById(definition, pred)) r = Math.max(r, visit(pred) + 1);
		}
		visiting.delete(id);
		rank[id] = r;
		return r;
	};
	definition.steps.forEach((s) => visit(s.id));
	return rank;
}

/** Predecessors for the layout: what follows a for_each (depends_on it) goes below the loop's body. */
function layoutPredecessors(definition, step) {
	const preds = predecessors(step);
	for (const dep of step.depends_on || []) {
		const other = stepById(definition, dep);
		if (other && other.kind === "for_each") {
			for (const id of branchBody(definition, dep, "each")) if (id !== step.id && !preds.includes(id)) preds.push(id);
		}
	}
	return preds;
}

/**
 * Automatic top-down layout: one row per rank, children under their parents, the `yes` branch to the
 * left of the `no` branch, nodes never overlapping. Returns {id: {x, y}}.
 */
export function autoLayout(definition, kinds = null) {
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
					const branches = branchesOf(parent, kinds);
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

function branchesOf(step, kinds) {
	if (step && step._branches) return step._branches;
	return branchesFor(step, kinds ? kinds[step && step.kind] : undefined);
}

// ------------------------------------------------------------------ branches (mirror of catalog.branches_for)

/** Static branches of the built-in branching kinds, used when no catalog entry is at hand. */
export const KIND_BRANCHES = {
	condition: ["yes", "no"],
	for_each: ["each"],
	wait_for: ["event", "timeout"],
	approval: ["approved", "rejected", "timed_out"],
};
export const ERROR_BRANCH = "error";
export const DEFAULT_CASE = "default";
export const JOIN_MODES = ["all", "any", "n"];
export const ON_ERROR_MODES = ["fail", "continue", "branch"];

/** Names of a switch's cases / an inclusive gateway's branches, from the step's payload. */
export function caseNames(step) {
	const payload = (step && step.payload) || {};
	const list = step && step.kind === "inclusive" ? payload.branches : payload.cases;
	if (!Array.isArray(list)) return [];
	return list
		.filter((c) => c && typeof c === "object")
		.map((c) => c.name)
		.filter((n, i, all) => typeof n === "string" && n.trim() && all.indexOf(n) === i);
}

/** The branch a switch takes when no case holds: payload.default, else "default". */
export function defaultCase(step) {
	const name = ((step && step.payload) || {}).default;
	return typeof name === "string" && name.trim() ? name : DEFAULT_CASE;
}

/**
 * The branches a step offers, the editor's copy of the engine's `catalog.branches_for(step)`: the kind's
 * static `branches` (`kindSpec` from the catalog; built-in ones when absent), or for a switch the payload's
 * case names + "default", for an inclusive gateway its branch names; plus "error" when the step's
 * on_error is "branch". Each name once, in that order.
 */
export function branchesFor(step, kindSpec) {
	if (!step) return [];
	let names;
	if (step.kind === "switch") names = [...caseNames(step), defaultCase(step)];
	else if (step.kind === "inclusive") names = caseNames(step);
	else if (kindSpec && Array.isArray(kindSpec.branches) && kindSpec.branches.length) names = [...kindSpec.branches];
	else names = [...(KIND_BRANCHES[step.kind] || [])];
	if (step.on_error === "branch") names.push(ERROR_BRANCH);
	return names.filter((name, i) => names.indexOf(name) === i);
}

/** The branch a palette add goes into when `step` is selected: its first own branch (never "error"). */
export function addBranch(step, kindSpec) {
	const own = branchesFor(step, kindSpec).filter((b) => b !== ERROR_BRANCH);
	return own.length ? own[0] : null;
}

/** Steps with more than one input (depends_on and/or parent) get a join setting. */
export function inputCount(step) {
	return predecessors(step || {}).length;
}

/**
 * Whether a step merges paths (so a join setting means something): several depends_on, or a depends_on
 * from outside its branch next to its parent. A chain inside a branch (previous step + parent) is not.
 */
export function isMerge(definition, step) {
	if (!step) return false;
	const deps = (step.depends_on || []).filter((d) => d !== step.parent_id);
	const sameBranch = deps.some((d) => {
		const other = stepById(definition, d);
		return other && other.parent_id === step.parent_id && other.branch === step.branch;
	});
	return deps.length + (step.parent_id && !sameBranch ? 1 : 0) > 1;
}

/** The step's join as the editor shows it: {mode: "all"|"any"|"n", n}. */
export function joinOf(step) {
	const join = step && step.join;
	if (join === "any") return { mode: "any", n: null };
	if (Number.isInteger(join) || (typeof join === "string" && /^\d+$/.test(join))) {
		return { mode: "n", n: Number(join) };
	}
	return { mode: "all", n: null };
}

/** Set a step's join (`mode` all|any|n, `n` for "n"); "all" is the default and is not stored. */
export function setJoin(definition, id, mode, n = null) {
	const def = normalise(definition);
	const step = stepById(def, id);
	if (!step) return def;
	if (mode === "any") step.join = "any";
	else if (mode === "n") step.join = Math.max(1, parseInt(n, 10) || 1);
	else delete step.join;
	return def;
}

/** Set a step's on_error ("fail" is the default and is not stored). */
export function setOnError(definition, id, mode) {
	const def = normalise(definition);
	const step = stepById(def, id);
	if (!step) return def;
	if (mode === "continue" || mode === "branch") step.on_error = mode;
	else delete step.on_error;
	return def;
}

/** Rename a branch of `parentId`: the case in its payload and the steps in that branch follow. */
export function renameBranch(definition, parentId, oldName, newName) {
	const def = normalise(definition);
	const parent = stepById(def, parentId);
	if (!parent || !newName || oldName === newName) return { definition: def, error: null };
	if (branchesFor(parent).includes(newName)) {
		return { definition: def, error: `'${parentId}' has a branch '${newName}' already` };
	}
	if (parent.kind === "switch" && oldName === defaultCase(parent)) {
		parent.payload.default = newName;
	} else {
		const key = parent.kind === "inclusive" ? "branches" : "cases";
		const list = Array.isArray(parent.payload[key]) ? parent.payload[key] : [];
		parent.payload[key] = list.map((c) => (c && c.name === oldName ? { ...c, name: newName } : c));
	}
	for (const step of def.steps) {
		if (step.parent_id === parentId && step.branch === oldName) step.branch = newName;
	}
	return { definition: def, error: null };
}

/** Errors of a list entry: {index: [message]} for `payload.<key>[index]…` paths of step `stepId`. */
export function entryErrors(errors, stepId, key) {
	const out = {};
	const re = new RegExp(`^payload\\.${key}\\[(\\d+)\\](?:\\.(.*))?$`);
	for (const error of errors || []) {
		if (error.step_id !== stepId) continue;
		const m = re.exec(error.field || "");
		if (!m) continue;
		(out[m[1]] = out[m[1]] || []).push(m[2] ? `${m[2]}: ${error.message}` : error.message);
	}
	return out;
}

/** Remove the case / inclusive branch `name` of `parentId` and the steps of its branch. */
export function removeCase(definition, parentId, index) {
	let def = normalise(definition);
	const parent = stepById(def, parentId);
	if (!parent) return def;
	const key = parent.kind === "inclusive" ? "branches" : "cases";
	const list = Array.isArray(parent.payload[key]) ? [...parent.payload[key]] : [];
	const [gone] = list.splice(index, 1);
	parent.payload[key] = list;
	const name = gone && typeof gone === "object" ? gone.name : null;
	if (name && !branchesFor(parent).includes(name)) {
		const members = def.steps.filter((s) => s.parent_id === parentId && s.branch === name).map((s) => s.id);
		for (const id of members) def = removeStep(def, id);
	}
	return def;
}

/** A free case name: "case_1", "case_2", … */
export function newCaseName(step) {
	const taken = new Set(branchesFor(step));
	let n = 1;
	while (taken.has(`case_${n}`)) n += 1;
	return `case_${n}`;
}

/** Ids of the steps inside `id`'s branch `branch` (its members and everything nested in them). */
export function branchBody(definition, id, branch) {
	const inside = new Set(
		definition.steps.filter((s) => s.parent_id === id && (!branch || s.branch === branch)).map((s) => s.id)
	);
	let grew = true;
	while (grew) {
		grew = false;
		for (const s of definition.steps) {
			if (!inside.has(s.id) && s.parent_id && inside.has(s.parent_id)) {
				inside.add(s.id);
				grew = true;
			}
		}
	}
	return definition.steps.filter((s) => inside.has(s.id)).map((s) => s.id);
}

/** A short text for a for_each's items: the template, or "Task where {...}" for documents. */
export function describeItems(items) {
	if (items === undefined || items === null || items === "") return "";
	if (typeof items === "string") return items;
	if (typeof items === "object" && !Array.isArray(items) && items.doctype) {
		const filters = items.filters && Object.keys(items.filters).length ? ` where ${JSON.stringify(items.filters)}` : "";
		return `${items.doctype}${filters}`;
	}
	return JSON.stringify(items);
}

export const FRAME_PAD = 18;
export const FRAME_HEAD = 30;

/**
 * Frames to draw around the bodies of for_each steps: [{id, step_id, x, y, width, height, label}] from
 * the node positions. A body without steps gets an empty frame under its loop.
 */
export function loopFrames(definition, positions) {
	const frames = [];
	for (const step of definition.steps) {
		if (step.kind !== "for_each") continue;
		const at = positions[step.id];
		if (!at) continue;
		const body = branchBody(definition, step.id, "each").filter((id) => positions[id]);
		let box;
		if (body.length) {
			const xs = body.map((id) => positions[id].x);
			const ys = body.map((id) => positions[id].y);
			box = {
				x: Math.min(...xs) - FRAME_PAD,
				y: Math.min(...ys) - FRAME_HEAD,
				right: Math.max(...xs) + NODE_WIDTH + FRAME_PAD,
				bottom: Math.max(...ys) + NODE_HEIGHT + FRAME_PAD,
			};
		} else {
			const y = at.y + NODE_HEIGHT + GAP_Y - FRAME_HEAD;
			box = { x: at.x - FRAME_PAD, y, right: at.x + NODE_WIDTH + FRAME_PAD, bottom: y + FRAME_HEAD + 40 };
		}
		const items = describeItems((step.payload || {}).items);
		frames.push({
			id: `loop:${step.id}`,
			step_id: step.id,
			x: box.x,
			y: box.y,
			width: box.right - box.x,
			height: box.bottom - box.y,
			label: items ? `for each ${items}` : "for each item",
			body,
		});
	}
	return frames;
}

/** Saved positions where present; the automatic layout for steps without one. */
export function positionsFor(definition, layout, kinds = null) {
	const saved = (layout && layout.positions) || layout || {};
	const auto = autoLayout(definition, kinds);
	const out = {};
	const anySaved = definition.steps.some((s) => saved[s.id]);
	for (const step of definition.steps) {
		if (saved[step.id] && Number.isFinite(saved[step.id].x)) {
			out[step.id] = { x: saved[step.id].x, y: saved[step.id].y };
		} else if (anySaved) {
			// a new step: below its lowest predecessor (or below everything)
			const preds = layoutPredecessors(definition, step).filter((p) => out[p] || saved[p]);
			const below = preds.map((p) => out[p] || saved[p]);
			const maxY = Math.max(0, ...Object.values(out).map((p) => p.y), ...below.map((p) => p.y));
			let x = below.length ? below.reduce((s, p) => s + p.x, 0) / below.length : 0;
			const parentAt = step.parent_id && (out[step.parent_id] || saved[step.parent_id]);
			const firstOfBranch = !(step.depends_on || []).some(
				(dep) => stepById(definition, dep)?.parent_id === step.parent_id && stepById(definition, dep)?.branch === step.branch
			);
			if (parentAt && firstOfBranch) {
				// the first step of a branch: under its handle (branches spread left to right)
				const branches = branchesOf(stepById(definition, step.parent_id), kinds);
				const i = Math.max(0, branches.indexOf(step.branch));
				x = parentAt.x + (i - (branches.length - 1) / 2) * (NODE_WIDTH + GAP_X);
			}
			const y = (below.length ? Math.max(...below.map((p) => p.y)) : maxY) + NODE_HEIGHT + GAP_Y;
			// never on top of a placed node: step right until free
			const placed = definition.steps
				.filter((o) => o.id !== step.id)
				.map((o) => out[o.id] || (saved[o.id] && Number.isFinite(saved[o.id].x) ? saved[o.id] : null))
				.filter(Boolean);
			const taken = () => placed.some((p) => Math.abs(p.x - x) < NODE_WIDTH && Math.abs(p.y - y) < NODE_HEIGHT);
			for (let guard = 0; guard < 50 && taken(); guard++) x += NODE_WIDTH + GAP_X;
			out[step.id] = { x: Math.round(x), y };
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
		key = key.replace(/\[\d+\]$/, ""); // payload.cases[1].name → cases
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
	const loop = stepId ? enclosingLoop(definition, stepId) : null;
	if (loop) {
		add("item", `Item of ${loop}`, "Loop item");
		add("item_index", "Item index (0, 1, …)", "Loop item");
	}
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
			switch: ["branch"],
			inclusive: ["branches"],
			for_each: ["count", "results", "failed"],
			call_flow: ["run", "status", "variables"],
			wait_for: ["branch", "doctype", "name"],
			approval: ["branch", "decided_by", "comment"],
			webhook: ["status_code", "body"],
			assign: ["assigned"],
			update_doc: ["name"],
		}[kind] || []
	);
}

/** The for_each whose body holds `stepId` (the nearest), or null. */
export function enclosingLoop(definition, stepId) {
	let step = stepById(definition, stepId);
	const seen = new Set();
	while (step && step.parent_id && !seen.has(step.id)) {
		seen.add(step.id);
		const parent = stepById(definition, step.parent_id);
		if (parent && parent.kind === "for_each" && step.branch === "each") return parent.id;
		step = parent;
	}
	return null;
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

/** Branches a step took, from its (run or dry-run) result: `branch`, or an inclusive's `branches`. */
export function takenBranches(result) {
	if (!result || typeof result !== "object") return [];
	if (Array.isArray(result.branches)) return result.branches.filter((b) => typeof b === "string");
	return typeof result.branch === "string" && result.branch ? [result.branch] : [];
}

/**
 * What the nodes show of a test run, indexed once for the whole graph: step id → its first row with its
 * order ({order, ...row}), or {per_item: n} for a loop body's step walked n times inside its for_each's
 * rows. A step absent from the map was never reached.
 */
export function dryRunIndex(result) {
	const index = new Map();
	const rows = (result && result.steps) || [];
	rows.forEach((row, i) => {
		if (!index.has(row.step_id)) index.set(row.step_id, { order: i + 1, ...row });
	});
	const times = new Map();
	for (const row of rows) {
		if (!Array.isArray(row.each)) continue;
		for (const sub of row.each) {
			if (sub.action !== "skip") times.set(sub.step_id, (times.get(sub.step_id) || 0) + 1);
		}
	}
	for (const [id, n] of times) if (!index.has(id)) index.set(id, { per_item: n });
	return index;
}

/** Dry-run rows grouped by wave: [{wave, rows: [{...row, order}]}] in wave order. */
export function dryRunWaves(result) {
	const waves = new Map();
	((result && result.steps) || []).forEach((row, i) => {
		const wave = row.wave ?? 0;
		if (!waves.has(wave)) waves.set(wave, []);
		waves.get(wave).push({ ...row, order: i + 1 });
	});
	return [...waves.entries()].sort((a, b) => a[0] - b[0]).map(([wave, rows]) => ({ wave, rows }));
}

/**
 * A for_each's expansion in a dry-run row: {count, items: [{index, rows}]} from the engine's `each` (the
 * body's rows, each with its item_index) and `items` (how many items; null for documents not counted),
 * or null when the row is no loop.
 */
export function dryRunItems(row) {
	if (!row || !Array.isArray(row.each)) return null;
	const byIndex = new Map();
	for (const sub of row.each) {
		const index = sub.item_index ?? 0;
		if (!byIndex.has(index)) byIndex.set(index, []);
		byIndex.get(index).push(sub);
	}
	const items = [...byIndex.entries()].sort((a, b) => a[0] - b[0]).map(([index, rows]) => ({ index, rows }));
	const count = Number.isFinite(row.items) ? row.items : Array.isArray(row.items) ? row.items.length : null;
	return { count, items };
}

/** Why a parked step waits, for people: state.waiting_for (+ details) → text. */
export function waitingReason(state) {
	if (!state || !state.waiting_for) return "";
	const w = state.waiting_for;
	const text = {
		manual: "waits for a user to complete it",
		on_webhook: "waits for its webhook callback",
		event: "waits for an event",
		approval: "waits for an approval",
		child_run: "waits for its child run",
		items: "waits for its items",
	}[w];
	return text || `waits for ${w}`;
}

/**
 * Child runs of a step from the run data (get_run's `children` / `child_runs`, each {name, status,
 * parent_step, item_index, …}), in item order; with a summary {total, completed, failed, running}.
 */
export function childRunsOf(run, stepId) {
	const all = (run && (run.children || run.child_runs)) || [];
	const rows = all
		.filter((c) => c && (!stepId || c.parent_step === stepId))
		.slice()
		.sort((a, b) => (a.item_index ?? 0) - (b.item_index ?? 0));
	const count = (statuses) => rows.filter((r) => statuses.includes(r.status)).length;
	return {
		rows,
		total: rows.length,
		completed: count(["completed"]),
		failed: count(["failed", "cancelled"]),
		running: count(["queued", "running", "waiting"]),
	};
}
