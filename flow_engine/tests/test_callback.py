"""The Guest callback endpoint, attacked through real HTTP requests (Frappe's WSGI app in a thread):
one answer for every bad callback, no 500 on odd input, the token checked before any row lock, a
rate limit, and the step completed as the flow's Run As user."""

import json
import time

import frappe
from frappe.tests.test_api import make_request
from frappe.utils import get_test_client

from flow_engine.runtime import runs, store
from flow_engine.tests.utils import FlowTestCase, cleanup, make_flow

URL = "/api/method/flow_engine.api.callback"
CLIENT = get_test_client()


def post(body=None, data=None, headers=None):
	kwargs = {"headers": headers or {}}
	if data is not None:
		kwargs["data"] = data
	else:
		kwargs["json"] = body
	return make_request(target=CLIENT.post, args=(URL,), kwargs=kwargs)


def answer(response) -> tuple[int, str | None, str]:
	"""What a caller learns: status, exception type and the messages (not the traceback)."""
	data = response.json if response.is_json else {}
	messages = [json.loads(m).get("message") for m in json.loads(data.get("_server_messages") or "[]")]
	return response.status_code, data.get("exc_type"), " ".join(messages)


class TestCallback(FlowTestCase):
	def setUp(self):
		super().setUp()
		cleanup()  # a setUp that failed half-way leaves no tearDown behind
		frappe.flags.flow_engine_inline = True
		frappe.cache.delete_keys("rl:")
		self.template = make_flow(
			"callback guard",
			[
				{"id": "hook", "kind": "wait", "trigger": {"type": "on_webhook"}},
				{"id": "after", "kind": "comment", "depends_on": ["hook"], "payload": {"text": "x"}},
				{"id": "person", "kind": "wait", "trigger": {"type": "manual"}},
			],
			doctype="ToDo",
		).name
		todo = frappe.get_doc({"doctype": "ToDo", "description": "callback [flowtest]"}).insert()
		self.run = runs.start_run(self.template, doc=todo)
		self.other = runs.start_run(self.template, doc=todo)
		frappe.db.commit()
		self.token = store.load_run(self.run).states["hook"]["token"]
		self.other_token = store.load_run(self.other).states["hook"]["token"]

	def tearDown(self):
		frappe.cache.delete_keys("rl:")
		super().tearDown()

	def state(self):
		frappe.db.rollback()
		record = store.load_run(self.run)
		return record.states["hook"]["status"], frappe.db.count("Flow Step Attempt", {"run": self.run})

	def test_every_bad_callback_gets_the_same_answer_and_changes_nothing(self):
		before = self.state()
		bad = {
			"wrong token": {"run": self.run, "step": "hook", "token": self.token[:-2] + "xx"},
			"unknown run": {"run": "FR-000000-nothere", "step": "hook", "token": self.token},
			"unknown step": {"run": self.run, "step": "nostep", "token": self.token},
			"another run's token": {"run": self.run, "step": "hook", "token": self.other_token},
			"a manual step": {"run": self.run, "step": "person", "token": self.token},
			"non-ASCII token": {"run": self.run, "step": "hook", "token": "tökén✓.ünïcødé"},
			"no token": {"run": self.run, "step": "hook"},
			"a list as token": {"run": self.run, "step": "hook", "token": ["a", "b"]},
			"huge token": {"run": self.run, "step": "hook", "token": "a." + "b" * 100_000},
		}
		answers = {label: answer(post(body)) for label, body in bad.items()}
		first = answers["wrong token"]
		self.assertEqual(first[0], 403, answers)
		self.assertIn("not valid", first[2])
		for label, got in answers.items():
			self.assertEqual(got, first, f"{label} answered differently: {got} vs {first}")
		self.assertEqual(self.state(), before, "nothing changed")

	def test_odd_bodies_get_a_4xx_never_a_500(self):
		before = self.state()
		huge = {"run": self.run, "step": "hook", "token": self.token, "result": {"blob": "x" * 1_000_000}}
		self.assertEqual(post(huge).status_code, 417)
		text = {"run": self.run, "step": "hook", "token": self.token, "result": "{not json"}
		self.assertEqual(post(text).status_code, 417)
		# (a body sent as application/json that is not JSON never reaches the app: Frappe's request parsing
		# answers it with its own error, for every endpoint)
		form = post(
			data=b"run=" + self.run.encode() + b"&step=hook&token=%ff%fe&result=%00",
			headers={"Content-Type": "application/x-www-form-urlencoded"},
		)
		self.assertEqual(answer(form)[0], 403)
		binary = post(data=bytes(range(256)) * 10, headers={"Content-Type": "application/octet-stream"})
		self.assertTrue(400 <= binary.status_code < 500, binary.status_code)
		self.assertEqual(self.state(), before, "nothing changed")

	def test_a_forged_token_is_refused_before_any_row_lock(self):
		frappe.db.sql("select name from `tabFlow Run` where name=%s for update", (self.run,))  # held here
		started = time.monotonic()
		status = post({"run": self.run, "step": "hook", "token": self.other_token}).status_code
		elapsed = time.monotonic() - started
		frappe.db.rollback()
		self.assertEqual(status, 403)
		self.assertLess(elapsed, 5, "a forged token must not wait for the run's lock")

	def test_the_right_token_completes_the_step_once_as_run_as(self):
		run_as = "flow-callback-runner@example.com"
		if not frappe.db.exists("User", run_as):
			frappe.get_doc(
				{"doctype": "User", "email": run_as, "first_name": "Runner", "send_welcome_email": 0}
			).insert(ignore_permissions=True)
		template = frappe.get_doc("Flow Template", self.template)
		template.run_as = run_as  # set by a System Manager (this test runs as Administrator)
		template.save()
		frappe.db.commit()
		response = post({"run": self.run, "step": "hook", "token": self.token, "result": {"paid": True}})
		self.assertEqual(response.status_code, 200, response.get_data(as_text=True)[:500])
		frappe.db.rollback()
		record = store.load_run(self.run)
		self.assertEqual(record.states["hook"]["status"], "completed")
		self.assertEqual(record.states["hook"]["result"], {"paid": True})
		attempt = frappe.db.get_value(
			"Flow Step Attempt", {"run": self.run, "step_id": "hook"}, ["owner", "status"], as_dict=True
		)
		self.assertEqual((attempt.owner, attempt.status), (run_as, "completed"))
		self.assertNotEqual(attempt.owner, "Administrator")
		replay = answer(post({"run": self.run, "step": "hook", "token": self.token}))
		self.assertEqual(replay[0], 403, "a used token completes nothing again")

	def test_callbacks_are_rate_limited(self):
		from frappe.installer import update_site_config

		update_site_config("flow_engine_callback_rate_limit", 5)  # the request reads the site's config
		try:
			codes = [post({"run": self.run, "step": "hook", "token": "x.y"}).status_code for _ in range(7)]
		finally:
			update_site_config("flow_engine_callback_rate_limit", "None")
		self.assertEqual(codes[:5], [403] * 5)
		self.assertEqual(codes[5:], [429, 429])
