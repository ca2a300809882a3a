import datetime

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import get_datetime, get_system_timezone, now_datetime

from flow_engine.runtime import clock


class TestClock(FrappeTestCase):
	def test_matches_frappe_now_in_the_site_time_zone(self):
		frappe.local.flow_engine_zone = None
		ours, frappes = clock.now(), now_datetime()
		self.assertIsNone(ours.tzinfo)
		self.assertLess(abs((frappes - ours).total_seconds()), 1)
		self.assertEqual(str(clock.site_zone()), get_system_timezone())  # Frappe's default when unset

	def test_follows_frozen_time_in_tests(self):
		frozen = get_datetime("2025-03-09 01:59:30")  # the night New York springs forward
		with self.freeze_time(frozen):
			self.assertEqual(clock.now().replace(microsecond=0), now_datetime().replace(microsecond=0))
			self.assertEqual(clock.now().replace(microsecond=0), frozen)

	def test_reads_the_zone_without_loading_system_settings(self):
		frappe.local.flow_engine_zone = None
		had = getattr(frappe.local, "system_settings", None)
		if had is not None:
			del frappe.local.system_settings
		try:
			self.assertEqual(str(clock.site_zone()), get_system_timezone())
			self.assertIsInstance(clock.now(), datetime.datetime)
		finally:
			if had is not None:
				frappe.local.system_settings = had
