"""Insight (flow_engine/api/insight.py, the number cards, dashboard charts and chart sources shipped
in the Flow Engine module): the records exist after migrate, their figures are right on seeded runs,
the Flow Template form's counts, the workspace without test doctypes, and the permission door.
"""

from __future__ import annotations

import datetime
import json

import frappe
from frappe.desk.doctype.number_card.number_card import get_result
from frappe.utils import add_to_date

from flow_engine.api import insight
from flow_engine.flow_engine.dashboard_chart_source.flow_performance import flow_performance
from flow_engine.flow_engine.dashboard_chart_source.flow_runs_per_day import flow_runs_per_day
from flow_engine.runtime import clock, store
from flow_engine.tests.utils import (
	TEST_DOCTYPE,
	FlowTestCase,
	ensure_test_doctype,
	ensure_user,
	insert_run,
	make_flow,
)

CARDS = ("Flow Runs Today", "Failed Flow Runs (7 Days)", "Due Flow Steps", "Waiting Flow Runs")
CHARTS = ("Flow Runs per Day", "Flow Runs by Status", "Flow Failure Rate", "Flow p95 Duration")
SOURCES = ("Flow Runs per Day", "Flow Performance")


def seed(
	template: str,
	status: str,
	ended_days_ago: float = 0,
	seconds: float = 1,
	error: str | None = None,
	failed_step: str | None = None,
	created: datetime.datetime | None = None,
) -> str:
	"""A run that started `seconds` before it ended `ended_days_ago` days ago (open runs: not ended)."""
	ended = add_to_date(clock.now(), days=-ended_days_ago)
	started = add_to_date(ended, seconds=-seconds)
	states = {failed_step: {"status": "failed", "error": error}} if failed_step else {}
	return insert_run(
		template,
		status,
		started,
		ended,
		creation=created or started,
		modified=ended,
		error=error,
		step_state=states,
	)


def pending_row(run: str, due_in_minutes: float, status: str = "pending") -> str:
	return store.insert_row(
		"Flow Step Pending",
		{
			"run": run,
			"step_id": "d",
			"purpose": "delay",
			"trigger_at": add_to_date(clock.now(), minutes=due_in_minutes),
			"status": status,
			"attempts": 0,
			"claims": 0,
		},
	)


def card_value(name: str) -> float:
	card = frappe.get_doc("Number Card", name)
	if card.type == "Custom":
		return frappe.get_attr(card.method)(filters=card.filters_json)["value"]
	return get_result(card.as_dict(), card.filters_json)


class TestInsight(FlowTestCase):
	def setUp(self):
		super().setUp()
		self.flow = make_flow("insight", [{"id": "w", "kind": "wait", "trigger": {"type": "manual"}}]).name

	def test_cards_charts_and_sources_are_standard_records_after_migrate(self):
		for doctype, names in (
			("Number Card", CARDS),
			("Dashboard Chart", CHARTS),
			("Dashboard Chart Source", SOURCES),
		):
			for name in names:
				values = frappe.db.get_value(doctype, name, ["module", "name"], as_dict=True)
				self.assertTrue(values, f"{doctype} {name} missing")
				self.assertEqual(values.module, "Flow Engine")
				if doctype != "Dashboard Chart Source":
					self.assertEqual(frappe.db.get_value(doctype, name, "is_standard"), 1)
		workspace = frappe.get_doc("Workspace", "Flow Engine")
		self.assertEqual([row.number_card_name for row in workspace.number_cards], list(CARDS))
		self.assertEqual([row.chart_name for row in workspace.charts], list(CHARTS))
		blocks = json.loads(workspace.content)
		self.assertEqual(
			[block["data"]["number_card_name"] for block in blocks if block["type"] == "number_card"],
			list(CARDS),
		)
		self.assertEqual(
			[block["data"]["chart_name"] for block in blocks if block["type"] == "chart"], list(CHARTS)
		)

	def test_number_cards_count_the_seeded_runs(self):
		before = {name: card_value(name) for name in CARDS}
		seed(self.flow, "running")
		waiting = seed(self.flow, "waiting")
		seed(self.flow, "completed")
		# failed 2 days ago (counted) and 10 days ago (not): neither started today
		seed(self.flow, "failed", ended_days_ago=2, error="boom")
		seed(self.flow, "failed", ended_days_ago=10, error="boom")
		# due: two pending rows whose time has passed; not due: a future one and a completed one
		pending_row(waiting, -5)
		pending_row(waiting, -1)
		pending_row(waiting, 30)
		pending_row(waiting, -5, status="completed")
		frappe.db.commit()
		after = {name: card_value(name) for name in CARDS}
		self.assertEqual(
			{name: after[name] - before[name] for name in CARDS},
			{
				"Flow Runs Today": 3,
				"Failed Flow Runs (7 Days)": 1,
				"Due Flow Steps": 2,
				"Waiting Flow Runs": 1,
			},
		)

	def test_runs_per_day_by_status(self):
		def by_status(data):
			return {
				dataset["name"]: dict(zip(data["labels"], dataset["values"], strict=True))
				for dataset in data["datasets"]
			}

		today = clock.now().date().strftime("%b %d")
		yesterday = (clock.now().date() - datetime.timedelta(days=1)).strftime("%b %d")
		before = by_status(flow_runs_per_day.get(chart_name="Flow Runs per Day", refresh=1))
		seed(self.flow, "completed")
		seed(self.flow, "completed")
		seed(self.flow, "failed", created=add_to_date(clock.now(), days=-1))
		frappe.db.commit()
		data = flow_runs_per_day.get(chart_name="Flow Runs per Day", refresh=1)
		self.assertEqual(len(data["labels"]), 14, "the chart's filter: 14 days")
		self.assertEqual(data["labels"][-1], today)
		after = by_status(data)
		self.assertEqual(list(after), ["queued", "running", "waiting", "completed", "failed", "cancelled"])
		self.assertEqual(after["completed"][today] - before["completed"][today], 2)
		self.assertEqual(after["failed"][yesterday] - before["failed"][yesterday], 1)

	def test_failure_rate_and_p95_duration_per_flow_on_known_data(self):
		other = make_flow("insight other", [{"id": "w", "kind": "wait", "trigger": {"type": "manual"}}]).name
		# this flow: 19 completed runs of 1..19 s and one failed of 20 s -> 5 %, p95 = 19 s
		for seconds in range(1, 20):
			seed(self.flow, "completed", ended_days_ago=1, seconds=seconds)
		seed(self.flow, "failed", ended_days_ago=1, seconds=20, error="boom")
		# the other: 10, 20, 30 s completed and 40 s failed -> 25 %, p95 = 40 s; a cancelled run and a
		# failure 40 days ago do not count, nor does an open run
		for seconds in (10, 20, 30):
			seed(other, "completed", ended_days_ago=2, seconds=seconds)
		seed(other, "failed", ended_days_ago=2, seconds=40, error="boom")
		seed(other, "cancelled", ended_days_ago=2, seconds=500)
		seed(other, "failed", ended_days_ago=40, seconds=900, error="old")
		seed(other, "running", seconds=1000)
		frappe.db.commit()

		stats = insight.flow_stats(30)
		self.assertEqual(
			stats[self.flow], {"completed": 19, "failed": 1, "failure_rate": 5.0, "p95_duration": 19.0}
		)
		self.assertEqual(
			stats[other], {"completed": 3, "failed": 1, "failure_rate": 25.0, "p95_duration": 40.0}
		)

		# through the charts' source, as the workspace asks for them
		for metric, expected in (("failure_rate", (5.0, 25.0)), ("p95_duration", (19.0, 40.0))):
			chart = "Flow Failure Rate" if metric == "failure_rate" else "Flow p95 Duration"
			filters = json.dumps({"metric": metric, "days": 30, "limit": 1000})
			data = flow_performance.get(chart_name=chart, filters=filters, refresh=1)
			values = dict(zip(data["labels"], data["datasets"][0]["values"], strict=True))
			self.assertEqual((values[self.flow], values[other]), expected, metric)
			self.assertEqual(
				data["datasets"][0]["values"], sorted(data["datasets"][0]["values"], reverse=True)
			)
		# the chart's own filters (top 10) when the Desk sends none
		data = flow_performance.get(chart_name="Flow Failure Rate", refresh=1)
		self.assertLessEqual(len(data["labels"]), 10)

	def test_template_counts_and_last_failures(self):
		for _ in range(2):
			seed(self.flow, "completed", ended_days_ago=1, seconds=5)
		seed(self.flow, "waiting")
		failed = [
			seed(
				self.flow,
				"failed",
				ended_days_ago=1 - index / 100,
				error=f"error {index}",
				failed_step=f"step{index}",
			)
			for index in range(6)
		]
		frappe.db.commit()

		data = insight.template_insight(self.flow)

		self.assertEqual(
			data["counts"],
			{"queued": 0, "running": 0, "waiting": 1, "completed": 2, "failed": 6, "cancelled": 0},
		)
		self.assertEqual(data["total"], 9)
		self.assertEqual(data["failure_rate_30d"], 75.0)
		self.assertEqual([row["run"] for row in data["last_failures"]], failed[::-1][:5], "newest first")
		first = data["last_failures"][0]
		self.assertEqual((first["error"], first["step"]), ("error 5", "step5"))
		self.assertRaises(frappe.DoesNotExistError, insight.template_insight, "no such flow")

	def test_the_workspace_does_not_list_the_test_doctype(self):
		from frappe.desk.desktop import get_desktop_page

		# a site whose test doctype was made before it moved out of the Flow Engine module
		frappe.db.set_value("DocType", TEST_DOCTYPE, "module", "Flow Engine", update_modified=False)
		frappe.db.commit()
		ensure_test_doctype()
		self.assertEqual(frappe.db.get_value("DocType", TEST_DOCTYPE, "module"), "Custom")
		page = get_desktop_page(json.dumps({"name": "Flow Engine", "title": "Flow Engine"}))
		links = [link.get("link_to") for card in page["cards"]["items"] for link in card.get("links", [])]
		self.assertIn("Flow Run", links)
		self.assertNotIn(TEST_DOCTYPE, links)
		self.assertEqual([item.get("chart_name") for item in page["charts"]["items"]], list(CHARTS))

	def test_a_user_without_flow_rights_is_refused(self):
		low = ensure_user("flow-insight-low@example.com", ["Blogger"])
		manager = ensure_user("flow-insight-manager@example.com", ["Flow Manager"])
		frappe.set_user(low)
		self.assertRaises(frappe.PermissionError, insight.template_insight, self.flow)
		self.assertRaises(frappe.PermissionError, insight.failed_runs_card)
		self.assertRaises(frappe.PermissionError, insight.due_backlog_card)
		self.assertRaises(
			frappe.PermissionError, flow_performance.get, chart_name="Flow Failure Rate", refresh=1
		)
		self.assertRaises(
			frappe.PermissionError, flow_runs_per_day.get, chart_name="Flow Runs per Day", refresh=1
		)
		frappe.set_user(manager)
		self.assertEqual(insight.template_insight(self.flow)["total"], 0)
