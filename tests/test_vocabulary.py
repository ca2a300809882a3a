"""The design's vocabulary (engine/vocabulary.py): each alias loads into the app's own form, which
validates and dry-runs exactly like that form written by hand; nothing unknown is silently dropped."""

import copy
import datetime
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flow_engine.engine import conditions, jsonlogic, vocabulary
from flow_engine.engine.definition import compile_definition, load
from flow_engine.engine.dry_run import dry_run
from flow_engine.engine.validation import validate
from tests.factories import flow, step

NOW = datetime.datetime(2026, 5, 1, 9, 0)
CONTEXT = {
	"doc": {"name": "CON-1", "customer": "CUST-1", "status": "Active", "total": 120.5, "items": [{"qty": 3}]},
	"customer": {"name": "CUST-1", "customer_name": "Ada", "mobile_no": "+15550001"},
	"variables": {},
}

# (design step, the same step written in the app's own form)
ALIASES = {
	"notify to/body": (
		step("n", "notify", payload={"channel": "email", "to": "a@b.c", "subject": "Hi", "body": "Hello"}),
		step(
			"n",
			"notify",
			payload={"channel": "email", "recipients": "a@b.c", "subject": "Hi", "message": "Hello"},
		),
	),
	"notify to list": (
		step("n", "notify", payload={"channel": "system", "to": ["{{doc.owner}}"], "body": "x"}),
		step("n", "notify", payload={"channel": "system", "recipients": ["{{doc.owner}}"], "message": "x"}),
	),
	"notify template_id (email)": (
		step("n", "notify", payload={"channel": "email", "to": "a@b.c", "template_id": "Welcome"}),
		step("n", "notify", payload={"channel": "email", "recipients": "a@b.c", "email_template": "Welcome"}),
	),
	"notify template_id (sms)": (
		step(
			"n",
			"notify",
			payload={"channel": "sms", "to": "{{customer.mobile_no}}", "template_id": "Welcome SMS"},
		),
		step(
			"n",
			"notify",
			payload={
				"channel": "sms",
				"recipients": "{{customer.mobile_no}}",
				"email_template": "Welcome SMS",
			},
		),
	),
	"webhook body_template": (
		step(
			"w",
			"webhook",
			payload={
				"url": "https://crm.example/hook",
				"method": "post",
				"body_template": '{"contract": "{{doc.name}}", "total": {{doc.total}}, "lines": [1, 2]}',
			},
		),
		step(
			"w",
			"webhook",
			payload={
				"url": "https://crm.example/hook",
				"method": "POST",
				"body": {"contract": "{{doc.name}}", "total": "{{doc.total}}", "lines": [1, 2]},
			},
		),
	),
	"erp_update docname_ref/fields_json": (
		step(
			"u",
			"erp_update",
			payload={
				"doctype": "Customer",
				"docname_ref": "{{doc.customer}}",
				"fields_json": '{"customer_group": "Fibre", "note": "{{doc.name}}"}',
			},
		),
		step(
			"u",
			"update_doc",
			payload={
				"doctype": "Customer",
				"name": "{{doc.customer}}",
				"fields": {"customer_group": "Fibre", "note": "{{doc.name}}"},
			},
		),
	),
	"condition field/op/value": (
		step("c", "condition", payload={"field": "doc.status", "op": "==", "value": "Active"}),
		step("c", "condition", payload={"condition": {"field": "doc.status", "op": "==", "value": "Active"}}),
	),
	"subscription_activate subscription_ref": (
		step("s", "subscription_activate", payload={"subscription_ref": "{{doc.subscription}}"}),
		step("s", "subscription_activate", payload={"subscription": "{{doc.subscription}}"}),
	),
	"issue": (
		step(
			"i",
			"issue",
			payload={
				"subject": "Install {{doc.name}}",
				"description": "d",
				"priority": "high",
				"issue_type": "Install",
			},
		),
		step(  # a kind of its own: the design's payload is its payload
			"i",
			"issue",
			payload={
				"subject": "Install {{doc.name}}",
				"description": "d",
				"priority": "high",
				"issue_type": "Install",
			},
		),
	),
	"issue as the create_doc alias it once was": (
		step("i", "issue", payload={"doctype": "Issue", "fields": {"subject": "S"}}),
		step("i", "create_doc", payload={"doctype": "Issue", "fields": {"subject": "S"}}),
	),
	"dispatch_job (the kind of its own; empty options dropped, priority spelled as ERPNext does)": (
		step(
			"j",
			"dispatch_job",
			payload={
				"subject": "Installation {{customer.customer_name}}",
				"job_type": "Installation",
				"priority": "medium",
				"duration_h": 2,
				"on_open_webhook": "",
			},
		),
		step(
			"j",
			"dispatch_job",
			payload={
				"subject": "Installation {{customer.customer_name}}",
				"job_type": "Installation",
				"priority": "Medium",
				"duration_h": 2,
			},
		),
	),
	"dispatch_job as the create_doc alias it once was": (
		step("j", "dispatch_job", payload={"doctype": "Task", "fields": {"subject": "S"}}),
		step("j", "create_doc", payload={"doctype": "Task", "fields": {"subject": "S"}}),
	),
	"on_date at": (
		step("d", "wait", trigger={"type": "on_date", "at": "2026-06-01"}),
		step("d", "wait", trigger={"type": "on_date", "date": "2026-06-01"}),
	),
}


def report(definition, context=CONTEXT):
	return dry_run(compile_definition(definition), copy.deepcopy(context), NOW)


@pytest.mark.parametrize("name", list(ALIASES))
def test_alias_loads_validates_and_dry_runs_like_the_app_form(name):
	design, canonical = (flow(item) for item in ALIASES[name])
	assert load(design) == canonical
	assert validate(load(design)) == [] == validate(canonical)
	assert report(design) == report(canonical)


def test_webhook_body_template_is_templated_after_parsing():
	design, _canonical = ALIASES["webhook body_template"]
	body = report(flow(design))["steps"][0]["payload"]["body"]
	assert body == {"contract": "CON-1", "total": 120.5, "lines": [1, 2]}  # a bare {{…}} keeps its type


def test_design_example_flow_loads_into_the_app_form():
	"""The design's own shape: business event trigger, empty condition, step fields with nulls."""
	design = {
		"version": 1,
		"trigger": {"event": "on_contract_signed", "condition": "", "applies_to": "Service Contract"},
		"variables": {"default_group": "Tech Targo"},
		"steps": [
			{
				"id": "step_abc123",
				"kind": "dispatch_job",
				"label": "Installation fibre",
				"parent_id": None,
				"branch": None,
				"depends_on": [],
				"trigger": {"type": "on_flow_start"},
				"payload": {
					"subject": "Installation {{customer.customer_name}}",
					"job_type": "Installation",
					"priority": "medium",
					"duration_h": 2,
					"assigned_group": "Tech Targo",
				},
			}
		],
	}
	original = copy.deepcopy(design)
	loaded = load(design)
	assert design == original  # the input is not changed
	assert loaded["trigger"] == {
		"event": "custom",
		"custom_event": "on_contract_signed",
		"doctype": "Service Contract",
	}
	job, assign = loaded["steps"]
	assert job["kind"] == "dispatch_job" and "assigned_group" not in job["payload"]
	assert assign == {
		"id": "step_abc123_assign",
		"kind": "assign",
		"label": "Installation fibre: assign to Tech Targo",
		"depends_on": ["step_abc123"],
		"payload": {
			"doctype": "{{steps.step_abc123.result.doctype}}",
			"name": "{{steps.step_abc123.result.name}}",
			"group": "Tech Targo",
		},
	}
	assert validate(loaded) == []
	steps = report(design)["steps"]
	assert [entry["step_id"] for entry in steps] == ["step_abc123", "step_abc123_assign"]


def test_dispatch_job_keeps_its_webhooks_and_merge_key():
	"""The job's doctype is the site's (Flow Dispatch Settings), chosen when the step runs."""
	design = flow(
		step(
			"j",
			"dispatch_job",
			payload={
				"subject": "Fix",
				"priority": "high",
				"merge_key": "site-{{doc.name}}",
				"on_open_webhook": "https://hooks.example/open",
				"on_close_webhook": "https://hooks.example/close",
			},
		)
	)
	for apps in (["frappe", "flow_engine"], ["frappe", "erpnext"]):
		assert load(design, apps=apps)["steps"][0]["payload"] == {
			"subject": "Fix",
			"priority": "High",
			"merge_key": "site-{{doc.name}}",
			"on_open_webhook": "https://hooks.example/open",
			"on_close_webhook": "https://hooks.example/close",
		}
	assert validate(load(design)) == []


def test_dispatch_job_assign_step_stays_in_the_branch_and_gets_a_free_id():
	loaded = load(
		flow(
			step("c", "condition", payload={"field": "doc.status", "op": "==", "value": "Active"}),
			step(
				"j",
				"dispatch_job",
				parent_id="c",
				branch="yes",
				payload={"subject": "S", "assigned_group": "G"},
			),
			step("j_assign", "wait", depends_on=["j"]),
		)
	)
	ids = [item["id"] for item in loaded["steps"]]
	assert ids == ["c", "j", "j_assign_2", "j_assign"]
	extra = loaded["steps"][2]
	assert (extra["parent_id"], extra["branch"]) == ("c", "yes")
	assert validate(loaded) == []
	taken = {entry["step_id"]: entry["action"] for entry in report(loaded)["steps"]}
	assert taken["j"] == taken["j_assign_2"] == "run"
	closed = {**CONTEXT, "doc": {**CONTEXT["doc"], "status": "Closed"}}
	not_taken = {entry["step_id"]: entry["action"] for entry in report(loaded, closed)["steps"]}
	assert not_taken["j"] == not_taken["j_assign_2"] == "skip"  # never assigns a job that was not created


@pytest.mark.parametrize(
	("trigger", "expected"),
	[
		(
			{"event": "on_contract_signed", "condition": ""},
			{"event": "custom", "custom_event": "on_contract_signed"},
		),
		({"event": "order_paid"}, {"event": "custom", "custom_event": "order_paid"}),
		({"event": "on_invoice_paid"}, {"event": "custom", "custom_event": "on_invoice_paid"}),
		({"event": "custom", "custom_event": "x"}, {"event": "custom", "custom_event": "x"}),
		(
			{"applies_to": "Quotation", "trigger_event": "after_insert"},
			{"doctype": "Quotation", "event": "after_insert"},
		),
		(
			{
				"doctype": "ToDo",
				"event": "on_update",
				"condition": '{"field": "status", "op": "==", "value": "Open"}',
			},
			{
				"doctype": "ToDo",
				"event": "on_update",
				"condition": {"field": "status", "op": "==", "value": "Open"},
			},
		),
		({"event": "manual", "condition": {}}, {"event": "manual"}),
	],
)
def test_flow_trigger_vocabulary(trigger, expected):
	loaded = load(flow(trigger=trigger))
	assert loaded["trigger"] == expected
	assert validate(loaded) == []


def test_template_fields_give_the_trigger():
	export = {
		"applies_to": "Service Contract",
		"trigger_event": "on_contract_signed",
		"trigger_condition": "",
	}
	assert vocabulary.template_trigger(export) == {
		"doctype": "Service Contract",
		"event": "custom",
		"custom_event": "on_contract_signed",
	}
	assert vocabulary.template_trigger({"trigger_event": "manual"}) == {}
	merged = vocabulary.merge_triggers({"event": "manual"}, {"doctype": "Issue", "event": "after_insert"})
	assert merged == {"doctype": "Issue", "event": "after_insert"}
	kept = vocabulary.merge_triggers({"doctype": "ToDo", "event": "on_update"}, {"doctype": "Issue"})
	assert kept == {"doctype": "ToDo", "event": "on_update"}


def test_trigger_condition_var_paths_reach_child_rows_variables_and_customer():
	data = {**CONTEXT, "variables": {"min_qty": 2}}
	logic = {
		"and": [
			{">=": [{"var": "items.0.qty"}, {"var": "variables.min_qty"}]},
			{"==": [{"var": "customer.customer_name"}, "Ada"]},
			{"==": [{"var": "status"}, "Active"]},
		]
	}
	assert jsonlogic.evaluate(logic, data) is True
	assert conditions.evaluate(logic, data) is True
	assert conditions.evaluate({"field": "items.0.qty", "op": ">", "value": 2}, data) is True
	assert jsonlogic.evaluate({"var": "doc.items.0.qty"}, data) == 3
	assert jsonlogic.evaluate({"var": "variables.missing"}, data) is None  # a context root: no doc fallback


def _issues(definition):
	return [(issue.step_id, issue.field, issue.message) for issue in validate(load(definition))]


@pytest.mark.parametrize(
	("definition", "where", "words"),
	[
		(
			flow(step("a", "notify", payload={"channel": "system", "recipients": "x", "mesage": "m"})),
			("a", "payload.mesage"),
			["unknown key 'mesage' for kind 'notify'", "did you mean 'message'?"],
		),
		(
			flow(
				step(
					"a",
					"webhook",
					payload={"url": "https://a.example", "method": "POST", "body_templat": "{}"},
				)
			),
			("a", "payload.body_templat"),
			["did you mean 'body_template'?"],
		),
		(
			flow(step("a", "wait", lable="x")),
			("a", "lable"),
			["unknown step field 'lable'", "did you mean 'label'?"],
		),
		(flow(step("a", "wait", disabled=True)), ("a", "disabled"), ["unknown step field 'disabled'"]),
		(
			flow(step("a", "wait", trigger={"type": "after_delay", "delay_hour": 2})),
			("a", "trigger.delay_hour"),
			["did you mean 'delay_hours'?"],
		),
		(
			flow(step("a", "wait", trigger={"type": "manual", "delay_days": 2})),
			("a", "trigger.delay_days"),
			["applies only to after_delay triggers"],
		),
		(
			flow(step("a", "wait"), trigger={"doctype": "ToDo", "event": "after_insert", "conditon": {}}),
			(None, "trigger.conditon"),
			["did you mean 'condition'?"],
		),
		(
			flow(step("a", "wait"), trigger={"doctype": "ToDo", "event": "after_insrt"}),
			(None, "trigger.event"),
			["unknown event 'after_insrt'", "did you mean 'after_insert'?"],
		),
		(
			flow(step("a", "wait"), trigger={"doctype": "ToDo", "event": "on_insert"}),
			(None, "trigger.event"),
			["unknown event 'on_insert'", "did you mean 'after_insert'?"],
		),
		(
			flow(step("a", "wait"), trigger={"doctype": "ToDo", "event": "before_save"}),
			(None, "trigger.event"),
			["'before_save' is a document method, not an event a flow listens to"],
		),
		(flow(step("a", "wait"), stepz=[]), (None, "stepz"), ["did you mean 'steps'?"]),
		(
			flow(
				step(
					"a", "erp_update", payload={"doctype": "ToDo", "docname_ref": "x", "fields_json": "{bad"}
				)
			),
			("a", "payload.fields_json"),
			["is not valid JSON text at line 1, column 2", "'fields'"],
		),
		(
			flow(
				step(
					"a",
					"webhook",
					payload={"url": "https://a", "method": "POST", "body_template": "not json"},
				)
			),
			("a", "payload.body_template"),
			["is not valid JSON text"],
		),
		(
			flow(
				step(
					"a", "notify", payload={"channel": "system", "to": "x", "recipients": "y", "message": "m"}
				)
			),
			("a", "payload.to"),
			["is the design's name for 'recipients', which is also given with another value"],
		),
		(
			flow(
				step("a", "wait"), trigger={"doctype": "ToDo", "applies_to": "Note", "event": "after_insert"}
			),
			(None, "trigger.applies_to"),
			["another name for 'doctype'", "keep one"],
		),
		(
			flow(
				step("a", "wait"),
				trigger={"doctype": "ToDo", "event": "after_insert", "condition": "status = 1"},
			),
			(None, "trigger.condition"),
			["not text"],
		),
	],
)
def test_unknown_and_untranslatable_keys_are_errors_naming_step_and_key(definition, where, words):
	found = [message for step_id, field, message in _issues(definition) if (step_id, field) == where]
	assert found, _issues(definition)
	for word in words:
		assert word in found[0], found[0]


def test_issue_is_a_kind_of_its_own_with_its_fields_checked():
	issues = _issues(flow(step("a", "issue", payload={"subjct": "S", "priority": "High"})))
	where = {(step_id, field): message for step_id, field, message in issues}
	assert "did you mean 'subject'" in where[("a", "payload.subjct")], where
	assert ("a", "payload.subject") in where  # required
	assert _issues(flow(step("a", "issue", payload={"subject": "S", "customer": "{{doc.customer}}"}))) == []


def test_an_empty_json_body_is_a_body():
	loaded = load(
		flow(
			step(
				"w", "webhook", payload={"url": "https://a.example", "method": "POST", "body_template": "{}"}
			)
		)
	)
	assert loaded["steps"][0]["payload"]["body"] == {}


def test_sms_needs_a_message_or_a_template():
	issues = _issues(flow(step("a", "notify", payload={"channel": "sms", "to": "+1555"})))
	assert ("a", "payload.message") in [(step_id, field) for step_id, field, _m in issues]


def test_compile_reads_the_design_vocabulary():
	design, _canonical = ALIASES["erp_update docname_ref/fields_json"]
	compiled = compile_definition(json.dumps(flow(design)))
	assert compiled.steps[0].kind == "update_doc"
	assert compiled.steps[0].payload["fields"]["customer_group"] == "Fibre"


# ---------------------------------------------------------------- round trips

paths = st.sampled_from(["{{doc.name}}", "{{doc.total}}", "plain", "{{customer.customer_name}}", ""])
design_payloads = st.one_of(
	st.fixed_dictionaries(
		{"to": st.one_of(paths, st.lists(paths, max_size=2)), "body": paths},
		optional={
			"channel": st.sampled_from(["email", "sms", "system"]),
			"template_id": paths,
			"subject": paths,
		},
	).map(lambda p: ("notify", p)),
	st.fixed_dictionaries(
		{
			"url": st.just("https://a.example/x"),
			"body_template": st.sampled_from(['{"a": "{{doc.name}}"}', "[1, 2]", "{bad"]),
		},
		optional={"method": st.sampled_from(["post", "PUT", "get"])},
	).map(lambda p: ("webhook", p)),
	st.fixed_dictionaries(
		{
			"doctype": st.just("ToDo"),
			"docname_ref": paths,
			"fields_json": st.sampled_from(['{"status": "Closed"}', "{}", "x"]),
		}
	).map(lambda p: ("erp_update", p)),
	st.fixed_dictionaries(
		{"field": st.just("doc.status"), "op": st.sampled_from(["==", "!=", "empty"]), "value": paths}
	).map(lambda p: ("condition", p)),
	st.fixed_dictionaries({"subscription_ref": paths}).map(lambda p: ("subscription_activate", p)),
	st.fixed_dictionaries(
		{"subject": paths}, optional={"priority": st.sampled_from(["low", "High"]), "issue_type": paths}
	).map(lambda p: ("issue", p)),
	st.fixed_dictionaries(
		{"subject": paths},
		optional={
			"job_type": paths,
			"duration_h": st.integers(0, 8),
			"assigned_group": st.sampled_from(["", "Tech"]),
			"merge_key": paths,
		},
	).map(lambda p: ("dispatch_job", p)),
)


@st.composite
def design_definitions(draw):
	steps = []
	for index, (kind, payload) in enumerate(draw(st.lists(design_payloads, min_size=1, max_size=5))):
		item = {"id": f"s{index}", "kind": kind, "payload": payload}
		if index:
			item["depends_on"] = [f"s{index - 1}"]
		steps.append(item)
	trigger = draw(
		st.sampled_from(
			[
				{"event": "on_contract_signed", "condition": ""},
				{"applies_to": "ToDo", "event": "after_insert"},
				{"event": "aftr_insert"},
				{},
			]
		)
	)
	return {"version": 1, "trigger": trigger, "steps": steps}


@settings(max_examples=300, deadline=None)
@given(design_definitions(), st.sampled_from([None, ["frappe"], ["frappe", "erpnext"]]))
def test_normalise_is_idempotent_and_keeps_the_app_form(definition, apps):
	once = load(definition, apps)
	assert load(once, apps) == once
	assert load(json.dumps(once), apps) == once  # what is stored loads back as itself
	if not validate(once):
		assert compile_definition(once).step_ids == [item["id"] for item in once["steps"]]


@settings(max_examples=200, deadline=None)
@given(design_definitions())
def test_validation_of_design_definitions_never_crashes(definition):
	assert all(issue.code != "internal" for issue in validate(load(definition)))
	assert all(issue.code != "internal" for issue in validate(definition))  # not loaded: still no crash


canonical_payloads = st.sampled_from(
	[
		("notify", {"channel": "email", "recipients": ["a@b.c"], "subject": "s", "message": "m"}),
		("notify", {"channel": "sms", "recipients": "{{doc.phone}}", "email_template": "T"}),
		("webhook", {"url": "https://a.example", "method": "POST", "body": {"a": "{{doc.name}}"}}),
		("webhook", {"url": "https://a.example", "method": "GET", "body": "text {{doc.name}}"}),
		("update_doc", {"doctype": "ToDo", "name": "{{doc.name}}", "fields": {"status": "Closed"}}),
		("update_doc", {"fields": {"status": "Closed"}}),
		("create_doc", {"doctype": "ToDo", "fields": {"description": "x"}, "link_to_trigger": True}),
		("condition", {"condition": {"field": "doc.status", "op": "==", "value": "Open"}}),
		("condition", {"condition": {"any": [{"field": "status", "op": "empty"}]}}),
		("subscription_activate", {"subscription": "{{doc.name}}"}),
		("assign", {"group": "G", "doctype": "Task", "name": "x"}),
		("set_variables", {"variables": {"a": "{{doc.name}}"}}),
		("wait", {}),
	]
)


@st.composite
def canonical_definitions(draw):
	steps = []
	for index, (kind, payload) in enumerate(draw(st.lists(canonical_payloads, min_size=1, max_size=6))):
		item = {
			"id": f"s{index}",
			"kind": kind,
			"label": draw(st.sampled_from(["", "L"])),
			"payload": payload,
		}
		if index:
			item["depends_on"] = [f"s{draw(st.integers(0, index - 1))}"]
		trigger = draw(
			st.sampled_from(
				[None, {"type": "after_delay", "delay_hours": 2}, {"type": "on_date", "date": "2026-01-01"}]
			)
		)
		if trigger:
			item["trigger"] = trigger
		steps.append(item)
	trigger = draw(
		st.sampled_from(
			[
				{"doctype": "ToDo", "event": "after_insert"},
				{"event": "custom", "custom_event": "order_paid"},
				{
					"doctype": "ToDo",
					"event": "on_update",
					"condition": {"field": "status", "op": "==", "value": "Open"},
				},
			]
		)
	)
	return {"version": 1, "trigger": trigger, "variables": {}, "steps": steps}


@settings(max_examples=300, deadline=None)
@given(canonical_definitions(), st.sampled_from([None, ["frappe"], ["frappe", "erpnext"]]))
def test_normalise_of_the_app_form_is_the_app_form(definition, apps):
	assert vocabulary.normalise(definition, apps) == definition
	assert load(json.dumps(definition), apps) == definition
	assert validate(definition) == []


def test_canonical_flows_are_unchanged():
	for _design, canonical in ALIASES.values():
		assert load(flow(canonical)) == flow(canonical)
	seeds = __import__("pathlib").Path(__file__).resolve().parent.parent / "flow_engine" / "seeds"
	for path in seeds.glob("*.json"):
		definition = json.loads(path.read_text())["definition"]
		if definition.get("trigger", {}).get("event") in vocabulary.DESIGN_EVENTS:
			continue  # the design's example flows, written in its vocabulary (tests/test_business_events.py)
		assert load(definition) == definition, path.name
		assert validate(definition) == [], path.name
