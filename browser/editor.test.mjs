// Browser tier: the Desk Flow Editor in headless Chromium against a running site.
//
//   cd browser && npm install && node --test --test-concurrency=1 .
//
// Needs a running web server (FLOW_BROWSER_URL, default http://erp.localhost:8010) for site
// FLOW_BROWSER_SITE (erp.localhost, with ERPNext or plain Frappe: the flow uses ToDo). Starts its own RQ
// worker for the run to advance (FLOW_BROWSER_WORKER=0 when one is already running) and ticks the
// scheduler with `bench --site SITE flow tick`. Screenshots go to artifacts/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { launch, login, desk, call, shot, bench, sleep, quiet, BENCH, ROOT } from "./helpers.mjs";

const FLOW = `Close urgent ToDos ${Date.now().toString(36)}`; // cleaned up before and after
const DELAY_SECONDS = 12;
const TAG = `[flowbrowser ${Date.now().toString(36)}]`;
let browser, page, worker;

before(async () => {
	if (process.env.FLOW_BROWSER_WORKER !== "0") {
		const asRoot = process.getuid && process.getuid() === 0;
		const command = `cd ${BENCH} && exec bench worker --queue default,short,long`;
		worker = spawn(
			asRoot ? "runuser" : "bash",
			asRoot ? ["-u", "frappe", "--", "bash", "-lc", command] : ["-lc", command],
			{ detached: true, stdio: "ignore" }
		);
	}
	({ browser, page } = await launch());
	await login(page);
	await desk(page, "todo");
	await cleanup();
});

async function cleanup() {
	// flows of earlier runs of this suite (they trigger on ToDo: never leave them active)
	const flows = await call(page, "frappe.client.get_list", {
		doctype: "Flow Template",
		filters: { name: ["like", "Close urgent ToDos %"] },
		fields: ["name"],
		limit_page_length: 100,
	});
	for (const row of flows || []) {
		await call(page, "frappe.client.delete", { doctype: "Flow Template", name: row.name }).catch((e) =>
			console.error("cleanup:", e.message)
		);
	}
	const todos = await call(page, "frappe.client.get_list", {
		doctype: "ToDo",
		filters: { description: ["like", "%[flowbrowser %"] },
		fields: ["name"],
		limit_page_length: 500,
	});
	for (const row of todos || []) {
		await call(page, "frappe.client.delete", { doctype: "ToDo", name: row.name }).catch(() => {});
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
	if (worker) {
		try {
			process.kill(-worker.pid, "SIGTERM");
		} catch (e) {
			/* already gone */
		}
	}
});

// the tests build on each other: after a failure the rest are skipped, with a screenshot of the failure
let broken = null;
function step(name, fn) {
	test(name, async (t) => {
		if (broken) return t.skip(`after the failure of: ${broken}`);
		try {
			await fn(t);
		} catch (error) {
			broken = name;
			await shot(page, `failure-${name.slice(0, 30).replace(/\W+/g, "-")}.png`).catch(() => {});
			throw error;
		}
	});
}

async function wait_idle() {
	await page.waitForFunction(() => !document.querySelector(".freeze-message-container:not(.hidden)") && !frappe.dom.freeze_count);
	await sleep(150);
}

async function panel_field(name) {
	return page.locator(`.flow-panel [data-payload-field="${name}"]`);
}

async function set_label(label) {
	await page.locator('[data-field="label"]').fill(label);
	await page.locator('[data-field="label"]').press("Tab");
}

async function select_node(id) {
	await page.locator(`.flow-node[data-step="${id}"]`).click();
	await page.waitForSelector(`[data-step-panel="${id}"]`);
}

async function validity() {
	await page.waitForFunction(() => !flow_engine.editor.store.validating);
	await sleep(100); // let Vue render the answer
	return (await page.locator('[data-role="validity"]').textContent()).trim();
}

/** Wait for the worker to move the run. A run no worker picks up fails the test: the engine must
 * recover lost jobs itself (leases), so nothing here advances it behind the worker's back. */
async function wait_for_run(run, statuses, seconds = 45) {
	let status;
	for (let i = 0; i < seconds * 2; i++) {
		({ status } = await call(page, "flow_engine.api.get_run", { run }));
		if (statuses.includes(status)) return;
		await sleep(500);
	}
	throw new Error(`run ${run} is still '${status}' after ${seconds}s: no worker advanced it (expected ${statuses.join(" or ")})`);
}

/** Publish the editor's draft through its dialog; returns the dialog's change list. */
async function publish_in_editor(note) {
	await page.locator(".page-actions .btn-publish:visible").click();
	const dialog = page.locator(".modal.show.flow-publish-dialog");
	await dialog.waitFor();
	const changes = await dialog.locator(".flow-diff").textContent();
	if (note) await dialog.locator('[data-fieldname="note"] textarea').fill(note);
	await dialog.locator(".modal-footer .btn-primary").click();
	await page.waitForFunction(() => flow_engine.editor.store.publishing.has_draft === false);
	await page.waitForFunction(() => !document.querySelector(".modal-backdrop"));
	await wait_idle();
	return changes;
}

async function template() {
	return call(page, "frappe.client.get", { doctype: "Flow Template", name: FLOW });
}

step("build a 4-step flow with a condition and a delay from an empty template, using only the UI", async () => {
	// create the flow from the editor's start dialog
	await desk(page, "flow-editor");
	const dialog = page.locator(".modal.show");
	await dialog.waitFor();
	await dialog.locator('[data-fieldname="action"] select').selectOption("create");
	await dialog.locator('[data-fieldname="template_name"] input').fill(FLOW);
	const doctype = dialog.locator('[data-fieldname="trigger_doctype"] input');
	await doctype.fill("ToDo");
	await page.waitForSelector(".modal.show .awesomplete ul li", { timeout: 10000 }).catch(() => {});
	await dialog.locator(".modal-title").click();
	await dialog.locator('[data-fieldname="trigger_event"] select').selectOption("after_insert");
	await dialog.locator(".btn-primary").click();
	await page.waitForURL(/flow-editor\/Close/);
	await page.waitForSelector('[data-role="trigger-panel"]');
	assert.equal(await page.locator(".flow-node").count(), 0, "a new flow is empty");

	// 1: comment
	await page.locator('.flow-palette-item[data-kind="comment"]').click();
	await page.waitForSelector('[data-step-panel="comment_1"]');
	await set_label("Note the new ToDo");
	const text = (await panel_field("text")).locator("textarea");
	await text.fill("Flow saw ");
	// insert a variable at the cursor with the picker
	await text.click();
	await text.press("End");
	await page.locator('[data-action="variables"]').click();
	await page.locator('.flow-variables-item[data-path="doc.description"] a').click();
	await page.locator('[data-action="variables"]').click();
	await text.blur();
	await page.waitForFunction(
		() => /Flow saw \{\{doc\.description\}\}/.test(JSON.stringify(flow_engine.editor.store.definition))
	);

	// 2: condition (added after the selected comment)
	await page.locator('.flow-palette-item[data-kind="condition"]').click();
	await page.waitForSelector('[data-step-panel="condition_1"]');
	await set_label("Is it urgent?");
	await page.locator('[data-action="add-condition"]').click();
	const row = page.locator('[data-role="condition-row"]').first();
	await row.locator('[data-role="cond-field"] input').fill("doc.priority");
	await row.locator('[data-role="cond-field"] input').press("Tab");
	await row.locator('[data-role="cond-op"]').selectOption("==");
	await row.locator('[data-role="cond-value"]').fill("High");
	await row.locator('[data-role="cond-value"]').press("Tab");
	await page.waitForFunction(() => /"value":"High"/.test(JSON.stringify(flow_engine.editor.store.definition)));

	// 3: a wait inside the condition's "yes" branch, with a short delay
	await page.locator('[data-action="add-in-yes"]').click();
	await page.locator('[data-action="add-in-yes"] + .dropdown-menu [data-kind="wait"]').click();
	await page.waitForSelector('[data-step-panel="wait_1"]');
	await page.locator('[data-field="trigger-type"]').selectOption("after_delay");
	await page.locator('[data-field="trigger-delay_minutes"]').fill("");
	await page.locator('[data-field="trigger-delay_minutes"]').press("Tab");
	await page.locator('[data-field="trigger-delay_seconds"]').fill(String(DELAY_SECONDS));
	await page.locator('[data-field="trigger-delay_seconds"]').press("Tab");
	await page.locator('[data-field="label"]').fill("Let it rest");
	await page.locator('[data-field="label"]').press("Tab");

	// 4: update the ToDo after the wait (added after the selected wait, in the same branch)
	await page.locator('.flow-palette-item[data-kind="update_doc"]').click();
	await page.waitForSelector('[data-step-panel="update_doc_1"]');
	await set_label("Close the ToDo");
	const fields = await panel_field("fields");
	await fields.locator('[data-action="add-row"]').click();
	await fields.locator(".flow-kv-key input").fill("status");
	await fields.locator(".flow-kv-key input").press("Tab");
	await fields.locator(".flow-kv-value").fill("Closed");
	await fields.locator(".flow-kv-value").press("Tab");

	assert.equal(await page.locator(".flow-node").count(), 4);
	assert.equal(await validity(), "Valid", JSON.stringify(await page.evaluate(() => flow_engine.editor.store.errors)));
	// edges: comment → condition, condition -yes→ wait, wait → update
	await page.waitForSelector(".vue-flow__edge", { state: "attached" });
	const labels = await page.locator(".vue-flow__edge-text").allTextContents();
	assert.ok(labels.map((l) => l.trim()).includes("yes"), `branch edge labelled yes: ${labels}`);

	// trigger panel (click the canvas background): only ToDos of this test start the flow
	await page.locator(".vue-flow__pane").click({ position: { x: 30, y: 400 } });
	const trigger = page.locator('[data-role="trigger-panel"]');
	await trigger.waitFor();
	await trigger.locator('[data-action="add-condition"]').click();
	const trow = trigger.locator('[data-role="condition-row"]').first();
	await trow.locator('[data-role="cond-field"] input').fill("doc.description");
	await trow.locator('[data-role="cond-field"] input').press("Tab");
	await trow.locator('[data-role="cond-op"]').selectOption("contains");
	await trow.locator('[data-role="cond-value"]').fill(TAG);
	await trow.locator('[data-role="cond-value"]').press("Tab");
	assert.match(await trigger.locator('[data-role="cond-stored"]').textContent(), /"op": "contains"/);
	assert.equal(await validity(), "Valid");

	// save: a draft — the published version (1, no steps) is what runs until Publish
	await page.locator(".page-actions .primary-action:visible").click();
	await page.waitForFunction(() => flow_engine.editor.store.dirty === false);
	await wait_idle();
	const draft = await template();
	assert.equal(draft.has_draft, 1);
	assert.equal(draft.version, 1);
	assert.equal(draft.step_count, 0, "the published version is untouched");
	assert.equal(JSON.parse(draft.draft_definition).steps.length, 4);
	await page.waitForSelector(".page-actions .btn-publish:visible");
	assert.match(await page.locator(".page-actions .btn-publish:visible").textContent(), /Publish/);

	// publish: the dialog lists the changes, then version 2 is what runs
	await page.locator(".page-actions .btn-publish:visible").click();
	const publish = page.locator(".modal.show.flow-publish-dialog");
	await publish.waitFor();
	assert.equal(await publish.locator(".diff-added").count(), 4, "four steps added");
	assert.match(await publish.locator(".flow-diff").textContent(), /comment_1/);
	assert.match(await publish.locator(".flow-diff").textContent(), /condition\.field set to doc\.description/);
	await publish.locator('[data-fieldname="note"] textarea').fill("First version from the browser");
	await shot(page, "publish-diff.png");
	await publish.locator(".modal-footer .btn-primary").click();
	await page.waitForFunction(() => flow_engine.editor.store.publishing.has_draft === false);
	await page.waitForSelector(".modal.show.flow-publish-dialog", { state: "detached" }).catch(() => {});
	await page.waitForFunction(() => !document.querySelector(".modal-backdrop"));
	await wait_idle();
	const saved = await template();
	assert.equal(saved.has_draft, 0);
	assert.equal(saved.version, 2);
	const history = await call(page, "flow_engine.api.flow_versions", { template: FLOW });
	assert.equal(history[0].note, "First version from the browser");
	assert.match(history[0].changes, /\+ step comment_1/);
	const def = JSON.parse(saved.flow_definition);
	assert.equal(saved.step_count, 4);
	assert.equal(saved.trigger_doctype, "ToDo");
	assert.equal(saved.trigger_event, "after_insert");
	assert.deepEqual(JSON.parse(saved.trigger_condition), { field: "doc.description", op: "contains", value: TAG });
	const by = Object.fromEntries(def.steps.map((s) => [s.id, s]));
	assert.deepEqual(by.condition_1.depends_on, ["comment_1"]);
	assert.deepEqual(by.condition_1.payload.condition, { field: "doc.priority", op: "==", value: "High" });
	assert.equal(by.wait_1.parent_id, "condition_1");
	assert.equal(by.wait_1.branch, "yes");
	assert.deepEqual(by.wait_1.trigger, { type: "after_delay", delay_seconds: DELAY_SECONDS });
	assert.deepEqual(by.update_doc_1.depends_on, ["wait_1"]);
	assert.equal(by.update_doc_1.branch, "yes");
	assert.deepEqual(by.update_doc_1.payload.fields, { status: "Closed" });
	assert.equal(by.comment_1.payload.text, "Flow saw {{doc.description}}");
	const layout = JSON.parse(saved.editor_layout);
	assert.deepEqual(Object.keys(layout.positions).sort(), ["comment_1", "condition_1", "update_doc_1", "wait_1"]);

	// node positions are saved: drag a node, save, reload
	const node = page.locator('.flow-node[data-step="comment_1"]');
	const box = await node.boundingBox();
	await page.mouse.move(box.x + 60, box.y + 20);
	await page.mouse.down();
	await page.mouse.move(box.x + 160, box.y + 30, { steps: 8 });
	await page.mouse.up();
	await page.waitForFunction(() => flow_engine.editor.store.dirty === true);
	await page.locator(".page-actions .primary-action:visible").click();
	await page.waitForFunction(() => flow_engine.editor.store.dirty === false);
	const moved = JSON.parse((await template()).editor_layout).positions.comment_1;
	assert.notDeepEqual(moved, layout.positions.comment_1, "dragged position saved");
	await page.locator(".flow-node").first().click();
	await page.locator(".vue-flow__pane").click({ position: { x: 30, y: 400 } });
	await shot(page, "editor.png");
	await select_node("condition_1");
	await sleep(500);
	await quiet(page);
	// the README's screenshots are refreshed only on request: FLOW_BROWSER_DOCS=1
	const docs_dir = process.env.FLOW_BROWSER_DOCS ? path.join(ROOT, "docs") : path.join(ROOT, "artifacts");
	fs.mkdirSync(docs_dir, { recursive: true });
	await page.screenshot({ path: path.join(docs_dir, "flow-editor.png") });
	assert.deepEqual(page.errors, []);
});

step("an invalid edit is shown on the right node and refused on save", async () => {
	const version = (await template()).version;
	await select_node("update_doc_1");
	const fields = await panel_field("fields");
	await fields.locator(".flow-kv-row button").click(); // remove the only row: fields is required
	await page.waitForSelector('.flow-node[data-step="update_doc_1"].has-error');
	assert.match(await validity(), /1 problem/);
	assert.equal(await page.locator(".flow-node.has-error").count(), 1, "only the node at fault is marked");
	assert.match(await fields.locator('[data-role="field-error"]').first().textContent(), /required/);
	await shot(page, "editor-invalid.png");

	await page.locator(".page-actions .primary-action:visible").click();
	const modal = page.locator(".modal.show", { hasText: "Not saved" });
	await modal.waitFor();
	assert.match(await modal.textContent(), /update_doc_1/);
	await shot(page, "editor-refused.png");
	await modal.locator(".btn-modal-close, .modal-header .close").first().click();
	assert.equal((await template()).version, version, "nothing was saved");
	assert.equal(await page.evaluate(() => flow_engine.editor.store.dirty), true);

	// the server is the authority: a direct save of the bad definition is refused as well
	const direct = await call(page, "flow_engine.desk.save_flow", {
		template: FLOW,
		definition: JSON.stringify(await page.evaluate(() => flow_engine.editor.store.definition)),
	});
	assert.equal(direct.saved, false);
	assert.equal(direct.errors[0].step_id, "update_doc_1");

	// undo brings the field back; the flow is valid again (and saving it is no draft: it is what runs)
	await page.locator('[data-action="undo"]').click();
	await page.waitForFunction(() => !document.querySelector(".flow-node.has-error"));
	assert.equal(await validity(), "Valid");
	await page.locator(".page-actions .primary-action:visible").click();
	await page.waitForFunction(() => flow_engine.editor.store.dirty === false);
	assert.equal((await template()).has_draft, 0);
	assert.deepEqual(page.errors, []);
});

async function counts(todo) {
	const count = (doctype, filters) => call(page, "frappe.client.get_count", { doctype, filters });
	return {
		runs: await count("Flow Run", { template: FLOW }),
		comments: await count("Comment", { reference_doctype: "ToDo", reference_name: todo, comment_type: "Comment" }),
		todo: (await call(page, "frappe.client.get", { doctype: "ToDo", name: todo })).status,
		all_runs: await count("Flow Run", { reference_doctype: "ToDo", reference_name: todo }),
	};
}

step("the test run shows order, branch and rendered payloads and creates nothing", async () => {
	const todo = await call(page, "frappe.client.insert", {
		doc: { doctype: "ToDo", description: `Dry run target ${TAG}`, priority: "High" },
	});
	const before = await counts(todo.name);
	await page.locator(".page-actions button:visible", { hasText: "Test run" }).click();
	const dialog = page.locator(".modal.show", { hasText: "dry run" });
	await dialog.waitFor();
	const input = dialog.locator('[data-fieldname="reference_name"] input');
	await input.fill(todo.name);
	await sleep(600);
	await dialog.locator(".modal-title").click();
	await dialog.locator(".btn-primary").click();
	await page.waitForSelector('[data-role="dry-run"]');
	const steps = await page.locator("[data-dry-step]").evaluateAll((els) => els.map((e) => e.dataset.dryStep));
	assert.deepEqual(steps, ["comment_1", "condition_1", "wait_1", "update_doc_1"]);
	assert.match(await page.locator('[data-role="dry-branch"]').first().textContent(), /yes/);
	const payloads = await page.locator('[data-role="dry-payload"]').allTextContents();
	assert.ok(
		payloads.some((p) => p.includes(`Flow saw Dry run target ${TAG}`)),
		`rendered comment payload: ${payloads.join(" | ")}`
	);
	assert.ok(payloads.some((p) => p.includes('"status": "Closed"')));
	assert.equal(await page.locator(".flow-badge-order").count(), 4 + 4, "order badges on nodes and rows");
	await shot(page, "dry-run.png");
	const after_ = await counts(todo.name);
	assert.deepEqual(after_, before, "the dry run changed nothing");
	await page.locator('[data-role="dry-run"] button', { hasText: "Close" }).click();
	assert.deepEqual(page.errors, []);
});

step("fire the flow by creating a document; the run view goes waiting → completed after a tick", async () => {
	// activate from the trigger panel and save
	await page.locator(".vue-flow__pane").click({ position: { x: 30, y: 400 } });
	await page.locator('.flow-trigger-panel input[data-fieldname="is_active"]').check();
	await page.locator(".page-actions .primary-action:visible").click();
	await page.waitForFunction(() => flow_engine.editor.store.dirty === false);
	assert.equal((await template()).is_active, 1);

	const todo = await call(page, "frappe.client.insert", {
		doc: { doctype: "ToDo", description: `Fire ${TAG}`, priority: "High" },
	});
	const started = Date.now();
	let runs = [];
	for (let i = 0; i < 60 && !runs.length; i++) {
		runs = await call(page, "flow_engine.api.list_runs", { template: FLOW, reference_name: todo.name, reference_doctype: "ToDo" });
		if (!runs.length) await sleep(500);
	}
	assert.equal(runs.length, 1, "the insert started one run");
	await desk(page, `flow-editor/run/${runs[0].name}`);
	await page.waitForSelector('[data-role="run-panel"]');
	await wait_for_run(runs[0].name, ["waiting", "completed"]);
	await page.waitForSelector('.flow-node[data-step="wait_1"][data-status="scheduled"], .flow-node[data-step="wait_1"][data-status="waiting"]', { timeout: 30000 });
	await page.waitForFunction(() => /waiting/.test(document.querySelector('[data-role="run-status"]').textContent), null, { timeout: 30000 });
	assert.equal(await page.locator('.flow-node[data-step="comment_1"]').getAttribute("data-status"), "completed");
	assert.equal(await page.locator('.flow-node[data-step="condition_1"]').getAttribute("data-status"), "completed");
	await shot(page, "run-waiting.png");

	// attempts, input and output one click away
	await page.locator('.flow-node[data-step="comment_1"]').click();
	await page.waitForSelector('[data-run-step="comment_1"]');
	const attempt = await page.locator("[data-attempt]").first().textContent();
	assert.match(attempt, new RegExp(`Flow saw Fire`));
	await shot(page, "run-attempts.png");

	// after the delay, tick the scheduler from the shell
	const wait = DELAY_SECONDS * 1000 - (Date.now() - started) + 1500;
	if (wait > 0) await sleep(wait);
	bench("flow", "tick");
	await page.waitForFunction(() => /completed/.test(document.querySelector('[data-role="run-status"]').textContent), null, { timeout: 45000 });
	await page.waitForSelector('.flow-node[data-step="update_doc_1"][data-status="completed"]', { timeout: 15000 });
	await page.locator(".vue-flow__pane").click({ position: { x: 30, y: 400 } });
	await sleep(500);
	await shot(page, "run-completed.png");
	await page.screenshot({
		path: path.join(process.env.FLOW_BROWSER_DOCS ? path.join(ROOT, "docs") : path.join(ROOT, "artifacts"), "run-view.png"),
	});
	const closed = await call(page, "frappe.client.get_value", { doctype: "ToDo", filters: todo.name, fieldname: "status" });
	assert.equal(closed.status, "Closed");
	assert.deepEqual(page.errors, []);
});

step("the Flows menu on a form, and the Flow Template form opens the editor", async () => {
	const todo = await call(page, "frappe.client.get_list", {
		doctype: "ToDo",
		filters: { description: ["like", `%${TAG}%`] },
		fields: ["name"],
		limit_page_length: 1,
	});
	await desk(page, `todo/${todo[0].name}`);
	const menu = page.locator('.inner-group-button[data-label="Flows"] button');
	await menu.waitFor({ timeout: 20000 });
	await menu.click();
	const items = await page.locator('.inner-group-button[data-label="Flows"] .dropdown-item').allTextContents();
	assert.ok(items.some((t) => /Run a flow on this document/.test(t)), items.join(","));
	assert.ok(items.some((t) => /Runs for this document/.test(t)));
	assert.ok(items.some((t) => /New flow for ToDo/.test(t)));
	await shot(page, "flows-menu.png");

	// the form publishes a draft too: the headline says runs use the published version; Publish shows
	// the changes; History lists the versions
	const current = await template();
	const def = JSON.parse(current.flow_definition);
	def.steps[0].label = "Note the new ToDo (edited)";
	const drafted = await call(page, "flow_engine.desk.save_flow", { template: FLOW, definition: JSON.stringify(def) });
	assert.equal(drafted.publishing.has_draft, true);
	await desk(page, `flow-template/${encodeURIComponent(FLOW)}`);
	await page.waitForSelector(".form-dashboard", { state: "attached" });
	await page.waitForFunction(() => /Unpublished changes/.test(document.body.innerText));
	await page.locator(".page-actions button.publish-flow:visible").click();
	const form_publish = page.locator(".modal.show", { hasText: "Publish" });
	await form_publish.waitFor();
	assert.match(await form_publish.locator(".flow-diff").textContent(), /label set to Note the new ToDo \(edited\)|Note the new ToDo → Note the new ToDo \(edited\)/);
	await form_publish.locator('[data-fieldname="note"] textarea').fill("Renamed from the form");
	await form_publish.locator(".modal-footer .btn-primary").click();
	await page.waitForFunction((v) => window.cur_frm && cur_frm.doc.version === v + 1 && !cur_frm.doc.has_draft, current.version);
	await page.waitForFunction(() => !document.querySelector(".modal-backdrop"));
	await page.locator('.inner-group-button[data-label="Versions"] button').click();
	await page.locator('.inner-group-button[data-label="Versions"] .dropdown-item', { hasText: "History" }).click();
	const versions = page.locator(".modal.show table.flow-versions");
	await versions.waitFor();
	assert.match(await versions.textContent(), /Renamed from the form/);
	assert.equal(await versions.locator("tr[data-version]").count(), current.version + 1);
	await shot(page, "form-history.png");
	await page.locator(".modal.show .btn-modal-close").click();

	await page.locator(".page-actions button:visible", { hasText: "Open in Flow Editor" }).click();
	await page.waitForURL(/flow-editor\//);
	await page.waitForSelector(".flow-node");
	assert.equal(await page.locator(".flow-node").count(), 4);
});

// ---------------------------------------------------------------- building operations, import/export, guard

const FLOW2 = `${FLOW} ops`;
const IMPORTED = {
	version: 1,
	steps: [
		{ id: "a", kind: "comment", label: "First", payload: { text: `A ${TAG}` } },
		{ id: "b", kind: "comment", label: "Second", depends_on: ["a"], payload: { text: "B" } },
		{ id: "c", kind: "comment", label: "Third", depends_on: ["b"], payload: { text: "C" } },
		{ id: "approve", kind: "wait", label: "Approval", depends_on: ["c"], trigger: { type: "manual" } },
	],
};

const store_steps = () =>
	page.evaluate(() => flow_engine.editor.store.definition.steps.map((s) => [s.id, s.depends_on.join(",")]));

async function menu(label) {
	await page.locator(".page-actions .menu-btn-group > button:visible").click();
	await page.locator(".page-actions .menu-btn-group .dropdown-item:visible", { hasText: label }).click();
}

step("import JSON, move, duplicate, delete, undo/redo, connect and disconnect, export", async () => {
	await call(page, "flow_engine.desk.create_flow", { template_name: FLOW2, trigger_doctype: "ToDo", trigger_event: "manual" });
	await desk(page, `flow-editor/${encodeURIComponent(FLOW2)}`);
	await page.waitForSelector('[data-role="trigger-panel"]');

	await menu("Import JSON");
	const dialog = page.locator(".modal.show", { hasText: "Import JSON" });
	await dialog.waitFor();
	await page.waitForFunction(() => window.cur_dialog && cur_dialog.fields_dict.json);
	await page.evaluate((text) => {
		const field = cur_dialog.fields_dict.json;
		field.set_value(text);
	}, JSON.stringify(IMPORTED));
	await sleep(300);
	await dialog.locator(".btn-primary").click();
	await page.waitForFunction(() => document.querySelectorAll(".flow-node").length === 4);
	assert.deepEqual(await store_steps(), [["a", ""], ["b", "a"], ["c", "b"], ["approve", "c"]]);

	// move "Second" up: the chain is rewritten
	await select_node("b");
	await page.locator('[data-action="move-up"]').click();
	assert.deepEqual(await store_steps(), [["b", ""], ["a", "b"], ["c", "a"], ["approve", "c"]]);
	await page.locator('[data-action="move-down"]').click();
	assert.deepEqual(await store_steps(), [["a", ""], ["b", "a"], ["c", "b"], ["approve", "c"]]);

	// duplicate, delete the copy, undo brings it back, redo removes it again
	await select_node("c");
	await page.locator('[data-action="duplicate"]').click();
	await page.waitForSelector('[data-step-panel="comment_1"]');
	assert.equal(await page.locator(".flow-node").count(), 5);
	await page.locator('[data-action="delete"]').click();
	await page.waitForFunction(() => document.querySelectorAll(".flow-node").length === 4);
	await page.locator('[data-action="undo"]').click();
	await page.waitForFunction(() => document.querySelectorAll(".flow-node").length === 5);
	await page.locator('[data-action="redo"]').click();
	await page.waitForFunction(() => document.querySelectorAll(".flow-node").length === 4);

	// connect a → c by dragging from a's output handle to c's input handle
	await page.locator(".flow-canvas .flow-zoom button", { hasText: "Fit" }).click();
	await sleep(400);
	// move "Third" aside first, so that the new edge does not run behind "Second"
	const third = await page.locator('.flow-node[data-step="c"]').boundingBox();
	await page.mouse.move(third.x + 80, third.y + 20);
	await page.mouse.down();
	await page.mouse.move(third.x + 380, third.y + 20, { steps: 10 });
	await page.mouse.up();
	await sleep(300);
	const from = await page.locator('.flow-node[data-step="a"] .vue-flow__handle.source').boundingBox();
	const to = await page.locator('.flow-node[data-step="c"] .vue-flow__handle.target').boundingBox();
	await page.mouse.move(from.x + from.width / 2, from.y + from.height / 2);
	await page.mouse.down();
	await page.mouse.move(to.x + to.width / 2, to.y + to.height / 2, { steps: 12 });
	await page.mouse.up();
	await page.waitForFunction(() => flow_engine.editor.store.definition.steps.find((s) => s.id === "c").depends_on.includes("a"));
	// select that edge and remove it
	const point = await page.evaluate(() => {
		const path = document.querySelector('.vue-flow__edge[data-id="d:a>c"] path.vue-flow__edge-path');
		const p = path.getPointAtLength(path.getTotalLength() * 0.5);
		const m = path.getScreenCTM();
		return { x: p.x * m.a + m.e, y: p.y * m.d + m.f };
	});
	await page.mouse.click(point.x, point.y);
	await page.locator('[data-action="disconnect"]').click();
	assert.deepEqual(await store_steps(), [["a", ""], ["b", "a"], ["c", "b"], ["approve", "c"]]);

	// export shows (and downloads) the definition
	await menu("Export JSON");
	const exported = page.locator(".modal.show", { hasText: "Export JSON" });
	await exported.waitFor();
	await page.waitForFunction(() => window.cur_dialog && cur_dialog.fields_dict.json);
	const text = await page.evaluate(() => cur_dialog.get_value("json"));
	assert.deepEqual(JSON.parse(text).steps.map((s) => s.id), ["a", "b", "c", "approve"]);
	await exported.locator(".btn-modal-close").click();
	assert.deepEqual(page.errors, []);
});

step("unsaved changes are guarded when leaving the editor", async () => {
	assert.equal(await page.evaluate(() => flow_engine.editor.store.dirty), true);
	await page.evaluate(() => frappe.set_route("List", "ToDo"));
	const confirm = page.locator(".modal.show", { hasText: "unsaved changes" });
	await confirm.waitFor();
	await confirm.locator(".btn-modal-secondary, .btn-secondary").first().click();
	await page.waitForURL(/flow-editor/);
	await page.waitForSelector(".flow-node");
	assert.equal(await page.locator(".flow-node").count(), 4, "the edits are still there");
	assert.equal(await page.evaluate(() => flow_engine.editor.store.dirty), true);
	await page.locator(".page-actions .primary-action:visible").click();
	await page.waitForFunction(() => flow_engine.editor.store.dirty === false);
	assert.equal((await template2()).has_draft, 1);
	assert.match(await publish_in_editor(), /approve/);
	assert.equal((await template2()).step_count, 4);

	// another edit, then open another flow and discard: the other flow opens, nothing was saved
	await select_node("c");
	await page.locator('[data-action="duplicate"]').click();
	await page.waitForFunction(() => flow_engine.editor.store.dirty === true);
	await page.evaluate((name) => frappe.set_route("flow-editor", name), FLOW);
	const discard = page.locator(".modal.show", { hasText: "unsaved changes" });
	await discard.waitFor();
	await discard.locator(".btn-primary").click();
	await page.waitForFunction((name) => flow_engine.editor && flow_engine.editor.name === name && !flow_engine.editor.store.loading, FLOW);
	await page.waitForSelector('.flow-node[data-step="condition_1"]');
	assert.equal((await template2()).step_count, 4, "the discarded edit was not saved");
});

async function template2() {
	return call(page, "frappe.client.get", { doctype: "Flow Template", name: FLOW2 });
}

step("run a flow from a form's Flows menu; complete the parked manual step and cancel a run in the run view", async () => {
	const todo = await call(page, "frappe.client.insert", {
		doc: { doctype: "ToDo", description: `Manual ${TAG}`, priority: "Low" },
	});
	await desk(page, `todo/${todo.name}`);
	await page.locator('.inner-group-button[data-label="Flows"] button').click();
	await page.locator('.inner-group-button[data-label="Flows"] .dropdown-item', { hasText: "Run a flow on this document" }).click();
	const dialog = page.locator(".modal.show", { hasText: "Run a flow" });
	await dialog.waitFor();
	await page.waitForFunction(() => window.cur_dialog && cur_dialog.fields_dict.template);
	await page.evaluate((name) => cur_dialog.set_value("template", name), FLOW2);
	await sleep(500);
	await dialog.locator(".btn-primary").click();
	await page.waitForURL(/flow-editor\/run\//);
	await page.waitForSelector('[data-role="run-panel"]');
	await page.waitForSelector('[data-action="complete-approve"]', { timeout: 30000 });
	assert.match(await page.locator('[data-role="run-status"]').textContent(), /waiting/);
	await shot(page, "run-manual.png");
	await page.locator('[data-action="complete-approve"]').click();
	const complete = page.locator(".modal.show", { hasText: "Complete step Approval" });
	await complete.waitFor();
	await complete.locator(".btn-primary").click();
	await page.waitForFunction(() => /completed/.test(document.querySelector('[data-role="run-status"]').textContent), null, { timeout: 30000 });
	assert.equal(await page.locator('.flow-node[data-step="approve"]').getAttribute("data-status"), "completed");

	// a second run: cancel it from the run view
	const run = await call(page, "flow_engine.api.start_run", { template: FLOW2, reference_doctype: "ToDo", reference_name: todo.name });
	await desk(page, `flow-editor/run/${run}`);
	await page.waitForSelector('[data-action="cancel"]', { timeout: 30000 });
	await page.locator('[data-action="cancel"]').click();
	await page.locator(".modal.show .btn-primary", { hasText: "Yes" }).click();
	await page.waitForFunction(() => /cancelled/.test(document.querySelector('[data-role="run-status"]').textContent), null, { timeout: 30000 });
	assert.deepEqual(page.errors, []);
});

step("a failed run shows the error on its step; Retry runs it again", async () => {
	const name = `${FLOW} failing`;
	await call(page, "flow_engine.desk.create_flow", { template_name: name });
	const saved = await call(page, "flow_engine.desk.save_flow", {
		publish: 1,
		template: name,
		definition: JSON.stringify({
			version: 1,
			trigger: { event: "manual" },
			steps: [
				{
					id: "ping",
					kind: "webhook",
					label: "Ping a closed port",
					payload: { url: "http://127.0.0.1:9/flow", method: "POST", timeout: 2 },
					retry: { max_attempts: 1 },
				},
			],
		}),
	});
	assert.equal(saved.saved, true, JSON.stringify(saved.errors));
	const run = await call(page, "flow_engine.api.start_run", { template: name });
	await desk(page, `flow-editor/run/${run}`);
	await page.waitForSelector('[data-role="run-panel"]');
	await wait_for_run(run, ["failed"]);
	await page.waitForFunction(() => /failed/.test(document.querySelector('[data-role="run-status"]').textContent), null, { timeout: 30000 });
	assert.match(await page.locator('[data-role="run-error"]').textContent(), /ping/);
	await page.locator('.flow-node[data-step="ping"]').click();
	await page.waitForSelector('[data-run-step="ping"]');
	assert.equal(await page.locator("[data-attempt]").count(), 1);
	await shot(page, "run-failed.png");
	await page.locator('[data-action="retry"]').click();
	await wait_for_run(run, ["failed"], 10);
	await page.waitForFunction(() => document.querySelectorAll("[data-attempt]").length === 2, null, { timeout: 30000 });
	await page.waitForFunction(() => /failed/.test(document.querySelector('[data-role="run-status"]').textContent), null, { timeout: 30000 });
	await call(page, "frappe.client.delete", { doctype: "Flow Template", name }).catch(() => {});
	assert.deepEqual(page.errors, []);
});

step("the Flow Engine workspace shows run counts", async () => {
	// a run parked on a manual step: at least one run is waiting, so a stale or empty pill cannot pass
	const parked = `${FLOW} parked`;
	await call(page, "flow_engine.desk.create_flow", { template_name: parked });
	const saved = await call(page, "flow_engine.desk.save_flow", {
		publish: 1,
		template: parked,
		definition: JSON.stringify({
			version: 1,
			trigger: { event: "manual" },
			steps: [{ id: "approve", kind: "wait", trigger: { type: "manual" } }],
		}),
	});
	assert.equal(saved.saved, true, JSON.stringify(saved.errors));
	const run = await call(page, "flow_engine.api.start_run", { template: parked });
	await wait_for_run(run, ["waiting"]);

	const pills = { Running: "running", Waiting: "waiting", Failed: "failed" };
	let shown, counts;
	for (let attempt = 0; attempt < 3; attempt++) {
		// the counts of the server before and after reading the pills: equal unless a run moved meanwhile
		const before = await call(page, "flow_engine.desk.run_counts");
		await desk(page, "flow-engine");
		shown = {};
		for (const label of Object.keys(pills)) {
			const pill = page.locator(`.shortcut-widget-box[aria-label="${label}"] .indicator-pill`);
			await pill.waitFor({ timeout: 30000 });
			shown[label] = (await pill.textContent()).trim();
		}
		counts = await call(page, "flow_engine.desk.run_counts");
		if (JSON.stringify(before) === JSON.stringify(counts)) break;
	}
	assert.ok(counts.waiting >= 1, JSON.stringify(counts));
	for (const [label, status] of Object.entries(pills)) {
		assert.equal(shown[label], `${counts[status]} ${label}`, `the ${label} pill (server: ${JSON.stringify(counts)})`);
	}
	assert.match(await page.locator(".layout-main-section").textContent(), /Flow Editor/);
	// the workspace's number cards and charts load after the page: let them finish before leaving (a
	// chart still drawing when Desk routes away throws from Frappe's chart code, not ours)
	await page.waitForFunction(
		() => [...document.querySelectorAll(".widget.dashboard-widget-box")].every((w) => w.querySelector("svg, .chart-empty-state, .widget-body .number")),
		null,
		{ timeout: 20000 }
	).catch(() => {});
	await sleep(1500);
	await shot(page, "workspace.png");
	await call(page, "flow_engine.api.cancel_run", { run }).catch(() => {});
	for (const name of [parked, FLOW2]) {
		await call(page, "frappe.client.delete", { doctype: "Flow Template", name }).catch(() => {});
	}
	assert.deepEqual(page.errors, []);
});

step("the failure inbox: bulk retry of a group, then replay from the failed step with edited input", async () => {
	const name = `${FLOW} inbox`;
	await call(page, "flow_engine.desk.create_flow", { template_name: name });
	const saved = await call(page, "flow_engine.desk.save_flow", {
		publish: 1,
		template: name,
		definition: JSON.stringify({
			version: 1,
			trigger: { event: "manual" },
			steps: [
				{ id: "make", kind: "create_doc", payload: { doctype: "ToDo", fields: { description: `Inbox {{input.n}} ${TAG}` } } },
				{
					id: "close",
					kind: "update_doc",
					depends_on: ["make"],
					payload: { doctype: "ToDo", name: "{{input.todo}}", fields: { status: "Closed" } },
				},
			],
		}),
	});
	assert.equal(saved.saved, true, JSON.stringify(saved.errors));
	const runs = [];
	for (const n of [1, 2]) {
		runs.push(await call(page, "flow_engine.api.start_run", { template: name, input: JSON.stringify({ n, todo: `missing-${n}` }) }));
	}
	for (const run of runs) await wait_for_run(run, ["failed"]);

	await desk(page, "flow-inbox");
	await page.waitForSelector(".flow-inbox");
	await page.locator('.page-form [data-fieldname="template"] input').fill(name);
	await page.locator('.page-form [data-fieldname="template"] input').press("Tab");
	const flow = page.locator(`.inbox-flow[data-template="${name}"]`);
	await flow.waitFor({ timeout: 20000 });
	assert.equal(await flow.locator("tr[data-run]").count(), 2, "two failures, one group");
	assert.equal(await flow.locator(".inbox-group").count(), 1);
	await shot(page, "inbox.png");

	// bulk retry: select the group, retry, confirm; each run is retried (and fails again: nothing was fixed)
	await flow.locator(".select-group").check();
	await page.locator(".page-actions .primary-action:visible").click();
	await page.locator(".modal.show .btn-primary", { hasText: "Yes" }).click();
	for (const run of runs) {
		for (let i = 0; i < 60; i++) {
			const attempts = await call(page, "frappe.client.get_count", { doctype: "Flow Step Attempt", filters: { run, step_id: "close" } });
			if (attempts === 2) break;
			await sleep(500);
		}
		await wait_for_run(run, ["failed"]);
		const notes = await call(page, "frappe.client.get_list", {
			doctype: "Comment",
			filters: { reference_doctype: "Flow Run", reference_name: run, comment_type: "Info" },
			fields: ["content"],
		});
		assert.ok(notes.some((c) => /Retried by Administrator/.test(c.content)), `retry recorded on ${run}`);
		assert.equal(
			await call(page, "frappe.client.get_count", { doctype: "Flow Step Attempt", filters: { run, step_id: "close" } }),
			2,
			`${run} was retried once`
		);
	}

	// replay the first run from its failed step, with the ToDo to close edited in
	const target = await call(page, "frappe.client.insert", { doc: { doctype: "ToDo", description: `Replay target ${TAG}` } });
	await desk(page, "flow-inbox");
	await page.waitForSelector(".flow-inbox");
	await page.locator('.page-form [data-fieldname="template"] input').fill(name);
	await page.locator('.page-form [data-fieldname="template"] input').press("Tab");
	const row = page.locator(`tr[data-run="${runs[0]}"]`);
	await row.waitFor({ timeout: 20000 });
	await row.locator(".replay-step").click();
	const dialog = page.locator(".modal.show.flow-replay-dialog");
	await dialog.waitFor();
	await page.waitForFunction(() => window.cur_dialog && cur_dialog.fields_dict.payload);
	const start = JSON.parse(await page.evaluate(() => cur_dialog.get_value("payload")));
	assert.equal(start.name, "missing-1", "the dialog starts from the failed attempt's input");
	await page.evaluate((todo) => {
		const payload = JSON.parse(cur_dialog.get_value("payload"));
		payload.name = todo;
		cur_dialog.set_value("payload", JSON.stringify(payload, null, 2));
	}, target.name);
	await sleep(300);
	await shot(page, "inbox-replay.png");
	await dialog.locator(".modal-footer .btn-primary").click();
	await wait_for_run(runs[0], ["completed"]);
	assert.equal((await call(page, "frappe.client.get", { doctype: "ToDo", name: target.name })).status, "Closed");
	const notes = await call(page, "frappe.client.get_list", {
		doctype: "Comment",
		filters: { reference_doctype: "Flow Run", reference_name: runs[0], comment_type: "Info" },
		fields: ["content"],
	});
	assert.ok(notes.some((c) => /Replayed from step 'close' by Administrator with edited input/.test(c.content)));
	for (const run of runs) await call(page, "flow_engine.api.cancel_runs", { runs: JSON.stringify([run]) }).catch(() => {});
	await call(page, "frappe.client.delete", { doctype: "Flow Template", name }).catch(() => {});
	assert.deepEqual(page.errors, []);
});
