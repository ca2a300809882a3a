import datetime
import decimal

from hypothesis import given
from hypothesis import strategies as st

from flow_engine.engine.templating import PLACEHOLDER, lookup, placeholders, render

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
	"""Any text renders: unchanged without a placeholder, and to text unless it is exactly one."""
	result = render(text, CONTEXT)
	if "{{" not in text:
		assert result == text
	elif PLACEHOLDER.fullmatch(text) is None:
		assert isinstance(result, str)


_plain = st.text(alphabet=st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), max_size=6)
_placeholders = st.sampled_from(
	[
		("{{doc.customer}}", "Acme"),
		("{{ doc.items.0.code }}", "A"),
		("{{doc.qty}}", "3"),
		("{{doc.amount}}", "10.50"),
		("{{variables.flag}}", "true"),
		("{{variables.none}}", ""),
		("{{nope.x}}", ""),
		("{{doc.__class__}}", ""),
		("{{secrets.token}}", "{{secrets.token}}"),
		("{{doc.items.1}}", '{"code": "B"}'),
	]
)


@given(st.lists(st.one_of(_plain.map(lambda text: (text, text)), _placeholders), min_size=2, max_size=6))
def test_render_replaces_each_placeholder_in_any_surrounding_text(pieces):
	"""Text mixed with placeholders renders piece by piece: literal text kept, each placeholder's value."""
	text = "".join(source for source, _ in pieces)
	if PLACEHOLDER.fullmatch(text):  # exactly one placeholder keeps its type (tested above)
		return
	assert render(text, CONTEXT) == "".join(rendered for _, rendered in pieces)


def test_secret_placeholders_stay_verbatim():
	context = {**CONTEXT, "secrets": {"crm_token": "s3cr3t"}}  # even a context key named secrets
	assert render("{{secrets.crm_token}}", context) == "{{secrets.crm_token}}"
	assert render("Bearer {{ secrets.crm_token }}", context) == "Bearer {{ secrets.crm_token }}"
	assert render({"h": ["{{secrets.a}} {{doc.name}}"]}, CONTEXT) == {"h": ["{{secrets.a}} ISS-1"]}
	assert render("{{secrets}}", context) == "{{secrets}}"


def test_secret_values_render_only_when_given_and_in_one_pass():
	values = {"crm_token": "s3cr3t"}
	assert render("{{secrets.crm_token}}", CONTEXT, secrets=values) == "s3cr3t"
	assert render("Bearer {{secrets.crm_token}}", CONTEXT, secrets=values) == "Bearer s3cr3t"
	assert render("{{secrets.nope}}", CONTEXT, secrets=values) == ""
	# a document value that looks like a secret placeholder is data, never rendered again
	context = {"doc": {"customer": "{{secrets.crm_token}}"}}
	assert render("{{doc.customer}}", context, secrets=values) == "{{secrets.crm_token}}"
	assert render("x {{doc.customer}}", context, secrets=values) == "x {{secrets.crm_token}}"


def test_escape_hook_formats_every_placeholder():
	calls = []

	def escape(path, value):
		calls.append((path, value))
		return "<" + str(value).replace("&", "&amp;") + ">"

	context = {"doc": {"customer": "A&B", "qty": 3}}
	assert (
		render("Dear {{ doc.customer }}, qty {{doc.qty}}", context, escape=escape)
		== "Dear <A&amp;B>, qty <3>"
	)
	assert calls == [("doc.customer", "A&B"), ("doc.qty", 3)]
	# a whole placeholder goes through escape too, and the result is text
	assert render("{{doc.qty}}", context, escape=escape) == "<3>"
	assert render({"m": ["{{doc.customer}}"]}, context, escape=escape) == {"m": ["<A&amp;B>"]}
	assert render("{{doc.missing}}", context, escape=lambda p, v: "" if v is None else "?") == ""
	assert render("x", context, escape=escape) == "x"
	# escape results that are not text are formatted as text; secrets stay verbatim
	assert render("n={{doc.qty}}", context, escape=lambda p, v: v * 2) == "n=6"
	assert render("{{secrets.k}}", context, escape=escape) == "{{secrets.k}}"


@given(st.text(max_size=80))
def test_render_with_escape_never_throws(text):
	result = render(text, CONTEXT, escape=lambda path, value: str(value))
	assert isinstance(result, str)


def test_a_refused_read_stops_rendering_instead_of_rendering_blank():
	import pytest

	from flow_engine.engine.templating import Refused, render

	class Guarded(dict):
		def __contains__(self, key):
			raise Refused("Run As 'x' may not read ToDo 'T1'")

	with pytest.raises(Refused):
		render({"body": {"t": "{{doc.title}}"}}, {"doc": Guarded()})
	assert render({"t": "{{doc.title}}"}, {"doc": {"title": "ok"}}) == {"t": "ok"}
