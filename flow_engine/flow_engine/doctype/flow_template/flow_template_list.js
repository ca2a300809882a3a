frappe.listview_settings["Flow Template"] = {
	add_fields: ["is_active", "is_system"],
	get_indicator(doc) {
		return doc.is_active ? [__("Active"), "green", "is_active,=,1"] : [__("Inactive"), "gray", "is_active,=,0"];
	},
};
