"""dispatch_job: a field job in the site's job doctype, with webhooks when it opens and completes.

The doctype and field mapping come from Flow Dispatch Settings (empty: ERPNext Task, or ToDo on a
site without ERPNext). The job is created by `create_doc` (same permission checks, `merge_key`
reuse). When the step gives `on_open_webhook` / `on_close_webhook`, the URLs are kept on the job's
Flow Job Key row; the open call is queued when the job is created (not when a step merges into an
open one), the close call when the job's status turns to a completed value (`on_job_change`, from the
job's own document events). Both go out after the transaction commits, in a worker, through the
guarded client (`flow_engine.outbound`), with a JSON body and an `Idempotency-Key`; a failure is an
Error Log, never a failed save.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import frappe
from frappe import _

from flow_engine import outbound
from flow_engine.kinds import documents
from flow_engine.kinds.base import StepCall, StepFailed
from flow_engine.runtime import jobs

SETTINGS = "Flow Dispatch Settings"
# dispatch_job key → settings field naming the job's field for it
MAPPED = {
	"subject": "subject_field",
	"job_type": "type_field",
	"priority": "priority_field",
	"duration_h": "duration_field",
}
DEFAULTS = {
	"Task": {
		"subject": "subject",
		"job_type": "type",
		"priority": "priority",
		"duration_h": "expected_time",
		"completed": ("Completed",),
	},
	"ToDo": {"subject": "description", "priority": "priority", "completed": ("Closed",)},
}
JOB_DOCTYPES_CACHE = "flow_engine:job_webhook_doctypes"


@dataclasses.dataclass(frozen=True)
class JobMapping:
	doctype: str
	fields: dict  # dispatch_job key → the job's field (missing: added to the subject text)
	status_field: str
	completed: tuple[str, ...]


def mapping() -> JobMapping:
	"""The site's job doctype and field mapping (settings over the doctype's defaults)."""
	settings = frappe.get_cached_doc(SETTINGS)
	default_doctype = "Task" if "erpnext" in frappe.get_installed_apps() else "ToDo"
	doctype = settings.job_doctype or default_doctype
	defaults = DEFAULTS.get(doctype, {})
	fields = {key: settings.get(field) or defaults.get(key) for key, field in MAPPED.items()}
	completed = tuple(
		line.strip() for line in (settings.completed_values or "").splitlines() if line.strip()
	) or defaults.get("completed", tuple(sorted(documents.CLOSED_STATUSES - {"Template"})))
	return JobMapping(
		doctype=doctype,
		fields={key: field for key, field in fields.items() if field},
		status_field=settings.status_field or "status",
		completed=completed,
	)


def check_settings(settings) -> None:
	"""Each mapped field exists on the job doctype (Flow Dispatch Settings.validate)."""
	doctype = settings.job_doctype or ("Task" if "erpnext" in frappe.get_installed_apps() else "ToDo")
	meta = frappe.get_meta(doctype)
	for key, field in {**MAPPED, "status": "status_field"}.items():
		name = settings.get(field)
		if name and not meta.has_field(name):
			frappe.throw(
				_("{0}: {1} has no field '{2}' (for dispatch_job's {3}); give a field of {1}").format(
					settings.meta.get_label(field), doctype, name, key
				)
			)
	if not settings.subject_field and doctype not in DEFAULTS:
		frappe.throw(_("Give the Subject field: {0} has no default mapping").format(doctype))


def dispatch_job(call: StepCall) -> dict:
	target = mapping()
	payload = call.payload
	subject = str(payload.get("subject") or "").strip()
	if not subject:
		raise StepFailed(_("The job's subject rendered empty; check the template in 'subject'"))
	values, extra = {}, []
	for key in ("job_type", "priority", "duration_h"):
		value = payload.get(key)
		if value in (None, ""):
			continue
		if key in target.fields:
			values[target.fields[key]] = value
		elif key == "job_type":
			extra.append(f" — {value}")
		elif key == "duration_h":
			extra.append(f" ({value} h)")
	if "subject" not in target.fields:
		raise StepFailed(
			_("Flow Dispatch Settings: give the Subject field of {0} (it has no default mapping)").format(
				target.doctype
			)
		)
	values[target.fields["subject"]] = subject + "".join(extra)
	create = {
		"doctype": target.doctype,
		"fields": values,
		"link_to_trigger": True,
		"merge_key": payload.get("merge_key") or "",
	}
	result = documents.create_doc(
		dataclasses.replace(
			call,
			payload=create,
			extras={**call.extras, "job_status": (target.status_field, target.completed)},
		)
	)
	open_url = str(payload.get("on_open_webhook") or "").strip()
	close_url = str(payload.get("on_close_webhook") or "").strip()
	key = str(payload.get("merge_key") or "").strip()
	if (open_url or close_url or key) and not result.get("merged"):
		row = _keep_webhooks(call, result, open_url, close_url)
		if open_url:
			jobs.after_commit("flow_engine.kinds.dispatch.call_webhook", row=row, which="open")
	return result


def _keep_webhooks(call: StepCall, result: dict, open_url: str, close_url: str) -> str:
	"""The job's Flow Job Key row (its merge key's, else one of its own) holds the URLs."""
	key = str(call.payload.get("merge_key") or "").strip()  # the step's payload, not create's
	doctype, job = result["doctype"], result["name"]
	if key:
		name = documents.key_row_name(doctype, key)
	else:
		name = hashlib.sha1(f"{doctype}\n\n{job}".encode()).hexdigest()  # a key never starts with \n
		if not frappe.db.exists("Flow Job Key", name):
			now = frappe.utils.now_datetime()
			frappe.db.sql(
				"""insert into `tabFlow Job Key` (name, creation, modified, owner, modified_by, docstatus, idx,
				job_doctype, merge_key, job_name, flow_run) values (%s, %s, %s, %s, %s, 0, 0, %s, '', %s, %s)""",
				(name, now, now, frappe.session.user, frappe.session.user, doctype, job, call.run),
			)
	frappe.db.sql(
		"""update `tabFlow Job Key` set open_webhook=%s, close_webhook=%s, closed_notified_at=null
		where name=%s""",
		(open_url or None, close_url or None, name),
	)
	_forget_watched()
	frappe.db.after_commit.add(_forget_watched)  # a process that read the list meanwhile missed it
	return name


def _forget_watched() -> None:
	frappe.cache().delete_value(JOB_DOCTYPES_CACHE)
	frappe.local.flags.pop("flow_engine_job_doctypes", None)


def _watched_doctypes() -> set[str]:
	"""Doctypes with a job waiting for its close webhook (cached; cleared when one is added)."""
	cached = frappe.local.flags.get("flow_engine_job_doctypes")
	if cached is None:
		cached = frappe.cache().get_value(
			JOB_DOCTYPES_CACHE,
			generator=lambda: frappe.db.sql_list(
				"""select distinct job_doctype from `tabFlow Job Key`
				where ifnull(close_webhook, '') != '' and closed_notified_at is null"""
			),
		)
		cached = set(cached or ())
		frappe.local.flags.flow_engine_job_doctypes = cached
	return cached


def is_watched(doctype: str) -> bool:
	"""Whether a job of `doctype` waits for its close webhook (a cached set)."""
	try:
		return doctype in _watched_doctypes()
	except Exception:  # the table or its columns are not there yet (an install or migrate)
		return False


def on_job_change(doc, method: str | None = None) -> None:
	"""From the on_change handler (runtime/triggers.on_doc_change): a job turning completed queues its
	close webhook, once."""
	if frappe.flags.in_install or frappe.flags.in_migrate or frappe.flags.in_patch:
		return
	if not is_watched(doc.doctype):
		return
	try:
		target = mapping()
		field = target.status_field if target.doctype == doc.doctype else "status"
		completed = (
			target.completed
			if target.doctype == doc.doctype
			else DEFAULTS.get(doc.doctype, {}).get("completed", ())
		)
		if doc.get(field) not in completed:
			return
		before = doc.get_doc_before_save()
		if before is not None and before.get(field) in completed:
			return  # another save of a job already completed
		rows = frappe.db.sql(
			"""select name from `tabFlow Job Key` where job_doctype=%s and job_name=%s
			and ifnull(close_webhook, '') != '' and closed_notified_at is null for update""",
			(doc.doctype, doc.name),
		)
		for (row,) in rows:
			frappe.db.sql(
				"update `tabFlow Job Key` set closed_notified_at=%s where name=%s",
				(frappe.utils.now_datetime(), row),
			)
			jobs.after_commit("flow_engine.kinds.dispatch.call_webhook", row=row, which="close")
		if rows:
			_forget_watched()
	except Exception:
		frappe.log_error(title=f"flow_engine: close webhook of {doc.doctype} {doc.name} not queued")


def call_webhook(row: str, which: str) -> None:
	"""POST the job's doctype, name and key to its open / close URL (a worker job)."""
	record = frappe.db.get_value(
		"Flow Job Key",
		row,
		["job_doctype", "job_name", "merge_key", "flow_run", "open_webhook", "close_webhook"],
		as_dict=True,
	)
	url = record and (record.open_webhook if which == "open" else record.close_webhook)
	if not url:
		return
	body = {
		"event": "opened" if which == "open" else "completed",
		"doctype": record.job_doctype,
		"name": record.job_name,
		"key": record.merge_key or None,
		"flow_run": record.flow_run,
	}
	headers = {"Content-Type": "application/json", "Idempotency-Key": f"flow-job-{row}-{which}"}
	title = f"flow_engine: {which} webhook of {record.job_doctype} {record.job_name}"
	try:
		response = outbound.request(
			"POST",
			url,
			data=json.dumps(body).encode(),
			headers=headers,
			policy=outbound.Policy.from_config(frappe.conf),
		)
	except outbound.OutboundError as error:
		frappe.log_error(title=title, message=f"{error}\n\nbody: {json.dumps(body)}")
		return
	if response.status_code >= 400:
		frappe.log_error(
			title=title, message=f"POST {url} answered {response.status_code}:\n{response.text[:2000]}"
		)
