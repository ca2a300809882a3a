"""A small, safe JSONLogic evaluator (jsonlogic.com) for trigger conditions.

Maintained PyPI ports of JSONLogic are not available, and the language is tiny: this covers the
standard operators that make sense on document data, with a depth bound and no code execution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flow_engine.engine.templating import lookup

MAX_DEPTH = 24


def _truthy(value: Any) -> bool:
	if isinstance(value, list | tuple):
		return len(value) > 0
	return bool(value)


def _num(value: Any) -> float:
	if isinstance(value, bool):
		return float(value)
	if isinstance(value, int | float):
		return float(value)
	try:
		return float(str(value))
	except (TypeError, ValueError):
		return float("nan")


def _loose_eq(a: Any, b: Any) -> bool:
	if a is None or b is None:
		return a is None and b is None
	if isinstance(a, str) and isinstance(b, str):
		return a == b
	if isinstance(a, int | float | bool) or isinstance(b, int | float | bool):
		return _num(a) == _num(b)
	return a == b


def _compare(op: str, args: list) -> bool:
	values = [_num(arg) if not isinstance(arg, str) or _is_numeric(arg) else arg for arg in args]
	try:
		if len(values) == 3 and op in ("<", "<="):
			a, b, c = values
			return (a < b < c) if op == "<" else (a <= b <= c)
		a, b = values[0], values[1]
		if isinstance(a, str) != isinstance(b, str):
			a, b = _num(a), _num(b)
		return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
	except (TypeError, IndexError):
		return False


def _is_numeric(text: str) -> bool:
	try:
		float(text)
		return True
	except ValueError:
		return False


SIMPLE_OPS = {
	"==": lambda a, b=None: _loose_eq(a, b),
	"===": lambda a, b=None: type(a) is type(b) and a == b,
	"!=": lambda a, b=None: not _loose_eq(a, b),
	"!==": lambda a, b=None: not (type(a) is type(b) and a == b),
	"!": lambda a=None: not _truthy(a),
	"!!": lambda a=None: _truthy(a),
	"in": lambda a, b=None: (
		(a in b) if isinstance(b, list | str) and (isinstance(b, list) or isinstance(a, str)) else False
	),
	"cat": lambda *args: "".join("" if arg is None else str(arg) for arg in args),
	"substr": lambda s, start=0, length=None: _substr(s, start, length),
	"+": lambda *args: sum(_num(arg) for arg in args),
	"*": lambda *args: _product(args),
	"-": lambda a, b=None: -_num(a) if b is None else _num(a) - _num(b),
	"/": lambda a, b: _num(a) / _num(b) if _num(b) else None,
	"%": lambda a, b: _num(a) % _num(b) if _num(b) else None,
	"min": lambda *args: min(_num(arg) for arg in args) if args else None,
	"max": lambda *args: max(_num(arg) for arg in args) if args else None,
	"merge": lambda *args: [item for arg in args for item in (arg if isinstance(arg, list) else [arg])],
}
COMPARE_OPS = ("<", ">", "<=", ">=")
CONTROL_OPS = (
	"if",
	"?:",
	"and",
	"or",
	"var",
	"missing",
	"missing_some",
	"map",
	"filter",
	"all",
	"some",
	"none",
)
OPERATORS = set(SIMPLE_OPS) | set(COMPARE_OPS) | set(CONTROL_OPS)


def _product(args) -> float:
	result = 1.0
	for arg in args:
		result *= _num(arg)
	return result


def _substr(text: Any, start: Any = 0, length: Any = None) -> str:
	text = "" if text is None else str(text)
	start = int(_num(start))
	if length is None:
		return text[start:]
	length = int(_num(length))
	end = len(text) + length if length < 0 else (start if start >= 0 else len(text) + start) + length
	return text[start:end]


def check(logic: Any, path: str = "", depth: int = 0) -> list[tuple[str, str]]:
	"""Structural problems in a JSONLogic expression as (path, message)."""
	if depth > MAX_DEPTH:
		return [(path, f"JSONLogic may nest at most {MAX_DEPTH} levels")]
	if isinstance(logic, list):
		problems = []
		for index, item in enumerate(logic):
			problems += check(item, f"{path}[{index}]", depth + 1)
		return problems
	if not isinstance(logic, Mapping):
		return []
	if len(logic) != 1:
		return [(path, "a JSONLogic operation must have exactly one operator key")]
	op, args = next(iter(logic.items()))
	if op not in OPERATORS:
		return [(path, f"unknown JSONLogic operator {op!r}")]
	return check(args, f"{path}.{op}", depth + 1)


def evaluate(logic: Any, data: Any, depth: int = 0) -> Any:
	if depth > MAX_DEPTH:
		raise ValueError(f"JSONLogic may nest at most {MAX_DEPTH} levels")
	if isinstance(logic, list):
		return [evaluate(item, data, depth + 1) for item in logic]
	if not isinstance(logic, Mapping) or len(logic) != 1:
		return logic
	op, args = next(iter(logic.items()))
	if not isinstance(args, list):
		args = [args]
	if op == "var":
		return _var(args, data, depth)
	if op in ("if", "?:"):
		for index in range(0, len(args) - 1, 2):
			if _truthy(evaluate(args[index], data, depth + 1)):
				return evaluate(args[index + 1], data, depth + 1)
		return evaluate(args[-1], data, depth + 1) if len(args) % 2 else None
	if op == "and":
		value = True
		for arg in args:
			value = evaluate(arg, data, depth + 1)
			if not _truthy(value):
				return value
		return value
	if op == "or":
		value = False
		for arg in args:
			value = evaluate(arg, data, depth + 1)
			if _truthy(value):
				return value
		return value
	if op in ("map", "filter", "all", "some", "none"):
		return _array_op(op, args, data, depth)
	values = [evaluate(arg, data, depth + 1) for arg in args]
	if op == "missing":
		keys = values[0] if len(values) == 1 and isinstance(values[0], list) else values
		return [key for key in keys if lookup(data, str(key)) in (None, "")]
	if op == "missing_some":
		need, keys = int(_num(values[0])), values[1]
		missing = [key for key in keys if lookup(data, str(key)) in (None, "")]
		return missing if len(keys) - len(missing) < need else []
	if op in COMPARE_OPS:
		return _compare(op, values)
	if op in SIMPLE_OPS:
		try:
			return SIMPLE_OPS[op](*values)
		except (TypeError, ValueError, ZeroDivisionError):
			return None
	raise ValueError(f"unknown JSONLogic operator {op!r}")


def _var(args: list, data: Any, depth: int) -> Any:
	path = evaluate(args[0], data, depth + 1) if args else ""
	default = evaluate(args[1], data, depth + 1) if len(args) > 1 else None
	if path in (None, ""):
		return data
	value = lookup(data, str(path))
	if value is None and isinstance(data, Mapping) and "doc" in data and str(path).split(".")[0] not in data:
		value = lookup(data["doc"], str(path))  # a path without a context root is the document's: items.0.qty
	return default if value is None else value


def _array_op(op: str, args: list, data: Any, depth: int) -> Any:
	items = evaluate(args[0], data, depth + 1) if args else []
	if not isinstance(items, list):
		items = []
	logic = args[1] if len(args) > 1 else None
	results = [evaluate(logic, item, depth + 1) for item in items]
	if op == "map":
		return results
	if op == "filter":
		return [item for item, keep in zip(items, results, strict=True) if _truthy(keep)]
	if op == "all":
		return bool(items) and all(_truthy(result) for result in results)
	if op == "some":
		return any(_truthy(result) for result in results)
	return not any(_truthy(result) for result in results)
