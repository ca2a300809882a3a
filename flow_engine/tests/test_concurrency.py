"""Concurrency, with the overlap forced: separate processes meet at a barrier right before the lock
under test, and again right after their read, so without the lock both would read the same state.

Each guarantee has a control that removes its lock (in the subprocess only) and shows the race the
lock prevents really happens under this barrier: the tests can fail.
"""

import tempfile

import frappe
from frappe.utils import add_to_date, now_datetime

from flow_engine.runtime import runs, scheduler, store
from flow_engine.tests.utils import BARRIER, FlowTestCase, make_flow, run_in_subprocess

# both processes reach the run lock together; after reading, each waits (up to 3 s) for the other:
# with the lock the second is blocked inside the read, so the first goes on alone after 3 s
RUN_LOCK_BARRIER = """
from flow_engine.runtime import store
_load_run = store.load_run
def load_run(name, lock=False):
	barrier("before-lock", 2, 20)
	record = _load_run(name, lock=lock and LOCKED)
	barrier("after-read", 2, 3)
	return record
store.load_run = load_run
"""


def race(code: str, args: list[str], locked: bool = True) -> list[str]:
	"""Run `code` in len(args) processes (sys.argv[1] = their arg), overlapping at the barrier."""
	folder = tempfile.mkdtemp(prefix="flow-barrier-")
	prelude = f"BARRIER_DIR = {folder!r}\nLOCKED = {locked!r}\n" + BARRIER + RUN_LOCK_BARRIER
	procs = [run_in_subprocess(f"sys.argv[1:] = [{arg!r}]\n" + prelude + code, wait=False) for arg in args]
	outputs = []
	for proc in procs:
		out, err = proc.communicate(timeout=180)
		if proc.returncode != 0:
			raise AssertionError(err[-3000:])
		outputs.append(out)
	frappe.db.rollback()
	return outputs


def todo(step_id: str, text: str, **extra) -> dict:
	return {
		"id": step_id,
		"kind": "create_doc",
		"payload": {"doctype": "ToDo", "fields": {"description": f"{text} {{{{run.name}}}} [flowtest]"}},
		**extra,
	}


class TestConcurrentCompletions(FlowTestCase):
	COMPLETE = "from flow_engine.runtime import runs\nfrappe.flags.flow_engine_inline = True\n" + (
		"runs.complete_step(RUN, sys.argv[1])\nfrappe.db.commit()\n"
	)

	def _parallel_run(self) -> str:
		template = make_flow(
			"parallel",
			[
				{"id": "a", "kind": "wait", "trigger": {"type": "manual"}},
				{"id": "b", "kind": "wait", "trigger": {"type": "manual"}},
				todo("join", "joined", depends_on=["a", "b"]),
			],
		).name
		name = runs.start_run(template)
		frappe.db.commit()
		return name

	def test_concurrent_completions_of_one_run_never_lose_an_update(self):
		name = self._parallel_run()
		race(f"RUN = {name!r}\n" + self.COMPLETE, ["a", "b"])
		record = store.load_run(name)
		self.assertEqual(
			(record.states["a"]["status"], record.states["b"]["status"]), ("completed", "completed")
		)
		self.assertEqual(record.status, "completed")
		self.assertEqual(frappe.db.count("Flow Step Attempt", {"run": name, "step_id": "join"}), 1)

	def test_control_without_the_run_lock_an_update_is_lost(self):
		name = self._parallel_run()
		race(f"RUN = {name!r}\n" + self.COMPLETE, ["a", "b"], locked=False)
		record = store.load_run(name)
		statuses = sorted(record.states[step].get("status") or "" for step in ("a", "b"))
		self.assertEqual(statuses, ["completed", "waiting"], "the barrier forces the lost update")


class TestDoubleFire(FlowTestCase):
	FIRE = (
		"from flow_engine.runtime import scheduler\nfrappe.flags.flow_engine_inline = True\n"
		"if not LOCKED:\n"
		"\t_locked_row = scheduler.locked_row\n"
		"\tscheduler.locked_row = lambda name: frappe.db.sql('select name, step_id, purpose, status, claimed_by, "
		"attempts from `tabFlow Step Pending` where name=%s', (name,), as_dict=True)\n"
		"print(scheduler.fire(ROW, TOKEN))\nfrappe.db.commit()\n"
	)

	def _claimed_row(self) -> tuple[str, str, str]:
		template = make_flow(
			"double fire",
			[
				{"id": "d", "kind": "wait", "trigger": {"type": "after_delay", "delay_minutes": 1}},
				todo("t", "fired", depends_on=["d"]),
			],
		).name
		with self.freeze_time(add_to_date(now_datetime(), minutes=-5)):
			name = runs.start_run(template)
			frappe.db.commit()
		row = store.load_run(name).states["d"]["pending"]
		frappe.db.sql(
			"update `tabFlow Step Pending` set status='running', claimed_by='tok', claims=1 where name=%s",
			(row,),
		)
		frappe.db.commit()
		return name, row, "tok"

	def _effects(self, name: str) -> int:
		return frappe.db.count("ToDo", {"description": ["like", f"fired {name}%"]})

	def test_two_jobs_firing_one_row_fire_it_once(self):
		name, row, token = self._claimed_row()
		outputs = race(f"ROW = {row!r}\nTOKEN = {token!r}\n" + self.FIRE, ["1", "2"])
		self.assertEqual(self._effects(name), 1, outputs)
		self.assertEqual(store.load_run(name).status, "completed")

	def test_control_without_run_and_row_locks_the_row_fires_twice(self):
		name, row, token = self._claimed_row()
		race(f"ROW = {row!r}\nTOKEN = {token!r}\n" + self.FIRE, ["1", "2"], locked=False)
		self.assertEqual(self._effects(name), 2, "the barrier forces the double fire")


class TestOverlappingTicks(FlowTestCase):
	CLAIM = (
		"from flow_engine.runtime import scheduler\n"
		"_select_due = scheduler.select_due\n"
		"def select_due(now, limit):\n"
		"\tbarrier('before-claim', 2, 20)\n"
		"\trows = _select_due(now, limit) if LOCKED else frappe.db.sql("
		"'select name from `tabFlow Step Pending` where status=%s and trigger_at <= %s', ('pending', now), as_dict=True)\n"
		"\tbarrier('after-claim', 2, 3)\n"
		"\treturn rows\n"
		"scheduler.select_due = select_due\n"
		"from flow_engine.runtime import resilience\n"
		"token, rows = resilience.retrying(scheduler.claim_due, limit=1000)  # a deadlock is retried, as in tick\n"
		"print(','.join(sorted(row.name for row in rows)))\n"
	)

	def _due(self, count: int) -> set[str]:
		template = make_flow(
			"ticks", [{"id": "d", "kind": "wait", "trigger": {"type": "after_delay", "delay_minutes": 1}}]
		).name
		with self.freeze_time(add_to_date(now_datetime(), minutes=-5)):
			names = [runs.start_run(template) for _ in range(count)]
			frappe.db.commit()
		return set(frappe.get_all("Flow Step Pending", filters={"run": ["in", names]}, pluck="name"))

	def _claims(self, outputs: list[str], ours: set[str]) -> list[set[str]]:
		return [
			set(out.strip().splitlines()[-1].split(",")) & ours if out.strip() else set() for out in outputs
		]

	def test_overlapping_ticks_claim_disjoint_rows(self):
		ours = self._due(20)
		first, second = self._claims(race(self.CLAIM, ["1", "2"]), ours)
		self.assertFalse(first & second, "no row claimed by both ticks")
		self.assertEqual(first | second, ours)

	def test_control_without_skip_locked_both_ticks_claim_the_same_rows(self):
		ours = self._due(20)
		first, second = self._claims(race(self.CLAIM, ["1", "2"], locked=False), ours)
		self.assertTrue(first & second, "the barrier forces overlapping claims")
		scheduler.reclaim_expired(add_to_date(now_datetime(), minutes=10))
