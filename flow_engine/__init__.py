__version__ = "0.1.0"


def dispatch_event(event, doc=None, payload=None):
	"""Raise a custom flow event from any app's code; see flow_engine.runtime.triggers."""
	from flow_engine.runtime.triggers import dispatch_event as _dispatch

	return _dispatch(event, doc=doc, payload=payload)
