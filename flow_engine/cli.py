"""`python -m flow_engine`: check and dry-run flow files on the pure engine, with no Frappe site.

    python -m flow_engine validate FLOW.json [MORE.json …] [--json]
    python -m flow_engine dry-run FLOW.json [--doc DOC.json] [--input JSON|@FILE] [--now ISO] [--json]

A file holds a flow definition ({"version": 1, "steps": [...]}), an exported Flow Template (an
object whose `flow_definition` holds the definition) or a fixtures list of them. Only the engine's
checks run: what needs a site (doctypes and their fields, linked records, installed apps, Flow
Secrets) is skipped and the output says so; `bench --site SITE flow validate FILE` runs those too.

Exit codes, for CI: 0 valid / dry run done, 1 a flow is invalid (or its dry run shows a step that
would fail), 2 usage error (unreadable file, --doc or --input that is not JSON, unknown option).
This module and everything it imports must never import frappe (tests/test_cli.py checks).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flow_engine.engine import conditions
from flow_engine.engine.catalog import DEFAULT_CATALOG, Catalog, KindSpec
from flow_engine.engine.definition import build, load
from flow_engine.engine.errors import DefinitionError, Issue
from flow_engine.engine.validation import validate

OK, INVALID, USAGE = 0, 1, 2
SITE_SKIPPED = (
	"site checks skipped: doctypes and fields, linked records, installed apps, Flow Secrets "
	"(`bench --site SITE flow validate FILE` runs them)"
)
TRIGGER_FIELDS = {
	"trigger_doctype": "doctype",
	"trigger_event": "event",
	"trigger_field": "field",
	"custom_event": "custom_event",
	"trigger_condition": "condition",
}


DESCRIPTION = (
	"FLOW.json is a flow definition, an exported Flow Template or a fixtures list of them. Only the "
	"engine's checks run; site checks (doctypes and fields, linked records, installed apps, Flow "
	"Secrets) are skipped. Exit codes: 0 valid / dry run done, 1 invalid (or a step would fail), "
	"2 usage error."
)


class UsageError(Exception):
	"""Bad arguments or unreadable input: exit code 2."""


@dataclass
class FlowFile:
	"""One flow read from a file: its definition data (or the issues loading it) and template fields."""

	label: str
	raw: dict | None = None
	issues: list[Issue] = field(default_factory=list)
	name: str | None = None
	payload_schema: Any = None


# ---------------------------------------------------------------- reading files


def read_text(path: str) -> str:
	try:
		with open(path, encoding="utf-8") as handle:
			return handle.read()
	except (OSError, UnicodeDecodeError) as error:
		raise UsageError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None


def read_flows(path: str) -> list[FlowFile]:
	"""The flows in a file; a file that is not JSON is one flow with the located JSON issue."""
	text = read_text(path)
	try:
		data = json.loads(text)
	except ValueError:
		return [_load_flow(path, text)]
	if isinstance(data, list) and data and all(_is_template(item) for item in data):
		return [
			_load_flow(f"{path} [{_template_name(item) or f'#{index + 1}'}]", item["flow_definition"], item)
			for index, item in enumerate(data)
		]
	if _is_template(data):
		return [_load_flow(path, data["flow_definition"], data)]
	if not isinstance(data, Mapping):
		problem = "must be a JSON object with a 'steps' list, an exported Flow Template or a list of them"
		return [FlowFile(path, issues=[Issue(problem, field="flow_definition", code="json")])]
	return [_load_flow(path, data)]


def _is_template(data: Any) -> bool:
	return isinstance(data, Mapping) and "flow_definition" in data


def _template_name(template: Mapping) -> str | None:
	return template.get("template_name") or template.get("name")


def _load_flow(label: str, definition: Any, template: Mapping | None = None) -> FlowFile:
	flow = FlowFile(label)
	if template is not None:
		flow.name = _template_name(template)
		flow.payload_schema = template.get("payload_schema") or None
	try:
		flow.raw = load(definition if definition is not None else "")
	except DefinitionError as error:
		flow.issues = error.issues
		return flow
	if template is not None and not flow.raw.get("trigger"):
		# an export whose definition predates the trigger sync: the template fields are the trigger
		trigger = {key: template.get(name) for name, key in TRIGGER_FIELDS.items() if template.get(name)}
		if isinstance(trigger.get("condition"), str):
			try:
				trigger["condition"] = json.loads(trigger["condition"])
			except ValueError:
				flow.issues.append(Issue("is not valid JSON", field="trigger_condition"))
		if trigger:
			flow.raw["trigger"] = trigger
	return flow


def read_json_argument(value: str, what: str) -> Any:
	"""JSON text, or @FILE for a file of JSON."""
	text = read_text(value[1:]) if value.startswith("@") else value
	try:
		return json.loads(text)
	except ValueError as error:
		raise UsageError(f"{what} is not valid JSON: {error}") from None


def catalog_with(modules: list[str]) -> Catalog:
	"""The built-in kinds plus those of `--kinds` modules (the `flow_engine_kinds` hook format)."""
	if not modules:
		return DEFAULT_CATALOG
	catalog = Catalog()
	for path in modules:
		try:
			provider = importlib.import_module(path)
		except Exception as error:
			raise UsageError(f"--kinds {path}: cannot import it: {error}") from None
		kinds = provider.KINDS if hasattr(provider, "KINDS") else []
		for item in kinds() if callable(kinds) else kinds:
			spec = item[0] if isinstance(item, tuple | list) else item
			if not isinstance(spec, KindSpec):
				raise UsageError(f"--kinds {path}: {spec!r} is not a KindSpec")
			catalog.add(spec)
	return catalog


# ---------------------------------------------------------------- validate


def check(flow: FlowFile, catalog: Catalog) -> list[Issue]:
	if flow.raw is None:
		return flow.issues
	issues = flow.issues + validate(flow.raw, catalog)
	if flow.payload_schema:
		from flow_engine.engine.payload import check_schema

		schema = flow.payload_schema
		if isinstance(schema, str):
			try:
				schema = json.loads(schema)
			except ValueError as error:
				return [*issues, Issue(f"is not valid JSON: {error}", field="payload_schema")]
		problem = check_schema(schema)
		if problem:
			issues.append(Issue(problem, field="payload_schema"))
		else:
			flow.payload_schema = schema
	return issues


def step_count(flow: FlowFile) -> int:
	steps = (flow.raw or {}).get("steps")
	return len(steps) if isinstance(steps, list) else 0


def run_validate(args) -> int:
	catalog = catalog_with(args.kinds)
	results = []
	for path in args.files:
		for flow in read_flows(path):
			results.append((flow, check(flow, catalog)))
	if args.json:
		report = {
			"valid": all(not issues for _, issues in results),
			"site_checks": "skipped",
			"flows": [
				{
					"file": flow.label,
					"template": flow.name,
					"valid": not issues,
					"steps": step_count(flow),
					"problems": [issue.as_dict() for issue in issues],
				}
				for flow, issues in results
			],
		}
		print(json.dumps(report, indent=1, ensure_ascii=False))
	else:
		for flow, issues in results:
			if not issues:
				print(f"{flow.label}: valid ({_plural(step_count(flow), 'step')})")
				continue
			print(f"{flow.label}: invalid, {_plural(len(issues), 'problem')}")
			for issue in issues:
				print(f"  - {issue}")
		print(SITE_SKIPPED)
	return INVALID if any(issues for _, issues in results) else OK


def _plural(count: int, word: str) -> str:
	return f"{count} {word}{'' if count == 1 else 's'}"


# ---------------------------------------------------------------- dry run


def run_dry_run(args) -> int:
	from flow_engine.engine.dry_run import dry_run
	from flow_engine.engine.payload import payload_errors

	catalog = catalog_with(args.kinds)
	flows = read_flows(args.file)
	if args.flow:
		flows = [flow for flow in flows if flow.name == args.flow]
		if not flows:
			raise UsageError(f"{args.file} holds no flow named '{args.flow}'")
	if len(flows) > 1:
		names = ", ".join(repr(flow.name) for flow in flows)
		raise UsageError(f"{args.file} holds {len(flows)} flows ({names}): pick one with --flow NAME")
	flow = flows[0]
	doc = read_json_argument("@" + args.doc, "--doc") if args.doc else {}
	if not isinstance(doc, Mapping):
		raise UsageError("--doc must hold one JSON object: the trigger document's fields")
	data = read_json_argument(args.input, "--input") if args.input is not None else {}
	now = _parse_now(args.now)

	issues = check(flow, catalog)
	if flow.payload_schema and not issues:
		issues += [
			Issue(message, field=f"input → {path}")
			for path, message in payload_errors(flow.payload_schema, data)
		]
	if issues:
		if args.json:
			print(
				json.dumps(
					{"ran": False, "problems": [issue.as_dict() for issue in issues]},
					indent=1,
					ensure_ascii=False,
				)
			)
		else:
			print(f"{flow.label}: invalid, {_plural(len(issues), 'problem')}; nothing was dry-run")
			for issue in issues:
				print(f"  - {issue}")
		return INVALID

	definition = build(flow.raw, catalog)
	context = dry_run_context(definition, flow, dict(doc), data, now)
	trigger = trigger_verdict(definition, context)
	report = dry_run(definition, context, now)
	for entry in report["steps"]:
		entry["effect"] = effect(entry, catalog, context["doc"])
	failing = [entry for entry in report["steps"] if entry.get("error") or "would fail" in entry["note"]]
	if args.json:
		report.update(ran=True, now=now.isoformat(sep=" "), trigger=trigger, site_checks="skipped")
		print(json.dumps(report, indent=1, ensure_ascii=False, default=str))
	else:
		print_dry_run(flow, report, trigger, context["doc"], now)
	return INVALID if failing else OK


def _parse_now(text: str | None) -> datetime.datetime:
	if not text:
		return datetime.datetime.now().replace(microsecond=0)
	try:
		return datetime.datetime.fromisoformat(text)
	except ValueError:
		raise UsageError(f"--now {text!r} is not an ISO date or datetime, e.g. 2026-05-01T09:00") from None


def dry_run_context(definition, flow: FlowFile, doc: dict, data: Any, now: datetime.datetime) -> dict:
	"""The template context of a run, from plain files: what `runtime.context.build_context` gives."""
	template = flow.name or "(dry run)"
	doctype = doc.get("doctype") or definition.trigger.doctype
	customer = doc.get("name") if doctype == "Customer" else doc.get("customer") or doc.get("party_name")
	return {
		"doc": doc,
		"customer": {"name": customer} if customer else {},
		"run": {
			"name": "(dry run)",
			"template": template,
			"version": 0,
			"status": "running",
			"source": "user",
			"started_at": str(now),
			"started_by": "(dry run)",
			"reference_doctype": doctype,
			"reference_name": doc.get("name"),
		},
		"template": {"name": template, "version": 0},
		"variables": {},
		"steps": {},
		"now": now,
		"today": now.date().isoformat(),
		"input": data if data is not None else {},
		"event": {"name": definition.trigger.event or "manual", "schedule": None},
	}


def trigger_verdict(definition, context: Mapping) -> dict:
	"""Whether the flow's trigger condition holds for the document (a real run starts only if so)."""
	trigger = definition.trigger
	verdict = {
		"doctype": trigger.doctype,
		"event": trigger.event or "manual",
		"condition": conditions.describe(trigger.condition) if trigger.condition else None,
		"met": True,
	}
	if trigger.condition:
		try:
			verdict["met"] = conditions.evaluate(trigger.condition, context)
		except Exception as error:
			verdict.update(met=False, error=str(error))
	return verdict


def _short(value: Any, limit: int = 160) -> str:
	text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
	return text if len(text) <= limit else text[: limit - 1] + "…"


def _target(payload: Mapping, doc: Mapping) -> str:
	if payload.get("doctype"):
		return f"{payload['doctype']} {payload.get('name') or '(no name)'}"
	name = f"{doc.get('doctype') or ''} {doc.get('name') or ''}".strip()
	return f"the trigger document ({name})" if name else "the trigger document"


def effect(entry: Mapping, catalog: Catalog, doc: Mapping) -> str:
	"""What a step would do, in words: side effects say what they would create, send or call."""
	if entry["action"] == "skip":
		return f"skipped: {entry['note']}"
	payload = entry.get("payload") or {}
	kind = entry["kind"]
	if kind == "condition":
		if entry.get("error"):
			return f"would fail: {entry['error']}"
		return f"{conditions.describe(payload.get('condition', payload))} → branch '{entry.get('branch')}'"
	if kind in ("switch", "inclusive"):
		if entry.get("error"):
			return f"would fail: {entry['error']}"
		if kind == "switch":
			return f"→ branch '{entry.get('branch')}'"
		taken = ", ".join(f"'{name}'" for name in entry.get("branches") or []) or "none"
		return f"→ branches {taken}"
	if kind == "create_doc":
		text = f"would create {payload.get('doctype')} with {_short(payload.get('fields') or {})}"
		if payload.get("link_to_trigger"):
			text += ", linked to the trigger document"
		return text + (", and submit it" if payload.get("submit") else "")
	if kind == "update_doc":
		return f"would set {_short(payload.get('fields') or {})} on {_target(payload, doc)}"
	if kind == "notify":
		channel = payload.get("channel") or "email"
		what = {"email": "an email", "sms": "an SMS", "system": "a Desk notification"}.get(channel, channel)
		text = f"would send {what} to {_short(payload.get('recipients'))}"
		if payload.get("email_template"):
			text += f" using Email Template {payload['email_template']!r}"
		elif payload.get("subject"):
			text += f": {_short(payload['subject'], 80)}"
		return text
	if kind == "webhook":
		text = f"would {payload.get('method') or 'POST'} {payload.get('url')}"
		if payload.get("body") not in (None, "", {}):
			text += f" with body {_short(payload['body'], 100)}"
		return text + (" (signed)" if payload.get("secret") else "")
	if kind == "assign":
		who = _short(payload.get("assign_to")) if payload.get("assign_to") else None
		if payload.get("role"):
			strategy = "every user" if payload.get("role_strategy") == "all" else "the least busy user"
			who = f"{who} and " if who else ""
			who += f"{strategy} with role {payload['role']!r}"
		return f"would assign {_target(payload, doc)} to {who}"
	if kind == "comment":
		return f"would comment on {_target(payload, doc)}: {_short(payload.get('text'), 100)}"
	if kind == "set_variables":
		return "sets " + ", ".join(
			f"{name} = {_short(value, 60)}" for name, value in (payload.get("variables") or {}).items()
		)
	if kind == "wait":
		return "waits, then continues"
	if kind == "subscription_activate":
		return f"would activate Subscription {payload.get('subscription')}"
	spec = catalog.get(kind)
	if spec is None:
		return f"would run kind {kind!r}"
	return f"would run {spec.label}" + (" (an external call)" if spec.external else "")


def print_dry_run(flow: FlowFile, report: Mapping, trigger: Mapping, doc: Mapping, now) -> None:
	subject = f"{doc.get('doctype') or 'document'} {doc.get('name')}" if doc.get("name") else "no document"
	print(f"{flow.label}: dry run on {subject} at {now:%Y-%m-%d %H:%M} (nothing is performed)")
	when = f"{trigger['doctype']} {trigger['event']}" if trigger["doctype"] else trigger["event"]
	if trigger["condition"]:
		met = "met" if trigger["met"] else "NOT met: a real run would not start"
		if trigger.get("error"):
			met += f" ({trigger['error']})"
		print(f"Trigger: {when}, when {trigger['condition']}: {met}")
	else:
		print(f"Trigger: {when}")
	wave = 0
	for entry in report["steps"]:
		if entry["wave"] != wave:
			wave = entry["wave"]
			print(f"Wave {wave}")
		title = entry["step_id"] + (f" ({entry['label']})" if entry["label"] != entry["step_id"] else "")
		print(f"  {title} [{entry['kind']}]: {entry['effect']}")
		if entry["action"] == "skip":
			continue
		if entry["note"]:
			print(f"      {entry['note']}")
		if entry["kind"] != "condition" and entry.get("payload"):
			text = json.dumps(entry["payload"], ensure_ascii=False, default=str)
			if len(text) > 100:
				text = json.dumps(entry["payload"], indent=2, ensure_ascii=False, default=str)
			print("      payload: " + text.replace("\n", "\n      "))
	never = report["never_reached"]
	print(f"Never reached: {', '.join(never) if never else 'none'}")
	if report["variables"]:
		print(f"Variables: {_short(report['variables'], 400)}")
	print(SITE_SKIPPED)


# ---------------------------------------------------------------- entry point


def parser() -> argparse.ArgumentParser:
	main = argparse.ArgumentParser(
		prog="python -m flow_engine",
		description="Check and dry-run flow files without a Frappe site (exit 0 ok, 1 invalid, 2 usage).",
	)
	commands = main.add_subparsers(dest="command", metavar="COMMAND")
	kinds_help = "a module whose KINDS adds step kinds, as in the flow_engine_kinds hook (repeatable)"

	check_flows = commands.add_parser(
		"validate", help="report every problem of each flow (step and field)", description=DESCRIPTION
	)
	check_flows.add_argument("files", nargs="+", metavar="FLOW.json")
	check_flows.add_argument("--json", action="store_true", help="machine-readable report")
	check_flows.add_argument("--kinds", action="append", default=[], metavar="MODULE", help=kinds_help)

	walk = commands.add_parser(
		"dry-run",
		help="walk a flow against a document: waves, branches, rendered payloads",
		description=DESCRIPTION,
	)
	walk.add_argument("file", metavar="FLOW.json")
	walk.add_argument("--doc", metavar="DOC.json", help="the trigger document's fields as a JSON object")
	walk.add_argument("--input", metavar="JSON", help="the run's input: JSON text or @FILE")
	walk.add_argument("--now", metavar="ISO", help="the time the run starts (default: now)")
	walk.add_argument("--flow", metavar="NAME", help="which flow of a fixtures file")
	walk.add_argument("--json", action="store_true", help="machine-readable report")
	walk.add_argument("--kinds", action="append", default=[], metavar="MODULE", help=kinds_help)
	return main


def main(argv: list[str] | None = None) -> int:
	arguments = parser()
	args = arguments.parse_args(argv)  # exits 2 on a usage error, 0 on --help
	if not args.command:
		arguments.print_help(sys.stderr)
		return USAGE
	try:
		return run_validate(args) if args.command == "validate" else run_dry_run(args)
	except UsageError as error:
		print(f"{arguments.prog} {args.command}: {error}", file=sys.stderr)
		return USAGE
