// Shared helpers of the browser tier: headless Debian Chromium driven by playwright-core.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const BASE = process.env.FLOW_BROWSER_URL || "http://erp.localhost:8010";
export const SITE = process.env.FLOW_BROWSER_SITE || "erp.localhost";
export const BENCH = process.env.FLOW_ENGINE_BENCH || "/home/frappe/frappe-bench";
export const ARTIFACTS = path.join(ROOT, "artifacts");
export const USER = process.env.FLOW_BROWSER_USER || "Administrator";
export const PASSWORD = process.env.FLOW_BROWSER_PASSWORD || "admin";

export async function launch() {
	const browser = await chromium.launch({
		executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
		args: [
			"--headless",
			"--no-sandbox",
			"--disable-gpu",
			"--disable-quic",
			"--no-first-run",
			"--disable-background-networking",
			"--disable-component-update",
			"--disable-sync",
		],
	});
	const context = await browser.newContext({ viewport: { width: 1500, height: 950 } });
	const page = await context.newPage();
	page.errors = [];
	page.leaving = false;
	page.on("pageerror", (error) => {
		// a document being navigated away from may throw while it is torn down (a chart or a poll in
		// flight): that is not an error of the page under test
		if (page.leaving) return;
		page.errors.push(String(error) + (process.env.FLOW_BROWSER_STACKS ? `\n${error.stack}` : ""));
	});
	return { browser, context, page };
}

export async function login(page) {
	// log in from the page (Chromium resolves *.localhost itself; Node may not)
	await page.goto(`${BASE}/login`);
	const status = await page.evaluate(
		async ([usr, pwd]) => {
			const r = await fetch("/api/method/login", {
				method: "POST",
				headers: { "Content-Type": "application/json", Accept: "application/json" },
				body: JSON.stringify({ usr, pwd }),
			});
			return r.status;
		},
		[USER, PASSWORD]
	);
	if (status !== 200) throw new Error(`login failed: ${status}`);
}

/** Call a whitelisted method from inside Desk (session cookie, CSRF token). */
export async function call(page, method, args = {}) {
	const out = await page.evaluate(
		async ([method, args]) => {
			try {
				const r = await frappe.call({ method, args, freeze: false });
				return { message: r.message };
			} catch (e) {
				const server = (frappe.last_response && frappe.last_response._server_messages) || "";
				return { error: `${method}: ${e && (e.message || e.exc_type || JSON.stringify(e))} ${server}`.slice(0, 2000) };
			}
		},
		[method, args]
	);
	if (out.error) throw new Error(out.error);
	return out.message;
}

export async function desk(page, route) {
	page.leaving = true;
	try {
		await page.goto(`${BASE}/app/${route}`);
	} finally {
		page.leaving = false;
	}
	await page.waitForFunction(() => window.frappe && frappe.boot && frappe.router, null, { timeout: 60000 });
}

export async function shot(page, name) {
	fs.mkdirSync(ARTIFACTS, { recursive: true });
	const file = path.join(ARTIFACTS, name);
	await quiet(page);
	await page.screenshot({ path: file });
	return file;
}

/** Run a bench command as the bench owner (e.g. `flow tick`). */
export function bench(...args) {
	const command = `cd ${BENCH} && bench --site ${SITE} ${args.map((a) => `'${a}'`).join(" ")}`;
	const asRoot = process.getuid && process.getuid() === 0;
	return execFileSync(
		asRoot ? "runuser" : "bash",
		asRoot ? ["-u", "frappe", "--", "bash", "-lc", command] : ["-lc", command],
		{ encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }
	);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Drop toasts so screenshots show the page. */
export async function quiet(page) {
	await page.evaluate(() => document.querySelectorAll("#alert-container .alert, .desk-alert").forEach((e) => e.remove()));
}
