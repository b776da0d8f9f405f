"""The conductor's CPU for a start-up storm of resource reports (compute_node_update, issue 21).

    python -m tools.bench.resource_reports [--hosts 1000] [--rounds 3]

`--hosts` reports arrive at once, as when a cell's simulated hosts start, written to a real SQLite cell
DB by the conductor's code in this process, two ways alternated in the same run:
- per report: one write unit each (upsert_node + reported), as the conductor did before; the group
  commit still shares a transaction among the units queued meanwhile, each in a savepoint;
- batched: cells/conductor/resource_reports.py (what the conductor does now).
CPU is this process's (every thread: the event loop and the DB writer), per 1,000 reports. The RPC's
own cost per call (decode, principal check, reply) is the same either way and not in these figures.
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import Connection

from cells.conductor.resource_reports import ReportBatcher
from cells.db import claims
from cells.db import hosts as hdb
from cells.db.engine import Database
from cells.db.schema import create_schema

SIM_HOST = {"vcpus": 64, "memory_mb": 262144, "local_gb": 1000}  # what a simulated host reports


async def per_report(db: Database, host: str) -> None:
    def write(conn: Connection) -> None:
        claims.upsert_node(conn, host, SIM_HOST)
        hdb.reported(conn, host)
    await db.write(write)


async def storm(report: Callable[[str], Awaitable[None]], hosts: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) for `hosts` reports sent at once."""
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(report(f"h{i:05d}") for i in range(hosts)))
    return time.process_time() - cpu, time.perf_counter() - wall


async def measure(hosts: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {"per report": [], "batched": []}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'cell.db'}"
        await create_schema(url)
        db = Database(url)
        try:
            batcher = ReportBatcher(db)
            await storm(lambda h: per_report(db, h), hosts)  # the rows exist from here on, as after a cell's first start
            for _ in range(rounds):
                results["per report"].append(await storm(lambda h: per_report(db, h), hosts))
                results["batched"].append(await storm(lambda h: batcher.report(h, SIM_HOST), hosts))
        finally:
            await db.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(measure(args.hosts, args.rounds))
    per_1000 = 1000 / args.hosts
    base = min(cpu for cpu, _ in results["per report"]) * per_1000
    print(f"{args.hosts} reports at once, {args.rounds} rounds alternated; best round, CPU per 1,000 reports")
    print("| writes | CPU s per 1,000 | vs per report | wall s (storm) |")
    print("|---|---|---|---|")
    for name, rows in results.items():
        cpu = min(c for c, _ in rows) * per_1000
        wall = min(w for _, w in rows)
        print(f"| {name} | {cpu:.3f} | {cpu / base:.2f}x | {wall:.2f} |")


if __name__ == "__main__":
    main()
