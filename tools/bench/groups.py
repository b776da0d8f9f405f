"""Server-group placement benchmark: placements per second through the scheduler's
select_for (filter, weigh, claim) on a real SQLite cell DB of many hosts, for plain
boots and for members of anti-affinity and affinity groups (the policy checked in the
claim's transaction under the group's lock), interleaved in one run and printed as
ratios to the plain rate. Then the invariants: no two anti-affinity members of a
group on one host, every affinity group on one host.

    python -m tools.bench.groups [--boots 1024] [--concurrency 16] [--hosts 64] [--group-size 8]
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from cells.db import claims
from cells.db.engine import Database
from cells.db.schema import claims as claims_table
from cells.db.schema import create_schema
from cells.scheduler.manager import select_for
from tools.bench.ipam import _interleaved

FLAVOR = {"vcpus": 1, "ram": 64, "disk": 1, "ephemeral": 0, "swap": 0}


async def run(boots: int, concurrency: int, hosts: int, group_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'cell.db'}"
        await create_schema(url)
        db = Database(url)

        def add_hosts(conn: Connection) -> None:
            for h in range(hosts):
                claims.upsert_node(conn, f"h{h}", {"vcpus": 4096, "memory_mb": 1 << 20, "local_gb": 1 << 16})
        await db.write(add_hosts)
        groups = {p: [str(uuid.uuid4()) for _ in range(-(-boots // group_size))] for p in ("anti", "aff")}

        def place(kind: str, i: int) -> Any:
            spec: dict[str, Any] = {"flavor": FLAVOR}
            if kind != "plain":
                policy = "anti-affinity" if kind == "anti" else "affinity"
                spec["group"] = {"uuid": groups[kind][i // group_size], "policy": policy}
            return select_for(db, lambda h: True, spec, [f"{kind}-{i}"], [])

        plain, anti, aff = await _interleaved(boots, concurrency, [
            lambda i: place("plain", i), lambda i: place("anti", i), lambda i: place("aff", i)])
        rows = await db.read(lambda c: c.execute(select(claims_table.c.instance_uuid, claims_table.c.host,
                                                        claims_table.c.group_uuid)).all())
        await db.close()
    by_group: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r.group_uuid:
            by_group[r.group_uuid].append(r.host)
    assert len(rows) == 3 * boots, f"{len(rows)} claims for {3 * boots} placements"
    for g in groups["anti"]:
        assert len(set(by_group[g])) == len(by_group[g]), f"anti-affinity group {g} shares a host"
    for g in groups["aff"]:
        assert len(set(by_group[g])) == 1, f"affinity group {g} spans hosts"
    print(f"placements/s, {boots} each, {concurrency} in flight, {hosts} hosts, groups of {group_size}:")
    print(f"  plain          {plain:8.0f}/s")
    print(f"  anti-affinity  {anti:8.0f}/s  ratio to plain {anti / plain:.2f}")
    print(f"  affinity       {aff:8.0f}/s  ratio to plain {aff / plain:.2f}")
    print("  invariants: every anti-affinity group on distinct hosts, every affinity group on one host")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boots", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(run(args.boots, args.concurrency, args.hosts, args.group_size))


if __name__ == "__main__":
    main()
