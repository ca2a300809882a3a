"""The Frappe shell around the engine: runs, triggers, scheduler, templates and context."""
