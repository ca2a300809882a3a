"""The design's business events (engine/business_events.py) and its example flows (seeds)."""

import ast
import copy
import datetime
import json
from pathlib import Path

import pytest

from flow_engine.engine import business_events, vocabulary
from flow_engine.engine.business_events import EVENTS, is_raised, variables
from flow_engine.engine.definition import compile_definition, load
from flow_engine.engine.dry_run import dry_run
from flow_engine.engine.validation import validate

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "flow_engine" / "seeds"
DESIGN_SEEDS = ("residential_onboarding", "quotation_accepted_follow_up", "payment_received")
APPS = ("frappe", "erpnext", "flow_engine")
MOMENT = datetime.datetime(2026, 5, 1, 9, 0)


def event(name: str, doctype: str | None = None):
	return next(e for e in EVENTS if e.name == name and (doctype is None or e.doctype == doctype))


def test_every_design_event_is_raised_by_the_app():
	assert set(business_events.NAMES) == set(vocabulary.DESIGN_EVENTS)
	with_erpnext = {e.name for e in EVENTS if e.available(APPS)}
	without = {e.name for e in EVENTS if e.available(("frappe", "flow_engine"))}
	assert with_erpnext == set(vocabulary.DESIGN_EVENTS)
	assert without == {"on_dispatch_completed"}  # a ToDo closing, on a site without ERPNext
	assert [e.doctype for e in business_events.events_named("on_dispatch_completed", APPS)] == ["Task"]


def test_hooks_send_on_change_of_every_doctype_the_table_reads_it_on():
	tree = ast.parse((ROOT / "flow_engine" / "hooks.py").read_text())
	names = next(
		node.value
		for node in tree.body
		if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "doc_events"
	)
	listed = {
		elt.value
		for node in ast.walk(names)
		if isinstance(node, ast.DictComp)
		for gen in node.generators
		for elt in getattr(gen.iter, "elts", [])
	}
	assert listed == set(business_events.ON_CHANGE_DOCTYPES)


@pytest.mark.parametrize(
	("now", "before", "raised"),
	[
		({"is_signed": 1}, {"is_signed": 0}, True),  # turned on
		({"is_signed": 1}, None, True),  # created signed
		({"is_signed": 1}, {"is_signed": 1}, False),  # saved again, still signed
		({"is_signed": 0}, {"is_signed": 1}, False),  # unsigned
		({"is_signed": 0}, None, False),
	],
)
def test_contract_signed_only_when_is_signed_turns_on(now, before, raised):
	ev = event("on_contract_signed")
	assert is_raised(ev, now.get, before.get if before is not None else None) is raised


def test_value_conditions():
	paid = event("on_payment_received")
	assert is_raised(paid, {"payment_type": "Receive"}.get, None)
	assert not is_raised(paid, {"payment_type": "Pay"}.get, None)
	accepted = event("on_quotation_accepted")
	assert is_raised(accepted, {"status": "Ordered"}.get, {"status": "Open"}.get)
	assert not is_raised(accepted, {"status": "Ordered"}.get, {"status": "Ordered"}.get)
	assert not is_raised(accepted, {"status": "Open"}.get, {"status": "Draft"}.get)
	active = event("on_subscription_active")
	assert is_raised(active, {"status": "Active"}.get, {"status": "Trialling"}.get)
	assert not is_raised(active, {"status": "Past Due Date"}.get, {"status": "Active"}.get)
	done = event("on_dispatch_completed", "Task")
	assert is_raised(done, {"status": "Completed"}.get, {"status": "Working"}.get)
	assert not is_raised(done, {"status": "Cancelled"}.get, {"status": "Working"}.get)


def test_variables_are_the_designs():
	doc = {"name": "CON-1", "contract_template": "Residential", "signed_on": None, "start_date": "2026-05-01"}
	got = variables(event("on_contract_signed"), doc.get, "2026-05-01 09:00:00")
	assert got["contract_type"] == "Residential"
	assert got["signed_at"] == "2026-05-01 09:00:00"  # signed without a date: now
	assert got["contract"] == "CON-1"
	paid = variables(event("on_payment_received"), {"paid_amount": 120.5, "reference_no": "pi_123"}.get, "x")
	assert (paid["amount"], paid["payment_intent"]) == (120.5, "pi_123")
	assert variables(event("on_quotation_accepted"), {}.get, "T")["accepted_at"] == "T"
	assert business_events.variable_names("on_payment_received") >= {"amount", "payment_intent"}
	assert business_events.variable_names("on_something_else") == set()


def test_a_flow_on_a_business_event_may_read_its_variables_and_only_those():
	flow = {
		"trigger": {"event": "on_payment_received"},
		"steps": [
			{
				"id": "n",
				"kind": "notify",
				"payload": {"channel": "system", "to": "x", "body": "{{variables.amount}}"},
			}
		],
	}
	assert validate(load(flow, apps=APPS)) == []
	flow["steps"][0]["payload"]["body"] = "{{variables.amout}}"
	problems = validate(load(flow, apps=APPS))
	assert problems and "amout" in problems[0].message
	flow["trigger"] = {"event": "on_issue_opened"}  # a different event: not its variables
	flow["steps"][0]["payload"]["body"] = "{{variables.amount}}"
	assert validate(load(flow, apps=APPS))


def seed(name: str) -> dict:
	return json.loads((SEEDS / f"{name}.json").read_text())


CONTEXT = {
	"doc": {
		"name": "DOC-1",
		"document_type": "Subscription",
		"document_name": "SUB-1",
		"contact_email": "ada@example.com",
		"customer_name": "Ada",
		"paid_amount": 1500,
		"owner": "a@b.c",
	},
	"customer": {"name": "CUST-1", "customer_name": "Ada", "mobile_no": "+15550001", "email_id": "ada@x.y"},
	"variables": {"amount": 1500, "currency": "USD", "payment_intent": "pi_1", "signed_at": "2026-05-01"},
}


@pytest.mark.parametrize("name", DESIGN_SEEDS)
def test_design_example_flows_are_written_in_the_designs_vocabulary_and_validate(name):
	data = seed(name)
	raw = data["definition"]
	assert raw["trigger"]["event"] in vocabulary.DESIGN_EVENTS and raw["trigger"]["condition"] == ""
	assert data["trigger_event"] == raw["trigger"]["event"] and data["applies_to"]
	kinds = {step["kind"] for step in raw["steps"]}
	assert kinds <= {
		"dispatch_job",
		"issue",
		"notify",
		"webhook",
		"erp_update",
		"wait",
		"condition",
		"subscription_activate",
	}
	normalised = load(raw, apps=APPS)
	assert normalised != raw  # the vocabulary was translated
	assert normalised["trigger"] == {"event": "custom", "custom_event": raw["trigger"]["event"]}
	assert validate(normalised) == []


@pytest.mark.parametrize("name", DESIGN_SEEDS)
def test_design_example_flows_round_trip_to_the_same_plan(name):
	raw = seed(name)["definition"]
	stored = load(raw, apps=APPS)
	# export (JSON text) → import: the same definition, the same plan
	imported = load(json.loads(json.dumps(stored)), apps=APPS)
	assert imported == stored
	assert load(imported, apps=APPS) == stored  # idempotent
	first = dry_run(compile_definition(stored), copy.deepcopy(CONTEXT), MOMENT)
	again = dry_run(compile_definition(imported), copy.deepcopy(CONTEXT), MOMENT)
	original = dry_run(compile_definition(raw), copy.deepcopy(CONTEXT), MOMENT)
	assert first == again == original
	assert first["steps"] and not first["never_reached"]
