"""Write units that run beside each other on PostgreSQL (issue 15: the boot rate on PostgreSQL).

Every write unit on PostgreSQL used to take one advisory lock of its database, exclusive, as
SQLite's single writer does: correct for units written as "read, decide, write" with nobody
else writing, but the boot path queued behind it (measured: 0.36x SQLite's boot rate). A unit
whose decisions hold under row locks alone is declared `concurrent` by its caller
(`db.write(fn, concurrent=True)`): on PostgreSQL it takes the same advisory lock SHARED, so such
units run at once (the batches of the conductor, the scheduler and the network controller
beside each other), while every other unit still takes it exclusive and so still runs alone, as
before (it never sees a concurrent unit's half-done work, nor a concurrent unit its own). On SQLite the flag changes
nothing: the unit goes to the one writer and its group commit.

What a concurrent unit must do (each one's caller says how it does it):
- lock before it decides: `SELECT .. FOR UPDATE` of the rows whose state it reads to decide
  (an instance's row before a state transition), or decide inside one conditional statement
  (a claim's `UPDATE .. WHERE <it still fits>`: on PostgreSQL an UPDATE that waited for a row
  re-checks its WHERE against the committed row);
- be safe to run again: a deadlock (two batches locking the same rows in opposite orders), a
  serialization failure or a unique violation rolls the whole transaction back, and each unit of
  its batch is run again from the start in a transaction of its own, a bounded number of times
  (MAX_ATTEMPTS) with a short random pause; the after-commit hooks are those of the run that committed.

Group commit still applies (cells/db/group_commit.py): a batch is a run of queued units of one
kind, taking the lock shared when they are concurrent ones. It still pays on PostgreSQL: one
BEGIN, lock and COMMIT for the batch instead of one per unit, on a machine where each round trip
is a wake-up of two busy processes.
"""
from __future__ import annotations

import random
import time

MAX_ATTEMPTS = 5
RETRY_PAUSE = 0.005  # seconds: the most a retry waits, times the attempt (spreads the batches that collided)
# SQLSTATEs that say "run the transaction again": nothing of it was committed (a unique violation: a
# unit read "absent" and inserted while another inserted the same key; run again, it reads that row)
RETRYABLE = {"40001": "serialization_failure", "40P01": "deadlock_detected", "23505": "unique_violation"}


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error SQLAlchemy wrapped (psycopg sets `sqlstate`), else None."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None)
    return state if isinstance(state, str) else None


def retry_reason(exc: BaseException) -> str | None:
    """Why a concurrent batch that failed with `exc` may run again, or None when it may not."""
    return RETRYABLE.get(sqlstate(exc) or "")


def pause(attempt: int) -> None:
    """A short random pause before attempt `attempt + 1` (on a DB thread, never the event loop)."""
    time.sleep(random.uniform(0, RETRY_PAUSE * attempt))
