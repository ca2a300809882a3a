"""Conditions: `{field, op, value}` leaves grouped with `all` / `any`, or JSONLogic.

No eval, no attribute access, bounded depth. `check_condition` reports structural problems
(used by validation); `evaluate` never raises on data, only on a malformed structure.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable, Mapping
from typing import Any

from flow_engine.engine import jsonlogic
from flow_engine.engine.errors import ConditionError
from flow_engine.engine.templating import lookup, placeholders, render

MAX_DEPTH = 12
OPS = (
	"==",
	"!=",
	"<",
	">",
	"<=",
	">=",
	"in",
	"not_in",
	"empty",
	"not_empty",
	"contains",
	"starts_with",
	"ends_with",
)
UNARY_OPS = ("empty", "not_empty")
OP_LABELS = {
	"==": "equals",
	"!=": "does not equal",
	"<": "is less than",
	">": "is greater than",
	"<=": "is at most",
	">=": "is at least",
	"in": "is one of",
	"not_in": "is not one of",
	"empty": "is empty",
	"not_empty": "is not empty",
	"contains": "contains",
	"starts_with": "starts with",
	"ends_with": "ends with",
}


def is_empty_condition(condition: Any) -> bool:
	return condition in (None, {}, [], "")


def is_native(condition: Any, _depth: int = 0) -> bool:
	"""True for our `{field, op}` / `all` / `any` structure, False for JSONLogic."""
	if not isinstance(condition, Mapping) or _depth > MAX_DEPTH:
		return False
	if "field" in condition or "op" in condition:
		return True
	if len(condition) == 1:
		key = next(iter(condition))
		items = condition[key]
		if key in ("all", "any") and isinstance(items, list):
			return all(isinstance(item, Mapping) and is_native(item, _depth + 1) for item in items)
	return False


def check_condition(condition: Any, allow_jsonlogic: bool = True) -> list[tuple[str, str]]:
	"""Structural problems as (path, message) pairs; empty means usable."""
	problems: list[tuple[str, str]] = []
	if is_empty_condition(condition):
		return problems
	if isinstance(condition, Mapping) and "jsonlogic" in condition and len(condition) == 1:
		if not allow_jsonlogic:
			return [("", "JSONLogic is allowed only in trigger conditions")]
		return [("jsonlogic" + path, message) for path, message in jsonlogic.check(condition["jsonlogic"])]
	if is_native(condition):
		_check_native(condition, "", 0, problems)
		return problems
	if not allow_jsonlogic:
		return [("", "expected {field, op, value} or an 'all'/'any' group of them")]
	problems += jsonlogic.check(condition)
	return problems


def _check_native(node: Any, path: str, depth: int, problems: list) -> None:
	if depth > MAX_DEPTH:
		problems.append((path, f"conditions may nest at most {MAX_DEPTH} levels"))
		return
	if not isinstance(node, Mapping):
		problems.append((path, "each condition must be an object"))
		return
	for group in ("all", "any"):
		if group in node:
			items = node[group]
			if len(node) != 1:
				problems.append((path, f"an '{group}' group must have no other keys"))
			if not isinstance(items, list) or not items:
				problems.append((f"{path}.{group}".lstrip("."), "must be a non-empty list of conditions"))
				return
			for index, item in enumerate(items):
				_check_native(item, f"{path}.{group}[{index}]".lstrip("."), depth + 1, problems)
			return
	field = node.get("field")
	op = node.get("op", "==")
	if not isinstance(field, str) or not field.strip():
		problems.append((f"{path}.field".lstrip("."), "is required (the value to test, e.g. 'doc.status')"))
	if op not in OPS:
		problems.append((f"{path}.op".lstrip("."), f"unknown operator {op!r}; use one of: {', '.join(OPS)}"))
	elif op not in UNARY_OPS and "value" not in node:
		problems.append((f"{path}.value".lstrip("."), f"is required for operator '{op}'"))
	unknown = set(node) - {"field", "op", "value"}
	if unknown:
		problems.append((path or "condition", f"unknown key(s): {', '.join(sorted(unknown))}"))


def evaluate(
	condition: Any,
	context: Mapping,
	resolve: Callable[[Mapping, str], Any] | None = None,
) -> bool:
	"""Evaluate a condition against a template context; empty conditions are true."""
	if is_empty_condition(condition):
		return True
	resolve = resolve or default_resolver
	if isinstance(condition, Mapping) and "jsonlogic" in condition and len(condition) == 1:
		return bool(jsonlogic.evaluate(condition["jsonlogic"], context))
	if is_native(condition):
		return _evaluate_native(condition, context, resolve, 0)
	problems = jsonlogic.check(condition)
	if problems:
		raise ConditionError("; ".join(f"{path or 'condition'}: {msg}" for path, msg in problems))
	return bool(jsonlogic.evaluate(condition, context))


def compile_condition(condition: Any) -> Callable[[Mapping], bool]:
	"""`evaluate` with the structure worked out once: for conditions checked on every save.

	The returned function gives exactly what `evaluate(condition, context)` gives (the default
	resolver); field paths are split and constant values kept as they are ahead of time.
	"""
	if is_empty_condition(condition):
		return lambda context: True
	if not is_native(condition):
		return lambda context: evaluate(condition, context)
	return _compile_native(condition, 0)


def _compile_native(node: Mapping, depth: int) -> Callable[[Mapping], bool]:
	if depth > MAX_DEPTH:
		raise ConditionError(f"conditions may nest at most {MAX_DEPTH} levels")
	for group, combine in (("all", all), ("any", any)):
		if group in node:
			parts = [_compile_native(item, depth + 1) for item in node[group]]
			return lambda context: combine(part(context) for part in parts)
	op = node.get("op", "==")
	if op not in OPS:
		raise ConditionError(f"unknown operator {op!r}")
	field = _field_path(str(node.get("field", "")))
	root = field.split(".", 1)[0]
	value = node.get("value")
	constant = not any(True for _ in placeholders(value))
	simple = bool(field) and "." not in field

	def resolve(context: Mapping) -> Any:
		if root in context:
			return lookup(context, field)
		doc = context.get("doc")
		if simple and isinstance(doc, Mapping):
			return doc[field] if field in doc else None
		return lookup(doc if doc is not None else {}, field)

	if constant and op in ("==", "!=") and isinstance(value, str) and _number(value) is None:
		# the common trigger test, a field against fixed text: `_equal` with the text side worked out
		expected_text, expected_truth, negate = _text(value), _truthy_text(value), op == "!="

		def equals_text(context: Mapping) -> bool:
			actual = resolve(context)
			if actual is None:
				same = expected_text == ""
			elif isinstance(actual, bool):
				same = _truthy_text(actual) == expected_truth
			elif isinstance(actual, list | dict):
				same = False
			else:
				same = _text(actual) == expected_text
			return same != negate

		return equals_text

	def check(context: Mapping) -> bool:
		return compare(resolve(context), op, value if constant else render(value, context))

	return check


def _field_path(field: str) -> str:
	"""A condition's field as a dotted path: `doc.status`, `{{doc.status}}` and ` status ` alike."""
	field = field.strip()
	if field.startswith("{{") and field.endswith("}}"):
		field = field[2:-2].strip()
	return field


def default_resolver(context: Mapping, field: str) -> Any:
	"""A dotted path into the context; a bare name that is not a context root means a doc field."""
	field = _field_path(field)
	root = field.split(".", 1)[0]
	if root in context:
		return lookup(context, field)
	doc = context.get("doc")  # not `or {}`: a document view's truth would mean reading every field
	return lookup(doc if doc is not None else {}, field)


def _evaluate_native(node: Mapping, context: Mapping, resolve, depth: int) -> bool:
	if depth > MAX_DEPTH:
		raise ConditionError(f"conditions may nest at most {MAX_DEPTH} levels")
	if "all" in node:
		return all(_evaluate_native(item, context, resolve, depth + 1) for item in node["all"])
	if "any" in node:
		return any(_evaluate_native(item, context, resolve, depth + 1) for item in node["any"])
	op = node.get("op", "==")
	if op not in OPS:
		raise ConditionError(f"unknown operator {op!r}")
	actual = resolve(context, str(node.get("field", "")))
	expected = render(node.get("value"), context)
	return compare(actual, op, expected)


def compare(actual: Any, op: str, expected: Any) -> bool:
	"""Apply one operator; mismatched types compare as False rather than raising."""
	if op == "empty":
		return _is_empty(actual)
	if op == "not_empty":
		return not _is_empty(actual)
	if op in ("in", "not_in"):
		options = _as_list(expected)
		found = any(_equal(actual, option) for option in options)
		return found if op == "in" else not found
	if op == "contains":
		if isinstance(actual, list | tuple | set):
			return any(_equal(item, expected) for item in actual)
		if isinstance(actual, Mapping):
			return str(expected) in actual
		return _text(expected) in _text(actual) if actual is not None else False
	if op == "starts_with":
		return actual is not None and _text(actual).startswith(_text(expected))
	if op == "ends_with":
		return actual is not None and _text(actual).endswith(_text(expected))
	if op == "==":
		return _equal(actual, expected)
	if op == "!=":
		return not _equal(actual, expected)
	left, right = _comparable(actual, expected)
	if left is None or right is None:
		return False
	try:
		if op == "<":
			return left < right
		if op == ">":
			return left > right
		if op == "<=":
			return left <= right
		if op == ">=":
			return left >= right
	except TypeError:
		return False
	raise ConditionError(f"unknown operator {op!r}")


def _is_empty(value: Any) -> bool:
	if value is None:
		return True
	if isinstance(value, str):
		return not value.strip()
	if isinstance(value, list | tuple | set | dict):
		return not value
	return False


def _as_list(value: Any) -> list:
	if isinstance(value, list | tuple | set):
		return list(value)
	if isinstance(value, str):
		return [part.strip() for part in value.split(",")] if "," in value else [value]
	return [value]


def _text(value: Any) -> str:
	if value is None:
		return ""
	if isinstance(value, datetime.datetime):
		return value.isoformat(sep=" ")
	if isinstance(value, datetime.date):
		return value.isoformat()
	return str(value)


_NUMBER_STARTS = frozenset("0123456789+-.")
_NUMBER_WORDS = frozenset({"inf", "infinity", "nan"})  # float() reads these too


def _number(value: Any):
	if isinstance(value, bool):
		return int(value)
	if isinstance(value, int | float | decimal.Decimal):
		return value
	if isinstance(value, str):
		text = value.strip()
		if not text or (text[0] not in _NUMBER_STARTS and text.lower() not in _NUMBER_WORDS):
			return None  # most text: no need to let float() raise (trigger conditions run on every save)
		try:
			return float(text)
		except ValueError:
			return None
	return None


def _comparable(left: Any, right: Any):
	"""Coerce both sides to numbers if both can be, else to text (ISO dates order correctly)."""
	if left is None or right is None or isinstance(left, Mapping | list) or isinstance(right, Mapping | list):
		return None, None
	left_num, right_num = _number(left), _number(right)
	if left_num is not None and right_num is not None:
		return float(left_num), float(right_num)
	return _text(left), _text(right)


def _equal(left: Any, right: Any) -> bool:
	if left is None or right is None:
		return (left in (None, "")) and (right in (None, ""))
	if isinstance(left, bool) or isinstance(right, bool):
		return _truthy_text(left) == _truthy_text(right)
	left_num, right_num = _number(left), _number(right)
	if left_num is not None and right_num is not None:
		return float(left_num) == float(right_num)
	if isinstance(left, list | dict) or isinstance(right, list | dict):
		return left == right
	return _text(left) == _text(right)


def _truthy_text(value: Any) -> str:
	if isinstance(value, bool):
		return "1" if value else "0"
	text = str(value).strip().lower()
	return {"true": "1", "yes": "1", "false": "0", "no": "0"}.get(text, text)


def describe(condition: Any, _depth: int = 0) -> str:
	"""A short human sentence for a native condition (used in previews and dry runs)."""
	if is_empty_condition(condition):
		return "always"
	if not is_native(condition) or _depth > MAX_DEPTH:
		return "JSONLogic expression"
	for group, word in (("all", " and "), ("any", " or ")):
		if group in condition:
			return "(" + word.join(describe(item, _depth + 1) for item in condition[group]) + ")"
	op = condition.get("op", "==")
	text = f"{condition.get('field')} {OP_LABELS.get(op, op)}"
	if op not in UNARY_OPS:
		text += f" {condition.get('value')!r}"
	return text


# ---------------------------------------------------------------- equality index (many flows)

_BOOL_WORDS = frozenset({"true", "false", "yes", "no"})


def equality_key(condition: Any) -> tuple[str, str] | None:
	"""(document field, key) when `condition` is exactly `field == text` on a plain field of the document
	with a text that no coercion can make equal to a number, a boolean or an empty value; else None.

	Flows whose trigger condition has that shape can be found by a dictionary lookup on the document's
	value (`value_key`) instead of being evaluated one by one: the same answer `compare` gives."""
	if not isinstance(condition, Mapping) or set(condition) - {"field", "op", "value"}:
		return None
	if condition.get("op", "==") != "==":
		return None
	field, value = condition.get("field"), condition.get("value")
	if not isinstance(field, str) or not isinstance(value, str) or not value.strip():
		return None
	if field.startswith("doc."):
		field = field[4:]
	if not field.isidentifier():
		return None
	if _number(value) is not None or value.strip().lower() in _BOOL_WORDS:
		return None
	return field, value


def value_key(actual: Any) -> str | None:
	"""The key a document's value matches in an equality index (None: it matches no indexed text)."""
	if actual is None or isinstance(actual, bool | list | tuple | dict | set):
		return None
	return _text(actual)
