"""Readings a job (or request) trusts for a moment: one read per flow, not one per run, on paths a
backlog walks thousands of times (a run's every advance asks for its Run As; every run's end asks
whether its flow has concurrency controls). Kept in `frappe.local`, so a job starts without them;
`forget` drops them when this process saves what they read."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import frappe


def read(kind: str, key: str, seconds: float, load: Callable[[str], Any]) -> Any:
	"""`load(key)`, read at most once every `seconds` per `kind` and key in this job (an error is
	raised, never remembered)."""
	attr = f"flow_engine_recent_{kind}"
	known = getattr(frappe.local, attr, None)
	if known is None:
		known = {}
		setattr(frappe.local, attr, known)
	now = time.monotonic()
	hit = known.get(key)
	if hit is None or now - hit[1] > seconds:
		hit = known[key] = (load(key), now)
	return hit[0]


def forget(*kinds: str) -> None:
	for kind in kinds:
		setattr(frappe.local, f"flow_engine_recent_{kind}", None)
