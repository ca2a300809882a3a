"""`bench --site SITE flow …`: validate, run, tick, complete, runs, preflight."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import click
import frappe
from frappe.commands import get_site, pass_context


@contextmanager
def _site(context):
	site = get_site(context)
	frappe.init(site=site)
	frappe.connect()
	frappe.set_user("Administrator")
	try:
		yield site
	finally:
		frappe.destroy()


def _json(text: str | None, what: str):
	if not text:
		return None
	try:
		return json.loads(text)
	except ValueError as error:
		raise click.BadParameter(f"{what} is not valid JSON: {error}") from None


@click.group("flow", help="Flow Engine: validate flows, start runs, tick the scheduler, check the setup")
def flow():
	pass


@flow.command("validate", help="Validate a flow: a template name, or a JSON file (a definition or an export)")
@click.argument("target")
@click.option("--doctype", help="Trigger doctype for field checks (files only)")
@pass_context
def validate(context, target, doctype=None):
	from flow_engine.runtime.templates import validate_definition

	with _site(context):
		path = Path(target)
		if path.suffix == ".json" or path.exists():
			data = _json(path.read_text(), target)
			if isinstance(data, dict) and "flow_definition" in data:  # an exported template
				from flow_engine.engine import vocabulary

				fields_trigger = vocabulary.template_trigger(data)  # applies_to, trigger_event, …
				doctype = doctype or fields_trigger.get("doctype")
				data = data["flow_definition"]
				if isinstance(data, str):
					data = _json(data, f"{target}: flow_definition")
				if isinstance(data, dict):
					data = {**data, "trigger": vocabulary.merge_triggers(data.get("trigger"), fields_trigger)}
			label = target
		elif frappe.db.exists("Flow Template", target):
			row = frappe.db.get_value(
				"Flow Template", target, ["flow_definition", "trigger_doctype"], as_dict=True
			)
			data, doctype, label = row.flow_definition, doctype or row.trigger_doctype, f"flow '{target}'"
		else:
			click.secho(f"No file and no Flow Template named '{target}'", fg="red")
			sys.exit(2)
		issues = validate_definition(data, doctype)
		if not issues:
			click.secho(f"{label}: valid", fg="green")
			return
		click.secho(f"{label}: {len(issues)} problem(s)", fg="red")
		for issue in issues:
			click.echo(f"  - {issue}")
		sys.exit(1)


@flow.command("run", help="Start a run of TEMPLATE, optionally on a document")
@click.argument("template")
@click.option("--doctype", help="Reference document type")
@click.option("--name", "docname", help="Reference document name")
@click.option("--input", "input_json", help="Input payload as JSON")
@click.option("--inline/--enqueue", default=True, help="Advance here (default) or hand it to the workers")
@pass_context
def run(context, template, doctype=None, docname=None, input_json=None, inline=True):
	from flow_engine.runtime import runs, store

	with _site(context):
		frappe.flags.flow_engine_inline = inline
		name = runs.start_run(
			template,
			reference_doctype=doctype,
			reference_name=docname,
			source="user",
			input=_json(input_json, "--input"),
		)
		frappe.db.commit()
		record = store.load_run(name)
		click.echo(f"{name}: {record.status}")
		if record.error:
			click.secho(record.error, fg="red")


@flow.command("tick", help="Run one scheduler tick now: reclaim, fire due steps, re-dispatch stale runs")
@click.option("--inline/--enqueue", default=True, help="Fire due steps here (default) or in the workers")
@pass_context
def tick(context, inline=True):
	from flow_engine.runtime import scheduler

	with _site(context):
		frappe.flags.flow_engine_inline = inline
		result = scheduler.tick()
		click.echo(", ".join(f"{key}: {value}" for key, value in result.items()))


@flow.command("complete", help="Complete the parked step STEP of run RUN")
@click.argument("run_name")
@click.argument("step")
@click.option("--result", "result_json", help="Result as JSON")
@pass_context
def complete(context, run_name, step, result_json=None):
	from flow_engine.runtime import runs

	with _site(context):
		frappe.flags.flow_engine_inline = True
		outcome = runs.complete_step(
			run_name, step, result=_json(result_json, "--result"), by="Administrator"
		)
		frappe.db.commit()
		click.echo(
			f"{outcome['run']}: step {step} completed; run {frappe.db.get_value('Flow Run', run_name, 'status')}"
		)


@flow.command("runs", help="List recent runs")
@click.option("--status")
@click.option("--template")
@click.option("--limit", default=20, type=int)
@pass_context
def list_runs(context, status=None, template=None, limit=20):
	with _site(context):
		filters = {key: value for key, value in (("status", status), ("template", template)) if value}
		rows = frappe.get_all(
			"Flow Run",
			filters=filters,
			fields=[
				"name",
				"template",
				"status",
				"reference_doctype",
				"reference_name",
				"started_at",
				"error",
			],
			order_by="creation desc",
			limit=limit,
		)
		if not rows:
			click.echo("no runs")
		for row in rows:
			ref = f"{row.reference_doctype} {row.reference_name}" if row.reference_doctype else "-"
			line = f"{row.name}  {row.status:<9}  {row.template}  {ref}  {row.started_at:%Y-%m-%d %H:%M:%S}"
			click.echo(line)
			if row.error:
				click.echo(f"    {row.error.splitlines()[0][:150]}")


@flow.command("preflight", help="Check that flows can run: scheduler, workers, dormancy, backlog")
@pass_context
def preflight(context):
	from flow_engine.runtime.health import checks

	with _site(context) as site:
		failed = 0
		for check in checks():
			colour = {"ok": "green", "warn": "yellow", "fail": "red"}[check["level"]]
			click.secho(f"[{check['level'].upper():4}] {check['name']}: {check['detail']}", fg=colour)
			failed += check["level"] == "fail"
		click.echo(f"{site}: {'ready' if not failed else f'{failed} problem(s)'}")
		if failed:
			sys.exit(1)


@flow.command("schedules", help="List Flow Schedules: timing, next fire, last outcome")
@click.option("--template")
@click.option("--status", type=click.Choice(["Active", "Paused", "Done", "Invalid"]))
@pass_context
def list_schedules(context, template=None, status=None):
	with _site(context):
		from flow_engine.runtime.schedules import list_schedules as query

		rows = query(template, status)
		if not rows:
			click.echo("no schedules")
		for row in rows:
			timing = (
				f"{row.cron} {row.timezone}" if row.schedule_type == "Recurring" else f"once at {row.run_at}"
			)
			click.echo(
				f"{row.name}  [{row.status}]  {row.template}  {timing}  next: {row.next_fire_at or '-'}  "
				f"last: {row.last_fired_at or '-'}"
			)
			if row.last_error:
				click.echo(f"    {row.last_error[:200]}")


@flow.command("publish", help="Publish the draft of flow TEMPLATE as its next version")
@click.argument("template")
@click.option("--note", help="What changed and why (kept in the version history)")
@pass_context
def publish(context, template, note=None):
	from flow_engine.runtime import publishing

	with _site(context):
		if not frappe.db.exists("Flow Template", template):
			click.secho(f"No Flow Template named '{template}'", fg="red")
			sys.exit(2)
		doc = frappe.get_doc("Flow Template", template)
		if not doc.has_draft:
			click.secho(f"'{template}' has no unpublished changes (version {doc.version} is published)")
			sys.exit(1)
		click.echo(publishing.compare(template, "published", "draft")["summary"])
		result = publishing.publish(template, note=note)
		frappe.db.commit()
		click.secho(f"'{template}': version {result['version']} published", fg="green")


@flow.command("versions", help="Version history of flow TEMPLATE, or the changes between two versions")
@click.argument("template")
@click.option("--diff", "between", nargs=2, help="Two versions to compare (numbers, 'published', 'draft')")
@pass_context
def list_versions(context, template, between=None):
	from flow_engine.runtime import publishing

	with _site(context):
		if between:
			click.echo(publishing.compare(template, between[0], between[1])["summary"])
			return
		for row in publishing.history(template):
			click.echo(
				f"v{row.version}  {row.published_on or ''}  {row.published_by or ''}  {row.note or ''}"
			)
			for line in (row.changes or "").splitlines():
				click.echo(f"    {line}")


@flow.command("rollback", help="Publish version VERSION of flow TEMPLATE again, as its next version")
@click.argument("template")
@click.argument("version", type=int)
@pass_context
def rollback(context, template, version):
	from flow_engine.runtime import publishing

	with _site(context):
		result = publishing.rollback(template, version)
		frappe.db.commit()
		click.secho(
			f"'{template}': version {version} published again as version {result['version']}", fg="green"
		)


@flow.command(
	"consume",
	help="Advance runs within milliseconds of their trigger's commit: a long-lived process beside the "
	"workers (add it to the Procfile or supervisor; see README). Serves the given sites, or all.",
)
@click.option("--max-batches", default=10_000, type=int, help="Exit after this many batches (memory)")
@pass_context
def consume(context, max_batches=10_000):
	from flow_engine.runtime import consumer

	sites = list(context.sites or []) or None
	click.echo(f"flow_engine consumer: serving {', '.join(sites) if sites else 'every site'}")
	consumer.serve(sites, max_batches=max_batches, sites_path=".")


commands = [flow]


def _preload_engine() -> None:
	"""Import what a flow job runs with the commands: `bench worker` imports every app's commands,
	then forks a work horse per job, so each flow job starts with it loaded instead of importing it
	(measured on an ERPNext site: a one-step run's job took ~250 ms in a fresh work horse, ~80 % of it
	importing Frappe's document layer, its doctype controllers and the apps' document hooks; 15 ms
	once they are loaded; see benchmarks/README.md). Never breaks the bench CLI."""
	import importlib
	import sys
	import warnings

	modules = list(PRELOAD)
	if any(arg in WORKER_COMMANDS for arg in sys.argv[1:6]):  # not for every other bench command
		modules += [*PRELOAD_FOR_WORKERS, *_doc_event_modules()]
	with warnings.catch_warnings():
		warnings.simplefilter("ignore")  # (deprecation notices of other apps' imports)
		for module in modules:
			try:
				importlib.import_module(module)
			except Exception:
				pass  # the job imports what it needs itself


def _doc_event_modules() -> list[str]:
	"""The modules of every installed app's `doc_events` handlers (they run on every document write a
	flow makes), read from the apps' hooks without a site."""
	import importlib
	import os

	modules: list[str] = []
	try:
		with open(os.path.join(".", "apps.txt")) as apps_txt:
			apps = [line.strip() for line in apps_txt if line.strip()]
	except OSError:
		return modules
	for app in apps:
		try:
			events = getattr(importlib.import_module(f"{app}.hooks"), "doc_events", None) or {}
		except Exception:
			continue
		for handlers in events.values():
			for methods in (handlers or {}).values():
				for method in [methods] if isinstance(methods, str) else methods or []:
					if isinstance(method, str) and "." in method:
						modules.append(method.rsplit(".", 1)[0])
	return list(dict.fromkeys(modules))


PRELOAD = (
	"flow_engine.runtime.consumer",
	"flow_engine.runtime.runs",
	"flow_engine.runtime.scheduler",
	"flow_engine.runtime.triggers",
	"flow_engine.runtime.lifecycle",
	"flow_engine.runtime.alerts",
	"flow_engine.runtime.approvals",
	"flow_engine.runtime.children",
	"flow_engine.runtime.waits",
	"flow_engine.kinds.registry",
	"flow_engine.kinds.documents",
	"flow_engine.kinds.logic",
)
WORKER_COMMANDS = ("worker", "worker-pool", "consume")
PRELOAD_FOR_WORKERS = (
	# Frappe's document layer as a job's first document write imports it (the worker has not
	# connected to a site, so its database layer is not loaded either)
	"frappe.database.mariadb.database",
	"frappe.model.document",
	"frappe.model.create_new",
	"frappe.model.db_query",
	"frappe.model.delete_doc",
	"frappe.model.mapper",
	"frappe.model.rename_doc",
	"frappe.desk.form.load",
	"frappe.desk.doctype.todo.todo",
	"frappe.desk.doctype.notification_log.notification_log",
	"frappe.core.doctype.version.version",
	"frappe.core.doctype.user_permission.user_permission",
	"frappe.email.doctype.notification.notification",
	"frappe.website.path_resolver",
	"frappe.integrations.utils",
	"frappe.handler",
	"frappe.utils.global_search",
	"frappe.utils.safe_exec",
	"frappe.utils.redis_wrapper",
	"frappe.utils.logger",
	"frappe.realtime",
	"frappe.database.query",
	"frappe.core.doctype.docfield.docfield",
	"frappe.core.doctype.docperm.docperm",
	"frappe.core.doctype.has_role.has_role",
	"frappe.core.doctype.system_settings.system_settings",
)
_preload_engine()
