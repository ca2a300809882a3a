"""Dashboard chart source: failure rate or p95 duration per flow (flow_engine.api.insight)."""

import frappe
from frappe.utils.dashboard import cache_source

from flow_engine.api import insight
from flow_engine.flow_engine.dashboard_chart_source.flow_runs_per_day.flow_runs_per_day import chart_filters


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
	return {
		**insight.flow_performance(
			metric=filters.get("metric") or "failure_rate",
			days=filters.get("days") or 30,
			limit=filters.get("limit") or 10,
		),
		"type": "bar",
	}
