"""The webhook kind: an HTTP call with a body template, timeout, HMAC signature and idempotency key.

The request is built with the run locked, then made with no transaction open and no lock held (the
handler returns an `External`): a slow endpoint holds up nothing but its own step. Calls go through
`flow_engine.outbound`, which refuses internal addresses (checked after DNS resolution, on every
redirect) unless the site config allows them, and caps the timeout and the response size.

External effects are at-least-once: the `Idempotency-Key` header is stable across retries of the
same step of the same run, so the receiver can drop duplicates. 5xx, 429, timeouts and connection
errors are retryable; other 4xx answers and refused addresses are not. Secrets (`{{secrets.NAME}}`)
are resolved only here, at call time, and never reach attempt records.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import frappe
from frappe import _

from flow_engine import outbound
from flow_engine.kinds.base import External, StepCall, StepFailed

MAX_BODY = 64 * 1024
SIGNATURE_HEADER = "X-Flow-Signature"


def sign(secret: str, body: bytes) -> str:
	return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook(call: StepCall) -> External:
	from flow_engine.runtime import deadlines, secrets

	try:
		# render and resolve in one pass from what the author wrote: a value from a document that looks
		# like `{{secrets.x}}` is data and is never resolved
		payload = secrets.render(call.raw_payload, call.context)
		secret = secrets.resolve(call.raw_payload.get("secret"))
	except secrets.MissingSecretError as error:
		raise StepFailed(_("Step '{0}': {1}").format(call.step.id, error)) from None
	shown = call.payload  # rendered with the placeholders kept: for messages
	url = str(payload.get("url") or "").strip()
	shown_url = str(shown.get("url") or "").strip()
	if not url.lower().startswith(("http://", "https://")):
		raise StepFailed(_("Webhook URL '{0}' must start with http:// or https://").format(shown_url))
	method = str(payload.get("method") or "POST").upper()
	headers = {str(key): str(value) for key, value in (payload.get("headers") or {}).items()}
	body = payload.get("body")
	if body is None or (method in ("GET", "DELETE") and body in ("", {})):
		data = b""
	elif isinstance(body, str):
		data = body.encode()
	else:
		data = json.dumps(body, default=str, sort_keys=True).encode()
		headers.setdefault("Content-Type", "application/json")
	headers.setdefault("Idempotency-Key", call.idempotency_key)
	headers.setdefault("X-Flow-Run", call.run)
	headers.setdefault("X-Flow-Step", call.step.id)
	if secret:
		headers[SIGNATURE_HEADER] = sign(str(secret), data)
	used = secrets.used_values(call.raw_payload)
	policy = outbound.Policy.from_config(frappe.conf)
	# the payload's timeout, else the step's; never past the step's timeout nor the policy's cap
	timeout = deadlines.call_timeout(
		call.step, payload.get("timeout"), policy.default_timeout, policy.max_timeout
	)
	expect_json = payload.get("expect_json", True)
	label = f"{method} {shown_url}"

	def perform() -> outbound.Response:
		return outbound.request(
			method, url, data=data or None, headers=headers, timeout=timeout, policy=policy
		)

	def finish(response: outbound.Response) -> dict:
		result = secrets.redact(  # a receiver may echo a header back: it is never recorded in clear
			{
				"status_code": response.status_code,
				"body": _body(response, expect_json),
				"content_type": response.headers.get("Content-Type", ""),
			},
			used,
		)
		if response.status_code >= 400:
			retryable = response.status_code >= 500 or response.status_code in (408, 425, 429)
			raise StepFailed(
				_("Webhook {0} answered {1}: {2}").format(
					label, response.status_code, secrets.redact(response.text[:300], used)
				),
				retryable=retryable,
				output=result,
			)
		return result

	def finish_error(error: BaseException) -> dict:
		if isinstance(error, outbound.OutboundError):
			raise StepFailed(
				_("Webhook {0} failed: {1}").format(
					label, secrets.redact(_hide(str(error), url, shown_url), used)
				),
				retryable=error.retryable,
			)
		raise StepFailed(_("Webhook {0} failed: {1}").format(label, error), retryable=True)

	return External(perform, finish, finish_error, timeout=timeout, threadsafe=True, description=label)


def _hide(text: str, url: str, shown_url: str) -> str:
	"""An error message with the resolved URL (which may hold a secret) replaced by the written one."""
	return text.replace(url, shown_url) if url != shown_url else text


def _body(response: outbound.Response, expect_json) -> object:
	text = response.text[:MAX_BODY]
	if expect_json in (False, 0, "0"):
		return text
	try:
		return response.json() if len(response.content) <= MAX_BODY else text
	except ValueError:
		return text
