import datetime
import decimal

from hypothesis import given
from hypothesis import strategies as st

from flow_engine.engine.templating import lookup, placeholders, render

CONTEXT = {
	"doc": {
		"name": "ISS-1",
		"customer": "Acme",
		"qty": 3,
		"items": [{"code": "A"}, {"code": "B"}],
		"amount": decimal.Decimal("10.50"),
	},
	"variables": {"group": "L1", "flag": True, "none": None},
	"steps": {"s1": {"result": {"name": "TODO-9"}}},
	"now": datetime.datetime(2026, 1, 2, 3, 4, 5),
}


def test_dotted_paths_and_list_indexes():
	assert render("Call {{doc.customer}}", CONTEXT) == "Call Acme"
	assert render("{{doc.items.1.code}}", CONTEXT) == "B"
	assert render("{{ doc.items.-1.code }}", CONTEXT) == "B"
	assert render("x{{steps.s1.result.name}}y", CONTEXT) == "xTODO-9y"


def test_whole_placeholder_keeps_type():
	assert render("{{doc.qty}}", CONTEXT) == 3
	assert render("{{doc.items}}", CONTEXT) == CONTEXT["doc"]["items"]
	assert render("n={{doc.qty}}", CONTEXT) == "n=3"


def test_unknown_paths_render_empty():
	assert render("{{doc.missing}}", CONTEXT) == ""
	assert render("a {{nope.x.y}} b", CONTEXT) == "a  b"
	assert render("{{doc.items.9.code}}", CONTEXT) == ""
	assert render("{{variables.none}}", CONTEXT) == ""


def test_values_format_as_text():
	assert render("{{variables.flag}}", CONTEXT) is True
	assert render("is {{variables.flag}}", CONTEXT) == "is true"
	assert render("at {{now}}", CONTEXT) == "at 2026-01-02 03:04:05"
	assert render("{{doc.amount}} EUR", CONTEXT) == "10.50 EUR"


def test_no_code_or_attribute_access():
	assert render("{{doc.__class__}}", CONTEXT) == ""
	assert render("{{doc.customer.upper}}", CONTEXT) == ""
	assert render("{{ __import__('os') }}", CONTEXT) == ""
	assert lookup(CONTEXT, "doc.name.__len__") is None


def test_nested_structures_render_recursively():
	payload = {
		"fields": {"description": "Call {{doc.customer}}", "qty": "{{doc.qty}}"},
		"list": ["{{doc.name}}", 1],
	}
	assert render(payload, CONTEXT) == {
		"fields": {"description": "Call Acme", "qty": 3},
		"list": ["ISS-1", 1],
	}


def test_placeholders_lists_every_path():
	assert sorted(placeholders({"a": ["{{doc.x}} {{ steps.s1.result }}"], "b": "{{now}}"})) == [
		"doc.x",
		"now",
		"steps.s1.result",
	]


json_values = st.recursive(
	st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
	lambda children: (
		st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
	),
	max_leaves=20,
)


@given(template=json_values, context=json_values)
def test_render_never_throws(template, context):
	render(template, context if isinstance(context, dict) else {"doc": context})


@given(st.text(max_size=80))
def test_render_of_any_text_never_throws(text):
	result = render(text, CONTEXT)
	assert result is not None
