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
