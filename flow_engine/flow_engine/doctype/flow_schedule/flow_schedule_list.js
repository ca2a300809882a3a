frappe.listview_settings["Flow Schedule"] = {
	add_fields: ["status", "enabled"],
	get_indicator(doc) {
		const colours = { Active: "green", Paused: "orange", Done: "gray", Invalid: "red" };
		return [__(doc.status), colours[doc.status] || "gray", "status,=," + doc.status];
	},
};
