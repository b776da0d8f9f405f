"""Scheduler decision cost against cell size (issue 21): select_for (read the hosts, filter, weigh,
claim) on a real SQLite cell DB of N compute nodes, one placement at a time as a single boot asks
and in multi-create requests, p50/p99 per call and per placed server, each size beside the smallest
in the same run. In-process: the scheduler's own cost, without RPC or a loaded router.

    python -m tools.bench.scheduler [--sizes 100,200,1000] [--calls 200] [--multi 50]
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from sqlalchemy import Connection

from cells.db import claims
from cells.db.engine import Database
from cells.db.schema import create_schema
from cells.scheduler.manager import select_for
from tools.bench.boot import pct

FLAVOR = {"vcpus": 1, "ram": 64, "disk": 1, "ephemeral": 0, "swap": 0}
SIM_HOST = {"vcpus": 64, "memory_mb": 262144, "local_gb": 1000}  # what a simulated host reports


async def measure(hosts: int, calls: int, multi: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'cell.db'}"
        await create_schema(url)
        db = Database(url)
        try:
            def add_hosts(conn: Connection) -> None:
                for h in range(hosts):
                    claims.upsert_node(conn, f"h{h:05d}", SIM_HOST)
            await db.write(add_hosts)
            singles, multis = [], []
            for i in range(calls):
                t = time.perf_counter()
                await select_for(db, lambda h: True, {"flavor": FLAVOR}, [f"one-{i}"], [])
                singles.append(time.perf_counter() - t)
            for i in range(max(1, calls // multi)):
                t = time.perf_counter()
                await select_for(db, lambda h: True, {"flavor": FLAVOR}, [f"m{i}-{k}" for k in range(multi)], [])
                multis.append((time.perf_counter() - t) / multi)
            return {"one_p50_ms": 1000 * pct(singles, 0.5), "one_p99_ms": 1000 * pct(singles, 0.99),
                    "multi_per_server_ms": 1000 * pct(multis, 0.5)}
        finally:
            await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,200,1000")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--multi", type=int, default=50, help="servers per multi-create request")
    args = parser.parse_args()
    rows = [(int(n), asyncio.run(measure(int(n), args.calls, args.multi))) for n in args.sizes.split(",")]
    base = rows[0][1]
    print(f"{'hosts':>6} " + " ".join(f"{k:>26}" for k in base))
    for n, row in rows:
        print(f"{n:>6} " + " ".join(f"{v:>16.3f} ({v / base[k]:>5.2f}x)" for k, v in row.items()))
    print(f"ratios against {rows[0][0]} hosts in this run; multi: one request of {args.multi} servers, per server")


if __name__ == "__main__":
    main()
