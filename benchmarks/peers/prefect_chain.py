#!/usr/bin/env python3
"""Peer benchmark: a chain of 40 sequential Prefect tasks in Prefect's default local setup.

Run with the peer's own interpreter (see benchmarks/peers/README.md):

    /opt/peers/prefect-venv/bin/python benchmarks/peers/prefect_chain.py [--runs 5] [--smoke]

Each task does the same work as one of flow_engine's ``set_variables`` steps: it sets one variable
(from the previous task's value) and returns it. The flow runs against Prefect's default local
setup: no PREFECT_API_URL, so Prefect starts its own temporary local API server backed by SQLite
under PREFECT_HOME (default /opt/peers/prefect-home). Nothing leaves the machine: analytics are off
and the API URL, if any is set in the environment, is removed.

One warm-up run (it also starts the local server), then --runs timed runs, each after an untimed
--settle pause (default 2 s: started back to back, a run's first API call often meets HTTP 503 from
the server while SQLite is busy flushing the previous run's events, and the client then sleeps ~2 s;
the retry count is reported as client_retries). Everything Prefect
writes goes to stderr; stdout carries exactly one JSON line:

    {"peer": "prefect", "version": "3.8.8", "tasks": 40, "per_task_ms_median": ...,
     "per_task_ms_all": [...], "run_seconds": [...]}

per-task ms = wall time of one whole flow run (call to return) / number of tasks.
Exits 2 with a message on stderr if Prefect is not installed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
import traceback

from peer_dirs import writable_dir

DEFAULT_VENV_PYTHON = os.environ.get("PEER_PREFECT_PYTHON", "/opt/peers/prefect-venv/bin/python")
DEFAULT_HOME = "/opt/peers/prefect-home"


def _parse_args(argv=None):
	p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
	p.add_argument("--runs", type=int, default=None, help="timed runs after one warm-up (default 5)")
	p.add_argument("--tasks", type=int, default=None, help="tasks in the chain (default 40)")
	p.add_argument(
		"--smoke",
		action="store_true",
		help="tiny size (1 timed run of 5 tasks unless --runs/--tasks say otherwise) to check the script works",
	)
	p.add_argument(
		"--settle",
		type=float,
		default=2.0,
		help="untimed pause before each run, so the local server's background services finish flushing "
		"the previous run's events (default 2.0 s; 0 = back to back, see README)",
	)
	p.add_argument(
		"--prefect-home",
		default=os.environ.get("PEER_PREFECT_HOME", DEFAULT_HOME),
		help=f"PREFECT_HOME to use (default {DEFAULT_HOME})",
	)
	args = p.parse_args(argv)
	if args.smoke:
		args.settle = min(args.settle, 0.5)
	if args.runs is None:
		args.runs = 1 if args.smoke else 5
	if args.tasks is None:
		args.tasks = 5 if args.smoke else 40
	if args.runs < 1 or args.tasks < 1:
		p.error("--runs and --tasks must be >= 1")
	return args


class _RetryCounter(logging.Handler):
	def __init__(self):
		super().__init__(level=logging.DEBUG)
		self.count = 0

	def emit(self, record):
		if "retryable" in record.getMessage():
			self.count += 1


def _die(msg: str, code: int = 2):
	sys.stderr.write(f"prefect_chain: {msg}\n")
	sys.exit(code)


def _local_only_env(prefect_home: str):
	"""Prefect's default local setup, with nothing reaching the internet. Must run before import."""
	prefect_home = writable_dir(prefect_home, "prefect-home", "prefect_chain")
	os.environ["PREFECT_HOME"] = prefect_home
	# No remote API: Prefect then starts its temporary local server (SQLite under PREFECT_HOME).
	for var in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
		os.environ.pop(var, None)
	os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] = "true"
	os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
	os.environ.setdefault("PREFECT_SERVER_API_HOST", "127.0.0.1")
	os.environ.setdefault("PREFECT_UI_ENABLED", "false")
	os.environ.setdefault("DO_NOT_TRACK", "1")


def main(argv=None) -> int:
	args = _parse_args(argv)
	_local_only_env(args.prefect_home)

	try:
		import prefect
		from prefect import flow, task
	except ImportError:
		# Convenience: re-run under the peer's venv if we were started with another interpreter.
		if (
			os.path.exists(DEFAULT_VENV_PYTHON)
			and os.path.abspath(sys.executable) != os.path.abspath(DEFAULT_VENV_PYTHON)
			and not os.environ.get("_PEER_PREFECT_REEXEC")
		):
			os.environ["_PEER_PREFECT_REEXEC"] = "1"
			os.execv(DEFAULT_VENV_PYTHON, [DEFAULT_VENV_PYTHON, os.path.abspath(__file__), *sys.argv[1:]])
		_die(
			"Prefect is not installed for this interpreter "
			f"({sys.executable}). Run benchmarks/peers/setup.sh, then "
			f"{DEFAULT_VENV_PYTHON} benchmarks/peers/prefect_chain.py"
		)

	# Keep stdout for the one JSON line: everything else (Prefect's console logs, the temporary
	# server subprocess, which inherits fd 1) goes to stderr.
	result_fd = os.dup(1)
	os.dup2(2, 1)
	sys.stdout = os.fdopen(os.dup(1), "w", buffering=1)

	n_tasks = args.tasks
	# Count the client's retries (the temporary server answers 503 while SQLite is busy; the client
	# then backs off ~2 s). They are part of Prefect's default behaviour, so they stay in the timings,
	# but the count is reported so a slow figure can be read.
	retries = _RetryCounter()
	client_logger = logging.getLogger("prefect.client")
	client_logger.addHandler(retries)
	if client_logger.getEffectiveLevel() > logging.DEBUG:
		client_logger.setLevel(logging.DEBUG)
	in_flow_seconds: list[float] = []

	@task(name="set_variable")
	def set_variable(index: int, previous: str | None) -> str:
		# The same work as one set_variables step: render a small value and store it.
		return f"v{index}:{'' if previous is None else previous[:8]}"

	@flow(name="peer-chain")
	def chain() -> str | None:
		t0 = time.perf_counter()
		value = None
		for i in range(n_tasks):
			value = set_variable(i, value)
		in_flow_seconds.append(time.perf_counter() - t0)
		return value

	try:
		# Warm-up: starts the temporary local server, creates the SQLite schema, imports lazily.
		t0 = time.perf_counter()
		chain()
		warmup = time.perf_counter() - t0
		sys.stderr.write(f"prefect_chain: warm-up run took {warmup:.2f} s\n")

		run_seconds = []
		in_flow_seconds.clear()
		retries.count = 0
		for r in range(args.runs):
			if args.settle > 0:
				time.sleep(args.settle)
			t0 = time.perf_counter()
			out = chain()
			run_seconds.append(time.perf_counter() - t0)
			if not (isinstance(out, str) and out.startswith(f"v{n_tasks - 1}:")):
				_die(f"run {r} returned an unexpected value {out!r}", 1)
			sys.stderr.write(f"prefect_chain: run {r + 1}/{args.runs}: {run_seconds[-1]:.3f} s\n")
	except Exception as e:
		traceback.print_exc()
		_die(f"flow run failed: {type(e).__name__}: {e}", 1)

	per_task = [s * 1000.0 / n_tasks for s in run_seconds]
	in_flow = [s * 1000.0 / n_tasks for s in in_flow_seconds]
	result = {
		"peer": "prefect",
		"version": prefect.__version__,
		"tasks": n_tasks,
		"per_task_ms_median": round(statistics.median(per_task), 3),
		"per_task_ms_all": [round(x, 3) for x in per_task],
		"run_seconds": [round(x, 4) for x in run_seconds],
		"per_task_ms_in_flow_median": round(statistics.median(in_flow), 3),
		"client_retries": retries.count,
		"settle_seconds": args.settle,
		"warmup_seconds": round(warmup, 3),
		"smoke": bool(args.smoke),
	}
	os.write(result_fd, (json.dumps(result) + "\n").encode())
	return 0


if __name__ == "__main__":
	sys.exit(main())
