"""Scale benchmark (issue 21): cells of simulated compute hosts (tools/simulated_hosts.py) at growing
sizes, each a fresh throw-away cluster under the real supervisor, every figure printed beside the
smallest size's in the same run (ratio), so the machine's load cancels out.

Per size, once every host has reported and the cloud's idle CPU has stopped falling (start-up done):
the whole cloud's idle CPU (% of a core: what merely running costs), the open sockets of cell1's
conductor and router and of the API (a cell's services should hold O(cell size), not O(cloud)), memory
per simulated host (RSS of the processes serving them / hosts), the cell router's CPU
while idle (% of a core, and per 100 hosts), a burst of boots (boots/s to ACTIVE), the first page of
a server listing (GET /servers/detail?limit=1000, p50), and the conductor's select_destinations call to
the scheduler (p50/p99: the upper bound of its Prometheus histogram bucket, cells/metrics.py), the
`cellctl status` an operator waits for, and last the seconds from a SIGKILL of a simulated-host process
until its cell's conductor judges all its hosts suspect (bound: 3 missed beats, then the verdict's beat).
Each metric is also drawn against host count as an SVG in --plots (default docs/scale/, shown in the
README; tools/bench/svgplot.py says why SVG and not matplotlib).

    .venv/bin/python -m tools.bench.scale [--sizes 100,1000,3000] [--cells 1 | --hosts-per-cell N] [--burst 100] [--per-process 250]
                                          [--plots DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import tempfile
import time
import urllib.request
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tools.bench.boot import Api, image_id, lift_quota, pct, timed_burst, token_for
from tools.devcluster import RunningCluster, running_cluster, wait_for

TICK = os.sysconf("SC_CLK_TCK")
IDLE_WINDOW = 10.0  # seconds the router's CPU is measured over, nothing booting


def _pid(cluster: RunningCluster, program: str) -> int:
    return int((cluster.state / "run" / (program.replace("/", "_") + ".pid")).read_text())


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pids(cluster: RunningCluster, pattern: str = "*.pid") -> list[int]:
    """The processes the cloud's supervisor started whose pid files match `pattern` (all of them by default)."""
    pids = []
    for pid_file in (cluster.state / "run").glob(pattern):
        try:
            pids.append(int(pid_file.read_text()))
        except (OSError, ValueError):
            continue
    return pids


def _sum_alive(pids: list[int], read: Callable[[int], float]) -> float:
    """`read` summed over the processes, those gone meanwhile left out."""
    total = 0.0
    for pid in pids:
        try:
            total += read(pid)
        except OSError:
            continue
    return total


def simulated_rss_mb(cluster: RunningCluster) -> tuple[float, int]:
    """(RSS of every process serving simulated hosts, how many processes)."""
    pids = _pids(cluster, "cell*_sim-*.pid")
    return _sum_alive(pids, _rss_mb), len(pids)


def sockets(pid: int) -> int:
    """Open sockets of a process (its fds that are sockets: TCP, and ZeroMQ's own socketpairs)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


def router_cpu_pct(cluster: RunningCluster) -> float:
    pid = _pid(cluster, "cell1/router")
    before, t = _cpu(pid), time.monotonic()
    time.sleep(IDLE_WINDOW)
    return 100 * (_cpu(pid) - before) / (time.monotonic() - t)


def scheduler_call_seconds(cluster: RunningCluster) -> tuple[float, float]:
    """(p50, p99) of the conductor's select_destinations calls: bucket upper bounds of its histogram."""
    conductor = next(s for s in cluster.config["services"] if s["id"] == "cell1/conductor")
    text = urllib.request.urlopen(f"http://{conductor['options']['metrics']}/metrics", timeout=10).read().decode()
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith("cellcloud_rpc_call_seconds_bucket") and 'method="select_destinations"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0.0

    def quantile(q: float) -> float:
        return next((le for le, n in buckets if total and n >= q * total), float("nan"))
    return quantile(0.5), quantile(0.99)


async def boots_and_list(cluster: RunningCluster, burst: int, concurrency: int) -> tuple[float, float]:
    """(boots/s to ACTIVE of a burst, p50 seconds of the first page of 1000 servers)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 4)) as session:
        token, project = await token_for(session, cluster)
        await lift_quota(session, cluster, project)
        api, image = Api(session, cluster, token), await image_id(session, cluster, token)
        await api.wait_active(await api.boot("warm-up", image))
        rate, _ids = await timed_burst(api, image, burst, concurrency)
        lists = []
        for _ in range(10):
            t = time.perf_counter()
            async with session.get(f"{api.base}/servers/detail?limit=1000", headers=api.h) as r:
                assert r.status == 200, await r.text()
                await r.read()
            lists.append(time.perf_counter() - t)
        return rate, pct(lists, 0.5)


def measure(root: Path, hosts: int, per_process: int, burst: int, concurrency: int, cells: int = 1) -> dict[str, Any]:
    """`cells`: the hosts split evenly over that many cells (the router figures are cell1's)."""
    started = time.monotonic()
    with running_cluster(root / f"scale{hosts}", hosts=1, name=f"scale-{uuidlib.uuid4().hex[:6]}",
                         simulated=(hosts // cells,) * cells, per_process=per_process, ctl_metrics=True,
                         up_timeout=120 + hosts / 5) as cluster:
        up = time.monotonic() - started
        idle = settled(cluster, hosts, limit=120 + hosts / 5)
        rss, processes = simulated_rss_mb(cluster)
        row: dict[str, Any] = {"hosts": hosts, "cells": cells, "up_s": up, "mem_mb_per_host": rss / hosts, "sim_rss_mb": rss,
                               "processes": processes, "router_cpu_pct": router_cpu_pct(cluster),
                               "idle_cpu_pct": idle, "conductor_sockets": sockets(_pid(cluster, "cell1/conductor")),
                               "router_sockets": sockets(_pid(cluster, "cell1/router")),
                               "api_sockets": sockets(_pid(cluster, "api")),
                               "load": os.getloadavg()[0]}
        row["status_s"], row["status_cpu_s"] = status_seconds(cluster)
        row["boots_per_s"], row["list_p50_s"] = asyncio.run(boots_and_list(cluster, burst, concurrency))
        row["sched_p50_s"], row["sched_p99_s"] = scheduler_call_seconds(cluster)
        row["suspect_s"] = suspect_seconds(cluster)
        return row


def suspect_seconds(cluster: RunningCluster, timeout: float = 60) -> float:
    """Seconds from a SIGKILL of cell1's first simulated-host process until its conductor judges every
    host of it suspect (or worse), seen by `cellctl status --json` polled back to back (each poll ~0.2-0.3
    s, part of the figure). The supervisor is held (SIGSTOP) meanwhile so it does not restart them at once."""
    def states() -> dict[str, str | None]:
        return {h["name"]: h.get("state") for c in status_cells(cluster) if c["path"] == "cell1" for h in c["hosts"]}
    chunk = _pid(cluster, "cell1/sim-1")
    doomed = {s["host"] for s in cluster.config["services"]
              if s["kind"] == "compute" and s.get("options", {}).get("process") == "cell1/sim-1"}
    supervisor = int((cluster.state / "run" / "supervisor.pid").read_text())
    os.kill(supervisor, signal.SIGSTOP)
    try:
        os.kill(chunk, signal.SIGKILL)
        t = time.monotonic()
        while time.monotonic() - t < timeout:
            seen = states()
            if doomed and all(seen.get(h) in ("suspect", "dead", "fenced") for h in doomed):
                return time.monotonic() - t
        return float("nan")
    finally:
        os.kill(supervisor, signal.SIGCONT)


def status_seconds(cluster: RunningCluster, runs: int = 3) -> tuple[float, float]:
    """Median (wall, CPU) seconds of `cellctl status` (the summarised view) of the running cloud, the
    CLI's own start (python + imports) included, as an operator waits for it. CPU: the CLI process's
    own (a loaded box stretches the wall time, not that)."""
    times, cpus = [], []
    for _ in range(runs):
        t, cpu = time.perf_counter(), _children_cpu()
        cluster.cellctl("status", str(cluster.cluster_file), check=False, timeout=120)
        times.append(time.perf_counter() - t)
        cpus.append(_children_cpu() - cpu)
    return sorted(times)[len(times) // 2], sorted(cpus)[len(cpus) // 2]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def status_cells(cluster: RunningCluster) -> list[dict[str, Any]]:
    """The cells of `cellctl status --json` (none while it cannot answer)."""
    out = cluster.cellctl("status", str(cluster.cluster_file), "--json", check=False, timeout=120)
    try:
        return list(json.loads(out.stdout)["cells"])
    except ValueError:
        return []


def hosts_alive(cluster: RunningCluster) -> int:
    return sum(int((c.get("capacity") or {}).get("hosts_alive") or 0) for c in status_cells(cluster))


def cloud_rss_gb(cluster: RunningCluster) -> float:
    """Resident memory of every process of the cloud, in GB."""
    return _sum_alive(_pids(cluster), _rss_mb) / 1024


def cloud_cpu_s(cluster: RunningCluster) -> float:
    """CPU seconds every process of the cloud has used so far."""
    return _sum_alive(_pids(cluster), _cpu)


def cloud_cpu_pct(cluster: RunningCluster, window: float = 10.0) -> float:
    """CPU of every process of the cloud over `window` seconds, in % of one core."""
    before, t = cloud_cpu_s(cluster), time.monotonic()
    time.sleep(window)
    return 100 * (cloud_cpu_s(cluster) - before) / (time.monotonic() - t)


def settled(cluster: RunningCluster, hosts: int, limit: float = 300) -> float:
    """Wait until every simulated host (and node1) has reported, then until the cloud's idle CPU stops
    falling (within 10% of the window before, or `limit` seconds); that CPU, % of a core."""
    wait_for("every simulated host's resources reported", lambda: hosts_alive(cluster) >= hosts + 1,
             timeout=limit, interval=2)
    return quiet(cluster, limit)


def quiet(cluster: RunningCluster, limit: float = 300) -> float:
    """Wait until the cloud's CPU stops falling (a 10 s window within 10% of the one before, or `limit`
    seconds): what is left is what merely running costs; that CPU, % of a core."""
    give_up, last = time.monotonic() + limit, cloud_cpu_pct(cluster)
    while time.monotonic() < give_up:
        now = cloud_cpu_pct(cluster)
        if now > 0.9 * last:
            return now
        last = now
    return last


COLUMNS = (("up_s", "up s"), ("mem_mb_per_host", "MB/host"), ("router_cpu_pct", "router %cpu"),
           ("boots_per_s", "boots/s"), ("list_p50_s", "list p50 s"), ("sched_p50_s", "sched p50 s"),
           ("sched_p99_s", "sched p99 s"), ("status_s", "cellctl status s"), ("status_cpu_s", "status cpu s"),
           ("idle_cpu_pct", "cloud idle %cpu"), ("suspect_s", "suspect after s"),
           ("conductor_sockets", "conductor sockets"), ("router_sockets", "router sockets"),
           ("api_sockets", "api sockets"))


def report(rows: list[dict[str, Any]]) -> None:
    base = rows[0]
    print(f"{'hosts':>6} " + " ".join(f"{title:>20}" for _, title in COLUMNS))
    for row in rows:
        cells = []
        for key, _ in COLUMNS:
            ratio = row[key] / base[key] if base[key] else float("nan")
            cells.append(f"{row[key]:>10.4g} ({ratio:>5.2f}x)")
        print(f"{row['hosts']:>6} " + " ".join(f"{c:>20}" for c in cells))
    if len(rows) > 1:  # what one more host costs, the processes' own base (imports, heap) left out
        marginal = (rows[-1]["sim_rss_mb"] - base["sim_rss_mb"]) / (rows[-1]["hosts"] - base["hosts"])
        print(f"memory: {marginal:.2f} MB per added simulated host ({base['hosts']} -> {rows[-1]['hosts']} hosts; "
              f"MB/host above includes each process's base)")
    print("load average (1 min) at each size's measurement: " + ", ".join(
        f"{r['hosts']}: {r['load']:.1f}" for r in rows))
    print("cell1's router CPU per 100 hosts of its cell: " + ", ".join(
        f"{r['hosts']}: {100 * r['router_cpu_pct'] / (r['hosts'] / r['cells']):.2f}%" for r in rows))
    print("ratios are against the smallest size in this run; sched = the conductor's select_destinations "
          "call (histogram bucket bound)")


UNITS = {"up_s": "seconds", "mem_mb_per_host": "MB", "router_cpu_pct": "% of a core", "boots_per_s": "boots/s",
         "list_p50_s": "seconds", "sched_p50_s": "seconds", "sched_p99_s": "seconds",
         "status_s": "seconds", "status_cpu_s": "CPU seconds", "idle_cpu_pct": "% of a core", "suspect_s": "seconds",
         "conductor_sockets": "sockets", "router_sockets": "sockets", "api_sockets": "sockets"}


def plot(rows: list[dict[str, Any]], directory: Path) -> list[Path]:
    """One SVG per metric against host count (tools/bench/svgplot.py)."""
    from tools.bench.svgplot import line_chart

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for key, title in COLUMNS:
        points = [(float(r["hosts"]), float(r[key])) for r in rows
                  if key in r and r[key] == r[key]]  # absent or NaN: not measured
        if not points:
            continue
        path = directory / f"{key}.svg"
        path.write_text(line_chart(title, [x for x, _ in points], [y for _, y in points], "simulated hosts",
                                   UNITS[key]))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,3000", help="simulated hosts per run, smallest first")
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--per-process", type=int, default=250)
    parser.add_argument("--cells", type=int, default=1, help="each size's hosts split evenly over this many cells")
    parser.add_argument("--hosts-per-cell", type=int, default=0,
                        help="instead of --cells: as many cells as each size needs at this many hosts each "
                             "(1000: 100 and 1,000 hosts in one cell, 3,000 in three)")
    parser.add_argument("--plots", type=Path, default=Path("docs/scale"), help="where the SVG per metric goes")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cellcloud-scale-") as tmp:
        for hosts in (int(s) for s in args.sizes.split(",")):
            try:
                cells = -(-hosts // args.hosts_per_cell) if args.hosts_per_cell else args.cells
                rows.append(measure(Path(tmp), hosts, args.per_process, args.burst, args.concurrency, cells))
            except Exception as exc:  # noqa: BLE001 - where it breaks is a result: report it, keep the sizes before
                print(f"{hosts} hosts: broke: {type(exc).__name__}: {str(exc)[:500]}")
                break
            print(f"measured {hosts} hosts: {rows[-1]}", flush=True)
    if rows:
        report(rows)
        print("plots: " + ", ".join(str(p) for p in plot(rows, args.plots)))


if __name__ == "__main__":
    main()
