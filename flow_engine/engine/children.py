"""Child runs, the pure part: for_each bodies and scopes, their validation, flow-call cycles, and the
item scheduler of a for_each (which items to start, when it is done). No frappe here.

A for_each step's *body* is the steps whose parent is the for_each on branch "each", with their
descendants. Each item runs as a child run of the same flow version *scoped* to the body: its
definition holds only the body's steps, the body's roots without parent. A run without scope plans
the top level: every step outside any for_each body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flow_engine.engine import templating
from flow_engine.engine.errors import Issue

FOR_EACH = "for_each"
CALL_FLOW = "call_flow"
BODY_BRANCH = "each"
ITEM_ROOTS = ("item", "item_index")
ON_ITEM_ERROR = ("stop", "continue")
MAX_CONCURRENCY = 50
DEFAULT_CONCURRENCY = 5


def _steps(raw: Mapping) -> list[Mapping]:
	steps = raw.get("steps") if isinstance(raw, Mapping) else None
	return [step for step in steps or [] if isinstance(step, Mapping) and isinstance(step.get("id"), str)]


def _depends(step: Mapping) -> list[str]:
	depends = step.get("depends_on") or []
	if isinstance(depends, str):
		depends = [depends]
	return [dep for dep in depends if isinstance(dep, str)] if isinstance(depends, list) else []


def owners(raw: Mapping, resolve=lambda kind: kind) -> dict[str, str | None]:
	"""Each step's scope: the id of the innermost for_each whose body holds it, or None (top level)."""
	by_id = {step["id"]: step for step in _steps(raw)}
	result: dict[str, str | None] = {}

	def owner(step_id: str, seen: frozenset = frozenset()) -> str | None:
		if step_id in result:
			return result[step_id]
		step = by_id[step_id]
		parent = step.get("parent_id")
		found = None
		if isinstance(parent, str) and parent in by_id and parent not in seen and parent != step_id:
			if resolve(by_id[parent].get("kind")) == FOR_EACH and step.get("branch") == BODY_BRANCH:
				found = parent
			else:
				found = owner(parent, seen | {step_id})
		result[step_id] = found
		return found

	for step_id in by_id:
		owner(step_id)
	return result


def body(raw: Mapping, for_each_id: str, resolve=lambda kind: kind) -> list[str]:
	"""The ids of a for_each's own body (not those of for_each steps nested in it), in order."""
	scope = owners(raw, resolve)
	return [step["id"] for step in _steps(raw) if scope.get(step["id"]) == for_each_id]


def scoped(raw: Mapping, scope: str | None, resolve=lambda kind: kind) -> dict:
	"""The definition a run with `scope` plans: the body of for_each `scope` (its roots lose their
	parent and branch), or with no scope the top level (every step outside a for_each body)."""
	owner_of = owners(raw, resolve)
	steps = []
	for step in _steps(raw):
		if owner_of.get(step["id"]) != scope:
			continue
		if scope is not None and step.get("parent_id") == scope:
			step = {key: value for key, value in step.items() if key not in ("parent_id", "branch")}
			trigger = step.get("trigger")
			if isinstance(trigger, Mapping) and trigger.get("type") == "on_prev_complete":
				step["trigger"] = {**trigger, "type": "on_flow_start"}
			elif trigger == "on_prev_complete":
				step["trigger"] = "on_flow_start"
		steps.append(step)
	return {**raw, "steps": steps}


def has_bodies(raw: Mapping, resolve=lambda kind: kind) -> bool:
	return any(resolve(step.get("kind")) == FOR_EACH for step in _steps(raw))


# ---------------------------------------------------------------- validation


def check(raw: Mapping, resolve=lambda kind: kind) -> list[Issue]:
	"""for_each bodies and item templates: a for_each has a body; steps depend only on steps of their own
	scope (a body on the body, the rest on the rest: wait for a loop by depending on the for_each);
	{{item}} and {{item_index}} are read only inside a body; call_flow names a flow."""
	issues: list[Issue] = []
	steps = _steps(raw)
	by_id = {step["id"]: step for step in steps}
	owner_of = owners(raw, resolve)
	for step in steps:
		step_id, kind = step["id"], resolve(step.get("kind"))
		label = str(step["label"]) if step.get("label") else None
		if kind == FOR_EACH and not any(owner_of.get(other) == step_id for other in by_id):
			issues.append(
				Issue(
					f"for_each '{step_id}' has no body: add the steps to repeat with parent_id '{step_id}' "
					f"and branch '{BODY_BRANCH}'",
					step_id,
					"branch",
					label,
					"empty_loop",
				)
			)
		scope = owner_of.get(step_id)
		for dep in _depends(step):
			if dep not in by_id or owner_of.get(dep) == scope:
				continue
			dep_scope = owner_of.get(dep)
			if dep_scope is not None and (scope is None or not _inside(scope, dep_scope, owner_of)):
				message = (
					f"depends on '{dep}', a step of the body of for_each '{dep_scope}', which runs once per "
					f"item in its own run; depend on '{dep_scope}' to continue after every item"
				)
			else:
				message = (
					f"is in the body of for_each '{scope}' and may depend only on steps of that body "
					f"(not on '{dep}'); it starts after the steps before '{scope}' anyway"
				)
			issues.append(Issue(message, step_id, "depends_on", label, "loop_scope"))
		if scope is None:
			for where in ("payload", "trigger"):
				for path in templating.placeholders(step.get(where)):
					if path.split(".")[0] in ITEM_ROOTS:
						issues.append(
							Issue(
								f"'{{{{{path}}}}}' is only known inside a for_each body (steps with the "
								f"for_each as parent on branch '{BODY_BRANCH}')",
								step_id,
								where,
								label,
								"bad_reference",
							)
						)
		if kind == FOR_EACH:
			issues += _check_for_each(step, label)
	return issues


def _inside(scope: str, outer: str, owner_of: Mapping) -> bool:
	"""Whether for_each `scope` is (transitively) inside the body of `outer`."""
	current: str | None = scope
	seen = set()
	while current is not None and current not in seen:
		if current == outer:
			return True
		seen.add(current)
		current = owner_of.get(current)
	return False


def _check_for_each(step: Mapping, label: str | None) -> list[Issue]:
	issues: list[Issue] = []
	payload = step.get("payload") if isinstance(step.get("payload"), Mapping) else {}
	step_id = step["id"]
	items = payload.get("items")
	if isinstance(items, Mapping):
		if not items.get("doctype") or not isinstance(items.get("doctype"), str):
			issues.append(
				Issue(
					"documents to repeat over need a 'doctype' (with optional 'filters' and 'limit')",
					step_id,
					"payload.items.doctype",
					label,
					"missing_field",
				)
			)
		for key in items:
			if key not in ("doctype", "filters", "limit", "order_by"):
				issues.append(
					Issue(
						f"unknown key {key!r} for documents; use doctype, filters, limit, order_by",
						step_id,
						f"payload.items.{key}",
						label,
						"unknown_field",
					)
				)
		filters = items.get("filters")
		if filters is not None and not isinstance(filters, Mapping | list):
			issues.append(
				Issue(
					"must be an object of field → value (or a filter list)",
					step_id,
					"payload.items.filters",
					label,
				)
			)
		limit = items.get("limit")
		if limit not in (None, "") and not _whole(limit, 1, 10000):
			issues.append(
				Issue("must be a whole number from 1 to 10000", step_id, "payload.items.limit", label)
			)
	elif isinstance(items, str):
		if "{{" not in items:
			issues.append(
				Issue(
					"must be a template giving a list, like {{doc.items}} or {{steps.s1.result.rows}}, "
					'or documents {"doctype": …, "filters": {…}}',
					step_id,
					"payload.items",
					label,
				)
			)
	elif isinstance(items, list):
		pass  # a literal list of items
	elif items is not None:
		issues.append(
			Issue(
				'must be a template giving a list ({{doc.items}}) or documents {"doctype": …, "filters": {…}}',
				step_id,
				"payload.items",
				label,
			)
		)
	concurrency = payload.get("concurrency")
	if concurrency not in (None, "") and not (
		_whole(concurrency, 1, MAX_CONCURRENCY) or "{{" in str(concurrency)
	):
		issues.append(
			Issue(
				f"must be a whole number from 1 to {MAX_CONCURRENCY}", step_id, "payload.concurrency", label
			)
		)
	return issues


def _whole(value: Any, low: int, high: int) -> bool:
	if isinstance(value, bool):
		return False
	try:
		number = float(value)
	except (TypeError, ValueError):
		return False
	return number == int(number) and low <= number <= high


# ---------------------------------------------------------------- flows calling flows


def called_flows(raw: Mapping, resolve=lambda kind: kind) -> list[tuple[str, str]]:
	"""(step id, flow name) of each call_flow step with a static flow name (templates are left out)."""
	result = []
	for step in _steps(raw):
		if resolve(step.get("kind")) != CALL_FLOW:
			continue
		payload = step.get("payload") if isinstance(step.get("payload"), Mapping) else {}
		flow = payload.get("flow")
		if isinstance(flow, str) and flow.strip() and "{{" not in flow:
			result.append((step["id"], flow.strip()))
	return result


def find_cycle(start: str, calls: Mapping[str, Iterable[str]]) -> list[str] | None:
	"""A path start → … → start through `calls` (flow → the flows it calls), or None."""
	stack: list[tuple[str, Iterable]] = [(start, iter(sorted(set(calls.get(start) or ()))))]
	path = [start]
	seen = {start}
	while stack:
		_node, following = stack[-1]
		for flow in following:
			if flow == start:
				return [*path, start]
			if flow not in seen:
				seen.add(flow)
				path.append(flow)
				stack.append((flow, iter(sorted(set(calls.get(flow) or ())))))
				break
		else:
			stack.pop()
			path.pop()
	return None


# ---------------------------------------------------------------- the item scheduler


def new_loop(count: int, concurrency: int, on_item_error: str) -> dict:
	"""The bookkeeping of a for_each, kept in its step state (JSON: open item indexes are text)."""
	return {
		"count": int(count),
		"concurrency": max(1, int(concurrency)),
		"on_item_error": on_item_error if on_item_error in ON_ITEM_ERROR else "stop",
		"next": 0,
		"open": {},
		"results": [None] * int(count),
		"failed": [],
		"done": 0,
		"stopped": False,
	}


def to_start(loop: dict) -> list[int]:
	"""Take the items to start now (at most `concurrency` open at once); marks them as started."""
	if loop["stopped"]:
		return []
	room = loop["concurrency"] - len(loop["open"])
	indexes = list(range(loop["next"], min(loop["count"], loop["next"] + max(0, room))))
	loop["next"] += len(indexes)
	return indexes


def started(loop: dict, index: int, run: str) -> None:
	loop["open"][str(index)] = run


def item_ended(loop: dict, index: int, ok: bool, output: Any = None) -> bool:
	"""Record an item's end; False when it was not open (a duplicate or stale notice: ignored)."""
	if loop["open"].pop(str(index), None) is None:
		return False
	loop["done"] += 1
	if ok:
		loop["results"][index] = output
	else:
		loop["failed"].append(index)
		loop["failed"].sort()
		if loop["on_item_error"] == "stop":
			loop["stopped"] = True
	return True


def finished(loop: dict) -> bool:
	"""Whether the for_each is over: every item ended, or (policy stop) an item failed."""
	if loop["stopped"]:
		return True
	return not loop["open"] and loop["next"] >= loop["count"]


def result_of(loop: dict) -> dict:
	return {"count": loop["count"], "results": list(loop["results"]), "failed": list(loop["failed"])}
