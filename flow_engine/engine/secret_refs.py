"""Secrets in flow definitions: `{{secrets.NAME}}` references, and clear values to move out.

A definition never holds a secret in clear. Webhook signing secrets (`payload.secret`) and the values
of sensitive headers (Authorization, Cookie, X-Api-Key, anything naming a token, key, password…)
that are literal text are found here and replaced by references; the runtime stores the values
encrypted (doctype Flow Secret) and resolves references only right before a webhook is sent.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flow_engine.engine import templating

ROOT = templating.SECRETS_ROOT
NAME = re.compile(r"^[a-z0-9_][a-z0-9_-]{0,139}$")
MAX_NAME = 140
SECRET_KINDS = ("webhook",)  # the only kinds whose payload may reference secrets
SENSITIVE_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key"}
SENSITIVE_WORDS = ("token", "secret", "key", "password", "auth", "signature")
NOT_SENSITIVE = {"idempotency-key"}  # contains "key" but is an identifier, not a credential
MIN_REDACT = 4  # shorter values are not credentials, and masking them would garble text


@dataclass(frozen=True)
class ClearSecret:
	"""A secret written in clear in a step's payload."""

	step_id: str
	field: str  # as named in errors: "payload.secret", "payload.headers.Authorization"
	value: str
	path: tuple  # keys from the step's payload down to the value
	index: int = 0  # of the step in the definition's steps

	@property
	def label(self) -> str:
		return f"Step '{self.step_id}' → {self.field}"


def placeholder(name: str) -> str:
	return "{{" + ROOT + "." + name + "}}"


def is_valid_name(name: Any) -> bool:
	return isinstance(name, str) and bool(NAME.match(name))


def slug(text: Any, max_length: int = MAX_NAME) -> str:
	"""A secret name from any text: lowercase letters, digits, '_' and '-'."""
	name = re.sub(r"[^a-z0-9_-]+", "_", str(text or "").lower()).strip("_-")
	return name[:max_length].rstrip("_-") or "secret"


def is_sensitive_header(name: Any) -> bool:
	lowered = str(name or "").strip().lower()
	if lowered in NOT_SENSITIVE:
		return False
	return lowered in SENSITIVE_HEADERS or any(word in lowered for word in SENSITIVE_WORDS)


def is_clear(value: Any) -> bool:
	"""Literal text (or a number) with no template in it: a value that would be stored as written."""
	if isinstance(value, bool) or not isinstance(value, str | int | float):
		return False
	text = str(value)
	return bool(text.strip()) and "{{" not in text


def references(value: Any) -> list[str]:
	"""Names of the secrets `value` references, in order of first use."""
	names: list[str] = []
	for path in templating.placeholders(value):
		parts = path.split(".")
		if parts[0] == ROOT and len(parts) == 2 and parts[1] not in names:
			names.append(parts[1])
	return names


def reference_fields(payload: Any, prefix: str = "payload", _depth: int = 0) -> Iterable[tuple[str, str]]:
	"""(field, name) of every secret reference in a payload, e.g. ("payload.headers.Authorization", "crm")."""
	if _depth > templating.MAX_DEPTH:
		return
	if isinstance(payload, str):
		for name in references(payload):
			yield prefix, name
	elif isinstance(payload, Mapping):
		for key, item in payload.items():
			yield from reference_fields(item, f"{prefix}.{key}", _depth + 1)
	elif isinstance(payload, list | tuple):
		for index, item in enumerate(payload):
			yield from reference_fields(item, f"{prefix}.{index}", _depth + 1)


def secret_fields(payload: Any) -> Iterable[tuple[str, tuple, Any]]:
	"""(field, path, value) of every place in a webhook payload that holds a secret."""
	if not isinstance(payload, Mapping):
		return
	if "secret" in payload:
		yield "payload.secret", ("secret",), payload["secret"]
	headers = payload.get("headers")
	if isinstance(headers, Mapping):
		for header, value in headers.items():
			if is_sensitive_header(header):
				yield f"payload.headers.{header}", ("headers", header), value


def find_clear(raw: Any, resolve_kind: Callable[[Any], Any] = lambda kind: kind) -> list[ClearSecret]:
	"""Every clear secret in the webhook steps of a definition."""
	found: list[ClearSecret] = []
	steps = raw.get("steps") if isinstance(raw, Mapping) else None
	for index, step in enumerate(steps if isinstance(steps, list) else []):
		if not isinstance(step, Mapping) or resolve_kind(step.get("kind")) not in SECRET_KINDS:
			continue
		for field, path, value in secret_fields(step.get("payload")):
			if is_clear(value):
				found.append(ClearSecret(str(step.get("id") or "?"), field, str(value), path, index))
	return found


def extract(
	raw: Any,
	name_for: Callable[[ClearSecret], str],
	resolve_kind: Callable[[Any], Any] = lambda kind: kind,
) -> tuple[Any, list[tuple[ClearSecret, str]]]:
	"""A copy of `raw` with each clear secret replaced by `{{secrets.<name_for(found)>}}`.

	`name_for` stores the value and returns its secret's name. Returns (copy, [(found, name)]).
	"""
	found = find_clear(raw, resolve_kind)
	if not found:
		return raw, []
	result = copy.deepcopy(raw)
	moved = []
	for item in found:
		name = name_for(item)
		target = result["steps"][item.index]["payload"]
		for key in item.path[:-1]:
			target = target[key]
		target[item.path[-1]] = placeholder(name)
		moved.append((item, name))
	return result, moved


def substitute(value: Any, values: Mapping[str, str], _depth: int = 0) -> Any:
	"""A copy of `value` with each `{{secrets.NAME}}` whose NAME is in `values` replaced by it.

	For text the flow's author wrote (not rendered document data): rendering context data first
	and substituting after would let a document value "{{secrets.x}}" pull a secret into a request.
	"""
	if _depth > templating.MAX_DEPTH:
		return value
	if isinstance(value, str):
		if "{{" not in value:
			return value
		return templating.render_string(value, {}, secrets=values) if references(value) else value
	if isinstance(value, Mapping):
		return {key: substitute(item, values, _depth + 1) for key, item in value.items()}
	if isinstance(value, list | tuple):
		return [substitute(item, values, _depth + 1) for item in value]
	return value


def redact(value: Any, values: Mapping[str, str], _depth: int = 0) -> Any:
	"""A copy of `value` where every secret value (also JSON-escaped) reads `{{secrets.NAME}}`."""
	pairs = []
	for name, secret in (values or {}).items():
		secret = str(secret or "")
		if len(secret) >= MIN_REDACT:
			forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
			pairs += [(form, placeholder(name)) for form in forms]
	pairs.sort(key=lambda pair: len(pair[0]), reverse=True)
	return _redact(value, pairs, _depth) if pairs else value


def _redact(value: Any, pairs: list[tuple[str, str]], depth: int) -> Any:
	if depth > templating.MAX_DEPTH:
		return value
	if isinstance(value, str):
		for secret, mask in pairs:
			if secret in value:
				value = value.replace(secret, mask)
		return value
	if isinstance(value, Mapping):
		return {key: _redact(item, pairs, depth + 1) for key, item in value.items()}
	if isinstance(value, list | tuple):
		return [_redact(item, pairs, depth + 1) for item in value]
	return value
