"""wait_for: park the step until a document event or a custom event resumes it (runtime/waits.py)."""

from __future__ import annotations

import datetime

from frappe import _

from flow_engine.kinds.base import Park, StepCall, StepFailed, ensure_doctype
from flow_engine.runtime import clock, store, waits


def wait_for(call: StepCall) -> Park:
	payload, raw = call.payload, call.raw_payload
	step = call.step
	seconds = _timeout_seconds(payload.get("timeout_hours"))
	expires_at = clock.now() + datetime.timedelta(seconds=seconds) if seconds else None
	custom_event = payload.get("custom_event")
	if custom_event:
		key = payload.get("correlation_key")
		if key in (None, ""):
			raise StepFailed(
				_(
					"wait_for: the correlation key rendered empty (from {0!r}); check the step's correlation_key"
				).format(raw.get("correlation_key"))
			)
		wait = waits.add(
			call.run,
			step.id,
			call.template,
			custom_event=str(custom_event),
			correlation_key=str(key),
			expires_at=expires_at,
		)
	else:
		doctype, event = payload.get("doctype"), payload.get("event")
		if not doctype or not event:
			raise StepFailed(_("wait_for needs a doctype and an event, or a custom_event"))
		ensure_doctype(str(doctype))
		filters = payload.get("filters") or {}
		if not isinstance(filters, dict):
			raise StepFailed(_("wait_for: 'filters' must be an object of field → value"))
		for field, value in filters.items():
			if value in (None, ""):  # an empty filter would match documents with no value at all
				raise StepFailed(
					_(
						"wait_for: filter '{0}' rendered empty (from {1!r}), so it would match any {2} without "
						"one; check the value or drop the filter"
					).format(field, (raw.get("filters") or {}).get(field), doctype)
				)
		condition = waits.render_condition(raw.get("condition"), call.context)
		wait = waits.add(
			call.run,
			step.id,
			call.template,
			doctype=str(doctype),
			event=str(event),
			filters=filters,
			condition=condition,
			expires_at=expires_at,
		)
	state = {"wait": wait}
	if expires_at:
		state["timeout_row"] = store.insert_pending(call.run, step.id, expires_at, "timeout")
		state["timeout_at"] = expires_at.isoformat(sep=" ")
		from flow_engine.runtime.steps import wake_timer_if_soon

		wake_timer_if_soon(expires_at, clock.now())
	return Park(waits.WAITING_FOR, state)


def _timeout_seconds(hours) -> float | None:
	if hours not in (None, ""):
		try:
			value = float(hours)
		except (TypeError, ValueError):
			raise StepFailed(
				_("wait_for: timeout_hours must be a number of hours, not {0!r}").format(hours)
			) from None
		if value <= 0:
			raise StepFailed(_("wait_for: timeout_hours must be positive, not {0!r}").format(hours))
		return value * 3600
	return None
