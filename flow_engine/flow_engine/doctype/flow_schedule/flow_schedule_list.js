frappe.listview_settings["Flow Schedule"] = {
	add_fields: ["status", "enabled"],
	hide_name_column: true,
	get_indicator(doc) {
		const colours = { Active: "green", Paused: "orange", Done: "gray", Invalid: "red" };
		return [__(doc.status), colours[doc.status] || "gray", "status,=," + doc.status];
	},
};
