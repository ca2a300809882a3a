// Kind icons come from the catalog; fall back to an existing Frappe icon when the sprite lacks one.
const FALLBACK = { clock: "es-line-time", repeat: "refresh", "setting-gear": "setting-gear" };

function exists(name) {
	const id = name.startsWith("es-") ? name : `icon-${name}`;
	return Boolean(document.getElementById(id));
}

export function kindIcon(name, size = "sm") {
	let icon = name || "es-line-settings";
	if (!exists(icon)) icon = FALLBACK[icon] && exists(FALLBACK[icon]) ? FALLBACK[icon] : "es-line-settings";
	return frappe.utils.icon(icon, size);
}
