#!/usr/bin/env python3
"""Peer benchmark: n8n's ERPNext node creating a ToDo and closing it, against a Frappe site served by
gunicorn the way production serves it (issue 16, row 1).

Plain Python 3 (stdlib only). Needs n8n installed by benchmarks/peers/setup.sh, a Frappe bench, and
root or the bench user (gunicorn and the site's Python run as the bench user):

    python3 benchmarks/peers/n8n_erpnext.py [--requests 600] [--concurrency 16] [--workers 4] [--smoke]

What it does:
1. starts gunicorn for the bench with the command line of bench's supervisor template (`bench setup
   production`): sync workers, --workers (default 4), --max-requests 5000 with 10 % jitter, -t 120,
   --graceful-timeout 30, --preload, cwd sites/, as the bench user, on 127.0.0.1:--gunicorn-port;
2. gives the site's user `n8n-bench@example.com` (System Manager: ToDo's only non-automatic role, so
   it may write any ToDo) an API key and a fresh secret, through the bench's Python;
3. starts n8n as n8n_load.py does, creates an `erpNextApi` credential (self-hosted, domain
   http://SITE:PORT: Frappe picks the site from the Host header, so SITE must resolve to 127.0.0.1)
   and the workflow Webhook → ERPNext (create ToDo) → ERPNext (update it: status Closed), webhook
   answering with the last node's output, and activates it;
4. warms up, then fires --requests POSTs at --concurrency; a request counts as completed when it
   answers with its own ToDo (description with its seq) Closed;
5. counts the load's ToDos in the site's database (all of them Closed?) and n8n's successful
   executions, deletes the ToDos (and their Version rows), stops n8n and gunicorn, and disables the
   user (its API key and secret removed: no live System Manager key stays on the site).

stdout carries exactly one JSON line (progress goes to stderr). Exits 2 with a message if n8n (or
Node, or the bench) is not installed, 1 if the benchmark itself fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import time

import n8n_load
from n8n_load import (
	HOST,
	Fatal,
	N8n,
	add_load_args,
	finish_load_args,
	group_cpu_seconds,
	latency_fields,
	log,
	machine_cpu_seconds,
	pid_cpu_seconds,
	stop_on_signals,
	timed_load,
	warm_up,
)

n8n_load.LOG_NAME = "n8n_erpnext"

DEFAULT_BENCH = "/home/frappe/frappe-bench"
WEBHOOK_PATH = "flow-engine-bench-erpnext"
BENCH_USER_EMAIL = "n8n-bench@example.com"
TAG = "[n8n-erpnext bench"  # every ToDo this script creates starts with it


def parse_args(argv=None):
	p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
	add_load_args(p, 600, 20)
	p.add_argument("--site", default="erp.localhost", help="Frappe site (default erp.localhost)")
	p.add_argument("--bench", default=os.environ.get("FRAPPE_BENCH", DEFAULT_BENCH))
	p.add_argument("--bench-user", default=None, help="user owning the bench (default: the owner of --bench)")
	p.add_argument("--gunicorn-port", type=int, default=8002, help="gunicorn on 127.0.0.1 (default 8002)")
	p.add_argument("--workers", type=int, default=4, help="gunicorn workers (default 4)")
	p.add_argument(
		"--bench-workers",
		action="store_true",
		help="use the worker count `bench setup production` would: gunicorn_workers from "
		"common_site_config.json, else 2 × cores + 1",
	)
	p.add_argument(
		"--threads",
		type=int,
		default=0,
		help="0 (default): sync workers, as bench's supervisor template; N: gthread workers with N "
		"threads each (the frappe_docker image's setting is 4)",
	)
	p.add_argument("--keep-todos", action="store_true", help="do not delete the ToDos afterwards")
	args = finish_load_args(p, p.parse_args(argv), 600, 20)
	if args.workers < 1 or args.threads < 0:
		p.error("--workers must be >= 1, --threads >= 0")
	return args


# ---------------------------------------------------------------- the bench


class Bench:
	"""The Frappe bench: its config, its Python as the bench user, and gunicorn."""

	def __init__(self, args):
		self.args = args
		self.path = os.path.abspath(args.bench)
		self.sites = os.path.join(self.path, "sites")
		self.python = os.path.join(self.path, "env", "bin", "python")
		self.gunicorn = os.path.join(self.path, "env", "bin", "gunicorn")
		self.proc: subprocess.Popen | None = None

	def check(self):
		if not (os.path.isfile(self.gunicorn) and os.path.isfile(self.python)):
			raise Fatal(f"no Frappe bench with gunicorn at {self.path} (pass --bench)", 2)
		if not os.path.isfile(os.path.join(self.sites, self.args.site, "site_config.json")):
			raise Fatal(f"no site {self.args.site} in {self.sites} (pass --site)", 2)
		owner = self.args.bench_user or pwd.getpwuid(os.stat(self.path).st_uid).pw_name
		self.user = pwd.getpwnam(owner)
		if os.geteuid() not in (0, self.user.pw_uid):
			raise Fatal(f"run as root or as the bench user {owner}: gunicorn and the site's Python run as it")
		try:
			with open(os.path.join(self.sites, "common_site_config.json")) as f:
				self.conf = json.load(f)
		except (OSError, ValueError):
			self.conf = {}

	def as_user(self) -> dict:
		"""Popen arguments running a process as the bench user, in its own process group."""
		env = {
			"PATH": os.path.join(self.path, "env", "bin") + ":/usr/local/bin:/usr/bin:/bin",
			"HOME": self.user.pw_dir,
			"USER": self.user.pw_name,
			"LANG": os.environ.get("LANG", "C.UTF-8"),
		}
		kw = {"cwd": self.sites, "env": env, "stdin": subprocess.DEVNULL, "start_new_session": True}
		if os.geteuid() == 0:
			kw.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
		return kw

	def site_python(self, action: str, **params) -> dict:
		"""Run one action of SITE_SNIPPET with the bench's Python, connected to the site."""
		params.update(action=action, site=self.args.site)
		out = subprocess.run(
			[self.python, "-c", SITE_SNIPPET, json.dumps(params)],
			capture_output=True,
			text=True,
			timeout=300,
			**self.as_user(),
		)
		lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
		if out.returncode != 0 or not lines:
			raise Fatal(f"site {action} failed (exit {out.returncode}): {(out.stderr or out.stdout)[-800:]}")
		return json.loads(lines[-1])

	# ------------------------------------------------------------ gunicorn

	def gunicorn_command(self) -> list[str]:
		"""bench's supervisor template (bench/config/templates/supervisor.conf, frappe-bench 5.x):
		gunicorn -b 127.0.0.1:PORT -w N --max-requests M --max-requests-jitter J -t T
		--graceful-timeout 30 frappe.app:application --preload, run in sites/."""
		workers = self.args.workers
		# bench's get_default_max_requests: 5000, or 0 (off) for a single worker
		max_requests = int(self.conf.get("gunicorn_max_requests", 5000 if workers > 1 else 0))
		cmd = [
			self.gunicorn,
			"-b",
			f"{HOST}:{self.args.gunicorn_port}",
			"-w",
			str(workers),
			"--max-requests",
			str(max_requests),
			"--max-requests-jitter",
			str(int(max_requests * 0.1)),
			"-t",
			str(self.conf.get("http_timeout", 120)),
			"--graceful-timeout",
			"30",
		]
		if self.args.threads:
			cmd += ["--worker-class", "gthread", "--threads", str(self.args.threads)]
		return [*cmd, "frappe.app:application", "--preload"]

	def start_gunicorn(self, log_path: str):
		with socket.socket() as s:
			if s.connect_ex((HOST, self.args.gunicorn_port)) == 0:
				raise Fatal(
					f"port {self.args.gunicorn_port} on {HOST} is already in use; pass --gunicorn-port"
				)
		cmd = self.gunicorn_command()
		log(f"starting gunicorn as {self.user.pw_name}: {' '.join(cmd[1:])} (log: {log_path})")
		logf = open(log_path, "w")
		self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, **self.as_user())
		logf.close()
		t0 = time.monotonic()
		while True:
			if self.proc.poll() is not None:
				raise Fatal(
					f"gunicorn exited with code {self.proc.returncode} while starting; see {log_path}"
				)
			try:
				conn = http.client.HTTPConnection(HOST, self.args.gunicorn_port, timeout=5)
				conn.request("GET", "/api/method/ping", headers={"Host": self.args.site})
				resp = conn.getresponse()
				body = resp.read()
				conn.close()
				if resp.status == 200 and b"pong" in body:
					break
			except (OSError, http.client.HTTPException):
				pass
			if time.monotonic() - t0 > 120:
				raise Fatal(f"gunicorn did not answer /api/method/ping within 120 s; see {log_path}")
			time.sleep(0.25)
		self.startup_seconds = time.monotonic() - t0
		log(f"gunicorn ready after {self.startup_seconds:.1f} s")

	def stop_gunicorn(self):
		proc, self.proc = self.proc, None
		if proc is None or proc.poll() is not None:
			return
		log("stopping gunicorn")
		try:
			os.killpg(proc.pid, signal.SIGTERM)
		except ProcessLookupError:
			return
		try:
			proc.wait(timeout=40)  # supervisor's stopwaitsecs in bench's template
		except subprocess.TimeoutExpired:
			try:
				os.killpg(proc.pid, signal.SIGKILL)
			except ProcessLookupError:
				pass
			proc.wait(timeout=10)

	def gunicorn_cpu_seconds(self):
		return group_cpu_seconds(self.proc.pid) if self.proc is not None else None


# Run by the bench's Python in sites/, as the bench user: argv[1] is JSON {action, site, ...}; the
# last stdout line is the JSON answer.
SITE_SNIPPET = r"""
import json, sys
import frappe

p = json.loads(sys.argv[1])
frappe.init(site=p["site"], sites_path=".")
frappe.connect()
try:
	out = {}
	if p["action"] == "setup":
		email = p["email"]
		if not frappe.db.exists("User", email):
			user = frappe.get_doc({
				"doctype": "User", "email": email, "first_name": "n8n bench", "user_type": "System User",
				"send_welcome_email": 0, "roles": [{"role": "System Manager"}],
			})
			user.flags.no_welcome_mail = True
			user.insert(ignore_permissions=True)
		user = frappe.get_doc("User", email)
		user.enabled = 1
		if not user.api_key:
			user.api_key = frappe.generate_hash(length=15)
		secret = frappe.generate_hash(length=15)
		user.api_secret = secret
		user.save(ignore_permissions=True)
		frappe.db.commit()
		out = {"user": email, "api_key": user.api_key, "api_secret": secret, "frappe": frappe.__version__}
	elif p["action"] == "teardown":  # leave no live System Manager API key behind
		if frappe.db.exists("User", p["email"]):
			frappe.db.set_value("User", p["email"], {"enabled": 0, "api_key": None})
			frappe.db.delete("__Auth", {"doctype": "User", "name": p["email"], "fieldname": "api_secret"})
			frappe.db.commit()
		out = {"disabled": p["email"]}
	elif p["action"] == "count":
		like = p["prefix"].replace("%", "\\%").replace("_", "\\_") + "%"
		rows = frappe.db.sql(
			"select status, count(*) from `tabToDo` where description like %s group by status", like
		)
		out = {"by_status": {status: n for status, n in rows}}
	elif p["action"] == "delete":
		like = p["prefix"].replace("%", "\\%").replace("_", "\\_") + "%"
		names = frappe.db.sql_list("select name from `tabToDo` where description like %s", like)
		for i in range(0, len(names), 500):
			chunk = names[i : i + 500]
			frappe.db.delete("Version", {"ref_doctype": "ToDo", "docname": ["in", chunk]})
			frappe.db.delete("ToDo", {"name": ["in", chunk]})
		frappe.db.commit()
		out = {"deleted": len(names)}
	print()
	print(json.dumps(out))
finally:
	frappe.destroy()
"""


def check_resolves_to_loopback(node: str, host: str):
	"""n8n (Node) must reach gunicorn on 127.0.0.1 under the site's name (Frappe picks the site from
	the Host header; the ERPNext node cannot set X-Frappe-Site-Name)."""
	out = subprocess.run(
		[
			node,
			"-e",
			"require('dns').lookup(process.argv[1], (e, a) => console.log(e ? 'ERR ' + e.code : a))",
			host,
		],
		capture_output=True,
		text=True,
		timeout=30,
	)
	addr = out.stdout.strip()
	if addr != HOST:
		raise Fatal(
			f"the site name {host} resolves to {addr or out.stderr.strip()!r} for Node, not {HOST}: n8n must "
			f"reach gunicorn under the site's name; add `{HOST} {host}` to /etc/hosts"
		)


def mariadb_pid():
	try:
		for pid in os.listdir("/proc"):
			if pid.isdigit():
				try:
					with open(f"/proc/{pid}/comm") as f:
						if f.read().strip() in ("mariadbd", "mysqld"):
							return int(pid)
				except OSError:
					continue
	except OSError:
		pass
	return None


# ---------------------------------------------------------------- n8n side


def erpnext_workflow(credential: dict, run_id: str) -> dict:
	creds = {"erpNextApi": credential}
	return {
		"name": f"flow-engine-bench-erpnext-{run_id}",
		"active": False,
		"settings": {"executionOrder": "v1"},
		"nodes": [
			{
				"id": "b1c0a0de-0000-4000-8000-000000000011",
				"name": "Webhook",
				"type": "n8n-nodes-base.webhook",
				"typeVersion": 2,
				"position": [0, 0],
				"webhookId": "b1c0a0de-0000-4000-8000-0000000000bb",
				"parameters": {
					"httpMethod": "POST",
					"path": WEBHOOK_PATH,
					"responseMode": "lastNode",  # answer when the last node has finished
					"responseData": "firstEntryJson",
					"options": {},
				},
			},
			{
				"id": "b1c0a0de-0000-4000-8000-000000000012",
				"name": "Create ToDo",
				"type": "n8n-nodes-base.erpNext",
				"typeVersion": 1,
				"position": [220, 0],
				"credentials": creds,
				"parameters": {
					"resource": "document",
					"operation": "create",
					"docType": "ToDo",
					"properties": {
						"customProperty": [{"field": "description", "value": "={{ $json.body.description }}"}]
					},
				},
			},
			{
				"id": "b1c0a0de-0000-4000-8000-000000000013",
				"name": "Close ToDo",
				"type": "n8n-nodes-base.erpNext",
				"typeVersion": 1,
				"position": [440, 0],
				"credentials": creds,
				"parameters": {
					"resource": "document",
					"operation": "update",
					"docType": "ToDo",
					"documentName": "={{ $json.name }}",
					"properties": {"customProperty": [{"field": "status", "value": "Closed"}]},
				},
			},
		],
		"connections": {
			"Webhook": {"main": [[{"node": "Create ToDo", "type": "main", "index": 0}]]},
			"Create ToDo": {"main": [[{"node": "Close ToDo", "type": "main", "index": 0}]]},
		},
	}


# ---------------------------------------------------------------- run


def run(args) -> dict:
	n8n = N8n(args)
	n8n.check_installed()
	bench = Bench(args)
	bench.check()
	check_resolves_to_loopback(n8n.node, args.site)

	def stop_all():
		n8n.stop()
		bench.stop_gunicorn()

	stop_on_signals(stop_all)
	run_id = secrets.token_hex(4)
	prefix = f"{TAG} {run_id}"
	load_prefix = f"{prefix} load]"
	deleted = None
	try:
		leftovers = bench.site_python("delete", prefix=TAG)["deleted"]
		if leftovers:
			log(f"deleted {leftovers} ToDos left by an earlier run")
		site = bench.site_python("setup", email=BENCH_USER_EMAIL)
		log(f"site {args.site} (Frappe {site['frappe']}): API key for {site['user']}")

		n8n.start()  # resolves args.home, where the gunicorn log goes too
		bench.start_gunicorn(os.path.join(args.home, "gunicorn-bench.log"))
		n8n.setup_owner()
		domain = f"http://{args.site}:{args.gunicorn_port}"
		cred = n8n.rest(
			"POST",
			"/credentials",
			{
				"name": f"ERPNext bench {run_id}",
				"type": "erpNextApi",
				"data": {
					"apiKey": site["api_key"],
					"apiSecret": site["api_secret"],
					"environment": "selfHosted",
					"domain": domain,
					"allowUnauthorizedCerts": False,
				},
			},
		)
		n8n.activate_workflow(erpnext_workflow({"id": cred["id"], "name": cred["name"]}, run_id))
		log(
			f"workflow {n8n.workflow_id} (Webhook → ERPNext create ToDo → ERPNext close it, {domain}) active "
			f"at {n8n.base}/webhook/{WEBHOOK_PATH}"
		)

		def body(seq):
			phase = "load" if seq < 1_000_000 else "warmup"
			return {"seq": seq, "description": f"{prefix} {phase}] seq {seq}"}

		def closed_for_its_seq(out, seq):
			return out.get("status") == "Closed" and str(out.get("description", "")).endswith(f"] seq {seq}")

		fire_kw = {"path": f"/webhook/{WEBHOOK_PATH}", "body": body, "check": closed_for_its_seq}
		warm_up(args, **fire_kw)
		before, _ = n8n.successful_executions()
		db_pid = mariadb_pid()
		probes = {
			"n8n": n8n.cpu_seconds,
			"gunicorn": bench.gunicorn_cpu_seconds,
			"machine": machine_cpu_seconds,
		}
		if db_pid:
			probes["mariadb"] = lambda: pid_cpu_seconds(db_pid)
		load = timed_load(args, probes, **fire_kw)
		ok, elapsed, cpu = load["ok"], load["elapsed"], load["cpu"]
		counted, estimated = n8n.settled_successful_executions(before)
		by_status = bench.site_python("count", prefix=load_prefix)["by_status"]
		todos = sum(by_status.values())
		closed = by_status.get("Closed", 0)
		if closed != ok or todos != closed:
			log(f"note: the site holds {todos} ToDos of the load ({by_status}) for {ok} completed answers")

		def busy(key):
			v = cpu.get(key)
			return (round(v, 2) if v is not None else None), (
				round(v / elapsed, 2) if v is not None and elapsed else None
			)

		n8n_cpu, n8n_busy = busy("n8n")
		g_cpu, g_busy = busy("gunicorn")
		db_cpu, db_busy = busy("mariadb")
		_, machine_busy = busy("machine")
		ours = [cpu.get(k) for k in ("n8n", "gunicorn", "mariadb")] + [load["client_cpu"]]
		others_busy = (
			round((cpu["machine"] - sum(ours)) / elapsed, 2)
			if elapsed and cpu.get("machine") is not None and None not in ours
			else None
		)
		stop_all()
		if not args.keep_todos:
			deleted = bench.site_python("delete", prefix=prefix)["deleted"]
			log(f"deleted the run's {deleted} ToDos (and their Version rows)")
		return {
			"peer": "n8n+erpnext",
			"version": n8n.version,
			"site": args.site,
			"frappe_version": site["frappe"],
			"requests": args.requests,
			"concurrency": args.concurrency,
			"completed": ok,
			"completed_per_second": round(ok / elapsed, 2) if elapsed > 0 else None,
			"errors": load["errors"],
			"not_sent": load["not_sent"],
			"elapsed_seconds": round(elapsed, 3),
			**latency_fields(load["latencies"]),
			# CPU used during the load phase, in seconds and as a share of one core
			"n8n_cpu_seconds": n8n_cpu,
			"n8n_cpu_cores_busy": n8n_busy,
			"gunicorn_cpu_seconds": g_cpu,
			"gunicorn_cpu_cores_busy": g_busy,
			# the machine's whole MariaDB server: other sites' work on it is included
			"mariadb_cpu_seconds": db_cpu,
			"mariadb_cpu_cores_busy": db_busy,
			"client_cpu_seconds": round(load["client_cpu"], 2),
			# all cores together, and what the processes above did not use of it (other users' work)
			"machine_cpu_cores_busy": machine_busy,
			"others_cpu_cores_busy": others_busy,
			"gunicorn_workers": args.workers,
			"gunicorn_worker_class": "gthread" if args.threads else "sync",
			"gunicorn_threads": args.threads or 1,
			"cores": multiprocessing.cpu_count(),
			"todos_closed_counted": closed,
			"todos_counted": todos,
			"executions_success_counted": counted,
			"executions_count_estimated": estimated,
			"todos_deleted": deleted,
			"warmup_requests": args.warmup,
			"startup_seconds": round(n8n.startup_seconds, 1),
			"gunicorn_startup_seconds": round(bench.startup_seconds, 1),
			"db": "n8n: sqlite (n8n default); site: MariaDB",
			"smoke": bool(args.smoke),
		}
	finally:
		stop_all()
		try:
			bench.site_python("teardown", email=BENCH_USER_EMAIL)
		except Exception as e:  # best effort on the way out
			log(f"could not disable {BENCH_USER_EMAIL}: {e}")
		if deleted is None and not args.keep_todos:
			try:
				gone = bench.site_python("delete", prefix=prefix)["deleted"]
				log(f"deleted the run's {gone} ToDos (and their Version rows)")
			except Exception as e:  # best effort on the way out
				log(f"could not delete the run's ToDos: {e}")


def main(argv=None) -> int:
	args = parse_args(argv)
	if args.bench_workers:
		args.workers = int(
			_common_conf(args.bench).get("gunicorn_workers") or multiprocessing.cpu_count() * 2 + 1
		)
	try:
		result = run(args)
	except Fatal as e:
		log(str(e))
		return e.code
	sys.stdout.write(json.dumps(result) + "\n")
	sys.stdout.flush()
	return 0 if result["completed"] > 0 else 1


def _common_conf(bench: str) -> dict:
	try:
		with open(os.path.join(bench, "sites", "common_site_config.json")) as f:
			return json.load(f)
	except (OSError, ValueError):
		return {}


if __name__ == "__main__":
	sys.exit(main())
