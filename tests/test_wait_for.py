"""wait_for in the engine: its validation (each problem names the step and field), branches, dry run."""

import datetime

import pytest

from flow_engine.engine.catalog import DEFAULT_CATALOG, WAIT_EVENTS, branches_for
from flow_engine.engine.definition import compile_definition
from flow_engine.engine.dry_run import dry_run
from flow_engine.engine.validation import validate
from tests.factories import flow, step

PAYMENT = {
	"doctype": "Payment Entry",
	"event": "on_submit",
	"filters": {"party": "{{doc.customer}}", "references.reference_name": "{{doc.name}}"},
	"condition": {"field": "paid_amount", "op": ">=", "value": "{{doc.grand_total}}"},
	"timeout_hours": 48,
}


def waiting(payload, **extra):
	return flow(
		step("w", "wait_for", payload=payload, **extra),
		step("paid", "comment", parent_id="w", branch="event", payload={"text": "paid"}),
		step("late", "comment", parent_id="w", branch="timeout", payload={"text": "late"}),
	)


def problems(payload) -> dict:
	return {(issue.step_id, issue.field): issue.message for issue in validate(waiting(payload))}


def test_a_document_wait_and_a_custom_event_wait_are_valid():
	assert validate(waiting(PAYMENT)) == []
	custom = {"custom_event": "payment_confirmed", "correlation_key": "{{doc.name}}", "timeout_hours": 2}
	assert validate(waiting(custom)) == []


def test_its_branches_are_event_and_timeout():
	assert DEFAULT_CATALOG.get("wait_for").branches == ("event", "timeout")
	assert branches_for({"kind": "wait_for", "payload": PAYMENT}) == ("event", "timeout")
	definition = flow(
		step("w", "wait_for", payload=PAYMENT),
		step("x", "comment", parent_id="w", branch="paid", payload={"text": "x"}),
	)
	[issue] = validate(definition)
	assert (issue.step_id, issue.field) == ("x", "branch")
	assert "it has: event, timeout" in issue.message


@pytest.mark.parametrize(
	"payload, field, words",
	[
		({}, "payload.doctype", "name what to wait for"),
		({"doctype": "Payment Entry"}, "payload.event", "is required"),
		({"doctype": "Payment Entry", "event": "on_save"}, "payload.event", "not a document event"),
		({"doctype": "Payment Entry", "event": "manual"}, "payload.event", "not a document event"),
		({"doctype": "{{doc.doctype}}", "event": "on_submit"}, "payload.doctype", "not a template"),
		(
			{
				"doctype": "Payment Entry",
				"event": "on_submit",
				"custom_event": "paid",
				"correlation_key": "x",
			},
			"payload.custom_event",
			"not both",
		),
		({"custom_event": "paid"}, "payload.correlation_key", "is required with a custom_event"),
		(
			{"custom_event": "paid", "correlation_key": "{{doc.name}}", "filters": {"party": "x"}},
			"payload.filters",
			"not to a custom_event",
		),
		(
			{"doctype": "Payment Entry", "event": "on_submit", "correlation_key": "x"},
			"payload.correlation_key",
			"custom_event only",
		),
		(
			{"doctype": "Payment Entry", "event": "on_submit", "filters": {"party name": "x"}},
			"payload.filters.party name",
			"a field name",
		),
		(
			{"doctype": "Payment Entry", "event": "on_submit", "filters": {"party": ["a", "b"]}},
			"payload.filters.party",
			"one value",
		),
		(
			{"doctype": "Payment Entry", "event": "on_submit", "filters": "party=x"},
			"payload.filters",
			"must be an object",
		),
		(
			{"doctype": "Payment Entry", "event": "on_submit", "condition": {"field": "status", "op": "is"}},
			"payload.condition.op",
			"unknown operator",
		),
		(
			{"doctype": "Payment Entry", "event": "on_submit", "timeout_hours": -1},
			"payload.timeout_hours",
			"positive",
		),
		(
			{"doctype": "Payment Entry", "event": "on_submit", "timeout_hours": "soon"},
			"payload.timeout_hours",
			"must be a number",
		),
		(
			{"doctype": "Payment Entry", "event": "on_submit", "colour": "red"},
			"payload.colour",
			"unknown key",
		),
	],
)
def test_problems_name_the_step_and_field(payload, field, words):
	found = problems(payload)
	assert ("w", field) in found, found
	assert words in found[("w", field)]


def test_every_wait_event_is_accepted():
	for event in WAIT_EVENTS:
		assert validate(waiting({"doctype": "Task", "event": event})) == [], event


def test_templates_in_its_payload_are_checked():
	found = problems({**PAYMENT, "filters": {"party": "{{steps.nope.result.name}}"}})
	assert "step 'nope', which does not exist" in found[("w", "payload")]


def test_dry_run_walks_the_event_branch_and_says_what_it_waits_for():
	definition = compile_definition(waiting(PAYMENT))
	report = dry_run(
		definition,
		{"doc": {"name": "SINV-1", "customer": "ACME", "grand_total": 10}},
		datetime.datetime(2026, 5, 1),
	)
	by_id = {entry["step_id"]: entry for entry in report["steps"]}
	assert by_id["w"]["branch"] == "event"
	assert "Payment Entry on_submit where party = 'ACME'" in by_id["w"]["note"]
	assert "timeout branch after 48 h" in by_id["w"]["note"]
	assert by_id["paid"]["action"] == "run"
	assert by_id["late"]["action"] == "skip"
