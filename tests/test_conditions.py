import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flow_engine.engine.conditions import OPS, check_condition, compare, describe, evaluate, is_native
from flow_engine.engine.errors import ConditionError

CONTEXT = {
	"doc": {
		"status": "Open",
		"priority": "High",
		"qty": 5,
		"tags": ["vip", "eu"],
		"email": "a@b.com",
		"notes": "",
		"date": "2026-03-01",
		"total": "12.5",
	},
	"variables": {"limit": 10},
}


@pytest.mark.parametrize(
	"field,op,value,expected",
	[
		("doc.status", "==", "Open", True),
		("doc.status", "!=", "Open", False),
		("doc.qty", "<", 10, True),
		("doc.qty", ">", "4", True),
		("doc.qty", "<=", 5, True),
		("doc.qty", ">=", 6, False),
		("doc.priority", "in", ["High", "Urgent"], True),
		("doc.priority", "in", "Low, Medium", False),
		("doc.priority", "not_in", ["Low"], True),
		("doc.notes", "empty", None, True),
		("doc.missing", "empty", None, True),
		("doc.email", "not_empty", None, True),
		("doc.tags", "contains", "vip", True),
		("doc.email", "contains", "@b.", True),
		("doc.email", "starts_with", "a@", True),
		("doc.email", "ends_with", ".org", False),
		("doc.date", ">", "2026-02-28", True),
		("doc.total", ">", 12, True),
		("doc.qty", "<", "{{variables.limit}}", True),
		("status", "==", "Open", True),  # a bare name is a doc field
	],
)
def test_operators(field, op, value, expected):
	condition = {"field": field, "op": op}
	if value is not None:
		condition["value"] = value
	assert evaluate(condition, CONTEXT) is expected


# op → (actual, value) that makes it true, and (actual, value) that makes it false
OPERATOR_CASES = {
	"==": (("Open", "Open"), ("Open", "Closed")),
	"!=": (("Open", "Closed"), ("Open", "Open")),
	"<": ((3, 10), (10, 3)),
	">": ((10, 3), (3, 10)),
	"<=": ((3, 3), (4, 3)),
	">=": ((3, 3), (2, 3)),
	"in": (("a", ["a", "b"]), ("c", ["a", "b"])),
	"not_in": (("c", ["a", "b"]), ("a", ["a", "b"])),
	"empty": (("  ", None), ("x", None)),
	"not_empty": (("x", None), ("", None)),
	"contains": ((["vip", "eu"], "vip"), (["eu"], "vip")),
	"starts_with": (("abc", "ab"), ("abc", "bc")),
	"ends_with": (("abc", "bc"), ("abc", "ab")),
}


def test_every_operator_is_accepted_labelled_and_decides_both_ways():
	from flow_engine.engine.conditions import OP_LABELS, UNARY_OPS, compile_condition

	assert sorted(OPS) == sorted(OPERATOR_CASES) and len(set(OPS)) == len(OPS)
	for op, cases in OPERATOR_CASES.items():
		assert op in OP_LABELS, op
		for (actual, value), expected in zip(cases, (True, False), strict=True):
			condition = {"field": "doc.x", "op": op}
			if op not in UNARY_OPS:
				condition["value"] = value
			context = {"doc": {"x": actual}}
			assert check_condition(condition) == [], op
			assert compare(actual, op, value) is expected, (op, actual, value)
			assert evaluate(condition, context) is expected, (op, actual, value)
			assert compile_condition(condition)(context) is expected, (op, actual, value)


def test_groups():
	both = {
		"all": [
			{"field": "doc.status", "op": "==", "value": "Open"},
			{"field": "doc.qty", "op": ">", "value": 1},
		]
	}
	either = {
		"any": [
			{"field": "doc.status", "op": "==", "value": "Closed"},
			{"field": "doc.qty", "op": ">", "value": 1},
		]
	}
	nested = {"all": [either, {"any": [{"field": "doc.priority", "op": "==", "value": "Low"}]}]}
	assert evaluate(both, CONTEXT) is True
	assert evaluate(either, CONTEXT) is True
	assert evaluate(nested, CONTEXT) is False


def test_empty_condition_is_true():
	assert evaluate({}, CONTEXT) is True
	assert evaluate(None, CONTEXT) is True


def test_type_mismatches_are_false_not_errors():
	assert compare(None, "<", 3) is False
	assert compare({"a": 1}, ">", 3) is False
	assert compare("abc", ">", "abb") is True


def test_jsonlogic_trigger_conditions():
	logic = {"and": [{"==": [{"var": "doc.status"}, "Open"]}, {">": [{"var": "doc.qty"}, 3]}]}
	assert not is_native(logic)
	assert evaluate(logic, CONTEXT) is True
	assert evaluate({"in": ["vip", {"var": "doc.tags"}]}, CONTEXT) is True
	assert evaluate({"!": {"var": "doc.notes"}}, CONTEXT) is True
	assert evaluate({"if": [{"<": [{"var": "doc.qty"}, 3]}, False, True]}, CONTEXT) is True
	assert evaluate({"some": [{"var": "doc.tags"}, {"==": [{"var": ""}, "eu"]}]}, CONTEXT) is True
	assert evaluate({"jsonlogic": {"==": [{"var": "status"}, "Open"]}}, CONTEXT) is True


def test_structure_checks():
	assert check_condition({"field": "doc.a", "op": "~="}) == [
		("op", "unknown operator '~='; use one of: " + ", ".join(OPS))
	]
	assert check_condition({"field": "doc.a", "op": "=="})[0][0] == "value"
	assert check_condition({"all": []})[0][0] == "all"
	assert check_condition({"all": [{"field": "", "op": "=="}]})[0][0] == "all[0].field"
	assert check_condition({"eval": ["x"]})[0][1].startswith("unknown JSONLogic operator")
	assert check_condition({"==": [1, 1]}, allow_jsonlogic=False)


def test_depth_is_bounded():
	deep = {"field": "doc.status", "op": "==", "value": "Open"}
	for _ in range(40):
		deep = {"all": [deep]}
	assert check_condition(deep)
	with pytest.raises(ConditionError):
		evaluate(deep, CONTEXT)


def test_describe():
	assert describe({"field": "doc.status", "op": "==", "value": "Open"}) == "doc.status equals 'Open'"


@given(
	st.recursive(
		st.none() | st.integers() | st.text(max_size=10) | st.booleans(),
		lambda c: (
			st.lists(c, max_size=3)
			| st.dictionaries(
				st.sampled_from(["field", "op", "value", "all", "any", "var", "==", "and"]), c, max_size=3
			)
		),
		max_leaves=15,
	)
)
@example({"field": "doc.status", "op": "~=", "value": "Open"})
@example(
	{"any": [{"field": "doc.qty", "op": ">", "value": 1}, {"all": [{"field": "x", "op": None, "value": 1}]}]}
)
@example({"==": [{"var": "doc.status"}, "Open"], "and": []})
def test_checking_any_structure_never_crashes(structure):
	"""Any structure can be checked; one that passes the check evaluates to a bool, never raising."""
	problems = check_condition(structure)
	assert all(isinstance(path, str) and isinstance(message, str) and message for path, message in problems)
	if not problems:
		assert isinstance(evaluate(structure, CONTEXT), bool)


def test_numbers_in_text_compare_as_numbers_and_words_as_text():
	assert compare(" 2 ", "==", 2) and compare("2.50", "==", "2.5") and compare("-3", "<", "1e1")
	assert compare(".5", "==", 0.5) and compare("+7", "==", "7")
	assert compare("inf", ">", 10**300) and compare("-Infinity", "<", -(10**300))
	assert not compare("nan", "==", "nan")  # as float() says: nan equals nothing
	assert compare("never 1", "!=", "never 2") and not compare("abc", "==", 0)
	assert compare("Nancy", "==", "Nancy") and compare("infinite", ">", "inf")  # words stay text


_fields = st.sampled_from(["", "x", "doc.x", "y", "input.y", "{{x}}", " doc.items.0.q ", "missing", "doc"])
_values = st.one_of(
	st.none(),
	st.booleans(),
	st.integers(-5, 5),
	st.floats(allow_nan=False, allow_infinity=False, width=16),
	st.sampled_from(["", "a", "A,b", "1", " 2 ", "yes", "2026-01-02", "{{x}}", "{{input.y}}", "x{{doc.x}}"]),
	st.lists(st.sampled_from(["a", 1, "2", None]), max_size=3),
)
_leaf = st.builds(
	lambda field, op, value: {"field": field, "op": op, "value": value},
	_fields,
	st.sampled_from(OPS),
	_values,
)
_condition = st.recursive(
	_leaf,
	lambda inner: st.one_of(
		st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
		st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
	),
	max_leaves=6,
)
_doc = st.fixed_dictionaries(
	{"x": _values, "y": _values, "items": st.lists(st.fixed_dictionaries({"q": _values}), max_size=2)}
)


@given(_condition, _doc, _values)
def test_compiled_conditions_decide_exactly_as_evaluate(condition, doc, y):
	from flow_engine.engine.conditions import compile_condition

	context = {"doc": doc, "input": {"y": y}}
	assert compile_condition(condition)(context) == evaluate(condition, context)


def test_compiled_conditions_keep_empty_and_jsonlogic_meaning():
	from flow_engine.engine.conditions import compile_condition

	assert compile_condition(None)({}) is True
	logic = {"==": [{"var": "doc.status"}, "Open"]}
	assert compile_condition(logic)({"doc": {"status": "Open"}}) is True
	assert compile_condition(logic)({"doc": {"status": "Closed"}}) is False
	with pytest.raises(ConditionError):
		compile_condition({"field": "x", "op": "~="})


# ---------------------------------------------------------------- equality index


def test_equality_index_gives_the_answer_compare_gives():
	import datetime

	from flow_engine.engine.conditions import compare, equality_key, value_key

	assert equality_key({"field": "doc.status", "op": "==", "value": "Open"}) == ("status", "Open")
	assert equality_key({"field": "status", "value": "Open"}) == ("status", "Open")
	for refused in (
		{"field": "status", "op": "!=", "value": "Open"},
		{"field": "qty", "op": "==", "value": "5"},  # numeric text: 5 == "5.0" by coercion
		{"field": "done", "op": "==", "value": "yes"},  # boolean words
		{"field": "status", "op": "==", "value": ""},  # empty matches None
		{"field": "customer.customer_group", "op": "==", "value": "Retail"},
		{"field": "status", "op": "==", "value": 3},
		{"all": [{"field": "status", "value": "Open"}]},
	):
		assert equality_key(refused) is None, refused
	texts = ["Open", "open", "Closed ", "2026-05-01", "x y"]
	actuals = [
		"Open",
		"open",
		"Closed",
		"Closed ",
		None,
		5,
		5.0,
		True,
		["Open"],
		datetime.date(2026, 5, 1),
		"",
	]
	for text in texts:
		condition = {"field": "f", "op": "==", "value": text}
		if equality_key(condition) is None:
			continue
		for actual in actuals:
			indexed = value_key(actual) == text
			assert indexed == compare(actual, "==", text), (actual, text)
