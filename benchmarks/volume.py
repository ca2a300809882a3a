"""Benchmark v (issue #16 row 4): the Desk's run surfaces at volume, and retention beside new runs.

With 200,000 Flow Runs and 1,000,000 Flow Step Attempts on the site (generated once in bulk SQL and
kept: their flows are named "_benchvol …", which run.py's cleanup of "_bench …" flows leaves alone),
each surface the Desk calls is timed in process through its whitelisted entry point, as Administrator
and as a Flow Manager who is not a System Manager (and the document's runs also as a user who may only
read the document), with EXPLAIN of every SELECT it issued. Then retention deletes ~100,000 old rows
while another process starts runs, one commit each, and their latency is recorded.

    runuser -u frappe -- ~/frappe-bench/env/bin/python benchmarks/volume.py --site hB.localhost [--smoke]

Targets: each surface < 100 ms (median), no full scan or filesort over a large row count; no new run's
insert waits more than 1 s while retention deletes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VOLUME = "_benchvol "  # not matched by run.py's `like '_bench %'` cleanup: the volume is kept
RUNS, ATTEMPTS = 200_000, 1_000_000
SMOKE_RUNS = 5_000
CHUNK = 2_000  # runs (and their attempts) per INSERT batch and commit
DELETE_ROWS = 100_000  # rows retention removes in the deletion benchmark (runs + their attempts)
MANAGER = "volume-manager@bench.invalid"
READER = "volume-reader@bench.invalid"
READER_DOC = "[benchvol] the reader's document"
# (template suffix, weight): a few busy flows and a tail of quiet ones
FLOWS = [
	("order confirmation", 30),
	("invoice reminder", 20),
	("lead follow-up", 15),
	("issue triage", 12),
	("stock alert", 10),
	("quotation chase", 7),
	("nightly sync", 4),
	("rare cleanup", 2),
]
STATUSES = [
	("completed", 80),
	("failed", 10),
	("cancelled", 3),
	("waiting", 4),
	("running", 2),
	("queued", 1),
]
DOCTYPES = [
	("Sales Order", "SO-BENCH-"),
	("Sales Invoice", "SINV-BENCH-"),
	("Customer", "CUST-BENCH-"),
	("Quotation", "QTN-BENCH-"),
	("Issue", "ISS-BENCH-"),
]
ERRORS = [
	"ValidationError: Customer '{doc}' has no email address",
	"LinkValidationError: Could not find Item: ITEM-{n}",
	"TimeoutError: https://api.example.com/orders/{n} did not answer within 30 s",
	"PermissionError: User 'ops{n}@example.com' may not write Sales Order '{doc}'",
	"DuplicateEntryError: ToDo '{n}' already exists",
]
STEP_KINDS = ["set_variables", "create_doc", "update_doc", "send_email", "http_request", "condition", "wait"]
results: dict[str, dict] = {}


# the suite's own helpers (benchmarks/run.py: this module runs inside it or alone beside it)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import connect, log, percentile

# ---------------------------------------------------------------- the volume


def flow_steps(count: int = 5) -> list[dict]:
	return [
		{"id": f"s{i}", "kind": "set_variables", "payload": {"variables": {f"v{i}": i}}}
		| ({"depends_on": [f"s{i - 1}"]} if i else {})
		for i in range(count)
	]


def ensure_templates() -> list[str]:
	"""The volume's flows (inactive, 3 published versions each), created once."""
	import frappe

	names = []
	for suffix, _weight in FLOWS:
		name = VOLUME + suffix
		names.append(name)
		if frappe.db.exists("Flow Template", name):
			continue
		frappe.get_doc(
			{
				"doctype": "Flow Template",
				"template_name": name,
				"trigger_event": "manual",
				"is_active": 0,
				"flow_definition": json.dumps({"steps": flow_steps()}),
			}
		).insert()
		first = frappe.db.get_value("Flow Template Version", {"template": name}, "name", order_by="version")
		if first:  # versions 2 and 3: copies of the first (runs are pinned to all three)
			columns = [row[0] for row in frappe.db.sql("show columns from `tabFlow Template Version`")]
			for version in (2, 3):
				select = [
					"concat(template, '-v', %(v)s)"
					if c == "name"
					else "%(v)s"
					if c == "version"
					else f"`{c}`"
					for c in columns
				]
				frappe.db.sql(
					f"""insert ignore into `tabFlow Template Version` ({", ".join(f"`{c}`" for c in columns)})
					select {", ".join(select)} from `tabFlow Template Version` where name=%(first)s""",
					{"v": version, "first": first},
				)
			frappe.db.sql("update `tabFlow Template` set version=3 where name=%s", (name,))
	frappe.db.commit()
	return names


def weighted(pairs):
	values = [value for value, _ in pairs]
	weights = [weight for _, weight in pairs]
	return lambda rng: rng.choices(values, weights)[0]


RUN_COLUMNS = (
	"name creation modified modified_by owner docstatus idx template status template_version "
	"reference_doctype reference_name trigger_event source started_by depth started_at completed_at "
	"waves steps_executed error input variables start_variables step_state lease_until lease_owner "
	"infra_failures deadline_alerted"
).split()
ATTEMPT_COLUMNS = (
	"name creation modified modified_by owner docstatus idx run step_id kind attempt status started_at "
	"duration_ms idempotency_key input output error"
).split()


def fake_runs(rng: random.Random, count: int, templates: list[str], now) -> tuple[list, list]:
	"""`count` runs and their attempts (5 a run on average) as rows for RUN_COLUMNS / ATTEMPT_COLUMNS."""
	import datetime

	pick_template = weighted(list(zip(templates, [w for _, w in FLOWS], strict=True)))
	pick_status = weighted(STATUSES)
	run_rows, attempt_rows = [], []
	for _ in range(count):
		status = pick_status(rng)
		age = rng.random() * 365 if status in ("completed", "failed", "cancelled") else rng.random() * 2
		created = now - datetime.timedelta(days=age)
		name = f"FR-{created:%y%m%d}-{rng.getrandbits(32):08x}"
		if rng.random() < 0.9:
			doctype, prefix = rng.choice(DOCTYPES)
			docname = f"{prefix}{rng.randrange(40_000):06d}"
			event = rng.choice(["after_insert", "on_update", "on_submit"])
			source = "event"
		else:
			doctype = docname = None
			event, source = "manual", rng.choice(["user", "api", "schedule"])
		steps = rng.randint(3, 8)  # mean 5.5 (with retries of failed steps, ~5 attempts a run)
		reached = steps if status == "completed" else rng.randint(1, steps)
		states, clock_ = {}, created
		error = None
		for index in range(reached):
			sid = f"s{index}"
			last = index == reached - 1
			failed = status == "failed" and last
			open_ = status in ("waiting", "running", "queued") and last
			tries = rng.randint(2, 3) if failed else 1
			for attempt in range(1, tries + 1):
				duration = rng.uniform(1, 400)
				started = clock_
				clock_ = clock_ + datetime.timedelta(milliseconds=duration + rng.uniform(1, 50))
				attempt_failed = failed or (tries > 1 and attempt < tries)
				text = None
				if attempt_failed:
					text = rng.choice(ERRORS).format(doc=docname or "CUST-X", n=rng.randrange(10_000))
					text += (
						'\nTraceback (most recent call last):\n  File "flow_engine/runtime/steps.py", line 212, in execute\n'
						* 2
					)
				attempt_rows.append(
					(
						f"{rng.getrandbits(48):012x}",
						started,
						clock_,
						"Administrator",
						"Administrator",
						0,
						0,
						name,
						sid,
						rng.choice(STEP_KINDS),
						attempt,
						"failed"
						if attempt_failed and attempt == tries
						else "retrying"
						if attempt_failed
						else "completed",
						started,
						duration,
						f"{name}:{sid}:{attempt}",
						json.dumps({"doctype": doctype, "name": docname, "fields": {"status": "Open"}}),
						None if attempt_failed else json.dumps({"name": docname, "ok": True, "n": index}),
						text,
					)
				)
				if attempt_failed and attempt == tries:
					error = text
			state = {"status": "failed" if failed else "waiting" if open_ else "completed", "attempts": tries}
			state["started_at"] = str(created)
			if failed:
				state["error"] = error.splitlines()[0]
			elif not open_:
				state.update(completed_at=str(clock_), result={"variables": {sid: index}})
			states[sid] = state
		ended = status in ("completed", "failed", "cancelled")
		modified = clock_ if ended else created
		run_rows.append(
			(
				name,
				created,
				modified,
				"Administrator",
				"Administrator",
				0,
				0,
				pick_template(rng),
				status,
				rng.choice([1, 2, 3]),
				doctype,
				docname,
				event,
				source,
				"Administrator",
				0,
				created,
				clock_ if ended else None,
				reached,
				reached,
				(error.splitlines()[0] if error else None) if status == "failed" else None,
				json.dumps({"total": rng.randrange(10_000)}),
				json.dumps({"customer": f"CUST-{rng.randrange(5000)}", "step": reached}),
				"{}",
				json.dumps(states, separators=(",", ":")),
				# open runs hold a far lease: no tick or sweep of this site ever advances them
				None if ended else datetime.datetime(2099, 1, 1),
				None if ended else "bench-volume",
				0,
				0,
			)
		)
	return run_rows, attempt_rows


def insert_rows(table: str, columns: list[str], rows: list) -> None:
	import frappe

	sql = f"insert into `{table}` ({', '.join(f'`{c}`' for c in columns)}) values ({', '.join(['%s'] * len(columns))})"
	frappe.db._cursor.executemany(sql, rows)  # pymysql batches these into multi-row INSERTs


def volume_runs() -> int:
	import frappe

	return frappe.db.sql("select count(*) from `tabFlow Run` where template like %s", (VOLUME + "%",))[0][0]


def ensure_volume(smoke: bool) -> dict:
	"""Top the volume up to its size (everything the first time; what the last deletion removed after)."""
	import frappe

	from flow_engine.runtime import clock

	target = SMOKE_RUNS if smoke else RUNS
	templates = ensure_templates()
	have = volume_runs()
	missing = max(target - have, 0)
	start = time.monotonic()
	if missing:
		log(f"v: generating {missing} runs (have {have}) with ~{missing * 5} attempts in bulk SQL")
		rng = random.Random(have)
		now = clock.now()
		for done in range(0, missing, CHUNK):
			run_rows, attempt_rows = fake_runs(rng, min(CHUNK, missing - done), templates, now)
			insert_rows("tabFlow Run", RUN_COLUMNS, run_rows)
			insert_rows("tabFlow Step Attempt", ATTEMPT_COLUMNS, attempt_rows)
			frappe.db.commit()
			if done and done % 50_000 < CHUNK:
				log(f"v: {done} runs")
		frappe.db.sql("analyze table `tabFlow Run`, `tabFlow Step Attempt`")
	ensure_users()
	seconds = time.monotonic() - start
	attempts = frappe.db.sql(
		"""select count(*) from `tabFlow Step Attempt` a join `tabFlow Run` r on a.run = r.name
		where r.template like %s""",
		(VOLUME + "%",),
	)[0][0]
	return {
		"runs": volume_runs(),
		"attempts": attempts,
		"generated_runs": missing,
		"generate_s": round(seconds, 1),
		"runs_on_site": frappe.db.sql("select count(*) from `tabFlow Run`")[0][0],
		"attempts_on_site": frappe.db.sql("select count(*) from `tabFlow Step Attempt`")[0][0],
	}


def ensure_users() -> None:
	"""A Flow Manager who is not a System Manager, and a user who may read one ToDo (no flow role), with
	200 of the volume's runs on that ToDo."""
	import frappe

	for email, role in ((MANAGER, "Flow Manager"), (READER, "Sales User")):  # (a desk user, no flow role)
		if not frappe.db.exists("User", email):
			frappe.get_doc(
				{
					"doctype": "User",
					"email": email,
					"first_name": email.split("@")[0],
					"send_welcome_email": 0,
				}
			).insert(ignore_permissions=True)
		if role not in frappe.get_roles(email):
			frappe.get_doc("User", email).add_roles(role)
	todo = frappe.db.get_value("ToDo", {"description": READER_DOC}, "name")
	if not todo:
		todo = (
			frappe.get_doc(
				{"doctype": "ToDo", "description": READER_DOC, "allocated_to": READER, "assigned_by": MANAGER}
			)
			.insert(ignore_permissions=True)
			.name
		)
	frappe.db.set_value("ToDo", todo, {"allocated_to": READER, "assigned_by": MANAGER})  # both may read it
	if frappe.db.count("Flow Run", {"reference_doctype": "ToDo", "reference_name": todo}) < 200:
		frappe.db.sql(
			"""update `tabFlow Run` set reference_doctype='ToDo', reference_name=%s
			where template like %s and status in ('completed', 'failed') order by creation desc limit 200""",
			(todo, VOLUME + "%"),
		)
	frappe.db.commit()


def reader_doc() -> str:
	import frappe

	return frappe.db.get_value("ToDo", {"description": READER_DOC}, "name")


# ---------------------------------------------------------------- query capture and EXPLAIN


class Capture:
	"""Records every SELECT frappe.db.sql runs while on (to EXPLAIN them afterwards)."""

	def __init__(self):
		import frappe

		self.db = frappe.db
		self.original = frappe.db.sql
		self.queries: list[tuple[str, object]] = []
		self.on = False

		def sql(query, values=(), *args, **kwargs):
			if self.on:
				text = str(query)
				if text.lstrip().lower().startswith("select"):
					self.queries.append((text, values))
			return self.original(query, values, *args, **kwargs)

		frappe.db.sql = sql

	def close(self):
		self.db.sql = self.original


LARGE = 5_000  # rows an EXPLAIN may read with a filesort or full scan before we flag it


def explain(capture: Capture, queries: list[tuple[str, object]]) -> list[dict]:
	"""EXPLAIN each distinct query; the plan rows on Flow tables, flagged when large and unindexed."""
	seen, plans = set(), []
	for text, values in queries:
		key = " ".join(text.split())
		if key in seen or "tabFlow" not in text:
			continue
		seen.add(key)
		try:
			rows = capture.original("explain " + text, values, as_dict=True)
		except Exception as error:  # a query EXPLAIN cannot take: report it
			plans.append({"query": key[:300], "error": repr(error)[:200]})
			continue
		for row in rows:
			table = row.get("table") or ""
			estimate = int(row.get("rows") or 0)
			extra = row.get("Extra") or ""
			flags = []
			# (a scan under a LIMIT with nothing to sort stops at the limit: the list's count of 1001)
			stops = " limit " in key.lower() and "filesort" not in extra and "temporary" not in extra
			if row.get("type") in ("ALL", "index") and estimate > LARGE and not stops:
				flags.append(f"full {'scan' if row.get('type') == 'ALL' else 'index scan'}")
			if "filesort" in extra and estimate > LARGE:
				flags.append("filesort")
			if "temporary" in extra and estimate > LARGE:
				flags.append("temporary")
			plans.append(
				{
					"query": key[:300],
					"table": table,
					"type": row.get("type"),
					"key": row.get("key"),
					"rows": estimate,
					"extra": extra,
					"flags": flags,
				}
			)
	return plans


# ---------------------------------------------------------------- the surfaces


LIST_FIELDS = [
	f"`tabFlow Run`.`{f}`"
	for f in (
		"name",
		"owner",
		"creation",
		"modified",
		"modified_by",
		"_user_tags",
		"_comments",
		"_assign",
		"_liked_by",
		"docstatus",
		"idx",
		"template",
		"status",
		"reference_name",
		"reference_doctype",
	)
]


def list_view(filters: list) -> None:
	"""What Frappe's list view asks on opening /app/flow-run (page length 20, default sort), and the
	count beside it (`frappe.db.count` with the list's limit of 1001)."""
	import frappe
	from frappe.desk import reportview

	frappe.local.form_dict = frappe._dict(
		doctype="Flow Run",
		fields=json.dumps(LIST_FIELDS),
		filters=json.dumps(filters),
		order_by="`tabFlow Run`.`creation` desc",
		start=0,
		page_length=20,
		view="List",
		group_by=None,
		with_comment_count=1,
	)
	reportview.get()
	frappe.local.form_dict = frappe._dict(doctype="Flow Run", filters=json.dumps(filters), limit=1001)
	reportview.get_count()


def sidebar_counts(filters: list) -> None:
	"""The list sidebar's group-by dropdowns (Assigned To, Created By): asked when one is opened."""
	from frappe.desk.listview import get_group_by_count

	get_group_by_count("Flow Run", json.dumps(filters), "assigned_to")
	get_group_by_count("Flow Run", json.dumps(filters), "owner")


def form_view(run: str) -> None:
	"""/app/flow-run/<run>: the form's getdoc (document and docinfo) and its child-run count."""
	import frappe
	from frappe.desk.form import load
	from frappe.desk.reportview import get_count

	load.getdoc("Flow Run", run)
	frappe.local.form_dict = frappe._dict(doctype="Flow Run", filters=json.dumps({"parent_run": run}))
	get_count()
	frappe.local.response = frappe._dict(docs=[])


def surfaces(sample: dict) -> dict:
	"""name -> (callable, users it is timed as)."""
	from flow_engine.api import inbox as inbox_api
	from flow_engine.api import insight
	from flow_engine.api import runs as runs_api
	from flow_engine.desk import editor_data

	template, run, failed_run = sample["template"], sample["run"], sample["failed_run"]
	doctype, docname = sample["doctype"], sample["docname"]
	todo = reader_doc()
	managers = ("Administrator", MANAGER)
	return {
		"list: Flow Run (default)": (lambda: list_view([]), managers),
		"list: status = failed": (lambda: list_view([["Flow Run", "status", "=", "failed"]]), managers),
		"list: template": (lambda: list_view([["Flow Run", "template", "=", template]]), managers),
		"list: template + failed": (
			lambda: list_view(
				[["Flow Run", "template", "=", template], ["Flow Run", "status", "=", "failed"]]
			),
			managers,
		),
		"list: sidebar group-by counts": (lambda: sidebar_counts([]), managers),
		"document's runs (Flows menu → list)": (
			lambda: list_view(
				[
					["Flow Run", "reference_doctype", "=", doctype],
					["Flow Run", "reference_name", "=", docname],
				]
			),
			managers,
		),
		"document's runs (api.list_runs, reader)": (
			lambda: runs_api.list_runs(reference_doctype="ToDo", reference_name=todo),
			(*managers, READER),
		),
		"run view (api.get_run + editor_data)": (
			lambda: (runs_api.get_run(failed_run), editor_data(template)),
			managers,
		),
		"run form (getdoc + child count)": (lambda: form_view(run), managers),
		"failure inbox (all flows)": (lambda: inbox_api.failure_inbox(), managers),
		"failure inbox (one flow)": (lambda: inbox_api.failure_inbox(template), managers),
		"failures: template insight": (lambda: insight.template_insight(template), managers),
		"failures: failed runs card": (lambda: insight.failed_runs_card(), managers),
	}


def pick_sample() -> dict:
	import frappe

	template = VOLUME + FLOWS[0][0]
	run = frappe.db.sql(
		"select name from `tabFlow Run` where template=%s order by creation desc limit 1000, 1", (template,)
	)[0][0]
	failed_run = frappe.db.sql(
		"select name from `tabFlow Run` where template=%s and status='failed' order by creation desc limit 1",
		(template,),
	)[0][0]
	doc = frappe.db.sql(
		"""select reference_doctype, reference_name from `tabFlow Run` where template like %s
		and reference_doctype='Sales Order' order by creation desc limit 1""",
		(VOLUME + "%",),
	)[0]
	return {"template": template, "run": run, "failed_run": failed_run, "doctype": doc[0], "docname": doc[1]}


def time_surfaces(calls: int = 20) -> dict:
	import frappe

	sample = pick_sample()
	capture = Capture()
	figures, plans = {}, {}
	try:
		for label, (call, users) in surfaces(sample).items():
			for user in users:
				frappe.set_user(user)
				frappe.local.flow_engine_definitions = {}
				capture.queries, capture.on = [], True
				call()  # warm-up (and the queries to EXPLAIN)
				capture.on = False
				queries = capture.queries
				samples = []
				for _ in range(calls):
					start = time.perf_counter()
					call()
					samples.append((time.perf_counter() - start) * 1000)
					frappe.db.rollback()
				key = f"{label} [{'admin' if user == 'Administrator' else 'manager' if user == MANAGER else 'reader'}]"
				figures[key] = {
					"median_ms": round(statistics.median(samples), 1),
					"p90_ms": round(percentile(samples, 90), 1),
					"queries": len(queries),
				}
				if user == users[0]:
					plans[label] = explain(capture, queries)
				log(f"v: {key}: {figures[key]}")
	finally:
		capture.close()
		frappe.set_user("Administrator")
	return {"surfaces": figures, "explain": plans}


# ---------------------------------------------------------------- deletion beside inserts

INSERT_FLOW = "_bench volume insert"  # run.py's cleanup removes it and its runs


def inserter(site: str, out: str, stop: str) -> None:
	"""Start runs of a one-step flow, one commit each, until `stop` exists; latencies to `out`."""
	connect(site)
	import frappe

	from flow_engine.runtime import runs

	frappe.flags.flow_engine_inline = True  # advanced in this process: no job reaches any worker
	samples = []
	while not os.path.exists(stop):
		started = time.time()
		begin = time.perf_counter()
		runs.start_run(INSERT_FLOW)
		frappe.db.commit()  # (inline: the run's one step is written inside the commit's callback)
		samples.append((started, (time.perf_counter() - begin) * 1000))
		time.sleep(0.01)
	Path(out).write_text(json.dumps(samples))


def deletion_days(rows_wanted: int) -> int:
	"""The retention age (days) that makes ~`rows_wanted` rows (runs and their attempts) old."""
	import frappe

	from flow_engine.runtime import clock

	per_run = frappe.db.sql(
		"select count(*) from `tabFlow Step Attempt` a join `tabFlow Run` r on a.run = r.name where r.template like %s",
		(VOLUME + "%",),
	)[0][0] / max(volume_runs(), 1)
	runs_wanted = int(rows_wanted / (1 + per_run))
	row = frappe.db.sql(
		"""select modified from `tabFlow Run` where status in ('completed', 'cancelled', 'failed')
		order by modified limit %s, 1""",
		(runs_wanted,),
	)
	if not row:
		return 1
	age = clock.now() - row[0][0]
	return max(int(age.total_seconds() // 86400), 1)


def bench_deletion(site: str, smoke: bool) -> dict:
	import frappe

	from flow_engine.runtime import retention

	if not frappe.db.exists("Flow Template", INSERT_FLOW):
		frappe.get_doc(
			{
				"doctype": "Flow Template",
				"template_name": INSERT_FLOW,
				"trigger_event": "manual",
				"is_active": 1,
				"flow_definition": json.dumps({"steps": flow_steps(1)}),
			}
		).insert()
		frappe.db.commit()
	rows_wanted = DELETE_ROWS * SMOKE_RUNS // RUNS if smoke else DELETE_ROWS
	days = deletion_days(rows_wanted)
	out, stop = f"/tmp/flow_volume_insert_{os.getpid()}.json", f"/tmp/flow_volume_stop_{os.getpid()}"
	for path in (out, stop):
		if os.path.exists(path):
			os.remove(path)
	child = subprocess.Popen(
		[sys.executable, str(Path(__file__).resolve()), "--site", site, "--inserter", out, "--stop", stop]
	)
	try:
		time.sleep(3)  # the inserter's own warm-up, and a baseline before deletion starts
		log(f"v: retention with keep_*_days={days} (~{rows_wanted} rows) while runs are inserted")
		begin_wall = time.time()
		begin = time.monotonic()
		report = retention.run(keep_completed_days=days, keep_failed_days=days, keep_step_data_days=0)
		seconds = time.monotonic() - begin
		end_wall = time.time()
		time.sleep(2)
	finally:
		Path(stop).touch()
		child.wait(timeout=120)
	samples = json.loads(Path(out).read_text())
	os.remove(out)
	os.remove(stop)
	for table in ("Flow Step Pending", "Flow Step Attempt"):  # the inserter's runs go (run.py's cleanup too)
		frappe.db.sql(
			f"""delete c from `tab{table}` c join `tabFlow Run` r on c.run = r.name where r.template=%s""",
			(INSERT_FLOW,),
		)
	frappe.db.sql("delete from `tabFlow Run` where template=%s", (INSERT_FLOW,))
	frappe.db.commit()
	during = [ms for at, ms in samples if begin_wall <= at <= end_wall]
	outside = [ms for at, ms in samples if not begin_wall <= at <= end_wall]
	return {
		"retention_days": days,
		"rows_deleted": report["rows_deleted"],
		"runs_deleted": report["runs_deleted"],
		"batches": len(report["batches"]),
		"delete_s": round(seconds, 1),
		"rows_per_s": round(report["rows_deleted"] / seconds) if seconds else None,
		"inserts_during": len(during),
		"insert_p50_ms": round(percentile(during, 50), 1),
		"insert_p99_ms": round(percentile(during, 99), 1),
		"insert_max_ms": round(max(during or [float("nan")]), 1),
		"insert_p50_ms_outside": round(percentile(outside, 50), 1),
		"target": "max insert < 1 s while ~100,000 rows are deleted",
	}


# ---------------------------------------------------------------- entry points


def bench_volume(smoke: bool) -> dict:
	"""Row v: build (or top up) the volume, time the surfaces, delete beside inserts. Connected first.

	Returns flat figures for run.py's table (each surface's median, the slowest, EXPLAIN's flags,
	the deletion's figures) with the targets beside them; every plan is logged."""
	import frappe

	volume = ensure_volume(smoke)
	log(f"v: volume {volume}")
	timed = time_surfaces(5 if smoke else 20)
	for label, rows in timed["explain"].items():
		for plan in rows:
			log(
				f"v: EXPLAIN {label}: {plan.get('table')} type={plan.get('type')} key={plan.get('key')} "
				f"rows={plan.get('rows')} {plan.get('extra') or ''} {plan.get('flags') or ''}| {plan['query'][:120]}"
			)
	medians = {key: value["median_ms"] for key, value in timed["surfaces"].items()}
	slowest = max(medians, key=medians.get)
	flagged = sorted(
		{
			f"{label}: {plan['table']} {'/'.join(plan['flags'])} ~{plan['rows']} rows"
			for label, rows in timed["explain"].items()
			for plan in rows
			if plan.get("flags")
		}
	)
	figures = {
		"runs": volume["runs"],
		"attempts": volume["attempts"],
		"generated_runs": volume["generated_runs"],
		"generate_s": volume["generate_s"],
		"slowest_surface": f"{slowest} {medians[slowest]} ms",
		"surfaces_over_100ms": sum(1 for value in medians.values() if value >= 100),
		"explain_flags": "; ".join(flagged) or "none",
		"surface_target": "median < 100 ms each; EXPLAIN: no full scan / filesort over > 5,000 rows",
		**{f"{key} ms": value for key, value in medians.items()},
	}
	deletion = bench_deletion(frappe.local.site, smoke)
	log(f"v: deletion {deletion}")
	figures.update({f"delete_{key}": value for key, value in deletion.items() if key != "target"})
	figures["delete_target"] = deletion["target"]
	return figures


def main() -> None:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	parser.add_argument("--site", default="erp.localhost")
	parser.add_argument("--smoke", action="store_true")
	parser.add_argument("--only", choices=["volume", "surfaces", "deletion"], help="one part")
	parser.add_argument("--inserter", help=argparse.SUPPRESS)
	parser.add_argument("--stop", help=argparse.SUPPRESS)
	args = parser.parse_args()
	if args.inserter:
		inserter(args.site, args.inserter, args.stop)
		return
	connect(args.site)
	if args.only == "volume":
		out = ensure_volume(args.smoke)
	elif args.only == "surfaces":
		out = time_surfaces(5 if args.smoke else 20)
	elif args.only == "deletion":
		out = bench_deletion(args.site, args.smoke)
	else:
		out = bench_volume(args.smoke)
	print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
	main()
