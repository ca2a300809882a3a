import datetime
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flow_engine.engine.payload import check_schema, payload_errors
from flow_engine.engine.schedule import UTC, check_cron, check_timezone, next_fire, slots


def local(zone, *parts, fold=0):
	return datetime.datetime(*parts, tzinfo=ZoneInfo(zone), fold=fold)


def walls(zone, instants):
	return [instant.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z") for instant in instants]


def test_cron_and_timezone_checks():
	assert check_cron("0 6 * * 1-5") is None
	assert "5 fields" in check_cron("0 6 * *")
	assert "5 fields" in check_cron("0 0 6 * * 1-5")
	assert "not a valid" in check_cron("61 6 * * *")
	assert check_cron("") is not None
	assert check_timezone("America/Montreal") is None
	assert "IANA" in check_timezone("Mars/Olympus")


def test_weekdays_at_six_in_montreal():
	after = local("America/Montreal", 2026, 11, 20, 7, 0)  # a Friday
	assert walls("America/Montreal", slots("0 6 * * 1-5", "America/Montreal", after, 3)) == [
		"2026-11-23 06:00 EST",
		"2026-11-24 06:00 EST",
		"2026-11-25 06:00 EST",
	]


@pytest.mark.parametrize(
	"zone,spring_day,expected",
	[
		(
			"America/Toronto",
			(2026, 3, 8),
			["2026-03-07 02:30 EST", "2026-03-08 03:30 EDT", "2026-03-09 02:30 EDT"],
		),
		(
			"Europe/Paris",
			(2026, 3, 29),
			["2026-03-28 02:30 CET", "2026-03-29 03:30 CEST", "2026-03-30 02:30 CEST"],
		),
		(
			"Australia/Sydney",
			(2026, 10, 4),
			["2026-10-03 02:30 AEST", "2026-10-04 03:30 AEDT", "2026-10-05 02:30 AEDT"],
		),
	],
)
def test_spring_forward_shifts_the_missing_time_and_skips_no_day(zone, spring_day, expected):
	after = local(zone, *spring_day, 0, 0) - datetime.timedelta(days=1)
	assert walls(zone, slots("30 2 * * *", zone, after, 3)) == expected


@pytest.mark.parametrize(
	"zone,fall_day,expected",
	[
		(
			"America/Toronto",
			(2026, 11, 1),
			["2026-10-31 01:30 EDT", "2026-11-01 01:30 EDT", "2026-11-02 01:30 EST"],
		),
		(
			"Europe/Paris",
			(2026, 10, 25),
			["2026-10-24 02:30 CEST", "2026-10-25 02:30 CEST", "2026-10-26 02:30 CET"],
		),
		(
			"Australia/Sydney",
			(2026, 4, 5),
			["2026-04-04 02:30 AEDT", "2026-04-05 02:30 AEDT", "2026-04-06 02:30 AEST"],
		),
	],
)
def test_fall_back_fires_the_repeated_time_once(zone, fall_day, expected):
	minute_hour = "30 1" if zone == "America/Toronto" else "30 2"
	after = local(zone, *fall_day, 0, 0) - datetime.timedelta(days=1)
	assert walls(zone, slots(f"{minute_hour} * * *", zone, after, 3)) == expected


def test_no_slot_repeats_inside_a_fall_back_hour():
	after = local("America/Toronto", 2026, 11, 1, 0, 50)
	result = slots("*/30 * * * *", "America/Toronto", after, 6)
	assert len(set(result)) == 6 and result == sorted(result)
	assert walls("America/Toronto", result)[:3] == [
		"2026-11-01 01:00 EDT",
		"2026-11-01 01:30 EDT",
		"2026-11-01 02:00 EST",
	]


def test_every_half_hour_across_spring_forward_never_repeats_an_instant():
	after = local("Europe/Paris", 2026, 3, 29, 1, 10)
	result = slots("*/30 * * * *", "Europe/Paris", after, 5)
	assert result == sorted(set(result))


def test_after_must_be_aware():
	with pytest.raises(ValueError):
		next_fire("* * * * *", "UTC", datetime.datetime(2026, 1, 1))


ZONES = ["America/Toronto", "Europe/Paris", "Australia/Sydney", "Asia/Kolkata", "UTC", "America/St_Johns"]
CRONS = ["30 2 * * *", "30 1 * * *", "0 * * * *", "*/15 * * * *", "0 6 * * 1-5", "0 0 1 * *", "45 23 * * 0"]


@settings(max_examples=150, deadline=None)
@given(
	zone=st.sampled_from(ZONES),
	cron=st.sampled_from(CRONS),
	start=st.datetimes(min_value=datetime.datetime(2025, 1, 1), max_value=datetime.datetime(2028, 12, 31)),
)
def test_slots_strictly_increase_and_match_the_cron(zone, cron, start):
	after = start.replace(tzinfo=UTC)
	result = slots(cron, zone, after, 8)
	assert result[0] > after
	assert all(a < b for a, b in itertools.pairwise(result))
	minute = cron.split()[0]
	for instant in result:
		wall = instant.astimezone(ZoneInfo(zone))
		if minute.isdigit():
			assert wall.minute == int(minute)


@settings(max_examples=20, deadline=None)
@given(
	zone=st.sampled_from(["America/Toronto", "Europe/Paris", "Australia/Sydney"]),
	year=st.sampled_from([2026, 2027]),
)
def test_a_daily_schedule_fires_exactly_once_every_local_day_for_a_year(zone, year):
	after = local(zone, year, 1, 1, 0, 0)
	result = slots("30 2 * * *", zone, after, 365)
	days = [instant.astimezone(ZoneInfo(zone)).date() for instant in result]
	assert len(set(days)) == 365
	assert days[0] == datetime.date(year, 1, 1) and (days[-1] - days[0]).days == 364


def test_payload_schema_errors_name_the_path():
	schema = {
		"type": "object",
		"required": ["segment"],
		"properties": {
			"segment": {"enum": ["retail", "wholesale"]},
			"lines": {
				"type": "array",
				"items": {"type": "object", "properties": {"qty": {"type": "integer"}}},
			},
		},
	}
	assert check_schema(schema) is None
	assert "not a valid" in check_schema({"type": "nonsense"})
	assert payload_errors(schema, {"segment": "retail"}) == []
	errors = dict(payload_errors(schema, {"segment": "other", "lines": [{"qty": "two"}]}))
	assert "lines/0/qty" in errors and "segment" in errors
	assert payload_errors(schema, {})[0][0] == "(root)"
