// Browser tier for issue #14's editor: a for_each with a step added into its loop, an approval after the
// loop and a switch with three cases (four branch handles), built through the UI, saved as a draft and
// published with the Publish button; the stored definition is checked field by field.
//
//   FLOW_BROWSER_URL=http://SITE:PORT FLOW_BROWSER_SITE=SITE FLOW_BROWSER_WORKER=0 node --test browser/richer.test.mjs
//
// Needs no worker: the flow built in the editor stays inactive (its test run is a dry run), and the run
// view's flow runs inline in `bench flow run` (its items' child runs too) up to its approval.
// The site needs ERPNext (the flow triggers on Sales Order submit and loops over its items).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, login, desk, call, shot, sleep, bench } from "./helpers.mjs";

const PREFIX = "Richer flow ";
const FLOW = `${PREFIX}${Date.now().toString(36)}`;
const NEEDED = ["for_each", "approval", "switch"];
let browser, page;
let missing = [];

before(async () => {
	({ browser, page } = await launch());
	await login(page);
	await desk(page, "todo");
	await cleanup();
	const kinds = (await call(page, "flow_engine.api.kinds")).map((k) => k.name);
	missing = NEEDED.filter((k) => !kinds.includes(k));
	const erpnext = await page.evaluate(() => Boolean(frappe.boot.versions && frappe.boot.versions.erpnext));
	if (!erpnext) missing.push("ERPNext (Sales Order)");
});

async function cleanup() {
	// approvals of the run-view flow link to it: they go first
	const approvals = await call(page, "frappe.client.get_list", {
		doctype: "Flow Approval",
		filters: { flow: ["like", `${PREFIX}%`] },
		fields: ["name"],
		limit_page_length: 100,
	}).catch(() => []);
	for (const row of approvals || []) {
		await call(page, "frappe.client.delete", { doctype: "Flow Approval", name: row.name }).catch((e) =>
			console.error("cleanup:", e.message.slice(0, 200))
		);
	}
	const flows = await call(page, "frappe.client.get_list", {
		doctype: "Flow Template",
		filters: { name: ["like", `${PREFIX}%`] },
		fields: ["name"],
		limit_page_length: 100,
	});
	for (const row of flows || []) {
		await call(page, "frappe.client.delete", { doctype: "Flow Template", name: row.name }).catch((e) =>
			console.error("cleanup:", e.message.slice(0, 300))
		);
	}
}

after(async () => {
	try {
		await desk(page, "todo");
		await cleanup();
	} catch (e) {
		console.error("cleanup:", e.message);
	}
	if (browser) await browser.close();
});

// the tests build on each other: after a failure the rest are skipped, with a screenshot of the failure
let broken = null;
function step(name, fn) {
	test(name, async (t) => {
		if (missing.length) return t.skip(`the catalog lacks: ${missing.join(", ")} (not landed yet on this site)`);
		if (broken) return t.skip(`after the failure of: ${broken}`);
		try {
			await fn(t);
		} catch (error) {
			broken = name;
			await shot(page, `richer-failure-${name.slice(0, 30).replace(/\W+/g, "-")}.png`).catch(() => {});
			throw error;
		}
	});
}

const store = (expr) => page.evaluate(`(() => { const store = flow_engine.editor.store; return ${expr}; })()`);

async function wait_idle() {
	await page.waitForFunction(() => !document.querySelector(".freeze-message-container:not(.hidden)") && !frappe.dom.freeze_count);
	await sleep(150);
}

async function validity() {
	await sleep(400); // the editor validates 350 ms after an edit
	await page.waitForFunction(() => !flow_engine.editor.store.validating);
	await sleep(100);
	return (await page.locator('[data-role="validity"]').textContent()).trim();
}

function field(name) {
	return page.locator(`.flow-panel [data-payload-field="${name}"]`);
}

/** Fill a catalog field rendered as a plain input (data / list / int / float / link). */
async function fill(name, value) {
	const input = field(name).locator("input.form-control, input.input-with-feedback").first();
	await input.fill(value);
	await input.press("Tab");
	await page.locator(".flow-panel .flow-panel-title").first().click(); // close any awesomplete
}

async function select_node(id) {
	await sleep(450); // the canvas refits after a step is added: click once it stands still
	await page.locator(`.flow-node[data-step="${id}"] .flow-node-title`).click();
	await page.waitForSelector(`[data-step-panel="${id}"], [data-run-step="${id}"]`);
}

async function add_from_menu(action, kind) {
	await page.locator(`.flow-panel [data-action="${action}"]`).click();
	await page.locator(`.flow-panel [data-action="${action}"] + .dropdown-menu [data-kind="${kind}"]`).click();
}

async function condition(scope, field_, op, value) {
	await scope.locator('[data-action="add-condition"]').click();
	const row = scope.locator('[data-role="condition-row"]').last();
	await row.locator('[data-role="cond-field"] input').fill(field_);
	await row.locator('[data-role="cond-field"] input').press("Tab");
	await row.locator('[data-role="cond-op"]').selectOption(op);
	await row.locator('[data-role="cond-value"]').fill(value);
	await row.locator('[data-role="cond-value"]').press("Tab");
}

async function template() {
	return call(page, "frappe.client.get", { doctype: "Flow Template", name: FLOW });
}

step("build a for_each with a step in its loop and an approval after it, through the UI", async () => {
	await desk(page, "flow-editor");
	const dialog = page.locator(".modal.show");
	await dialog.waitFor();
	await dialog.locator('[data-fieldname="action"] select').selectOption("create");
	await dialog.locator('[data-fieldname="template_name"] input').fill(FLOW);
	await dialog.locator('[data-fieldname="trigger_doctype"] input').fill("Sales Order");
	await page.waitForSelector(".modal.show .awesomplete ul li", { timeout: 10000 }).catch(() => {});
	await dialog.locator(".modal-title").click();
	await dialog.locator('[data-fieldname="trigger_event"] select').selectOption("on_submit");
	await dialog.locator(".btn-primary").click();
	await page.waitForURL(/flow-editor\/Richer/);
	await page.waitForSelector('[data-role="trigger-panel"]');

	// 1: the loop, over the order's items
	await page.locator('.flow-palette-item[data-kind="for_each"]').click();
	await page.waitForSelector('[data-step-panel="for_each_1"]');
	await page.locator('[data-field="label"]').fill("Each order line");
	await page.locator('[data-field="label"]').press("Tab");
	const items = field("items");
	const ace = items.locator(".ace_text-input");
	if (await ace.count()) {
		await items.locator(".ace_content").click();
		await page.keyboard.type("{{doc.items}}");
		await page.locator(".flow-panel .flow-panel-title").first().click();
	} else {
		await items.locator("textarea, input").first().fill("{{doc.items}}");
		await items.locator("textarea, input").first().press("Tab");
	}
	await page.waitForFunction(() => {
		const s = flow_engine.editor.store.definition.steps.find((x) => x.id === "for_each_1");
		return s && s.payload.items === "{{doc.items}}";
	}, null, { timeout: 10000 }).catch(async () => {
		throw new Error(`items not stored: ${JSON.stringify(await store("store.definition.steps[0].payload"))}`);
	});
	await fill("concurrency", "3");
	await page.waitForFunction(() => flow_engine.editor.store.definition.steps[0].payload.concurrency === 3);
	// the palette says where the next step goes: into the selected loop
	assert.match(await page.locator('[data-role="add-where"]').textContent(), /into the loop/);

	// 2: a step into the loop, from the palette while the loop is selected
	await page.locator('.flow-palette-item[data-kind="comment"]').click();
	await page.waitForSelector('[data-step-panel="comment_1"]');
	assert.match(await page.locator('[data-role="in-loop"]').textContent(), /\{\{item\}\}/);
	await field("text").locator("textarea").fill("Line {{item_index}}: {{item.item_code}} x {{item.qty}}");
	await field("text").locator("textarea").press("Tab");
	await page.waitForFunction(() => /item\.item_code/.test(JSON.stringify(flow_engine.editor.store.definition)));
	// the loop is drawn as a frame around its body, labelled with the items
	const frame = page.locator('[data-loop="for_each_1"]');
	await frame.waitFor();
	assert.match(await frame.textContent(), /for each \{\{doc\.items\}\}/);
	const fbox = await frame.boundingBox();
	const cbox = await page.locator('.flow-node[data-step="comment_1"]').boundingBox();
	assert.ok(
		cbox.x >= fbox.x && cbox.y >= fbox.y && cbox.x + cbox.width <= fbox.x + fbox.width + 1 && cbox.y + cbox.height <= fbox.y + fbox.height + 1,
		`the body step is inside the loop frame: ${JSON.stringify({ fbox, cbox })}`
	);
	const each = page.locator('.flow-node[data-step="for_each_1"] .flow-handle-branch[data-branch="each"]');
	assert.equal(await each.count(), 1, "the loop has an 'each' handle");

	// 3: an approval after the loop
	await select_node("for_each_1");
	await add_from_menu("add-after-loop", "approval");
	await page.waitForSelector('[data-step-panel="approval_1"]');
	await page.locator('[data-field="label"]').fill("Manager approves");
	await page.locator('[data-field="label"]').press("Tab");
	// no approver yet: the node says so, live
	await page.waitForSelector('.flow-node[data-step="approval_1"].has-error', { timeout: 10000 });
	await fill("approvers", "Administrator");
	await fill("role", "Sales Manager");
	await fill("approver", "{{doc.owner}}");
	await fill("remind_after_hours", "24");
	await fill("timeout_hours", "48");
	await page.waitForFunction(() => {
		const s = flow_engine.editor.store.definition.steps.find((x) => x.id === "approval_1");
		return s && s.payload.timeout_hours === 48 && s.payload.role === "Sales Manager";
	});
	await page.waitForSelector('.flow-node[data-step="approval_1"]:not(.has-error)', { timeout: 10000 });
	const handles = await page
		.locator('.flow-node[data-step="approval_1"] .flow-handle-branch')
		.evaluateAll((els) => els.map((e) => e.dataset.branch));
	assert.deepEqual(handles, ["approved", "rejected", "timed_out"]);
	assert.equal(await validity(), "Valid", JSON.stringify(await store("store.errors")));
	assert.deepEqual(page.errors, []);
});

step("a switch with three cases shows four branch handles; on_error branch adds a fifth; a merge joins", async () => {
	// into the approval's "approved" branch (the palette adds into the selected step's first branch)
	await page.locator('.flow-palette-item[data-kind="switch"]').click();
	await page.waitForSelector('[data-step-panel="switch_1"]');
	const sw = await store('store.definition.steps.find((s) => s.id === "switch_1")');
	assert.equal(sw.parent_id, "approval_1");
	assert.equal(sw.branch, "approved");
	const cases = page.locator('[data-role="cases-editor"]');
	for (let i = 0; i < 3; i++) await cases.locator('[data-action="add-case"]').click();
	assert.equal(await cases.locator('[data-role="case"]').count(), 3);
	const names = ["big", "medium", "small"];
	const tests = [
		["doc.grand_total", ">", "10000"],
		["doc.grand_total", ">", "1000"],
		["doc.grand_total", ">", "0"],
	];
	for (let i = 0; i < 3; i++) {
		const c = cases.locator('[data-role="case"]').nth(i);
		await c.locator('[data-role="case-name"]').fill(names[i]);
		await c.locator('[data-role="case-name"]').press("Tab");
		await page.waitForFunction(
			([i, name]) => flow_engine.editor.store.definition.steps.find((s) => s.id === "switch_1").payload.cases[i].name === name,
			[i, names[i]]
		);
		await condition(cases.locator('[data-role="case"]').nth(i), ...tests[i]);
	}
	const node = page.locator('.flow-node[data-step="switch_1"]');
	await page.waitForFunction(() => document.querySelectorAll('.flow-node[data-step="switch_1"] .flow-handle-branch').length === 4);
	const handles = await node.locator(".flow-handle-branch").evaluateAll((els) => els.map((e) => e.dataset.branch));
	assert.deepEqual(handles, ["big", "medium", "small", "default"]);
	assert.deepEqual(
		(await node.locator(".flow-branch-labels span").allTextContents()).map((t) => t.trim()),
		["big", "medium", "small", "default"]
	);
	// a step into the "big" case
	await add_from_menu("add-in-big", "comment");
	await page.waitForSelector('[data-step-panel="comment_2"]');
	await page.locator('[data-step-panel="comment_2"] [data-payload-field="text"] textarea').fill("A big order");
	await page.locator('[data-step-panel="comment_2"] [data-payload-field="text"] textarea').press("Tab");
	// on_error: branch gives the switch an error handle
	await select_node("switch_1");
	await page.locator('[data-field="on_error"]').selectOption("branch");
	await page.waitForFunction(() => document.querySelectorAll('.flow-node[data-step="switch_1"] .flow-handle-branch').length === 5);
	await add_from_menu("add-in-error", "comment");
	await page.waitForSelector('[data-step-panel="comment_3"]');
	await page.locator('[data-step-panel="comment_3"] [data-payload-field="text"] textarea').fill("It failed: {{steps.switch_1.result.error}}");
	await page.locator('[data-step-panel="comment_3"] [data-payload-field="text"] textarea').press("Tab");
	assert.equal(await validity(), "Valid", JSON.stringify(await store("store.errors")));
	await select_node("switch_1");
	await page.locator('[data-field="on_error"]').selectOption("fail");
	await page.waitForFunction(() => document.querySelectorAll('.flow-node[data-step="switch_1"] .flow-handle-branch').length === 4);
	// its error branch's step now hangs on a branch the switch no longer has: shown live
	await page.waitForSelector(".vue-flow__edge.flow-edge-dangling", { state: "attached" });
	await page.waitForSelector('.flow-node[data-step="comment_3"].has-error', { timeout: 10000 });
	assert.match(await page.locator('.flow-node[data-step="comment_3"]').getAttribute("title"), /error/);
	await select_node("comment_3");
	await page.locator('[data-action="delete"]').click();
	await page.waitForFunction(() => !flow_engine.editor.store.definition.steps.some((s) => s.id === "comment_3"));
	await select_node("switch_1");
	// renaming a case moves its steps along
	const first = cases.locator('[data-role="case"]').first().locator('[data-role="case-name"]');
	await first.fill("large");
	await first.press("Tab");
	await page.waitForFunction(() => flow_engine.editor.store.definition.steps.find((s) => s.id === "comment_2").branch === "large");

	// a merge gets a join setting: connect the loop's "after" handle to the step in the "large" case
	await select_node("comment_2");
	assert.equal(await page.locator('[data-role="join"]').count(), 0, "first step of a branch: no join");
	await page.locator(".flow-canvas .flow-zoom button", { hasText: "Fit" }).click();
	await sleep(400);
	const from = await page.locator('.flow-node[data-step="for_each_1"] .flow-handle-after').boundingBox();
	const to = await page.locator('.flow-node[data-step="comment_2"] .vue-flow__handle.target').boundingBox();
	await page.mouse.move(from.x + from.width / 2, from.y + from.height / 2);
	await page.mouse.down();
	await page.mouse.move(to.x + to.width / 2, to.y + to.height / 2, { steps: 12 });
	await page.mouse.up();
	await page.waitForFunction(() =>
		flow_engine.editor.store.definition.steps.find((s) => s.id === "comment_2").depends_on.includes("for_each_1")
	);
	await select_node("comment_2");
	await page.locator('[data-field="join"]').selectOption("any");
	await page.waitForFunction(() => flow_engine.editor.store.definition.steps.find((s) => s.id === "comment_2").join === "any");
	assert.match(await page.locator('.flow-node[data-step="comment_2"] [data-role="node-join"]').textContent(), /any/);
	assert.equal(await validity(), "Valid", JSON.stringify(await store("store.errors")));
	await select_node("switch_1");
	await shot(page, "richer-editor.png");
	assert.deepEqual(page.errors, []);
});

step("an invalid case is shown live on the switch and its case", async () => {
	await select_node("switch_1");
	const cases = page.locator('[data-role="cases-editor"]');
	await cases.locator('[data-action="add-case"]').click(); // a case without a condition
	await page.waitForSelector('.flow-node[data-step="switch_1"].has-error', { timeout: 10000 });
	assert.match(await validity(), /problem/);
	const last = cases.locator('[data-role="case"]').last();
	await last.locator('[data-role="field-error"]').first().waitFor();
	assert.match(await last.locator('[data-role="field-error"]').first().textContent(), /condition/);
	await last.locator('[data-action="remove-case"]').click();
	await page.waitForSelector('.flow-node[data-step="switch_1"]:not(.has-error)', { timeout: 10000 });
	assert.equal(await validity(), "Valid", JSON.stringify(await store("store.errors")));
});

step("save keeps a draft; Publish makes it the version that runs; the definition is what was built", async () => {
	await page.locator(".page-actions .primary-action:visible").click();
	await page.waitForFunction(() => flow_engine.editor.store.dirty === false);
	await wait_idle();
	assert.equal((await template()).has_draft, 1);
	await page.waitForSelector(".page-actions .btn-publish:visible");
	await page.locator(".page-actions .btn-publish:visible").click();
	const publish = page.locator(".modal.show.flow-publish-dialog");
	await publish.waitFor();
	assert.match(await publish.locator(".flow-diff").textContent(), /for_each_1/);
	await publish.locator('[data-fieldname="note"] textarea').fill("Loop, approval and switch from the browser");
	await publish.locator(".modal-footer .btn-primary").click();
	await page.waitForFunction(() => flow_engine.editor.store.publishing.has_draft === false);
	await page.waitForFunction(() => !document.querySelector(".modal-backdrop"));
	await wait_idle();

	const saved = await template();
	assert.equal(saved.has_draft, 0);
	assert.equal(saved.is_active, 0, "the flow stays inactive: nothing here runs it");
	const def = JSON.parse(saved.flow_definition);
	const by = Object.fromEntries(def.steps.map((s) => [s.id, s]));
	assert.deepEqual(Object.keys(by).sort(), ["approval_1", "comment_1", "comment_2", "for_each_1", "switch_1"]);
	assert.equal(by.for_each_1.kind, "for_each");
	assert.equal(by.for_each_1.payload.items, "{{doc.items}}");
	assert.equal(by.for_each_1.payload.concurrency, 3);
	assert.equal(by.comment_1.parent_id, "for_each_1");
	assert.equal(by.comment_1.branch, "each");
	assert.equal(by.comment_1.payload.text, "Line {{item_index}}: {{item.item_code}} x {{item.qty}}");
	assert.deepEqual(by.approval_1.depends_on, ["for_each_1"]);
	assert.ok(!by.approval_1.parent_id, "the approval is after the loop, not in it");
	assert.deepEqual(by.approval_1.payload.approvers, ["Administrator"]);
	assert.equal(by.approval_1.payload.role, "Sales Manager");
	assert.equal(by.approval_1.payload.approver, "{{doc.owner}}");
	assert.equal(by.approval_1.payload.remind_after_hours, 24);
	assert.equal(by.approval_1.payload.timeout_hours, 48);
	assert.equal(by.switch_1.parent_id, "approval_1");
	assert.equal(by.switch_1.branch, "approved");
	assert.deepEqual(
		by.switch_1.payload.cases.map((c) => c.name),
		["large", "medium", "small"]
	);
	assert.deepEqual(by.switch_1.payload.cases[0].condition, { field: "doc.grand_total", op: ">", value: "10000" });
	assert.ok(!by.switch_1.on_error, "on_error back to the default is not stored");
	assert.equal(by.comment_2.parent_id, "switch_1");
	assert.equal(by.comment_2.branch, "large");
	assert.deepEqual(by.comment_2.depends_on, ["for_each_1"]);
	assert.equal(by.comment_2.join, "any");
	const versions = await call(page, "flow_engine.api.flow_versions", { template: FLOW });
	assert.equal(versions[0].note, "Loop, approval and switch from the browser");
	assert.deepEqual(page.errors, []);
});

step("after a reload the loop frame, the switch's handles and the join come back", async () => {
	await page.reload();
	await page.waitForFunction(() => window.flow_engine?.editor?.store && !flow_engine.editor.store.loading);
	await page.locator('[data-loop="for_each_1"]').waitFor();
	assert.equal(await page.locator('.flow-node[data-step="switch_1"] .flow-handle-branch').count(), 4);
	assert.match(await page.locator('.flow-node[data-step="comment_2"] [data-role="node-join"]').textContent(), /any/);
	await select_node("comment_2");
	assert.equal(await page.locator('[data-field="join"]').inputValue(), "any");
	await select_node("approval_1");
	assert.equal(await page.locator('[data-role="join"]').count(), 0, "one input: no join setting");
	assert.deepEqual(page.errors, []);
});

step("a call_flow node names the flow it starts and links to it", async () => {
	const callee = `${PREFIX}callee ${Date.now().toString(36)}`;
	await call(page, "flow_engine.desk.create_flow", { template_name: callee, trigger_event: "manual" });
	await page.locator(".vue-flow__pane").click({ position: { x: 30, y: 400 } });
	await page.locator('.flow-palette-item[data-kind="call_flow"]').click();
	await page.waitForSelector('[data-step-panel="call_flow_1"]');
	await fill("flow", callee);
	await page.waitForFunction(
		(name) => flow_engine.editor.store.definition.steps.find((s) => s.id === "call_flow_1").payload.flow === name,
		callee
	);
	const href = `/app/flow-editor/${encodeURIComponent(callee)}`;
	const link = page.locator('.flow-node[data-step="call_flow_1"] [data-role="node-linked-flow"] a');
	assert.equal((await link.textContent()).trim(), callee);
	assert.equal(await link.getAttribute("href"), href);
	assert.equal(await page.locator('[data-role="linked-flow"] a').getAttribute("href"), href);
	assert.equal(await validity(), "Valid", JSON.stringify(await store("store.errors")));
	await page.locator(".page-actions .primary-action:visible").click();
	await page.waitForFunction(() => flow_engine.editor.store.dirty === false);
	await wait_idle();
	const draft = JSON.parse((await template()).draft_definition);
	assert.equal(draft.steps.find((s) => s.id === "call_flow_1").payload.flow, callee);
	// the link opens the called flow in the editor
	await link.click();
	await page.waitForFunction(
		(name) => window.flow_engine?.editor?.name === name && !flow_engine.editor.store.loading,
		callee
	);
	assert.deepEqual(page.errors, []);
});

let RUN_FLOW = null;

step("the run view shows the loop's items as child runs and why the approval waits", async () => {
	const name = (RUN_FLOW = `${PREFIX}run view ${Date.now().toString(36)}`);
	await call(page, "flow_engine.desk.create_flow", { template_name: name, trigger_event: "manual" });
	const definition = {
		version: 1,
		trigger: { event: "manual" },
		steps: [
			{ id: "loop", kind: "for_each", label: "Each line", payload: { items: "{{input.lines}}", concurrency: 2 } },
			{ id: "calc", kind: "set_variables", parent_id: "loop", branch: "each", payload: { variables: { line: "{{item.code}}" } } },
			{ id: "ok", kind: "approval", depends_on: ["loop"], payload: { approvers: ["Administrator"], timeout_hours: 48 } },
			{
				id: "size",
				kind: "switch",
				payload: {
					cases: [
						{ name: "big", condition: { field: "input.size", op: "==", value: "big" } },
						{ name: "small", condition: { field: "input.size", op: "==", value: "small" } },
					],
				},
			},
			{ id: "mark", kind: "set_variables", parent_id: "size", branch: "small", payload: { variables: { small: "yes" } } },
		],
	};
	const saved = await call(page, "flow_engine.desk.save_flow", {
		template: name,
		definition: JSON.stringify(definition),
		is_active: 1,
		publish: 1,
	});
	assert.equal(saved.saved, true, JSON.stringify(saved.errors));
	const out = bench("flow", "run", name, "--input", JSON.stringify({ size: "small", lines: [{ code: "A" }, { code: "B" }, { code: "C" }] }));
	const run = out.trim().split("\n").pop().split(":")[0];
	assert.match(run, /^FR-/, out);
	try {
		const data = await call(page, "flow_engine.api.get_run", { run });
		assert.equal(data.status, "waiting", JSON.stringify(data.steps));
		await desk(page, `flow-editor/run/${run}`);
		await page.waitForSelector('[data-role="run-panel"]');
		// the run's step list: the loop's progress and the approval's reason
		await page.waitForSelector('[data-run-row="loop"] [data-role="items-progress"]');
		assert.equal((await page.locator('[data-run-row="loop"] [data-role="items-progress"]').textContent()).trim(), "3/3");
		assert.match(await page.locator('[data-run-row="ok"]').textContent(), /waits for an approval/);
		assert.equal((await page.locator('.flow-node[data-step="loop"] [data-role="node-items-progress"]').textContent()).trim(), "3/3");
		// the body runs in the items' runs: not "pending" in this one
		await page.locator('.flow-node[data-step="calc"] [data-role="node-per-item"]').waitFor();
		assert.match(await page.locator('[data-run-row="calc"]').textContent(), /per item/);
		await page.locator('[data-loop="loop"]').waitFor();
		// the loop: one child run per item, in item order, each a link to its run view
		await select_node("loop");
		const children = page.locator('[data-role="child-runs"] [data-child-run]');
		assert.equal(await children.count(), 3);
		assert.match(await page.locator('[data-role="child-runs"]').textContent(), /3 of 3 done/);
		const first = await children.first().locator("a").getAttribute("href");
		assert.match(first, /\/app\/flow-editor\/run\/FR-/);
		await page.locator('[data-run-step="loop"] button', { hasText: "Back" }).click();
		// the approval: why it waits, and a link to the Flow Approval
		await select_node("ok");
		await page.waitForSelector('[data-role="waiting-reason"]');
		assert.match(await page.locator('[data-role="waiting-reason"]').textContent(), /waits for an approval/);
		assert.match(await page.locator('[data-role="approval-link"]').getAttribute("href"), /\/app\/flow-approval\//);
		await shot(page, "richer-run-view.png");
		// an item's run shows the loop's body only, and links back to the parent run
		await desk(page, first.replace(/^\/app\//, ""));
		await page.waitForSelector('[data-role="parent-run"]');
		assert.match(await page.locator('[data-role="parent-run"]').textContent(), new RegExp(run));
		assert.deepEqual(await page.locator(".flow-node").evaluateAll((els) => els.map((e) => e.dataset.step)), ["calc"]);
		assert.match(await page.locator('[data-role="run-item"]').textContent(), /"code":"A"/);
		assert.deepEqual(page.errors, []);
	} finally {
		await call(page, "flow_engine.api.cancel_run", { run }).catch(() => {});
	}
});

step("the test run groups steps by wave, expands the loop per item and shows the switch's branch", async () => {
	await desk(page, `flow-editor/${encodeURIComponent(RUN_FLOW)}`);
	await page.waitForFunction(() => window.flow_engine?.editor?.store && !flow_engine.editor.store.loading);
	await page.locator(".page-actions button:visible", { hasText: "Test run" }).click();
	const dialog = page.locator(".modal.show", { hasText: "dry run" });
	await dialog.waitFor();
	const input = JSON.stringify({ size: "small", lines: [{ code: "A" }, { code: "B" }] });
	// the dialog's JSON field is an Ace editor: set its text as a user's paste would
	await page.evaluate((text) => {
		const el = document.querySelector('.modal.show [data-fieldname="input"] .ace_editor');
		el.env.editor.setValue(text, 1);
	}, input);
	await sleep(400);
	await dialog.locator(".btn-primary").click();
	await page.waitForSelector('[data-role="dry-run"]');
	// wave 1: the loop and the switch side by side; then the approval after the loop, and the switch's branch
	const waves = await page.locator("[data-dry-wave]").evaluateAll((els) =>
		els.map((w) => [...w.querySelectorAll(":scope > [data-dry-step]")].map((e) => e.dataset.dryStep))
	);
	assert.deepEqual(waves[0].sort(), ["loop", "size"], JSON.stringify(waves));
	assert.match(await page.locator('[data-dry-wave="1"]').textContent(), /2 steps in parallel/);
	assert.ok(waves.flat().includes("ok") && waves.flat().includes("mark"), JSON.stringify(waves));
	assert.match(await page.locator('[data-dry-step="size"] [data-role="dry-branch"]').textContent(), /small/);
	// the loop expanded for each item, with {{item}} rendered
	const items = page.locator('[data-dry-step="loop"] [data-dry-item]');
	assert.equal(await items.count(), 2);
	assert.match(await items.nth(1).textContent(), /"line": "B"/);
	// on the canvas: the body step is walked once per item; the taken branch stands out
	assert.equal((await page.locator('.flow-node[data-step="calc"] [data-role="node-dry-items"]').textContent()).trim(), "×2");
	await shot(page, "richer-dry-run.png");
	await page.locator('[data-role="dry-run"] button', { hasText: "Close" }).click();
	assert.deepEqual(page.errors, []);
});
