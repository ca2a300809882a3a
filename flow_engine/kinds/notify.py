"""The notify kind: email through Frappe's email queue, SMS through SMS Settings, Desk notifications."""

from __future__ import annotations

import frappe
from frappe import _
from frappe.utils import validate_email_address

from flow_engine.kinds.base import StepCall, StepFailed, as_list


def notify(call: StepCall) -> dict:
	channel = call.payload.get("channel") or "email"
	recipients = as_list(call.payload.get("recipients"))
	if not recipients:
		raise StepFailed(
			_("No recipients: 'recipients' rendered empty ({0})").format(call.raw_payload.get("recipients"))
		)
	if channel == "email":
		return _email(call, recipients)
	if channel == "sms":
		return _sms(call, recipients)
	if channel == "system":
		return _system(call, recipients)
	raise StepFailed(_("Unknown channel '{0}': use email, sms or system").format(channel))


def _doc_for(call: StepCall):
	if (
		call.reference_doctype
		and call.reference_name
		and frappe.db.exists(call.reference_doctype, call.reference_name)
	):
		return frappe.get_doc(call.reference_doctype, call.reference_name)
	return None


def _email(call: StepCall, recipients: list[str]) -> dict:
	emails = [_email_of(recipient) for recipient in recipients]
	bad = [recipient for recipient, email in zip(recipients, emails, strict=True) if not email]
	if bad:
		raise StepFailed(_("Not an email address or a user with one: {0}").format(", ".join(bad)))
	subject, message = call.payload.get("subject"), call.payload.get("message")
	doc = _doc_for(call)
	template_name = call.payload.get("email_template")
	if template_name:
		if not frappe.db.exists("Email Template", template_name):
			raise StepFailed(_("Email Template '{0}' does not exist").format(template_name))
		template = frappe.get_doc("Email Template", template_name)
		args = doc.as_dict() if doc else dict(call.context.get("variables") or {})
		subject = subject or template.get_formatted_subject(args)
		message = message or template.get_formatted_response(args)
	attachments = None
	if call.payload.get("attach_document_print") and doc:
		attachments = [frappe.attach_print(doc.doctype, doc.name, file_name=doc.name)]
	if not frappe.db.exists(
		"Email Account", {"enable_outgoing": 1, "default_outgoing": 1}
	) and not frappe.conf.get("mail_server"):
		raise StepFailed(
			_(
				"No outgoing email account: set up an Email Account with 'Default Outgoing' to send flow emails"
			)
		)
	frappe.sendmail(
		recipients=emails,
		cc=[_email_of(c) for c in as_list(call.payload.get("cc")) if _email_of(c)],
		subject=str(subject or ""),
		message=str(message or ""),
		reference_doctype=call.reference_doctype,
		reference_name=call.reference_name,
		attachments=attachments,
		message_id=None,
		header=None,
	)
	return {"channel": "email", "recipients": emails, "subject": str(subject or "")}


def _email_of(value: str) -> str | None:
	value = value.strip()
	if validate_email_address(value):
		return value
	email = frappe.db.get_value("User", value, "email")
	return email or None


def _sms(call: StepCall, recipients: list[str]) -> dict:
	from frappe.core.doctype.sms_settings.sms_settings import send_sms

	if not frappe.db.get_single_value("SMS Settings", "sms_gateway_url"):
		raise StepFailed(_("SMS Settings has no SMS Gateway URL: configure SMS Settings before sending SMS"))
	numbers = [frappe.db.get_value("User", r, "mobile_no") or r if "@" in r else r for r in recipients]
	message = str(call.payload.get("message") or "")
	if not message:
		raise StepFailed(_("The SMS message rendered empty; check 'message'"))
	try:
		send_sms(numbers, message, success_msg=False)
	except Exception as error:
		raise StepFailed(_("SMS gateway call failed: {0}").format(error), retryable=True) from None
	return {"channel": "sms", "recipients": numbers}


def _system(call: StepCall, recipients: list[str]) -> dict:
	users = []
	for recipient in recipients:
		user = (
			recipient
			if frappe.db.exists("User", recipient)
			else frappe.db.get_value("User", {"email": recipient})
		)
		if not user:
			raise StepFailed(_("'{0}' is not a user; system notifications go to users").format(recipient))
		users.append(user)
	for user in users:
		frappe.get_doc(
			{
				"doctype": "Notification Log",
				"for_user": user,
				"type": "Alert",
				"subject": str(call.payload.get("subject") or call.payload.get("message") or ""),
				"email_content": str(call.payload.get("message") or ""),
				"document_type": call.reference_doctype,
				"document_name": call.reference_name,
				"from_user": frappe.session.user,
			}
		).insert(ignore_permissions=True)
	return {"channel": "system", "recipients": users}
