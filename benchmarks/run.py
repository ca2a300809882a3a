"""flow_engine benchmark suite: figures and side-by-side ratios on one site, one machine, one run.

Run it with the bench's Python, as the bench user (it starts and stops its own workers):

    sudo -u frappe ~/frappe-bench/env/bin/python benchmarks/run.py --site erp.localhost
    ... --smoke            every benchmark at a tiny size (a minute or two)
    ... --only 1,3,6       a subset (numbers as in README "Benchmarks")

Peers (Prefect, n8n) are measured by benchmarks/peers/ when installed (see benchmarks/peers/README.md).
Absolute times only describe (shared, noisy machines); ratios measured side by side decide.
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
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(os.environ.get("FLOW_ENGINE_BENCH", "/home/frappe/frappe-bench"))
SITES = BENCH / "sites"
PREFIX = "_bench "
results: dict[str, dict] = {}
ARGS = argparse.Namespace(recovery_runs=300, recovery_wait=300.0, db_restart_cmd=None, backlog_rows=100_000)


def log(message: str) -> None:
	print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- site plumbing


def connect(site: str) -> None:
	import frappe

	os.chdir(SITES)
	frappe.init(site=site, sites_path=str(SITES))
	frappe.connect()
	frappe.set_user("Administrator")


def make_flow(
	name: str,
	steps: list,
	doctype: str | None = None,
	event: str = "manual",
	condition=None,
	custom_event: str | None = None,
	active: bool = True,
) -> str:
	import frappe

	full = PREFIX + name
	if frappe.db.exists("Flow Template", full):
		frappe.db.delete("Flow Template", {"name": full})
	frappe.get_doc(
		{
			"doctype": "Flow Template",
			"template_name": full,
			"trigger_doctype": doctype,
			"trigger_event": event,
			"custom_event": custom_event,
			"is_active": int(active),
			"trigger_condition": json.dumps(condition) if condition else None,
			"flow_definition": json.dumps({"steps": steps}),
		}
	).insert()
	frappe.db.commit()
	return full


def deactivate_all_bench_flows() -> None:
	import frappe

	from flow_engine.runtime.triggers import clear_trigger_map

	frappe.db.sql("update `tabFlow Template` set is_active=0 where name like %s", (PREFIX + "%",))
	frappe.db.commit()
	clear_trigger_map()


def cleanup() -> None:
	import frappe

	from flow_engine.runtime.triggers import clear_trigger_map

	templates = frappe.get_all("Flow Template", filters={"name": ["like", PREFIX + "%"]}, pluck="name")
	if templates:
		frappe.db.sql(
			"""delete p from `tabFlow Step Pending` p join `tabFlow Run` r on p.run = r.name
			where r.template in %s""",
			(tuple(templates),),
		)
		frappe.db.sql(
			"""delete a from `tabFlow Step Attempt` a join `tabFlow Run` r on a.run = r.name
			where r.template in %s""",
			(tuple(templates),),
		)
		frappe.db.sql("delete from `tabFlow Run` where template in %s", (tuple(templates),))
		frappe.db.sql("delete from `tabFlow Template Version` where template in %s", (tuple(templates),))
		frappe.db.sql("delete from `tabFlow Template` where name in %s", (tuple(templates),))
	frappe.db.sql("delete from `tabToDo` where description like '[bench]%%'")
	frappe.db.sql("delete from `tabNote` where title like '[bench]%%'")
	frappe.db.sql("delete from `tabComment` where content like '[bench]%%'")
	frappe.db.sql("delete from `tabServer Script` where name like '_bench%%'")
	frappe.db.commit()
	clear_trigger_map()


class Workers:
	"""RQ workers for this bench, started and stopped by the benchmark."""

	def __init__(self, count: int, queues: str = "default,short,long", new_session: bool = False):
		self.count, self.queues, self.procs = count, queues, []
		self.new_session = new_session  # own process group: kill() takes the work horse down too

	def __enter__(self):
		for _ in range(self.count):
			self.procs.append(
				subprocess.Popen(
					[
						sys.executable,
						"-m",
						"frappe.utils.bench_helper",
						"frappe",
						"worker",
						"--queue",
						self.queues,
					],
					cwd=SITES,
					stdout=subprocess.DEVNULL,
					stderr=subprocess.DEVNULL,
					start_new_session=self.new_session,
				)
			)
		time.sleep(3)
		return self

	def kill(self, index: int) -> None:
		"""SIGKILL one worker (with its work horse when started in its own session)."""
		import signal

		proc = self.procs[index]
		if self.new_session:
			os.killpg(proc.pid, signal.SIGKILL)
		else:
			proc.kill()
		proc.wait()

	def pids(self) -> list[int]:
		return [proc.pid for proc in self.procs]

	def __exit__(self, *exc):
		for proc in self.procs:
			if proc.poll() is None:
				proc.terminate()
		for proc in self.procs:
			try:
				proc.wait(timeout=20)
			except subprocess.TimeoutExpired:
				proc.kill()


@contextmanager
def production_workers(per_kind: int = 1):
	"""The workers `bench setup production` runs (bench's supervisor template, multi-queue consumption,
	as on Frappe v15): `background_workers` short workers and as many long ones, all serving default."""
	with Workers(per_kind, "short,default"), Workers(per_kind, "long,default,short"):
		yield


def tree_rss_mb(pid: int) -> float:
	"""Resident memory of a process and its children (RQ forks a work horse per job).

	Reads /proc only (no `pgrep` per sample): sampling must not take CPU from the worker it measures.
	"""
	pids = [pid]
	try:
		pids += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
	except OSError:
		pass
	total = 0
	for one in pids:
		try:
			for line in Path(f"/proc/{one}/status").read_text().splitlines():
				if line.startswith("VmRSS:"):
					total += int(line.split()[1])
		except OSError:
			pass
	return total / 1024


def wait_runs(
	template: str,
	count: int,
	timeout: float,
	statuses=("completed",),
	sample=None,
	poll: float = 0.02,
) -> float:
	"""Seconds until `count` runs of `template` reach a final status (raises on timeout or failures).

	`sample`, if given, is called at most every RSS_SAMPLE_INTERVAL seconds while waiting.
	"""
	import frappe

	start = sampled = time.monotonic()
	while True:
		frappe.db.rollback()
		done = frappe.db.count("Flow Run", {"template": template, "status": ["in", [*statuses, "failed"]]})
		if sample and time.monotonic() - sampled >= RSS_SAMPLE_INTERVAL:
			sample()
			sampled = time.monotonic()
		if done >= count:
			failed = frappe.db.count("Flow Run", {"template": template, "status": "failed"})
			if failed:
				error = frappe.db.get_value("Flow Run", {"template": template, "status": "failed"}, "error")
				raise RuntimeError(f"{failed} run(s) of {template} failed: {error}")
			return time.monotonic() - start
		if time.monotonic() - start > timeout:
			raise TimeoutError(f"only {done}/{count} runs of {template} finished in {timeout:.0f}s")
		time.sleep(poll)


RSS_SAMPLE_INTERVAL = 0.5  # seconds: sampling must not take CPU from the worker it measures


def percentile(values: list[float], q: float) -> float:
	values = sorted(values)
	if not values:
		return float("nan")
	index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
	return values[index]


@contextmanager
def common_site_config(**values):
	"""Temporarily set bench-wide config keys (e.g. server_script_enabled lives there)."""
	import frappe
	from frappe.installer import update_site_config

	path = str(SITES / "common_site_config.json")
	old = {key: frappe.get_common_site_config().get(key) for key in values}
	for key, value in values.items():
		update_site_config(key, value, site_config_path=path)
	try:
		yield
	finally:
		for key, value in old.items():
			update_site_config(key, value if value is not None else "None", site_config_path=path)


# ---------------------------------------------------------------- 1 + 2: trigger overhead


def insert_todos(count: int, dispatcher_on: bool, tag: str) -> float:
	"""Seconds to insert `count` ToDos (commit every 50). Off = flow_engine's doc_events not even called."""
	import frappe

	hooks = frappe.get_doc_hooks()
	if not dispatcher_on:
		frappe.local.doc_events_hooks = without_flow_engine(hooks)
	try:
		start = time.perf_counter()
		for index in range(count):
			frappe.get_doc({"doctype": "ToDo", "description": f"[bench] {tag} {index}"}).insert()
			if index % 50 == 49:
				frappe.db.commit()
		frappe.db.commit()
		return time.perf_counter() - start
	finally:
		frappe.local.doc_events_hooks = hooks


def without_flow_engine(hooks: dict) -> dict:
	"""Frappe's resolved doc_events with every flow_engine handler removed (as if not installed)."""
	return {
		doctype: {
			event: [handler for handler in handlers if not handler.startswith("flow_engine.")]
			for event, handlers in events.items()
		}
		for doctype, events in hooks.items()
	}


def handler_cost_us(samples: int = 20000) -> float:
	"""Microseconds one call of the "*" handler costs for a doctype without flows."""
	import frappe

	from flow_engine.runtime.triggers import on_doc_event

	doc = frappe.get_doc({"doctype": "ToDo", "description": "[bench] probe"})
	start = time.perf_counter()
	for _ in range(samples):
		on_doc_event(doc, "on_update")
	return (time.perf_counter() - start) / samples * 1e6


def todo_values(text: str) -> dict:
	return {"doctype": "ToDo", "description": text}


def interleaved_overhead(total: int, label: str, make_doc=None) -> dict:
	"""Insert `total` ToDos with the dispatcher on and `total` with it off, alternating insert by insert.

	Each insert is timed on its own (commits every 50 are not): neighbours share the machine's state,
	so drifts in a shared machine's load cancel out. The decision figure is the ratio of the medians.
	"""
	import frappe

	hooks = frappe.get_doc_hooks()
	hooks_off = without_flow_engine(hooks)
	times: dict[bool, list[float]] = {True: [], False: []}
	try:
		for index in range(total * 2):
			mode = (index % 2 == 0) == ((index // 100) % 2 == 0)  # on/off, then off/on every 100
			frappe.local.doc_events_hooks = hooks if mode else hooks_off
			start = time.perf_counter()
			values = (make_doc or todo_values)(f"[bench] {label} {index}")
			frappe.get_doc(values).insert()
			times[mode].append(time.perf_counter() - start)
			if index % 50 == 49:
				frappe.db.commit()
		frappe.db.commit()
	finally:
		frappe.local.doc_events_hooks = hooks

	def trimmed_mean(values: list[float]) -> float:
		values = sorted(values)
		cut = len(values) // 20
		return statistics.fmean(values[cut : len(values) - cut])

	on, off = times[True], times[False]
	return {
		"inserts_each": len(on),
		"off_ms": statistics.median(off) * 1000,
		"on_ms": statistics.median(on) * 1000,
		"ratio": statistics.median(on) / statistics.median(off),
		"ratio_trimmed_means": trimmed_mean(on) / trimmed_mean(off),
	}


def bench_trigger_overhead(smoke: bool) -> None:
	import frappe

	total = 100 if smoke else 2000
	others = [
		name
		for name in frappe.get_all(
			"DocType",
			filters={
				"istable": 0,
				"issingle": 0,
				"is_virtual": 0,
				"module": ["in", ["Core", "Desk", "Contacts", "Automation", "Email"]],
				"name": ["!=", "ToDo"],
			},
			pluck="name",
			order_by="name",
		)
	][:20]
	for index, doctype in enumerate(others):
		make_flow(f"other {index}", [{"id": "c", "kind": "wait"}], doctype=doctype, event="after_insert")
	insert_todos(100, True, "warmup")
	insert_todos(100, False, "warmup")
	results["1"] = {
		**interleaved_overhead(total, "20 other flows"),
		"flows": len(others),
		"handler_us_per_event": handler_cost_us(),
		"target": "≤ 1.03×",
	}
	log(f"1: {results['1']}")
	for index in range(5):
		make_flow(
			f"todo nomatch {index}",
			[{"id": "c", "kind": "wait"}],
			doctype="ToDo",
			event="after_insert",
			condition={"field": "description", "op": "==", "value": f"never matches {index}"},
		)
	insert_todos(50, True, "warmup")
	results["2"] = {**interleaved_overhead(total, "5 todo flows"), "target": "≤ 1.05×"}
	log(f"2: {results['2']}")
	deactivate_all_bench_flows()


# ---------------------------------------------------------------- m: many flows


def flow_doctypes(count: int, exclude: tuple[str, ...]) -> list[str]:
	"""`count` ordinary doctypes of the site (not tables, singles or virtual), other than `exclude`."""
	import frappe

	return frappe.get_all(
		"DocType",
		filters={"istable": 0, "issingle": 0, "is_virtual": 0, "custom": 0, "name": ["not in", exclude]},
		pluck="name",
		order_by="name",
		limit=count,
	)


def bench_many_flows(smoke: bool) -> None:
	"""200 active flows over 50 doctypes (ToDo holds 20 whose conditions never match): the cost of an
	insert on a doctype no flow listens to (Note), and on ToDo, each against the dispatcher off."""
	total = 100 if smoke else 2000
	others = flow_doctypes(49, ("ToDo", "Note"))
	per_doctype = -(-180 // len(others))
	made = 0
	for doctype in others:
		for index in range(per_doctype):
			if made == 180:
				break
			make_flow(
				f"many {doctype} {index}",
				[{"id": "c", "kind": "wait"}],
				doctype=doctype,
				event="after_insert",
			)
			made += 1
	for index in range(20):
		make_flow(
			f"many todo nomatch {index}",
			[{"id": "c", "kind": "wait"}],
			doctype="ToDo",
			event="after_insert",
			condition={"field": "description", "op": "==", "value": f"never matches {index}"},
		)
		made += 1

	def note(text: str) -> dict:
		return {"doctype": "Note", "title": text[:140], "content": text}

	interleaved_overhead(50, "warmup", note)
	insert_todos(50, True, "warmup")
	results["m"] = {
		"flows": made,
		"doctypes": len(others) + 1,
		**{f"unrelated_{k}": v for k, v in interleaved_overhead(total, "many unrelated", note).items()},
		"unrelated_target": "≤ 1.02×",
	}
	results["m"].update(
		{f"todo20_{k}": v for k, v in interleaved_overhead(total, "many todo").items() if k != "inserts_each"}
	)
	results["m"]["todo20_target"] = "≤ 1.05×"
	log(f"m: {results['m']}")
	deactivate_all_bench_flows()


# ---------------------------------------------------------------- 3 (+4): per-step overhead


def bare_commit_ms(count: int) -> float:
	import frappe

	frappe.db.sql("create table if not exists `__flow_bench_counter` (id int primary key, n bigint)")
	frappe.db.sql("insert ignore into `__flow_bench_counter` values (1, 0)")
	frappe.db.commit()
	samples = []
	for _ in range(count):
		start = time.perf_counter()
		frappe.db.sql("update `__flow_bench_counter` set n = n + 1 where id = 1")
		frappe.db.commit()
		samples.append(time.perf_counter() - start)
	return statistics.median(samples) * 1000


def bench_per_step(smoke: bool) -> None:
	import frappe

	from flow_engine.runtime import runs, store

	steps_count = 40
	repeats = 3 if smoke else 15
	steps = [
		{
			"id": f"s{i}",
			"kind": "set_variables",
			"payload": {"variables": {f"v{i}": "{{run.name}}"}},
			**({"depends_on": [f"s{i - 1}"]} if i else {}),
		}
		for i in range(steps_count)
	]
	template = make_flow("chain", steps)
	single = make_flow("single", steps[:1])
	inline, bare = [], []
	frappe.flags.flow_engine_inline = True
	runs.start_run(template)
	frappe.db.commit()  # warm up caches
	for _ in range(repeats):
		bare.append(bare_commit_ms(100))
		start = time.perf_counter()
		name = runs.start_run(template)
		frappe.db.commit()  # advanced right here, inside this commit's after-commit hooks
		inline.append((time.perf_counter() - start) * 1000 / steps_count)
		assert store.load_run(name).status == "completed"
	frappe.flags.flow_engine_inline = False

	def end_to_end(flow: str) -> float:
		"""Start a run, commit, and poll until the database says completed (ms)."""
		start = time.perf_counter()
		name = runs.start_run(flow)
		frappe.db.commit()
		while True:
			frappe.db.rollback()
			if frappe.db.get_value("Flow Run", name, "status") == "completed":
				return (time.perf_counter() - start) * 1000
			time.sleep(0.001)

	chain, one = [], []
	with Workers(1):
		end_to_end(template)
		end_to_end(single)
		for _ in range(repeats):
			bare.append(bare_commit_ms(100))
			chain.append(end_to_end(template))
			one.append(end_to_end(single))
	bare_ms = statistics.median(bare)
	chain_ms, one_ms = statistics.median(chain), statistics.median(one)
	marginal = (chain_ms - one_ms) / (steps_count - 1)
	results["3"] = {
		"steps": steps_count,
		"bare_update_commit_ms": bare_ms,
		"per_step_ms": marginal,
		"ratio": marginal / bare_ms,
		"per_step_ms_in_process": statistics.median(inline),
		"ratio_in_process": statistics.median(inline) / bare_ms,
		"run_ms_end_to_end": chain_ms,
		"one_step_run_ms_end_to_end": one_ms,
		"per_step_ms_end_to_end": chain_ms / steps_count,
		"target": "≤ 3× bare commit per step",
		"note": "per step = (40-step run − 1-step run) / 39, each from start_run to completed in the database "
		"with one RQ worker; in process = start_run + commit advancing the run in the same process, / 40; "
		"end to end = the 40-step run including Frappe's job start, / 40",
	}
	log(f"3: {results['3']}")
	peer = run_peer(
		["prefect_chain.py", "--runs", "2" if smoke else "5"] + (["--smoke"] if smoke else []), "prefect"
	)
	if peer:
		results["4"] = {
			"prefect_per_task_ms": peer["per_task_ms_median"],
			"ours_per_step_ms_end_to_end": results["3"]["per_step_ms_end_to_end"],
			"ratio": peer["per_task_ms_median"] / results["3"]["per_step_ms_end_to_end"],
			"ratio_marginal": peer["per_task_ms_median"] / marginal,
			"prefect": peer.get("version"),
			"target": "ours ≥ 10× faster",
		}
	else:
		results["4"] = {"skipped": "Prefect not installed (benchmarks/peers/setup.sh)"}
	log(f"4: {results['4']}")


def run_peer(args: list[str], peer: str) -> dict | None:
	script = ROOT / "benchmarks" / "peers" / args[0]
	python = "/opt/peers/prefect-venv/bin/python" if peer == "prefect" else "python3"
	if not script.exists() or (peer == "prefect" and not Path(python).exists()):
		return None
	try:
		out = subprocess.run([python, str(script), *args[1:]], capture_output=True, text=True, timeout=1800)
	except subprocess.TimeoutExpired:
		return None
	lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
	if out.returncode != 0 or not lines:
		log(f"{peer} failed: {out.stderr[-500:]}")
		return None
	return json.loads(lines[-1])


# ---------------------------------------------------------------- 5 + 8 + 9: throughput, scale-out, memory


TWO_STEPS = [
	{
		"id": "t",
		"kind": "create_doc",
		"payload": {"doctype": "ToDo", "fields": {"description": "[bench] {{run.name}}"}},
	},
	{
		"id": "u",
		"kind": "update_doc",
		"depends_on": ["t"],
		"payload": {"doctype": "ToDo", "name": "{{steps.t.result.name}}", "fields": {"status": "Closed"}},
	},
]


def throughput_events(template: str, count: int, sample_rss=None) -> float:
	"""Runs completed per second: `count` custom events raised in bulk, until every run has finished."""
	import frappe

	from flow_engine import dispatch_event

	start = time.monotonic()
	for index in range(count):
		dispatch_event("bench_throughput", payload={"i": index})
		if index % 200 == 199:
			frappe.db.commit()
	frappe.db.commit()
	if sample_rss:
		sample_rss()
	wait_runs(template, count, 600, sample=sample_rss, poll=0.05)
	return count / (time.monotonic() - start)


def same_doc_work(count: int) -> float:
	"""Seconds for the flow's document work done directly: insert a ToDo, commit, close it, commit."""
	import frappe

	start = time.perf_counter()
	for index in range(count):
		todo = frappe.get_doc({"doctype": "ToDo", "description": f"[bench] floor {index}"}).insert()
		frappe.db.commit()
		todo = frappe.get_doc("ToDo", todo.name)
		todo.status = "Closed"
		todo.save()
		frappe.db.commit()
	return time.perf_counter() - start


def flows_in_process(count: int) -> float:
	"""Seconds for `count` runs raised and advanced in this process (inline mode), one commit each."""
	import frappe

	from flow_engine import dispatch_event

	frappe.flags.flow_engine_inline = True
	try:
		start = time.perf_counter()
		for index in range(count):
			dispatch_event("bench_throughput", payload={"i": index})
			frappe.db.commit()
		return time.perf_counter() - start
	finally:
		frappe.flags.flow_engine_inline = False


def flows_as_workers(count: int) -> float:
	"""Seconds for `count` runs raised one commit each (as users' saves raise them), then advanced in
	this process by the code a worker's pool job runs (`runs.advance_claimed`: ten runs per
	transaction), without the worker's fork and queue."""
	import frappe

	from flow_engine import dispatch_event
	from flow_engine.runtime import jobs, runs

	queue_pool_jobs = jobs.ensure_pool_jobs
	jobs.ensure_pool_jobs = lambda wanted=1: 0  # (this process advances them itself)
	try:
		start = time.perf_counter()
		names = []
		for index in range(count):
			names += dispatch_event("bench_throughput", payload={"i": index})
			frappe.db.commit()
		runs.advance_claimed(names, None)
		return time.perf_counter() - start
	finally:
		jobs.ensure_pool_jobs = queue_pool_jobs


def statements_of(work) -> int:
	"""How many SQL statements `work()` sends (commits and transaction starts included)."""
	import frappe

	sent = [0]
	original = frappe.db.sql

	def counting(*args, **kwargs):
		sent[0] += 1
		return original(*args, **kwargs)

	frappe.db.sql = counting
	try:
		work()
	finally:
		frappe.db.sql = original
	return sent[0]


def engine_over_doc_work(blocks: int, block: int) -> dict:
	"""The engine's own cost: runs advanced in process vs the same document work, in many small
	alternating blocks (the machine's speed drifts within minutes); each run advanced right after its
	commit (inline), and as the workers advance them. Ratios: the median of the blocks' ratios."""
	same_doc_work(10)
	flows_in_process(10)
	flows_as_workers(10)
	doc, flow, pooled = [], [], []
	for _ in range(blocks):
		doc.append(same_doc_work(block))
		flow.append(flows_in_process(block))
		pooled.append(flows_as_workers(block))
	return {
		"doc_work_ms": statistics.median(doc) / block * 1000,
		"flow_ms": statistics.median(flow) / block * 1000,
		"ratio": statistics.median(f / d for f, d in zip(flow, doc, strict=True)),
		"ratio_of_totals": sum(flow) / sum(doc),
		"as_workers_ms": statistics.median(pooled) / block * 1000,
		"as_workers_ratio": statistics.median(p / d for p, d in zip(pooled, doc, strict=True)),
		"as_workers_ratio_of_totals": sum(pooled) / sum(doc),
		"statements_doc_work": statements_of(lambda: same_doc_work(1)),
		"statements_inline_run": statements_of(lambda: flows_in_process(1)),
	}


def bench_throughput(smoke: bool) -> None:
	import frappe

	count = 40 if smoke else 1000
	template = make_flow("throughput", TWO_STEPS, event="custom", custom_event="bench_throughput")
	default_workers = int(frappe.conf.get("background_workers") or 1)
	rss: list[float] = []
	with Workers(default_workers) as workers:
		throughput_events(template, min(count, 50))  # warm up
		rounds = []
		for _ in range(1 if smoke else 3):
			frappe.db.sql("delete from `tabFlow Run` where template=%s", template)
			frappe.db.commit()
			rounds.append(
				throughput_events(
					template,
					count,
					lambda: rss.append(sum(tree_rss_mb(pid) for pid in workers.pids())),
				)
			)
	with production_workers(default_workers):
		frappe.db.sql("delete from `tabFlow Run` where template=%s", template)
		frappe.db.commit()
		production = throughput_events(template, count)
		with Consumer(frappe.local.site):  # the recommended production setup: workers + consumer
			frappe.db.sql("delete from `tabFlow Run` where template=%s", template)
			frappe.db.commit()
			with_consumer = throughput_events(template, count)
	with Consumer(frappe.local.site):  # one process doing flow work, no worker
		frappe.db.sql("delete from `tabFlow Run` where template=%s", template)
		frappe.db.commit()
		consumer_only = throughput_events(template, count)
	deactivate_all_bench_flows()
	doc_template = make_flow("throughput docs", TWO_STEPS, doctype="Note", event="after_insert")
	with Workers(default_workers):
		start = time.monotonic()
		for index in range(count):
			frappe.get_doc({"doctype": "Note", "title": f"[bench] note {index}", "public": 1}).insert()
			if index % 200 == 199:
				frappe.db.commit()
		frappe.db.commit()
		wait_runs(doc_template, count, 600)
		by_docs = count / (time.monotonic() - start)
	deactivate_all_bench_flows()
	peer = run_peer(
		["n8n_load.py", "--requests", "200" if smoke else "2000"] + (["--smoke"] if smoke else []), "n8n"
	)
	# what users would pick instead: n8n's ERPNext node doing the same two document writes over REST,
	# against this site served by gunicorn as in production (benchmarks/peers/n8n_erpnext.py)
	erp_peer = run_peer(
		["n8n_erpnext.py", "--site", frappe.local.site, "--requests", "80" if smoke else "600"]
		+ (["--smoke"] if smoke else []),
		"n8n",
	)
	template = make_flow("throughput", TWO_STEPS, event="custom", custom_event="bench_throughput")
	overhead = engine_over_doc_work(3 if smoke else 40, 10 if smoke else 20)
	deactivate_all_bench_flows()
	floor = 1000 / overhead["doc_work_ms"]
	n8n = peer["completed_per_second"] if peer else None
	n8n_erp = erp_peer["completed_per_second"] if erp_peer else None
	one = statistics.median(rounds)
	results["5"] = {
		"runs": count,
		"workers": default_workers,
		"runs_per_s_custom_events": statistics.median(rounds),
		"runs_per_s_doc_inserts": by_docs,
		"n8n_per_s": n8n,
		"ratio": statistics.median(rounds) / n8n if n8n else None,
		"ratio_doc_inserts": by_docs / n8n if n8n else None,
		"production_workers": 2 * default_workers,
		"runs_per_s_production_workers": production,
		"ratio_production_workers": production / n8n if n8n else None,
		"runs_per_s_production_workers_and_consumer": with_consumer,
		"runs_per_s_consumer_alone": consumer_only,
		"n8n_erpnext_node_per_s": n8n_erp,
		"n8n_erpnext_node_completed": f"{erp_peer['completed']}/{erp_peer['requests']}" if erp_peer else None,
		"vs_erpnext_node_one_worker": one / n8n_erp if n8n_erp else None,
		"vs_erpnext_node_production_workers": production / n8n_erp if n8n_erp else None,
		"vs_erpnext_node_production_workers_and_consumer": with_consumer / n8n_erp if n8n_erp else None,
		"doc_work_floor_per_s": floor,
		"floor_vs_n8n": floor / n8n if n8n else None,
		"engine_ms_per_run_in_process": overhead["flow_ms"],
		"doc_work_ms_per_run": overhead["doc_work_ms"],
		"engine_over_doc_work": overhead["ratio"],
		"engine_over_doc_work_totals": overhead["ratio_of_totals"],
		"engine_ms_per_run_as_workers_advance": overhead["as_workers_ms"],
		"engine_over_doc_work_as_workers_advance": overhead["as_workers_ratio"],
		"engine_over_doc_work_as_workers_advance_totals": overhead["as_workers_ratio_of_totals"],
		"sql_statements_doc_work": overhead["statements_doc_work"],
		"sql_statements_inline_run": overhead["statements_inline_run"],
		"target": "vs n8n + ERPNext node: ≥ 3× on one worker, ≥ 5× with production's workers; engine "
		"≤ 1.10× the document work in process",
		"note": "floor = the same ToDo insert + close done directly in one process, no engine and no "
		"worker: no engine running these documents through Frappe on one worker can pass it",
	}
	log(f"5: {results['5']}")
	results["9"] = {
		"peak_rss_mb": max(rss) if rss else None,
		"rss_by_round_mb": [round(value, 1) for value in rss[:: max(1, len(rss) // 6)]],
		"note": "worker + its RQ work horse; compare the first and last rounds",
	}
	log(f"9: {results['9']}")
	scale = {}
	template = make_flow("throughput", TWO_STEPS, event="custom", custom_event="bench_throughput")
	for workers_count in (1, 2, 4):
		with Workers(workers_count, queues="default"):
			frappe.db.sql("delete from `tabFlow Run` where template=%s", template)
			frappe.db.commit()
			scale[workers_count] = throughput_events(template, count)
	deactivate_all_bench_flows()
	results["8"] = {
		"runs_per_s_by_workers": scale,
		"speedup_2": scale[2] / scale[1],
		"speedup_4": scale[4] / scale[1],
		"cores": os.cpu_count(),
	}
	log(f"8: {results['8']}")


# ---------------------------------------------------------------- 6: delayed-step precision


def bench_precision(smoke: bool) -> None:
	import frappe
	from frappe.utils import add_to_date, now_datetime

	from flow_engine.runtime import runs

	count = 30 if smoke else 300
	spread = 20 if smoke else 180
	template = make_flow(
		"precision", [{"id": "w", "kind": "wait", "trigger": {"type": "on_date", "date": "{{input.at}}"}}]
	)
	offsets = sorted(random.uniform(5, 5 + spread) for _ in range(count))
	was_enabled = frappe.db.get_single_value("System Settings", "enable_scheduler")
	frappe.db.set_single_value("System Settings", "enable_scheduler", 1)
	frappe.db.commit()
	scheduler = subprocess.Popen(
		[sys.executable, "-m", "frappe.utils.bench_helper", "frappe", "schedule"],
		cwd=SITES,
		stdout=subprocess.DEVNULL,
		stderr=subprocess.DEVNULL,
	)
	names = []
	try:
		with production_workers():  # the scheduler process and workers as in production
			base = now_datetime()
			for offset in offsets:
				at = add_to_date(base, seconds=offset).isoformat(sep=" ")
				names.append(runs.start_run(template, source="api", input={"at": at}))
			frappe.db.commit()
			deadline = time.monotonic() + spread + 120
			while time.monotonic() < deadline:
				frappe.db.rollback()
				left = frappe.db.count(
					"Flow Run", {"name": ["in", names], "status": ["not in", ["completed", "failed"]]}
				)
				if not left:
					break
				time.sleep(1)
	finally:
		scheduler.terminate()
		scheduler.wait(timeout=20)
		frappe.db.set_single_value("System Settings", "enable_scheduler", was_enabled)
		frappe.db.commit()
	rows = frappe.db.sql(
		"""select timestampdiff(microsecond, trigger_at, executed_at) / 1e6 from `tabFlow Step Pending`
		where run in %s and status='completed'""",
		(tuple(names),),
	)
	lateness = [float(row[0]) for row in rows]
	results["6"] = {
		"steps": count,
		"spread_s": spread,
		"fired": len(lateness),
		"p50_s": percentile(lateness, 50),
		"p99_s": percentile(lateness, 99),
		"max_s": max(lateness or [float("nan")]),
		"target": "p50 ≤ 0.5 s, p99 ≤ 2 s",
	}
	log(f"6: {results['6']}")


# ---------------------------------------------------------------- 7: backlog drain


def clone_waiting_runs(template: str, base: list[str], copies: int) -> None:
	"""`copies` copies of each of the `base` runs (waiting on one pending row each) and their pending
	rows, made in SQL: the same rows start_run writes, in seconds instead of minutes."""
	import frappe

	def columns(table: str) -> list[str]:
		return [row[0] for row in frappe.db.sql(f"show columns from `{table}`")]

	run_cols, row_cols = columns("tabFlow Run"), columns("tabFlow Step Pending")
	for copy in range(1, copies + 1):
		suffix = f".{copy}"
		for start in range(0, len(base), 1000):
			chunk = tuple(base[start : start + 1000])
			run_select = [
				"concat(r.name, %(s)s)"
				if col == "name"
				else "replace(r.step_state, p.name, concat(p.name, %(s)s))"
				if col == "step_state"
				else f"r.`{col}`"
				for col in run_cols
			]
			frappe.db.sql(
				f"""insert into `tabFlow Run` ({", ".join(f"`{c}`" for c in run_cols)})
				select {", ".join(run_select)} from `tabFlow Run` r join `tabFlow Step Pending` p on p.run = r.name
				where r.name in %(names)s""",
				{"s": suffix, "names": chunk},
			)
			row_select = [
				"concat(p.name, %(s)s)"
				if col == "name"
				else "concat(p.run, %(s)s)"
				if col == "run"
				else f"p.`{col}`"
				for col in row_cols
			]
			frappe.db.sql(
				f"""insert into `tabFlow Step Pending` ({", ".join(f"`{c}`" for c in row_cols)})
				select {", ".join(row_select)} from `tabFlow Step Pending` p where p.run in %(names)s""",
				{"s": suffix, "names": chunk},
			)
			frappe.db.commit()


def bench_backlog(smoke: bool) -> None:
	import frappe

	from flow_engine.runtime import runs, scheduler

	count = 200 if smoke else ARGS.backlog_rows
	base_count = min(count, 2000)
	copies = -(-count // base_count) - 1
	count = base_count * (copies + 1)
	template = make_flow(
		"backlog", [{"id": "w", "kind": "wait", "trigger": {"type": "after_delay", "delay_days": 1}}]
	)
	frappe.flags.flow_engine_inline = True
	log(f"7: creating {base_count} runs with a pending step, then {copies} copies of each in SQL")
	base = []
	for index in range(base_count):
		base.append(runs.start_run(template))
		if index % 100 == 99:
			frappe.db.commit()
	frappe.db.commit()
	frappe.flags.flow_engine_inline = False
	if copies:
		clone_waiting_runs(template, base, copies)
	due_at = frappe.utils.add_to_date(frappe.utils.now_datetime(), seconds=-1)
	frappe.db.sql(  # site-local time, like every datetime Frappe stores (the DB's NOW() may be UTC)
		"""update `tabFlow Step Pending` p join `tabFlow Run` r on p.run = r.name
		set p.trigger_at = %s where r.template = %s""",
		(due_at, template),
	)
	frappe.db.commit()
	log(f"7: {count} due rows; production's workers fire them")
	with production_workers():
		start = time.monotonic()
		handed = scheduler.drain_due()
		while True:  # (an index range read: polling must not load the database it measures)
			frappe.db.rollback()
			left = frappe.db.sql(
				"""select count(*) from `tabFlow Step Pending` where status in ('pending', 'running')
				and trigger_at <= %s""",
				(due_at,),
			)[0][0]
			if not left:
				break
			if time.monotonic() - start > 900:
				raise TimeoutError(f"7: {left} rows not fired after 900 s")
			time.sleep(0.25)
		elapsed = time.monotonic() - start
		wait_runs(template, count, 60)  # and every run completed (raises otherwise)
	fired_twice = frappe.db.sql(
		"""select count(*) from (select a.run from `tabFlow Step Attempt` a
		join `tabFlow Run` r on a.run = r.name where r.template=%s and a.step_id='w' group by a.run having count(*) > 1) x""",
		(template,),
	)[0][0]
	not_fired = frappe.db.sql(
		"""select count(*) from `tabFlow Run` r where r.template=%s and not exists
		(select 1 from `tabFlow Step Attempt` a where a.run = r.name and a.step_id='w')""",
		(template,),
	)[0][0]
	results["7"] = {
		"rows": count,
		"handed_to_fire_jobs": handed,
		"drain_seconds": elapsed,
		"rows_per_second": count / elapsed,
		"fired_twice": fired_twice,
		"never_fired": not_fired,
		"target": "100,000 within 60 s, each exactly once",
	}
	log(f"7: {results['7']}")


class Consumer:
	"""`bench --site SITE flow consume` (runtime/consumer.py), started and stopped by the benchmark."""

	def __init__(self, site: str):
		self.site, self.proc = site, None

	def __enter__(self):
		self.proc = subprocess.Popen(
			[
				sys.executable,
				"-m",
				"frappe.utils.bench_helper",
				"frappe",
				"--site",
				self.site,
				"flow",
				"consume",
			],
			cwd=SITES,
			stdout=subprocess.DEVNULL,
			stderr=subprocess.DEVNULL,
		)
		time.sleep(3)
		return self

	def __exit__(self, *exc):
		self.proc.terminate()
		try:
			self.proc.wait(timeout=20)
		except subprocess.TimeoutExpired:
			self.proc.kill()


def reaction_times(template: str, count: int) -> list[float]:
	"""Milliseconds from a Note insert's commit to its flow's first step committed (the run's row,
	written in the step's transaction), one Note at a time, the machine idle in between."""
	import frappe
	from frappe.utils import now_datetime

	times = []
	for index in range(count):
		title = f"{PREFIX}reaction {frappe.generate_hash(length=8)}"
		frappe.get_doc({"doctype": "Note", "title": title, "public": 1}).insert()
		frappe.db.commit()
		committed = now_datetime()
		deadline = time.monotonic() + 30
		while True:
			frappe.db.rollback()
			found = frappe.db.sql(
				"""select r.modified from `tabFlow Run` r where r.template=%s and r.reference_doctype='Note'
				and r.reference_name in (select name from tabNote where title=%s) and r.status='completed'""",
				(template, title),
			)
			if found:
				times.append((found[0][0] - committed).total_seconds() * 1000)
				break
			if time.monotonic() > deadline:
				raise TimeoutError(f"t: the run of Note {index} did not complete in 30 s")
			time.sleep(0.002)
		time.sleep(random.uniform(0.05, 0.15))
	return times


def bench_reaction(smoke: bool) -> None:
	"""From the triggering commit to the first step's effect committed, with production's workers,
	then with the long-lived consumer beside them."""
	import frappe

	count = 20 if smoke else 200
	deactivate_all_bench_flows()
	frappe.db.sql("delete from tabNote where title like %s", (PREFIX + "reaction%",))
	template = make_flow(
		"reaction",
		[
			{
				"id": "t",
				"kind": "create_doc",
				"payload": {"doctype": "ToDo", "fields": {"description": "reaction"}},
			}
		],
		doctype="Note",
		event="after_insert",
	)
	figures = {}
	with production_workers():
		reaction_times(template, 5)  # warm-up
		figures["workers"] = reaction_times(template, count)
		with Consumer(frappe.local.site):
			reaction_times(template, 5)
			figures["consumer"] = reaction_times(template, count)
	row = {"runs": count}
	for label, values in figures.items():
		row[f"{label}_p50_ms"] = percentile(values, 50)
		row[f"{label}_p99_ms"] = percentile(values, 99)
		row[f"{label}_max_ms"] = max(values)
	row["target"] = "p50 <= 25 ms, p99 <= 100 ms"
	results["t"] = row
	frappe.db.sql("delete from tabNote where title like %s", (PREFIX + "reaction%",))
	frappe.db.sql("delete from tabToDo where description='reaction'")
	frappe.db.commit()
	log(f"t: {row}")


def bench_editor(smoke: bool) -> None:
	"""Row e: the Flow Editor with a 200-step flow in headless Chromium (benchmarks/editor_scale.sh),
	against `bench serve` started here (the app's Desk assets must be built)."""
	import urllib.request

	import frappe

	site, port = frappe.local.site, 8012
	server = subprocess.Popen(
		[
			*(sys.executable, "-m", "frappe.utils.bench_helper", "frappe", "--site", site, "serve"),
			*("--port", str(port), "--noreload", "--nothreading"),
		],
		cwd=SITES,
		stdout=subprocess.DEVNULL,
		stderr=subprocess.DEVNULL,
	)
	try:
		for _ in range(60):
			try:
				urllib.request.urlopen(f"http://127.0.0.1:{port}/api/method/ping", timeout=2)
				break
			except OSError:
				time.sleep(1)
		env = {**os.environ, "FLOW_SCALE_REPEAT": "1" if smoke else "5"}
		out = subprocess.run(
			["bash", str(ROOT / "benchmarks" / "editor_scale.sh"), f"http://{site.lower()}:{port}", site],
			capture_output=True,
			text=True,
			timeout=900,
			env=env,
		)
	finally:
		server.terminate()
		server.wait(timeout=20)
	lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
	if out.returncode != 0 or not lines:
		raise RuntimeError(f"editor_scale.sh failed: {out.stdout[-800:]} {out.stderr[-400:]}")
	figures = json.loads(lines[-1])
	results["e"] = {
		"steps": figures.get("steps"),
		"open_validate_layout_ms": figures.get("open_ms"),
		"open_best_ms": figures.get("open_best_ms"),
		"first_open_with_bundle_ms": figures.get("open_first_ms"),
		"dry_run_ms": figures.get("dry_run_ms"),
		"dry_run_best_ms": figures.get("dry_run_best_ms"),
		"target": "open + validate + layout < 1 s, dry run < 500 ms",
	}
	log(f"e: {results['e']}")


def bench_volume(smoke: bool) -> None:
	"""Row v: the Desk's run surfaces and retention at 200,000 runs / 1,000,000 attempts
	(benchmarks/volume.py; the data is generated once and kept: use a site whose site tier is not run,
	since test_retention deletes old runs)."""
	sys.path.insert(0, str(Path(__file__).resolve().parent))
	import volume

	results["v"] = volume.bench_volume(smoke)
	log(f"v: {results['v']}")


# ---------------------------------------------------------------- server script, for the record


def bench_server_script(smoke: bool) -> None:
	import frappe

	count = 40 if smoke else 500
	with common_site_config(server_script_enabled=1):
		script = frappe.get_doc(
			{
				"doctype": "Server Script",
				"name": "_bench comment",
				"script_type": "DocType Event",
				"reference_doctype": "ToDo",
				"doctype_event": "After Insert",
				"disabled": 1,
				"script": "doc.add_comment('Comment', '[bench] server script')",
			}
		)
		script.insert(ignore_permissions=True)
		frappe.db.commit()
		baseline = insert_todos(count, True, "baseline")
		script.disabled = 0
		script.save()
		frappe.db.commit()
		with_script = insert_todos(count, True, "server script")
		script.disabled = 1
		script.save()
		frappe.db.commit()
		template = make_flow(
			"one step",
			[{"id": "c", "kind": "comment", "payload": {"text": "[bench] flow"}}],
			doctype="ToDo",
			event="after_insert",
		)
		with Workers(1):
			start = time.perf_counter()
			insert_todos(count, True, "flow")
			wait_runs(template, count, 600)
			with_flow = time.perf_counter() - start
	deactivate_all_bench_flows()
	results["server_script"] = {
		"inserts": count,
		"server_script_ms_per_automation": (with_script - baseline) / count * 1000,
		"flow_ms_per_automation_end_to_end": (with_flow - baseline) / count * 1000,
		"note": "server script runs inside the user's save; the flow runs after commit in a worker",
	}
	log(f"server script: {results['server_script']}")


def purge_stale_jobs(site: str) -> int:
	"""Drop flow_engine jobs of this site still queued from earlier runs (a worker started here would
	spend the measured time on them)."""
	from frappe.utils.background_jobs import get_queue

	dropped = 0
	for queue in ("default", "short", "long"):
		for job in get_queue(queue).get_jobs():
			kwargs = (job.kwargs or {}) if job else {}
			if kwargs.get("site") == site and str(kwargs.get("method", "")).startswith("flow_engine."):
				job.delete()
				dropped += 1
	return dropped


def check_bytecode() -> None:
	"""Workers fork per job and import the app: without cached bytecode every job recompiles it."""
	import compileall

	app = ROOT / "flow_engine"
	if not compileall.compile_dir(str(app), quiet=1, workers=1):
		log("warning: could not compile flow_engine's bytecode")
	stale = [
		path
		for path in app.rglob("*.py")
		if not list((path.parent / "__pycache__").glob(f"{path.stem}.cpython-*.pyc"))
	]
	if stale:
		log(
			f"warning: {len(stale)} modules have no cached bytecode (the checkout is not writable by "
			f"this user): every worker job will recompile them. Run `python -m compileall {app}` "
			"with the bench's Python as the checkout's owner first."
		)


# ---------------------------------------------------------------- recovery (chaos)


def bench_recovery(smoke: bool) -> None:
	"""N runs of "create a ToDo → wait 3 s → close it" started by Note inserts, with two workers and
	`bench schedule`; one worker is killed with SIGKILL during the inserts and MariaDB is restarted
	(--db-restart-cmd) one second after them. Reports completed, lost and duplicated runs and the
	seconds from the database being back to the last run completed."""
	import frappe

	count = 30 if smoke else ARGS.recovery_runs
	if not ARGS.db_restart_cmd:
		results["r"] = {"skipped": "give --db-restart-cmd (e.g. 'service mariadb restart' as root)"}
		log("r: skipped (no --db-restart-cmd)")
		return
	template = make_flow(
		"recovery",
		[
			{
				"id": "make",
				"kind": "create_doc",
				"payload": {"doctype": "ToDo", "fields": {"description": "[bench] {{run.name}}"}},
			},
			{
				"id": "pause",
				"kind": "wait",
				"depends_on": ["make"],
				"trigger": {"type": "after_delay", "delay_seconds": 3},
			},
			{
				"id": "close",
				"kind": "update_doc",
				"depends_on": ["pause"],
				"payload": {
					"doctype": "ToDo",
					"name": "{{steps.make.result.name}}",
					"fields": {"status": "Closed"},
				},
			},
		],
		doctype="Note",
		event="after_insert",
	)
	frappe.flags.flow_engine_inline = False
	scheduler_proc = subprocess.Popen(
		[sys.executable, "-m", "frappe.utils.bench_helper", "frappe", "schedule"],
		cwd=SITES,
		stdout=subprocess.DEVNULL,
		stderr=subprocess.DEVNULL,
	)
	try:
		with Workers(2, "default,short,long", new_session=True) as workers:
			log(f"r: inserting {count} Notes; one worker is killed a third of the way")
			for index in range(count):
				frappe.get_doc({"doctype": "Note", "title": f"[bench] recovery {index}"}).insert()
				frappe.db.commit()
				if index == count // 3:
					workers.kill(0)
			time.sleep(1)
			log(f"r: restarting MariaDB: {ARGS.db_restart_cmd}")
			subprocess.run(ARGS.db_restart_cmd, shell=True, check=True)
			for _ in range(120):
				try:
					frappe.db.close()
				except Exception:
					pass
				try:
					frappe.db.connect()
					frappe.db.sql("select 1")
					break
				except Exception:
					time.sleep(0.5)
			back = time.monotonic()
			log("r: database back; waiting for the runs")
			last_done, done, traced = back, 0, back
			while time.monotonic() - back < ARGS.recovery_wait:
				frappe.db.rollback()
				now_done = frappe.db.count("Flow Run", {"template": template, "status": "completed"})
				if now_done != done:
					done, last_done = now_done, time.monotonic()
				if done >= count:
					break
				if time.monotonic() - traced >= 5:
					traced = time.monotonic()
					log(f"r: {done}/{count} completed {traced - back:.0f}s after the database came back")
				time.sleep(0.5)
	finally:
		scheduler_proc.terminate()
		scheduler_proc.wait(timeout=20)
	frappe.db.rollback()
	todos = frappe.db.sql(
		"""select count(*), count(distinct description), sum(status='Closed') from tabToDo
		where description like '[bench] FR-%%'"""
	)[0]
	runs_made = frappe.db.count("Flow Run", {"template": template})
	results["r"] = {
		"runs": count,
		"runs_started": runs_made,
		"completed": done,
		"lost": count - done,
		"seconds_after_db_back": round(last_done - back, 1),
		"duplicated_todos": int(todos[0] or 0) - int(todos[1] or 0),
		"closed": int(todos[2] or 0),
		"target": "all complete within 60 s of the database being back, 0 duplicated, 0 lost",
	}
	log(f"r: {results['r']}")


BENCHMARKS = {
	"1": bench_trigger_overhead,  # also 2
	"3": bench_per_step,  # also 4
	"5": bench_throughput,  # also 8, 9
	"6": bench_precision,
	"7": bench_backlog,
	"s": bench_server_script,
	"r": bench_recovery,
	"m": bench_many_flows,
	"t": bench_reaction,
	"e": bench_editor,
	"v": bench_volume,
}
# run only when asked for: v generates 200,000 runs on the site and keeps them (a site whose tests
# are not run: test_retention deletes old runs)
ON_REQUEST = {"v"}
# rows computed inside another benchmark: asking for one runs the benchmark that computes it
COMPUTED_BY = {"2": "1", "4": "3", "8": "5", "9": "5"}


def chosen_benchmarks(only: str | None) -> list[str]:
	"""The benchmarks to run for `--only` (rows like 4 map to the benchmark computing them), in order."""
	if not only:
		return [key for key in BENCHMARKS if key not in ON_REQUEST]
	chosen = []
	for key in (part.strip() for part in only.split(",") if part.strip()):
		key = COMPUTED_BY.get(key, key)
		if key not in BENCHMARKS:
			known = ", ".join([*BENCHMARKS, *COMPUTED_BY])
			raise SystemExit(f"--only: no benchmark '{key}' (known: {known})")
		if key not in chosen:
			chosen.append(key)
	return chosen


def table() -> str:
	def fmt(value):
		if isinstance(value, float):
			return f"{value:.3g}"
		return str(value)

	lines = ["| # | figures |", "|---|---|"]
	for key in sorted(results, key=lambda k: (not k.isdigit(), k.zfill(3))):
		lines.append(
			f"| {key} | " + "; ".join(f"{name} = {fmt(value)}" for name, value in results[key].items()) + " |"
		)
	return "\n".join(lines)


def main() -> None:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	parser.add_argument("--site", default="erp.localhost")
	parser.add_argument("--smoke", action="store_true")
	parser.add_argument(
		"--only",
		help="comma-separated: 1 (and 2), 3 (and 4), 5 (and 8, 9), 6, 7, s, r, m, t, e, v; 2, 4, 8, 9 run the "
		"benchmark that computes them",
	)
	parser.add_argument(
		"--backlog-rows", type=int, default=100_000, help="due rows of the backlog benchmark (7)"
	)
	parser.add_argument("--recovery-runs", type=int, default=300, help="runs of the recovery benchmark (r)")
	parser.add_argument("--recovery-wait", type=float, default=300, help="seconds r waits for the runs")
	parser.add_argument(
		"--db-restart-cmd",
		help="shell command that restarts MariaDB, for r (e.g. 'service mariadb restart' as root)",
	)
	args = parser.parse_args()
	chosen = chosen_benchmarks(args.only)  # an unknown key fails before connecting
	ARGS.__dict__.update(vars(args))
	connect(args.site)
	import frappe

	check_bytecode()
	dropped = purge_stale_jobs(args.site)
	if dropped:
		log(f"dropped {dropped} flow_engine jobs left queued by earlier runs")
	cleanup()
	try:
		for key in chosen:
			log(f"benchmark {key}")
			try:
				BENCHMARKS[key](args.smoke)
			except Exception as error:  # report the others anyway
				import traceback

				traceback.print_exc()
				results[f"{key} (error)"] = {"error": repr(error)[:300]}
				frappe.db.rollback()
	finally:
		cleanup()
	machine = {
		"cores": os.cpu_count(),
		"frappe": frappe.__version__,
		"python": sys.version.split()[0],
		"mariadb": frappe.db.sql("select version()")[0][0],
		"smoke": args.smoke,
		"at": time.strftime("%Y-%m-%d %H:%M"),
	}
	print("\n" + table())
	print("\nmachine: " + json.dumps(machine))
	out = ROOT / "artifacts"
	try:
		out.mkdir(exist_ok=True)
		(out / ".probe").touch()
	except OSError:
		out = Path("/tmp/flow_engine-artifacts")
		out.mkdir(exist_ok=True)
	(out / f"benchmarks-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
		json.dumps({"machine": machine, "results": results}, indent=1, default=str)
	)


if __name__ == "__main__":
	main()
