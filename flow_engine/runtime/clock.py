"""Site-local wall-clock time, the way Frappe stores datetimes (naive, in the site's time zone).

Gives the same value as `frappe.utils.now_datetime()` without its first-call cost in a fresh worker
job: that path unpickles the System Settings document (importing controllers down to PIL) and has
pytz list every time zone on disk, which cost a short run more than all its steps together.
"""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import frappe

UTC = datetime.timezone.utc


def site_zone() -> datetime.tzinfo:
	"""The site's time zone (System Settings), read once per request or job."""
	zone = getattr(frappe.local, "flow_engine_zone", None)
	if zone is None:
		settings = getattr(frappe.local, "system_settings", None)
		if settings is not None:
			name = settings.get("time_zone")
		else:
			row = frappe.db.sql(
				"select value from `tabSingles` where doctype='System Settings' and field='time_zone'"
			)
			name = row[0][0] if row else None
		try:
			zone = ZoneInfo(name or "Asia/Kolkata")  # Frappe's own default when none is set
		except (ZoneInfoNotFoundError, ValueError):
			zone = UTC  # Frappe also keeps UTC when the configured zone is unknown
		frappe.local.flow_engine_zone = zone
	return zone


def now() -> datetime.datetime:
	return datetime.datetime.now(UTC).astimezone(site_zone()).replace(tzinfo=None)
