// Unit tests of the Flow Editor's pure graph logic: `node --test tests/js/` (no npm install needed).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
	addStep,
	autoLayout,
	branchTail,
	connect,
	conditionToRows,
	describeTrigger,
	disconnect,
	duplicateStep,
	edgesOf,
	exportDefinition,
	fieldErrors,
	groupErrors,
	History,
	insertAt,
	moveStep,
	NODE_WIDTH,
	normalise,
	parkedSteps,
	parseImport,
	positionsFor,
	removeCase,
	removeStep,
	renameStep,
	rowsToCondition,
	stepById,
	stepTrigger,
	variablePaths,
	wouldCycle,
} from "../../flow_engine/public/js/flow_editor/graph.js";

const chain = () =>
	normalise({
		version: 1,
		steps: [
			{ id: "a", kind: "comment", payload: { text: "a" } },
			{ id: "b", kind: "comment", depends_on: ["a"] },
			{ id: "c", kind: "comment", depends_on: ["b"] },
			{ id: "d", kind: "comment", depends_on: ["c"] },
		],
	});

const branching = () =>
	normalise({
		version: 1,
		steps: [
			{ id: "start", kind: "comment" },
			{ id: "check", kind: "condition", depends_on: ["start"], payload: { condition: { field: "x", op: "==", value: 1 } } },
			{ id: "y1", kind: "notify", parent_id: "check", branch: "yes" },
			{ id: "y2", kind: "comment", parent_id: "check", branch: "yes", depends_on: ["y1"] },
			{ id: "n1", kind: "comment", parent_id: "check", branch: "no" },
			{ id: "join", kind: "comment", depends_on: ["y2", "n1"] },
		],
	});

const deps = (def, id) => stepById(def, id).depends_on;

test("normalise fills depends_on, parent_id, branch and payload without mutating the input", () => {
	const raw = { steps: [{ id: "a", kind: "wait", depends_on: "x" }] };
	const def = normalise(raw);
	assert.deepEqual(def.steps[0].depends_on, ["x"]);
	assert.equal(def.steps[0].parent_id, null);
	assert.deepEqual(def.steps[0].payload, {});
	assert.equal(raw.steps[0].depends_on, "x");
	assert.equal(def.version, 1);
});

test("edges: depends_on edges and labelled branch edges to the first step of each branch", () => {
	const edges = edgesOf(branching());
	const byId = Object.fromEntries(edges.map((e) => [e.id, e]));
	assert.equal(byId["b:check>y1"].label, "yes");
	assert.equal(byId["b:check>n1"].label, "no");
	assert.equal(byId["b:check>y1"].type, "branch");
	assert.ok(byId["d:y1>y2"], "chain inside a branch is a plain dependency edge");
	assert.ok(!byId["b:check>y2"], "no branch edge to a later step of the branch");
	assert.ok(byId["d:start>check"] && byId["d:y2>join"] && byId["d:n1>join"]);
	assert.equal(edges.length, 6);
});

test("edges: a step depending on its own branching parent is drawn once, as the branch edge", () => {
	const def = normalise({
		steps: [
			{ id: "c", kind: "condition" },
			{ id: "x", kind: "comment", parent_id: "c", branch: "no", depends_on: ["c"] },
		],
	});
	assert.deepEqual(edgesOf(def).map((e) => e.id), ["b:c>x"]);
});

test("auto layout is top-down by rank, yes branch left of no branch, no overlaps", () => {
	const pos = autoLayout(branching());
	assert.ok(pos.start.y < pos.check.y && pos.check.y < pos.y1.y && pos.y1.y < pos.y2.y);
	assert.ok(pos.y2.y < pos.join.y && pos.n1.y === pos.y1.y);
	assert.ok(pos.y1.x < pos.n1.x, "yes is left of no");
	const rows = {};
	for (const [id, p] of Object.entries(pos)) (rows[p.y] = rows[p.y] || []).push(p.x);
	for (const xs of Object.values(rows)) {
		xs.sort((a, b) => a - b);
		for (let i = 1; i < xs.length; i++) assert.ok(xs[i] - xs[i - 1] >= NODE_WIDTH, "nodes overlap");
	}
});

test("auto layout survives a cycle and dangling references", () => {
	const def = normalise({
		steps: [
			{ id: "a", kind: "wait", depends_on: ["b"] },
			{ id: "b", kind: "wait", depends_on: ["a", "ghost"] },
		],
	});
	const pos = autoLayout(def);
	assert.ok(Number.isFinite(pos.a.x) && Number.isFinite(pos.b.y));
});

test("positionsFor keeps saved positions and places new steps below their predecessor", () => {
	const def = chain();
	const pos = positionsFor(def, { positions: { a: { x: 500, y: 10 }, b: { x: 500, y: 200 }, c: { x: 480, y: 330 } } });
	assert.deepEqual(pos.a, { x: 500, y: 10 });
	assert.equal(pos.d.x, 480);
	assert.ok(pos.d.y > 330);
	const fresh = positionsFor(def, null);
	assert.deepEqual(fresh, autoLayout(def));
});

test("addStep after a step; with insert it splices into the chain", () => {
	let { definition, id } = addStep(chain(), "notify", { after: "b", insert: true });
	assert.equal(id, "notify_1");
	assert.deepEqual(deps(definition, "notify_1"), ["b"]);
	assert.deepEqual(deps(definition, "c"), ["notify_1"]);
	assert.deepEqual(definition.steps.map((s) => s.id), ["a", "b", "notify_1", "c", "d"]);
	({ definition } = addStep(chain(), "notify", { after: "b" }));
	assert.deepEqual(deps(definition, "c"), ["b"], "without insert it runs in parallel");
});

test("addStep inside a condition's branch appends to the end of that branch", () => {
	let { definition, id } = addStep(branching(), "wait", { parent_id: "check", branch: "yes" });
	const step = stepById(definition, id);
	assert.equal(step.parent_id, "check");
	assert.equal(step.branch, "yes");
	assert.deepEqual(step.depends_on, ["y2"]);
	({ definition, id } = addStep(normalise({ steps: [{ id: "c", kind: "condition" }] }), "comment", {
		parent_id: "c",
		branch: "no",
	}));
	assert.deepEqual(stepById(definition, id).depends_on, []);
	assert.equal(branchTail(definition, "c", "no"), id);
	assert.equal(branchTail(definition, "c", "yes"), null);
});

test("addStep gives unique ids and keeps the input unchanged", () => {
	const start = chain();
	const before = JSON.stringify(start);
	let def = start;
	const ids = [];
	for (let i = 0; i < 3; i++) {
		const r = addStep(def, "wait");
		def = r.definition;
		ids.push(r.id);
	}
	assert.deepEqual(ids, ["wait_1", "wait_2", "wait_3"]);
	assert.equal(JSON.stringify(start), before);
});

test("moveStep up swaps with its predecessor and rewrites depends_on", () => {
	const { definition, error } = moveStep(chain(), "c", -1);
	assert.equal(error, null);
	assert.deepEqual(deps(definition, "c"), ["a"]);
	assert.deepEqual(deps(definition, "b"), ["c"]);
	assert.deepEqual(deps(definition, "d"), ["b"]);
	assert.deepEqual(definition.steps.map((s) => s.id), ["a", "c", "b", "d"]);
});

test("moveStep down is the follower moving up; first step moves down keeping the start trigger", () => {
	const def = chain();
	stepById(def, "a").trigger = { type: "on_flow_start" };
	const { definition, error } = moveStep(def, "a", 1);
	assert.equal(error, null);
	assert.deepEqual(deps(definition, "b"), []);
	assert.deepEqual(deps(definition, "a"), ["b"]);
	assert.deepEqual(deps(definition, "c"), ["a"]);
	assert.equal(stepById(definition, "b").trigger.type, "on_flow_start");
	assert.equal(stepById(definition, "a").trigger, undefined);
	// up then down is the identity on depends_on
	const back = moveStep(moveStep(chain(), "c", -1).definition, "c", 1).definition;
	assert.deepEqual(back.steps.map((s) => [s.id, s.depends_on]).sort(), chain().steps.map((s) => [s.id, s.depends_on]).sort());
});

test("moveStep refuses to break DAG parts and branch boundaries", () => {
	const def = branching();
	assert.match(moveStep(def, "join", -1).error, /single step/);
	assert.match(moveStep(def, "y1", -1).error, /single step|first step/);
	assert.match(moveStep(def, "check", 1).error, /single step/);
	assert.equal(moveStep(def, "y2", -1).error, null, "inside a branch the chain moves");
	const moved = moveStep(def, "y2", -1).definition;
	assert.deepEqual(deps(moved, "y2"), []);
	assert.deepEqual(deps(moved, "y1"), ["y2"]);
	assert.deepEqual(deps(moved, "join"), ["y1", "n1"]);
	assert.equal(stepById(moved, "y2").parent_id, "check");
	const fork = normalise({
		steps: [
			{ id: "a", kind: "wait" },
			{ id: "b", kind: "wait", depends_on: ["a"] },
			{ id: "c", kind: "wait", depends_on: ["a"] },
		],
	});
	assert.match(moveStep(fork, "b", -1).error, /several/);
});

test("removeStep rewires dependents to its predecessors and removes branch contents", () => {
	let def = removeStep(chain(), "b");
	assert.deepEqual(deps(def, "c"), ["a"]);
	assert.equal(def.steps.length, 3);
	def = removeStep(branching(), "check");
	assert.deepEqual(def.steps.map((s) => s.id), ["start", "join"]);
	assert.deepEqual(deps(def, "join"), ["start"]);
	def = removeStep(branching(), "y1");
	assert.deepEqual(deps(def, "y2"), [], "y2 becomes the first step of the yes branch");
	assert.equal(edgesOf(def).find((e) => e.target === "y2").label, "yes");
});

test("duplicateStep makes a parallel copy with a new id", () => {
	const { definition, id } = duplicateStep(chain(), "b");
	const copy = stepById(definition, id);
	assert.equal(id, "comment_1");
	assert.deepEqual(copy.depends_on, ["a"]);
	assert.equal(definition.steps[2].id, id);
	copy.payload.x = 1;
	assert.equal(stepById(definition, "b").payload.x, undefined, "deep copy");
});

test("connect adds a dependency or moves into a branch; cycles are refused; disconnect undoes", () => {
	let { definition, error } = connect(chain(), "a", "d");
	assert.equal(error, null);
	assert.deepEqual(deps(definition, "d"), ["c", "a"]);
	assert.match(connect(chain(), "d", "a").error, /cycle/);
	assert.ok(wouldCycle(chain(), "c", "a"));
	assert.ok(!wouldCycle(chain(), "a", "c"));
	definition = disconnect(definition, "a", "d");
	assert.deepEqual(deps(definition, "d"), ["c"]);
	({ definition, error } = connect(branching(), "check", "join", "no"));
	assert.equal(stepById(definition, "join").parent_id, "check");
	assert.equal(stepById(definition, "join").branch, "no");
	definition = disconnect(definition, "check", "join");
	assert.equal(stepById(definition, "join").parent_id, null);
});

test("renameStep rewrites depends_on, parent_id and templates", () => {
	const def = branching();
	stepById(def, "join").payload = { text: "{{steps.check.result.branch}}" };
	const { definition, error } = renameStep(def, "check", "is_big");
	assert.equal(error, null);
	assert.deepEqual(deps(definition, "y1"), []);
	assert.equal(stepById(definition, "y1").parent_id, "is_big");
	assert.equal(stepById(definition, "join").payload.text, "{{steps.is_big.result.branch}}");
	assert.match(renameStep(def, "check", "start").error, /exists/);
	assert.match(renameStep(def, "check", "bad id").error, /letters/);
});

test("History: undo, redo, branch off, limit", () => {
	const h = new History(3);
	h.reset({ n: 0 });
	assert.equal(h.canUndo, false);
	h.push({ n: 1 });
	h.push({ n: 2 });
	assert.equal(h.push({ n: 2 }), false, "identical states are not pushed");
	assert.deepEqual(h.undo(), { n: 1 });
	assert.deepEqual(h.redo(), { n: 2 });
	assert.equal(h.redo(), null);
	h.undo();
	h.push({ n: 9 });
	assert.equal(h.canRedo, false, "a new edit drops the redo stack");
	h.push({ n: 10 });
	assert.equal(h.stack.length, 3);
	assert.deepEqual(h.undo(), { n: 9 });
	assert.deepEqual(h.undo(), { n: 1 });
	assert.equal(h.undo(), null);
});

test("errors are grouped by step and by editor field", () => {
	const errors = [
		{ step_id: "s1", field: "payload.fields", message: "'Field values' is required" },
		{ step_id: "s1", field: "trigger.delay_minutes", message: "must not be negative" },
		{ step_id: "s2", field: "depends_on", message: "dangling" },
		{ step_id: null, field: "trigger.doctype", message: "required" },
	];
	const grouped = groupErrors(errors);
	assert.equal(grouped.steps.s1.length, 2);
	assert.equal(grouped.general.length, 1);
	assert.deepEqual(fieldErrors(errors, "s1"), {
		fields: ["'Field values' is required"],
		trigger: ["must not be negative"],
	});
});

test("condition builder round-trips flat groups and refuses nested ones", () => {
	assert.deepEqual(conditionToRows({}), { match: "all", rows: [] });
	assert.deepEqual(conditionToRows({ field: "doc.status", op: "==", value: "Open" }), {
		match: "all",
		rows: [{ field: "doc.status", op: "==", value: "Open" }],
	});
	const any = { any: [{ field: "a", op: "in", value: ["x", "y"] }, { field: "b", op: "empty" }] };
	const model = conditionToRows(any);
	assert.equal(model.match, "any");
	assert.equal(model.rows[0].value, "x, y");
	assert.deepEqual(rowsToCondition(model), any);
	assert.equal(conditionToRows({ all: [{ any: [] }] }), null);
	assert.equal(conditionToRows({ and: [{ "==": [1, 1] }] }), null, "JSONLogic is edited as JSON");
	assert.deepEqual(rowsToCondition({ match: "all", rows: [{ field: "", op: "==", value: 1 }] }), {});
	assert.deepEqual(rowsToCondition({ match: "all", rows: [{ field: "x", op: "not_empty", value: "ignored" }] }), {
		field: "x",
		op: "not_empty",
	});
});

test("variable picker lists doc fields, variables, earlier steps only, and now", () => {
	const def = branching();
	def.variables = { team: "L1" };
	stepById(def, "start").kind = "set_variables";
	stepById(def, "start").payload = { variables: { owner_mail: "{{doc.owner}}" } };
	const paths = variablePaths(def, "y2", [{ fieldname: "status", label: "Status" }]).map((p) => p.path);
	for (const p of ["doc.status", "doc.name", "variables.team", "variables.owner_mail", "steps.check.result.branch", "steps.y1.result", "now"]) {
		assert.ok(paths.includes(p), p);
	}
	assert.ok(!paths.includes("steps.n1.result"), "other branch is not earlier");
	assert.ok(!paths.includes("steps.join.result"), "later steps are not offered");
});

test("insertAt puts a placeholder at the cursor", () => {
	assert.deepEqual(insertAt("Hi !", 3, 3, "doc.name"), { text: "Hi {{doc.name}}!", cursor: 15 });
	assert.equal(insertAt("abc", 0, 3, "now").text, "{{now}}");
	assert.equal(insertAt(null, undefined, undefined, "now").text, "{{now}}");
});

test("step triggers: defaults and descriptions", () => {
	assert.equal(stepTrigger({ depends_on: [] }).type, "on_flow_start");
	assert.equal(stepTrigger({ depends_on: ["a"] }).type, "on_prev_complete");
	assert.equal(stepTrigger({ parent_id: "c" }).type, "on_prev_complete");
	assert.equal(describeTrigger({ type: "after_delay", delay_minutes: 5, delay_hours: 0 }), "after 5 minutes");
	assert.equal(describeTrigger({ type: "manual" }), "waits for a user");
});

test("import/export round-trip; template exports and step lists are accepted", () => {
	const text = exportDefinition(branching());
	const back = parseImport(text);
	assert.deepEqual(back, branching());
	assert.ok(!JSON.parse(text).steps[0].parent_id, "empty parent_id is not exported");
	assert.equal(parseImport({ flow_definition: text }).steps.length, 6);
	assert.equal(parseImport([{ id: "a", kind: "wait" }]).steps.length, 1);
	assert.throws(() => parseImport('{"nope": 1}'), /steps/);
	assert.throws(() => parseImport("{not json"));
});

test("run view: parked manual steps can be completed", () => {
	const def = normalise({
		steps: [
			{ id: "a", kind: "wait", trigger: { type: "manual" } },
			{ id: "b", kind: "wait", trigger: { type: "after_delay", delay_minutes: 1 } },
		],
	});
	assert.deepEqual(parkedSteps(def, { a: { status: "waiting" }, b: { status: "scheduled" } }), ["a"]);
});

// ------------------------------------------------------------------ #14: richer flows

import {
	addBranch,
	branchBody,
	branchesFor,
	childRunsOf,
	describeItems,
	dryRunItems,
	dryRunWaves,
	enclosingLoop,
	entryErrors,
	inputCount,
	isMerge,
	joinOf,
	loopFrames,
	newCaseName,
	ranks,
	renameBranch,
	setJoin,
	setOnError,
	takenBranches,
	waitingReason,
} from "../../flow_engine/public/js/flow_editor/graph.js";

const switchStep = (extra = {}) => ({
	id: "sw",
	kind: "switch",
	payload: {
		cases: [
			{ name: "big", condition: { field: "doc.grand_total", op: ">", value: 1000 } },
			{ name: "medium", condition: {} },
			{ name: "small", condition: {} },
		],
		default: "default",
	},
	...extra,
});

test("branchesFor mirrors catalog.branches_for: static, switch cases + default, inclusive names, error", () => {
	assert.deepEqual(branchesFor({ id: "c", kind: "condition" }, { branches: ["yes", "no"] }), ["yes", "no"]);
	assert.deepEqual(branchesFor({ id: "c", kind: "condition" }), ["yes", "no"], "built-in without a catalog");
	assert.deepEqual(branchesFor(switchStep(), { branches: [] }), ["big", "medium", "small", "default"]);
	assert.deepEqual(branchesFor({ id: "s", kind: "switch", payload: {} }), ["default"]);
	assert.deepEqual(
		branchesFor({ id: "i", kind: "inclusive", payload: { branches: [{ name: "email" }, { name: "sms" }] } }),
		["email", "sms"]
	);
	assert.deepEqual(branchesFor({ id: "a", kind: "approval" }, { branches: ["approved", "rejected", "timed_out"] }), [
		"approved",
		"rejected",
		"timed_out",
	]);
	assert.deepEqual(branchesFor({ id: "w", kind: "wait_for" }), ["event", "timeout"]);
	assert.deepEqual(branchesFor({ id: "f", kind: "for_each" }), ["each"]);
	assert.deepEqual(branchesFor({ id: "n", kind: "notify" }, { branches: [] }), []);
	assert.deepEqual(branchesFor({ id: "n", kind: "notify", on_error: "branch" }, { branches: [] }), ["error"]);
	assert.deepEqual(branchesFor(switchStep({ on_error: "branch" })), ["big", "medium", "small", "default", "error"]);
	assert.deepEqual(branchesFor({ id: "n", kind: "notify", on_error: "continue" }), []);
	// a case named like the default is listed once; blank names and non-objects are ignored
	assert.deepEqual(
		branchesFor({ id: "s", kind: "switch", payload: { cases: [{ name: "default" }, { name: " " }, "x", { name: "y" }] } }),
		["default", "y"]
	);
	// the default branch may have its own name
	assert.deepEqual(branchesFor({ id: "s", kind: "switch", payload: { cases: [{ name: "a" }], default: "other" } }), [
		"a",
		"other",
	]);
});

test("a palette add after a for_each goes into its loop, never into an error branch", () => {
	assert.equal(addBranch({ id: "f", kind: "for_each", on_error: "branch" }), "each");
	assert.equal(addBranch(switchStep()), "big");
	assert.equal(addBranch({ id: "n", kind: "notify", on_error: "branch" }), null);
	assert.equal(addBranch({ id: "n", kind: "notify" }), null);
});

test("the auto layout spreads a switch's four branches side by side without overlap", () => {
	const def = normalise({
		steps: [
			switchStep(),
			{ id: "b", kind: "comment", parent_id: "sw", branch: "big" },
			{ id: "m", kind: "comment", parent_id: "sw", branch: "medium" },
			{ id: "s", kind: "comment", parent_id: "sw", branch: "small" },
			{ id: "d", kind: "comment", parent_id: "sw", branch: "default" },
		],
	});
	const pos = autoLayout(def, { switch: { branches: [] } });
	const xs = ["b", "m", "s", "d"].map((id) => pos[id].x);
	assert.deepEqual([...xs].sort((a, b) => a - b), xs, "in case order, left to right");
	for (let i = 1; i < xs.length; i++) assert.ok(xs[i] - xs[i - 1] >= NODE_WIDTH, "no overlap");
	assert.equal(new Set(["b", "m", "s", "d"].map((id) => pos[id].y)).size, 1, "one row");
	// centred under the switch
	const mid = (xs[0] + xs[3]) / 2;
	assert.ok(Math.abs(mid - pos.sw.x) <= 1, `centred: ${mid} vs ${pos.sw.x}`);
});

test("join and on_error are stored only when not the default", () => {
	let def = normalise({
		steps: [
			{ id: "a", kind: "comment" },
			{ id: "b", kind: "comment" },
			{ id: "j", kind: "comment", depends_on: ["a", "b"] },
		],
	});
	assert.equal(inputCount(stepById(def, "j")), 2);
	assert.equal(inputCount(stepById(def, "a")), 0);
	assert.deepEqual(joinOf(stepById(def, "j")), { mode: "all", n: null });
	def = setJoin(def, "j", "any");
	assert.equal(stepById(def, "j").join, "any");
	def = setJoin(def, "j", "n", "2");
	assert.equal(stepById(def, "j").join, 2);
	assert.deepEqual(joinOf(stepById(def, "j")), { mode: "n", n: 2 });
	def = setJoin(def, "j", "n", "0");
	assert.equal(stepById(def, "j").join, 1, "n is at least 1");
	def = setJoin(def, "j", "all");
	assert.ok(!("join" in stepById(def, "j")));
	def = setOnError(def, "a", "branch");
	assert.equal(stepById(def, "a").on_error, "branch");
	def = setOnError(def, "a", "fail");
	assert.ok(!("on_error" in stepById(def, "a")));
	assert.ok(JSON.parse(exportDefinition(setOnError(def, "b", "continue"))).steps[1].on_error === "continue");
});

test("renaming a case moves the steps of its branch along; duplicates are refused", () => {
	const def = normalise({
		steps: [
			switchStep(),
			{ id: "b", kind: "comment", parent_id: "sw", branch: "big" },
			{ id: "b2", kind: "comment", parent_id: "sw", branch: "big", depends_on: ["b"] },
			{ id: "m", kind: "comment", parent_id: "sw", branch: "medium" },
		],
	});
	const { definition: out, error } = renameBranch(def, "sw", "big", "huge");
	assert.equal(error, null);
	assert.deepEqual(caseNamesOf(out), ["huge", "medium", "small"]);
	assert.equal(stepById(out, "b").branch, "huge");
	assert.equal(stepById(out, "b2").branch, "huge");
	assert.equal(stepById(out, "m").branch, "medium");
	assert.deepEqual(stepById(out, "sw").payload.cases[0].condition, { field: "doc.grand_total", op: ">", value: 1000 });
	assert.match(renameBranch(def, "sw", "big", "medium").error, /already/);
	assert.match(renameBranch(def, "sw", "big", "default").error, /already/);
	assert.equal(stepById(def, "b").branch, "big", "input untouched");
	assert.equal(newCaseName(stepById(def, "sw")), "case_1");
	const d = normalise({ steps: [switchStep(), { id: "x", kind: "comment", parent_id: "sw", branch: "default" }] });
	const renamed = renameBranch(d, "sw", "default", "otherwise").definition;
	assert.equal(stepById(renamed, "sw").payload.default, "otherwise");
	assert.equal(stepById(renamed, "x").branch, "otherwise");
	const inc = normalise({ steps: [{ id: "i", kind: "inclusive", payload: { branches: [{ name: "case_1" }] } }] });
	assert.equal(newCaseName(stepById(inc, "i")), "case_2");
	assert.deepEqual(
		stepById(renameBranch(inc, "i", "case_1", "email").definition, "i").payload.branches,
		[{ name: "email" }]
	);
});

function caseNamesOf(def) {
	return stepById(def, "sw").payload.cases.map((c) => c.name);
}

const loopFlow = () =>
	normalise({
		steps: [
			{ id: "start", kind: "comment" },
			{ id: "loop", kind: "for_each", depends_on: ["start"], payload: { items: "{{doc.items}}" } },
			{ id: "task", kind: "create_doc", parent_id: "loop", branch: "each" },
			{ id: "note", kind: "comment", parent_id: "loop", branch: "each", depends_on: ["task"] },
			{ id: "after", kind: "comment", depends_on: ["loop"] },
		],
	});

test("a step added into a for_each goes into its 'each' body, at the end of it", () => {
	let def = normalise({ steps: [{ id: "loop", kind: "for_each", payload: { items: "{{doc.items}}" } }] });
	let r = addStep(def, "comment", { parent_id: "loop", branch: addBranch(stepById(def, "loop")) });
	def = r.definition;
	assert.equal(stepById(def, r.id).branch, "each");
	r = addStep(def, "notify", { parent_id: "loop", branch: "each" });
	assert.deepEqual(stepById(r.definition, r.id).depends_on, ["comment_1"], "chained in the body");
	assert.deepEqual(branchBody(r.definition, "loop", "each"), ["comment_1", r.id]);
	assert.equal(enclosingLoop(r.definition, r.id), "loop");
	assert.equal(enclosingLoop(r.definition, "loop"), null);
	const paths = variablePaths(r.definition, r.id).map((p) => p.path);
	assert.ok(paths.includes("item") && paths.includes("item_index"), "body templates offer {{item}}");
	assert.ok(!variablePaths(r.definition, "loop").map((p) => p.path).includes("item"));
});

test("the loop frame encloses the body; what follows the loop is laid out below it", () => {
	const def = loopFlow();
	const pos = autoLayout(def);
	const rank = ranks(def);
	assert.ok(rank.after > rank.note, "after the loop comes below its body");
	const [frame] = loopFrames(def, pos);
	assert.equal(frame.step_id, "loop");
	assert.equal(frame.label, "for each {{doc.items}}");
	assert.deepEqual(frame.body, ["task", "note"]);
	for (const id of ["task", "note"]) {
		assert.ok(pos[id].x >= frame.x && pos[id].x + NODE_WIDTH <= frame.x + frame.width, `${id} inside (x)`);
		assert.ok(pos[id].y >= frame.y && pos[id].y + 64 <= frame.y + frame.height, `${id} inside (y)`);
	}
	for (const id of ["loop", "after", "start"]) {
		const inside = pos[id].y >= frame.y && pos[id].y < frame.y + frame.height && pos[id].x + NODE_WIDTH > frame.x && pos[id].x < frame.x + frame.width;
		assert.ok(!inside, `${id} outside the frame`);
	}
	// an empty loop still gets a frame; documents are described
	const empty = normalise({ steps: [{ id: "l", kind: "for_each", payload: { items: { doctype: "Task", filters: { status: "Open" } } } }] });
	const frames = loopFrames(empty, autoLayout(empty));
	assert.equal(frames.length, 1);
	assert.equal(frames[0].label, 'for each Task where {"status":"Open"}');
	assert.equal(describeItems(""), "");
	// removing the loop removes its body, and what followed it stays
	const removed = removeStep(def, "loop");
	assert.deepEqual(removed.steps.map((s) => s.id), ["start", "after"]);
	assert.deepEqual(stepById(removed, "after").depends_on, ["start"]);
});

test("dry-run and run helpers: taken branches, waves, waiting reasons, child runs", () => {
	assert.deepEqual(takenBranches({ branch: "big" }), ["big"]);
	assert.deepEqual(takenBranches({ branches: ["email", "sms"] }), ["email", "sms"]);
	assert.deepEqual(takenBranches({ branches: [] }), []);
	assert.deepEqual(takenBranches(null), []);
	const waves = dryRunWaves({
		steps: [
			{ step_id: "a", wave: 1 },
			{ step_id: "b", wave: 2 },
			{ step_id: "c", wave: 2 },
		],
	});
	assert.deepEqual(
		waves.map((w) => [w.wave, w.rows.map((r) => `${r.step_id}#${r.order}`)]),
		[
			[1, ["a#1"]],
			[2, ["b#2", "c#3"]],
		]
	);
	assert.equal(waitingReason({ status: "waiting", waiting_for: "approval" }), "waits for an approval");
	assert.equal(waitingReason({ status: "waiting", waiting_for: "other" }), "waits for other");
	assert.equal(waitingReason({ status: "completed" }), "");
	const run = {
		children: [
			{ name: "R2", status: "completed", parent_step: "loop", item_index: 1 },
			{ name: "R1", status: "failed", parent_step: "loop", item_index: 0 },
			{ name: "R3", status: "running", parent_step: "loop", item_index: 2 },
			{ name: "C1", status: "completed", parent_step: "call" },
		],
	};
	const loop = childRunsOf(run, "loop");
	assert.deepEqual(loop.rows.map((r) => r.name), ["R1", "R2", "R3"]);
	assert.deepEqual([loop.total, loop.completed, loop.failed, loop.running], [3, 1, 1, 1]);
	assert.equal(childRunsOf({ child_runs: run.children }, "call").total, 1);
	assert.equal(childRunsOf({}, "loop").total, 0, "no child runs in the data: nothing to show");
});

test("steps added to a saved layout go under their branch handle and never on top of a node", () => {
	const def = normalise({
		steps: [
			switchStep(),
			{ id: "b", kind: "comment", parent_id: "sw", branch: "big" },
			{ id: "d", kind: "comment", parent_id: "sw", branch: "default" },
			{ id: "m", kind: "comment", parent_id: "sw", branch: "medium" },
		],
	});
	const saved = { sw: { x: 0, y: 0 }, b: { x: -432, y: 120 } };
	const pos = positionsFor(def, { positions: saved });
	assert.deepEqual(pos.b, { x: -432, y: 120 }, "saved positions kept");
	assert.ok(pos.d.x > pos.m.x, "default is right of medium");
	const ids = Object.keys(pos);
	for (const a of ids)
		for (const b of ids)
			if (a < b) {
				const overlap = Math.abs(pos[a].x - pos[b].x) < NODE_WIDTH && Math.abs(pos[a].y - pos[b].y) < 64;
				assert.ok(!overlap, `${a} and ${b} overlap`);
			}
});

test("errors on a case land on that case; the field key drops the index", () => {
	const errors = [
		{ step_id: "sw", field: "payload.cases[1].name", message: "needs a name" },
		{ step_id: "sw", field: "payload.cases[1].condition.field", message: "is required" },
		{ step_id: "sw", field: "payload.cases", message: "is required" },
		{ step_id: "sw", field: "join", message: "bad" },
		{ step_id: "other", field: "payload.cases[0].name", message: "x" },
	];
	assert.deepEqual(entryErrors(errors, "sw", "cases"), { 1: ["name: needs a name", "condition.field: is required"] });
	const keyed = fieldErrors(errors, "sw");
	assert.equal(keyed.cases.length, 3);
	assert.deepEqual(keyed.join, ["bad"]);
});

test("a step added after a loop in a saved layout goes below the loop's body", () => {
	const def = loopFlow();
	const saved = autoLayout(normalise({ steps: def.steps.filter((s) => s.id !== "after") }));
	const pos = positionsFor(def, { positions: saved });
	assert.ok(pos.after.y > pos.note.y, `after (${pos.after.y}) below the body (${pos.note.y})`);
	const [frame] = loopFrames(def, pos);
	assert.ok(pos.after.y >= frame.y + frame.height, "outside the frame");
});

test("a dry run's for_each rows are grouped per item", () => {
	const row = {
		step_id: "loop",
		items: 3,
		each: [
			{ step_id: "a", item_index: 0 },
			{ step_id: "b", item_index: 0 },
			{ step_id: "a", item_index: 1 },
			{ step_id: "a", item_index: 2 },
		],
	};
	const out = dryRunItems(row);
	assert.equal(out.count, 3);
	assert.deepEqual(out.items.map((i) => [i.index, i.rows.map((r) => r.step_id)]), [
		[0, ["a", "b"]],
		[1, ["a"]],
		[2, ["a"]],
	]);
	assert.deepEqual(dryRunItems({ items: null, each: [] }), { count: null, items: [] });
	assert.equal(dryRunItems({ step_id: "x" }), null);
});

test("a join setting is offered where paths merge, not on a chain inside a branch", () => {
	const def = normalise({
		steps: [
			{ id: "a", kind: "comment" },
			{ id: "b", kind: "comment" },
			{ id: "m", kind: "comment", depends_on: ["a", "b"] },
			{ id: "c", kind: "condition" },
			{ id: "y1", kind: "comment", parent_id: "c", branch: "yes" },
			{ id: "y2", kind: "comment", parent_id: "c", branch: "yes", depends_on: ["y1"] },
			{ id: "y3", kind: "comment", parent_id: "c", branch: "yes", depends_on: ["a"] },
		],
	});
	const merge = (id) => isMerge(def, stepById(def, id));
	assert.equal(merge("m"), true);
	assert.equal(merge("a"), false);
	assert.equal(merge("y1"), false, "first step of a branch: its parent only");
	assert.equal(merge("y2"), false, "a chain in the branch");
	assert.equal(inputCount(stepById(def, "y2")), 2, "(the engine still counts both)");
	assert.equal(merge("y3"), true, "parent + a step from outside the branch");
});

test("removing a case removes the steps of its branch, and only those", () => {
	const def = normalise({
		steps: [
			switchStep(),
			{ id: "b", kind: "comment", parent_id: "sw", branch: "big" },
			{ id: "b2", kind: "condition", parent_id: "sw", branch: "big", depends_on: ["b"] },
			{ id: "b3", kind: "comment", parent_id: "b2", branch: "yes" },
			{ id: "m", kind: "comment", parent_id: "sw", branch: "medium" },
			{ id: "after", kind: "comment", depends_on: ["sw"] },
		],
	});
	const out = removeCase(def, "sw", 0);
	assert.deepEqual(stepById(out, "sw").payload.cases.map((c) => c.name), ["medium", "small"]);
	assert.deepEqual(out.steps.map((s) => s.id), ["sw", "m", "after"]);
	assert.equal(def.steps.length, 6, "input untouched");
	// a duplicate name stays a branch: its steps stay
	const dup = normalise({
		steps: [
			{ id: "i", kind: "inclusive", payload: { branches: [{ name: "x" }, { name: "x" }] } },
			{ id: "s", kind: "comment", parent_id: "i", branch: "x" },
		],
	});
	assert.deepEqual(removeCase(dup, "i", 1).steps.map((s) => s.id), ["i", "s"]);
});

// ------------------------------------------------------------------ #16: the editor at scale

import { dryRunIndex } from "../../flow_engine/public/js/flow_editor/graph.js";

test("dryRunIndex: each step's first row with its order, loop body steps counted per item, once for the graph", () => {
	const index = dryRunIndex({
		steps: [
			{ step_id: "a", action: "run", wave: 1 },
			{
				step_id: "loop",
				action: "run",
				wave: 2,
				each: [
					{ step_id: "body", action: "run" },
					{ step_id: "body", action: "run" },
					{ step_id: "skipped", action: "skip" },
				],
			},
			{ step_id: "a", action: "run", wave: 3 }, // a second row of the same step: the first one counts
			{ step_id: "no", action: "skip", wave: 3 },
		],
	});
	assert.deepEqual(index.get("a"), { order: 1, step_id: "a", action: "run", wave: 1 });
	assert.equal(index.get("loop").order, 2);
	assert.deepEqual(index.get("body"), { per_item: 2 });
	assert.equal(index.get("no").order, 4, "a skipped step has its row and order");
	assert.equal(index.has("skipped"), false, "only skipped inside the loop: never reached");
	assert.equal(index.has("elsewhere"), false);
	assert.equal(dryRunIndex(null).size, 0);
	// 200 steps index in one pass
	const big = dryRunIndex({ steps: Array.from({ length: 200 }, (_, i) => ({ step_id: `s${i}`, action: "run" })) });
	assert.equal(big.get("s199").order, 200);
});
