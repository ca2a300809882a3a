"""The kind catalog: one description per step kind, shared by the editor and server validation.

A `KindSpec` says what a kind is called, how it looks in the editor, which payload fields it takes
(field descriptors drive both the editor's step form and required-field validation), whether it
branches, and whether its effect leaves the ERP (then it is retried and carries an idempotency key).
Handlers live in `flow_engine.kinds`; other apps add kinds through the `flow_engine_kinds` hook.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FIELD_TYPES = (
	"data",  # one line of text (templates allowed)
	"text",  # several lines of text (templates allowed)
	"int",
	"float",
	"check",
	"select",  # one of `options`
	"link",  # a document name of doctype `options` (or of the doctype in field `options_from`)
	"doctype",  # a DocType name
	"fieldname",  # a field of the doctype named by `doctype_from` (or of the trigger doctype)
	"json",  # any JSON value
	"fields",  # {fieldname: value template} for a document
	"list",  # list of text values
	"headers",  # {header: value template}
	"condition",  # a {field, op, value} / all / any condition
	"variables",  # {name: value template}
	"password",  # a secret: a {{secrets.NAME}} reference to a Flow Secret (a clear value is moved there on save)
	"cases",  # list of {name, condition}: named branches (switch cases, inclusive branches)
)
ON_ERROR = ("fail", "continue", "branch")  # a step's `on_error`; "branch" gives it an `error` branch
ERROR_BRANCH = "error"
DEFAULT_CASE = "default"


@dataclass(frozen=True)
class FieldSpec:
	name: str
	label: str
	type: str = "data"
	required: bool = False
	options: tuple[str, ...] | str | None = None
	default: Any = None
	description: str = ""
	when: Mapping[str, tuple] | None = None  # shown and required only when other fields match
	templated: bool = True

	def applies(self, payload: Mapping) -> bool:
		if not self.when:
			return True
		for other, allowed in self.when.items():
			if payload.get(other) not in allowed:
				return False
		return True

	def as_dict(self) -> dict:
		return {
			"name": self.name,
			"label": self.label,
			"type": self.type,
			"required": self.required,
			"options": list(self.options) if isinstance(self.options, tuple) else self.options,
			"default": self.default,
			"description": self.description,
			"when": {key: list(values) for key, values in (self.when or {}).items()} or None,
			"templated": self.templated,
		}


@dataclass(frozen=True)
class KindSpec:
	name: str
	label: str
	description: str = ""
	icon: str = "es-line-settings"
	color: str = "gray"
	category: str = "Actions"
	fields: tuple[FieldSpec, ...] = ()
	branches: tuple[str, ...] = ()
	external: bool = False
	default_retry: Mapping[str, Any] = field(default_factory=dict)
	requires_app: str | None = None
	aliases: tuple[str, ...] = ()
	pure: bool = False  # computes only (no database writes): runs without a savepoint
	check: Callable[[Mapping], Iterable[tuple[str, str]]] | None = None
	# branches named by the step's payload (switch cases, inclusive branches), instead of `branches`
	branches_from: Callable[[Mapping], Iterable[str]] | None = None

	def defaults(self) -> dict:
		return {spec.name: spec.default for spec in self.fields if spec.default is not None}

	def as_dict(self) -> dict:
		return {
			"name": self.name,
			"label": self.label,
			"description": self.description,
			"icon": self.icon,
			"color": self.color,
			"category": self.category,
			"fields": [spec.as_dict() for spec in self.fields],
			"branches": list(self.branches),
			"dynamic_branches": self.branches_from is not None,
			"external": self.external,
			"default_retry": dict(self.default_retry),
			"requires_app": self.requires_app,
			"aliases": list(self.aliases),
			"pure": self.pure,
		}


def missing_required(spec: KindSpec, payload: Mapping) -> list[tuple[str, str]]:
	"""(field, message) for each required payload field that is absent or empty."""
	problems: list[tuple[str, str]] = []
	merged = {**spec.defaults(), **payload}
	for field_spec in spec.fields:
		if not field_spec.required or not field_spec.applies(merged):
			continue
		value = payload.get(field_spec.name)
		if value is None or value == "" or value == [] or value == {}:
			problems.append((field_spec.name, f"'{field_spec.label}' is required"))
		elif field_spec.type == "select" and isinstance(field_spec.options, tuple):
			if value not in field_spec.options and "{{" not in str(value):
				problems.append((field_spec.name, f"must be one of: {', '.join(field_spec.options)}"))
	for field_spec in spec.fields:
		value = payload.get(field_spec.name)
		if value in (None, ""):
			continue
		if field_spec.type in ("fields", "headers", "variables") and not isinstance(value, Mapping):
			problems.append((field_spec.name, "must be an object of name → value"))
		elif field_spec.type == "list" and not isinstance(value, list | str):
			problems.append((field_spec.name, "must be a list or a comma-separated text"))
		elif field_spec.type in ("int", "float") and not _is_number_like(value):
			problems.append((field_spec.name, "must be a number"))
		elif field_spec.type == "check" and not isinstance(value, bool | int) and "{{" not in str(value):
			problems.append((field_spec.name, "must be true or false"))
	if spec.check is not None:
		problems += list(spec.check(payload))
	return problems


def _is_number_like(value: Any) -> bool:
	if isinstance(value, bool):
		return False
	if isinstance(value, int | float):
		return True
	if isinstance(value, str):
		if "{{" in value:
			return True
		try:
			float(value)
			return True
		except ValueError:
			return False
	return False


# ---------------------------------------------------------------- built-in kinds


def _check_notify(payload: Mapping) -> Iterable[tuple[str, str]]:
	channel = payload.get("channel") or "email"
	if channel == "email" and not payload.get("email_template"):
		for name in ("subject", "message"):
			if not payload.get(name):
				yield (name, f"is required for email unless an Email Template is chosen ('{name}')")
	if channel == "sms" and not payload.get("email_template") and not payload.get("message"):
		yield ("message", "is required for SMS unless a message template (an Email Template) is chosen")


def _check_webhook(payload: Mapping) -> Iterable[tuple[str, str]]:
	url = payload.get("url")
	if isinstance(url, str) and url and "{{" not in url.split("/")[0]:
		if not url.lower().startswith(("http://", "https://", "{{")):
			yield ("url", "must start with http:// or https://")
	timeout = payload.get("timeout")
	if timeout not in (None, "") and _is_number_like(timeout) and "{{" not in str(timeout):
		if not 0 < float(timeout) <= 300:
			yield ("timeout", "must be between 0 and 300 seconds")


def _check_condition(payload: Mapping) -> Iterable[tuple[str, str]]:
	from flow_engine.engine.conditions import check_condition

	condition = payload.get("condition")
	if condition is None and ("field" in payload or "all" in payload or "any" in payload):
		condition = {
			key: value for key, value in payload.items() if key in ("field", "op", "value", "all", "any")
		}
	if condition in (None, {}, []):
		yield ("condition", "is required: a {field, op, value} test or an 'all'/'any' group")
		return
	for path, message in check_condition(condition, allow_jsonlogic=False):
		yield ((f"condition.{path}" if path else "condition"), message)


def _named_conditions(payload: Mapping, key: str) -> list[Mapping]:
	"""The {name, condition} entries of a switch's `cases` / an inclusive's `branches` (others ignored)."""
	entries = payload.get(key)
	if not isinstance(entries, list):
		return []
	return [entry for entry in entries if isinstance(entry, Mapping)]


def case_names(payload: Mapping, key: str = "cases") -> list[str]:
	"""Names of the well-formed entries, in order, each once."""
	names: list[str] = []
	for entry in _named_conditions(payload, key):
		name = entry.get("name")
		if isinstance(name, str) and name.strip() and name not in names:
			names.append(name)
	return names


def default_case(payload: Mapping) -> str:
	"""The branch a switch takes when no case holds."""
	name = payload.get("default")
	return name if isinstance(name, str) and name.strip() else DEFAULT_CASE


def _check_named_conditions(payload: Mapping, key: str, noun: str) -> Iterable[tuple[str, str]]:
	from flow_engine.engine.conditions import check_condition

	entries = payload.get(key)
	if entries in (None, "", []):
		return  # reported as required
	if not isinstance(entries, list):
		yield (key, f'must be a list of {{"name": ..., "condition": ...}} {noun}s')
		return
	seen: dict[str, int] = {}
	for index, entry in enumerate(entries):
		where = f"{key}[{index}]"
		if not isinstance(entry, Mapping):
			yield (where, f'{noun} #{index + 1} must be an object {{"name": ..., "condition": ...}}')
			continue
		for extra in sorted(set(entry) - {"name", "condition", "label"}, key=str):
			yield (f"{where}.{extra}", f"unknown key {extra!r}; a {noun} has: name, condition")
		name = entry.get("name")
		if not isinstance(name, str) or not name.strip():
			yield (f"{where}.name", f"{noun} #{index + 1} needs a name: it is the branch its steps hang on")
		elif name == ERROR_BRANCH:
			yield (
				f"{where}.name",
				f"'{ERROR_BRANCH}' is reserved for the on_error branch; rename the {noun}",
			)
		elif name in seen:
			yield (
				f"{where}.name",
				f"'{name}' is already the name of {noun} #{seen[name] + 1}; {noun} names must be unique",
			)
		else:
			seen[name] = index
		condition = entry.get("condition")
		if condition in (None, {}, [], ""):
			yield (f"{where}.condition", "is required: a {field, op, value} test or an 'all'/'any' group")
			continue
		for path, message in check_condition(condition, allow_jsonlogic=False):
			yield (f"{where}.condition" + (f".{path}" if path else ""), message)


def _check_switch(payload: Mapping) -> Iterable[tuple[str, str]]:
	yield from _check_named_conditions(payload, "cases", "case")
	default = payload.get("default")
	if default not in (None, "") and not isinstance(default, str):
		yield ("default", "must be the name of the branch taken when no case holds")
	elif default_case(payload) in case_names(payload):
		yield (
			"default",
			f"'{default_case(payload)}' is also a case name; the default branch needs its own name",
		)
	elif default_case(payload) == ERROR_BRANCH:
		yield ("default", f"'{ERROR_BRANCH}' is reserved for the on_error branch")


def _check_inclusive(payload: Mapping) -> Iterable[tuple[str, str]]:
	yield from _check_named_conditions(payload, "branches", "branch")


WAIT_EVENTS = (  # document events a wait_for step can wait for (on_change: any change, db_set too)
	"after_insert",
	"on_update",
	"on_submit",
	"on_cancel",
	"on_trash",
	"on_update_after_submit",
	"on_change",
)
WAIT_BRANCHES = ("event", "timeout")
_FILTER_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def _check_wait_for(payload: Mapping) -> Iterable[tuple[str, str]]:
	from flow_engine.engine.conditions import check_condition

	doctype, custom = payload.get("doctype"), payload.get("custom_event")
	if doctype and custom:
		yield (
			"custom_event",
			"give either a document to wait for (doctype + event) or a custom_event, not both",
		)
	elif not doctype and not custom:
		yield (
			"doctype",
			"name what to wait for: a document type and event (e.g. Payment Entry, on_submit), or a "
			"custom_event with a correlation_key",
		)
	if custom:
		if not isinstance(custom, str) or "{{" in custom:
			yield ("custom_event", "must be the event's name as text, not a template")
		if payload.get("correlation_key") in (None, ""):
			yield (
				"correlation_key",
				"is required with a custom_event: the value (e.g. {{doc.name}}) an event's payload must carry "
				"in 'correlation_key' to resume this step",
			)
		for name in ("event", "filters", "condition"):
			if payload.get(name) not in (None, "", {}, []):
				yield (name, "applies to document waits (doctype + event), not to a custom_event")
	if doctype:
		if not isinstance(doctype, str) or "{{" in doctype:
			yield ("doctype", "must be a DocType name, not a template")
		event = payload.get("event")
		if event in (None, ""):
			yield ("event", f"is required: the document event to wait for ({', '.join(WAIT_EVENTS)})")
		elif event not in WAIT_EVENTS:
			yield ("event", f"{event!r} is not a document event; use one of: {', '.join(WAIT_EVENTS)}")
		if payload.get("correlation_key") not in (None, ""):
			yield ("correlation_key", "applies to a custom_event only; match documents with filters")
	filters = payload.get("filters")
	if isinstance(filters, Mapping):
		for key, value in filters.items():
			if not isinstance(key, str) or not _FILTER_KEY.match(key):
				yield (
					f"filters.{key}",
					"must be a field name, or table.field for a child table (e.g. references.reference_name)",
				)
			elif isinstance(value, Mapping | list) or value is None:
				yield (
					f"filters.{key}",
					"must be one value (text, a number or a template) the field must equal",
				)
	condition = payload.get("condition")
	if condition not in (None, {}, [], ""):
		for path, message in check_condition(condition, allow_jsonlogic=False):
			yield ((f"condition.{path}" if path else "condition"), message)
	hours = payload.get("timeout_hours")
	if hours not in (None, "") and _is_number_like(hours) and "{{" not in str(hours) and float(hours) <= 0:
		yield (
			"timeout_hours",
			"must be a positive number of hours (leave it empty to wait without a timeout)",
		)


def _check_set_variables(payload: Mapping) -> Iterable[tuple[str, str]]:
	variables = payload.get("variables")
	if isinstance(variables, Mapping):
		for name in variables:
			if not str(name).isidentifier():
				yield ("variables", f"variable name {name!r} must be a plain identifier")


APPROVAL_HOURS = ("remind_after_hours", "escalate_after_hours", "timeout_hours")


def _check_approval(payload: Mapping) -> Iterable[tuple[str, str]]:
	if not any(payload.get(name) not in (None, "", []) for name in ("approvers", "role", "approver")):
		yield (
			"approvers",
			"name who decides: approvers (users), a role, or an approver template such as {{doc.owner}}",
		)
	for name in APPROVAL_HOURS:
		value = payload.get(name)
		if value in (None, "") or not _is_number_like(value) or "{{" in str(value):
			continue
		if float(value) <= 0:
			yield (name, "must be a positive number of hours (leave it empty for none)")
	if payload.get("escalate_after_hours") not in (None, "") and not payload.get("escalate_to"):
		yield ("escalate_to", "name the user or role the approval is escalated to after escalate_after_hours")
	if payload.get("escalate_to") and payload.get("escalate_after_hours") in (None, ""):
		yield ("escalate_after_hours", "give the hours after which the approval is escalated to escalate_to")


def _check_assign(payload: Mapping) -> Iterable[tuple[str, str]]:
	if not payload.get("assign_to") and not payload.get("role") and not payload.get("group"):
		yield ("assign_to", "give a user (or list of users), a role or a User Group to assign to")


BUILTIN_KINDS: tuple[KindSpec, ...] = (
	KindSpec(
		name="create_doc",
		label="Create document",
		description="Insert a document of any doctype; the result carries its name.",
		icon="add",
		color="green",
		category="Documents",
		fields=(
			FieldSpec("doctype", "Document type", "doctype", required=True, templated=False),
			FieldSpec(
				"fields", "Field values", "fields", required=True, description="field → value template"
			),
			FieldSpec("submit", "Submit after insert", "check", default=False),
			FieldSpec(
				"link_to_trigger",
				"Link back to trigger document",
				"check",
				default=False,
				description="Set reference_type/reference_name (or the matching Dynamic Link) to the trigger doc",
			),
			FieldSpec(
				"merge_key",
				"Merge key",
				"data",
				description="reuse the open document created with the same key instead of creating another",
			),
		),
	),
	KindSpec(
		name="update_doc",
		label="Update document",
		description="Set fields on the trigger document or on another one named by template.",
		icon="edit",
		color="blue",
		category="Documents",
		fields=(
			FieldSpec("doctype", "Document type", "doctype", description="empty: the trigger document"),
			FieldSpec("name", "Document name", "data", description="required when a document type is given"),
			FieldSpec("fields", "Field values", "fields", required=True),
		),
		aliases=("erp_update",),
		check=lambda payload: (
			[("name", "is required when a document type is given")]
			if payload.get("doctype") and not payload.get("name")
			else []
		),
	),
	KindSpec(
		name="notify",
		label="Notify",
		description="Email (queue, Email Templates), SMS (SMS Settings) or a Desk notification.",
		icon="mail",
		color="orange",
		category="Messages",
		fields=(
			FieldSpec(
				"channel",
				"Channel",
				"select",
				required=True,
				options=("email", "sms", "system"),
				default="email",
			),
			FieldSpec(
				"recipients",
				"Recipients",
				"list",
				required=True,
				description="emails, users, phone numbers or templates such as {{doc.contact_email}}",
			),
			FieldSpec(
				"email_template",
				"Email Template",
				"link",
				options="Email Template",
				when={"channel": ("email", "sms")},
				description="email: subject and body; SMS: its response as plain text is the message",
			),
			FieldSpec("subject", "Subject", "data", when={"channel": ("email", "system")}),
			FieldSpec("message", "Message", "text"),
			FieldSpec("cc", "CC", "list", when={"channel": ("email",)}),
			FieldSpec(
				"attach_document_print", "Attach document print", "check", when={"channel": ("email",)}
			),
		),
		external=True,
		default_retry={"max_attempts": 3, "backoff_seconds": 60},
		check=_check_notify,
	),
	KindSpec(
		name="webhook",
		label="Webhook",
		description="HTTP call with a body template, timeout, HMAC signature and idempotency key.",
		icon="link-url",
		color="purple",
		category="Integrations",
		fields=(
			FieldSpec("url", "URL", "data", required=True),
			FieldSpec(
				"method",
				"Method",
				"select",
				required=True,
				options=("POST", "PUT", "PATCH", "GET", "DELETE"),
				default="POST",
			),
			FieldSpec("headers", "Headers", "headers"),
			FieldSpec("body", "Body", "json", description="JSON body template (objects, lists and strings)"),
			FieldSpec("timeout", "Timeout (seconds)", "float", default=10),
			FieldSpec(
				"secret",
				"Signing secret",
				"password",
				templated=False,
				description="signs the body (header X-Flow-Signature: sha256=<hex HMAC>); {{secrets.NAME}} of a "
				"Flow Secret — a value typed here is moved into one when the flow is saved",
			),
			FieldSpec("expect_json", "Parse JSON response", "check", default=True),
		),
		external=True,
		default_retry={"max_attempts": 3, "backoff_seconds": 30},
		check=_check_webhook,
	),
	KindSpec(
		name="condition",
		label="Condition",
		description="Test values; the flow continues in the 'yes' or the 'no' branch.",
		icon="branch",
		color="yellow",
		category="Logic",
		fields=(FieldSpec("condition", "Condition", "condition", required=True, templated=False),),
		branches=("yes", "no"),
		check=_check_condition,
		pure=True,
	),
	KindSpec(
		name="switch",
		label="Switch",
		description="Named cases tested in order: the flow continues in the first case whose condition "
		"holds, else in the default branch.",
		icon="branch",
		color="yellow",
		category="Logic",
		fields=(
			FieldSpec(
				"cases",
				"Cases",
				"cases",
				required=True,
				templated=False,
				description="each {name, condition}; its name is the branch its steps hang on",
			),
			FieldSpec(
				"default",
				"Default branch",
				"data",
				default=DEFAULT_CASE,
				templated=False,
				description="taken when no case holds",
			),
		),
		branches_from=lambda payload: (*case_names(payload), default_case(payload)),
		check=_check_switch,
		pure=True,
	),
	KindSpec(
		name="inclusive",
		label="Inclusive branches",
		description="Every branch whose own condition holds runs (in parallel); none, one or several.",
		icon="branch",
		color="yellow",
		category="Logic",
		fields=(
			FieldSpec(
				"branches",
				"Branches",
				"cases",
				required=True,
				templated=False,
				description="each {name, condition}; its name is the branch its steps hang on",
			),
		),
		branches_from=lambda payload: tuple(case_names(payload, "branches")),
		check=_check_inclusive,
		pure=True,
	),
	KindSpec(
		name="wait_for",
		label="Wait for event",
		description="Wait until a document event matches (a Payment Entry against this invoice is submitted, "
		"this Quotation turns Ordered) or a custom event with the same correlation key is raised; "
		"continues in the event or the timeout branch.",
		icon="es-line-time",
		color="orange",
		category="Logic",
		fields=(
			FieldSpec(
				"doctype",
				"Document type",
				"doctype",
				templated=False,
				description="the document whose event resumes the step (or use a custom event)",
			),
			FieldSpec("event", "Event", "select", options=WAIT_EVENTS, default=None),
			FieldSpec(
				"filters",
				"Filters",
				"fields",
				description="field → value the document must have, rendered when the step starts waiting "
				"(e.g. party: {{doc.customer}}; a child table's field as references.reference_name)",
			),
			FieldSpec(
				"condition",
				"Condition",
				"condition",
				templated=False,
				description="a test on the event's document, e.g. status == Ordered",
			),
			FieldSpec("custom_event", "Custom event", "data", templated=False),
			FieldSpec(
				"correlation_key",
				"Correlation key",
				"data",
				description="with a custom event: the value its payload's correlation_key must equal "
				"(e.g. {{doc.name}})",
			),
			FieldSpec(
				"timeout_hours",
				"Time out after (hours)",
				"float",
				description="then the timeout branch runs (empty: wait until the run ends)",
			),
		),
		branches=WAIT_BRANCHES,
		check=_check_wait_for,
	),
	KindSpec(
		name="wait",
		label="Wait",
		description="Does nothing; give it an after_delay or on_date trigger to pause the flow.",
		icon="es-line-time",
		color="gray",
		category="Logic",
		pure=True,
	),
	KindSpec(
		name="assign",
		label="Assign",
		description="Assign the document to users, a User Group's members or a role's least busy user (ToDo).",
		icon="assign",
		color="cyan",
		category="Documents",
		fields=(
			FieldSpec("assign_to", "Users", "list"),
			FieldSpec("role", "Role", "link", options="Role"),
			FieldSpec("group", "User Group", "link", options="User Group", description="all its members"),
			FieldSpec(
				"role_strategy",
				"Pick from role",
				"select",
				options=("least_busy", "all"),
				default="least_busy",
			),
			FieldSpec("description", "Description", "text"),
			FieldSpec("date", "Due date", "data"),
			FieldSpec("priority", "Priority", "select", options=("Low", "Medium", "High"), default="Medium"),
			FieldSpec("doctype", "Document type", "doctype", description="empty: the trigger document"),
			FieldSpec("name", "Document name", "data"),
		),
		check=_check_assign,
	),
	KindSpec(
		name="comment",
		label="Comment",
		description="Add a comment to the trigger document (or another one).",
		icon="comment",
		color="gray",
		category="Documents",
		fields=(
			FieldSpec("text", "Comment", "text", required=True),
			FieldSpec("doctype", "Document type", "doctype", description="empty: the trigger document"),
			FieldSpec("name", "Document name", "data"),
		),
	),
	KindSpec(
		name="set_variables",
		label="Set variables",
		description="Compute run variables from templates; later steps read {{variables.name}}.",
		icon="setting-gear",
		color="pink",
		category="Logic",
		fields=(FieldSpec("variables", "Variables", "variables", required=True),),
		check=_check_set_variables,
		pure=True,
	),
	KindSpec(
		name="subscription_activate",
		label="Activate subscription",
		description="ERPNext: activate or resume a Subscription.",
		icon="refresh",
		color="green",
		category="ERPNext",
		fields=(
			FieldSpec("subscription", "Subscription", "link", required=True, options="Subscription"),
			FieldSpec("posting_date", "Resume from", "data"),
		),
		requires_app="erpnext",
	),
	KindSpec(
		name="issue",
		label="Open support ticket",
		description="An ERPNext Issue (Helpdesk's HD Ticket when that app is installed), for the run's customer.",
		icon="support",
		color="orange",
		category="ERPNext",
		fields=(
			FieldSpec("subject", "Subject", "data", required=True),
			FieldSpec("description", "Description", "text"),
			FieldSpec("priority", "Priority", "data", description="an Issue Priority (HD Ticket Priority)"),
			FieldSpec("issue_type", "Type", "data", description="an Issue Type (HD Ticket Type)"),
			FieldSpec(
				"customer",
				"Customer",
				"data",
				description="empty: the customer of the trigger document, when there is one",
			),
		),
	),
	KindSpec(
		name="dispatch_job",
		label="Dispatch field job",
		description="A field job in the site's job doctype (Flow Dispatch Settings; default ERPNext Task, "
		"ToDo without ERPNext), linked to the trigger document.",
		icon="tool",
		color="green",
		category="ERPNext",
		fields=(
			FieldSpec("subject", "Subject", "data", required=True),
			FieldSpec("job_type", "Job type", "data", description="Task: a Task Type"),
			FieldSpec("priority", "Priority", "data", description="Low, Medium, High (Task: also Urgent)"),
			FieldSpec("duration_h", "Expected duration (hours)", "data"),
			FieldSpec(
				"merge_key",
				"Merge key",
				"data",
				description="reuse the open job created with the same key instead of creating another",
			),
			FieldSpec(
				"on_open_webhook",
				"Webhook when opened",
				"data",
				description="URL called (POST, JSON) once the job is created",
			),
			FieldSpec(
				"on_close_webhook",
				"Webhook when completed",
				"data",
				description="URL called (POST, JSON) once the job is completed",
			),
		),
	),
	KindSpec(
		name="approval",
		label="Approval",
		description="Ask people to approve or reject (My approvals in Desk, optional email links); "
		"continues in the approved, rejected or timed_out branch.",
		icon="es-line-success",
		color="green",
		category="People",
		fields=(
			FieldSpec(
				"approvers", "Approvers", "list", description="users (or their emails); any one decides"
			),
			FieldSpec(
				"role", "Role", "link", options="Role", description="every enabled user with this role"
			),
			FieldSpec(
				"approver",
				"Approver (template)",
				"data",
				description="a user named by template, e.g. {{doc.owner}}",
			),
			FieldSpec("subject", "Subject", "data", description="empty: Approve <document>"),
			FieldSpec("message", "Message", "text"),
			FieldSpec(
				"send_email",
				"Email the approvers",
				"check",
				default=False,
				description="with one-click Approve / Reject links",
			),
			FieldSpec(
				"remind_after_hours",
				"Remind after (hours)",
				"float",
				description="and again every as many hours while pending",
			),
			FieldSpec("escalate_after_hours", "Escalate after (hours)", "float"),
			FieldSpec(
				"escalate_to",
				"Escalate to",
				"data",
				description="a user or a role; they become approvers too",
			),
			FieldSpec(
				"timeout_hours",
				"Time out after (hours)",
				"float",
				description="then the timed_out branch runs",
			),
		),
		branches=("approved", "rejected", "timed_out"),
		check=_check_approval,
	),
	KindSpec(
		name="call_flow",
		label="Call flow",
		description="Start another flow as a child run with mapped input; wait for its result or go on at once.",
		icon="es-line-link",
		color="purple",
		category="Flows",
		fields=(
			FieldSpec("flow", "Flow", "link", required=True, options="Flow Template"),
			FieldSpec(
				"input",
				"Input",
				"json",
				description='the child run\'s input, values templated: {"order": "{{doc.name}}"}',
			),
			FieldSpec(
				"wait",
				"Wait for it",
				"check",
				default=True,
				description="wait until the child run ends (its variables are the result; its failure fails "
				"this step); off: continue at once",
			),
		),
	),
	KindSpec(
		name="for_each",
		label="For each",
		description="Repeat the steps of its 'each' branch for every item of a list or every matching "
		"document, as child runs; results are collected in item order.",
		icon="es-line-reload",
		color="cyan",
		category="Flows",
		fields=(
			FieldSpec(
				"items",
				"Items",
				"json",
				required=True,
				description="a list template ({{doc.items}}, {{steps.s1.result.rows}}, {{input.lines}}) or "
				'documents {"doctype": "Task", "filters": {"status": "Open"}, "limit": 100}; the body reads '
				"{{item}}, {{item.item_code}} and {{item_index}}",
			),
			FieldSpec("concurrency", "At most at once", "int", default=5),
			FieldSpec(
				"on_item_error",
				"When an item fails",
				"select",
				options=("stop", "continue"),
				default="stop",
				description="stop: the step fails at the first failed item; continue: it completes and lists "
				"the failed items",
			),
		),
		branches=("each",),
	),
)


class Catalog:
	"""Kinds by name (aliases resolve to their kind)."""

	def __init__(self, kinds: Iterable[KindSpec] = BUILTIN_KINDS):
		self._kinds: dict[str, KindSpec] = {}
		self._aliases: dict[str, str] = {}
		for spec in kinds:
			self.add(spec)

	def add(self, spec: KindSpec) -> None:
		self._kinds[spec.name] = spec
		for alias in spec.aliases:
			self._aliases[alias] = spec.name

	def resolve(self, name: str) -> str:
		return self._aliases.get(name, name)

	def get(self, name: Any) -> KindSpec | None:
		if not isinstance(name, str):
			return None
		return self._kinds.get(self.resolve(name))

	def names(self) -> list[str]:
		return sorted(self._kinds)

	def __contains__(self, name: object) -> bool:
		return isinstance(name, str) and self.resolve(name) in self._kinds

	def __iter__(self):
		return iter(self._kinds.values())

	def as_list(self) -> list[dict]:
		return [spec.as_dict() for spec in self._kinds.values()]

	def branches_for(self, step_raw: Any) -> tuple[str, ...]:
		"""The branches a step (raw definition data) can take: its kind's static `branches`, or those its
		payload names (switch cases + default, inclusive branches), and `error` when on_error is "branch"."""
		if not isinstance(step_raw, Mapping):
			return ()
		spec = self.get(step_raw.get("kind"))
		names: tuple[str, ...] = ()
		if spec is not None:
			if spec.branches_from is not None:
				payload = step_raw.get("payload")
				try:
					names = tuple(spec.branches_from(payload if isinstance(payload, Mapping) else {}))
				except Exception:  # a malformed payload is reported by the kind's check
					names = ()
			else:
				names = tuple(spec.branches)
		if step_raw.get("on_error") == "branch" and ERROR_BRANCH not in names:
			names = (*names, ERROR_BRANCH)
		return names


DEFAULT_CATALOG = Catalog()


def branches_for(step_raw: Any, catalog: Catalog | None = None) -> tuple[str, ...]:
	"""`Catalog.branches_for` on the built-in catalog (or the one given)."""
	return (catalog or DEFAULT_CATALOG).branches_for(step_raw)
