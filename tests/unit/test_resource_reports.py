"""Resource reports written together (cells/conductor/resource_reports.py, claims.upsert_nodes) on a real
SQLite cell DB: one transaction for a burst, each host's row from its own report, usage from its claims,
a deleted service back, and a failing batch written again report by report."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, insert, select

from cells.conductor.resource_reports import ReportBatcher
from cells.db import claims
from cells.db import hosts as hdb
from cells.db.engine import Database
from cells.db.schema import claims as claims_table
from cells.db.schema import compute_nodes, create_schema

SIM_HOST = {"vcpus": 64, "memory_mb": 262144, "local_gb": 1000}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cell.db'}"
    await create_schema(url)
    database = Database(url)
    yield database
    await database.close()


def _nodes(conn: Connection) -> dict[str, dict[str, Any]]:
    return {r.host: dict(r._mapping) for r in conn.execute(select(compute_nodes))}


async def test_a_burst_of_reports_is_one_transaction_with_each_hosts_own_row(db: Database) -> None:
    """200 hosts reporting at once (half known, half new, one with a claim) commit in one transaction;
    each row holds its own host's figures, its usage summed from its claims, its extra keys as stats."""
    await db.write(lambda conn: claims.upsert_nodes(conn, {f"h{i:03d}": SIM_HOST for i in range(100)}))
    await db.write(lambda conn: conn.execute(insert(claims_table), {
        "instance_uuid": "u-1", "host": "h007", "vcpus": 2, "memory_mb": 2048, "local_gb": 20,
        "created_at": "2026-12-07T00:00:00Z"}))
    batcher = ReportBatcher(db, tick=0.05)
    reports = {f"h{i:03d}": {"vcpus": 8 + i, "memory_mb": 1024 * (i + 1), "local_gb": 10 + i, "rack": f"r{i % 3}"}
               for i in range(200)}
    await asyncio.gather(*(batcher.report(host, r) for host, r in reports.items()))
    assert batcher.transactions == 1
    nodes = await db.read(_nodes)
    assert len(nodes) == 200
    for i in (0, 7, 99, 100, 199):
        row = nodes[f"h{i:03d}"]
        assert (row["vcpus"], row["memory_mb"], row["local_gb"]) == (8 + i, 1024 * (i + 1), 10 + i)
        assert row["stats"] == {"rack": f"r{i % 3}"}
    assert (nodes["h007"]["vcpus_used"], nodes["h007"]["memory_mb_used"], nodes["h007"]["local_gb_used"]) == (2, 2048, 20)
    assert nodes["h008"]["vcpus_used"] == 0
    assert nodes["h150"]["cpu_allocation_ratio"] == claims.DEFAULT_RATIOS["cpu_allocation_ratio"]


async def test_a_host_reporting_twice_in_a_tick_has_its_newer_report_written(db: Database) -> None:
    """Both callers return after the one write, which holds the second report."""
    batcher = ReportBatcher(db, tick=0.05)
    await asyncio.gather(batcher.report("h1", {**SIM_HOST, "vcpus": 4}), batcher.report("h1", {**SIM_HOST, "vcpus": 6}))
    assert batcher.transactions == 1
    assert (await db.read(_nodes))["h1"]["vcpus"] == 6


async def test_a_deleted_compute_service_that_reports_is_back(db: Database) -> None:
    def two_deleted(conn: Connection) -> None:
        for host in ("h1", "h2"):
            claims.upsert_node(conn, host, SIM_HOST)
            hdb.mark_deleted(conn, host)
    await db.write(two_deleted)
    assert await db.read(hdb.unusable) == {"h1", "h2"}
    await ReportBatcher(db, tick=0.01).report("h1", SIM_HOST)
    assert await db.read(hdb.unusable) == {"h2"}


async def test_a_batch_that_fails_is_written_report_by_report_and_only_the_bad_one_fails(db: Database) -> None:
    """A report whose value the DB refuses fails its own caller; the others of its tick are written."""
    batcher = ReportBatcher(db, tick=0.05)
    bad = {**SIM_HOST, "cpu_allocation_ratio": object()}  # passes the conductor's checks, not the driver's
    results = await asyncio.gather(batcher.report("good1", SIM_HOST), batcher.report("bad", bad),
                                   batcher.report("good2", SIM_HOST), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Exception)
    assert batcher.transactions == 4  # the batch, then each report alone
    assert set(await db.read(_nodes)) == {"good1", "good2"}


async def test_reports_past_the_batch_bound_go_in_the_next_transaction(db: Database) -> None:
    batcher = ReportBatcher(db, tick=0.01, max_reports=50)
    await asyncio.gather(*(batcher.report(f"h{i}", SIM_HOST) for i in range(120)))
    assert batcher.transactions == 3
    assert len(await db.read(_nodes)) == 120


async def test_close_fails_the_reports_still_waiting(db: Database) -> None:
    batcher = ReportBatcher(db, tick=5.0)
    waiting = asyncio.ensure_future(batcher.report("h1", SIM_HOST))
    await asyncio.sleep(0.01)
    batcher.close()
    with pytest.raises(Exception, match="stopping"):
        await waiting
    assert await db.read(_nodes) == {}
