"""What metrics and request-id logging cost a burst of boots: the boot bench (tools/bench/boot.py) on two
clusters up at once, one as shipped with every /metrics listener on (api.metrics, metrics_port) and scraped
every --scrape seconds, one whose services run with CELLCLOUD_BENCH_BARE=1 (no metric recorded, no
request id bound, stamped or copied into threads: cells/logtrail.py). Bursts alternate between the two
(the order flips every pair), so a load drift on this shared machine hits both; it prints each pair's
boots/s and CPU per boot, and the ratio bare / observed (issue 20 goal: observed costs <= 5%, i.e. the
ratio of boots/s observed / bare >= 0.95 and of CPU per boot observed / bare <= 1.05).

    .venv/bin/python -m tools.bench.observability [--burst 100] [--pairs 5] [--concurrency 32] [--scrape 5]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from cells.logtrail import BARE_ENV
from tools.bench.boot import TEST_NODE, Api, burst, image_id, lift_quota, token_for
from tools.devcluster import RunningCluster, running_cluster

KINDS = ("observed", "bare")


def scrape_targets(cluster: RunningCluster) -> list[str]:
    config = cluster.config
    targets = [f"http://{config['api']['metrics_listen']}/metrics"]
    return targets + [f"http://{s['options']['metrics']}/metrics" for s in config["services"]
                      if s.get("options", {}).get("metrics")]


async def scraper(session: aiohttp.ClientSession, targets: list[str], every: float) -> None:
    """Prometheus's part: every target read every `every` seconds, as a real scrape would."""
    while True:
        for url in targets:
            async with session.get(url) as r:
                await r.read()
        await asyncio.sleep(every)


async def alternate(clusters: dict[str, RunningCluster], args: argparse.Namespace) -> list[dict[str, Any]]:
    async with contextlib.AsyncExitStack() as stack:
        apis: dict[str, tuple[Api, str]] = {}
        for kind, cluster in clusters.items():
            session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency + 4)))
            token, project = await token_for(session, cluster)
            await lift_quota(session, cluster, project)
            apis[kind] = Api(session, cluster, token), await image_id(session, cluster, token)
        scrapes = await stack.enter_async_context(aiohttp.ClientSession())
        task = asyncio.create_task(scraper(scrapes, scrape_targets(clusters["observed"]), args.scrape))
        try:
            for kind in KINDS:  # first boots warm each cluster up (image caches, DB pages): not measured
                api, image = apis[kind]
                await burst(clusters[kind], api, image, args.concurrency, args.concurrency)
            pairs = []
            for i in range(args.pairs):
                one: dict[str, Any] = {}
                for kind in KINDS if i % 2 == 0 else tuple(reversed(KINDS)):
                    api, image = apis[kind]
                    rate, cpu, errors = await burst(clusters[kind], api, image, args.burst, args.concurrency)
                    one[kind] = {"rate": rate, "cpu": sum(cpu.values()), "errors": errors}
                pairs.append(one)
                print(f"  pair {i + 1}: boots/s observed {one['observed']['rate']:.0f} | bare "
                      f"{one['bare']['rate']:.0f};  CPU ms/boot observed {one['observed']['cpu'] * 1000:.1f} | "
                      f"bare {one['bare']['cpu'] * 1000:.1f}", flush=True)
            return pairs
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--scrape", type=float, default=5.0, help="seconds between scrapes of every listener")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cellcloud-bench-obs-") as tmp:
        node = Path(tmp) / "testnode.xml"
        node.write_text(TEST_NODE)
        uri = f"test://{node}"
        with contextlib.ExitStack() as stack:
            clusters = {"observed": stack.enter_context(running_cluster(
                Path(tmp) / "observed", virt_uri=uri, metrics=True, name="benchobs"))}
            os.environ[BARE_ENV] = "1"  # the bare cluster's services inherit it through cellctl up
            try:
                clusters["bare"] = stack.enter_context(running_cluster(Path(tmp) / "bare", virt_uri=uri,
                                                                       name="benchbare"))
            finally:
                del os.environ[BARE_ENV]
            print(f"{args.pairs} pairs of {args.burst}-boot bursts ({args.concurrency} clients), observed "
                  f"(metrics recorded and scraped every {args.scrape:.0f} s, request ids) vs bare, both up:")
            pairs = asyncio.run(alternate(clusters, args))
    rates = [p["observed"]["rate"] / p["bare"]["rate"] for p in pairs]
    cpus = [p["observed"]["cpu"] / p["bare"]["cpu"] for p in pairs]
    errors = sum(p[k]["errors"] for p in pairs for k in KINDS)
    print(f"  boots/s observed / bare per pair: {' '.join(f'{r:.3f}' for r in rates)}; median {median(rates):.3f}x "
          f"(goal >= 0.95)")
    print(f"  CPU per boot observed / bare per pair: {' '.join(f'{r:.3f}' for r in cpus)}; median "
          f"{median(cpus):.3f}x (goal <= 1.05); {errors} servers in ERROR")


if __name__ == "__main__":
    main()
