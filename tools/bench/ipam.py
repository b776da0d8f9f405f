"""IPAM benchmark: fixed-IP allocations per second for 32 concurrent boots
(allocate_for_instance: port + address + the instance's addresses, one unit of
work each, as the boot flow does) beside the raw insert+commit rate of the same
cell DB engine in the same run, printed as a ratio. Then every instance is
released and the pool must be full again.

    python -m tools.bench.ipam [--boots 512] [--concurrency 32]
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from cells.conductor.flows.boot import validate_build
from cells.context import RequestContext
from cells.db import instances as idb
from cells.db.schema import create_schema
from cells.network import ipam
from cells.network.controller import NetworkController
from cells.network.instance_ports import release_instance
from cells.objects.instance import utcnow_iso

_raw = MetaData()
raw_rows = Table("bench_raw", _raw, Column("id", Integer, primary_key=True), Column("v", String(64)))
ROUNDS = 8


async def _bounded(indices: range, concurrency: int, fn: Any) -> float:
    """Seconds to run fn(i) for every i, at most `concurrency` at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await fn(i)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in indices))
    return time.perf_counter() - start


async def _interleaved(n: int, concurrency: int, fns: list[Any]) -> list[float]:
    """Rates (per second) of each fn over n calls, run in ROUNDS alternating slices, so a
    load change on a shared machine hits every side of the ratio alike."""
    spent = [0.0] * len(fns)
    step = -(-n // ROUNDS)
    for lo in range(0, n, step):
        for k, fn in enumerate(fns):
            spent[k] += await _bounded(range(lo, min(n, lo + step)), concurrency, fn)
    return [n / s for s in spent]


async def run(boots: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'cell.db'}"
        await create_schema(url)
        ctl = NetworkController(db_url=url)
        await ctl.start()
        db = ctl.db
        await db.write(lambda c: _raw.create_all(c))
        ctx = RequestContext(project="bench", roles=("member",))
        net = await ctl.network_create(ctx, {"name": "bench"})
        sub = await ctl.subnet_create(ctx, {"network_id": net["id"], "cidr": "10.200.0.0/20"})
        full = await db.read(lambda c: ipam.free_count(c, sub["id"]))
        now = utcnow_iso()
        records = [{"uuid": str(uuid.uuid4()), "name": f"b{i}", "project_id": "bench",
                    "flavor": {"vcpus": 1, "ram": 64}} for i in range(boots)]
        rows = validate_build(records, {}, now, "bench")
        await db.write(lambda c: c.execute(idb.INSERT, rows))
        uuids = [r["uuid"] for r in rows]
        requested = [{"uuid": net["id"]}]

        raw_rate, alloc_rate = await _interleaved(boots, concurrency, [
            lambda i: db.write(lambda c: c.execute(insert(raw_rows), {"v": f"row-{i}"})),
            lambda i: ctl.allocate_for_instance(ctx, uuids[i], "bench", requested, None)])
        addresses = await db.read(lambda c: ipam.used_addresses(c, sub["id"]))
        release_rate = boots / await _bounded(range(boots), concurrency, lambda i: db.write(
            lambda c: release_instance(c, uuids[i])))
        left = await db.read(lambda c: ipam.free_count(c, sub["id"]))
        await ctl.stop()
    print(f"raw insert+commit (same engine):        {raw_rate:8.0f} /s")
    print(f"allocate_for_instance, {concurrency} concurrent: {alloc_rate:8.0f} /s   "
          f"ratio {alloc_rate / raw_rate:.2f} of raw")
    print(f"release (delete flow's unit of work):   {release_rate:8.0f} /s   ratio {release_rate / raw_rate:.2f}")
    print(f"distinct addresses handed out: {len(addresses)} of {boots}; pool after release {left}/{full}")
    if len(addresses) != boots or left != full:
        raise SystemExit("IPAM leaked or shared an address")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(run(args.boots, args.concurrency))


if __name__ == "__main__":
    main()
