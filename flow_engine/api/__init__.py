"""Whitelisted API. Every endpoint checks permissions at the door, then calls the runtime.

Roles "Flow Manager" and "System Manager" may edit and run flows. Users who can read a document
may list that document's runs (status and step states only). External systems complete
`on_webhook` steps through `callback` with the step's secret token (no login).

The endpoints live in modules by subject (runs, callback, flows, versions, schedules; permissions holds the
door checks); they are re-exported here so their public paths stay `flow_engine.api.<method>`.
The design's HTTP surface for integrators, with its own argument names, is `flow_engine.api.design.<method>`.
"""

from flow_engine.api import design
from flow_engine.api.callback import CallbackRejected, callback
from flow_engine.api.flows import dry_run, duplicate_template, kinds, validate
from flow_engine.api.inbox import (
	cancel_runs,
	compare_runs,
	failure_inbox,
	replay_from_step,
	replay_run,
	retry_runs,
	skip_failed_steps,
	step_input,
)
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
from flow_engine.api.versions import (
	compare_versions,
	discard_draft,
	flow_versions,
	migrate_runs,
	migration_report,
	publish_flow,
	rollback_flow,
)

__all__ = [
	"FLOW_ROLES",
	"CallbackRejected",
	"advance",
	"callback",
	"cancel_run",
	"cancel_runs",
	"check_doc_read",
	"check_schedule",
	"compare_runs",
	"compare_versions",
	"complete_step",
	"design",
	"discard_draft",
	"dispatch_event",
	"dry_run",
	"duplicate_template",
	"failure_inbox",
	"flow_versions",
	"get_run",
	"is_flow_manager",
	"json_arg",
	"kinds",
	"list_runs",
	"list_schedules",
	"migrate_runs",
	"migration_report",
	"pause_schedule",
	"publish_flow",
	"replay_from_step",
	"replay_run",
	"require_flow_manager",
	"resume_schedule",
	"retry_run",
	"retry_runs",
	"rollback_flow",
	"skip_failed_steps",
	"start_run",
	"step_input",
	"validate",
]
