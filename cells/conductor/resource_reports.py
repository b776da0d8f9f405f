"""Compute hosts' resource reports (compute_node_update) that arrive together, written in one transaction.

When a cell starts, every host reports at once: 1,000 simulated hosts in a few seconds. One write unit
per report cost the conductor three statements, a savepoint and a thread hop per host, and on a loaded
box the reports queued past their RPC deadline and were sent again (issue 21: ~2,000 calls dropped per
conductor). Reports now wait one tick, then every report that came meanwhile is written in one unit
(claims.upsert_nodes): one grouped usage query, one executemany per row shape, one host-marks UPDATE.

Each report stays its own: validated by its own call (with its caller's principal checked there), its
host's row written from its own resources, and its caller answered only once the write committed. A host
that reports twice within a tick has its newer report written; both callers are answered by that write.
If the batch's transaction fails, each report is written again alone (each in a savepoint of the group
commit), so one bad report fails only its own caller.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.db import claims
from cells.db import hosts as hdb
from cells.db.engine import Database

LOG = logging.getLogger(__name__)
REPORT_TICK = 0.05  # seconds a report waits for others: small beside the call's 5 s deadline
MAX_REPORTS = 250  # reports per transaction: bounds how long one batch holds the cell DB's write lock

_Batch = dict[str, tuple[dict[str, Any], list["asyncio.Future[None]"]]]


class ReportBatcher:
    def __init__(self, db: Database, tick: float = REPORT_TICK, max_reports: int = MAX_REPORTS) -> None:
        self._db = db
        self._tick = tick
        self._max = max_reports
        self._pending: _Batch = {}
        self._flusher: asyncio.Task[None] | None = None
        self.transactions = 0  # batches committed or failed (a figure for tests and benches)

    async def report(self, host: str, resources: dict[str, Any]) -> None:
        """Write `host`'s resources (already validated) with the others of this tick; returns once committed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._pending.get(host, (resources, []))[1]
        self._pending[host] = (resources, [*waiting, fut])  # the newer report of the host wins
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await fut

    def close(self) -> None:
        """Stop writing: callers still waiting learn that their report was not written."""
        if self._flusher is not None:
            self._flusher.cancel()
        _settle(self._pending, errors.RpcError(reason="the conductor is stopping"))
        self._pending = {}

    async def _flush(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(self._tick)
                hosts = list(self._pending)[:self._max]
                await self._write({h: self._pending.pop(h) for h in hosts})
        finally:
            self._flusher = None

    async def _write(self, batch: _Batch) -> None:
        def write(conn: Connection) -> None:
            claims.upsert_nodes(conn, {host: resources for host, (resources, _) in batch.items()})
            hdb.reported_many(conn, batch)  # a deleted compute service that reports again is back

        try:
            self.transactions += 1
            await self._db.write(write)
        except asyncio.CancelledError:
            _settle(batch, errors.RpcError(reason="the conductor is stopping"))
            raise
        except Exception as exc:  # noqa: BLE001 - answered to each caller, or retried per report
            if len(batch) == 1:
                _settle(batch, exc)
                return
            LOG.warning("%d resource reports failed together (%s): writing each alone", len(batch), exc)
            await asyncio.gather(*(self._write({host: entry}) for host, entry in batch.items()))
            return
        _settle(batch, None)


def _settle(batch: _Batch, exc: BaseException | None) -> None:
    for _, futures in batch.values():
        for fut in futures:
            if fut.done():  # its caller was cancelled (deadline): nobody waits for it
                continue
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)
