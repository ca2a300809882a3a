"""The approval kind's validation: who decides, hours, escalation, branches (core tier: no Frappe)."""

import pytest

from flow_engine.engine.catalog import DEFAULT_CATALOG
from flow_engine.engine.validation import validate


def flow(payload: dict, *children: dict) -> dict:
	return {"version": 1, "steps": [{"id": "ask", "kind": "approval", "payload": payload}, *children]}


def problems(definition) -> dict:
	return {(issue.step_id, issue.field): issue.message for issue in validate(definition)}


def test_the_kind_branches_approved_rejected_timed_out():
	assert DEFAULT_CATALOG.get("approval").branches == ("approved", "rejected", "timed_out")


def test_a_valid_approval_with_its_three_branches():
	children = [
		{"id": branch, "kind": "wait", "parent_id": "ask", "branch": branch}
		for branch in ("approved", "rejected", "timed_out")
	]
	payload = {
		"approvers": "a@example.com, b@example.com",
		"subject": "Approve {{doc.name}}",
		"send_email": 1,
		"remind_after_hours": 12,
		"escalate_after_hours": 24,
		"escalate_to": "Sales Manager",
		"timeout_hours": 48,
	}
	assert problems(flow(payload, *children)) == {}
	for who in ({"role": "Sales Manager"}, {"approver": "{{doc.owner}}"}, {"approvers": ["a@example.com"]}):
		assert problems(flow(who)) == {}


@pytest.mark.parametrize(
	"payload, field, words",
	[
		({"subject": "x"}, "payload.approvers", "approvers (users), a role, or an approver template"),
		({"approvers": [], "role": ""}, "payload.approvers", "name who decides"),
		({"role": "R", "timeout_hours": 0}, "payload.timeout_hours", "positive"),
		({"role": "R", "remind_after_hours": -1}, "payload.remind_after_hours", "positive"),
		({"role": "R", "timeout_hours": "soon"}, "payload.timeout_hours", "must be a number"),
		({"role": "R", "escalate_after_hours": 24}, "payload.escalate_to", "user or role"),
		({"role": "R", "escalate_to": "boss@example.com"}, "payload.escalate_after_hours", "hours"),
		({"role": "R", "approve_by": "x"}, "payload.approve_by", "unknown key"),
	],
)
def test_problems_name_the_step_and_field(payload, field, words):
	found = problems(flow(payload))
	assert ("ask", field) in found, found
	assert words in found[("ask", field)]


def test_a_branch_the_approval_does_not_have_is_refused():
	found = problems(
		flow({"role": "R"}, {"id": "x", "kind": "wait", "parent_id": "ask", "branch": "expired"})
	)
	assert ("x", "branch") in found
	assert "approved" in found[("x", "branch")]
