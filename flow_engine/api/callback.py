"""The Guest endpoint that completes a parked `on_webhook` step with its token."""

from __future__ import annotations

import json

import frappe
from frappe import _
from frappe.rate_limiter import rate_limit

from flow_engine.runtime import runs


class CallbackRejected(frappe.PermissionError):
	"""One answer for every bad callback (unknown run, unknown step, wrong or stale token, a step that
	is not waiting), so the endpoint tells a prober nothing."""


CALLBACK_REJECTED = (
	"This callback is not valid: the run, the step or the token is wrong, or the step is no longer waiting."
)
MAX_CALLBACK_RESULT = 64 * 1024


def _callback_rate_limit() -> int:
	return frappe.utils.cint(frappe.conf.get("flow_engine_callback_rate_limit")) or 60


@frappe.whitelist(allow_guest=True, methods=["POST"])
@rate_limit(limit=_callback_rate_limit, seconds=60)
def callback(run=None, step=None, token=None, result=None, **_ignored) -> dict:
	"""External completion of an `on_webhook` step, authenticated by the step's secret token.

	The token is checked (an HMAC, no database access) before any read or lock; every failure gets the
	same 403. The step is completed as the flow's Run As user, never as Administrator.
	"""
	from flow_engine.runtime import tokens

	if not (tokens.well_formed(run, step, token) or tokens.legacy_match(run, step, token)):
		_reject()
	data = result
	if isinstance(data, str):
		if len(data) > MAX_CALLBACK_RESULT:
			_reject(
				_("The result is larger than {0} bytes").format(MAX_CALLBACK_RESULT), frappe.ValidationError
			)
		try:
			data = json.loads(data) if data.strip() else None
		except ValueError:
			_reject(_("'result' is not valid JSON"), frappe.ValidationError)
	elif data is not None and len(json.dumps(data, default=str)) > MAX_CALLBACK_RESULT:
		_reject(_("The result is larger than {0} bytes").format(MAX_CALLBACK_RESULT), frappe.ValidationError)
	template = frappe.db.get_value("Flow Run", run, "template")
	if not template:
		_reject()
	try:
		user = runs.run_as(template)
	except Exception:
		user = None
	previous = frappe.session.user
	try:
		if user:
			frappe.set_user(user)
		outcome = runs.complete_step(run, step, result=data, token=token, by="webhook")
	except (frappe.DoesNotExistError, frappe.AuthenticationError, runs.FlowRunError):
		frappe.db.rollback()
		frappe.clear_messages()
		_reject()
	finally:
		frappe.set_user(previous)
	return {"run": outcome["run"], "step": outcome["step"], "status": outcome["status"]}


def _reject(message: str | None = None, exc: type[Exception] = CallbackRejected):
	frappe.clear_messages()
	frappe.throw(message or _(CALLBACK_REJECTED), exc, title=_("Callback rejected"))
