"""The kind registry: built-in handlers plus kinds other apps declare in their hooks.

Another app adds kinds with, in its hooks.py:

    flow_engine_kinds = ["my_app.flows.kinds"]

where `my_app.flows.kinds` is a module or callable that provides `KINDS`: a list of
`(KindSpec, handler)` pairs. The spec describes the kind to the editor and validation; the handler
is `handler(call: StepCall) -> dict`.
"""

from __future__ import annotations

from collections.abc import Callable

import frappe

from flow_engine.engine.catalog import BUILTIN_KINDS, Catalog, KindSpec

Handler = Callable

BUILTIN_HANDLERS = {
	"create_doc": "flow_engine.kinds.documents.create_doc",
	"update_doc": "flow_engine.kinds.documents.update_doc",
	"comment": "flow_engine.kinds.documents.comment",
	"assign": "flow_engine.kinds.documents.assign",
	"notify": "flow_engine.kinds.notify.notify",
	"webhook": "flow_engine.kinds.webhook.webhook",
	"condition": "flow_engine.kinds.logic.condition",
	"switch": "flow_engine.kinds.logic.switch",
	"inclusive": "flow_engine.kinds.logic.inclusive",
	"wait": "flow_engine.kinds.logic.wait",
	"wait_for": "flow_engine.kinds.waits.wait_for",
	"set_variables": "flow_engine.kinds.logic.set_variables",
	"call_flow": "flow_engine.kinds.flows.call_flow",
	"for_each": "flow_engine.kinds.flows.for_each",
	"subscription_activate": "flow_engine.kinds.erpnext.subscription_activate",
	"issue": "flow_engine.kinds.erpnext.issue",
	"dispatch_job": "flow_engine.kinds.dispatch.dispatch_job",
	"approval": "flow_engine.kinds.approvals.approval",
}


def _load() -> tuple[Catalog, dict[str, Handler | str]]:
	catalog = Catalog(BUILTIN_KINDS)
	handlers: dict[str, Handler | str] = dict(BUILTIN_HANDLERS)
	for path in frappe.get_hooks("flow_engine_kinds") or []:
		try:
			provider = (
				frappe.get_attr(path) if "." in path and not _is_module(path) else frappe.get_module(path)
			)
			kinds = provider() if callable(provider) else getattr(provider, "KINDS", [])
			for spec, handler in kinds:
				if not isinstance(spec, KindSpec):
					raise TypeError(f"{spec!r} is not a KindSpec")
				catalog.add(spec)
				handlers[spec.name] = handler
		except Exception:
			frappe.log_error(title=f"flow_engine: could not load kinds from {path}")
	return catalog, handlers


def _is_module(path: str) -> bool:
	import importlib.util

	try:
		return importlib.util.find_spec(path) is not None
	except (ImportError, ValueError):
		return False


def _cached():
	cache = getattr(frappe.local, "flow_engine_kinds", None)
	if cache is None:
		cache = frappe.local.flow_engine_kinds = _load()
	return cache


def get_catalog() -> Catalog:
	return _cached()[0]


def get_handler(kind: str) -> Handler:
	catalog, handlers = _cached()
	name = catalog.resolve(kind)
	handler = handlers.get(name)
	if handler is None:
		from flow_engine.kinds.base import StepFailed

		raise StepFailed(f"No handler is registered for kind '{kind}'")
	if isinstance(handler, str):
		handler = handlers[name] = frappe.get_attr(handler)
	return handler


def installed_kinds() -> list[dict]:
	"""The catalog as the editor sees it, marking kinds whose app is missing."""
	apps = set(frappe.get_installed_apps())
	result = []
	for spec in get_catalog():
		data = spec.as_dict()
		data["available"] = not spec.requires_app or spec.requires_app in apps
		result.append(data)
	return result
