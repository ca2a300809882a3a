import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import frappe
from frappe.utils import add_to_date, now_datetime

from flow_engine.runtime import runs, scheduler, store
from flow_engine.tests.utils import FlowTestCase, make_flow


class Receiver:
	"""A local HTTP server that answers with a scripted list of statuses and records requests."""

	def __init__(self, statuses, delay=0.0):
		self.statuses = list(statuses)
		self.delay = delay
		self.requests = []
		receiver = self

		class Handler(BaseHTTPRequestHandler):
			def _handle(self):
				length = int(self.headers.get("Content-Length") or 0)
				body = self.rfile.read(length) if length else b""
				receiver.requests.append(
					{"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
				)
				if receiver.delay:
					time.sleep(receiver.delay)
				status = receiver.statuses.pop(0) if receiver.statuses else 200
				payload = json.dumps({"ok": status < 400, "seen": len(receiver.requests)}).encode()
				self.send_response(status)
				self.send_header("Content-Type", "application/json")
				self.send_header("Content-Length", str(len(payload)))
				self.end_headers()
				self.wfile.write(payload)

			do_POST = do_PUT = do_GET = _handle

			def log_message(self, *args):
				pass

		self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
		self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
		self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

	def __enter__(self):
		self.thread.start()
		return self

	def __exit__(self, *exc):
		self.server.shutdown()
		self.server.server_close()


def hook_flow(name, url, **payload):
	return make_flow(
		name,
		[
			{
				"id": "call",
				"kind": "webhook",
				"retry": {"max_attempts": 3, "backoff_seconds": 30},
				"payload": {
					"url": url,
					"method": "POST",
					"secret": "s3cret",
					"body": {"title": "{{doc.title}}", "run": "{{run.name}}"},
					"headers": {"X-Custom": "{{doc.title}}"},
					**payload,
				},
			}
		],
		event="after_insert",
	)


class TestWebhook(FlowTestCase):
	def setUp(self):
		super().setUp()
		frappe.conf.flow_engine_outbound_allow = ["127.0.0.1"]  # the local receivers of these tests

	def tearDown(self):
		frappe.conf.pop("flow_engine_outbound_allow", None)
		super().tearDown()

	def test_signed_call_retried_after_500_with_a_stable_idempotency_key(self):
		with Receiver([500, 200]) as receiver:
			template = hook_flow("hook retry", receiver.url).name
			start = now_datetime()
			with self.freeze_time(start):
				from flow_engine.tests.utils import new_test_doc, run_of

				new_test_doc(title="Hooked")
				frappe.db.commit()
			record = run_of(template)
			self.assertEqual(record.states["call"]["status"], "scheduled")
			self.assertIn("answered 500", record.states["call"]["error"])
			with self.freeze_time(add_to_date(start, seconds=31)):
				scheduler.tick()
			record = run_of(template)
			self.assertEqual(record.status, "completed", record.error)
			self.assertEqual(record.states["call"]["result"]["status_code"], 200)
			self.assertEqual(record.states["call"]["result"]["body"], {"ok": True, "seen": 2})
		first, second = receiver.requests
		self.assertEqual(json.loads(first["body"]), {"title": "Hooked", "run": record.name})
		self.assertEqual(first["headers"]["Idempotency-Key"], second["headers"]["Idempotency-Key"])
		self.assertEqual(first["headers"]["Idempotency-Key"], f"{record.name}:call")
		self.assertEqual(first["headers"]["X-Custom"], "Hooked")
		expected = "sha256=" + hmac.new(b"s3cret", first["body"], hashlib.sha256).hexdigest()
		self.assertEqual(first["headers"]["X-Flow-Signature"], expected)

	def test_client_errors_are_not_retried(self):
		with Receiver([404]) as receiver:
			template = hook_flow("hook 404", receiver.url).name
			from flow_engine.tests.utils import new_test_doc, run_of

			new_test_doc(title="x")
			frappe.db.commit()
		record = run_of(template)
		self.assertEqual(record.status, "failed")
		self.assertIn("answered 404", record.error)
		self.assertEqual(len(receiver.requests), 1)

	def test_timeouts_retry_then_fail(self):
		with Receiver([200, 200, 200], delay=1.5) as receiver:
			template = hook_flow("hook timeout", receiver.url, timeout=0.5).name
			from flow_engine.tests.utils import new_test_doc, run_of

			start = now_datetime()
			with self.freeze_time(start):
				new_test_doc(title="slow")
				frappe.db.commit()
			for seconds in (31, 100):
				with self.freeze_time(add_to_date(start, seconds=seconds)):
					scheduler.tick()
			record = run_of(template)
		self.assertEqual(record.status, "failed")
		self.assertIn("timed out", record.error)
		self.assertIn("after 3 attempts", record.error)

	def test_on_webhook_step_completed_by_token(self):
		from flow_engine import api

		template = make_flow(
			"callback",
			[
				{"id": "wait_pay", "kind": "wait", "trigger": {"type": "on_webhook"}},
				{
					"id": "after",
					"kind": "set_variables",
					"depends_on": ["wait_pay"],
					"payload": {"variables": {"paid": "{{steps.wait_pay.result.amount}}"}},
				},
			],
		).name
		name = runs.start_run(template)
		frappe.db.commit()
		token = store.load_run(name).states["wait_pay"]["token"]
		frappe.set_user("Guest")
		with self.assertRaises(api.CallbackRejected):
			api.callback(run=name, step="wait_pay", token="wrong")
		result = api.callback(run=name, step="wait_pay", token=token, result=json.dumps({"amount": 42}))
		frappe.set_user("Administrator")
		frappe.db.commit()
		self.assertEqual(result["step"], "wait_pay")
		record = store.load_run(name)
		self.assertEqual(record.status, "completed")
		self.assertEqual(record.variables["paid"], 42)
		with self.assertRaises(api.CallbackRejected):
			api.callback(run=name, step="wait_pay", token=token)  # the token is spent


class TestWebhookSecrets(FlowTestCase):
	def setUp(self):
		super().setUp()
		frappe.conf.flow_engine_outbound_allow = ["127.0.0.1"]
		if not frappe.db.exists("Flow Secret", "test_flow_inj"):
			frappe.get_doc(
				{"doctype": "Flow Secret", "secret_name": "test_flow_inj", "value": "TOPSECRET-123"}
			).insert()
		frappe.db.commit()

	def tearDown(self):
		frappe.conf.pop("flow_engine_outbound_allow", None)
		frappe.db.delete("Flow Secret", {"name": "test_flow_inj"})
		frappe.db.delete("__Auth", {"doctype": "Flow Secret", "name": "test_flow_inj"})
		frappe.db.commit()
		super().tearDown()

	def test_the_author_s_secret_is_sent_but_document_data_can_never_pull_one(self):
		from flow_engine.tests.utils import new_test_doc, run_of

		with Receiver([200]) as receiver:
			template = make_flow(
				"inj",
				[
					{
						"id": "call",
						"kind": "webhook",
						"payload": {
							"url": receiver.url,
							"method": "POST",
							"headers": {"Authorization": "Bearer {{secrets.test_flow_inj}}"},
							"body": {"title": "{{doc.title}}"},
						},
					}
				],
				event="after_insert",
			).name
			new_test_doc(title="{{secrets.test_flow_inj}}")
			frappe.db.commit()
			record = run_of(template)
			self.assertEqual(record.status, "completed", record.error)
		sent = receiver.requests[0]
		self.assertEqual(sent["headers"]["Authorization"], "Bearer TOPSECRET-123", "the author's reference")
		self.assertEqual(json.loads(sent["body"]), {"title": "{{secrets.test_flow_inj}}"}, "data stays data")
		recorded = frappe.db.get_value("Flow Step Attempt", {"run": record.name}, "input")
		self.assertNotIn("TOPSECRET", recorded)
		self.assertIn("{{secrets.test_flow_inj}}", recorded)


class TestRunAsReads(FlowTestCase):
	def test_a_flow_cannot_send_out_values_its_run_as_user_may_not_read(self):
		from flow_engine.tests.utils import ensure_user, new_test_doc, run_of

		frappe.conf.flow_engine_outbound_allow = ["127.0.0.1"]
		self.addCleanup(frappe.conf.pop, "flow_engine_outbound_allow", None)
		outsider = ensure_user("flow-outsider@example.com", ["Flow Manager"])  # no role reads Flow Test Doc
		with Receiver([200]) as receiver:
			template = make_flow(
				"leak",
				[
					{
						"id": "call",
						"kind": "webhook",
						"payload": {"url": receiver.url, "method": "POST", "body": {"t": "{{doc.title}}"}},
					}
				],
				event="after_insert",
			)
			template.run_as = outsider  # a System Manager's choice (this test runs as Administrator)
			template.save()
			frappe.db.commit()
			new_test_doc(title="confidential")
			frappe.db.commit()
			record = run_of(template.name)
		run_as = frappe.db.get_value("Flow Template", template.name, "run_as")
		attempts = frappe.get_all(
			"Flow Step Attempt", filters={"run": record.name}, fields=["owner", "input"]
		)
		self.assertEqual(
			record.status,
			"failed",
			(run_as, attempts, frappe.has_permission("Flow Test Doc", "read", user=outsider)),
		)
		self.assertIn(f"Run As '{outsider}' may not read Flow Test Doc", record.error)
		self.assertEqual(receiver.requests, [], "nothing left the ERP")


class TestSms(FlowTestCase):
	def test_an_sms_goes_out_through_the_gateway_outside_the_run_lock_and_is_logged(self):
		if not frappe.db.table_exists("SMS Log"):
			self.skipTest("SMS Log is an ERPNext doctype: Frappe's send_sms needs it")
		with Receiver([200]) as gateway:
			fields = {"sms_gateway_url": gateway.url, "message_parameter": "text", "receiver_parameter": "to"}
			before = {field: frappe.db.get_single_value("SMS Settings", field) for field in fields}

			def restore():  # (a save would refuse the empty mandatory fields of a site without SMS)
				frappe.db.rollback()
				frappe.db.set_single_value("SMS Settings", before)
				frappe.db.commit()

			self.addCleanup(restore)
			frappe.get_doc("SMS Settings").update(fields).save()
			frappe.db.commit()
			template = make_flow(
				"sms",
				[
					{
						"id": "text",
						"kind": "notify",
						"payload": {
							"channel": "sms",
							"recipients": ["+15550100"],
							"message": "Run {{run.name}}",
						},
					}
				],
				doctype=None,
			).name
			name = runs.start_run(template)
			frappe.db.commit()
		record = store.load_run(name)
		self.assertEqual(record.status, "completed", (record.error, record.states))
		self.assertEqual(record.states["text"]["result"], {"channel": "sms", "recipients": ["+15550100"]})
		self.assertEqual(len(gateway.requests), 1)
		self.assertIn(f"Run+{name}".replace("-", "-"), gateway.requests[0]["path"].replace("%20", "+"))
		self.assertTrue(frappe.db.exists("SMS Log", {"message": f"Run {name}"}))


class Redirector(Receiver):
	"""A receiver on another loopback address that answers every request with a redirect."""

	def __init__(self, location, host="127.0.0.2"):
		super().__init__([])
		receiver = self

		class Handler(BaseHTTPRequestHandler):
			def do_POST(self):
				receiver.requests.append({"path": self.path})
				self.send_response(307)
				self.send_header("Location", location)
				self.send_header("Content-Length", "0")
				self.end_headers()

			def log_message(self, *args):
				pass

		self.server.server_close()
		self.server = ThreadingHTTPServer((host, 0), Handler)
		self.url = f"http://{host}:{self.server.server_address[1]}/hook"
		self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


class TestOutboundPolicy(FlowTestCase):
	"""Internal addresses are refused unless the site config allows them; nothing is sent."""

	def run_hook(self, url, allow=None):
		self.calls = getattr(self, "calls", 0) + 1
		if allow is not None:
			frappe.conf.flow_engine_outbound_allow = allow
		try:
			template = make_flow(
				f"policy {self.calls}",
				[
					{
						"id": "call",
						"kind": "webhook",
						"payload": {"url": url, "method": "POST", "body": {"a": 1}},
					}
				],
			).name
			name = runs.start_run(template)
			frappe.db.commit()
		finally:
			frappe.conf.pop("flow_engine_outbound_allow", None)
		return store.load_run(name)

	def test_internal_addresses_are_refused_and_receive_nothing(self):
		with Receiver([200]) as receiver:
			record = self.run_hook(receiver.url)
			self.assertEqual(record.status, "failed")
			self.assertIn("127.0.0.1 is a loopback address", record.error)
			self.assertIn("flow_engine_outbound_allow", record.error, "the error says how to allow it")
			self.assertEqual(receiver.requests, [])
			port = receiver.server.server_address[1]
			record = self.run_hook(f"http://localhost:{port}/hook")
			self.assertIn("localhost resolves to", record.error)
			self.assertEqual(receiver.requests, [])
			allowed = self.run_hook(receiver.url, allow=["127.0.0.1"])
			self.assertEqual(allowed.status, "completed", allowed.error)
			self.assertEqual(len(receiver.requests), 1)
		for url, reason in (
			("http://10.0.0.1/x", "private"),
			("http://169.254.169.254/latest/meta-data/", "link-local"),
		):
			started = time.monotonic()
			record = self.run_hook(url)
			self.assertEqual(record.status, "failed")
			self.assertIn(reason, record.error)
			self.assertLess(time.monotonic() - started, 5, "refused before connecting")
			self.assertEqual(record.states["call"]["attempts"], 1, "a refusal is not retried")

	def test_a_redirect_to_an_internal_address_is_refused(self):
		with Receiver([200]) as inside, Redirector(inside.url) as outside:
			record = self.run_hook(outside.url, allow=["127.0.0.2"])
			self.assertEqual(record.status, "failed")
			self.assertIn("redirected", record.error)
			self.assertEqual(len(outside.requests), 1)
			self.assertEqual(inside.requests, [], "the internal target received nothing")
			followed = self.run_hook(outside.url, allow=["127.0.0.2", "127.0.0.1"])
			self.assertEqual(followed.status, "completed", followed.error)
			self.assertEqual(len(inside.requests), 1)


class TestNoLongLocks(FlowTestCase):
	"""A slow endpoint holds no lock and no transaction, and does not hold up other runs' calls."""

	def setUp(self):
		super().setUp()
		frappe.conf.flow_engine_outbound_allow = ["127.0.0.1"]

	def tearDown(self):
		frappe.conf.pop("flow_engine_outbound_allow", None)
		super().tearDown()

	def test_the_call_is_made_with_no_lock_held_and_runs_call_concurrently(self):
		from flow_engine.tests.utils import run_in_subprocess

		with Receiver([200, 200], delay=3) as slow, Receiver([200]) as fast:
			template = make_flow(
				"slow",
				[
					{
						"id": "touch",
						"kind": "update_doc",
						"payload": {"fields": {"description": "touched [flowtest]"}},
					},
					{
						"id": "call",
						"kind": "webhook",
						"depends_on": ["touch"],
						"payload": {
							"url": "{{input.url}}",
							"method": "POST",
							"body": {"run": "{{run.name}}"},
						},
					},
				],
				doctype="ToDo",
			).name
			todo = frappe.get_doc({"doctype": "ToDo", "description": "slow [flowtest]"}).insert()
			frappe.flags.flow_engine_inline = False  # the subprocess advances them, as a worker would
			slow_run = runs.start_run(template, doc=todo, input={"url": slow.url})
			fast_run = runs.start_run(template, doc=todo, input={"url": fast.url})
			frappe.db.commit()
			code = (
				"frappe.conf.flow_engine_outbound_allow = ['127.0.0.1']\n"
				"from flow_engine.runtime import runs\n"
				f"runs.advance_many([{slow_run!r}, {fast_run!r}])\nfrappe.db.commit()\n"
			)
			worker = run_in_subprocess(code, wait=False)
			deadline = time.monotonic() + 30
			while not slow.requests and time.monotonic() < deadline:
				time.sleep(0.05)
			if not slow.requests:
				worker.kill()
				frappe.db.rollback()
				self.fail(
					f"the slow call was not made: {store.load_run(slow_run).states} {worker.communicate()[1][-3000:]}"
				)
			# while the slow endpoint holds its answer: the run row and the document it touched are free
			frappe.db.rollback()
			frappe.db.sql("select name from `tabFlow Run` where name=%s for update nowait", (slow_run,))
			frappe.db.sql("select name from `tabToDo` where name=%s for update nowait", (todo.name,))
			frappe.db.rollback()
			self.assertEqual(store.load_run(slow_run).states["call"]["status"], "running")
			while time.monotonic() < deadline and store.load_run(fast_run).status != "completed":
				frappe.db.rollback()
				time.sleep(0.05)
			self.assertEqual(
				store.load_run(fast_run).status,
				"completed",
				("the fast run did not wait", store.load_run(fast_run).error),
			)
			frappe.db.rollback()
			self.assertEqual(store.load_run(slow_run).states["call"]["status"], "running", "still calling")
			_out, err = worker.communicate(timeout=60)
			self.assertEqual(worker.returncode, 0, err[-2000:])
		frappe.db.rollback()
		self.assertEqual(store.load_run(slow_run).status, "completed")
		self.assertEqual(len(slow.requests), 1)
