"""Time maths: delays, on_date targets and retry backoff. All datetimes are naive site-local."""

from __future__ import annotations

import datetime
import re
from typing import Any

from flow_engine.engine.definition import RetryPolicy, StepTrigger

_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def delay_due(ready_at: datetime.datetime, trigger: StepTrigger) -> datetime.datetime:
	return ready_at + trigger.delay


def parse_datetime(value: Any) -> datetime.datetime | None:
	"""A datetime from a datetime, a date (midnight) or ISO text; None when it is not one."""
	if isinstance(value, datetime.datetime):
		return value.replace(tzinfo=None) if value.tzinfo is None else value
	if isinstance(value, datetime.date):
		return datetime.datetime.combine(value, datetime.time())
	if not isinstance(value, str) or not value.strip():
		return None
	text = value.strip().replace("T", " ")
	if text.endswith("Z"):
		text = text[:-1] + "+00:00"
	try:
		return datetime.datetime.fromisoformat(text)
	except ValueError:
		pass
	try:
		return datetime.datetime.combine(datetime.date.fromisoformat(text[:10]), datetime.time())
	except ValueError:
		return None


def date_due(rendered_date: Any, trigger: StepTrigger, to_local=None) -> datetime.datetime | None:
	"""The moment an on_date step is due: its date, at `time` if given, shifted by `offset_days`.

	`to_local` converts an aware datetime to the site's naive local time (the runtime passes one).
	"""
	moment = parse_datetime(rendered_date)
	if moment is None:
		return None
	if moment.tzinfo is not None:
		moment = to_local(moment) if to_local else moment.replace(tzinfo=None)
	if trigger.time:
		match = _TIME.match(trigger.time)
		if match:
			hour, minute, second = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
			moment = moment.replace(hour=hour, minute=minute, second=second, microsecond=0)
	if trigger.offset_days:
		moment += datetime.timedelta(days=trigger.offset_days)
	return moment


def backoff_seconds(attempt: int, policy: RetryPolicy) -> float:
	"""Delay before attempt `attempt + 1` after `attempt` failures: base × factor^(attempt-1), capped."""
	if attempt < 1:
		return 0.0
	delay = policy.backoff_seconds * (policy.backoff_factor ** (attempt - 1))
	return float(min(delay, policy.max_backoff_seconds))


def retry_at(now: datetime.datetime, attempt: int, policy: RetryPolicy) -> datetime.datetime | None:
	"""When to try again after `attempt` failed attempts, or None when attempts are used up."""
	if attempt >= policy.max_attempts:
		return None
	return now + datetime.timedelta(seconds=backoff_seconds(attempt, policy))
