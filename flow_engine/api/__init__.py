"""Whitelisted API. Every endpoint checks permissions at the door, then calls the runtime.

Roles "Flow Manager" and "System Manager" may edit and run flows. Users who can read a document
may list that document's runs (status and step states only). External systems complete
`on_webhook` steps through `callback` with the step's secret token (no login).

The endpoints live in modules by subject (runs, callback, flows, schedules; permissions holds the
door checks); they are re-exported here so their public paths stay `flow_engine.api.<method>`.
The design's HTTP surface for integrators, with its own argument names, is `flow_engine.api.design.<method>`.
"""

from flow_engine.api import design
from flow_engine.api.callback import CallbackRejected, callback
from flow_engine.api.flows import dry_run, duplicate_template, kinds, validate
from flow_engine.api.permissions import (
	FLOW_ROLES,
	check_doc_read,
	is_flow_manager,
	json_arg,
	require_flow_manager,
)
from flow_engine.api.runs import (
	advance,
	cancel_run,
	complete_step,
	dispatch_event,
	get_run,
	list_runs,
	retry_run,
	start_run,
)
from flow_engine.api.schedules import check_schedule, list_schedules, pause_schedule, resume_schedule

__all__ = [
	"FLOW_ROLES",
	"CallbackRejected",
	"advance",
	"callback",
	"cancel_run",
	"check_doc_read",
	"check_schedule",
	"complete_step",
	"design",
	"dispatch_event",
	"dry_run",
	"duplicate_template",
	"get_run",
	"is_flow_manager",
	"json_arg",
	"kinds",
	"list_runs",
	"list_schedules",
	"pause_schedule",
	"require_flow_manager",
	"resume_schedule",
	"retry_run",
	"start_run",
	"validate",
]
