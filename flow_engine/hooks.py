app_name = "flow_engine"
app_title = "Flow Engine"
app_publisher = "flow_engine developers"
app_description = "Durable multi-step automations (flows) for Frappe and ERPNext"
app_email = "dev@flow-engine.local"
app_license = "MIT"

# Desk: the "Flows" menu on every form (the Flow Editor page loads its own bundle on demand)
app_include_js = ["flows_menu.bundle.js"]
# the Flow Template form's run counts and last failures (flow_template.js stays the form's own)
doctype_js = {"Flow Template": "public/js/flow_template_insight.js"}

# Install
before_install = "flow_engine.install.before_install"
after_install = "flow_engine.install.after_install"
after_migrate = "flow_engine.install.after_migrate"
after_app_install = "flow_engine.install.after_app_install"
before_uninstall = "flow_engine.install.before_uninstall"

# Triggers: one cheap "*" handler per event (see flow_engine/runtime/triggers.py)
_on = "flow_engine.runtime.triggers.on_doc_event"
doc_events = {
	"*": {
		"after_insert": _on,
		"on_update": _on,
		"on_submit": _on,
		"on_cancel": _on,
		"on_trash": _on,
		"on_update_after_submit": _on,
		# one handler for any change: dispatch_job's close webhook (a job of any doctype turning
		# completed) and wait_for steps waiting for a change
		"on_change": "flow_engine.runtime.triggers.on_doc_change",
	},
	# business events read a value turning on (Contract signed, Quotation Ordered by db_set, …) on
	# on_change, which runs after every save, submit and db_set: see flow_engine/engine/business_events.py
	**{doctype: {"on_change": _on} for doctype in ("Contract", "Quotation", "Subscription", "Task", "ToDo")},
	"User": {"on_change": "flow_engine.runtime.identity.forget_run_as"},  # Run As read once a second
}

# Scheduler: claim due pending steps every minute (a timer job gives sub-second precision)
scheduler_events = {
	"cron": {
		"* * * * *": ["flow_engine.runtime.scheduler.tick"],
	},
	# retention: delete old runs and clear old step data in small batches (Flow Engine Settings)
	"daily_long": ["flow_engine.runtime.retention.run"],
}

# Flow Approval: approvers see (and decide) the approvals assigned to them; Flow Managers see all
permission_query_conditions = {"Flow Approval": "flow_engine.runtime.approvals.query_conditions"}
has_permission = {"Flow Approval": "flow_engine.runtime.approvals.has_permission"}

# Kinds other apps register (see flow_engine/kinds/registry.py); flow_engine's own are built in.
flow_engine_kinds = []

# Runs and their records are history: they never block deleting the documents (or the flows) they
# point at. Pinned versions stay, so finished runs remain readable after their flow is deleted.
# Flow Secrets extracted from a flow keep working for other flows when it is deleted.
ignore_links_on_delete = [
	"Flow Run",
	"Flow Step Attempt",
	"Flow Step Pending",
	"Flow Template Version",
	"Flow Secret",
	"Flow Wait",
	"Flow Approval",
]
