"""Riding out database trouble inside worker jobs: classify, reconnect, retry with backoff.

A worker that loses its MariaDB connection (server restarted, `KILL CONNECTION`, network blip) or
meets a deadlock or lock wait timeout must not turn that into a stalled or failed run. Every unit of
work retried here (advancing one run, firing one pending row, one scheduler phase) reloads its state
from the database and commits at the end, so running it again after a failure is safe: work that
was committed is seen as done, work that was not is done again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar

import frappe
import pymysql

T = TypeVar("T")

# MariaDB/MySQL client and server codes that say "the connection or the transaction is gone, try again"
CONNECTION_CODES = frozenset(
	{
		1053,  # server shutdown in progress
		1205,  # lock wait timeout
		1213,  # deadlock
		1927,  # connection was killed
		2003,  # can't connect
		2006,  # server has gone away
		2013,  # lost connection during query
		2014,  # commands out of sync (a broken half-read result)
		2055,  # lost connection at reading
		4031,  # disconnected by the server for inactivity
	}
)
RETRY_SECONDS = 90.0  # how long one unit of work keeps trying (a MariaDB restart takes a few seconds)
FIRST_DELAY = 0.2
MAX_DELAY = 5.0


def is_transient(error: BaseException) -> bool:
	"""Whether `error` is database trouble that trying again (after reconnecting) can cure."""
	if isinstance(error, frappe.QueryDeadlockError | frappe.QueryTimeoutError | pymysql.err.InterfaceError):
		return True
	if isinstance(error, pymysql.err.OperationalError | pymysql.err.InternalError):
		return bool(error.args) and error.args[0] in CONNECTION_CODES
	cause = error.__cause__ or error.__context__
	return (
		cause is not None
		and cause is not error
		and isinstance(cause, pymysql.err.Error)
		and is_transient(cause)
	)


def reset_connection() -> None:
	"""Leave the failed transaction behind: roll back if the connection lives, else drop it.

	A dropped connection is re-opened by Frappe on the next query (`Database.sql` connects when it has
	none). Callbacks queued for the lost transaction's commit are discarded, as a rollback would.
	"""
	db = frappe.db
	try:
		db.rollback()
		return
	except Exception:
		pass
	for callbacks in (db.before_commit, db.after_commit, db.before_rollback, db.after_rollback):
		callbacks.reset()
	connection = getattr(db, "_conn", None)
	if connection is not None:
		with suppress(Exception):
			connection.close()
	db._conn = None
	db._cursor = None


def retrying(
	work: Callable[..., T],
	*args: Any,
	seconds: float = RETRY_SECONDS,
	sleep: Callable[[float], None] = time.sleep,
	**kwargs: Any,
) -> T:
	"""Run `work(*args, **kwargs)`; on transient database errors reconnect and try again with backoff
	for up to `seconds`. Other errors, and the last transient one, propagate."""
	deadline = time.monotonic() + seconds
	delay = FIRST_DELAY
	while True:
		try:
			return work(*args, **kwargs)
		except Exception as error:
			if not is_transient(error) or time.monotonic() + delay > deadline:
				raise
			reset_connection()
			sleep(delay)
			delay = min(delay * 2, MAX_DELAY)


def beside_the_save(savepoint: str | None, title: str, work, *args, **kwargs):
	"""Run `work` beside the user's save: whatever goes wrong with it is logged under `title`, and the
	user's save goes on (returns None).

	Its writes are rolled back to `savepoint`; with none, `work` must write at most one statement
	(MariaDB undoes a failed statement whole). Except when the database has already rolled back the
	user's whole transaction (a deadlock, a lost connection): then the error goes up, so the save
	fails visibly and can be retried, instead of looking saved."""
	if savepoint:
		frappe.db.savepoint(savepoint)
	try:
		return work(*args, **kwargs)
	except Exception as error:
		if savepoint:
			try:
				frappe.db.rollback(save_point=savepoint)
			except Exception:
				raise error from None  # the transaction is gone: never pretend the save went through
		elif transaction_lost(error):
			raise
		if isinstance(error, frappe.QueryDeadlockError):
			raise
		frappe.log_error(title=title)
		return None


def transaction_lost(error: BaseException) -> bool:
	"""Whether the database rolled the whole transaction back (a deadlock) or lost it with the
	connection; other errors undo one statement at most."""
	if isinstance(error, frappe.QueryDeadlockError | pymysql.err.InterfaceError):
		return True
	return is_transient(error) and not _codes(error) & {1205}  # (a lock wait timeout undoes the statement)


def _codes(error: BaseException) -> set:
	codes = set()
	while isinstance(error, BaseException) and len(codes) < 5:
		if isinstance(error, pymysql.err.Error) and error.args and isinstance(error.args[0], int):
			codes.add(error.args[0])
		error = error.__cause__ or error.__context__
	return codes
