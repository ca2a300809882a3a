"""Concurrency controls of a flow (runtime/admission.py): at most N open runs, a dedupe key, a rate limit.

The concurrent tests start runs from separate processes through real triggers (inserting Flow Test
Docs), forced to overlap with a file barrier: every process reaches the flow's lock together, and
after its admission reads it waits (up to 2 s) for the others before inserting its run, so without
the lock all of them would count the same open runs. Two controls show the race really happens:
without the flow's lock, and with the lock but plain (snapshot) reads instead of locking reads.
"""

import pathlib
import tempfile
import time

import frappe

from flow_engine.runtime import admission, runs, scheduler, store
from flow_engine.tests.utils import (
	BARRIER,
	TEST_DOCTYPE,
	FlowTestCase,
	make_flow,
	new_test_doc,
	run_in_subprocess,
)

# MODE: "locked" (as shipped), "unlocked" (no lock on the flow's row, plain reads), "lock-only" (the
# flow's row locked, but the admission reads plain: they see the snapshot of the caller's transaction)
ADMISSION_BARRIER = """
from flow_engine.runtime import admission, store
_limits, _insert_row, _sql = admission.limits, store.insert_row, frappe.db.sql
def limits(template, lock=""):
	if lock == "for update":
		barrier("before-lock", PARTIES, 30)
		if MODE == "unlocked":
			lock = ""
	return _limits(template, lock)
def insert_row(doctype, values, name=None):
	if doctype == "Flow Run":
		barrier("after-read", PARTIES, 2)
	return _insert_row(doctype, values, name=name)
def sql(query, *args, **kwargs):
	if MODE != "locked" and isinstance(query, str) and "force index" in query:
		query = query.replace("lock in share mode", "").replace("for update", "")
	return _sql(query, *args, **kwargs)
admission.limits = limits
store.insert_row = insert_row
frappe.db.sql = sql
"""

TRIGGER = f"""
frappe.flags.flow_engine_inline = True
doc = frappe.get_doc({{"doctype": {TEST_DOCTYPE!r}, "title": sys.argv[1]}}).insert()
frappe.db.commit()
"""


def race(titles: list[str], mode: str = "locked") -> None:
	"""Insert one Flow Test Doc per title, each in its own process, overlapping at the barrier."""
	folder = tempfile.mkdtemp(prefix="flow-admission-")
	prelude = (
		f"BARRIER_DIR = {folder!r}\nPARTIES = {len(titles)}\nMODE = {mode!r}\n" + BARRIER + ADMISSION_BARRIER
	)
	procs = [
		run_in_subprocess(f"sys.argv[1:] = [{title!r}]\n" + prelude + TRIGGER, wait=False) for title in titles
	]
	for proc in procs:
		_out, err = proc.communicate(timeout=180)
		if proc.returncode != 0:
			raise AssertionError(err[-3000:])
	frappe.db.rollback()


PARK = [
	{"id": "w", "kind": "wait", "trigger": {"type": "manual"}},
	{
		"id": "t",
		"kind": "create_doc",
		"payload": {"doctype": "ToDo", "fields": {"description": "done {{run.name}} [flowtest]"}},
		"depends_on": ["w"],
	},
]
INSTANT = [PARK[1] | {"depends_on": []}]


def rows(template: str) -> list[frappe._dict]:
	return frappe.get_all(
		"Flow Run",
		filters={"template": template},
		fields=["name", "status", "creation", "started_at", "dedupe_value", "lease_owner", "lease_until"],
		order_by="creation asc, name asc",
	)


def settle(template: str) -> None:
	"""Advance the admitted runs a racing process left `running` (its inline advance lost a lock wait
	under load: in production the lease recovery would pick it up)."""
	for row in rows(template):
		if row.status == "running":
			runs.advance(row.name)
			frappe.db.commit()


def statuses(template: str) -> dict[str, int]:
	counts: dict[str, int] = {}
	for row in rows(template):
		counts[row.status] = counts.get(row.status, 0) + 1
	return counts


def open_count(template: str) -> int:
	return sum(1 for row in rows(template) if row.status in admission.OPEN)


class AdmissionTestCase(FlowTestCase):
	def flow(self, name: str, steps=PARK, event: str = "after_insert", **controls) -> str:
		return make_flow(name, steps, event=event, **controls).name

	def drain(self, template: str, limit: int) -> list[str]:
		"""Complete the open runs' manual step one at a time, oldest first, checking the limit after
		every end; returns the runs in the order they were completed."""
		done = []
		for _round in range(50):
			open_runs = [row for row in rows(template) if row.status in admission.OPEN]
			self.assertLessEqual(len(open_runs), limit)
			if not open_runs:
				break
			first = min(open_runs, key=lambda row: (row.started_at, row.creation, row.name))
			runs.complete_step(first.name, "w")
			frappe.db.commit()
			done.append(first.name)
		return done


class TestMaxConcurrentRuns(AdmissionTestCase):
	def test_concurrent_triggers_never_open_more_than_n_and_the_rest_start_in_order(self):
		template = self.flow("max two", max_concurrent_runs=2)
		race(["a", "b", "c", "d"])
		settle(template)
		self.assertEqual(statuses(template), {"waiting": 2, "queued": 2})
		queued = [row.name for row in rows(template) if row.status == "queued"]
		for name in queued:
			row = frappe.db.get_value(
				"Flow Run", name, ["lease_owner", "lease_until", "step_state"], as_dict=True
			)
			self.assertEqual((row.lease_owner, row.lease_until), (None, None), "a queued run has no lease")
			self.assertFalse(store.loads(row.step_state), "nothing of a queued run has executed")
		done = self.drain(template, limit=2)
		self.assertEqual(len(done), 4)
		self.assertEqual(statuses(template), {"completed": 4})
		started = sorted(
			(row for row in rows(template) if row.name in queued), key=lambda row: row.started_at
		)
		self.assertEqual([row.name for row in started], queued, "queued runs start in creation order")
		self.assertEqual(frappe.db.count("ToDo", {"description": ["like", "done %[flowtest]%"]}), 4)

	def test_control_without_the_flow_lock_more_than_n_are_open(self):
		template = self.flow("max two unlocked", max_concurrent_runs=2)
		race(["a", "b", "c", "d"], mode="unlocked")
		self.assertGreater(open_count(template), 2, "the barrier forces the race the lock prevents")

	def test_control_with_the_lock_but_snapshot_reads_more_than_n_are_open(self):
		template = self.flow("max two snapshot", max_concurrent_runs=2)
		race(["a", "b", "c", "d"], mode="lock-only")
		self.assertGreater(open_count(template), 2, "plain reads see the snapshot from before the lock")

	def test_queued_run_can_be_cancelled_and_is_skipped(self):
		template = self.flow("cancel queued", event="manual", max_concurrent_runs=1)
		first, second, third = (runs.start_run(template) for _ in range(3))
		frappe.db.commit()
		self.assertEqual(
			[store.load_run(name).status for name in (first, second, third)], ["waiting", "queued", "queued"]
		)
		self.assertEqual(runs.cancel_run(second, "not needed"), "cancelled")
		frappe.db.commit()
		record = store.load_run(second)
		self.assertEqual((record.status, record.error, record.lease_owner), ("cancelled", "not needed", None))
		self.assertEqual(store.load_run(third).status, "queued", "cancelling a queued run frees no slot")
		self.assertEqual(runs.advance(third), "queued", "advancing a queued run does not start it")
		runs.complete_step(first, "w")
		frappe.db.commit()
		self.assertEqual(store.load_run(third).status, "waiting", "the next queued run starts")
		self.assertEqual(store.load_run(second).status, "cancelled")

	def test_a_retried_run_waits_its_turn(self):
		"""Retrying a failed run of a flow at its limit queues it; it runs when a slot frees."""
		steps = [
			{
				"id": "c",
				"kind": "condition",
				"payload": {"condition": {"field": "input.park", "op": "==", "value": 1}},
			},
			{"id": "w", "kind": "wait", "parent_id": "c", "branch": "yes", "trigger": {"type": "manual"}},
			{
				"id": "boom",
				"kind": "update_doc",
				"parent_id": "c",
				"branch": "no",
				"payload": {"doctype": "ToDo", "name": "missing-[flowtest]", "fields": {"status": "Closed"}},
			},
		]
		template = self.flow("retry queued", steps=steps, event="manual", max_concurrent_runs=1)
		failed = runs.start_run(template, input={"park": 0})
		frappe.db.commit()
		self.assertEqual(store.load_run(failed).status, "failed")
		holder = runs.start_run(template, input={"park": 1})
		frappe.db.commit()
		self.assertEqual(store.load_run(holder).status, "waiting")
		self.assertEqual(runs.retry_run(failed), "queued")
		frappe.db.commit()
		record = store.load_run(failed)
		self.assertEqual((record.status, record.lease_owner), ("queued", None), "no slot: it waits")
		runs.complete_step(holder, "w")
		frappe.db.commit()
		record = store.load_run(failed)
		self.assertEqual(record.status, "failed", "started when the slot freed, and failed again")
		self.assertEqual(record.states["boom"]["attempts"], 2)

	def test_tick_admits_when_the_limit_is_raised(self):
		template = self.flow("raised", event="manual", max_concurrent_runs=1)
		first, second = runs.start_run(template), runs.start_run(template)
		frappe.db.commit()
		self.assertEqual(store.load_run(second).status, "queued")
		frappe.db.set_value("Flow Template", template, "max_concurrent_runs", 2)
		frappe.db.commit()
		scheduler.tick()
		self.assertEqual(store.load_run(second).status, "waiting")
		self.assertEqual(store.load_run(first).status, "waiting")

	def test_a_run_ending_while_an_admission_holds_the_flow_admits_after_commit(self):
		template = self.flow("flow row taken", event="manual", max_concurrent_runs=1)
		first, second = runs.start_run(template), runs.start_run(template)
		frappe.db.commit()
		folder = tempfile.mkdtemp(prefix="flow-admission-")
		holder = run_in_subprocess(
			f"import pathlib, time\nfrappe.db.sql('select name from `tabFlow Template` where name=%s for update', "
			f"({template!r},))\npathlib.Path({folder!r}, 'held').touch()\ntime.sleep(2)\nfrappe.db.commit()\n",
			wait=False,
		)
		while not pathlib.Path(folder, "held").exists() and holder.poll() is None:
			time.sleep(0.01)
		runs.complete_step(first, "w")
		frappe.db.commit()  # the run ends (its release finds the flow's row taken), then admits after commit
		holder.communicate(timeout=60)
		self.assertEqual(store.load_run(first).status, "completed")
		self.assertEqual(store.load_run(second).status, "waiting")


class TestDedupe(AdmissionTestCase):
	def test_skip_under_concurrent_triggers_starts_one_run_per_key(self):
		template = self.flow("dedupe skip", dedupe_key="{{doc.title}}", dedupe_policy="skip")
		race(["same", "same", "same", "other"])
		settle(template)
		by_key = {}
		for row in rows(template):
			by_key.setdefault(row.dedupe_value, []).append(row.status)
		self.assertEqual(by_key, {"same": ["waiting"], "other": ["waiting"]})

	def test_control_without_the_flow_lock_duplicates_start(self):
		template = self.flow("dedupe skip unlocked", dedupe_key="{{doc.title}}", dedupe_policy="skip")
		race(["same", "same", "same"], mode="unlocked")
		self.assertGreater(len(rows(template)), 1, "the barrier forces the duplicate the lock prevents")

	def test_queue_under_concurrent_triggers_runs_one_per_key_at_a_time_in_order(self):
		template = self.flow("dedupe queue", dedupe_key="{{doc.title}}", dedupe_policy="queue")
		race(["same", "same", "same"])
		settle(template)
		self.assertEqual(statuses(template), {"waiting": 1, "queued": 2})
		created = [row.name for row in rows(template)]
		done = self.drain(template, limit=1)
		self.assertEqual(done, created, "one run of the key at a time, in creation order")
		self.assertEqual(statuses(template), {"completed": 3})

	def test_skip_returns_none_and_records_nothing_and_a_closed_key_starts_again(self):
		template = self.flow("dedupe direct", event="manual", dedupe_key="{{doc.title}}-{{input.region}}")
		doc = new_test_doc(title="acme")
		first = runs.start_run(template, doc=doc, input={"region": "north"})
		self.assertIsNone(runs.start_run(template, doc=doc, input={"region": "north"}))
		other = runs.start_run(template, doc=doc, input={"region": "south"})
		frappe.db.commit()
		self.assertEqual(len(rows(template)), 2)
		self.assertEqual(frappe.db.get_value("Flow Run", first, "dedupe_value"), "acme-north")
		self.assertEqual(frappe.db.get_value("Flow Run", other, "dedupe_value"), "acme-south")
		runs.complete_step(first, "w")
		frappe.db.commit()
		again = runs.start_run(template, doc=doc, input={"region": "north"})
		frappe.db.commit()
		self.assertEqual(store.load_run(again).status, "waiting", "the key's run ended: a new one starts")

	def test_the_design_api_says_a_skipped_start_was_skipped(self):
		from flow_engine.api import design

		template = self.flow("dedupe design", event="manual", dedupe_key="{{variables.order}}")
		first = design.start(template, variables={"order": "SO-1"})
		frappe.db.commit()
		self.assertTrue(first["run"])
		second = design.start(template, variables={"order": "SO-1"})
		self.assertEqual((second["run"], second["status"]), (None, "skipped"))
		self.assertIn("same dedupe key", second["reason"])

	def test_empty_key_does_not_dedupe(self):
		template = self.flow("dedupe empty", event="manual", dedupe_key="{{doc.title}}")
		first, second = runs.start_run(template), runs.start_run(template)
		frappe.db.commit()
		self.assertEqual([store.load_run(name).status for name in (first, second)], ["waiting", "waiting"])
		self.assertIsNone(frappe.db.get_value("Flow Run", first, "dedupe_value"))


class TestRateLimit(AdmissionTestCase):
	def age(self, template: str, seconds: int) -> None:
		"""Move the runs that started back in time (instead of sleeping)."""
		frappe.db.sql(
			"""update `tabFlow Run` set started_at = started_at - interval %s second
			where template=%s and status != 'queued'""",
			(seconds, template),
		)
		frappe.db.commit()

	def test_runs_over_the_rate_are_queued_and_admitted_as_the_window_allows(self):
		template = self.flow("rate", steps=INSTANT, event="manual", rate_limit_per_minute=2)
		names = [runs.start_run(template) for _ in range(5)]
		frappe.db.commit()
		self.assertEqual(
			[store.load_run(name).status for name in names],
			["completed", "completed", "queued", "queued", "queued"],
		)
		self.assertEqual(admission.admit_all(), 0, "the window is still full")
		self.age(template, 61)
		self.assertEqual(admission.admit_all(), 2)
		self.assertEqual(
			[store.load_run(name).status for name in names],
			["completed", "completed", "completed", "completed", "queued"],
		)
		self.age(template, 30)
		self.assertEqual(admission.admit_all(), 0, "the admitted two started less than a minute ago")
		self.age(template, 31)
		scheduler.tick()  # the minute tick admits
		self.assertEqual(statuses(template), {"completed": 5})
		started = [frappe.db.get_value("Flow Run", name, "started_at") for name in names]
		self.assertGreater(started[4], started[2], "a queued run's start is when it was admitted")

	def test_a_new_run_does_not_overtake_queued_ones(self):
		template = self.flow("rate order", steps=INSTANT, event="manual", rate_limit_per_minute=1)
		first, second = runs.start_run(template), runs.start_run(template)
		frappe.db.commit()
		self.assertEqual(store.load_run(second).status, "queued")
		self.age(template, 61)
		third = runs.start_run(template)  # the window has room again: the queued one goes first
		frappe.db.commit()
		self.assertEqual(store.load_run(second).status, "completed")
		self.assertEqual(store.load_run(third).status, "queued")
		self.assertEqual(store.load_run(first).status, "completed")


class TestUnlimited(AdmissionTestCase):
	def test_a_flow_without_controls_starts_running_without_a_dedupe_value(self):
		template = self.flow("free", event="manual")
		name = runs.start_run(template)
		row = frappe.db.get_value("Flow Run", name, ["status", "dedupe_value", "lease_owner"], as_dict=True)
		self.assertEqual((row.status, row.dedupe_value), ("running", None))
		self.assertTrue(row.lease_owner)
		frappe.db.commit()
		self.assertEqual(store.load_run(name).status, "waiting")
		self.assertEqual(
			admission.dedupe_value("{{doc.title}}", None), None, "no document: the key renders empty"
		)
