"""What a kind handler receives and may raise."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import frappe
from frappe import _

from flow_engine.engine.definition import Step

STANDARD_FIELDS = {
	"name",
	"owner",
	"creation",
	"modified",
	"modified_by",
	"docstatus",
	"idx",
	"doctype",
	"parent",
	"parentfield",
	"parenttype",
	"_user_tags",
	"_comments",
	"_assign",
	"_liked_by",
}


class StepFailed(Exception):
	"""A step could not do its work. `retryable` says whether trying again may help."""

	def __init__(self, message: str, retryable: bool = False, output: Any = None):
		super().__init__(message)
		self.retryable = retryable
		self.output = output


@dataclass
class External:
	"""What a handler returns to call the outside world with no transaction open and no lock held.

	The runtime commits the step as `running` first, then calls `perform()` (in a thread when
	`threadsafe`: it must not touch frappe; otherwise in the job's own thread, still outside any run
	lock), then locks the run again and calls `finish(result)` — or `finish_error(error)` when perform
	raised — which returns the step's result or raises StepFailed. A worker that dies between the call
	and recording its answer makes the call again (at-least-once): send `StepCall.idempotency_key`.
	"""

	perform: Callable[[], Any]
	finish: Callable[[Any], dict]
	finish_error: Callable[[BaseException], dict]
	timeout: float
	threadsafe: bool = True
	description: str = ""


@dataclass
class Park:
	"""What a handler returns to leave its step waiting for something outside the run (a person's
	decision, a document event, a child run): the step turns `waiting` with `waiting_for` and `state`
	merged into its state, and its effects so far commit with it. Whoever resolves the wait completes
	the step with `runs.complete_step` (or a locked-run update)."""

	waiting_for: str
	state: dict = field(default_factory=dict)


@dataclass
class StepCall:
	run: str
	template: str
	step: Step
	payload: Mapping  # rendered against the context (conditions read raw_payload)
	raw_payload: Mapping
	context: Mapping
	attempt: int = 1
	idempotency_key: str = ""
	reference_doctype: str | None = None
	reference_name: str | None = None
	extras: dict = field(default_factory=dict)

	def target(self, doctype: Any = None, name: Any = None):
		"""The document a step acts on: the named one, else the trigger document."""
		doctype = doctype or self.payload.get("doctype")
		name = name or self.payload.get("name")
		if doctype and not name:
			raise StepFailed(
				_("'name' is required when 'doctype' is given (which {0} to use?)").format(doctype)
			)
		if not doctype:
			doctype, name = self.reference_doctype, self.reference_name
			if not doctype or not name:
				raise StepFailed(
					_("This run has no trigger document; give 'doctype' and 'name' in the payload")
				)
		ensure_doctype(str(doctype))
		try:
			return frappe.get_doc(doctype, name)
		except frappe.DoesNotExistError:
			frappe.clear_last_message()
			raise StepFailed(_("{0} '{1}' does not exist").format(doctype, name)) from None


def ensure_doctype(doctype: str) -> None:
	if not doctype or not frappe.db.exists("DocType", doctype, cache=True):
		raise StepFailed(_("Document type '{0}' does not exist on this site").format(doctype))


def check_fields(doctype: str, fields: Any) -> dict:
	"""The field map, after checking each name is a real field of `doctype`."""
	if not isinstance(fields, Mapping):
		raise StepFailed(_("'fields' must be an object of fieldname → value"))
	meta = frappe.get_meta(doctype)
	unknown = [name for name in fields if name not in STANDARD_FIELDS and not meta.has_field(name)]
	if unknown:
		raise StepFailed(
			_("{0} is not a field of {1}").format(", ".join(f"'{name}'" for name in unknown), doctype)
			+ " — "
			+ _("check the field names in the step's payload")
		)
	return dict(fields)


def as_list(value: Any) -> list[str]:
	if value in (None, ""):
		return []
	if isinstance(value, list | tuple):
		items = value
	else:
		items = str(value).replace(";", ",").replace("\n", ",").split(",")
	result = []
	for item in items:
		if isinstance(item, list | tuple):
			result += as_list(item)
		elif item not in (None, "") and str(item).strip():
			result.append(str(item).strip())
	return result
