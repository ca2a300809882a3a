"""The pure engine: definition language, validation, conditions, templates, planner and timing.

Nothing in this package imports frappe; it is what the core test tier checks on any machine.
"""
