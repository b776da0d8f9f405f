"""Fill benchmark (issue 21): fill a cloud of simulated hosts through the API, in multi-create bursts
(`min_count` = `max_count`), toward a target number of servers, and at each fill level measure what a
user's listing costs as the cloud grows:
- the first page of 1,000 servers of the project across every cell (GET /servers/detail?limit=1000), p50,
  and the CPU the whole cloud spends per such page (what it costs, whatever the box's load);
- a `changes-since` poll (GET /servers/detail?changes-since=T, T just before the level's last burst), p50:
  it should cost what it returns, not what the cloud holds;
- boots/s: the median of the level's last 3 bursts (`--concurrency` multi-creates of `--burst` at once,
  each started on a quiet cloud and timed until none is building): the boot throughput of the cloud at
  that fill, beside the first level's (nearly empty) in the same run;
- the resident memory of every process of the cloud (services and simulated-host processes), and their
  CPU while nothing is asked of the cloud (heartbeats, reports, sweeps: the cost of merely running).
The first level starts once every simulated host has reported and the cloud's idle CPU has stopped falling
(the start-up's work done), so the nearly empty cloud's figures are not the start-up's; each level's
listings are taken once the cloud's CPU has stopped falling after its bursts. `--hold S` keeps the
cloud up S seconds after the report (its state dir printed), to look at it further.
Each level's figures are printed beside the first level's (ratio), measured in the same run.

It stops at the target, or when the time budget is spent, or when a burst fails: the last line says
which, with the rate it was filling at, so "how far it got and why" is the output.

    .venv/bin/python -m tools.bench.fill [--cells 3] [--hosts 100] [--target 100000] [--burst 100]
                                         [--levels 1000,5000,20000] [--minutes 15]
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import tempfile
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import aiohttp

from tools.bench.boot import image_id, lift_quota, pct, token_for
from tools.bench.scale import cloud_cpu_s, cloud_rss_gb, quiet, settled
from tools.devcluster import RunningCluster, running_cluster

MICROVERSION = {"OpenStack-API-Version": "compute 2.37"}  # networks "none": a /24 per project caps the fill
SAMPLES = 10  # requests each p50 is taken over
TIMED = 3  # timed bursts at each level (the median is shown)


class Filler:
    def __init__(self, session: aiohttp.ClientSession, cluster: RunningCluster, token: str, image: str) -> None:
        self.s, self.image = session, image
        self.base = cluster.endpoint + "/compute/v2.1"
        self.h = {"X-Auth-Token": token, **MICROVERSION}
        self.made = 0

    async def burst(self, n: int) -> None:
        """One multi-create request of `n` servers."""
        body = {"server": {"name": f"fill-{self.made}", "flavorRef": "1", "imageRef": self.image,
                           "networks": "none", "min_count": n, "max_count": n}}
        async with self.s.post(self.base + "/servers", json=body, headers=self.h) as r:
            if r.status != 202:
                raise RuntimeError(f"multi-create of {n} answered {r.status}: {(await r.text())[:300]}")
        self.made += n

    async def settle(self, timeout: float = 600, poll: float = 0.5) -> None:
        """Wait until no server of the project is building; a server in ERROR stops the fill."""
        give_up = time.monotonic() + timeout
        while True:
            async with self.s.get(f"{self.base}/servers?status=ERROR&limit=1", headers=self.h) as r:
                if (await r.json())["servers"]:
                    raise RuntimeError("a server went to ERROR")
            async with self.s.get(f"{self.base}/servers?status=BUILD&limit=1", headers=self.h) as r:
                if not (await r.json())["servers"]:
                    return
            if time.monotonic() > give_up:
                raise RuntimeError(f"servers still building {timeout:.0f} s after their burst")
            await asyncio.sleep(poll)

    async def timed_get(self, query: str) -> tuple[float, int]:
        t = time.perf_counter()
        async with self.s.get(f"{self.base}/servers/detail?{query}", headers=self.h) as r:
            if r.status != 200:
                raise RuntimeError(f"GET /servers/detail?{query} answered {r.status}: {(await r.text())[:300]}")
            servers = (await r.json())["servers"]
        return time.perf_counter() - t, len(servers)

    async def measure(self, since: str, cluster: RunningCluster, idle_pct: float) -> dict[str, float]:
        """p50s of the first page and of the poll, and the CPU the cloud spent per first page (all its
        processes, less what it spends idle over the same time): the page's cost, whatever the load."""
        cpu, t = cloud_cpu_s(cluster), time.monotonic()
        pages = [await self.timed_get("limit=1000") for _ in range(SAMPLES)]
        page_cpu = cloud_cpu_s(cluster) - cpu - idle_pct / 100 * (time.monotonic() - t)
        polls = [await self.timed_get(f"changes-since={since}") for _ in range(SAMPLES)]
        return {"servers": self.made, "page_p50_s": pct([t for t, _ in pages], 0.5),
                "page_cpu_ms": 1000 * page_cpu / SAMPLES,
                "page_len": pages[0][1], "poll_p50_s": pct([t for t, _ in polls], 0.5),
                "poll_len": polls[0][1], "load": os.getloadavg()[0]}


async def fill(cluster: RunningCluster, target: int, burst: int, concurrency: int, levels: list[int],
               budget_s: float) -> tuple[list[dict[str, float]], str]:
    """Fill to each level (its last TIMED bursts timed, each alone on a quiet cloud; a `changes-since` from
    just before the last returns that burst), measure, go on; (rows, why it stopped)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 4)) as session:
        token, project = await token_for(session, cluster)
        await lift_quota(session, cluster, project)
        f = Filler(session, cluster, token, await image_id(session, cluster, token))
        rows: list[dict[str, float]] = []
        started = time.monotonic()
        for level in [lv for lv in sorted(levels) if lv <= target] or [target]:
            t0, made0 = time.monotonic(), f.made
            try:
                last = burst * concurrency  # one timed burst: `concurrency` multi-creates at once
                while f.made < level - TIMED * last:
                    if time.monotonic() - started > budget_s:
                        rate = (f.made - made0) / (time.monotonic() - t0)
                        return rows, (f"the time budget ({budget_s:.0f} s) ran out at {f.made} servers, filling "
                                      f"at {rate:.1f} servers/s (ACTIVE): {target} would take "
                                      f"~{(target - f.made) / max(rate, 1e-9) / 60:.0f} more minutes here")
                    await asyncio.gather(*(f.burst(n) for n in _split(level - TIMED * last - f.made, burst,
                                                                      concurrency)))
                    await f.settle()
                rates = []
                for k in range(TIMED):  # each from a quiet cloud, so every level's bursts start alike
                    await asyncio.to_thread(quiet, cluster)
                    if k == TIMED - 1:
                        await asyncio.sleep(1.1)  # changes-since has a second's resolution
                        since = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                        await asyncio.sleep(1.1)
                    t_burst, n = time.perf_counter(), level - f.made - (TIMED - 1 - k) * last
                    await asyncio.gather(*(f.burst(size) for size in _split(n, burst, concurrency)))
                    await f.settle(poll=0.1)
                    rates.append(n / (time.perf_counter() - t_burst))
                boots_per_s = sorted(rates)[len(rates) // 2]
            except RuntimeError as exc:
                return rows, f"it failed at {f.made} servers: {exc}"
            fill_rate = (f.made - made0) / (time.monotonic() - t0)
            idle = await asyncio.to_thread(quiet, cluster)  # a user's listing of a cloud not busy booting
            row = await f.measure(since, cluster, idle)
            row["fill_rate"], row["boots_per_s"], row["rss_gb"] = fill_rate, boots_per_s, cloud_rss_gb(cluster)
            row["idle_cpu_pct"] = idle
            rows.append(row)
            print(f"level {f.made}: {row}", flush=True)
        return rows, f"reached {f.made} servers (the last level asked)"


def _split(n: int, burst: int, concurrency: int) -> list[int]:
    """Up to `concurrency` multi-create sizes of at most `burst` adding up to at most `n`."""
    sizes = [min(burst, n - i * burst) for i in range(concurrency)]
    return [k for k in sizes if k > 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=100, help="simulated hosts per cell")
    parser.add_argument("--per-process", type=int, default=250)
    parser.add_argument("--target", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=100, help="servers per multi-create request")
    parser.add_argument("--concurrency", type=int, default=4, help="multi-create requests in flight")
    parser.add_argument("--levels", default="3000,10000,30000,60000,100000",
                        help=f"each at least {TIMED} x burst x concurrency")
    parser.add_argument("--minutes", type=float, default=15.0, help="time budget of the fill")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds the cloud stays up after the report")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x]
    with tempfile.TemporaryDirectory(prefix="cellcloud-fill-") as tmp, \
            running_cluster(Path(tmp) / "fill", hosts=1, name=f"fill-{uuidlib.uuid4().hex[:6]}",
                            simulated=(args.hosts,) * args.cells, per_process=args.per_process,
                            up_timeout=120 + args.hosts * args.cells / 5) as cluster:
        print(f"settled: the cloud's idle CPU {settled(cluster, args.cells * args.hosts):.0f}% of a core",
              flush=True)
        rows, stop = asyncio.run(fill(cluster, args.target, args.burst, args.concurrency, levels,
                                      60 * args.minutes))
        report(args, rows, stop)
        if args.hold:
            print(f"holding the cloud up {args.hold:.0f} s: {cluster.state}", flush=True)
            time.sleep(args.hold)


def report(args: argparse.Namespace, rows: list[dict[str, Any]], stop: str) -> None:
    print(f"fill: {args.cells} cells x {args.hosts} simulated hosts, multi-create bursts of {args.burst}, "
          f"{args.concurrency} in flight")
    print(f"{'servers':>8} {'page p50 s':>18} {'page CPU ms':>11} {'(rows)':>6} {'changes-since p50 s':>22} {'(rows)':>6} "
          f"{'boots/s':>16} {'fill/s':>7} {'RSS GB':>6} {'idle CPU %':>10} {'load':>5}")
    for r in rows:
        base = rows[0]
        print(f"{r['servers']:>8.0f} {r['page_p50_s']:>9.3f} ({r['page_p50_s'] / base['page_p50_s']:5.2f}x)"
              f" {r['page_cpu_ms']:>11.0f}"
              f" {r['page_len']:>6.0f} {r['poll_p50_s']:>13.3f} ({r['poll_p50_s'] / base['poll_p50_s']:5.2f}x)"
              f" {r['poll_len']:>6.0f} {r['boots_per_s']:>7.1f} ({r['boots_per_s'] / base['boots_per_s']:5.2f}x)"
              f" {r['fill_rate']:>7.1f} {r['rss_gb']:>6.2f} {r['idle_cpu_pct']:>10.0f} {r['load']:>5.1f}")
    print(f"stopped: {stop}")


if __name__ == "__main__":
    main()
