"""Schedule maths: 5-field cron in an IANA time zone, and the DST policy.

All instants are timezone-aware UTC. Cron expressions are matched against *wall-clock* time in the
schedule's zone (croniter over naive local times), then converted with `zoneinfo`:

- a wall time that does not exist (clocks spring forward over it) fires at the same wall time on the
  old offset, i.e. shifted forward by the gap (02:30 on a 02:00→03:00 night fires at 03:30);
- a wall time that happens twice (clocks fall back) fires once, at its first occurrence;
- a slot never fires twice: the next slot is always strictly after the previous one.
"""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter

UTC = datetime.timezone.utc
MAX_SCAN = 2000
LOOKBACK = datetime.timedelta(hours=3)  # longer than any DST gap, so shifted slots are not missed


def check_cron(expression: str) -> str | None:
	"""A problem with a 5-field cron expression, or None."""
	if not isinstance(expression, str) or not expression.strip():
		return "is required for a recurring schedule (5 fields: minute hour day-of-month month day-of-week)"
	fields = expression.split()
	if len(fields) != 5:
		return f"must have 5 fields (minute hour day-of-month month day-of-week); '{expression}' has {len(fields)}"
	if not croniter.is_valid(expression):
		return f"'{expression}' is not a valid cron expression"
	return None


def check_timezone(name: str) -> str | None:
	if not isinstance(name, str) or not name.strip():
		return "is required (an IANA name such as America/Toronto)"
	try:
		ZoneInfo(name)
	except (ZoneInfoNotFoundError, ValueError):
		return f"'{name}' is not an IANA time zone (e.g. Europe/Paris, America/Toronto)"
	return None


def timezones() -> list[str]:
	return sorted(available_timezones())


def to_instant(wall: datetime.datetime, zone: ZoneInfo) -> datetime.datetime:
	"""The UTC instant of a naive wall-clock time in `zone` (fold=0: see the module docstring)."""
	return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def next_fire(expression: str, zone_name: str, after: datetime.datetime) -> datetime.datetime:
	"""The first slot strictly after `after` (an aware instant), as an aware UTC instant."""
	if after.tzinfo is None:
		raise ValueError("`after` must be timezone-aware")
	zone = ZoneInfo(zone_name)
	after = after.astimezone(UTC)
	start_wall = (after.astimezone(zone) - LOOKBACK).replace(tzinfo=None, second=0, microsecond=0)
	candidates = croniter(expression, start_wall)
	for _ in range(MAX_SCAN):
		wall = candidates.get_next(datetime.datetime)
		instant = to_instant(wall, zone)
		if instant > after:
			return instant
	raise ValueError(f"no slot of '{expression}' found after {after.isoformat()}")


def slots(expression: str, zone_name: str, after: datetime.datetime, count: int) -> list[datetime.datetime]:
	"""The next `count` slots, each computed from the previous one."""
	result = []
	current = after
	for _ in range(count):
		current = next_fire(expression, zone_name, current)
		result.append(current)
	return result
