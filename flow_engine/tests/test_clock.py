import datetime

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import get_datetime, now_datetime

from flow_engine.runtime import clock


class TestClock(FrappeTestCase):
	def test_matches_frappe_now_in_the_site_time_zone(self):
		frappe.local.flow_engine_zone = None
		ours, frappes = clock.now(), now_datetime()
		self.assertIsNone(ours.tzinfo)
		self.assertLess(abs((frappes - ours).total_seconds()), 1)
		self.assertEqual(str(clock.site_zone()), frappe.get_system_settings("time_zone"))

	def test_follows_frozen_time_in_tests(self):
		frozen = get_datetime("2025-03-09 01:59:30")  # a DST edge in America/New_York
		with self.freeze_time(frozen):
			self.assertEqual(clock.now().replace(microsecond=0), now_datetime().replace(microsecond=0))
			self.assertEqual(clock.now().replace(microsecond=0), frozen)

	def test_reads_the_zone_without_loading_system_settings(self):
		frappe.local.flow_engine_zone = None
		had = getattr(frappe.local, "system_settings", None)
		if had is not None:
			del frappe.local.system_settings
		try:
			self.assertEqual(
				str(clock.site_zone()), frappe.db.get_single_value("System Settings", "time_zone")
			)
			self.assertIsInstance(clock.now(), datetime.datetime)
		finally:
			if had is not None:
				frappe.local.system_settings = had
