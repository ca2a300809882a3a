"""Dashboard chart source: runs started per day, one dataset per status (flow_engine.api.insight)."""

import frappe
from frappe.utils.dashboard import cache_source

from flow_engine.api import insight


@frappe.whitelist()
@cache_source
def get(
	chart_name=None,
	chart=None,
	no_cache=None,
	filters=None,
	from_date=None,
	to_date=None,
	timespan=None,
	time_interval=None,
	heatmap_year=None,
):
	filters = chart_filters(chart_name or chart, filters)
	return {**insight.runs_per_day(days=filters.get("days") or 14), "type": "bar"}


def chart_filters(chart, filters) -> dict:
	"""The filters the Desk sends, else the chart's own (`cache_source` passes none with no_cache)."""
	filters = frappe.parse_json(filters) if filters else None
	if not filters and chart:
		doc = frappe.get_doc("Dashboard Chart", chart) if isinstance(chart, str) else chart
		filters = frappe.parse_json(doc.get("filters_json") or "{}")
	return frappe._dict(filters if isinstance(filters, dict) else {})
