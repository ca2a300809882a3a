"""`{{a.b.c}}` templates: dotted-path lookups into plain data, never code.

Rendering never throws: an unknown path renders as an empty string. A string that is exactly one
placeholder keeps the value's type (so `{{doc.qty}}` stays a number and can feed numeric fields).
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
PATH = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*$")
MAX_DEPTH = 32
MISSING = object()


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


def render(value: Any, context: Mapping, _depth: int = 0) -> Any:
	"""Render every string inside `value` (dicts and lists recursively) against `context`."""
	try:
		if _depth > MAX_DEPTH:
			return value
		if isinstance(value, str):
			return render_string(value, context)
		if isinstance(value, Mapping):
			return {key: render(item, context, _depth + 1) for key, item in value.items()}
		if isinstance(value, list | tuple):
			return [render(item, context, _depth + 1) for item in value]
		return value
	except Exception:
		return value


def render_string(text: str, context: Mapping) -> Any:
	if "{{" not in text:
		return text
	whole = PLACEHOLDER.fullmatch(text.strip())
	if whole and text.strip() == text:
		value = lookup(context, whole.group(1).strip())
		return "" if value is None else value
	return PLACEHOLDER.sub(lambda match: to_text(lookup(context, match.group(1).strip())), text)


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
