"""Run identity: which user a flow's steps act as, who may choose it, and what that user may do.

Rules (issue 10):

- Every flow has a Run As user. By default it is the user who last changed the flow's behaviour
  (definition, trigger, payload schema) or activated it; a flow never runs as Administrator unless
  Administrator (or a System Manager) chose that.
- Only a System Manager may set Run As to another user than themselves. This is checked here, in
  the controller, so every write path obeys it (Desk, REST, the editor, imports, duplicates), even
  with `ignore_permissions`; the field's permlevel 1 only makes Desk show it read-only.
- Steps act with the Run As user's permissions: the kinds check before acting (`require`,
  `require_fields`) and a save checks what is known statically (`step_issues`): refused for a
  Flow Manager, a warning for a System Manager.
- Seeded system flows install with no Run As; activating one sets it (see `on_validate`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import frappe
from frappe import _
from frappe.utils import cint, now_datetime

from flow_engine.engine import definition as definition_language
from flow_engine.engine.errors import DefinitionError, Issue
from flow_engine.kinds.base import STANDARD_FIELDS, StepFailed
from flow_engine.runtime import recent

SYSTEM_MANAGER = "System Manager"

# what a document kind needs on its target: (payload key of the doctype, doctype-level right)
_DOC_KINDS = {"create_doc": "create", "update_doc": "write", "comment": "read", "assign": "read"}
_VERBS = {
	"create": "create",
	"write": "write",
	"read": "read",
	"submit": "submit",
	"email": "send email about",
	"print": "print",
}


class RunAsError(frappe.ValidationError):
	"""A run cannot start its steps: the flow has no usable Run As user."""


class RunAsNotAllowed(frappe.PermissionError):
	"""Someone who is not a System Manager tried to make a flow run as another user."""


class StepNotPermitted(frappe.PermissionError):
	"""A save refused: the Run As user may not do what a step does (issues in doc.flags.run_as_issues)."""


def is_system_manager(user: str | None = None) -> bool:
	user = user or frappe.session.user
	return user == "Administrator" or SYSTEM_MANAGER in frappe.get_roles(user)


# ---------------------------------------------------------------------------------------- run time


RUN_AS = "run_as"  # (runtime/recent.py)
RUN_AS_SECONDS = 1.0  # how long a process trusts a flow's Run As reading (a run's every advance asks)


def run_as_recent(template: str) -> str:
	"""`run_as_for`, read at most once a second per flow and process: a job advancing many runs of a
	flow reads it once. Saving a user or a flow here forgets the readings (`forget_run_as`); a user
	disabled in another process stops that flow's runs within the second."""
	return recent.read(RUN_AS, template, RUN_AS_SECONDS, run_as_for)


def forget_run_as(doc=None, method=None) -> None:
	"""A user (enabled, roles) or a flow changed: read Run As again (User on_change, clear_caches)."""
	recent.forget(RUN_AS)


def run_as_for(template: str) -> str:
	"""The user a run of `template` acts as; RunAsError (with what to do) when there is none usable."""
	row = frappe.db.sql(
		"""select t.run_as, u.name, u.enabled from `tabFlow Template` t
		left join `tabUser` u on u.name = t.run_as where t.name = %s""",
		(template,),
	)
	if not row:
		raise RunAsError(_("Flow '{0}' does not exist").format(template))
	run_as, found, enabled = row[0]
	if not run_as:
		raise RunAsError(
			_("Flow '{0}' has no Run As user: open it and set one (System Manager) or re-activate it").format(
				template
			)
		)
	if not found:
		raise RunAsError(
			_(
				"Run As user '{0}' of flow '{1}' does not exist: a System Manager must set another "
				"Run As user on the flow, or re-activate it to run it as yourself"
			).format(run_as, template)
		)
	if not cint(enabled):
		raise RunAsError(
			_(
				"Run As user '{0}' of flow '{1}' is disabled: enable the user, or have a System Manager set "
				"another Run As user on the flow, or re-activate it to run it as yourself"
			).format(run_as, template)
		)
	return run_as


def require(ptype: str, doctype: str, doc=None, *, why: str | None = None, user: str | None = None) -> None:
	"""StepFailed unless the acting user has `ptype` on `doc` (or on `doctype` when doc is None).

	The same check a Desk action by that user meets (role permissions, user permissions, sharing,
	the doctype's has_permission hook), made before acting so the error says who may not do what.
	"""
	user = user or frappe.session.user
	if user == "Administrator":
		return
	if frappe.has_permission(doctype, ptype, doc=doc, user=user):
		return
	if isinstance(doc, str):
		target = f"{doctype} '{doc}'"
	elif doc is not None and not doc.is_new():
		target = f"{doctype} '{doc.name}'"
	else:
		target = doctype
	message = _("Run As '{0}' may not {1} {2}").format(user, _VERBS.get(ptype, ptype), target)
	raise StepFailed(message + (f" ({why})" if why else ""))


def require_fields(doctype: str, fieldnames: Iterable[str], *, user: str | None = None) -> None:
	"""StepFailed when a field to be written sits at a permlevel the acting user may not write.

	Frappe would silently drop such values (Document.validate_higher_perm_levels); a flow says so.
	"""
	user = user or frappe.session.user
	denied = denied_fields(doctype, fieldnames, user)
	if denied:
		raise StepFailed(
			"; ".join(
				_("Run As '{0}' may not write field '{1}' of {2}").format(user, field, doctype)
				for field in denied
			)
		)


def denied_fields(doctype: str, fieldnames: Iterable[str], user: str) -> list[str]:
	"""The fields among `fieldnames` whose permlevel `user` has no write access to."""
	if user == "Administrator":
		return []
	meta = frappe.get_meta(doctype)
	levels = None
	denied = []
	for fieldname in fieldnames:
		df = meta.get_field(fieldname) if fieldname not in STANDARD_FIELDS else None
		if df is None or not cint(df.permlevel):
			continue
		if levels is None:
			levels = write_levels(doctype, user)
		if cint(df.permlevel) not in levels:
			denied.append(fieldname)
	return denied


def write_levels(doctype: str, user: str) -> set[int]:
	"""Permlevels `user` may write on `doctype` (as Document.get_permlevel_access does for the session)."""
	roles = set(frappe.get_roles(user))
	return {
		cint(perm.permlevel)
		for perm in frappe.get_meta(doctype).permissions
		if perm.role in roles and perm.get("write")
	}


# ------------------------------------------------------------------------------------ flow saves


def on_validate(doc) -> None:
	"""Flow Template.validate (after the definition is normalised): set and guard Run As."""
	if frappe.flags.flow_engine_seeding:
		return  # seeded flows install inactive with no Run As; activating one sets it
	user = frappe.session.user
	manager = is_system_manager(user)
	before = doc.get_doc_before_save()
	old = (before.run_as if before else None) or None
	requested = doc.run_as or None
	explicit = requested is not None and requested != old
	if explicit:
		check_may_set(requested, doc.template_name or doc.name)
		_check_usable(requested, doc)
	behaviour = behaviour_changed(doc, before)
	if behaviour:
		doc.last_changed_by = user
		doc.last_changed_on = now_datetime()
		if not explicit and (not manager or not doc.run_as):
			doc.run_as = user
	elif not doc.run_as and old:
		doc.run_as = user  # cleared: runs as whoever cleared it, never silently as nobody
	if doc.run_as and (behaviour or doc.run_as != old):
		_check_steps(doc, manager)


def check_draft(doc) -> None:
	"""A draft's steps (in `doc.flow_definition` while validating), checked against the user a publish
	by the session user would make the flow run as; Run As itself does not change until then."""
	if frappe.flags.flow_engine_seeding:
		return
	user = frappe.session.user
	manager = is_system_manager(user)
	live = doc.run_as
	doc.run_as = live if manager and live else user
	try:
		_check_steps(doc, manager)
	finally:
		doc.run_as = live


def check_may_set(run_as: str, flow: str) -> None:
	"""RunAsNotAllowed unless the session user is a System Manager or `run_as` is themselves."""
	user = frappe.session.user
	if run_as != user and not is_system_manager(user):
		frappe.throw(
			_(
				"Only a System Manager may make flow '{0}' run as another user ('{1}'). "
				"Leave Run As as it is: the flow runs as the user who last changes or activates it ({2})."
			).format(flow, run_as, user),
			RunAsNotAllowed,
			title=_("Run As not allowed"),
		)


def behaviour_changed(doc, before) -> bool:
	"""New, definition or trigger changed (the version moved), payload schema changed, or activated."""
	if before is None or cint(doc.version) != cint(before.version):
		return True  # templates.on_validate moves the version when the definition or trigger changed
	if cint(doc.is_active) and not cint(before.is_active):
		return True
	return _json_or_text(doc.payload_schema) != _json_or_text(before.payload_schema)


def _json_or_text(value):
	if not value:
		return None
	try:
		return json.loads(value) if isinstance(value, str) else value
	except ValueError:
		return value


def _check_usable(user: str, doc) -> None:
	if user == "Guest":
		frappe.throw(
			_("Flow '{0}' cannot run as Guest: pick a user who can log in").format(
				doc.template_name or doc.name
			),
			RunAsNotAllowed,
		)
	enabled = frappe.db.get_value("User", user, "enabled")
	if enabled is None:
		frappe.throw(_("Run As user '{0}' does not exist").format(user), frappe.LinkValidationError)
	if not cint(enabled):
		frappe.throw(
			_("Run As user '{0}' is disabled: pick an enabled user for flow '{1}'").format(
				user, doc.template_name or doc.name
			),
			frappe.ValidationError,
		)


def _check_steps(doc, manager: bool) -> None:
	try:
		raw = definition_language.load(doc.flow_definition or "")
	except DefinitionError:
		return  # reported by the definition's own validation
	issues = step_issues(raw, doc.trigger_doctype, doc.run_as)
	doc.flags.run_as_issues = issues
	if not issues:
		return
	from flow_engine.runtime.templates import as_html

	flow = doc.template_name or doc.name
	lines = "\n".join(f"- {issue}" for issue in issues)
	if manager:
		frappe.msgprint(
			as_html(
				_(
					"Run As user '{0}' may not do what these steps of flow '{1}' do; they will fail when "
					"they run:"
				).format(doc.run_as, flow)
				+ "\n"
				+ lines
			),
			title=_("Run As cannot do every step"),
			indicator="orange",
		)
		return
	frappe.throw(
		as_html(
			_(
				"Flow '{0}' is not saved: it runs as '{1}', who may not do what these steps do "
				"(a System Manager can set another Run As user):"
			).format(flow, doc.run_as)
			+ "\n"
			+ lines
		),
		StepNotPermitted,
		title=_("Run As cannot do these steps"),
	)


def step_issues(raw: Mapping, trigger_doctype: str | None, user: str) -> list[Issue]:
	"""What `user` may not do among the flow's steps, as far as it is known before running.

	Only doctypes written literally (no `{{…}}`) are checked: create/write/read/submit rights at the
	doctype level and the permlevel of each field set. Documents named by template, user
	permissions and sharing are checked by the kinds when they run (`require`).
	"""
	if not user or user == "Administrator":
		return []
	from flow_engine.kinds.registry import get_catalog

	catalog = get_catalog()
	issues = []
	for step in raw.get("steps") or []:
		if not isinstance(step, Mapping):
			continue
		kind = catalog.resolve(str(step.get("kind") or ""))
		payload = step.get("payload") if isinstance(step.get("payload"), Mapping) else {}
		issue = _issue_factory(step, user)
		if kind in _DOC_KINDS:
			named = payload.get("doctype")
			doctype = named or (None if kind == "create_doc" else trigger_doctype)
			if not _static(doctype):
				continue
			where = "payload.doctype" if named else "payload"
			target = doctype if named else _("{0} (the trigger document)").format(doctype)
			ptype = _DOC_KINDS[kind]
			if not frappe.has_permission(doctype, ptype, user=user):
				issues.append(issue(where, ptype, target))
			if kind in ("create_doc", "update_doc"):
				fields = payload.get("fields") if isinstance(payload.get("fields"), Mapping) else {}
				for field in denied_fields(doctype, [f for f in fields if _literal(f)], user):
					issues.append(
						issue(
							f"payload.fields.{field}",
							message=_("Run As '{0}' may not write field '{1}' of {2}").format(
								user, field, doctype
							),
						)
					)
			if kind == "create_doc" and payload.get("submit") in (True, 1, "1"):
				meta = frappe.get_meta(doctype)
				if meta.is_submittable and not frappe.has_permission(doctype, "submit", user=user):
					issues.append(issue("payload.submit", "submit", doctype))
		elif kind == "notify" and _static(trigger_doctype):
			target = _("{0} (the trigger document)").format(trigger_doctype)
			if not frappe.has_permission(trigger_doctype, "read", user=user):
				issues.append(issue("payload", "read", target))
			elif payload.get("channel", "email") == "email" and not frappe.has_permission(
				trigger_doctype, "email", user=user
			):
				issues.append(issue("payload.channel", "email", target))
		elif kind == "subscription_activate" and frappe.db.exists("DocType", "Subscription"):
			if not frappe.has_permission("Subscription", "write", user=user):
				issues.append(issue("payload.subscription", "write", "Subscription"))
	return issues


def _issue_factory(step: Mapping, user: str):
	def issue(field: str, ptype: str | None = None, target: str | None = None, message: str | None = None):
		text = message or _("Run As '{0}' may not {1} {2}").format(user, _VERBS.get(ptype, ptype), target)
		return Issue(
			text,
			step_id=str(step.get("id") or "?"),
			field=field,
			label=step.get("label") or None,
			code="run_as_permission",
		)

	return issue


def _literal(value) -> bool:
	return isinstance(value, str) and bool(value) and "{{" not in value


def _static(doctype) -> bool:
	"""A doctype written literally that exists (a missing one is reported by the site checks)."""
	return _literal(doctype) and bool(frappe.db.exists("DocType", doctype, cache=True))


def prepare_copy(copy) -> None:
	"""A duplicate runs as the duplicating user, unless a System Manager keeps the original's Run As."""
	keep = is_system_manager() and copy.run_as and frappe.db.get_value("User", copy.run_as, "enabled")
	if not keep:
		copy.run_as = frappe.session.user
	copy.last_changed_by = None
	copy.last_changed_on = None
