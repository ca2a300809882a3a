"""Callback tokens of parked `on_webhook` steps: checkable without touching the database.

A token is `<nonce>.<mac>`, the MAC an HMAC-SHA256 of run, step and nonce under the site's encryption
key. The callback endpoint checks it before any row lock or read, so a guessed or foreign token costs
one hash; the run's state then holds the current token, so a token of an earlier park (a retried step)
no longer completes anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import frappe
from frappe.utils.password import get_encryption_key

from flow_engine.runtime import store

MAX_LENGTH = 128


def _mac(run: str, step: str, nonce: str) -> str:
	key = get_encryption_key().encode()
	digest = hmac.new(key, f"{run}\x00{step}\x00{nonce}".encode(), hashlib.sha256).digest()
	return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def new_token(run: str, step: str) -> str:
	nonce = secrets.token_urlsafe(12)
	return f"{nonce}.{_mac(run, step, nonce)}"


def well_formed(run: str, step: str, token: object) -> bool:
	"""Whether `token` was issued for this run and step (any text is safe to pass: never raises)."""
	if not isinstance(token, str) or not isinstance(run, str) or not isinstance(step, str):
		return False
	if not token.isascii() or len(token) > MAX_LENGTH or token.count(".") != 1:
		return False
	nonce, mac = token.split(".")
	if not nonce or not mac:
		return False
	return hmac.compare_digest(mac.encode(), _mac(run, step, nonce).encode())


def legacy_match(run: object, step: object, token: object) -> bool:
	"""A token handed out before tokens were MACs (random text, no '.'): checked against the run's
	state with a plain read (no lock). Only such tokens reach the database before the lock."""
	if not isinstance(token, str) or not isinstance(run, str) or not isinstance(step, str):
		return False
	if "." in token or not token.isascii() or not 16 <= len(token) <= 64:
		return False
	row = frappe.db.sql("select step_state from `tabFlow Run` where name=%s", (run,))
	state = store.loads(row[0][0]).get(step) if row else None
	return isinstance(state, dict) and same(state.get("token"), token)


def same(expected: object, given: object) -> bool:
	"""Constant-time equality of two tokens that tolerates non-text and non-ASCII input."""
	if not isinstance(expected, str) or not isinstance(given, str) or not expected:
		return False
	return hmac.compare_digest(expected.encode("utf-8", "replace"), given.encode("utf-8", "replace"))
