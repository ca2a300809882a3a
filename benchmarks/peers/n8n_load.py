#!/usr/bin/env python3
"""Peer benchmark: n8n executions completed per second for a Webhook → Set workflow under load.

Plain Python 3 (stdlib only). Needs n8n installed by benchmarks/peers/setup.sh:

    python3 benchmarks/peers/n8n_load.py [--requests 2000] [--concurrency 16] [--smoke]

What it does, all on 127.0.0.1:
1. starts n8n (``/opt/peers/n8n``) in the background in its default single-process mode
   (EXECUTIONS_MODE=regular, SQLite under N8N_USER_FOLDER=/opt/peers/n8n-home; by default a fresh
   database each time), telemetry, version checks, templates and personalization off;
2. waits for /healthz/readiness, sets up the owner account through the REST API, creates the
   workflow Webhook → Set (the Set node sets two fields, the same small work as flow_engine's steps)
   with the webhook answering when the last node finishes, and activates it through the REST API;
3. warms up with a few requests, then fires --requests POSTs at --concurrency (keep-alive
   connections, bounded in count and by --max-seconds), counting HTTP 200 answers that carry the Set
   node's output as completed executions;
4. cross-checks the count of successful executions through the REST API, stops n8n.

stdout carries exactly one JSON line (progress goes to stderr):

    {"peer": "n8n", "version": "1.123.0", "requests": 2000, "concurrency": 16,
     "completed_per_second": ..., "errors": ..., ...}

Exits 2 with a message if n8n (or Node) is not installed, 1 if the benchmark itself fails.

The n8n process, its REST set-up, the load generator and the CPU probes here are shared with
``n8n_erpnext.py`` (which imports them).
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

from peer_dirs import writable_dir

HOST = "127.0.0.1"  # loopback only, never configurable
DEFAULT_N8N_DIR = "/opt/peers/n8n"
DEFAULT_HOME = "/opt/peers/n8n-home"
WEBHOOK_PATH = "flow-engine-bench"
BROWSER_ID = "flow-engine-peer-bench"
OWNER = {
	"email": "bench@example.com",
	"firstName": "Peer",
	"lastName": "Bench",
	"password": "Peer-bench-123",
}


# prefix of progress lines on stderr; n8n_erpnext.py sets its own
LOG_NAME = "n8n_load"


def log(msg: str):
	sys.stderr.write(f"{LOG_NAME}: {msg}\n")
	sys.stderr.flush()


class Fatal(Exception):
	def __init__(self, msg: str, code: int = 1):
		super().__init__(msg)
		self.code = code


def add_load_args(p, requests: int, smoke_requests: int):
	"""The sizing and n8n options both n8n scripts take."""
	p.add_argument(
		"--requests", type=int, default=None, help=f"measured webhook requests (default {requests})"
	)
	p.add_argument("--concurrency", type=int, default=None, help="requests in flight (default 16)")
	p.add_argument("--warmup", type=int, default=None, help="untimed requests first (default 5%%, 20..100)")
	p.add_argument(
		"--smoke",
		action="store_true",
		help=f"tiny size ({smoke_requests} requests, concurrency 4, unless --requests/--concurrency say "
		"otherwise)",
	)
	p.add_argument("--port", type=int, default=5678, help="n8n port on 127.0.0.1 (default 5678)")
	p.add_argument("--n8n-dir", default=os.environ.get("PEER_N8N_DIR", DEFAULT_N8N_DIR))
	p.add_argument("--home", default=os.environ.get("PEER_N8N_HOME", DEFAULT_HOME), help="N8N_USER_FOLDER")
	p.add_argument(
		"--reuse-home",
		action="store_true",
		help="keep the existing n8n database (default: start from an empty one every time)",
	)
	p.add_argument(
		"--sqlite-pool-size",
		type=int,
		default=None,
		help="DB_SQLITE_POOL_SIZE (default: n8n's own default, 0 = one connection, no WAL)",
	)
	p.add_argument(
		"--startup-timeout", type=float, default=240.0, help="seconds to wait for n8n (default 240)"
	)
	p.add_argument(
		"--max-seconds", type=float, default=600.0, help="hard cap on the load phase (default 600)"
	)
	p.add_argument("--request-timeout", type=float, default=60.0, help="per-request timeout (default 60)")


def finish_load_args(p, args, requests: int, smoke_requests: int):
	"""Defaults that depend on --smoke, and the checks."""
	if args.requests is None:
		args.requests = smoke_requests if args.smoke else requests
	if args.concurrency is None:
		args.concurrency = 4 if args.smoke else 16
	if args.warmup is None and args.smoke:
		args.warmup = 4
	if args.warmup is None:
		args.warmup = max(20, min(100, args.requests // 20))
	if args.requests < 1 or args.concurrency < 1 or args.warmup < 0:
		p.error("--requests and --concurrency must be >= 1, --warmup >= 0")
	args.concurrency = min(args.concurrency, args.requests)
	return args


def parse_args(argv=None):
	p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
	add_load_args(p, 2000, 40)
	return finish_load_args(p, p.parse_args(argv), 2000, 40)


# ---------------------------------------------------------------- n8n process


class N8n:
	def __init__(self, args):
		self.args = args
		self.base = f"http://{HOST}:{args.port}"
		self.bin = os.path.join(args.n8n_dir, "node_modules", "n8n", "bin", "n8n")
		self.proc: subprocess.Popen | None = None
		self.log_path = os.path.join(args.home, "n8n-bench.log")
		self.cookie: str | None = None
		self.version = None

	def check_installed(self):
		node = shutil.which("node")
		if not node:
			raise Fatal("node is not installed (n8n needs Node 20.19+); see benchmarks/peers/README.md", 2)
		pkg = os.path.join(self.args.n8n_dir, "node_modules", "n8n", "package.json")
		if not (os.path.isfile(self.bin) and os.path.isfile(pkg)):
			raise Fatal(
				f"n8n is not installed in {self.args.n8n_dir}: run `bash benchmarks/peers/setup.sh n8n` "
				"(or pass --n8n-dir)",
				2,
			)
		with open(pkg) as f:
			self.version = json.load(f)["version"]
		self.node = node

	def env(self):
		env = dict(os.environ)
		env.update(
			{
				"N8N_USER_FOLDER": self.args.home,
				"N8N_HOST": HOST,
				"N8N_PORT": str(self.args.port),
				"N8N_LISTEN_ADDRESS": HOST,
				"N8N_PROTOCOL": "http",
				"N8N_SECURE_COOKIE": "false",  # plain http on loopback
				"DB_TYPE": "sqlite",
				"EXECUTIONS_MODE": "regular",
				"N8N_RUNNERS_ENABLED": "false",  # 1.123's default; the Set node needs no task runner
				"N8N_DIAGNOSTICS_ENABLED": "false",
				"N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
				"N8N_TEMPLATES_ENABLED": "false",
				"N8N_PERSONALIZATION_ENABLED": "false",
				"N8N_HIRING_BANNER_ENABLED": "false",
				"N8N_DYNAMIC_BANNERS_ENABLED": "false",
				"N8N_AI_ENABLED": "false",
				"N8N_LICENSE_AUTO_RENEW_ENABLED": "false",
				"N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "false",
				"N8N_PUBLIC_API_DISABLED": "true",
				"N8N_GRACEFUL_SHUTDOWN_TIMEOUT": "10",  # stop() waits 30 s before SIGKILL
				"N8N_LOG_LEVEL": "warn",
				"SCARF_ANALYTICS": "false",
				"DO_NOT_TRACK": "1",
			}
		)
		for var in ("N8N_SENTRY_DSN", "N8N_FRONTEND_SENTRY_DSN", "WEBHOOK_URL", "N8N_EDITOR_BASE_URL"):
			env.pop(var, None)
		if self.args.sqlite_pool_size is not None:
			env["DB_SQLITE_POOL_SIZE"] = str(self.args.sqlite_pool_size)
		return env

	def start(self):
		with socket.socket() as s:
			if s.connect_ex((HOST, self.args.port)) == 0:
				raise Fatal(f"port {self.args.port} on {HOST} is already in use (another n8n?); pass --port")
		self.args.home = writable_dir(self.args.home, "n8n-home", LOG_NAME)
		self.log_path = os.path.join(self.args.home, "n8n-bench.log")
		data_dir = os.path.join(self.args.home, ".n8n")
		if not self.args.reuse_home and os.path.isdir(data_dir):
			shutil.rmtree(data_dir)
		logf = open(self.log_path, "w")
		log(f"starting n8n {self.version} on {self.base} (log: {self.log_path})")
		self.proc = subprocess.Popen(
			[self.node, self.bin, "start"],
			cwd=self.args.n8n_dir,
			env=self.env(),
			stdin=subprocess.DEVNULL,
			stdout=logf,
			stderr=subprocess.STDOUT,
			start_new_session=True,  # its own process group, so stop() ends n8n and its children
		)
		logf.close()
		t0 = time.monotonic()
		while True:
			if self.proc.poll() is not None:
				raise Fatal(
					f"n8n exited with code {self.proc.returncode} while starting; see {self.log_path}"
				)
			try:
				# /healthz/readiness answers 200 (database up) before the REST routes are mounted;
				# the public /rest/settings answers once they are.
				status, _, _ = self.request("GET", "/healthz/readiness", timeout=2)
				if status == 200:
					status, _, _ = self.request("GET", "/rest/settings", timeout=5)
					if status == 200:
						break
			except (OSError, http.client.HTTPException):
				pass
			if time.monotonic() - t0 > self.args.startup_timeout:
				raise Fatal(f"n8n not ready after {self.args.startup_timeout:.0f} s; see {self.log_path}")
			time.sleep(0.25)
		self.startup_seconds = time.monotonic() - t0
		log(f"n8n ready after {self.startup_seconds:.1f} s")

	def stop(self):
		proc, self.proc = self.proc, None
		if proc is None or proc.poll() is not None:
			return
		log("stopping n8n")
		try:
			os.killpg(proc.pid, signal.SIGTERM)
		except ProcessLookupError:
			return
		try:
			proc.wait(timeout=30)
		except subprocess.TimeoutExpired:
			try:
				os.killpg(proc.pid, signal.SIGKILL)
			except ProcessLookupError:
				pass
			proc.wait(timeout=10)

	def cpu_seconds(self):
		"""CPU seconds (user + system) used so far by n8n's process group, from /proc (Linux)."""
		return group_cpu_seconds(self.proc.pid) if self.proc is not None else None

	# ------------------------------------------------------------ REST

	def request(self, method, path, body=None, timeout=30.0, auth=False):
		conn = http.client.HTTPConnection(HOST, self.args.port, timeout=timeout)
		try:
			headers = {"Accept": "application/json", "browser-id": BROWSER_ID}
			data = None
			if body is not None:
				data = json.dumps(body).encode()
				headers["Content-Type"] = "application/json"
			if auth and self.cookie:
				headers["Cookie"] = self.cookie
			conn.request(method, path, body=data, headers=headers)
			resp = conn.getresponse()
			raw = resp.read()
			for k, v in resp.getheaders():
				if k.lower() == "set-cookie" and v.startswith("n8n-auth="):
					self.cookie = v.split(";", 1)[0]
			try:
				payload = json.loads(raw) if raw else None
			except ValueError:
				payload = raw.decode(errors="replace")
			return resp.status, payload, raw
		finally:
			conn.close()

	def rest(self, method, path, body=None):
		status, payload, raw = self.request(method, "/rest" + path, body, auth=True)
		if status >= 300:
			raise Fatal(f"n8n REST {method} /rest{path} -> HTTP {status}: {raw[:300]!r}")
		return payload.get("data", payload) if isinstance(payload, dict) else payload

	def setup_owner(self):
		status, _, raw = self.request("POST", "/rest/owner/setup", OWNER)
		if status == 200 and self.cookie:
			return
		if status == 400 and b"already" in raw:  # --reuse-home: log in instead
			status, _, raw = self.request(
				"POST", "/rest/login", {"emailOrLdapLoginId": OWNER["email"], "password": OWNER["password"]}
			)
			if status == 200 and self.cookie:
				return
		raise Fatal(f"n8n owner setup/login failed: HTTP {status}: {raw[:300]!r}")

	def create_workflow(self):
		wf = {
			"name": f"flow-engine-bench-{int(time.time())}",
			"active": False,
			"settings": {"executionOrder": "v1"},
			"nodes": [
				{
					"id": "b1c0a0de-0000-4000-8000-000000000001",
					"name": "Webhook",
					"type": "n8n-nodes-base.webhook",
					"typeVersion": 2,
					"position": [0, 0],
					"webhookId": "b1c0a0de-0000-4000-8000-0000000000aa",
					"parameters": {
						"httpMethod": "POST",
						"path": WEBHOOK_PATH,
						"responseMode": "lastNode",  # answer when the last node has finished
						"responseData": "firstEntryJson",
						"options": {},
					},
				},
				{
					"id": "b1c0a0de-0000-4000-8000-000000000002",
					"name": "Set",
					"type": "n8n-nodes-base.set",
					"typeVersion": 3.4,
					"position": [220, 0],
					"parameters": {
						"mode": "manual",
						"includeOtherFields": False,
						"assignments": {
							"assignments": [
								{"id": "f1", "name": "status", "value": "done", "type": "string"},
								{
									"id": "f2",
									"name": "seq",
									"value": "={{ $json.body.seq }}",
									"type": "number",
								},
							]
						},
						"options": {},
					},
				},
			],
			"connections": {"Webhook": {"main": [[{"node": "Set", "type": "main", "index": 0}]]}},
		}
		self.activate_workflow(wf)
		log(f"workflow {self.workflow_id} (Webhook → Set) active at {self.base}/webhook/{WEBHOOK_PATH}")

	def activate_workflow(self, wf: dict) -> str:
		"""Create `wf` and activate it (with --reuse-home, after deactivating the older ones)."""
		if self.args.reuse_home:
			for old in self.rest("GET", "/workflows") or []:
				if isinstance(old, dict) and old.get("active"):
					self.rest("POST", f"/workflows/{old['id']}/deactivate", {})
		created = self.rest("POST", "/workflows", wf)
		wf_id, version_id = created["id"], created["versionId"]
		activated = self.rest("POST", f"/workflows/{wf_id}/activate", {"versionId": version_id})
		if not activated.get("active"):
			raise Fatal(f"workflow {wf_id} did not activate: {str(activated)[:300]}")
		self.workflow_id = wf_id
		return wf_id

	def successful_executions(self):
		"""(count, estimated) of successful executions of the workflow, from the REST API."""
		flt = json.dumps({"workflowId": self.workflow_id, "status": ["success"]})
		data = self.rest("GET", "/executions?" + urllib.parse.urlencode({"filter": flt, "limit": 1}))
		return int(data.get("count", 0)), bool(data.get("estimated"))

	def settled_successful_executions(self, before: int, wait: float = 15.0):
		"""(count since `before`, estimated), once the count has stopped moving for 1 s (n8n may save
		an execution a moment after its webhook answered); (None, None) when the REST call fails."""
		counted, estimated = None, None
		try:
			stable_since, last = time.monotonic(), None
			t_end = time.monotonic() + wait
			while time.monotonic() < t_end:
				now, estimated = self.successful_executions()
				if now != last:
					last, stable_since = now, time.monotonic()
				elif time.monotonic() - stable_since > 1.0:
					break
				time.sleep(0.25)
			counted = last - before
		except Fatal as e:
			log(f"executions cross-check failed: {e}")
		return counted, estimated


def group_cpu_seconds(pgid: int):
	"""CPU seconds (user + system) used so far by the processes of group `pgid`, from /proc (Linux)."""
	return _proc_cpu_seconds(lambda pid, fields: int(fields[2]) == pgid)  # pgrp


def pid_cpu_seconds(pid: int):
	"""CPU seconds (user + system) used so far by one process (all its threads)."""
	return _proc_cpu_seconds(lambda p, _fields: p == pid, [str(pid)])


def machine_cpu_seconds():
	"""CPU seconds all cores spent busy so far (user, nice, system, irq, softirq), from /proc/stat."""
	try:
		with open("/proc/stat") as f:
			fields = f.readline().split()
		user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
	except (OSError, ValueError):
		return None
	return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _proc_cpu_seconds(match, pids=None):
	tick = os.sysconf("SC_CLK_TCK")
	total = 0
	try:
		for pid in pids if pids is not None else os.listdir("/proc"):
			if not pid.isdigit():
				continue
			try:
				with open(f"/proc/{pid}/stat") as f:
					fields = f.read().rsplit(")", 1)[1].split()
			except OSError:
				continue
			if match(int(pid), fields):
				total += int(fields[11]) + int(fields[12])  # utime + stime
	except (OSError, ValueError):
		return None
	return total / tick


# ---------------------------------------------------------------- load


def set_node_body(seq: int) -> dict:
	return {"seq": seq, "note": "flow_engine peer benchmark"}


def set_node_answered(out, seq: int) -> bool:
	"""The Set node's output for this request's seq."""
	return out.get("status") == "done" and int(out.get("seq", -1)) == seq


def fire(
	args,
	first_seq,
	count,
	concurrency,
	deadline,
	path=f"/webhook/{WEBHOOK_PATH}",
	body=set_node_body,
	check=set_node_answered,
):
	"""POST `count` webhook requests to `path` (JSON `body(seq)`), `concurrency` at a time; a request
	counts when it answers HTTP 200 with JSON for which `check(out, seq)` holds.
	Returns (ok, errors, latencies, elapsed, sample_errors, not_sent)."""
	lock = threading.Lock()
	next_seq = [first_seq]
	end_seq = first_seq + count
	ok = [0]
	errors = [0]
	latencies: list[float] = []
	samples: list[str] = []

	def worker():
		conn = None
		while True:
			with lock:
				if next_seq[0] >= end_seq or time.monotonic() > deadline:
					break
				seq = next_seq[0]
				next_seq[0] += 1
			data = json.dumps(body(seq)).encode()
			t0 = time.perf_counter()
			good, why = False, ""
			try:
				if conn is None:
					conn = http.client.HTTPConnection(HOST, args.port, timeout=args.request_timeout)
				conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
				resp = conn.getresponse()
				raw = resp.read()
				if resp.status == 200:
					out = json.loads(raw)
					good = isinstance(out, dict) and check(out, seq)
					why = "" if good else f"unexpected body {raw[:120]!r}"
				else:
					why = f"HTTP {resp.status} {raw[:120]!r}"
				if resp.getheader("connection", "").lower() == "close":
					conn.close()
					conn = None
			except (OSError, http.client.HTTPException, ValueError) as e:
				why = f"{type(e).__name__}: {e}"
				if conn is not None:
					conn.close()
				conn = None
			dt = time.perf_counter() - t0
			with lock:
				if good:
					ok[0] += 1
					latencies.append(dt)
				else:
					errors[0] += 1
					if len(samples) < 5:
						samples.append(why)
		if conn is not None:
			conn.close()

	threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
	t0 = time.perf_counter()
	for t in threads:
		t.start()
	for t in threads:
		t.join()
	elapsed = time.perf_counter() - t0
	not_sent = end_seq - next_seq[0]
	return ok[0], errors[0], latencies, elapsed, samples, not_sent


def pct(values, q):
	if not values:
		return None
	s = sorted(values)
	return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def latency_fields(latencies) -> dict:
	"""latency_ms_p50/p95/p99/mean of the completed requests (None without any)."""
	return {
		"latency_ms_p50": round(pct(latencies, 0.50) * 1000, 1) if latencies else None,
		"latency_ms_p95": round(pct(latencies, 0.95) * 1000, 1) if latencies else None,
		"latency_ms_p99": round(pct(latencies, 0.99) * 1000, 1) if latencies else None,
		"latency_ms_mean": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
	}


def warm_up(args, **fire_kw):
	"""Untimed requests first (seq from 1,000,000); fails when none of them succeeds."""
	if not args.warmup:
		return
	w_ok, w_err, _, w_el, w_samples, _ = fire(
		args, 1_000_000, args.warmup, min(args.concurrency, args.warmup), time.monotonic() + 120, **fire_kw
	)
	log(f"warm-up: {w_ok} ok, {w_err} errors in {w_el:.1f} s")
	if w_ok == 0:
		raise Fatal(f"warm-up: no webhook request succeeded: {w_samples}")


def timed_load(args, cpu_probes: dict, **fire_kw) -> dict:
	"""The measured phase: --requests from seq 0 at --concurrency, bounded by --max-seconds.
	`cpu_probes` maps a name to a function giving CPU seconds so far; each is read before and after
	and reported as `cpu[name]` (None when unreadable)."""
	log(f"load: {args.requests} requests at concurrency {args.concurrency}")
	deadline = time.monotonic() + args.max_seconds
	cpu0, cpu_me0 = {k: f() for k, f in cpu_probes.items()}, os.times()
	ok, errors, latencies, elapsed, samples, not_sent = fire(
		args, 0, args.requests, args.concurrency, deadline, **fire_kw
	)
	cpu1, cpu_me1 = {k: f() for k, f in cpu_probes.items()}, os.times()
	cpu = {k: cpu1[k] - cpu0[k] if cpu0[k] is not None and cpu1[k] is not None else None for k in cpu_probes}
	if samples:
		log(f"sample errors: {samples}")
	if not_sent:
		log(f"stopped at --max-seconds {args.max_seconds:.0f}: {not_sent} requests not sent")
	return {
		"ok": ok,
		"errors": errors,
		"latencies": latencies,
		"elapsed": elapsed,
		"not_sent": not_sent,
		"cpu": cpu,
		"client_cpu": (cpu_me1.user + cpu_me1.system) - (cpu_me0.user + cpu_me0.system),
	}


def stop_on_signals(stop):
	"""Call `stop` on SIGTERM, Ctrl-C and exit."""

	def _on_signal(signum, _frame):
		stop()
		sys.exit(128 + signum)

	signal.signal(signal.SIGTERM, _on_signal)
	signal.signal(signal.SIGINT, _on_signal)
	atexit.register(stop)


def run(args) -> dict:
	n8n = N8n(args)
	n8n.check_installed()
	stop_on_signals(n8n.stop)
	try:
		n8n.start()
		n8n.setup_owner()
		n8n.create_workflow()

		warm_up(args)
		before, _ = n8n.successful_executions()
		load = timed_load(args, {"n8n": n8n.cpu_seconds})
		ok, elapsed, cpu_n8n = load["ok"], load["elapsed"], load["cpu"]["n8n"]
		counted, estimated = n8n.settled_successful_executions(before)

		result = {
			"peer": "n8n",
			"version": n8n.version,
			"requests": args.requests,
			"concurrency": args.concurrency,
			"completed": ok,
			"completed_per_second": round(ok / elapsed, 2) if elapsed > 0 else None,
			"errors": load["errors"],
			"not_sent": load["not_sent"],
			"elapsed_seconds": round(elapsed, 3),
			**latency_fields(load["latencies"]),
			# CPU used during the load phase, in seconds and as a share of one core
			"n8n_cpu_seconds": round(cpu_n8n, 2) if cpu_n8n is not None else None,
			"n8n_cpu_cores_busy": round(cpu_n8n / elapsed, 2) if cpu_n8n is not None and elapsed else None,
			"client_cpu_seconds": round(load["client_cpu"], 2),
			"executions_success_counted": counted,
			"executions_count_estimated": estimated,
			"warmup_requests": args.warmup,
			"startup_seconds": round(n8n.startup_seconds, 1),
			"db": "sqlite"
			+ (f" pool={args.sqlite_pool_size}" if args.sqlite_pool_size is not None else " (n8n default)"),
			"smoke": bool(args.smoke),
		}
		if counted is not None and counted != ok:
			log(f"note: n8n recorded {counted} successful executions for {ok} HTTP 200 answers")
		return result
	finally:
		n8n.stop()


def main(argv=None) -> int:
	args = parse_args(argv)
	try:
		result = run(args)
	except Fatal as e:
		log(str(e))
		return e.code
	sys.stdout.write(json.dumps(result) + "\n")
	sys.stdout.flush()
	return 0 if result["completed"] > 0 else 1


if __name__ == "__main__":
	sys.exit(main())
