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
		with self.assertRaises(frappe.AuthenticationError):
			api.callback(run=name, step="wait_pay", token="wrong")
		result = api.callback(run=name, step="wait_pay", token=token, result=json.dumps({"amount": 42}))
		frappe.set_user("Administrator")
		frappe.db.commit()
		self.assertEqual(result["step"], "wait_pay")
		record = store.load_run(name)
		self.assertEqual(record.status, "completed")
		self.assertEqual(record.variables["paid"], 42)
		with self.assertRaises(frappe.AuthenticationError):
			api.callback(run=name, step="wait_pay", token=token)  # the token is spent
