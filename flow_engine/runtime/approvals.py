"""Approvals: a step that waits for a person's decision (kind `approval`).

When the step runs, `open_approval` resolves its approvers (users, a role's enabled users, a user named
by template), records a Flow Approval, assigns it to them (a ToDo each: it shows in their Desk to-do
list and in My approvals), optionally emails them one-click links, schedules its reminder, escalation
and timeout rows (Flow Step Pending purposes "reminder", "escalation", "timeout") and parks the step
(waiting_for "approval").

A decision (`decide`: the API, the form, My approvals, an email link) locks the run, then the approval
row: the first decision wins, a second one is refused. It completes the step with
{"branch": "approved" | "rejected", "decided_by", "comment"}, closes the ToDos and cancels the rows.
The timeout row completes it with {"branch": "timed_out"}. Lock order everywhere: run, then approval.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import secrets
from urllib.parse import urlencode

import frappe
from frappe import _
from frappe.utils import cint, escape_html, flt, get_url

from flow_engine.kinds.base import Park, StepCall, StepFailed, as_list
from flow_engine.runtime import clock, runs, steps, store

DOCTYPE = "Flow Approval"
PURPOSES = ("reminder", "escalation", "timeout")
DECISIONS = {"approve": ("Approved", "approved"), "reject": ("Rejected", "rejected")}
MAX_REMINDERS = 5
MANAGER_ROLES = ("System Manager", "Flow Manager")
LINK_PAGE = "/api/method/flow_engine.api.approvals.respond"


class AlreadyDecided(frappe.ValidationError):
	pass


class LinkRejected(frappe.PermissionError):
	"""One answer for every bad email link (wrong, tampered, used, expired)."""


LINK_REJECTED = "This approval link is not valid: it was changed, already used, or the approval is closed."


# ---------------------------------------------------------------- opening


def open_approval(call: StepCall) -> Park:
	payload = call.payload
	users = approvers_for(payload)
	escalate_to = str(payload.get("escalate_to") or "").strip()
	if escalate_to:
		escalation_users(escalate_to)  # a typo fails the step now, not in 24 hours
	now = clock.now()
	remind, escalate, timeout = (
		_hours(payload, name) for name in ("remind_after_hours", "escalate_after_hours", "timeout_hours")
	)
	expires_at = now + datetime.timedelta(hours=timeout) if timeout else None
	subject = str(payload.get("subject") or "").strip() or _default_subject(call)
	doc = frappe.get_doc(
		{
			"doctype": DOCTYPE,
			"run": call.run,
			"step_id": call.step.id,
			"flow": call.template,
			"reference_doctype": call.reference_doctype,
			"reference_name": call.reference_name,
			"subject": subject[:140],
			"message": str(payload.get("message") or ""),
			"status": "Pending",
			"approvers": [{"user": user, "added_by": "request"} for user in users],
			"remind_at": now + datetime.timedelta(hours=remind) if remind else None,
			"escalate_at": now + datetime.timedelta(hours=escalate) if escalate and escalate_to else None,
			"escalate_to": escalate_to or None,
			"expires_at": expires_at,
			"send_email": 1 if cint(payload.get("send_email")) else 0,
		}
	).insert(ignore_permissions=True)
	_assign(doc, users)
	if doc.send_email:
		_email(doc, users, "request")
	rows = {}
	for purpose, due in (
		("reminder", doc.remind_at),
		("escalation", doc.escalate_at),
		("timeout", doc.expires_at),
	):
		if due:
			rows[purpose] = store.insert_pending(call.run, call.step.id, due, purpose)
			steps.wake_timer_if_soon(due, now)
	return Park("approval", {"approval": doc.name, "approval_rows": rows})


def _default_subject(call: StepCall) -> str:
	if call.reference_doctype and call.reference_name:
		return _("Approve {0} {1}").format(_(call.reference_doctype), call.reference_name)
	return _("Approval for {0}").format(call.template)


def _hours(payload, name: str) -> float:
	value = payload.get(name)
	if value in (None, ""):
		return 0.0
	try:
		hours = float(value)
	except (TypeError, ValueError):
		raise StepFailed(_("'{0}' must be a number of hours (got {1!r})").format(name, value)) from None
	if hours <= 0:
		raise StepFailed(_("'{0}' must be a positive number of hours (got {1})").format(name, value))
	return hours


def approvers_for(payload) -> list[str]:
	"""Enabled users from `approvers`, `role` and `approver` (names or emails), each once."""
	wanted = as_list(payload.get("approvers")) + as_list(payload.get("approver"))
	users = [user for user in (_user(value) for value in wanted) if user]
	role = str(payload.get("role") or "").strip()
	if role:
		users += role_users(role)
	users = list(dict.fromkeys(users))
	if not users:
		raise StepFailed(
			_(
				"No enabled user to approve (approvers: {0}, role: {1}, approver: {2}); name at least one "
				"enabled user in the approval step"
			).format(payload.get("approvers") or "-", role or "-", payload.get("approver") or "-")
		)
	return users


def _user(value: str) -> str | None:
	value = str(value).strip()
	if not value or value == "Guest":
		return None
	name = value if frappe.db.exists("User", value) else frappe.db.get_value("User", {"email": value})
	if name and frappe.db.get_value("User", name, "enabled"):
		return name
	return None


def role_users(role: str) -> list[str]:
	if not frappe.db.exists("Role", role):
		raise StepFailed(_("Role '{0}' does not exist; check the approval step's role").format(role))
	users = frappe.get_all("Has Role", filters={"role": role, "parenttype": "User"}, pluck="parent")
	users = [user for user in set(users) if user not in ("Administrator", "Guest")]
	if not users:
		return []
	return sorted(frappe.get_all("User", filters={"name": ["in", users], "enabled": 1}, pluck="name"))


def escalation_users(target: str) -> list[str]:
	"""escalate_to is a user (name or email) or a role."""
	user = _user(target)
	if user:
		return [user]
	if frappe.db.exists("Role", target):
		found = role_users(target)
		if found:
			return found
	raise StepFailed(
		_("escalate_to '{0}' is neither an enabled user nor a role with enabled users").format(target)
	)


def _assign(doc, users: list[str]) -> None:
	from frappe.desk.form.assign_to import add

	add(
		{
			"assign_to": users,
			"doctype": DOCTYPE,
			"name": doc.name,
			"description": doc.subject,
			"priority": "High" if doc.escalated else "Medium",
			"date": frappe.utils.getdate(doc.expires_at) if doc.expires_at else None,
		},
		ignore_permissions=True,
	)


# ---------------------------------------------------------------- deciding


def decide(approval: str, action: str, comment: str | None = None, user: str | None = None) -> dict:
	"""Approve or reject as `user` (an approver, or a System Manager): decided exactly once."""
	if action not in DECISIONS:
		frappe.throw(_("Unknown decision '{0}': approve or reject").format(action))
	user = user or frappe.session.user
	found = frappe.db.get_value(DOCTYPE, approval, ["run", "step_id"], as_dict=True)
	if not found:
		frappe.throw(_("Flow Approval '{0}' does not exist").format(approval), frappe.DoesNotExistError)
	runs.locked(found.run)  # lock order: the run, then the approval
	row = _lock(approval)
	if not may_decide(approval, user):
		frappe.throw(
			_(
				"You are not an approver of Flow Approval {0}; only its approvers (or a System Manager) may "
				"decide it"
			).format(approval),
			frappe.PermissionError,
		)
	if row.status != "Pending":
		by = f" by {row.decided_by}" if row.decided_by else ""
		frappe.throw(
			_("'{0}' is already {1}{2}; it cannot be decided again").format(
				row.subject, _(row.status).lower(), by
			),
			AlreadyDecided,
		)
	status, branch = DECISIONS[action]
	comment = (comment or "").strip() or None
	_close(approval, status, user, comment)
	result = {"branch": branch, "decided_by": user, "comment": comment}
	outcome = runs.complete_step(found.run, found.step_id, result=result, by=user)
	_cancel_rows(found.run, found.step_id)
	return {"approval": approval, "status": status, "run": found.run, "run_status": outcome["status"]}


def _lock(approval: str):
	rows = frappe.db.sql(
		f"select name, status, subject, decided_by, run, step_id from `tab{DOCTYPE}` where name=%s for update",
		(approval,),
		as_dict=True,
	)
	if not rows:
		frappe.throw(_("Flow Approval '{0}' does not exist").format(approval), frappe.DoesNotExistError)
	return rows[0]


def approvers_of(approval: str) -> list[str]:
	return frappe.get_all(
		"Flow Approval Approver",
		filters={"parent": approval, "parenttype": DOCTYPE},
		pluck="user",
		order_by="idx",
	)


def is_manager(user: str) -> bool:
	return user == "Administrator" or "System Manager" in frappe.get_roles(user)


def may_decide(approval: str, user: str) -> bool:
	return user in approvers_of(approval) or is_manager(user)


def _close(approval: str, status: str, user: str | None, comment: str | None) -> None:
	frappe.db.set_value(
		DOCTYPE,
		approval,
		{"status": status, "decided_by": user, "decided_on": clock.now(), "comment": comment},
	)
	for name in frappe.get_all(
		"ToDo",
		filters={"reference_type": DOCTYPE, "reference_name": approval, "status": "Open"},
		pluck="name",
	):
		todo = frappe.get_doc("ToDo", name)
		todo.status = "Closed" if status in ("Approved", "Rejected") else "Cancelled"
		todo.save(ignore_permissions=True)


def _cancel_rows(run: str, step_id: str) -> None:
	frappe.db.sql(
		f"""update `tabFlow Step Pending` set status='cancelled', modified=%s where run=%s and step_id=%s
		and status='pending' and purpose in {PURPOSES}""",
		(clock.now(), run, step_id),
	)


# ---------------------------------------------------------------- reminders, escalation, timeout


def fire(record, step, state: dict, row: str, purpose: str, now: datetime.datetime) -> str | None:
	"""A due row of an approval step, on the locked run (scheduler.fire). Returns the row's outcome
	(None: the row was armed again for the next reminder)."""
	approval = state.get("approval")
	if state.get("status") != "waiting" or (state.get("approval_rows") or {}).get(purpose) != row:
		return "cancelled"
	found = frappe.db.sql(
		f"select name, status from `tab{DOCTYPE}` where name=%s for update", (approval,), as_dict=True
	)
	if not found or found[0].status != "Pending":
		return "cancelled"
	doc = frappe.get_doc(DOCTYPE, approval)
	if purpose == "timeout":
		_close(approval, "Timed Out", None, None)
		result = {"branch": "timed_out", "decided_by": None, "comment": None}
		steps.complete_waiting(
			record, step, result, attempt=int(state.get("attempts") or 0) + 1, by="timeout"
		)
		frappe.db.sql(
			f"""update `tabFlow Step Pending` set status='cancelled', modified=%s where run=%s and step_id=%s
			and status='pending' and purpose in {PURPOSES} and name != %s""",
			(now, record.name, step.id, row),
		)
		return "completed"
	if purpose == "escalation":
		escalate(doc)
		return "completed"
	remind(doc)
	return _rearm_reminder(doc, step, row, now)


def remind(doc) -> list[str]:
	"""Remind the approvers of a pending approval (Desk notification; email when it sends email)."""
	users = [row.user for row in doc.approvers if frappe.db.get_value("User", row.user, "enabled")]
	subject = _("Reminder: {0} waits for your decision").format(doc.subject)
	_notify(doc, users, subject)
	if doc.send_email:
		_email(doc, users, "reminder")
	doc.db_set("reminders_sent", cint(doc.reminders_sent) + 1, update_modified=False)
	return users


def _rearm_reminder(doc, step, row: str, now: datetime.datetime) -> str | None:
	hours = flt((step.payload or {}).get("remind_after_hours"))
	if hours <= 0 or cint(doc.reminders_sent) >= MAX_REMINDERS:
		doc.db_set("remind_at", None, update_modified=False)
		return "completed"
	due = now + datetime.timedelta(hours=hours)
	if doc.expires_at and due >= doc.expires_at:
		doc.db_set("remind_at", None, update_modified=False)
		return "completed"
	frappe.db.sql(
		"""update `tabFlow Step Pending` set status='pending', trigger_at=%s, claims=0, claimed_by=null,
		lease_until=null, modified=%s where name=%s""",
		(due, now, row),
	)
	doc.db_set("remind_at", due, update_modified=False)
	return None


def escalate(doc) -> list[str]:
	"""Add escalate_to (a user, or a role's users) as approvers, assign and notify them."""
	try:
		users = escalation_users(doc.escalate_to or "")
	except StepFailed as error:
		doc.add_comment("Comment", _("Could not escalate: {0}").format(error))
		return []
	current = {row.user for row in doc.approvers}
	new = [user for user in users if user not in current]
	for user in new:
		doc.append("approvers", {"user": user, "added_by": "escalation"})
	doc.escalated = 1
	doc.save(ignore_permissions=True)
	if new:
		_assign(doc, new)
		_notify(doc, new, _("Escalated to you: {0}").format(doc.subject))
		if doc.send_email:
			_email(doc, new, "escalation")
	return new


def _notify(doc, users: list[str], subject: str) -> None:
	for user in users:
		frappe.get_doc(
			{
				"doctype": "Notification Log",
				"for_user": user,
				"type": "Alert",
				"subject": subject,
				"email_content": escape_html(doc.message or ""),
				"document_type": DOCTYPE,
				"document_name": doc.name,
				"from_user": frappe.session.user,
			}
		).insert(ignore_permissions=True)


def _email(doc, users: list[str], why: str) -> None:
	heading = {
		"request": _("Your approval is requested"),
		"reminder": _("Reminder: your approval is still requested"),
		"escalation": _("An approval was escalated to you"),
	}[why]
	for user in users:
		email = frappe.db.get_value("User", user, "email")
		if not email:
			continue
		reference = ""
		if doc.reference_doctype and doc.reference_name:
			route = frappe.utils.get_url_to_form(doc.reference_doctype, doc.reference_name)
			reference = f"<p>{escape_html(_(doc.reference_doctype))} <a href='{route}'>{escape_html(doc.reference_name)}</a></p>"
		message = (
			f"<h3>{escape_html(heading)}</h3><p><b>{escape_html(doc.subject)}</b></p>{reference}"
			f"<p>{escape_html(doc.message or '')}</p>"
			f"<p><a href='{link_url(doc.name, user, 'approve')}'>{_('Approve')}</a> &nbsp; "
			f"<a href='{link_url(doc.name, user, 'reject')}'>{_('Reject')}</a> &nbsp; "
			f"<a href='{get_url('/app/my-approvals')}'>{_('My approvals')}</a></p>"
		)
		frappe.sendmail(
			recipients=[email],
			subject=f"{heading}: {doc.subject}",
			message=message,
			reference_doctype=DOCTYPE,
			reference_name=doc.name,
			delayed=True,
		)


# ---------------------------------------------------------------- email links


def _link_mac(approval: str, user: str, action: str, nonce: str) -> str:
	from frappe.utils.password import get_encryption_key

	key = get_encryption_key().encode()
	text = f"flow-approval\x00{approval}\x00{user}\x00{action}\x00{nonce}"
	digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
	return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def link_token(approval: str, user: str, action: str) -> str:
	nonce = secrets.token_urlsafe(9)
	return f"{nonce}.{_link_mac(approval, user, action, nonce)}"


def link_url(approval: str, user: str, action: str) -> str:
	query = urlencode(
		{"approval": approval, "user": user, "action": action, "token": link_token(approval, user, action)}
	)
	return get_url(f"{LINK_PAGE}?{query}")


def link_well_formed(approval, user, action, token) -> bool:
	"""Whether the token was issued for this approval, user and action (never raises, no database)."""
	values = (approval, user, action, token)
	if not all(isinstance(value, str) and value and len(value) <= 200 for value in values):
		return False
	if action not in DECISIONS or not token.isascii() or token.count(".") != 1:
		return False
	nonce, mac = token.split(".")
	return bool(nonce) and hmac.compare_digest(
		mac.encode(), _link_mac(approval, user, action, nonce).encode()
	)


def check_link(approval, user, action, token):
	"""The approval a link may still decide, else LinkRejected (the same answer for every failure)."""
	if not link_well_formed(approval, user, action, token):
		reject_link()
	row = frappe.db.get_value(DOCTYPE, approval, ["name", "status", "expires_at", "subject"], as_dict=True)
	if not row or row.status != "Pending" or (row.expires_at and row.expires_at <= clock.now()):
		reject_link()
	if user not in approvers_of(approval) or not frappe.db.get_value("User", user, "enabled"):
		reject_link()
	return row


def decide_by_link(approval, user, action, token, comment=None) -> dict:
	check_link(approval, user, action, token)
	from flow_engine.runtime.jobs import acting_as

	try:
		with acting_as(user):
			return decide(approval, action, comment, user=user)
	except (AlreadyDecided, frappe.PermissionError, frappe.DoesNotExistError, runs.FlowRunError):
		frappe.db.rollback()
		reject_link()


def reject_link():
	frappe.clear_messages()
	frappe.throw(_(LINK_REJECTED), LinkRejected, title=_("Link not valid"))


# ---------------------------------------------------------------- runs ending, permissions, lists


def on_run_ended(record) -> None:
	"""A run that ended (cancelled, failed, completed) closes its open approvals and their ToDos.

	Only a run whose steps asked for an approval has any (its state names it): the rest, nearly every
	run, costs no query here."""
	if not any(state.get("approval") for state in record.states.values() if isinstance(state, dict)):
		return
	for name in frappe.get_all(DOCTYPE, filters={"run": record.name, "status": "Pending"}, pluck="name"):
		_close(name, "Cancelled", None, None)


def reopen(record, step_id: str, state: dict) -> None:
	"""A failed run retried (runs.retry_run): its approval, closed when the run failed, is pending again
	— assigned again, its reminder, escalation and timeout rows armed again (not before now)."""
	approval = state.get("approval")
	if not approval or frappe.db.get_value(DOCTYPE, approval, "status") != "Cancelled":
		return
	frappe.db.set_value(
		DOCTYPE, approval, {"status": "Pending", "decided_by": None, "decided_on": None, "comment": None}
	)
	doc = frappe.get_doc(DOCTYPE, approval)
	_assign(doc, [row.user for row in doc.approvers])
	now = clock.now()
	rows = {}
	for purpose, due in (
		("reminder", doc.remind_at),
		("escalation", None if doc.escalated else doc.escalate_at),
		("timeout", doc.expires_at),
	):
		if due:
			rows[purpose] = store.insert_pending(record.name, step_id, max(due, now), purpose)
	state["approval_rows"] = rows


def query_conditions(user: str | None = None) -> str:
	user = user or frappe.session.user
	if user == "Administrator" or set(MANAGER_ROLES) & set(frappe.get_roles(user)):
		return ""
	return (
		"exists (select 1 from `tabFlow Approval Approver` approver where approver.parent=`tabFlow Approval`.name "
		f"and approver.parenttype='Flow Approval' and approver.user={frappe.db.escape(user)})"
	)


def has_permission(doc, ptype: str | None = None, user: str | None = None, **_kwargs) -> bool:
	user = user or frappe.session.user
	if user == "Administrator" or set(MANAGER_ROLES) & set(frappe.get_roles(user)):
		return True
	if ptype not in (None, "read", "print"):
		return False
	return user in {row.user for row in doc.get("approvers") or []}


def pending_for(user: str) -> list[dict]:
	"""The user's pending approvals, oldest first (My approvals)."""
	names = frappe.get_all(
		"Flow Approval Approver", filters={"user": user, "parenttype": DOCTYPE}, pluck="parent"
	)
	if not names:
		return []
	rows = frappe.get_all(
		DOCTYPE,
		filters={"name": ["in", list(set(names))], "status": "Pending"},
		fields=[
			"name",
			"subject",
			"message",
			"flow",
			"reference_doctype",
			"reference_name",
			"run",
			"creation as waiting_since",
			"expires_at",
			"escalated",
		],
		order_by="creation asc",
		ignore_permissions=True,
	)
	for row in rows:
		row.message = frappe.utils.strip_html_tags(row.message or "")
	return rows
