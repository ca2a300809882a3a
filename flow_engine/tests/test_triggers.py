import json

import frappe

from flow_engine.runtime import triggers
from flow_engine.tests.utils import (
	PREFIX,
	TEST_DOCTYPE,
	FlowTestCase,
	make_flow,
	new_test_doc,
	run_in_subprocess,
	run_of,
	runs_of,
)

COMMENT = [{"id": "c", "kind": "comment", "payload": {"text": "fired on {{doc.title}}"}}]


class TestTriggers(FlowTestCase):
	def _assert_fires_after_commit(self, event, action, **flow):
		template = make_flow(f"event {event}", COMMENT, event=event, **flow).name
		doc = new_test_doc(title=f"t-{event}")
		frappe.db.commit()
		before = set(runs_of(template))
		action(doc)
		new = set(runs_of(template)) - before
		self.assertEqual(len(new), 1, f"{event} did not create exactly one run")
		self.assertEqual(run_of(template, name=new.pop()).status, "running", "advanced before the commit")
		frappe.db.commit()
		after = set(runs_of(template)) - before
		record = run_of(template, name=after.pop())
		self.assertEqual(record.status, "completed")
		self.assertEqual(record.trigger_event, event)
		return template, doc

	def test_a_map_rebuilt_by_another_process_before_the_commit_is_forgotten_at_commit(self):
		"""A flow saved while another process saves documents: that process may rebuild the trigger
		map between the save's clear and its commit (from what is committed, without the flow)."""
		template = frappe.get_doc(
			{
				"doctype": "Flow Template",
				"template_name": f"{PREFIX}map race",
				"trigger_doctype": TEST_DOCTYPE,
				"trigger_event": "after_insert",
				"is_active": 1,
				"flow_definition": json.dumps({"version": 1, "steps": COMMENT}),
			}
		).insert()  # clears the map, not committed yet
		out = run_in_subprocess(
			"from flow_engine.runtime import triggers\n"
			"frappe.cache.delete_value(triggers.CACHE_KEY)\n"
			f"print({template.name!r} in str(triggers.get_trigger_map()))\n"
		)
		self.assertEqual(out.strip().splitlines()[-1], "False", "the other process cached a map without it")
		frappe.db.commit()
		frappe.local.flags.flow_engine_trigger_map = None
		frappe.local.cache.clear()  # (what this process read from Redis before: read it again)
		self.assertIn(template.name, str(triggers.get_trigger_map()["doctypes"].get(TEST_DOCTYPE)))

	def test_after_insert(self):
		template = make_flow("insert", COMMENT, event="after_insert").name
		doc = new_test_doc(title="new")
		frappe.db.commit()
		self.assertEqual(run_of(template).reference_name, doc.name)
		self.assertTrue(frappe.db.exists("Comment", {"reference_name": doc.name, "content": "fired on new"}))

	def test_on_update(self):
		self._assert_fires_after_commit("on_update", lambda doc: doc.save())
		template = make_flow("update on insert", COMMENT, event="on_update").name
		new_test_doc()
		frappe.db.commit()
		self.assertEqual(len(runs_of(template)), 1, "on_update also fires when a document is first saved")

	def test_on_submit_cancel_and_update_after_submit(self):
		self._assert_fires_after_commit("on_submit", lambda doc: doc.submit())
		template = make_flow("cancel", COMMENT, event="on_cancel").name
		doc = new_test_doc()
		doc.submit()
		doc.cancel()
		frappe.db.commit()
		self.assertEqual(run_of(template).status, "completed")
		template = make_flow("after submit", COMMENT, event="on_update_after_submit").name
		doc = new_test_doc()
		doc.submit()
		doc.notes = "changed after submit"
		doc.save()
		frappe.db.commit()
		self.assertEqual(len(runs_of(template)), 1)

	def test_on_trash_keeps_a_snapshot(self):
		template = make_flow(
			"trash",
			[{"id": "v", "kind": "set_variables", "payload": {"variables": {"title": "{{doc.title}}"}}}],
			event="on_trash",
		).name
		doc = new_test_doc(title="gone soon")
		frappe.db.commit()
		doc.delete()
		frappe.db.commit()
		record = run_of(template)
		self.assertEqual(record.status, "completed")
		self.assertEqual(record.variables["title"], "gone soon")

	def test_value_changed(self):
		template = make_flow("changed", COMMENT, event="value_changed", field="status").name
		doc = new_test_doc(status="Open")
		frappe.db.commit()
		self.assertEqual(runs_of(template), [], "value_changed must not fire on insert")
		doc.title = "other field"
		doc.save()
		frappe.db.commit()
		self.assertEqual(runs_of(template), [])
		doc.status = "Closed"
		doc.save()
		frappe.db.commit()
		self.assertEqual(len(runs_of(template)), 1)

	def test_rollback_starts_nothing(self):
		actions = {
			"after_insert": lambda doc: None,
			"on_update": lambda doc: doc.save(),
			"on_submit": lambda doc: doc.submit(),
			"on_trash": lambda doc: doc.delete(),
		}
		for event, action in actions.items():
			template = make_flow(f"rollback {event}", COMMENT, event=event).name
			doc = new_test_doc(title="rolled back")
			if event != "after_insert":
				frappe.db.commit()
				frappe.db.delete("Flow Run", {"template": template})
				frappe.db.commit()
			action(doc)
			self.assertEqual(len(runs_of(template)), 1, event)
			frappe.db.rollback()
			self.assertEqual(runs_of(template), [], f"{event}: a rolled-back save left a run")
			frappe.db.commit()
			self.assertEqual(runs_of(template), [], event)

	def test_condition_filters(self):
		template = make_flow(
			"condition", COMMENT, event="after_insert", condition={"field": "amount", "op": ">", "value": 100}
		).name
		new_test_doc(amount=5)
		big = new_test_doc(amount=500)
		frappe.db.commit()
		self.assertEqual([run_of(template).reference_name], [big.name])
		self.assertEqual(len(runs_of(template)), 1)

	def test_conditions_read_a_document_as_its_dict(self):
		from flow_engine.engine import conditions
		from flow_engine.engine.templating import lookup
		from flow_engine.runtime.context import DocView

		contact = frappe.get_doc(
			{
				"doctype": "Contact",
				"first_name": "Ada",
				"unsubscribed": 1,
				"email_ids": [{"email_id": "ada@example.com", "is_primary": 1}],
			}
		)
		contact.creation = frappe.utils.get_datetime("2026-01-02 03:04:05.000006")
		plain, view = contact.as_dict(convert_dates_to_str=True), DocView(contact)
		for field in [*plain, "email_ids.0.email_id", "email_ids.0.is_primary", "nothing", "flags", "_meta"]:
			self.assertEqual(lookup(view, field), lookup(plain, field), field)
		self.assertEqual(set(view), set(plain))
		self.assertEqual(view["creation"], "2026-01-02 03:04:05.000006")
		for condition in (
			{"field": "email_ids.0.email_id", "op": "ends_with", "value": "@example.com"},
			{"field": "creation", "op": "<", "value": "2026-02-01"},
			{"field": "unsubscribed", "op": "==", "value": True},
			{"and": [{"==": [{"var": "doc.first_name"}, "Ada"]}, {"var": "doc.email_ids.0.is_primary"}]},
		):
			self.assertTrue(conditions.evaluate(condition, {"doc": view}), condition)
			self.assertTrue(conditions.evaluate(condition, {"doc": plain}), condition)

	def test_jsonlogic_condition(self):
		template = make_flow(
			"jsonlogic",
			COMMENT,
			event="after_insert",
			condition={"and": [{"==": [{"var": "doc.status"}, "Open"]}, {">=": [{"var": "doc.amount"}, 10]}]},
		).name
		new_test_doc(amount=1)
		new_test_doc(amount=10)
		frappe.db.commit()
		self.assertEqual(len(runs_of(template)), 1)

	def test_inactive_flows_do_not_fire(self):
		template = make_flow("inactive", COMMENT, event="after_insert", active=False).name
		new_test_doc()
		frappe.db.commit()
		self.assertEqual(runs_of(template), [])

	def test_flow_updating_its_own_trigger_document_does_not_loop(self):
		template = make_flow(
			"self update",
			[{"id": "u", "kind": "update_doc", "payload": {"fields": {"notes": "touched by the flow"}}}],
			event="on_update",
		).name
		doc = new_test_doc()
		frappe.db.commit()
		doc.reload()
		doc.title = "save once"
		doc.save()
		frappe.db.commit()
		runs = runs_of(template)
		# the insert fires on_update, the user's save fires it again; the flow's own saves never do
		self.assertEqual(len(runs), 2)
		self.assertEqual(frappe.db.get_value(TEST_DOCTYPE, doc.name, "notes"), "touched by the flow")
		self.assertTrue(all(run_of(template, name=name).status == "completed" for name in runs))

	def test_a_broken_flow_never_breaks_the_save(self):
		template = make_flow("broken", COMMENT, event="after_insert").name
		frappe.db.set_value(
			"Flow Template",
			template,
			"trigger_condition",
			json.dumps({"field": "status", "op": "~~", "value": 1}),
		)
		frappe.db.commit()
		triggers.clear_trigger_map()
		errors_before = frappe.db.count("Error Log")
		doc = new_test_doc(title="still saved")
		frappe.db.commit()
		self.assertTrue(frappe.db.exists(TEST_DOCTYPE, doc.name))
		self.assertEqual(runs_of(template), [])
		self.assertGreater(frappe.db.count("Error Log"), errors_before)

	def test_skipped_during_import_and_migrate(self):
		template = make_flow("import", COMMENT, event="after_insert").name
		for flag in ("in_import", "in_migrate", "in_patch", "in_install"):
			frappe.flags[flag] = True
			try:
				new_test_doc()
			finally:
				frappe.flags[flag] = False
		frappe.db.commit()
		self.assertEqual(runs_of(template), [])

	def test_custom_events(self):
		from flow_engine import dispatch_event

		template = make_flow(
			"custom",
			[
				{
					"id": "v",
					"kind": "set_variables",
					"payload": {"variables": {"got": "{{input.order}} {{doc.title}}"}},
				}
			],
			event="custom",
			custom_event="order_paid",
			doctype=None,
		).name
		doc = new_test_doc(title="paid")
		started = dispatch_event("order_paid", doc=doc, payload={"order": "SO-1"})
		self.assertEqual(len(started), 1)
		self.assertEqual(dispatch_event("nobody_listens"), [])
		frappe.db.commit()
		record = run_of(template)
		self.assertEqual((record.status, record.source), ("completed", "custom"))
		self.assertEqual(record.variables["got"], "SO-1 paid")

	def test_trigger_map_is_cached_and_invalidated(self):
		triggers.clear_trigger_map()
		self.assertNotIn(TEST_DOCTYPE, triggers.get_trigger_map()["doctypes"])
		make_flow("cache", COMMENT, event="after_insert")
		self.assertIn(TEST_DOCTYPE, triggers.get_trigger_map()["doctypes"])

	def test_many_flows_with_equality_conditions_are_found_by_lookup_and_start_as_evaluated(self):
		"""Flows whose condition is `field == text` are looked up by the document's value; the others are
		evaluated; together they start exactly the flows their conditions pick."""
		by_title = {
			title: make_flow(
				f"index {position}",
				COMMENT,
				event="after_insert",
				condition={"field": "doc.title", "op": "==", "value": title},
			).name
			for position, title in enumerate(("alpha", "beta", "Alpha"))
		}
		big = make_flow(
			"index big", COMMENT, event="after_insert", condition={"field": "amount", "op": ">", "value": 5}
		).name
		triggers.clear_trigger_map()
		index = triggers.get_trigger_map()["doctypes"][TEST_DOCTYPE][triggers.INDEX_KEY]["after_insert"]
		self.assertEqual(set(index["fields"]["title"]), {"alpha", "beta", "Alpha"})
		self.assertEqual(len(index["rest"]), 1, "the amount condition is evaluated")
		new_test_doc(title="alpha", amount=10)
		new_test_doc(title="gamma", amount=1)
		new_test_doc(title="beta", amount=1)
		frappe.db.commit()
		self.assertEqual(
			{name: len(runs_of(name)) for name in (*by_title.values(), big)},
			{by_title["alpha"]: 1, by_title["beta"]: 1, by_title["Alpha"]: 0, big: 1},
		)
