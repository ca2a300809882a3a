"""`{{a.b.c}}` templates: dotted-path lookups into plain data, never code.

Rendering never throws: an unknown path renders as an empty string. A string that is exactly one
placeholder keeps the value's type (so `{{doc.qty}}` stays a number and can feed numeric fields).

`{{secrets.NAME}}` placeholders are kept verbatim unless the caller passes the secret values
(only the webhook kind does, right before sending), so records and dry runs never show a secret.
Rendering is one pass: a value coming from the context is never rendered again, so a document
field holding "{{secrets.x}}" cannot pull a secret into a request.
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
PATH = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*$")
MAX_DEPTH = 32
MISSING = object()
SECRETS_ROOT = "secrets"


class Refused(Exception):
	"""Raised by a context value that may not be read (a document the acting user may not read).

	The one error rendering lets through: a step must fail rather than send its placeholder or a blank."""


def lookup(context: Any, path: str, default: Any = None) -> Any:
	"""Follow a dotted path through dicts (by key) and lists (by index). No attribute access."""
	if not isinstance(path, str) or not path:
		return default
	current = context
	for part in path.split("."):
		if isinstance(current, Mapping):
			if part in current:
				current = current[part]
				continue
			return default
		if isinstance(current, list | tuple) and _is_index(part):
			index = int(part)
			if -len(current) <= index < len(current):
				current = current[index]
				continue
		return default
	return current


def _is_index(part: str) -> bool:
	return part.isdigit() or (part.startswith("-") and part[1:].isdigit())


def to_text(value: Any) -> str:
	"""The text a value renders as inside a larger string."""
	if value is None or value is MISSING:
		return ""
	if isinstance(value, bool):
		return "true" if value else "false"
	if isinstance(value, datetime.datetime | datetime.date | datetime.time):
		return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
	if isinstance(value, decimal.Decimal):
		return format(value, "f")
	if isinstance(value, float) and value.is_integer():
		return str(int(value))
	if isinstance(value, dict | list | tuple):
		try:
			return json.dumps(value, default=str, sort_keys=True)
		except Exception:
			return ""
	try:
		return str(value)
	except Exception:
		return ""


def render(
	value: Any,
	context: Mapping,
	*,
	escape: Callable[[str, Any], str] | None = None,
	secrets: Mapping | None = None,
	_depth: int = 0,
) -> Any:
	"""Render every string inside `value` (dicts and lists recursively) against `context`.

	`escape(path, value) -> str`, when given, formats every placeholder's value (e.g. HTML-escapes
	it for an email body); a string that is exactly one placeholder then renders as a string too.
	`secrets` maps secret names to values for `{{secrets.NAME}}`; without it those stay verbatim.
	"""
	try:
		if _depth > MAX_DEPTH:
			return value
		if isinstance(value, str):
			return render_string(value, context, escape=escape, secrets=secrets)
		if isinstance(value, Mapping):
			return {
				key: render(item, context, escape=escape, secrets=secrets, _depth=_depth + 1)
				for key, item in value.items()
			}
		if isinstance(value, list | tuple):
			return [
				render(item, context, escape=escape, secrets=secrets, _depth=_depth + 1) for item in value
			]
		return value
	except Refused:
		raise
	except Exception:
		return value


def render_string(
	text: str,
	context: Mapping,
	*,
	escape: Callable[[str, Any], str] | None = None,
	secrets: Mapping | None = None,
) -> Any:
	if "{{" not in text:
		return text

	def value_of(match: re.Match) -> Any:
		path = match.group(1).strip()
		if path.split(".", 1)[0] != SECRETS_ROOT:
			return lookup(context, path)
		if secrets is None:
			return MISSING  # kept verbatim
		return lookup(secrets, path.split(".", 1)[1]) if "." in path else None

	def text_of(match: re.Match) -> str:
		value = value_of(match)
		if value is MISSING:
			return match.group(0)
		if escape is not None:
			escaped = escape(match.group(1).strip(), value)
			return escaped if isinstance(escaped, str) else to_text(escaped)
		return to_text(value)

	whole = PLACEHOLDER.fullmatch(text)
	if whole and escape is None:
		value = value_of(whole)
		if value is MISSING:
			return text
		return "" if value is None else value
	return PLACEHOLDER.sub(text_of, text)


def is_secret_path(path: str) -> bool:
	return isinstance(path, str) and path.split(".", 1)[0] == SECRETS_ROOT


def placeholders(value: Any, _depth: int = 0) -> Iterator[str]:
	"""Every placeholder path used anywhere inside `value`."""
	if _depth > MAX_DEPTH:
		return
	if isinstance(value, str):
		for match in PLACEHOLDER.finditer(value):
			yield match.group(1).strip()
	elif isinstance(value, Mapping):
		for item in value.values():
			yield from placeholders(item, _depth + 1)
	elif isinstance(value, list | tuple):
		for item in value:
			yield from placeholders(item, _depth + 1)


def is_valid_path(path: str) -> bool:
	return bool(PATH.match(path))
