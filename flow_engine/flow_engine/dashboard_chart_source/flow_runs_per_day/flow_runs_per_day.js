frappe.provide("frappe.dashboards.chart_sources");

frappe.dashboards.chart_sources["Flow Runs per Day"] = {
	method: "flow_engine.flow_engine.dashboard_chart_source.flow_runs_per_day.flow_runs_per_day.get",
	filters: [
		{ fieldname: "days", label: __("Days"), fieldtype: "Int", default: 14 },
	],
};
