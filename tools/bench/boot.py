"""Boot benchmark through the REST API with libvirt's test hypervisor.

Brings up a throw-away one-cell cluster (real processes) whose host is a
libvirt test node big enough for hundreds of servers, then measures:
  - boot-to-ACTIVE and delete-to-gone latency, p50/p99, one server at a time
  - sustained boots/s with many boots in flight
beside two baselines taken in the same run: a trivial authenticated API GET
(the HTTP floor) and raw libvirt define+start+destroy of a domain (the
hypervisor floor). Goal (issue 2): boot p50 < 50 ms, >= 100 boots/s.

Then the quota comparison (issue 14): the same burst into the project with its
instances quota set (so every boot counts usage) and with quotas unlimited,
alternated `--rounds` times each, and the ratio of the two rates. Goal >= 0.8x.

`--db postgresql` then runs the same measurements on a second cluster whose API and cell DBs are on a
managed PostgreSQL (tools/pgserver.py) and prints its boots/s and p50 beside SQLite's, with the ratio
(issue 15 goal >= 0.7x). Both clusters stay up, and `--pairs` more bursts alternate between them
(SQLite then PostgreSQL, then the other way round): on a shared machine whose load drifts by the minute,
the ratio of bursts taken seconds apart is the figure to trust; it prints each pair's and their median.

    .venv/bin/python tools/bench/boot.py [--latency 50] [--burst 200] [--concurrency 32] [--db postgresql]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tools.devcluster import RunningCluster, running_cluster

TEST_NODE = """<?xml version="1.0"?>
<node>
  <cpu><mhz>2000</mhz><model>x86_64</model><active>256</active><nodes>1</nodes>
       <sockets>1</sockets><cores>256</cores><threads>1</threads></cpu>
  <memory>1073741824</memory>
</node>
"""
POLL = 0.002


def cpu_seconds(cluster: RunningCluster) -> dict[str, float]:
    """CPU (user + system) each service process has used so far, from /proc/<pid>/stat, plus this
    bench client's own (it shares the 2 cores): where a boot's CPU goes, process by process."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for pidfile in (cluster.state / "run").glob("*.pid"):
        if pidfile.stem == "supervisor":
            continue
        try:
            fields = Path(f"/proc/{int(pidfile.read_text())}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        used[pidfile.stem] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    me = resource.getrusage(resource.RUSAGE_SELF)
    used["(bench client)"] = me.ru_utime + me.ru_stime
    postmaster = cluster.state / "postgres" / "data" / "postmaster.pid"
    if postmaster.exists():
        used["(postgresql server)"] = _tree_cpu(int(postmaster.read_text().split()[0]), tick)
    return used


def _tree_cpu(pid: int, tick: int) -> float:
    """CPU of a managed PostgreSQL: the postmaster, its live backends, and those that exited (cutime, cstime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, ValueError):
        return 0.0
    own = sum(int(f) for f in fields[11:15]) / tick  # utime, stime, cutime, cstime
    return own + sum(_tree_cpu(int(c), tick) for c in children)


def per_boot(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    return {k: (after[k] - before.get(k, 0.0)) / n for k in sorted(after)}


def pct(samples: list[float], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(q * len(samples)))]


class Api:
    def __init__(self, session: aiohttp.ClientSession, cluster: RunningCluster, token: str) -> None:
        self.s, self.base, self.h = session, cluster.endpoint + "/compute/v2.1", {"X-Auth-Token": token}

    async def boot(self, name: str, image: str) -> str:
        body = {"server": {"name": name, "flavorRef": "1", "imageRef": image}}
        async with self.s.post(self.base + "/servers", json=body, headers=self.h) as r:
            assert r.status == 202, await r.text()
            return str((await r.json())["server"]["id"])

    async def wait_active(self, server_id: str) -> None:
        while True:
            async with self.s.get(f"{self.base}/servers/{server_id}", headers=self.h) as r:
                status = (await r.json())["server"]["status"]
            if status == "ACTIVE":
                return
            if status == "ERROR":
                raise RuntimeError(f"server {server_id} went to ERROR")
            await asyncio.sleep(POLL)

    async def delete(self, server_id: str) -> None:
        async with self.s.delete(f"{self.base}/servers/{server_id}", headers=self.h) as r:
            assert r.status == 204, await r.text()
        while True:
            async with self.s.get(f"{self.base}/servers/{server_id}", headers=self.h) as r:
                if r.status == 404:
                    return
            await asyncio.sleep(POLL)


async def token_for(session: aiohttp.ClientSession, cluster: RunningCluster, who: str = "demo") -> tuple[str, str]:
    """(token, project id) for one of the bootstrap users."""
    c = cluster.credentials(who)
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": c["username"], "domain": {"name": "Default"}, "password": c["password"]}}},
        "scope": {"project": {"name": c["project_name"], "domain": {"name": "Default"}}}}}
    async with session.post(c["auth_url"] + "/auth/tokens", json=body) as r:
        return r.headers["X-Subject-Token"], (await r.json())["token"]["project"]["id"]


async def lift_quota(session: aiohttp.ClientSession, cluster: RunningCluster, project: str,
                     instances: int = -1) -> None:
    """The admin lifts the demo project's compute quota: the bench boots hundreds of servers.
    `instances` >= 0 sets that limit instead (every boot then counts the project's usage)."""
    admin, _ = await token_for(session, cluster, "admin")
    body = {"quota_set": {"instances": instances, "cores": -1, "ram": -1}}
    async with session.put(f"{cluster.endpoint}/compute/v2.1/os-quota-sets/{project}", json=body,
                           headers={"X-Auth-Token": admin}) as r:
        assert r.status == 200, await r.text()


async def image_id(session: aiohttp.ClientSession, cluster: RunningCluster, token: str) -> str:
    async with session.get(cluster.endpoint + "/image/v2/images?name=tiny-raw",
                           headers={"X-Auth-Token": token}) as r:
        return str((await r.json())["images"][0]["id"])


async def count(api: Api, status: str, limit: int | None = None) -> int:
    """How many of the project's servers are in `status` (at most `limit`: limit=1 asks whether any is)."""
    query = f"status={status}" + (f"&limit={limit}" if limit else "")
    async with api.s.get(f"{api.base}/servers?{query}", headers=api.h) as r:
        return len((await r.json())["servers"])


async def measure(cluster: RunningCluster, latency_n: int, burst_n: int, concurrency: int,
                  rounds: int) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 4)) as session:
        token, project = await token_for(session, cluster)
        await lift_quota(session, cluster, project)
        api, image = Api(session, cluster, token), await image_id(session, cluster, token)
        await api.wait_active(await api.boot("warm-up", image))  # fills the host's image cache

        floor = []
        for _ in range(latency_n):
            t = time.perf_counter()
            async with session.get(api.base + "/flavors/1", headers=api.h) as r:
                await r.read()
            floor.append(time.perf_counter() - t)

        boots, deletes = [], []
        cpu0 = cpu_seconds(cluster)
        for i in range(latency_n):
            t = time.perf_counter()
            sid = await api.boot(f"lat-{i}", image)
            await api.wait_active(sid)
            boots.append(time.perf_counter() - t)
            t = time.perf_counter()
            await api.delete(sid)
            deletes.append(time.perf_counter() - t)
        cpu_seq = per_boot(cpu0, cpu_seconds(cluster), latency_n)

        rate, cpu_burst, errors = await burst(cluster, api, image, burst_n, concurrency)
        quota_rates: dict[str, list[float]] = {"unlimited": [], "quota": []}
        for _ in range(rounds):  # alternated, so a drift of the machine's speed hits both alike
            for kind in ("quota", "unlimited"):
                await lift_quota(session, cluster, project, 10 * burst_n if kind == "quota" else -1)
                quota_rates[kind].append((await burst(cluster, api, image, burst_n, concurrency))[0])
        return {"floor": floor, "boots": boots, "deletes": deletes, "rate": rate, "errors": errors,
                "cpu_seq": cpu_seq, "cpu_burst": cpu_burst, "quota_rates": quota_rates}


async def timed_burst(api: Api, image: str, n: int, concurrency: int) -> tuple[float, list[str]]:
    """(boots/s until none is BUILD, the servers' ids) of `n` boots from `concurrency` clients."""
    # `concurrency` clients keep POSTing, then one watcher asks every 20 ms whether any server is
    # still building (a list of at most one: the bench's own polling stays light)
    names = iter(range(n))
    ids: list[str] = []

    async def client() -> None:
        for i in names:
            ids.append(await api.boot(f"burst-{i}", image))

    t = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    while await count(api, "BUILD", limit=1):
        await asyncio.sleep(0.02)
    return n / (time.perf_counter() - t), ids


async def burst(cluster: RunningCluster, api: Api, image: str, n: int,
                concurrency: int) -> tuple[float, dict[str, float], int]:
    """(boots/s to ACTIVE, CPU per boot by process, servers in ERROR) of `n` boots; deleted after."""
    cpu0 = cpu_seconds(cluster)
    rate, ids = await timed_burst(api, image, n, concurrency)
    cpu = per_boot(cpu0, cpu_seconds(cluster), n)
    errors = await count(api, "ERROR")
    for chunk in range(0, len(ids), concurrency):
        await asyncio.gather(*(api.delete(sid) for sid in ids[chunk:chunk + concurrency]))
    return rate, cpu, errors


def raw_libvirt(uri: str, n: int) -> list[float]:
    import libvirt  # type: ignore[import-untyped]
    conn = libvirt.open(uri)
    xml = ("<domain type='test'><name>raw-{i}</name><memory unit='MiB'>512</memory><vcpu>1</vcpu>"
           "<os><type>hvm</type></os></domain>")
    samples = []
    for i in range(n):
        t = time.perf_counter()
        dom = conn.defineXML(xml.format(i=i))
        dom.create()
        dom.destroy()
        dom.undefine()
        samples.append(time.perf_counter() - t)
    conn.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=int, default=50, help="sequential boots for latency")
    parser.add_argument("--burst", type=int, default=200,
                        help="boots for the throughput run (each m1.tiny claims 1 GB of the real disk)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="bursts with and without an instances quota, each")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite",
                        help="postgresql: measure a managed-PostgreSQL cluster too, beside SQLite")
    parser.add_argument("--pairs", type=int, default=3,
                        help="--db postgresql: alternated bursts on the two clusters, both up (see above)")
    args = parser.parse_args()
    by_db: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="cellcloud-bench-") as tmp:
        os.chmod(tmp, 0o711)  # a managed PostgreSQL runs as the postgres user when root: it must reach its dir
        node = Path(tmp) / "testnode.xml"
        node.write_text(TEST_NODE)
        uri = f"test://{node}"
        raw = raw_libvirt(uri, args.latency)
        pairs: list[tuple[float, float]] = []
        with contextlib.ExitStack() as stack:
            clusters = {db: stack.enter_context(running_cluster(Path(tmp) / f"cluster-{db}", virt_uri=uri,
                                                                postgres=db == "postgresql"))
                        for db in (("sqlite", "postgresql") if args.db == "postgresql" else ("sqlite",))}
            for db, cluster in clusters.items():
                by_db[db] = asyncio.run(measure(cluster, args.latency, args.burst, args.concurrency, args.rounds))
            if args.db == "postgresql" and args.pairs:
                pairs = asyncio.run(alternate(clusters["sqlite"], clusters["postgresql"], args))
    report(args, by_db["sqlite"], raw)
    if "postgresql" in by_db:
        compare_dbs(args, by_db["sqlite"], by_db["postgresql"])
    if pairs:
        ratios = sorted(p / lite for lite, p in pairs)
        print(f"  alternated bursts, both clusters up ({len(pairs)} pairs of {args.burst} boots): boots/s SQLite | "
              f"PostgreSQL: {'  '.join(f'{lite:.0f} | {p:.0f}' for lite, p in pairs)}")
        print(f"  ratio PostgreSQL / SQLite per pair: {' '.join(f'{r:.2f}' for r in ratios)}; "
              f"median {ratios[len(ratios) // 2]:.2f}x (goal >= 0.7x)")


async def alternate(lite: RunningCluster, pg: RunningCluster, args: argparse.Namespace) -> list[tuple[float, float]]:
    """`args.pairs` bursts on each cluster, alternated (the order flips every pair): (SQLite, PostgreSQL)
    boots/s of each pair."""
    async with contextlib.AsyncExitStack() as stack:
        apis: dict[str, tuple[Api, str]] = {}
        for db, cluster in (("sqlite", lite), ("postgresql", pg)):
            session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency + 4)))
            token, project = await token_for(session, cluster)
            await lift_quota(session, cluster, project)
            apis[db] = Api(session, cluster, token), await image_id(session, cluster, token)
        pairs = []
        for i in range(args.pairs):
            rates = {}
            for db in ("sqlite", "postgresql") if i % 2 == 0 else ("postgresql", "sqlite"):
                api, image = apis[db]
                rates[db] = (await burst(lite if db == "sqlite" else pg, api, image, args.burst, args.concurrency))[0]
            pairs.append((rates["sqlite"], rates["postgresql"]))
        return pairs


def compare_dbs(args: argparse.Namespace, lite: dict[str, Any], pg: dict[str, Any]) -> None:
    ms = 1000.0
    print(f"PostgreSQL (managed, unix socket) beside SQLite, same run, same bursts ({args.burst} boots,"
          f" {args.concurrency} clients)")
    for name, r in (("SQLite", lite), ("PostgreSQL", pg)):
        rates = [r["rate"], *r["quota_rates"]["unlimited"]]
        print(f"  {name:10} sustained {sum(rates) / len(rates):5.0f} boots/s (bursts: {' '.join(f'{x:.0f}' for x in rates)})"
              f"  boot p50 {pct(r['boots'], .5) * ms:6.2f} ms  p99 {pct(r['boots'], .99) * ms:6.2f} ms,"
              f" {r['errors']} in ERROR")
    lite_rate = sum([lite["rate"], *lite["quota_rates"]["unlimited"]])
    pg_rate = sum([pg["rate"], *pg["quota_rates"]["unlimited"]])
    print(f"  ratio PostgreSQL / SQLite: boots/s {pg_rate / lite_rate:.2f}x (goal >= 0.7x),"
          f" boot p50 {pct(pg['boots'], .5) / pct(lite['boots'], .5):.2f}x")
    print("  CPU ms per server in a burst, by process: SQLite | PostgreSQL")
    for name in sorted(set(lite["cpu_burst"]) | set(pg["cpu_burst"])):
        print(f"    {name:28} {lite['cpu_burst'].get(name, 0.0) * ms:6.2f} | {pg['cpu_burst'].get(name, 0.0) * ms:6.2f}")


def report(args: argparse.Namespace, r: dict[str, Any], raw: list[float]) -> None:
    ms = 1000.0
    print(f"boot through the REST API, libvirt test hypervisor, one cell, {args.latency} sequential boots")
    print(f"  API GET floor            p50 {pct(r['floor'], .5) * ms:7.2f} ms  p99 {pct(r['floor'], .99) * ms:7.2f} ms")
    print(f"  raw libvirt start+stop   p50 {pct(raw, .5) * ms:7.2f} ms  p99 {pct(raw, .99) * ms:7.2f} ms")
    print(f"  boot -> ACTIVE           p50 {pct(r['boots'], .5) * ms:7.2f} ms  p99 {pct(r['boots'], .99) * ms:7.2f} ms"
          f"  (goal p50 < 50 ms)")
    print(f"  delete -> gone           p50 {pct(r['deletes'], .5) * ms:7.2f} ms  p99 {pct(r['deletes'], .99) * ms:7.2f} ms")
    print(f"  sustained: {r['rate']:.0f} boots/s to ACTIVE ({args.burst} boots, {args.concurrency} clients;"
          f" goal >= 100), {r['errors']} in ERROR")
    print(f"  ratios: boot p50 / API GET p50 {pct(r['boots'], .5) / pct(r['floor'], .5):.1f}x,"
          f" boot p50 / raw libvirt p50 {pct(r['boots'], .5) / pct(raw, .5):.0f}x")
    print("  CPU ms per server, by process: sequential (boot + polls + delete) | burst (boot + list polls)")
    for name in r["cpu_burst"]:
        print(f"    {name:28} {r['cpu_seq'].get(name, 0.0) * ms:7.2f} | {r['cpu_burst'][name] * ms:6.2f}")
    total = sum(r["cpu_burst"].values())
    print(f"    {'total':28} {sum(r['cpu_seq'].values()) * ms:7.2f} | {total * ms:6.2f}"
          f"  (2 cores: a floor of {2 / total:.0f} boots/s at this CPU per boot)")
    q, u = r["quota_rates"]["quota"], r["quota_rates"]["unlimited"]
    print(f"  quota: {args.burst} boots with an instances quota set (counted) vs unlimited, {args.rounds} rounds each,"
          f" alternated")
    print(f"    counted   {' '.join(f'{x:5.0f}' for x in q)} boots/s   unlimited {' '.join(f'{x:5.0f}' for x in u)}"
          f" boots/s")
    print(f"    ratio counted / unlimited {sum(q) / sum(u):.2f}x  (goal >= 0.8x)")


if __name__ == "__main__":
    main()
