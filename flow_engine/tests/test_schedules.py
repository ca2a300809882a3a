import json

import frappe
from frappe.utils import add_to_date, get_datetime, now_datetime

from flow_engine import api
from flow_engine.runtime import scheduler, schedules
from flow_engine.runtime.templates import FlowValidationError
from flow_engine.tests.test_api import USER, ensure_user
from flow_engine.tests.utils import PREFIX, FlowTestCase, make_flow, run_in_subprocess

SCHEMA = {
	"type": "object",
	"required": ["segment"],
	"properties": {
		"segment": {"type": "string", "enum": ["retail", "wholesale"]},
		"limit": {"type": "integer"},
	},
}
STEPS = [{"id": "v", "kind": "set_variables", "payload": {"variables": {"segment": "{{input.segment}}"}}}]


def make_schedule(name, template, payload=None, **values):
	doc = frappe.get_doc(
		{
			"doctype": "Flow Schedule",
			"schedule_name": PREFIX + name,
			"template": template,
			"schedule_type": values.pop("schedule_type", "Recurring"),
			"cron": values.pop("cron", "0 6 * * *"),
			"payload": json.dumps(payload if payload is not None else {"segment": "retail"}),
			**values,
		}
	)
	doc.insert()
	frappe.db.commit()
	return doc


class TestSchedules(FlowTestCase):
	def tearDown(self):
		frappe.db.rollback()
		frappe.db.delete("Flow Schedule", {"name": ["like", PREFIX + "%"]})
		frappe.db.commit()
		super().tearDown()

	def flow(self, name="scheduled", schema=SCHEMA):
		return make_flow(
			name, STEPS, doctype=None, payload_schema=json.dumps(schema) if schema else None
		).name

	def test_validation_on_create_and_edit(self):
		without = self.flow("no schema", schema=None)
		with self.assertRaises(FlowValidationError) as error:
			make_schedule("no schema", without)
		self.assertIn("has no valid payload schema", str(error.exception))
		template = self.flow()
		with self.assertRaises(FlowValidationError) as error:
			make_schedule("bad payload", template, {"segment": "b2b", "limit": "ten"})
		self.assertIn("payload → limit", str(error.exception))
		self.assertIn("payload → segment", str(error.exception))
		with self.assertRaises(FlowValidationError) as error:
			make_schedule("bad cron", template, cron="0 6 * *")
		self.assertIn("cron: must have 5 fields", str(error.exception))
		with self.assertRaises(FlowValidationError):
			make_schedule("bad zone", template, timezone="Mars/Olympus")
		doc = make_schedule("ok", template, timezone="America/Toronto")
		self.assertEqual(doc.status, "Active")
		self.assertGreater(get_datetime(doc.next_fire_at), now_datetime())
		doc.payload = json.dumps({"segment": "nope"})
		with self.assertRaises(FlowValidationError):
			doc.save()

	def test_fires_with_provenance_and_catches_up_once(self):
		template = self.flow()
		doc = make_schedule("daily", template, {"segment": "wholesale"}, cron="0 6 * * *")
		slot = get_datetime(doc.next_fire_at)
		with self.freeze_time(add_to_date(slot, seconds=-30)):
			scheduler.tick()
		self.assertEqual(frappe.db.get_value("Flow Schedule", doc.name, "fire_count"), 0)
		with self.freeze_time(add_to_date(slot, seconds=20)):
			scheduler.tick()
			scheduler.tick()
		self.assertEqual(frappe.db.get_value("Flow Schedule", doc.name, "fire_count"), 1, "a slot fires once")
		doc.reload()
		run = frappe.get_doc("Flow Run", doc.last_run)
		self.assertEqual(
			(run.source, run.schedule, get_datetime(run.schedule_slot)), ("schedule", doc.name, slot)
		)
		self.assertEqual(json.loads(run.input), {"segment": "wholesale"})
		self.assertEqual(run.status, "completed")
		self.assertEqual(get_datetime(doc.next_fire_at), add_to_date(slot, days=1))
		# three days of downtime: the missed slot fires once, the next is computed from now
		later = add_to_date(slot, days=3, hours=2)
		with self.freeze_time(later):
			scheduler.tick()
		doc.reload()
		self.assertEqual(doc.fire_count, 2)
		self.assertEqual(get_datetime(doc.last_slot), add_to_date(slot, days=1))
		self.assertEqual(get_datetime(doc.next_fire_at), add_to_date(slot, days=4))

	def test_one_time_schedule_fires_once_then_is_done(self):
		template = self.flow()
		run_at = add_to_date(now_datetime(), minutes=10)
		doc = make_schedule("once", template, schedule_type="One-time", cron=None, run_at=run_at)
		with self.freeze_time(add_to_date(run_at, seconds=5)):
			scheduler.tick()
		with self.freeze_time(add_to_date(run_at, days=1)):
			scheduler.tick()
		doc.reload()
		self.assertEqual((doc.status, doc.next_fire_at, doc.fire_count), ("Done", None, 1))
		with self.assertRaises(frappe.ValidationError):
			api.resume_schedule(doc.name)

	def test_template_change_disables_schedules_it_breaks(self):
		template = self.flow()
		good = make_schedule("stays valid", template, {"segment": "retail", "limit": 5})
		bad = make_schedule("breaks", template, {"segment": "wholesale"})
		flow = frappe.get_doc("Flow Template", template)
		new_schema = json.loads(flow.payload_schema)
		new_schema["properties"]["segment"]["enum"] = ["retail"]
		flow.payload_schema = json.dumps(new_schema)
		flow.save()
		frappe.db.commit()
		good.reload()
		bad.reload()
		self.assertEqual((good.status, good.enabled), ("Active", 1))
		self.assertEqual((bad.status, bad.enabled), ("Invalid", 0))
		self.assertIn("payload → segment", bad.last_error)
		with self.freeze_time(add_to_date(get_datetime(bad.next_fire_at), minutes=1)):
			scheduler.tick()
		bad.reload()
		self.assertEqual(bad.fire_count, 0, "an invalid schedule never fires")
		bad.payload = json.dumps({"segment": "retail"})
		bad.save()
		self.assertEqual(bad.status, "Paused")
		api.resume_schedule(bad.name)
		bad.reload()
		self.assertEqual((bad.status, bad.enabled), ("Active", 1))
		# a definition change follows the new version for valid schedules
		definition = json.loads(flow.flow_definition)
		definition["steps"][0]["label"] = "v2"
		flow.flow_definition = json.dumps(definition)
		flow.save()
		frappe.db.commit()
		good.reload()
		with self.freeze_time(add_to_date(get_datetime(good.next_fire_at), seconds=1)):
			scheduler.tick()
		good.reload()
		self.assertEqual(frappe.db.get_value("Flow Run", good.last_run, "template_version"), flow.version)

	def test_pause_and_resume(self):
		template = self.flow()
		doc = make_schedule("pausable", template)
		self.assertEqual(api.pause_schedule(doc.name), "Paused")
		doc.reload()
		with self.freeze_time(add_to_date(get_datetime(doc.next_fire_at), minutes=1)):
			scheduler.tick()
		self.assertEqual(frappe.db.get_value("Flow Schedule", doc.name, "fire_count"), 0)
		self.assertEqual(api.resume_schedule(doc.name), "Active")

	def test_exactly_once_under_concurrent_ticks(self):
		template = self.flow()
		start = add_to_date(now_datetime(), minutes=-2)
		names = []
		with self.freeze_time(start):
			for index in range(12):
				names.append(make_schedule(f"concurrent {index}", template, cron="* * * * *").name)
		code = "from flow_engine.runtime import schedules\nprint(schedules.fire_due())\nfrappe.db.commit()\n"
		procs = [run_in_subprocess(code, wait=False) for _ in range(4)]
		fired = 0
		for proc in procs:
			out, err = proc.communicate(timeout=300)
			self.assertEqual(proc.returncode, 0, err[-2000:])
			fired += int(out.strip().splitlines()[-1])
		frappe.db.rollback()
		self.assertGreaterEqual(fired, 12)
		counts = frappe.db.sql(
			"""select schedule, schedule_slot, count(*) from `tabFlow Run`
			where schedule in %s group by schedule, schedule_slot""",
			(tuple(names),),
		)
		self.assertEqual(len(counts), 12)
		self.assertTrue(all(count == 1 for _, _, count in counts))

	def test_only_flow_managers_manage_schedules(self):
		template = self.flow()
		doc = make_schedule("guarded", template)
		ensure_user(USER, ["Desk User"] if frappe.db.exists("Role", "Desk User") else ["Blogger"])
		frappe.set_user(USER)
		with self.assertRaises(frappe.PermissionError):
			frappe.get_doc(
				{
					"doctype": "Flow Schedule",
					"schedule_name": PREFIX + "sneaky",
					"template": template,
					"cron": "0 1 * * *",
					"payload": json.dumps({"segment": "retail"}),
				}
			).insert()
		for call in (
			lambda: api.pause_schedule(doc.name),
			lambda: api.resume_schedule(doc.name),
			lambda: api.list_schedules(),
			lambda: frappe.delete_doc("Flow Schedule", doc.name),
		):
			with self.assertRaises(frappe.PermissionError):
				call()

	def test_check_endpoint_and_listing(self):
		template = self.flow()
		make_schedule("listed", template)
		result = api.check_schedule(
			template, json.dumps({"segment": 1}), cron="0 6 * * 1-5", timezone="Europe/Paris"
		)
		self.assertTrue(result["payload_errors"])
		self.assertEqual(len(result["next"]), 5)
		self.assertIn(PREFIX + "listed", [row.name for row in api.list_schedules(template=template)])
		self.assertEqual(schedules.payload_problems(template, {"segment": "retail"}), [])

	def test_bench_flow_schedules_lists_them(self):
		from flow_engine.tests.test_commands import bench

		template = self.flow()
		make_schedule("cli listed", template, timezone="Europe/Paris")
		result = bench("schedules", "--template", template)
		self.assertEqual(result.returncode, 0, result.stderr)
		self.assertIn(PREFIX + "cli listed", result.stdout)
		self.assertIn("0 6 * * * Europe/Paris", result.stdout)
