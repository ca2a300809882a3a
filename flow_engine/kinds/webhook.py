"""The webhook kind: an HTTP call with a body template, timeout, HMAC signature and idempotency key.

External effects are at-least-once: the `Idempotency-Key` header is stable across retries of the
same step of the same run, so the receiver can drop duplicates. 5xx, 429, timeouts and connection
errors are retryable; other 4xx answers are not.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import requests
from frappe import _

from flow_engine.kinds.base import StepCall, StepFailed

MAX_BODY = 64 * 1024
SIGNATURE_HEADER = "X-Flow-Signature"


def sign(secret: str, body: bytes) -> str:
	return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook(call: StepCall) -> dict:
	payload = call.payload
	url = str(payload.get("url") or "").strip()
	if not url.lower().startswith(("http://", "https://")):
		raise StepFailed(_("Webhook URL '{0}' must start with http:// or https://").format(url))
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
	secret = call.raw_payload.get("secret")
	if secret:
		headers[SIGNATURE_HEADER] = sign(str(secret), data)
	timeout = float(payload.get("timeout") or call.step.timeout or 10)
	try:
		response = requests.request(method, url, data=data or None, headers=headers, timeout=timeout)
	except requests.Timeout:
		raise StepFailed(
			_("Webhook {0} {1} timed out after {2}s").format(method, url, timeout), retryable=True
		) from None
	except requests.RequestException as error:
		raise StepFailed(
			_("Webhook {0} {1} failed: {2}").format(method, url, error), retryable=True
		) from None
	result = {
		"status_code": response.status_code,
		"body": _body(response, payload.get("expect_json", True)),
		"content_type": response.headers.get("Content-Type", ""),
	}
	if response.status_code >= 400:
		retryable = response.status_code >= 500 or response.status_code in (408, 425, 429)
		raise StepFailed(
			_("Webhook {0} {1} answered {2}: {3}").format(
				method, url, response.status_code, response.text[:300]
			),
			retryable=retryable,
			output=result,
		)
	return result


def _body(response, expect_json) -> object:
	text = response.text[:MAX_BODY]
	if expect_json in (False, 0, "0"):
		return text
	try:
		return response.json() if len(response.content) <= MAX_BODY else text
	except ValueError:
		return text
