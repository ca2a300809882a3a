"""Alerts when a run fails: a Desk notification at once, one email digest per flow and interval, and
the flow's error flow.

`on_run_ended` (a `lifecycle` listener) runs in the transaction that writes the failed status; it only
describes the failure and defers the rest until that transaction commits (`jobs.after_commit`: a
worker job, or right here in inline mode), so a rolled-back failure alerts nobody and an alert that
goes wrong never keeps a run from ending.

- Desk: a Notification Log (type Alert, linking the Flow Run) for the flow's owner and subscribers
  who are enabled and may read the run.
- Email: the failure joins the flow's pending list in Redis; the first failure of a quiet flow opens
  a window of Flow Engine Settings.alert_digest_minutes (default 60), and the scheduler's minute tick
  (`flush_digests`) sends everything collected in one email when the window has passed. Two emails
  for one flow are therefore always at least one interval apart.
- Error flow: the flow's `error_flow` is started with the failed run's details as input
  (source "error_flow"). A run started as an error flow never starts error flows, so they cannot loop.
"""

from __future__ import annotations

import datetime
import json

import frappe
from frappe import _
from frappe.utils import cint, escape_html, get_url_to_form

from flow_engine.runtime import clock, jobs
from flow_engine.runtime.store import RunRecord

ERROR_FLOW_SOURCE = "error_flow"
DEFAULT_DIGEST_MINUTES = 60
DIGEST_FLOWS = "flow_engine:alert_digest:flows"  # flows with failures waiting for their digest
SUBJECT_ERROR_CHARS = 240
ERROR_FLOW_INPUT = (
	"failed_run",
	"flow",
	"step",
	"error",
	"reference_doctype",
	"reference_name",
	"customer",
	"failed_at",
)


# -- when a run ends ---------------------------------------------------------------------------------


def on_run_ended(record: RunRecord) -> None:
	"""`lifecycle` listener: a failed run alerts once its failure has committed. A failed item of a
	for_each does not: its parent step fails (or lists it) and that run alerts."""
	if record.status != "failed" or record.scope:
		return
	jobs.after_commit(
		"flow_engine.runtime.alerts.run_failed",
		failure=describe(record),
		started_as_error_flow=record.source == ERROR_FLOW_SOURCE,
	)


def describe(record: RunRecord) -> dict:
	"""What an alert tells of a failed run (also the error flow's input)."""
	step = failed_step(record)
	step_error = (record.states.get(step) or {}).get("error") if step else None
	failed_at = record.completed_at or clock.now()
	return {
		"failed_run": record.name,
		"flow": record.template,
		"step": step,
		"error": record.error,
		"step_error": step_error or record.error,
		"reference_doctype": record.reference_doctype,
		"reference_name": record.reference_name,
		"customer": record.customer,
		"failed_at": failed_at.isoformat(sep=" ", timespec="seconds"),
	}


def failed_step(record: RunRecord) -> str | None:
	"""The step whose failure failed the run (the latest failed one); None when the run itself was stopped
	(runaway guard, no Run As user)."""
	failed = [
		(str(state.get("completed_at") or ""), step_id)
		for step_id, state in record.states.items()
		if state.get("status") == "failed"
	]
	return max(failed)[1] if failed else None


def run_failed(failure: dict, started_as_error_flow: bool = False) -> None:
	"""After the failure committed: notify in Desk, queue the email digest, start the error flow."""
	flow = frappe.db.get_value("Flow Template", failure["flow"], ["name", "error_flow"], as_dict=True)
	if not flow:
		return
	for title, work, args in (
		("notify", notify, (recipients(flow.name, failure["failed_run"]), failure)),
		("queue the email digest", queue_for_digest, (failure,)),
		("start the error flow", start_error_flow, (flow.error_flow, failure, started_as_error_flow)),
	):
		try:
			work(*args)
		except Exception:
			frappe.log_error(title=f"flow_engine: could not {title} for failed run {failure['failed_run']}")
	frappe.db.commit()


# -- who is told ---------------------------------------------------------------------------------------


def recipients(flow: str, run: str | None = None) -> list[str]:
	"""The flow's owner and subscribers who are enabled and may read the run (or Flow Runs)."""
	owner = frappe.db.get_value("Flow Template", flow, "owner")
	subscribers = frappe.get_all(
		"Flow Subscriber",
		filters={"parent": flow, "parenttype": "Flow Template", "parentfield": "subscribers"},
		pluck="user",
		order_by="idx asc",
	)
	users = list(dict.fromkeys(user for user in [owner, *subscribers] if user and user != "Guest"))
	if not users:
		return []
	enabled = set(frappe.get_all("User", filters={"name": ["in", users], "enabled": 1}, pluck="name"))
	return [user for user in users if user in enabled and may_read(user, run)]


def may_read(user: str, run: str | None = None) -> bool:
	if run and frappe.db.exists("Flow Run", run):
		return bool(frappe.has_permission("Flow Run", "read", doc=run, user=user))
	return bool(frappe.has_permission("Flow Run", "read", user=user))


# -- Desk ----------------------------------------------------------------------------------------------


def notify(users: list[str], failure: dict) -> None:
	"""One Notification Log (type Alert, linking the run) per user; Frappe sends no email for Alerts."""
	from frappe.desk.doctype.notification_settings.notification_settings import is_notifications_enabled

	subject = notification_subject(failure)
	for user in users:
		if not is_notifications_enabled(user):
			continue
		frappe.get_doc(
			{
				"doctype": "Notification Log",
				"for_user": user,
				"type": "Alert",
				"document_type": "Flow Run",
				"document_name": failure["failed_run"],
				"subject": subject,
				"email_content": escape_html(failure.get("error") or ""),
			}
		).insert(ignore_permissions=True)


def notification_subject(failure: dict) -> str:
	error = _shorten(failure.get("step_error") or failure.get("error") or _("no error recorded"))
	if failure.get("step"):
		text = _("Flow {0} failed at step {1}: {2}").format(
			_quoted(failure["flow"]), _quoted(failure["step"]), escape_html(error)
		)
	else:
		text = _("Flow {0} failed: {1}").format(_quoted(failure["flow"]), escape_html(error))
	return text


def _quoted(text: str) -> str:
	return f"<b>{escape_html(text)}</b>"


def _shorten(text: str, limit: int = SUBJECT_ERROR_CHARS) -> str:
	text = " ".join(str(text).split())
	return text if len(text) <= limit else text[: limit - 1] + "…"


# -- the email digest ----------------------------------------------------------------------------------


def digest_minutes() -> int:
	minutes = cint(frappe.db.get_single_value("Flow Engine Settings", "alert_digest_minutes"))
	return minutes if minutes > 0 else DEFAULT_DIGEST_MINUTES


def _key(name: str) -> str:
	"""This site's Redis key. Every command below goes through a pipeline, which takes keys as given
	(Frappe's cache wrapper would prefix some of them a second time)."""
	return frappe.cache.make_key(name)


def _raw(command: str, *args):
	pipe = frappe.cache.pipeline(transaction=False)
	getattr(pipe, command)(*args)
	return pipe.execute()[0]


def pending_key(flow: str) -> str:
	return _key(f"flow_engine:alert_digest:pending:{flow}")


def window_key(flow: str) -> str:
	"""When the flow's open digest window began (the first failure it collected)."""
	return _key(f"flow_engine:alert_digest:since:{flow}")


def queue_for_digest(failure: dict) -> None:
	"""Add the failure to its flow's digest; the first one opens the window (atomic in Redis)."""
	flow = failure["flow"]
	pipe = frappe.cache.pipeline(transaction=True)
	pipe.rpush(pending_key(flow), json.dumps(failure))
	pipe.set(window_key(flow), clock.now().isoformat(sep=" "), nx=True)
	pipe.sadd(_key(DIGEST_FLOWS), flow)
	pipe.execute()


def pending(flow: str) -> list[dict]:
	return [json.loads(item) for item in _raw("lrange", pending_key(flow), 0, -1)]


def window_opened(flow: str) -> datetime.datetime | None:
	value = _raw("get", window_key(flow))
	if not value:
		return None
	try:
		return datetime.datetime.fromisoformat(value.decode() if isinstance(value, bytes) else value)
	except ValueError:
		return None


def flush_digests(now: datetime.datetime | None = None) -> int:
	"""Scheduler tick: send the digest of every flow whose window has passed. Returns emails queued."""
	now = now or clock.now()
	interval = datetime.timedelta(minutes=digest_minutes())
	sent = 0
	for member in sorted(_raw("smembers", _key(DIGEST_FLOWS))):
		flow = member.decode() if isinstance(member, bytes) else member
		opened = window_opened(flow)
		if opened is not None and now - opened < interval:
			continue
		failures = _take(flow)
		if not failures:
			continue
		try:
			if send_digest(flow, failures, interval):
				sent += 1
			frappe.db.commit()
		except Exception:
			frappe.db.rollback()
			_put_back(flow, failures)
			frappe.log_error(title=f"flow_engine: could not send the failure digest of flow '{flow}'")
	return sent


def _take(flow: str) -> list[dict]:
	"""Take the flow's pending failures and close its window, in one step (concurrent ticks and new
	failures neither lose nor repeat one)."""
	pipe = frappe.cache.pipeline(transaction=True)
	pipe.lrange(pending_key(flow), 0, -1)
	pipe.delete(pending_key(flow), window_key(flow))
	pipe.srem(_key(DIGEST_FLOWS), flow)
	items = pipe.execute()[0]
	return [json.loads(item) for item in items]


def _put_back(flow: str, failures: list[dict]) -> None:
	pipe = frappe.cache.pipeline(transaction=True)
	pipe.lpush(pending_key(flow), *[json.dumps(failure) for failure in reversed(failures)])
	pipe.set(window_key(flow), clock.now().isoformat(sep=" "), nx=True)
	pipe.sadd(_key(DIGEST_FLOWS), flow)
	pipe.execute()


def send_digest(flow: str, failures: list[dict], interval: datetime.timedelta) -> bool:
	"""Queue one email listing the failed runs to the flow's owner and subscribers (frappe.sendmail)."""
	if not frappe.db.exists("Flow Template", flow):
		return False
	users = recipients(flow)
	emails = [
		email
		for email in frappe.get_all("User", filters={"name": ["in", users or [""]]}, pluck="email")
		if email
	]
	if not emails:
		return False
	minutes = int(interval.total_seconds() // 60)
	frappe.sendmail(
		recipients=emails,
		subject=_("Flow '{0}': {1} failed run(s) in the last {2} minutes").format(
			flow, len(failures), minutes
		),
		message=digest_html(flow, failures),
		reference_doctype="Flow Template",
		reference_name=flow,
	)
	return True


def digest_html(flow: str, failures: list[dict]) -> str:
	rows = []
	for failure in failures:
		url = get_url_to_form("Flow Run", failure["failed_run"])
		reference = " ".join(
			part for part in (failure.get("reference_doctype"), failure.get("reference_name")) if part
		)
		rows.append(
			"<tr>"
			f'<td><a href="{escape_html(url)}">{escape_html(failure["failed_run"])}</a></td>'
			f"<td>{escape_html(failure.get('step') or '-')}</td>"
			f"<td>{escape_html(_shorten(failure.get('step_error') or failure.get('error') or ''))}</td>"
			f"<td>{escape_html(reference or '-')}</td>"
			f"<td>{escape_html(failure.get('failed_at') or '')}</td>"
			"</tr>"
		)
	head = "".join(
		f"<th>{escape_html(label)}</th>"
		for label in (_("Run"), _("Step"), _("Error"), _("Document"), _("Failed At"))
	)
	intro = _("These runs of flow {0} failed:").format(f"<b>{escape_html(flow)}</b>")
	return (
		f"<p>{intro}</p>"
		f'<table border="1" cellpadding="4" cellspacing="0"><tr>{head}</tr>{"".join(rows)}</table>'
		f"<p>{_('Open a run to see its steps, then retry it or cancel it.')}</p>"
	)


# -- the error flow ------------------------------------------------------------------------------------


def start_error_flow(
	error_flow: str | None, failure: dict, started_as_error_flow: bool = False
) -> str | None:
	"""Start the flow's error flow with the failed run's details (never for a run that is itself an
	error flow's run: error flows do not chain). An inactive error flow is not started."""
	if not error_flow or started_as_error_flow or error_flow == failure["flow"]:
		return None
	from flow_engine.runtime import runs

	return runs.start_run(
		error_flow,
		event="error_flow",
		source=ERROR_FLOW_SOURCE,
		input={key: failure.get(key) for key in ERROR_FLOW_INPUT},
		parent_run=failure["failed_run"],
		customer=failure.get("customer"),
		require_active=True,
	)


def validate_template(doc) -> None:
	"""Flow Template validation: a flow cannot be its own error flow."""
	if doc.get("error_flow") and doc.error_flow in {doc.name, doc.template_name}:
		from flow_engine.runtime.templates import FlowValidationError

		frappe.throw(
			_(
				"Flow '{0}' cannot be its own error flow: pick another flow in 'Error Flow', or leave it empty"
			).format(doc.template_name or doc.name),
			FlowValidationError,
			title=_("Invalid error flow"),
		)
