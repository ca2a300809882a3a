"""Approvals: decide (approvers, System Managers), My approvals, and the one-click email links (Guest)."""

from __future__ import annotations

import frappe
from frappe import _
from frappe.rate_limiter import rate_limit
from frappe.utils import escape_html

from flow_engine.runtime import approvals


@frappe.whitelist(methods=["POST"])
def approve(approval: str, comment: str | None = None) -> dict:
	"""Approve as the session user (an approver of it, or a System Manager)."""
	return approvals.decide(approval, "approve", comment)


@frappe.whitelist(methods=["POST"])
def reject(approval: str, comment: str | None = None) -> dict:
	"""Reject as the session user (an approver of it, or a System Manager)."""
	return approvals.decide(approval, "reject", comment)


@frappe.whitelist()
def my_approvals() -> list[dict]:
	"""The session user's pending approvals, oldest first."""
	if frappe.session.user == "Guest":
		frappe.throw(_("Log in to see your approvals"), frappe.PermissionError)
	return approvals.pending_for(frappe.session.user)


def _link_rate_limit() -> int:
	return frappe.utils.cint(frappe.conf.get("flow_engine_callback_rate_limit")) or 60


@frappe.whitelist(allow_guest=True, methods=["GET", "POST"])
@rate_limit(limit=_link_rate_limit, seconds=60)
def respond(approval=None, user=None, action=None, token=None, comment=None, **_ignored):
	"""An email link: GET shows a confirmation page, POST decides (once). Every bad link (tampered,
	used, expired, closed) gets the same refusal."""
	try:
		row = approvals.check_link(approval, user, action, token)
		if frappe.request and frappe.request.method == "POST":
			approvals.decide_by_link(approval, user, action, token, comment)
			done = _("Approved") if action == "approve" else _("Rejected")
			frappe.respond_as_web_page(
				done,
				_("Thank you: '{0}' is {1}.").format(escape_html(row.subject), done.lower()),
				success=True,
				primary_action=None,
			)
			return
	except approvals.LinkRejected:
		frappe.db.rollback()
		frappe.respond_as_web_page(
			_("Link not valid"),
			escape_html(_(approvals.LINK_REJECTED)),
			http_status_code=403,
			primary_action=None,
		)
		return
	verb = _("Approve") if action == "approve" else _("Reject")
	fields = "".join(
		f"<input type='hidden' name='{key}' value='{escape_html(value)}'>"
		for key, value in (("approval", approval), ("user", user), ("action", action), ("token", token))
	)
	if frappe.session.user != "Guest":
		fields += (
			f"<input type='hidden' name='csrf_token' value='{escape_html(frappe.sessions.get_csrf_token())}'>"
		)
	form = (
		f"<p><b>{escape_html(row.subject)}</b></p>"
		f"<form method='POST' action='{approvals.LINK_PAGE}'>{fields}"
		f"<p><textarea name='comment' class='form-control' rows='3' placeholder='{escape_html(_('Comment (optional)'))}'>"
		"</textarea></p>"
		f"<button type='submit' class='btn btn-{'primary' if action == 'approve' else 'danger'} btn-sm btn-block'>"
		f"{escape_html(verb)}</button></form>"
	)
	frappe.respond_as_web_page(
		_("{0}: {1}").format(verb, row.subject), form, indicator_color="orange", primary_action=None
	)
