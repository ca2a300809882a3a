"""A long-lived consumer of flow work (`bench flow consume`): runs start moving within milliseconds
of the commit that asked, instead of after a worker job's start-up.

Frappe's RQ worker forks a process and initialises the site for every job (35 ms for an empty job on
a bare site, far more with ERPNext's hooks), which dominated the time from a document's save to its
flow's first step. The consumer is one process that stays up: the dispatcher (`jobs`) pushes the
site's name on a Redis list after its commit, and the consumer, blocked on that list, claims the
site's waiting runs (`runs.advance_pool`) at once.

Isolation is what Frappe gives its jobs: every batch of work runs between its own `frappe.init` /
`frappe.connect` and `frappe.destroy` (a fresh `frappe.local`, database connection and transaction),
an error is logged and the loop goes on, and the process exits after `max_batches` for its
supervisor to start it again (memory). Nothing depends on it: the dispatcher wakes a consumer only
while its heartbeat is fresh and otherwise queues pool jobs as before; a consumer that is busy lets
its heartbeat lapse so the workers take new work, and a batch it took and lost is found by the runs'
leases like a lost job's.
"""

from __future__ import annotations

import os
import socket
import time

import frappe

WAKE = "flow_engine_wake"  # list of site names with runs waiting (bench-wide, the queue's Redis)
ALIVE = "flow_engine_consumer"  # a consumer's heartbeat: exists while one waits for work
ALIVE_SECONDS = 3
ALIVE_CACHE_SECONDS = 0.5  # how long a process trusts its reading of the heartbeat
_alive_read: list = [0.0, False]  # (monotonic time read, value): per process, not per request


def _key(name: str) -> str:
	from frappe.utils.background_jobs import get_bench_id

	return f"{get_bench_id()}:{name}"


def _redis():
	from frappe.utils.background_jobs import get_redis_conn

	return get_redis_conn()


def alive(fresh: bool = False) -> bool:
	"""Whether a consumer waits for work (read at most every ALIVE_CACHE_SECONDS per process)."""
	now = time.monotonic()
	if fresh or now - _alive_read[0] > ALIVE_CACHE_SECONDS:
		try:
			_alive_read[1] = bool(_redis().exists(_key(ALIVE)))
		except Exception:
			_alive_read[1] = False
		_alive_read[0] = now
	return _alive_read[1]


def wake(site: str) -> bool:
	"""Hand this site's waiting runs to a consumer; False when none is up (queue pool jobs instead)."""
	if not alive():
		return False
	try:
		_redis().rpush(_key(WAKE), site)
		return True
	except Exception:
		_alive_read[0] = 0.0
		return False


def serve(
	sites: list[str] | None = None,
	max_batches: int = 10_000,
	lifetime: float | None = None,
	sites_path: str = ".",
) -> int:
	"""Wait for wakes and advance the woken sites' runs; returns the batches served.

	`sites`: the sites this consumer serves (others' wakes are left to their pool jobs: dropped here,
	their runs are leased and recovered); None serves every site of the bench."""
	with frappe.init_site():  # (no site: the bench's common config names the queue's Redis)
		connection = _redis()
		wake_key, alive_key = _key(WAKE), _key(ALIVE)
	me = f"{socket.gethostname()}:{os.getpid()}"
	allowed = set(sites) if sites else None
	deadline = time.monotonic() + lifetime if lifetime else None
	served = 0
	try:
		while served < max_batches and (deadline is None or time.monotonic() < deadline):
			connection.set(alive_key, me, ex=ALIVE_SECONDS)
			popped = connection.blpop([wake_key], timeout=1)
			if popped is None:
				continue
			woken = {popped[1]}
			while (more := connection.lpop(wake_key)) is not None:  # wakes that came meanwhile: one batch
				woken.add(more)
			for site in sorted(name.decode() if isinstance(name, bytes) else name for name in woken):
				if allowed is None or site in allowed:
					serve_site(site, sites_path)
					served += 1
	finally:
		if (connection.get(alive_key) or b"").decode() == me:
			connection.delete(alive_key)
	return served


def serve_site(site: str, sites_path: str = ".") -> None:
	"""One batch: the site's waiting runs advanced in an isolated Frappe context (as a job would be)."""
	try:
		frappe.init(site=site, sites_path=sites_path)
		frappe.connect()
	except Exception:
		frappe.destroy()
		return  # not a site of this bench (or it is being dropped): its runs are leased and recovered
	try:
		frappe.set_user("Administrator")
		from flow_engine.runtime import runs

		runs.advance_pool()
		frappe.db.commit()
	except Exception:
		try:
			frappe.db.rollback()
			frappe.log_error(title="flow_engine: the consumer could not advance runs")
			frappe.db.commit()
		except Exception:
			pass
	finally:
		frappe.destroy()
