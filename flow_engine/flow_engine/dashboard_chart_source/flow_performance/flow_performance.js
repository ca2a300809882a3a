frappe.provide("frappe.dashboards.chart_sources");

frappe.dashboards.chart_sources["Flow Performance"] = {
	method: "flow_engine.flow_engine.dashboard_chart_source.flow_performance.flow_performance.get",
	filters: [
		{
			fieldname: "metric",
			label: __("Metric"),
			fieldtype: "Select",
			options: "failure_rate\np95_duration",
			default: "failure_rate",
		},
		{ fieldname: "days", label: __("Days"), fieldtype: "Int", default: 30 },
		{ fieldname: "limit", label: __("Flows"), fieldtype: "Int", default: 10 },
	],
};
