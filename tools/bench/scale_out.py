"""Scale-out benchmark: sustained boots/s with one conductor + one scheduler, then with
two of each, in the same run (same machine, same load), printed as a ratio.

Each run is a fresh throw-away cluster (real processes, libvirt test hypervisor,
two compute hosts, two API workers in both runs so the API is the same), then
`--burst` boots from `--concurrency` clients, counted until none is BUILD.
On a 2-core machine shared with other work the ratio is bounded by the cores:
read it beside the `cores` line.

    .venv/bin/python tools/bench/scale_out.py [--burst 150] [--concurrency 32]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

import aiohttp

from tools.bench.boot import TEST_NODE, Api, count, image_id, lift_quota, timed_burst, token_for
from tools.devcluster import RunningCluster, running_cluster


async def burst(cluster: RunningCluster, n: int, concurrency: int) -> tuple[float, int]:
    """(boots/s to ACTIVE, servers in ERROR)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 4)) as session:
        token, project = await token_for(session, cluster)
        await lift_quota(session, cluster, project)
        api, image = Api(session, cluster, token), await image_id(session, cluster, token)
        await api.wait_active(await api.boot("warm-up", image))  # fills the hosts' image caches
        await api.wait_active(await api.boot("warm-up-2", image))
        rate, _ids = await timed_burst(api, image, n, concurrency)
        return rate, await count(api, "ERROR")


def run(tmp: Path, uri: str, n: int, each: int, burst_n: int, concurrency: int) -> tuple[float, int]:
    with running_cluster(tmp / f"scale{each}", hosts=2, virt_uri=uri, conductors=each, schedulers=each,
                         api_workers=2) as cluster:
        return asyncio.run(burst(cluster, burst_n, concurrency))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=150, help="boots per run (each m1.tiny claims 1 GB of disk)")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cellcloud-bench-") as tmp:
        node = Path(tmp) / "testnode.xml"
        node.write_text(TEST_NODE)
        uri = f"test://{node}"
        one, one_err = run(Path(tmp), uri, 1, 1, args.burst, args.concurrency)
        two, two_err = run(Path(tmp), uri, 2, 2, args.burst, args.concurrency)
    print(f"scale-out: {args.burst} boots, {args.concurrency} clients, 2 hosts, 2 API workers, "
          f"cores {os.cpu_count()}")
    print(f"  1 conductor + 1 scheduler   {one:7.1f} boots/s  ({one_err} in ERROR)   baseline")
    print(f"  2 conductors + 2 schedulers {two:7.1f} boots/s  ({two_err} in ERROR)")
    print(f"  ratio two/one: {two / one:.2f}x")


if __name__ == "__main__":
    main()
