"""Kinds that act on documents: create_doc, update_doc (alias erp_update), comment, assign.

Each acts as the flow's Run As user (the session user while a step runs) and checks first what a
Desk action by that user would need, so a flow can do only what its Run As user could do by hand:
create (+ submit) / write on the document and write access to each field's permlevel; read for a
comment or an assignment (as frappe.desk.form.utils.add_comment and assign_to.add check).
"""

from __future__ import annotations

import hashlib

import frappe
from frappe import _
from frappe.utils import cint

from flow_engine.kinds.base import StepCall, StepFailed, as_list, check_fields, ensure_doctype
from flow_engine.runtime.identity import require, require_fields


def create_doc(call: StepCall) -> dict:
	doctype = str(call.payload.get("doctype") or "")
	ensure_doctype(doctype)
	key = str(call.payload.get("merge_key") or "").strip()
	claim = _claim_key(doctype, key) if key else None
	if claim and claim[1] and _is_open(doctype, claim[1], *call.extras.get("job_status", ())):
		return {"doctype": doctype, "name": claim[1], "merged": True}
	values = check_fields(doctype, call.payload.get("fields") or {})
	if call.payload.get("link_to_trigger") and call.reference_doctype:
		values.update(_backlink(doctype, call.reference_doctype, call.reference_name))
	doc = frappe.get_doc({"doctype": doctype, **values})
	submit = cint(call.payload.get("submit")) and doc.meta.is_submittable
	doc.owner = frappe.session.user  # as insert() sets it: "if owner" permissions depend on it
	require("create", doctype, doc)
	require_fields(doctype, values)
	if submit:
		require("submit", doctype, doc)
	doc.insert()
	if submit:
		doc.submit()
	if claim:
		frappe.db.sql(
			"update `tabFlow Job Key` set job_name=%s, flow_run=%s, modified=%s where name=%s",
			(doc.name, call.run, frappe.utils.now_datetime(), claim[0]),
		)
		return {"doctype": doctype, "name": doc.name, "merged": False}
	return {"doctype": doctype, "name": doc.name}


CLOSED_STATUSES = frozenset(("Completed", "Cancelled", "Closed", "Resolved", "Template"))


def _claim_key(doctype: str, key: str) -> tuple[str, str | None]:
	"""Lock the Flow Job Key row of (doctype, merge key), creating it: (row name, its job or None).

	Concurrent steps with one key serialise on that row until their transaction commits, so only
	the first creates the job; the others find it (and reuse it while it is open)."""
	name = key_row_name(doctype, key)
	if not frappe.db.exists("Flow Job Key", name):
		now = frappe.utils.now_datetime()
		frappe.db.savepoint("flow_job_key")
		try:
			frappe.db.sql(
				"""insert into `tabFlow Job Key` (name, creation, modified, owner, modified_by, docstatus, idx,
				job_doctype, merge_key) values (%s, %s, %s, %s, %s, 0, 0, %s, %s)""",
				(name, now, now, frappe.session.user, frappe.session.user, doctype, key[:140]),
			)
		except Exception as error:
			if not frappe.db.is_duplicate_entry(error):
				raise
			frappe.db.rollback(save_point="flow_job_key")  # another step made it first: read theirs
	rows = frappe.db.sql("select job_name from `tabFlow Job Key` where name=%s for update", (name,))
	return name, (rows[0][0] if rows else None)


def key_row_name(doctype: str, key: str) -> str:
	return hashlib.sha1(f"{doctype}\n{key}".encode()).hexdigest()


def _is_open(doctype: str, name: str, field: str = "status", closed=CLOSED_STATUSES) -> bool:
	"""An existing job that is neither cancelled nor in a closed status (Task Completed, ToDo Closed…;
	dispatch_job: the completed values of Flow Dispatch Settings)."""
	status = f"`{field}`" if frappe.get_meta(doctype).has_field(field) else "null"
	# a locking read: a job another step just committed is seen (a plain read would keep this
	# transaction's older snapshot, miss that job and make a duplicate)
	rows = frappe.db.sql(f"select docstatus, {status} from `tab{doctype}` where name=%s for update", (name,))
	return bool(rows) and rows[0][0] != 2 and rows[0][1] not in closed


def _backlink(doctype: str, ref_doctype: str, ref_name: str | None) -> dict:
	meta = frappe.get_meta(doctype)
	for type_field, name_field in (
		("reference_type", "reference_name"),
		("reference_doctype", "reference_name"),
	):
		if meta.has_field(type_field) and meta.has_field(name_field):
			return {type_field: ref_doctype, name_field: ref_name}
	for field in meta.fields:
		if field.fieldtype == "Link" and field.options == ref_doctype:
			return {field.fieldname: ref_name}
	return {}


def update_doc(call: StepCall) -> dict:
	doc = call.target()
	values = check_fields(doc.doctype, call.payload.get("fields") or {})
	require("write", doc.doctype, doc)
	require_fields(doc.doctype, values)
	changed = [name for name, value in values.items() if doc.get(name) != value]
	doc.update(values)
	if doc.docstatus == 1:
		doc.flags.ignore_validate_update_after_submit = False
		doc.save()
	else:
		doc.save()
	return {"doctype": doc.doctype, "name": doc.name, "changed": changed}


def comment(call: StepCall) -> dict:
	doc = call.target()
	text = str(call.payload.get("text") or "").strip()
	if not text:
		raise StepFailed(_("The comment text rendered empty; check the template in 'text'"))
	require("read", doc.doctype, doc, why=_("needed to comment on it"))
	comment = doc.add_comment("Comment", text)
	return {"comment": comment.name}


def assign(call: StepCall) -> dict:
	from frappe.desk.form.assign_to import add

	doc = call.target()
	require("read", doc.doctype, doc, why=_("needed to assign it"))
	users = as_list(call.payload.get("assign_to"))
	role = call.payload.get("role")
	if role:
		users += _users_for_role(str(role), call.payload.get("role_strategy") or "least_busy")
	group = call.payload.get("group")
	if group:
		users += _users_for_group(str(group))
	users = [user for user in dict.fromkeys(users) if frappe.db.exists("User", {"name": user, "enabled": 1})]
	if not users:
		raise StepFailed(
			_("No enabled user to assign to (users: {0}, role: {1}, group: {2})").format(
				call.payload.get("assign_to") or "-", role or "-", group or "-"
			)
		)
	already = set(
		frappe.get_all(
			"ToDo",
			filters={
				"reference_type": doc.doctype,
				"reference_name": doc.name,
				"status": "Open",
				"allocated_to": ["in", users],
			},
			pluck="allocated_to",
		)
	)
	new = [user for user in users if user not in already]
	if new:
		add(
			{
				"assign_to": new,
				"doctype": doc.doctype,
				"name": doc.name,
				"description": call.payload.get("description") or doc.get_title(),
				"date": call.payload.get("date") or None,
				"priority": call.payload.get("priority") or "Medium",
			}
		)
	return {"assigned": new, "already_assigned": sorted(already)}


def _users_for_group(group: str) -> list[str]:
	if not frappe.db.exists("User Group", group):
		raise StepFailed(_("User Group '{0}' does not exist").format(group))
	return frappe.get_all(
		"User Group Member",
		filters={"parent": group, "parenttype": "User Group"},
		pluck="user",
		order_by="idx",
	)


def _users_for_role(role: str, strategy: str) -> list[str]:
	if not frappe.db.exists("Role", role):
		raise StepFailed(_("Role '{0}' does not exist").format(role))
	users = frappe.get_all(
		"Has Role", filters={"role": role, "parenttype": "User"}, pluck="parent", distinct=True
	)
	users = [user for user in users if user not in ("Administrator", "Guest")]
	users = (
		frappe.get_all("User", filters={"name": ["in", users], "enabled": 1}, pluck="name") if users else []
	)
	if strategy == "all" or not users:
		return sorted(users)
	counts = dict(
		frappe.get_all(
			"ToDo",
			filters={"status": "Open", "allocated_to": ["in", users]},
			fields=["allocated_to", "count(name) as open"],
			group_by="allocated_to",
			as_list=True,
		)
	)
	return [min(sorted(users), key=lambda user: counts.get(user, 0))]
