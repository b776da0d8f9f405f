"""Listing benchmark: one 1000-server page merged from 10 cells vs the same page from one cell.

Seeds 10 cell DBs with 1,000 instances each (10,000 in all, through the cell DB
layer) and one more cell DB holding the same 10,000, starts each cell's router
and conductor as real processes (tools.serve, CURVE off: the same for both
sides), and measures in this process the API's cell router (api/cell_router.py:
ask every cell in parallel, merge-sort, cut the page) listing the first page
of 1000 (default sort created_at desc, uuid desc):
  - across the 10 cells, and from the single cell: p50, p99 and their ratio
    (goal: 10 cells at most 2x the single cell)
  - across the 10 cells with one cell frozen (SIGSTOP): p50/p99 (goal: within
    the bound plus 50 ms; its servers come from a mapping stand-in)

`--db postgresql` measures one big cell instead (issue 15): 100,000 servers (`--servers`) in a cell
whose DB is on a private PostgreSQL (tools/pgserver.py) beside the same servers in a SQLite cell, both
served by real router and conductor processes; the first page of 1000 sorted by created_at from each:
p50, p99, the ratio, and the goal (PostgreSQL p50 < 150 ms).

    .venv/bin/python -m tools.bench.list [--rounds 30] [--bound 1.0] [--db postgresql [--servers 100000]]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection

from api.cell_router import CellClient, CellRouter
from cells.config import ClusterConfig
from cells.context import RequestContext
from cells.db import instances as idb
from cells.db.engine import Database
from cells.db.schema import create_schema
from tools import clusterfile
from tools.devcluster import free_port

CELLS = 10
PER_CELL = 1000
PAGE = 1000
KEYS, DIRS = ["created_at", "uuid"], ["desc", "desc"]
CTX = RequestContext(project="p1", user="u1", roles=("admin",))
ROOT = Path(__file__).resolve().parents[2]


def pct(samples: list[float], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(q * len(samples)))]


def unique_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


def cluster_file(root: Path, names: list[str] | None = None, dbs: dict[str, str] | None = None) -> Path:
    names = names or [f"c{i:02d}" for i in range(CELLS)] + ["single"]
    ports = iter(unique_ports(4 * len(names) + 1))
    cells = [{"name": n, "services": {kind: f"ctl:{next(ports)}"
                                      for kind in ("router", "conductor", "scheduler", "network")},
              **({"db": (dbs or {})[n]} if n in (dbs or {}) else {})}
             for n in names]
    doc = {"cluster": "benchlist", "state_dir": "var", "api": {"host": "ctl", "listen": f"127.0.0.1:{next(ports)}"},
           "sites": [{"name": "s", "cells": cells}], "hosts": {"ctl": {"address": "127.0.0.1"}},
           "security": {"curve": False}}
    path = root / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def rows(start: int, count: int, base: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(start, start + count):
        created = (base + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out.append({
            "uuid": str(uuid.UUID(int=i + 1)), "name": f"vm{i:05d}", "project_id": "p1", "user_id": "u1",
            "host": "node1", "flavor": {"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1},
            "image": {"id": "img"}, "metadata": {"k": "v"}, "addresses": {}, "vm_state": "active", "task_state": None,
            "power_state": 1, "created_at": created, "updated_at": created, "launched_at": created,
            "terminated_at": None, "deleted": False, "fault": None, "progress": 0, "key_name": None,
            "availability_zone": "nova", "user_data": None, "access_ipv4": None, "access_ipv6": None,
            "conductor_id": "seed", "request_spec": {}, "retry_hosts": []})
    return out


def _insert(batch: list[dict[str, Any]], conn: Connection) -> None:
    conn.execute(idb.INSERT, batch)


async def seed(cluster: ClusterConfig) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for cell in cluster.cells:
        await create_schema(cell.db)
        db = Database(cell.db)
        if cell.name == "single":
            batches = [rows(i * PER_CELL, PER_CELL, base) for i in range(CELLS)]
        else:
            index = int(cell.name[1:])
            batches = [[r for r in rows(0, CELLS * PER_CELL, base) if int(r["name"][2:]) % CELLS == index]]
        for batch in batches:
            await db.write(partial(_insert, batch))
        await db.close()


def start(cluster_json: Path, cluster: ClusterConfig) -> list[subprocess.Popen[bytes]]:
    procs = []
    for s in cluster.services:
        if s.kind in ("router", "conductor"):
            log = open(cluster_json.parent / f"{s.id.replace('/', '_')}.log", "ab")  # noqa: SIM115
            procs.append(subprocess.Popen([sys.executable, "-m", "tools.serve", "--cluster", str(cluster_json),
                                           "--log-level", "WARNING", s.id], cwd=ROOT,
                                          stdout=log, stderr=subprocess.STDOUT))
            log.close()
    return procs


async def measure(router: CellRouter, rounds: int, bound: float, down: Any = None) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        page = await router.list_instances(CTX, {"project_id": "p1"}, KEYS, DIRS, PAGE, None, bound=bound,
                                           down_records=down)
        samples.append(time.perf_counter() - started)
        assert len(page) == PAGE, len(page)
    return samples


async def run(rounds: int, bound: float) -> None:
    with tempfile.TemporaryDirectory(prefix="benchlist-") as tmp:
        path = cluster_file(Path(tmp))
        cluster = clusterfile.prepare(path)
        await seed(cluster)
        procs = start(Path(cluster.state_dir) / "cluster.json", cluster)
        many = CellRouter([CellClient(c, cluster.heartbeat_interval) for c in cluster.cells if c.name != "single"])
        one = CellRouter([CellClient(c, cluster.heartbeat_interval) for c in cluster.cells if c.name == "single"])
        try:
            many.start()
            one.start()
            deadline = time.monotonic() + 120
            while not all(c.has_conductor() for r in (many, one) for c in r.tops.values()):
                assert time.monotonic() < deadline, "the cells did not come up (logs in the state dir)"
                await asyncio.sleep(0.2)
            first_many = await measure(many, 3, 10.0)  # warm-up (and a check the pages agree)
            await measure(one, 3, 10.0)
            got_many = await many.list_instances(CTX, {}, KEYS, DIRS, PAGE, None, bound=10.0)
            got_one = await one.list_instances(CTX, {}, KEYS, DIRS, PAGE, None, bound=10.0)
            assert [r["uuid"] for r in got_many] == [r["uuid"] for r in got_one], "the merged page differs"
            del first_many
            t_many = await measure(many, rounds, 10.0)
            t_one = await measure(one, rounds, 10.0)
            print(f"page of {PAGE} out of {CELLS * PER_CELL} servers, {rounds} rounds")
            print(f"  one cell holding all:   p50 {pct(t_one, .5) * 1e3:7.1f} ms   p99 {pct(t_one, .99) * 1e3:7.1f} ms")
            print(f"  {CELLS} cells merged:        p50 {pct(t_many, .5) * 1e3:7.1f} ms   "
                  f"p99 {pct(t_many, .99) * 1e3:7.1f} ms")
            print(f"  ratio {CELLS} cells / one cell: p50 {pct(t_many, .5) / pct(t_one, .5):.2f}x   "
                  f"p99 {pct(t_many, .99) / pct(t_one, .99):.2f}x   (goal <= 2x)")
            # one cell frozen: the listing waits for it at most `bound`
            victim = next(c for c in cluster.cells if c.name == "c00")
            stopped = [p for p, s in zip(procs, [s for s in cluster.services if s.kind in ("router", "conductor")])
                       if s.cell == victim.path]
            for p in stopped:
                os.kill(p.pid, signal.SIGSTOP)
            known = [dict(r, down=True) for r in got_one if int(str(r["name"])[2:]) % CELLS == 0]

            async def from_mappings(paths: list[str]) -> list[dict[str, Any]]:
                return known

            t_down = await measure(many, max(5, rounds // 3), bound, from_mappings)
            print(f"  one of {CELLS} cells down (bound {bound:.1f} s): p50 {pct(t_down, .5) * 1e3:7.1f} ms   "
                  f"p99 {pct(t_down, .99) * 1e3:7.1f} ms   (goal <= bound + 50 ms = {(bound + .05) * 1e3:.0f} ms)")
            for p in stopped:
                os.kill(p.pid, signal.SIGCONT)
        finally:
            await many.stop()
            await one.stop()
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)


async def seed_big(cell_db: str, servers: int) -> None:
    """`servers` servers of project p1 in one cell DB, in transactions of 5000, then ANALYZE: the planner's
    statistics a bulk-loaded DB gets from autovacuum within a minute (without them PostgreSQL takes the
    fresh table for a small one and sorts all of it)."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    await create_schema(cell_db)
    db = Database(cell_db)
    try:
        for start in range(0, servers, 5000):
            await db.write(partial(_insert, rows(start, min(5000, servers - start), base)))
        await db.write(lambda conn: conn.exec_driver_sql("ANALYZE"))
    finally:
        await db.close()


async def run_big_cell(rounds: int, servers: int) -> None:
    """One cell of `servers` servers on SQLite and one on PostgreSQL: the first page of 1000 of each."""
    from tools import pgserver
    reason = pgserver.missing_reason()
    if reason is not None:
        raise SystemExit(f"--db postgresql: {reason}")
    with tempfile.TemporaryDirectory(prefix="benchlist-") as tmp:
        os.chmod(tmp, 0o711)  # the server runs as the postgres user when root: it must reach its dir
        server = pgserver.PrivateServer(Path(tmp) / "pg")
        server.start()
        try:
            server.create_database("cell_big")
            path = cluster_file(Path(tmp), ["lite", "pg"], {"pg": server.url("cell_big")})
            cluster = clusterfile.prepare(path)
            started = time.perf_counter()
            await asyncio.gather(*(seed_big(c.db, servers) for c in cluster.cells))
            print(f"seeded {servers} servers into each cell in {time.perf_counter() - started:.0f} s")
            procs = start(Path(cluster.state_dir) / "cluster.json", cluster)
            routers = {c.name: CellRouter([CellClient(c, cluster.heartbeat_interval)]) for c in cluster.cells}
            try:
                for r in routers.values():
                    r.start()
                deadline = time.monotonic() + 120
                while not all(c.has_conductor() for r in routers.values() for c in r.tops.values()):
                    assert time.monotonic() < deadline, "the cells did not come up (logs in the state dir)"
                    await asyncio.sleep(0.2)
                pages = {}
                for name, r in routers.items():
                    await measure(r, 3, 10.0)  # warm-up
                    pages[name] = [row["uuid"] for row in
                                   await r.list_instances(CTX, {}, KEYS, DIRS, PAGE, None, bound=10.0)]
                assert pages["lite"] == pages["pg"], "the two cells' pages differ"
                taken = {name: await measure(r, rounds, 10.0) for name, r in routers.items()}
            finally:
                for r in routers.values():
                    await r.stop()
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(10)
        finally:
            server.stop()
    lite, pg = taken["lite"], taken["pg"]
    print(f"page of {PAGE} sorted by created_at desc out of one cell of {servers} servers, {rounds} rounds")
    print(f"  SQLite      p50 {pct(lite, .5) * 1e3:7.1f} ms   p99 {pct(lite, .99) * 1e3:7.1f} ms")
    print(f"  PostgreSQL  p50 {pct(pg, .5) * 1e3:7.1f} ms   p99 {pct(pg, .99) * 1e3:7.1f} ms   (goal p50 < 150 ms)")
    print(f"  ratio PostgreSQL / SQLite: p50 {pct(pg, .5) / pct(lite, .5):.2f}x   p99 {pct(pg, .99) / pct(lite, .99):.2f}x")


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--bound", type=float, default=1.0)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite",
                        help="postgresql: one big cell on PostgreSQL beside the same on SQLite (see above)")
    parser.add_argument("--servers", type=int, default=100_000, help="servers in the big cell (--db postgresql)")
    args = parser.parse_args()
    if args.db == "postgresql":
        asyncio.run(run_big_cell(args.rounds, args.servers))
    else:
        asyncio.run(run(args.rounds, args.bound))
    return 0


if __name__ == "__main__":
    sys.exit(main())
