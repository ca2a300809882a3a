"""The flow definition language: JSON in, immutable objects out.

`load` turns text into data (malformed JSON is a DefinitionError naming the line), `compile_definition`
validates and builds a `Definition`. See SPEC §3 and README "Flow definition language".
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flow_engine.engine.catalog import DEFAULT_CATALOG, ON_ERROR, Catalog
from flow_engine.engine.errors import DefinitionError, Issue

STEP_TRIGGERS = ("on_flow_start", "on_prev_complete", "after_delay", "on_date", "on_webhook", "manual")
PARKING_TRIGGERS = ("on_webhook", "manual")
TIMED_TRIGGERS = ("after_delay", "on_date")
DOC_EVENTS = (
	"after_insert",
	"on_update",
	"on_submit",
	"on_cancel",
	"on_trash",
	"on_update_after_submit",
	"value_changed",
)
FLOW_EVENTS = (*DOC_EVENTS, "custom", "manual")
DELAY_UNITS = {"delay_minutes": 60, "delay_hours": 3600, "delay_days": 86400, "delay_seconds": 1}
DEFAULT_RETRY = {"max_attempts": 1, "backoff_seconds": 60, "backoff_factor": 2.0, "max_backoff_seconds": 3600}
JOIN_MODES = ("all", "any")  # or a whole number n >= 1 of inputs


def join_of(value: Any) -> str | int | None:
	"""A step's `join` in its canonical form ("all", "any" or n >= 1), or None when it is none of them.

	Absent means "all"; a whole number may be written as text ("2")."""
	if value in (None, ""):
		return "all"
	if isinstance(value, bool):
		return None
	if isinstance(value, str):
		text = value.strip().lower()
		if text in JOIN_MODES:
			return text
		if text.isdigit():
			return int(text)
		return None
	if isinstance(value, int):
		return value
	if isinstance(value, float) and value.is_integer():
		return int(value)
	return None


@dataclass(frozen=True)
class RetryPolicy:
	max_attempts: int = 1
	backoff_seconds: float = 60
	backoff_factor: float = 2.0
	max_backoff_seconds: float = 3600

	@classmethod
	def build(cls, *policies: Mapping | None) -> RetryPolicy:
		merged = dict(DEFAULT_RETRY)
		for policy in policies:
			if isinstance(policy, Mapping):
				merged.update({key: value for key, value in policy.items() if key in DEFAULT_RETRY})
		return cls(
			max_attempts=max(1, int(merged["max_attempts"])),
			backoff_seconds=max(0.0, float(merged["backoff_seconds"])),
			backoff_factor=max(1.0, float(merged["backoff_factor"])),
			max_backoff_seconds=max(0.0, float(merged["max_backoff_seconds"])),
		)


@dataclass(frozen=True)
class StepTrigger:
	type: str = "on_prev_complete"
	delay_seconds: float = 0.0
	date: Any = None
	time: str | None = None
	offset_days: float = 0.0
	raw: Mapping = field(default_factory=dict)

	@property
	def delay(self) -> datetime.timedelta:
		return datetime.timedelta(seconds=self.delay_seconds)


@dataclass(frozen=True)
class Step:
	id: str
	kind: str
	label: str = ""
	parent_id: str | None = None
	branch: str | None = None
	depends_on: tuple[str, ...] = ()
	trigger: StepTrigger = field(default_factory=StepTrigger)
	payload: Mapping = field(default_factory=dict)
	retry: RetryPolicy = field(default_factory=RetryPolicy)
	timeout: float | None = None
	join: str | int = "all"  # "all" | "any" | n: how many of its inputs must complete before it fires
	on_error: str = "fail"  # "fail" | "continue" | "branch": what a failure after its retries does
	raw: Mapping = field(default_factory=dict)

	@property
	def title(self) -> str:
		return self.label or self.id

	@property
	def predecessors(self) -> tuple[str, ...]:
		return (*self.depends_on, self.parent_id) if self.parent_id else self.depends_on

	@property
	def inputs(self) -> tuple[str, ...]:
		"""The steps a join counts, each once: its depends_on entries, then its parent."""
		seen = [dep for dep in dict.fromkeys(self.depends_on) if dep != self.parent_id]
		return (*seen, self.parent_id) if self.parent_id else tuple(seen)


@dataclass(frozen=True)
class FlowTrigger:
	doctype: str | None = None
	event: str | None = None
	field: str | None = None
	custom_event: str | None = None
	condition: Any = None


@dataclass(frozen=True)
class Definition:
	version: int
	trigger: FlowTrigger
	variables: Mapping
	steps: tuple[Step, ...]
	raw: Mapping

	def __post_init__(self):
		object.__setattr__(self, "_by_id", {step.id: step for step in self.steps})

	def step(self, step_id: str) -> Step:
		return self._by_id[step_id]

	def has_step(self, step_id: str) -> bool:
		return step_id in self._by_id

	@property
	def step_ids(self) -> list[str]:
		return [step.id for step in self.steps]


def load(data: str | bytes | Mapping | None, apps: Iterable[str] | None = None) -> dict:
	"""Parse definition text into the app's own form; empty input is an empty flow.

	A definition written in the design's vocabulary (engine/vocabulary.py) is normalised here, so
	every entry point validates, stores and runs the app's form. `apps`: the site's installed apps
	(where the runtime has not configured the vocabulary to ask the site itself).
	"""
	from flow_engine.engine import vocabulary

	if data is None or data == "" or data == b"":
		return {"version": 1, "steps": []}
	if isinstance(data, Mapping):
		return vocabulary.normalise(data, apps)
	try:
		parsed = json.loads(data)
	except (TypeError, ValueError) as error:
		where = ""
		if isinstance(error, json.JSONDecodeError):
			where = f" at line {error.lineno}, column {error.colno}"
		raise DefinitionError(
			[Issue(f"is not valid JSON{where}: {error}", field="flow_definition", code="json")]
		) from None
	if not isinstance(parsed, Mapping):
		raise DefinitionError(
			[Issue("must be a JSON object with a 'steps' list", field="flow_definition", code="json")]
		)
	return vocabulary.normalise(parsed, apps)


def dumps(data: Mapping) -> str:
	"""Text of a definition for storage; keeps the author's key order (variables render in order)."""
	return json.dumps(data, indent=1, default=str, ensure_ascii=False)


def fingerprint(data: Mapping) -> str:
	"""Order-insensitive text of a definition, for change detection."""
	return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def normalise_step_trigger(raw: Any, step: Mapping) -> dict:
	"""The trigger of a step as a dict; absent means on_prev_complete (or on_flow_start for roots)."""
	if isinstance(raw, str):
		raw = {"type": raw}
	if not isinstance(raw, Mapping) or not raw.get("type"):
		has_predecessors = bool(step.get("depends_on")) or bool(step.get("parent_id"))
		base = dict(raw) if isinstance(raw, Mapping) else {}
		base["type"] = "on_prev_complete" if has_predecessors else "on_flow_start"
		return base
	return dict(raw)


def delay_seconds(trigger: Mapping) -> float:
	total = 0.0
	for key, factor in DELAY_UNITS.items():
		value = trigger.get(key)
		if value not in (None, ""):
			total += float(value) * factor
	return total


def build(raw: Mapping, catalog: Catalog = DEFAULT_CATALOG) -> Definition:
	"""Objects from already-validated data."""
	trigger = raw.get("trigger") or {}
	steps = []
	for item in raw.get("steps") or []:
		kind = catalog.resolve(item.get("kind"))
		spec = catalog.get(kind)
		step_trigger = normalise_step_trigger(item.get("trigger"), item)
		depends = item.get("depends_on") or []
		if isinstance(depends, str):
			depends = [depends]
		steps.append(
			Step(
				id=str(item["id"]),
				kind=kind,
				label=str(item.get("label") or ""),
				parent_id=item.get("parent_id") or None,
				branch=item.get("branch") or None,
				depends_on=tuple(str(dep) for dep in depends),
				trigger=StepTrigger(
					type=step_trigger["type"],
					delay_seconds=delay_seconds(step_trigger)
					if step_trigger["type"] == "after_delay"
					else 0.0,
					date=step_trigger.get("date") or step_trigger.get("at"),
					time=step_trigger.get("time") or None,
					offset_days=float(step_trigger.get("offset_days") or 0),
					raw=step_trigger,
				),
				payload=dict(item.get("payload") or {}),
				retry=RetryPolicy.build(spec.default_retry if spec else None, item.get("retry")),
				timeout=float(item["timeout"]) if item.get("timeout") not in (None, "") else None,
				join=join_of(item.get("join")) or "all",
				on_error=item.get("on_error") if item.get("on_error") in ON_ERROR else "fail",
				raw=item,
			)
		)
	return Definition(
		version=int(raw.get("version") or 1),
		trigger=FlowTrigger(
			doctype=trigger.get("doctype") or None,
			event=trigger.get("event") or None,
			field=trigger.get("field") or None,
			custom_event=trigger.get("custom_event") or None,
			condition=trigger.get("condition") or None,
		),
		variables=dict(raw.get("variables") or {}),
		steps=tuple(steps),
		raw=raw,
	)


def compile_definition(
	data: str | bytes | Mapping | None, catalog: Catalog = DEFAULT_CATALOG, flow: str | None = None
) -> Definition:
	"""Load, validate and build; raises DefinitionError listing every problem."""
	from flow_engine.engine.validation import validate

	try:
		raw = load(data)
	except DefinitionError as error:
		error.flow = flow
		raise DefinitionError(error.issues, flow=flow) from None
	issues = validate(raw, catalog)
	if issues:
		raise DefinitionError(issues, flow=flow)
	return build(raw, catalog)
