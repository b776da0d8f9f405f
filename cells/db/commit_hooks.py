"""Work that must happen only once a unit of work's writes are committed (metrics of ended flows).

A unit registers `after_commit(conn, fn)`; the Database's writer runs fn after the COMMIT of the
transaction that holds the unit, and drops it when the unit fails alone (rolled back to its
savepoint) or the whole transaction does. So a counter of ended builds moves exactly once per
build that really ended, whatever the group commit batched with it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Connection

LOG = logging.getLogger(__name__)
_KEY = "cellcloud_after_commit"
Hook = Callable[[], None]


def after_commit(conn: Connection, fn: Hook) -> None:
    """Run `fn` after the commit of the unit `conn` is running; outside a writer's unit (a read, a
    connection of a test's own), at once."""
    hooks: list[Hook] | None = conn.info.get(_KEY)
    if hooks is None:
        fn()
        return
    hooks.append(fn)


def begin_unit(conn: Connection) -> list[Hook]:
    """A fresh hook list for the unit about to run on `conn` (its info outlives the checkout: always reset)."""
    hooks: list[Hook] = []
    conn.info[_KEY] = hooks
    return hooks


def end_unit(conn: Connection) -> None:
    conn.info.pop(_KEY, None)


def run(hooks: list[Hook]) -> None:
    """After the COMMIT: a failing hook is logged, never the unit's caller's failure."""
    for fn in hooks:
        try:
            fn()
        except Exception:  # the data is committed: a hook must not undo the answer
            LOG.exception("after-commit hook failed")
