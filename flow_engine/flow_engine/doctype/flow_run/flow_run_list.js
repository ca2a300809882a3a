frappe.listview_settings["Flow Run"] = {
	add_fields: ["status"],
	get_indicator(doc) {
		const colours = { queued: "yellow", running: "blue", waiting: "orange", completed: "green", failed: "red", cancelled: "gray" };
		return [__(doc.status), colours[doc.status] || "gray", "status,=," + doc.status];
	},
};
