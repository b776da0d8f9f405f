"""Heartbeat benchmark (issue 21): a cell router's CPU per heartbeat and per directory update, at growing
cell sizes, with a beat per host (as a real host beats) and with the hosts of a process beating as one
message (cells/rpc/beat_group.py, as simulated hosts do), every figure beside the first row's in the same
run (ratio), so the machine's load cancels out.

The router is the real directory (cells/rpc/directory.py) behind the real RPC server with CURVE and the
ZAP allowlist, in its own process; the hosts are real directory views (their own key each), `per_process`
of them to a process, as tools/serve_simulated.py serves them. CPU is the router process's (every thread:
the loop, zmq's I/O thread with the CURVE crypto, the ZAP handler) from /proc: CPU time, which a loaded
machine inflates far less than wall time.

- idle: every host beats once an `interval`, nothing changes. CPU per member beat, and % of a core per
  100 hosts (the issue's goal: < 5%).
- churn: `--churn` hosts a second change their meta (as a host's health does), so every view of the cell
  is sent a delta; the extra CPU over idle per change is the cost of one directory update.

    .venv/bin/python -m tools.bench.heartbeats [--sizes 100,500,1000] [--window 10] [--churn 10]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import time
import uuid
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import zmq

from cells.context import RequestContext
from cells.rpc import directory, security
from cells.rpc.beat_group import GroupView
from cells.rpc.client import RpcClient
from cells.rpc.directory import Directory, DirectoryView, LivenessTable, Member
from cells.rpc.principal import COMPUTE, ROUTER, Principal
from cells.rpc.server import RpcServer
from cells.rpc.transport import CurveKeys
from tools.devcluster import free_port

CELL = "cell1"
MODES = ("per-host", "batched")


@dataclass(frozen=True)
class Host:
    id: str
    name: str
    process: str
    public: bytes
    secret: bytes


class CountingLiveness(LivenessTable):
    """The real liveness table, counting the members it removed for missed beats (suspects)."""

    def __init__(self, interval: float, removed: Synchronized[int]) -> None:
        super().__init__(interval)
        self.removed = removed

    def expire(self, now: float) -> list[str]:
        dead = super().expire(now)
        self.removed.value += len(dead)
        return dead


class CountingDirectory(Directory):
    """The real directory, counting the member beats it took (one per member of a batch)."""

    def __init__(self, interval: float, counter: Synchronized[int], removed: Synchronized[int]) -> None:
        super().__init__(interval)
        self.counter = counter
        version = self.liveness.version
        self.liveness = CountingLiveness(interval, removed)
        self.liveness.version = version

    async def heartbeat(self, ctx: RequestContext, member: dict[str, Any], version: int) -> dict[str, Any]:
        self.counter.value += 1
        return await super().heartbeat(ctx, member, version)

    async def heartbeats(self, ctx: RequestContext, members: list[dict[str, Any]], version: int) -> dict[str, Any]:
        self.counter.value += len(members) if isinstance(members, list) else 0
        return await super().heartbeats(ctx, members, version)


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid`, from the scheduler's nanosecond counters (/proc/<pid>/stat counts
    in 10 ms ticks: too coarse for a batched router's few milliseconds a second)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    return total / 1e9


def _principals(router: CurveKeys, hosts: list[Host]) -> dict[str, Principal]:
    table = {router.public.decode(): Principal(ROUTER, f"{CELL}/router", "ctl", CELL)}
    table.update({h.public.decode(): Principal(COMPUTE, h.id, h.name, CELL) for h in hosts})
    return table


def run_router(address: str, keys: CurveKeys, hosts: list[Host], interval: float,
               counter: Synchronized[int], removed: Synchronized[int]) -> None:
    logging.getLogger("cells").setLevel(logging.ERROR)  # members removed are counted, not logged one by one

    async def main() -> None:
        security.start_allowlist(_principals(keys, hosts))
        handler = CountingDirectory(interval, counter, removed)
        handler.beat_groups = {h.id: (h.process, COMPUTE, h.name) for h in hosts}
        server = RpcServer(address, handler, directory.SURFACE, keys, cell=CELL)
        await server.start()
        await handler.background()
    asyncio.run(main())


def run_hosts(address: str, router_public: bytes, hosts: list[Host], batched: bool, interval: float,
              churn_per_s: float, churn: MpEvent) -> None:
    """`hosts` beating to the directory at `address`; once `churn` is set, `churn_per_s` of them a second
    change their meta (spread over this process's share of the cell)."""
    logging.getLogger("cells").setLevel(logging.ERROR)

    async def main() -> None:
        group = GroupView(address, interval, router_public) if batched else None
        views: list[DirectoryView] = []
        for h in hosts:
            client = RpcClient(CurveKeys(h.public, h.secret))
            me = Member(id=h.id, address=f"tcp://127.0.0.1:{1}", topics=(f"compute.{h.name}",), host=h.name,
                        service=COMPUTE, public_key=h.public, meta={"incarnation": uuid.uuid4().hex})
            views.append(group.join(client, me) if group is not None else
                         DirectoryView(client, address, me, interval, router_public))
        runners = [asyncio.create_task(v.run()) for v in ([group] if group is not None else views)]
        flips = 0
        while True:
            await asyncio.sleep(1.0)
            if churn.is_set() and churn_per_s > 0:
                for _ in range(round(churn_per_s)):
                    flips += 1
                    views[flips % len(views)].set_meta(health=f"flip {flips}")
            if any(r.done() for r in runners):
                raise SystemExit("a beat loop ended")
    asyncio.run(main())


def measure(size: int, batched: bool, per_process: int, window: float, interval: float,
            churn_per_hosts: float) -> dict[str, float]:
    router_keys = CurveKeys(*zmq.curve_keypair())
    hosts = []
    for i in range(size):
        public, secret = zmq.curve_keypair()
        name = f"{CELL}-sim-{i + 1:04d}"
        hosts.append(Host(f"{CELL}/compute/{name}", name, f"{CELL}/sim-{i // per_process + 1}", public, secret))
    address = f"tcp://127.0.0.1:{free_port()}"
    counter: Synchronized[int] = multiprocessing.Value("q", 0)
    removed: Synchronized[int] = multiprocessing.Value("q", 0)
    churn = multiprocessing.Event()
    router = multiprocessing.Process(target=run_router, args=(address, router_keys, hosts, interval, counter,
                                                              removed), daemon=True)
    router.start()
    chunks = [hosts[k:k + per_process] for k in range(0, size, per_process)]
    churn_each = churn_per_hosts * size / 100 / len(chunks)
    beaters = [multiprocessing.Process(target=run_hosts, args=(address, router_keys.public, chunk, batched, interval,
                                                                churn_each, churn), daemon=True) for chunk in chunks]
    for p in beaters:
        p.start()
    try:
        time.sleep(directory.MISSED_BEATS * interval + 3)  # joined, warmed, whole tables sent
        assert router.pid is not None
        out: dict[str, float] = {}
        for phase in ("idle", "churn"):
            if phase == "churn":
                churn.set()
                time.sleep(2 * interval)
            cpu0, beats0, gone0, t0 = cpu_seconds(router.pid), counter.value, removed.value, time.monotonic()
            time.sleep(window)
            cpu, beats, wall = cpu_seconds(router.pid) - cpu0, counter.value - beats0, time.monotonic() - t0
            out[f"{phase}_cpu_pct"] = 100 * cpu / wall
            out[f"{phase}_beats_per_s"] = beats / wall
            out[f"{phase}_removed"] = removed.value - gone0
        out["us_per_beat"] = 1e6 * out["idle_cpu_pct"] / 100 / max(out["idle_beats_per_s"], 1e-9)
        changes_per_s = churn_each * len(chunks)
        out["ms_per_update"] = (10 * (out["churn_cpu_pct"] - out["idle_cpu_pct"]) / changes_per_s
                                if changes_per_s else float("nan"))
        return out
    finally:
        for p in [*beaters, router]:
            p.terminate()
        for p in [*beaters, router]:
            p.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,500,1000")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--per-process", type=int, default=100, help="hosts one process serves")
    parser.add_argument("--window", type=float, default=10.0, help="seconds each phase is measured over")
    parser.add_argument("--interval", type=float, default=directory.DEFAULT_INTERVAL)
    parser.add_argument("--churn", type=float, default=1.0, help="meta changes a second per 100 hosts")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    if not sizes or set(modes) - set(MODES) or not modes:
        parser.error(f"--sizes N[,N...] and --modes from {','.join(MODES)}")
    print(f"router CPU per heartbeat (CURVE, {args.per_process} hosts a process, beat every {args.interval} s, "
          f"{args.window} s windows, churn {args.churn}/s per 100 hosts); load {os.getloadavg()[0]:.1f}")
    print("removed: members the router dropped as suspect (missed 3 beats) during the phase's window")
    print(f"{'hosts':>6} {'mode':>9} | {'router %':>9} {'per 100':>8} {'beats/s':>8} {'us/beat':>8} {'ratio':>6}"
          f" {'removed':>7} | {'churn %':>8} {'ms/update':>9} {'ratio':>6} {'removed':>7} | load")
    base: dict[str, float] | None = None
    for size in sizes:
        for mode in modes:
            r = measure(size, mode == "batched", args.per_process, args.window, args.interval, args.churn)
            base = base or r
            print(f"{size:>6} {mode:>9} | {r['idle_cpu_pct']:8.1f}% {100 * r['idle_cpu_pct'] / size:7.2f}%"
                  f" {r['idle_beats_per_s']:8.0f} {r['us_per_beat']:8.1f} {r['us_per_beat'] / base['us_per_beat']:5.2f}x"
                  f" {r['idle_removed']:7.0f} | {r['churn_cpu_pct']:7.1f}% {r['ms_per_update']:9.2f}"
                  f" {r['ms_per_update'] / base['ms_per_update']:5.2f}x {r['churn_removed']:7.0f} |"
                  f" {os.getloadavg()[0]:.1f}", flush=True)
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
