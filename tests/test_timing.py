import datetime

from flow_engine.engine.definition import RetryPolicy, StepTrigger
from flow_engine.engine.timing import backoff_seconds, date_due, parse_datetime, retry_at

NOW = datetime.datetime(2026, 5, 1, 9, 0)


def test_parse_datetime_forms():
	assert parse_datetime("2026-05-03") == datetime.datetime(2026, 5, 3)
	assert parse_datetime("2026-05-03 10:15:00") == datetime.datetime(2026, 5, 3, 10, 15)
	assert parse_datetime("2026-05-03T10:15:00.5") == datetime.datetime(2026, 5, 3, 10, 15, 0, 500000)
	assert parse_datetime(datetime.date(2026, 5, 3)) == datetime.datetime(2026, 5, 3)
	assert parse_datetime("soon") is None and parse_datetime(None) is None and parse_datetime(5) is None


def test_date_due_with_time_and_offset():
	trigger = StepTrigger(type="on_date", date="x", time="09:30", offset_days=-1)
	assert date_due("2026-05-03", trigger) == datetime.datetime(2026, 5, 2, 9, 30)
	assert date_due("garbage", trigger) is None


def test_aware_datetimes_are_converted():
	trigger = StepTrigger(type="on_date", date="x")
	due = date_due(
		"2026-05-03T10:00:00+02:00",
		trigger,
		to_local=lambda moment: moment.astimezone(datetime.timezone.utc).replace(tzinfo=None),
	)
	assert due == datetime.datetime(2026, 5, 3, 8, 0)


def test_backoff_grows_and_caps():
	policy = RetryPolicy(max_attempts=5, backoff_seconds=10, backoff_factor=3, max_backoff_seconds=100)
	assert [backoff_seconds(n, policy) for n in range(0, 5)] == [0.0, 10.0, 30.0, 90.0, 100.0]
	assert retry_at(NOW, 1, policy) == NOW + datetime.timedelta(seconds=10)
	assert retry_at(NOW, 5, policy) is None


def test_retry_policy_merges_defaults():
	policy = RetryPolicy.build({"max_attempts": 3, "backoff_seconds": 30}, {"max_attempts": 5})
	assert policy.max_attempts == 5 and policy.backoff_seconds == 30 and policy.backoff_factor == 2.0
