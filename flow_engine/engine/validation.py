"""Validation of flow definitions: every problem, each naming its step and field.

Checks (SPEC §3): shape, duplicate ids, unknown kinds, missing required payload fields, dangling
`depends_on`/`parent_id`, branch without a branching parent, cycles, unreachable steps, step
trigger fields, retry/timeout values, template references to unknown steps or variables, and the
flow trigger. It never raises on any input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from flow_engine.engine import business_events, children, secret_refs, templating, vocabulary
from flow_engine.engine.catalog import DEFAULT_CATALOG, ERROR_BRANCH, ON_ERROR, Catalog, missing_required
from flow_engine.engine.conditions import check_condition
from flow_engine.engine.definition import (
	DEFAULT_RETRY,
	DELAY_UNITS,
	FLOW_EVENTS,
	STEP_TRIGGERS,
	delay_seconds,
	join_of,
	normalise_step_trigger,
)
from flow_engine.engine.errors import Issue

STEP_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
TEMPLATE_ROOTS = (
	"doc",
	"customer",
	"run",
	"template",
	"variables",
	"steps",
	"now",
	"today",
	"input",
	"event",
	"item",  # for_each bodies: the item, and its index (engine/children.py)
	"item_index",
	"secrets",  # {{secrets.NAME}}: a Flow Secret, webhook steps only (see engine/secret_refs.py)
)
MAX_STEPS = 250
STEP_KEYS = {
	"id",
	"kind",
	"label",
	"parent_id",
	"branch",
	"depends_on",
	"trigger",
	"payload",
	"retry",
	"timeout",
	"join",
	"on_error",
	"description",
	"notes",
}
STEP_TRIGGER_KEYS = {
	"after_delay": tuple(DELAY_UNITS),
	"on_date": ("date", "time", "offset_days"),
}


def validate(raw: Any, catalog: Catalog = DEFAULT_CATALOG) -> list[Issue]:
	try:
		return _validate(raw, catalog)
	except Exception as error:  # a validator must never be the thing that crashes
		return [Issue(f"could not be checked: {error!r}", field="flow_definition", code="internal")]


def _validate(raw: Any, catalog: Catalog) -> list[Issue]:
	issues: list[Issue] = []
	if not isinstance(raw, Mapping):
		return [Issue("must be a JSON object with a 'steps' list", field="flow_definition", code="shape")]
	version = raw.get("version", 1)
	if version not in (1, "1"):
		issues.append(
			Issue(f"unsupported definition version {version!r}; this engine reads version 1", field="version")
		)
	for key in raw:
		if key not in vocabulary.TOP_KEYS:
			issues.append(
				Issue(
					f"unknown key {key!r} in the definition{vocabulary.did_you_mean(key, vocabulary.TOP_KEYS)}; "
					f"a definition has: {', '.join(vocabulary.TOP_KEYS)}",
					field=str(key),
					code="unknown_field",
				)
			)
	issues += _check_flow_trigger(raw.get("trigger"))
	variables = raw.get("variables")
	if variables is not None and not isinstance(variables, Mapping):
		issues.append(Issue("must be an object of name → value", field="variables"))
		variables = {}
	steps = raw.get("steps")
	if steps is None:
		steps = []
	if not isinstance(steps, list):
		issues.append(Issue("must be a list of steps", field="steps", code="shape"))
		return issues
	if len(steps) > MAX_STEPS:
		issues.append(Issue(f"a flow may have at most {MAX_STEPS} steps (has {len(steps)})", field="steps"))

	by_id: dict[str, Mapping] = {}
	order: list[str] = []
	for index, step in enumerate(steps):
		if not isinstance(step, Mapping):
			issues.append(
				Issue(f"step #{index + 1} must be an object", field=f"steps[{index}]", code="shape")
			)
			continue
		step_id = step.get("id")
		if not isinstance(step_id, str) or not step_id.strip():
			issues.append(
				Issue(f"step #{index + 1} has no id", field=f"steps[{index}].id", code="missing_id")
			)
			continue
		if not STEP_ID.match(step_id):
			issues.append(
				Issue(
					"ids use letters, digits, '_' and '-' (at most 64)", step_id, "id", _label(step), "bad_id"
				)
			)
		if step_id in by_id:
			issues.append(
				Issue(
					f"duplicate step id '{step_id}' (step #{index + 1})",
					step_id,
					"id",
					_label(step),
					"duplicate_id",
				)
			)
			continue
		by_id[step_id] = step
		order.append(step_id)

	for step_id in order:
		issues += _check_step(by_id[step_id], by_id, catalog)

	cycle_members = _cycles(by_id, issues)
	issues += _unreachable(by_id, catalog, cycle_members)
	issues += _check_references(raw, by_id, variables or {}, catalog, cycle_members)
	issues += children.check(raw, catalog.resolve)  # for_each bodies and {{item}}
	return issues


def _label(step: Mapping) -> str | None:
	label = step.get("label")
	return str(label) if label else None


def _check_flow_trigger(trigger: Any) -> list[Issue]:
	if trigger in (None, {}):
		return []
	if not isinstance(trigger, Mapping):
		return [Issue("must be an object {doctype, event, condition}", field="trigger")]
	issues = []
	for key in trigger:
		if key in vocabulary.FLOW_TRIGGER_KEYS:
			continue
		alias = vocabulary.FLOW_TRIGGER_ALIASES.get(key)
		if alias:
			message = _alias_message(alias, trigger)
		else:
			hint = vocabulary.did_you_mean(
				key, [*vocabulary.FLOW_TRIGGER_KEYS, *vocabulary.FLOW_TRIGGER_ALIASES]
			)
			message = f"unknown trigger field {key!r}{hint}; a trigger has: {', '.join(vocabulary.FLOW_TRIGGER_KEYS)}"
		issues.append(Issue(message, field=f"trigger.{key}", code="unknown_field"))
	event = trigger.get("event")
	if event and event not in FLOW_EVENTS:
		if event in vocabulary.DESIGN_EVENTS or vocabulary.business_event(event):
			message = (
				f"{event!r} is a business event, but custom_event is also given as "
				f"{trigger.get('custom_event')!r}; give the event's name once"
			)
		elif event in vocabulary.DOCUMENT_METHODS:
			message = (
				f"{event!r} is a document method, not an event a flow listens to; use one of: "
				f"{', '.join(FLOW_EVENTS)}"
			)
		else:
			message = (
				f"unknown event {event!r}{vocabulary.did_you_mean(event, FLOW_EVENTS)}; use one of: "
				f"{', '.join(FLOW_EVENTS)}, or a business event name such as on_contract_signed"
			)
		issues.append(Issue(message, field="trigger.event"))
	doctype = trigger.get("doctype")
	if doctype is not None and not isinstance(doctype, str):
		issues.append(Issue("must be a DocType name", field="trigger.doctype"))
	if event and event not in ("custom", "manual") and not doctype:
		issues.append(Issue(f"is required for the '{event}' event", field="trigger.doctype"))
	if event == "value_changed" and not trigger.get("field"):
		issues.append(Issue("name the field whose change fires the flow", field="trigger.field"))
	if event == "custom" and not trigger.get("custom_event"):
		issues.append(Issue("name the custom event that fires the flow", field="trigger.custom_event"))
	condition = trigger.get("condition")
	if isinstance(condition, str) and condition.strip():
		issues.append(
			Issue(
				"must be a condition object ({field, op, value}, all/any, or JSONLogic), not text",
				field="trigger.condition",
			)
		)
		return issues
	for path, message in check_condition(condition):
		issues.append(Issue(message, field="trigger.condition" + (f".{path}" if path else "")))
	return issues


def _check_step(step: Mapping, by_id: Mapping, catalog: Catalog) -> list[Issue]:
	step_id, label = step["id"], _label(step)
	issues: list[Issue] = []

	def add(field: str, message: str, code: str = "invalid"):
		issues.append(Issue(message, step_id, field, label, code))

	for key in sorted(set(step) - STEP_KEYS, key=str):
		add(
			str(key),
			f"unknown step field {key!r}{vocabulary.did_you_mean(key, STEP_KEYS)}; a step has: "
			f"{', '.join(sorted(STEP_KEYS))}",
			"unknown_field",
		)
	kind = step.get("kind")
	spec = catalog.get(kind)
	if not kind:
		add("kind", "is required", "missing_kind")
	elif spec is None:
		add("kind", f"unknown kind {kind!r}; known kinds: {', '.join(catalog.names())}", "unknown_kind")
	if step.get("label") is not None and not isinstance(step.get("label"), str):
		add("label", "must be text")

	payload = step.get("payload")
	if payload is None:
		payload = {}
	if not isinstance(payload, Mapping):
		add("payload", "must be an object", "shape")
		payload = {}
	if spec is not None:
		for field, message in missing_required(spec, payload):
			add(f"payload.{field}", message, "missing_field" if "required" in message else "invalid")
		_check_payload_keys(spec, payload, add)

	parent_id = step.get("parent_id")
	branch = step.get("branch")
	if parent_id not in (None, ""):
		if not isinstance(parent_id, str) or parent_id not in by_id:
			add("parent_id", f"refers to step '{parent_id}', which does not exist", "dangling_parent")
			parent_id = None
		elif parent_id == step_id:
			add("parent_id", "a step cannot be its own parent", "dangling_parent")
			parent_id = None
	if branch not in (None, ""):
		if not parent_id:
			add(
				"branch",
				f"branch '{branch}' needs a parent_id naming a branching step (e.g. a condition or a switch)",
				"branch_without_parent",
			)
		else:
			parent = by_id[parent_id]
			parent_spec = catalog.get(parent.get("kind"))
			branches = catalog.branches_for(parent)
			hint = (
				f"; set on_error to 'branch' on '{parent_id}' to give it an error branch"
				if branch == ERROR_BRANCH and parent.get("on_error") != "branch"
				else ""
			)
			if parent_spec is not None and not branches:
				add(
					"branch",
					f"parent '{parent_id}' ({parent_spec.name}) does not branch; only kinds such as "
					f"'condition', 'switch' and 'inclusive' have branches{hint}",
					"branch_without_parent",
				)
			elif parent_spec is not None and branch not in branches:
				add(
					"branch",
					f"'{branch}' is not a branch of '{parent_id}' (it has: {', '.join(branches)}); "
					f"this step could never run{hint}",
					"unreachable",
				)

	depends = step.get("depends_on")
	if depends in (None, ""):
		depends = []
	if isinstance(depends, str):
		depends = [depends]
	if not isinstance(depends, list):
		add("depends_on", "must be a list of step ids", "shape")
	else:
		for dep in depends:
			if dep == step_id:
				add("depends_on", "a step cannot depend on itself", "cycle")
			elif not isinstance(dep, str) or dep not in by_id:
				add("depends_on", f"refers to step '{dep}', which does not exist", "dangling_dependency")
		if len(set(map(str, depends))) != len(depends):
			add("depends_on", "lists the same step twice")

	issues += _check_step_trigger(step, add)
	issues += _check_retry_timeout(step, add)
	_check_join_on_error(step, by_id, add)
	return issues


def _check_join_on_error(step: Mapping, by_id: Mapping, add) -> None:
	"""`join`: "all" | "any" | n inputs (1 <= n <= its inputs); `on_error`: fail | continue | branch."""
	on_error = step.get("on_error")
	if on_error not in (None, "") and on_error not in ON_ERROR:
		add(
			"on_error",
			f"must be one of: {', '.join(ON_ERROR)} (not {on_error!r}): fail stops the run, continue "
			"records the failure and goes on, branch takes the step's 'error' branch",
		)
	raw = step.get("join")
	if raw in (None, ""):
		return
	join = join_of(raw)
	if join is None:
		add("join", f"must be 'all', 'any' or a whole number of inputs such as 2, not {raw!r}", "bad_join")
		return
	inputs = _predecessors(step, by_id)
	inputs = list(dict.fromkeys(inputs))
	named = ", ".join(f"'{name}'" for name in inputs) or "none"
	if isinstance(join, int):
		if join < 1:
			add("join", f"must be at least 1 (got {join}): the number of inputs to wait for", "bad_join")
		elif join > len(inputs):
			add(
				"join",
				f"join {join} can never fire: the step has only {len(inputs)} input(s) ({named}); "
				"lower it or add depends_on entries",
				"join_never_fires",
			)
	elif join == "any" and not inputs:
		add(
			"join",
			"join 'any' needs inputs (depends_on entries or a parent) and this step has none",
			"join_never_fires",
		)


def _alias_message(canonical: str, mapping: Mapping) -> str:
	if canonical in mapping:
		return f"is another name for '{canonical}', which is also given with another value; keep one"
	return f"is another name for '{canonical}'; load the definition through definition.load to translate it"


def _check_payload_keys(spec, payload: Mapping, add) -> None:
	"""Every payload key is one of the kind's fields: nothing an author writes is silently ignored."""
	known = [field.name for field in spec.fields]
	for key in payload:
		if key in known:
			continue
		problem = vocabulary.leftover_problem(spec.name, key, payload)
		if problem:
			add(f"payload.{key}", problem, "design_key")
			continue
		hint = vocabulary.did_you_mean(key, [*known, *vocabulary.payload_aliases(spec.name)])
		takes = f"it takes: {', '.join(known)}" if known else "it takes no payload"
		add(f"payload.{key}", f"unknown key {key!r} for kind '{spec.name}'{hint}; {takes}", "unknown_field")


def _check_step_trigger(step: Mapping, add) -> list[Issue]:
	raw = step.get("trigger")
	if raw is not None and not isinstance(raw, Mapping | str):
		add("trigger", 'must be an object like {"type": "on_prev_complete"}', "shape")
		return []
	trigger = normalise_step_trigger(raw, step)
	kind = trigger.get("type")
	if kind not in STEP_TRIGGERS:
		add(
			"trigger.type",
			f"unknown trigger type {kind!r}{vocabulary.did_you_mean(kind, STEP_TRIGGERS)}; use one of: "
			f"{', '.join(STEP_TRIGGERS)}",
			"bad_trigger",
		)
		return []
	every = [key for keys in STEP_TRIGGER_KEYS.values() for key in keys]
	for key in trigger:
		if key == "type" or key in STEP_TRIGGER_KEYS.get(kind, ()):
			continue
		owner = next((name for name, keys in STEP_TRIGGER_KEYS.items() if key in keys), None)
		if key in vocabulary.STEP_TRIGGER_ALIASES:
			message = _alias_message(vocabulary.STEP_TRIGGER_ALIASES[key], trigger)
		elif owner:
			message = f"applies only to {owner} triggers, not to {kind}; remove it"
		else:
			hint = vocabulary.did_you_mean(key, [*every, *vocabulary.STEP_TRIGGER_ALIASES, "type"])
			message = f"unknown trigger field {key!r}{hint}"
		add(f"trigger.{key}", message, "unknown_field")
	has_predecessors = bool(step.get("depends_on")) or bool(step.get("parent_id"))
	if kind == "on_flow_start" and has_predecessors:
		add(
			"trigger.type",
			"on_flow_start steps run in the first wave and cannot have depends_on or a parent; "
			"use on_prev_complete",
			"bad_trigger",
		)
	if kind == "after_delay":
		values = {key: trigger.get(key) for key in DELAY_UNITS if trigger.get(key) not in (None, "")}
		if not values:
			add(
				"trigger.delay_minutes",
				"after_delay needs delay_minutes, delay_hours or delay_days",
				"missing_field",
			)
		for key, value in values.items():
			try:
				if float(value) < 0:
					add(f"trigger.{key}", "must not be negative")
			except (TypeError, ValueError):
				add(f"trigger.{key}", f"must be a number (got {value!r})")
		try:
			if values and delay_seconds(trigger) > 366 * 86400 * 5:
				add("trigger.delay_days", "delays longer than five years are not supported")
		except (TypeError, ValueError):
			pass
	if kind == "on_date":
		if not (trigger.get("date") or trigger.get("at")):
			add(
				"trigger.date",
				'on_date needs a date or datetime (e.g. "{{doc.follow_up_date}}")',
				"missing_field",
			)
		time = trigger.get("time")
		if time and not re.match(r"^\d{1,2}:\d{2}(:\d{2})?$", str(time)):
			add("trigger.time", "must look like HH:MM")
		offset = trigger.get("offset_days")
		if offset not in (None, ""):
			try:
				float(offset)
			except (TypeError, ValueError):
				add("trigger.offset_days", "must be a number")
	return []


def _check_retry_timeout(step: Mapping, add) -> list[Issue]:
	retry = step.get("retry")
	if retry is not None:
		if not isinstance(retry, Mapping):
			add("retry", 'must be an object like {"max_attempts": 3, "backoff_seconds": 60}')
		else:
			for key, value in retry.items():
				if key not in DEFAULT_RETRY:
					add(f"retry.{key}", f"unknown retry setting; use {', '.join(DEFAULT_RETRY)}")
					continue
				try:
					number = float(value)
				except (TypeError, ValueError):
					add(f"retry.{key}", "must be a number")
					continue
				if key == "max_attempts" and not (1 <= number <= 50 and number == int(number)):
					add("retry.max_attempts", "must be a whole number from 1 to 50")
				elif number < 0:
					add(f"retry.{key}", "must not be negative")
	timeout = step.get("timeout")
	if timeout not in (None, ""):
		try:
			seconds = float(timeout) if not isinstance(timeout, bool) else None
		except (TypeError, ValueError):
			seconds = None
		if seconds is None or not math.isfinite(seconds):
			add("timeout", f"must be a number of seconds, like 30, not {timeout!r}")
		elif seconds <= 0:
			add("timeout", f"must be a positive number of seconds, not {timeout!r}")
	return []


def _predecessors(step: Mapping, by_id: Mapping) -> list[str]:
	depends = step.get("depends_on") or []
	if isinstance(depends, str):
		depends = [depends]
	if not isinstance(depends, list):  # reported as a shape problem by _check_step
		return []
	result = [dep for dep in depends if isinstance(dep, str) and dep in by_id and dep != step["id"]]
	parent = step.get("parent_id")
	if isinstance(parent, str) and parent in by_id and parent != step["id"]:
		result.append(parent)
	return result


def _cycles(by_id: Mapping, issues: list[Issue]) -> set[str]:
	"""Report each cycle once; return every step on or behind a cycle."""
	WHITE, GREY, BLACK = 0, 1, 2
	colour = {step_id: WHITE for step_id in by_id}
	on_cycle: set[str] = set()
	for start in by_id:
		if colour[start] != WHITE:
			continue
		stack = [(start, iter(_predecessors(by_id[start], by_id)))]
		path = [start]
		colour[start] = GREY
		while stack:
			node, children = stack[-1]
			advanced = False
			for child in children:
				if colour[child] == GREY:
					cycle = path[path.index(child) :]
					if not on_cycle.intersection(cycle):
						first = cycle[0]
						loop = " → ".join([*reversed(cycle), cycle[-1]]) if len(cycle) > 1 else first
						issues.append(
							Issue(
								f"depends_on/parent_id form a cycle: {loop}",
								first,
								"depends_on",
								_label(by_id[first]),
								"cycle",
							)
						)
					on_cycle.update(cycle)
				elif colour[child] == WHITE:
					colour[child] = GREY
					stack.append((child, iter(_predecessors(by_id[child], by_id))))
					path.append(child)
					advanced = True
					break
			if not advanced:
				colour[node] = BLACK
				stack.pop()
				path.pop()
	return on_cycle


def _unreachable(by_id: Mapping, catalog: Catalog, cycle_members: set[str]) -> list[Issue]:
	"""Steps nothing can ever make ready (roots waiting on a previous step, or behind such a step)."""
	issues: list[Issue] = []
	dead: set[str] = set(cycle_members)
	changed = True
	reasons: dict[str, str] = {}
	for step_id, step in by_id.items():
		trigger = (
			normalise_step_trigger(step.get("trigger"), step)
			if isinstance(step.get("trigger"), Mapping | str | None)
			else {}
		)
		if (
			trigger.get("type") == "on_prev_complete"
			and not _predecessors(step, by_id)
			and not step.get("depends_on")
			and not step.get("parent_id")
		):
			dead.add(step_id)
			reasons[step_id] = (
				"nothing precedes it, so it would never start: add depends_on, place it in a "
				"branch, or make its trigger on_flow_start"
			)
	while changed:
		changed = False
		for step_id, step in by_id.items():
			if step_id in dead:
				continue
			blockers = [pred for pred in _predecessors(step, by_id) if pred in dead]
			if blockers:
				dead.add(step_id)
				if blockers[0] not in cycle_members or step_id not in cycle_members:
					reasons[step_id] = f"it waits on '{blockers[0]}', which can never run"
				changed = True
	for step_id in by_id:
		if step_id in reasons and step_id not in cycle_members:
			issues.append(
				Issue(
					f"unreachable: {reasons[step_id]}",
					step_id,
					"trigger" if "nothing precedes" in reasons[step_id] else "depends_on",
					_label(by_id[step_id]),
					"unreachable",
				)
			)
	return issues


def ancestors(step_id: str, by_id: Mapping) -> set[str]:
	seen: set[str] = set()
	stack = list(_predecessors(by_id[step_id], by_id))
	while stack:
		current = stack.pop()
		if current in seen:
			continue
		seen.add(current)
		stack.extend(_predecessors(by_id[current], by_id))
	return seen


def _check_references(
	raw: Mapping, by_id: Mapping, variables: Mapping, catalog: Catalog, cycle_members: set[str]
) -> list[Issue]:
	"""Template paths must start at a known root, name real steps that run before, and known variables."""
	issues: list[Issue] = []
	known_variables = set(variables)
	trigger = raw.get("trigger")
	if isinstance(trigger, Mapping) and trigger.get("event") == "custom":
		# a business event the app raises carries its variables ({{variables.amount}})
		known_variables.update(business_events.variable_names(trigger.get("custom_event")))
	for step in by_id.values():
		if catalog.resolve(step.get("kind")) == "set_variables" and isinstance(step.get("payload"), Mapping):
			names = step["payload"].get("variables")
			if isinstance(names, Mapping):
				known_variables.update(names)
	for path in templating.placeholders(raw.get("variables")):
		if templating.is_secret_path(path):
			issues.append(Issue(_SECRETS_ONLY_IN_WEBHOOKS.format(path), field="variables", code="secret_use"))
	for step_id, step in by_id.items():
		before = ancestors(step_id, by_id) if step_id not in cycle_members else set(by_id)
		secrets_allowed = catalog.resolve(step.get("kind")) in secret_refs.SECRET_KINDS
		for where in ("payload", "trigger"):
			for path in templating.placeholders(step.get(where)):
				if templating.is_secret_path(path) and not (secrets_allowed and where == "payload"):
					problem, code = _SECRETS_ONLY_IN_WEBHOOKS.format(path), "secret_use"
				else:
					problem = reference_problem(path, step_id, before, by_id, known_variables)
					code = "bad_reference"
				if problem:
					issues.append(Issue(problem, step_id, where, _label(step), code))
	return issues


_SECRETS_ONLY_IN_WEBHOOKS = (
	"'{{{{{0}}}}}': secrets can only be used in webhook steps (in their payload), so they are never "
	"written into documents, messages or run records"
)


def reference_problem(
	path: str, step_id: str | None, before: set[str], by_id: Mapping, known_variables: set[str]
) -> str | None:
	if not templating.is_valid_path(path):
		return f"'{{{{{path}}}}}' is not a dotted path such as {{{{doc.customer}}}}"
	parts = path.split(".")
	root = parts[0]
	if root not in TEMPLATE_ROOTS:
		return f"'{{{{{path}}}}}' starts with unknown '{root}'; use one of: {', '.join(TEMPLATE_ROOTS)}"
	if root == "steps":
		if len(parts) < 2:
			return "'{{steps}}' needs a step id, e.g. {{steps.s1.result.name}}"
		target = parts[1]
		if target not in by_id:
			return f"'{{{{{path}}}}}' refers to step '{target}', which does not exist"
		if target == step_id or target not in before:
			return f"'{{{{{path}}}}}' refers to step '{target}', which does not run before this step"
	if root == "secrets" and (len(parts) != 2 or not secret_refs.is_valid_name(parts[1])):
		return (
			f"'{{{{{path}}}}}' must name one secret, e.g. {{{{secrets.crm_token}}}} (lowercase letters, "
			"digits, '_' and '-')"
		)
	if root == "variables" and len(parts) > 1 and parts[1] not in known_variables:
		return (
			f"'{{{{{path}}}}}' uses variable '{parts[1]}', which is neither in the flow's variables nor set by "
			"a set_variables step"
		)
	return None
