"""Give every existing flow a Run As user (issue 10): steps no longer fall back to Administrator.

A flow with an empty Run As ran as Administrator; it now runs as whoever last changed it
(`modified_by`, else its owner) — Administrator only when that is who it was. A system flow nobody
has touched since it was seeded keeps an empty Run As: activating it sets one.
"""

import frappe


def execute():
	rows = frappe.db.sql(
		"""select name, run_as, owner, modified_by, modified, is_system, is_active, last_changed_by
		from `tabFlow Template` where ifnull(run_as, '') = '' or ifnull(last_changed_by, '') = ''""",
		as_dict=True,
	)
	for row in rows:
		user = row.modified_by or row.owner
		if row.is_system and not row.is_active and user == "Administrator":
			continue  # untouched seed: it asks for a Run As user when activated
		values = {}
		if not row.run_as:
			values["run_as"] = user
		if not row.last_changed_by:
			values.update(last_changed_by=user, last_changed_on=row.modified)
		if values:
			frappe.db.set_value("Flow Template", row.name, values, update_modified=False)
