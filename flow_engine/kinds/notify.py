"""The notify kind: email through Frappe's email queue, SMS through SMS Settings, Desk notifications.

Permissions (the flow's Run As user is the session user while the step runs): a message about the
trigger document carries its values, so every channel needs read on that document; email also needs
the Email right on it (as Desk's email composer, frappe.core.doctype.communication.email.make,
checks), an attached print the Print right, and an Email Template read access. A run with no trigger
document needs nothing more than any Desk user has: composing email, sending SMS, or a notification.

Email bodies are HTML: document values placed in them are escaped, except values of the document's
Text Editor / HTML Editor fields, which hold HTML on purpose (`html_escaper`).
"""

from __future__ import annotations

import html
import socket
from collections.abc import Mapping

import frappe
from frappe import _
from frappe.utils import validate_email_address

from flow_engine.engine import templating
from flow_engine.kinds.base import External, StepCall, StepFailed, as_list
from flow_engine.runtime.identity import require

RICH_TEXT = ("Text Editor", "HTML Editor")
SMS_TIMEOUT_SECONDS = 30


def notify(call: StepCall) -> dict | External:
	channel = call.payload.get("channel") or "email"
	recipients = as_list(call.payload.get("recipients"))
	if not recipients:
		raise StepFailed(
			_("No recipients: 'recipients' rendered empty ({0})").format(call.raw_payload.get("recipients"))
		)
	doc = _doc_for(call) if channel == "email" or frappe.session.user != "Administrator" else None
	if doc is not None:
		require("read", doc.doctype, doc, why=_("its values go into the message"))
	if channel == "email":
		return _email(call, recipients, doc)
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


def _email(call: StepCall, recipients: list[str], doc) -> dict:
	emails = [_email_of(recipient) for recipient in recipients]
	bad = [recipient for recipient, email in zip(recipients, emails, strict=True) if not email]
	if bad:
		raise StepFailed(_("Not an email address or a user with one: {0}").format(", ".join(bad)))
	if doc is not None:
		require("email", doc.doctype, doc, why=_("no Email permission on it"))
	subject, message = call.payload.get("subject"), _html_message(call)
	template_name = call.payload.get("email_template")
	if template_name:
		if not frappe.db.exists("Email Template", template_name):
			raise StepFailed(_("Email Template '{0}' does not exist").format(template_name))
		require("read", "Email Template", template_name)
		template = frappe.get_doc("Email Template", template_name)
		args = doc.as_dict() if doc else dict(call.context.get("variables") or {})
		subject = subject or template.get_formatted_subject(args)
		message = message or template.get_formatted_response(escaped_args(args, doc.meta if doc else None))
	attachments = None
	if call.payload.get("attach_document_print") and doc:
		require("print", doc.doctype, doc, why=_("to attach its print"))
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


def _html_message(call: StepCall):
	"""The message rendered again from the raw template, with document values HTML-escaped."""
	raw = call.raw_payload.get("message")
	if not isinstance(raw, str):
		return call.payload.get("message")
	return templating.render(raw, call.context, escape=html_escaper(call.reference_doctype))


def html_escaper(doctype: str | None):
	"""`escape(path, value)` for templating.render: `doc.<rich text field>` stays HTML, all else is escaped."""
	rich = set()
	if doctype and frappe.db.exists("DocType", doctype, cache=True):
		rich = {df.fieldname for df in frappe.get_meta(doctype).fields if df.fieldtype in RICH_TEXT}

	def escape(path: str, value) -> str:
		text = templating.to_text(value)
		root, _dot, field = path.partition(".")
		if root == "doc" and field in rich:
			return text
		return html.escape(text)

	return escape


def escaped_args(args: Mapping, meta=None) -> dict:
	"""Email Template arguments with every string escaped, except the document's rich text fields."""
	out = {}
	for key, value in args.items():
		df = meta.get_field(key) if meta is not None else None
		if isinstance(value, str):
			out[key] = value if df is not None and df.fieldtype in RICH_TEXT else html.escape(value)
		elif isinstance(value, list):
			child = frappe.get_meta(df.options) if df is not None and df.fieldtype == "Table" else None
			out[key] = [
				escaped_args(row, child)
				if isinstance(row, Mapping)
				else html.escape(row)
				if isinstance(row, str)
				else row
				for row in value
			]
		elif isinstance(value, Mapping):
			out[key] = escaped_args(value)
		else:
			out[key] = value
	return out


def _email_of(value: str) -> str | None:
	value = value.strip()
	if validate_email_address(value):
		return value
	email = frappe.db.get_value("User", value, "email")
	return email or None


def _sms(call: StepCall, recipients: list[str]) -> External:
	from frappe.core.doctype.sms_settings.sms_settings import send_sms

	if not frappe.db.table_exists("SMS Log"):  # Frappe's send_sms logs each message there, after sending
		raise StepFailed(_("SMS needs the SMS Log doctype (ERPNext), which this site does not have"))
	if not frappe.db.get_single_value("SMS Settings", "sms_gateway_url"):
		raise StepFailed(_("SMS Settings has no SMS Gateway URL: configure SMS Settings before sending SMS"))
	numbers = [frappe.db.get_value("User", r, "mobile_no") or r if "@" in r else r for r in recipients]
	message = str(call.payload.get("message") or "") or _sms_template_text(call)
	if not message:
		raise StepFailed(_("The SMS message rendered empty; check 'message'"))
	timeout = min(SMS_TIMEOUT_SECONDS, call.step.timeout or SMS_TIMEOUT_SECONDS)  # the step's, when shorter

	def perform() -> None:
		# made with no transaction open and no lock held (runs.make_calls); Frappe's gateway call sets no
		# timeout of its own, so the socket default caps it
		previous = socket.getdefaulttimeout()
		socket.setdefaulttimeout(timeout)
		try:
			send_sms(numbers, message, success_msg=False)
		finally:
			socket.setdefaulttimeout(previous)

	def finish(_result) -> dict:
		return {"channel": "sms", "recipients": numbers}

	def finish_error(error: BaseException) -> dict:
		raise StepFailed(_("SMS gateway call failed: {0}").format(error), retryable=True)

	# not threadsafe: Frappe's send_sms reads settings and writes an SMS Log as the flow's user
	return External(perform, finish, finish_error, timeout=timeout, threadsafe=False, description="SMS")


def _sms_template_text(call: StepCall) -> str:
	"""An SMS message template is an Email Template: its response, rendered, as plain text."""
	from frappe.utils import strip_html_tags

	name = call.payload.get("email_template")
	if not name:
		return ""
	if not frappe.db.exists("Email Template", name):
		raise StepFailed(_("Email Template '{0}' does not exist").format(name))
	require("read", "Email Template", name)
	doc = _doc_for(call)
	args = doc.as_dict() if doc else dict(call.context.get("variables") or {})
	text = frappe.get_doc("Email Template", name).get_formatted_response(args)
	return html.unescape(strip_html_tags(text or "")).strip()


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
