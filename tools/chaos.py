"""Kill anything, lose nothing: `kill -9` one service of a running cluster in the middle of a burst
of boots and deletes, then check what became of every request the API accepted.

One case (`run_case`) on a cluster from tools/devcluster.py:
  1. boots DELETES servers and waits until they are ACTIVE (the deletes of the burst);
  2. the burst: BOOTS boots (and, for the volume worker, volume creates) and those deletes, a few at a
     time; when half of them have been sent, the service is killed with SIGKILL;
  3. recovery: from the kill until the service serves again (the supervisor restarts it): the API
     answers HTTP, a router its directory table, any other service is listed by its cell's directory
     with a heartbeat newer than its new process;
  4. every accepted request must reach a final state within SETTLE seconds: a boot ACTIVE, ERROR or
     SHUTOFF with no task, a delete gone, a volume available or error; what is not then is `stuck`;
  5. then every server (and volume) of the case is deleted, and nothing may be left of them: instance
     rows, claims, ports and their IPs in the cell DB, volumes and their files, and the project's quota
     usage is back to what it was before the case; and no compute may hold a guest (libvirt domain)
     that no live instance record places on its host (`leaked`).
tests/chaos/ asserts on the result; tools/bench/chaos.py prints the matrix of all kinds.
"""
from __future__ import annotations

import functools
import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.devcluster import RunningCluster

KINDS = ("api", "router", "conductor", "scheduler", "network", "compute", "volume")
BOOTS = 16
DELETES = 3
VOLUMES = 3  # volume creates in the burst of the volume worker's case
CONCURRENCY = 6
SETTLE = 90.0  # seconds the accepted requests have to reach a final state after recovery
RECOVERY_BOUND = 60.0
LEAK_BOUND = 30.0  # seconds what a delete leaves may take to go
# Stable states a boot may end in. SHUTOFF: a guest that died after it was built; libvirt's test driver
# keeps its domains in the compute process, so a killed compute's guests die with it (QEMU's survive).
FINAL_BOOT = {"ACTIVE", "ERROR", "SHUTOFF"}
TIMEOUT = 15.0  # one HTTP request

# A node of libvirt's test driver big enough for every server of a case on one host.
TEST_NODE = """<?xml version="1.0"?>
<node>
  <cpu><mhz>2000</mhz><model>x86_64</model><active>64</active><nodes>1</nodes>
       <sockets>1</sockets><cores>64</cores><threads>1</threads></cpu>
  <memory>67108864</memory>
</node>
"""


@dataclass
class KillResult:
    kind: str
    service: str
    recovery: float | None = None  # seconds from the kill to serving again; None: not within the bound
    accepted: int = 0  # boots, deletes and volume creates the API accepted (202/204)
    refused: int = 0  # the ones it did not (the API itself down, or an error answer)
    final: int = 0  # accepted ones in a final state within SETTLE
    errored: int = 0  # accepted boots that ended in ERROR
    shutoff: int = 0  # accepted boots built, then SHUTOFF: their guest died (with a killed test-driver compute)
    rescheduled: int = 0  # accepted boots tried on more than one host
    unacknowledged: int = 0  # servers made by boots whose answer never came (deleted and checked too)
    in_flight: int = 0  # at the kill: requests sent and unanswered, accepted boots not yet ACTIVE/ERROR
    refusals: dict[int, int] = field(default_factory=dict)  # HTTP status (0: no answer) -> count, in the burst
    seconds: float = 0.0  # the case's wall time
    stuck: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)  # the errored boots' faults
    leaked: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.recovery is not None and not self.stuck and not self.leaked

    def describe(self) -> str:
        lines = [(f"{self.kind} ({self.service}): recovery {self.recovery}, accepted {self.accepted}, "
                  f"refused {self.refused}, final {self.final}, errored {self.errored}, shutoff {self.shutoff}, "
                  f"rescheduled {self.rescheduled}, unacknowledged {self.unacknowledged}, in flight at the kill "
                  f"{self.in_flight}, refusals {self.refusals}, {self.seconds:.0f} s")]
        lines += [f"  stuck: {s}" for s in self.stuck] + [f"  leaked: {s}" for s in self.leaked]
        lines += [f"  ERROR: {f}" for f in self.faults]
        return "\n".join(lines)


def chaos_cluster_options(root: Path) -> dict[str, Any]:
    """running_cluster() arguments for the chaos cluster: two roomy test hosts, node1 a volume host."""
    node = root / "chaos-node.xml"
    root.mkdir(parents=True, exist_ok=True)
    node.write_text(TEST_NODE)
    return {"hosts": 2, "virt_uri": f"test://{node}", "volumes": True}


def service_of(cluster: RunningCluster, kind: str) -> str:
    ids = [s["id"] for s in cluster.config["services"] if s["kind"] == kind]
    assert ids, f"the cluster has no {kind} service"
    return str(min(ids))


class Client:
    """The demo project through the REST API (requests: one session per thread is not needed here)."""

    def __init__(self, cluster: RunningCluster) -> None:
        import requests

        self.requests = requests
        self.base = cluster.endpoint
        self.headers = {"X-Auth-Token": cluster.token("demo")}
        me = requests.get(f"{self.base}/identity/v3/auth/tokens", timeout=TIMEOUT,
                          headers={**self.headers, "X-Subject-Token": self.headers["X-Auth-Token"]}).json()
        self.project = str(me["token"]["project"]["id"])
        images = requests.get(f"{self.base}/image/v2/images?name=tiny-raw", headers=self.headers,
                              timeout=TIMEOUT).json()["images"]
        self.image = str(images[0]["id"])
        self.refusals: list[int] = []  # status of each boot, delete or volume create not accepted

    def unlimited(self, cluster: RunningCluster) -> None:
        """Lift the project's compute quotas: a refusal in the burst is then the kill's doing."""
        admin = {"X-Auth-Token": cluster.token("admin")}
        resp = self.requests.put(f"{self.base}/compute/v2.1/os-quota-sets/{self.project}", headers=admin,
                                 timeout=TIMEOUT, json={"quota_set": {"instances": -1, "cores": -1, "ram": -1}})
        assert resp.status_code == 200, resp.text

    def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        """(status, JSON body or None); status 0 when the API did not answer at all."""
        try:
            resp = self.requests.request(method, self.base + path, headers=self.headers, timeout=TIMEOUT, **kw)
        except self.requests.RequestException:
            return 0, None
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, None

    def boot(self, name: str) -> str | None:
        status, body = self.call("POST", "/compute/v2.1/servers",
                                 json={"server": {"name": name, "flavorRef": "1", "imageRef": self.image}})
        if status == 202 and body:
            return str(body["server"]["id"])
        self.refusals.append(status)
        return None

    def named(self, prefix: str) -> list[str]:
        """Ids of the project's servers whose name starts with `prefix` (Nova's name filter is a regex)."""
        status, body = self.call("GET", f"/compute/v2.1/servers?name=^{prefix}")
        return [str(s["id"]) for s in body["servers"]] if status == 200 and body else []

    def delete(self, sid: str) -> bool:
        return self.call("DELETE", f"/compute/v2.1/servers/{sid}")[0] == 204

    def delete_server(self, sid: str) -> str | None:
        """`sid` if the API accepted its delete."""
        status = self.call("DELETE", f"/compute/v2.1/servers/{sid}")[0]
        if status == 204:
            return sid
        self.refusals.append(status)
        return None

    def server(self, sid: str) -> dict[str, Any] | None:
        """The server, {} once it is gone (404), None while the API does not answer."""
        status, body = self.call("GET", f"/compute/v2.1/servers/{sid}")
        if status == 404:
            return {}
        return dict(body["server"]) if status == 200 and body else None

    def create_volume(self, name: str) -> str | None:
        status, body = self.call("POST", f"/volume/v3/{self.project}/volumes",
                                 json={"volume": {"size": 1, "name": name}})
        if status == 202 and body:
            return str(body["volume"]["id"])
        self.refusals.append(status)
        return None

    def volume(self, vid: str) -> dict[str, Any] | None:
        status, body = self.call("GET", f"/volume/v3/{self.project}/volumes/{vid}")
        if status == 404:
            return {}
        return dict(body["volume"]) if status == 200 and body else None

    def delete_volume(self, vid: str) -> bool:
        return self.call("DELETE", f"/volume/v3/{self.project}/volumes/{vid}")[0] == 202

    def attach(self, sid: str, vid: str) -> str | None:
        """`vid` if the API accepted attaching it to server `sid`."""
        status = self.call("POST", f"/compute/v2.1/servers/{sid}/os-volume_attachments",
                           json={"volumeAttachment": {"volumeId": vid}})[0]
        if status == 200:
            return vid
        self.refusals.append(status)
        return None

    def detach(self, sid: str, vid: str) -> str | None:
        """`vid` if the API accepted detaching it from server `sid`."""
        status = self.call("DELETE", f"/compute/v2.1/servers/{sid}/os-volume_attachments/{vid}")[0]
        if status == 202:
            return vid
        self.refusals.append(status)
        return None

    def action(self, sid: str, body: dict[str, Any], accepted: int = 202) -> str | None:
        """`sid` if the API answered the server action `body` with `accepted`."""
        status = self.call("POST", f"/compute/v2.1/servers/{sid}/action", json=body)[0]
        if status == accepted:
            return sid
        self.refusals.append(status)
        return None

    def usage(self) -> dict[str, int] | None:
        status, body = self.call("GET", "/compute/v2.1/limits")
        if status != 200 or not body:
            return None
        absolute = body["limits"]["absolute"]
        return {k: int(absolute[k]) for k in ("totalInstancesUsed", "totalCoresUsed", "totalRAMUsed")}


def _until(deadline: float, what: Callable[[], bool], interval: float = 0.25) -> bool:
    while True:
        if what():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _boot_final(server: dict[str, Any] | None) -> bool:
    return bool(server) and server is not None and server["status"] in FINAL_BOOT \
        and not server.get("OS-EXT-STS:task_state")


def wait_serving(cluster: RunningCluster, service: str, kind: str, killed_pid: int, bound: float,
                 since: float) -> float | None:
    """Seconds from `since` (the kill, time.monotonic()) until `service` serves again in a new process,
    None past `bound`."""
    import asyncio

    from cells.config import ClusterConfig
    from tools import health

    config = ClusterConfig.load(cluster.state / "cluster.json")
    t0 = since

    async def wait() -> float | None:
        prober = health.Prober(config)
        new_since: float | None = None
        try:
            while time.monotonic() - t0 < bound:
                try:
                    pid = cluster.pid(service)
                except (OSError, ValueError):
                    pid = killed_pid
                if pid != killed_pid and new_since is None:
                    new_since = time.monotonic()
                if new_since is not None:
                    probe = await prober.probe(timeout=0.5)
                    if _serves(probe, config, service, kind, time.monotonic() - new_since):
                        return time.monotonic() - t0
                await asyncio.sleep(0.1)
            return None
        finally:
            prober.close()

    return asyncio.run(wait())


def warm_up(cluster: RunningCluster, servers: int = 4, bound: float = 90.0) -> None:
    """Before the first kill: boot until a round of servers all go ACTIVE, then delete them. Until every
    host has reported its resources and cached the image (a first boot fetches it from the API), a boot
    may find no host or fail its fetch when the API is the service killed: the first case would measure
    the cluster's start, not the kill (CI saw it: the api case ran 2 s after start and ERRORed 5 boots)."""
    client = Client(cluster)
    client.unlimited(cluster)
    deadline = time.monotonic() + bound
    while True:
        if _warm_up_round(client, servers, deadline):
            return
        assert time.monotonic() < deadline, f"no round of {servers} warm-up servers went ACTIVE in {bound:.0f} s"
        time.sleep(1.0)


def _warm_up_round(client: Client, servers: int, deadline: float) -> bool:
    """Boot `servers`, wait until they are final, delete them and wait until gone: whether all went ACTIVE."""
    sids = [sid for i in range(servers) if (sid := client.boot(f"warmup-{i}")) is not None]
    _until(deadline, lambda: all(_boot_final(client.server(s)) for s in sids))
    active = len(sids) == servers and all((client.server(s) or {}).get("status") == "ACTIVE" for s in sids)
    for sid in sids:
        client.delete(sid)
    _until(deadline, lambda: all(client.server(s) == {} for s in sids))
    return active


def wait_healthy(cluster: RunningCluster, bound: float = RECOVERY_BOUND) -> None:
    """Until every service of the cluster is alive (between cases: the last kill's service is back)."""
    import asyncio

    from cells.config import ClusterConfig
    from tools import health

    config = ClusterConfig.load(cluster.state / "cluster.json")

    async def wait() -> list[str]:
        prober = health.Prober(config)
        deadline = time.monotonic() + bound
        try:
            while True:
                down = [s.id for s in (await prober.probe()).down(config)]
                if not down or time.monotonic() > deadline:
                    return down
                await asyncio.sleep(0.25)
        finally:
            prober.close()

    down = asyncio.run(wait())
    assert not down, f"not alive after {bound:.0f} s: {down}"


def _serves(probe: Any, config: Any, service: str, kind: str, new_for: float) -> bool:
    spec = next(s for s in config.services if s.id == service)
    if kind == "api":
        return bool(probe.api_alive)
    cell = probe.cells.get(spec.cell or "")
    if cell is None or not cell.answered:
        return False
    if kind == "router":
        return True
    age = cell.members.get(service)
    return age is not None and age < new_for  # a beat from the new process, not the dead one's last


def run_case(cluster: RunningCluster, kind: str, boots: int = BOOTS, deletes: int = DELETES) -> KillResult:
    started = time.monotonic()
    service = service_of(cluster, kind)
    result = KillResult(kind, service)
    client = Client(cluster)
    client.unlimited(cluster)
    before = client.usage()
    tag = f"chaos-{kind}-{int(time.time())}"

    doomed = [sid for i in range(deletes) if (sid := client.boot(f"{tag}-del{i}")) is not None]
    assert len(doomed) == deletes, "the cluster did not accept the setup boots"
    settled = _until(time.monotonic() + SETTLE, lambda: all(_boot_final(client.server(s)) for s in doomed))
    assert settled, "the setup boots did not finish before the kill"

    jobs: list[tuple[str, Callable[[], str | None]]] = [
        (f"boot {i}", functools.partial(client.boot, f"{tag}-{i}")) for i in range(boots)]
    for i, sid in enumerate(doomed):  # deletes interleaved with the boots
        jobs.insert(2 * i + 1, (f"delete {sid}", functools.partial(client.delete_server, sid)))
    if kind == "volume":
        for i in range(VOLUMES):
            jobs.insert(3 * i + 1, (f"volume {i}", functools.partial(client.create_volume, f"{tag}-v{i}")))
    outcomes = burst_with_kill(cluster, service, kind, jobs, result,
                               lambda name, sid: name.startswith("boot") and not _boot_final(client.server(sid)))
    booted = [v for n, v in outcomes if n.startswith("boot") and v]
    deleted = [v for n, v in outcomes if n.startswith("delete") and v]
    volumes = [v for n, v in outcomes if n.startswith("volume") and v]
    result.accepted = len(booted) + len(deleted) + len(volumes)
    result.refused = len(jobs) - result.accepted
    result.refusals = dict(Counter(client.refusals))

    deadline = time.monotonic() + SETTLE
    _until(deadline, lambda: all(_boot_final(client.server(s)) for s in booted)
           and all(client.server(s) == {} for s in deleted)
           and all((client.volume(v) or {}).get("status") in ("available", "error") for v in volumes), 0.5)
    for sid in booted:
        server = client.server(sid)
        if _boot_final(server):
            result.final += 1
            if server is not None and server["status"] == "ERROR":
                result.errored += 1
                result.faults.append(f"boot {sid}: {(server.get('fault') or {}).get('message', 'no fault')}")
            result.shutoff += server is not None and server["status"] == "SHUTOFF"
        else:
            result.stuck.append(f"boot {sid}: {_state(server)}")
    for sid in deleted:
        server = client.server(sid)
        if server == {}:
            result.final += 1
        else:
            result.stuck.append(f"delete {sid}: {_state(server)}")
    for vid in volumes:
        vol = client.volume(vid)
        if (vol or {}).get("status") in ("available", "error"):
            result.final += 1
        else:
            result.stuck.append(f"volume {vid}: {(vol or {}).get('status', 'no answer')}")
    result.rescheduled = sum(len(hosts) > 1 for hosts in _retry_hosts(cluster, booted).values())

    # a boot the API made but could not answer (killed mid-request) is the case's too: found by name
    unacknowledged = [sid for sid in client.named(tag) if sid not in booted and sid not in doomed]
    result.unacknowledged = len(unacknowledged)
    servers = booted + doomed + unacknowledged
    _cleanup(client, servers, volumes)
    # what deleting leaves behind goes within moments (a claim released after the 404, usage recounted):
    # leaked is what is still there after LEAK_BOUND
    deadline = time.monotonic() + LEAK_BOUND
    while (found := leaks(cluster, client, servers, volumes, before)) and time.monotonic() < deadline:
        time.sleep(0.5)
    result.leaked = found
    result.seconds = time.monotonic() - started
    return result


def burst_with_kill(cluster: RunningCluster, service: str, kind: str,
                    jobs: list[tuple[str, Callable[[], str | None]]], result: KillResult,
                    pending: Callable[[str, str], bool]) -> list[tuple[str, str | None]]:
    """Send `jobs` CONCURRENCY at a time and SIGKILL `service` when half of them have been sent; the
    burst goes on through the kill. Sets the result's in_flight (requests unanswered at the kill, plus
    answered ones `pending(name, value)` says are not done yet) and recovery. Returns (name, value) of
    every job, value None when the API did not accept it."""
    sent = threading.Semaphore(0)
    waiting = [0]  # requests sent and not answered yet
    lock = threading.Lock()

    def send(job: Callable[[], str | None]) -> str | None:
        with lock:
            waiting[0] += 1
        sent.release()
        try:
            return job()
        finally:
            with lock:
                waiting[0] -= 1

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        futures = [(name, pool.submit(send, job)) for name, job in jobs]
        for _ in range(len(jobs) // 2):  # the kill lands in the middle of the burst
            sent.acquire()
        pid = cluster.pid(service)
        os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()
        # what the kill caught: requests still unanswered, and accepted ones not done yet
        unanswered = waiting[0]
        answered = [(name, f.result()) for name, f in futures if f.done()]
        result.in_flight = unanswered + sum(value is not None and pending(name, value) for name, value in answered)
        result.recovery = wait_serving(cluster, service, kind, pid, RECOVERY_BOUND, t_kill)  # the burst goes on
        return [(name, f.result()) for name, f in futures]


def _state(server: dict[str, Any] | None) -> str:
    if server is None:
        return "the API did not answer"
    if not server:
        return "gone"
    return f"{server['status']}/{server.get('OS-EXT-STS:task_state')}"


def _cell_db(cluster: RunningCluster) -> sqlite3.Connection:
    path = cluster.state / "cells" / "cell1.db"
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def _retry_hosts(cluster: RunningCluster, uuids: list[str]) -> dict[str, list[str]]:
    import json

    if not uuids:
        return {}
    with _cell_db(cluster) as db:
        marks = ",".join("?" * len(uuids))
        rows = db.execute(f"SELECT uuid, retry_hosts FROM instances WHERE uuid IN ({marks})", uuids).fetchall()
    return {str(u): list(json.loads(h) if isinstance(h, str) else h or []) for u, h in rows}


def _cleanup(client: Client, servers: list[str], volumes: list[str]) -> None:
    deadline = time.monotonic() + SETTLE
    for sid in servers:
        if client.server(sid) != {}:
            client.delete(sid)
    for vid in volumes:
        client.delete_volume(vid)
    _until(deadline, lambda: all(client.server(s) == {} for s in servers)
           and all(client.volume(v) == {} for v in volumes), 0.5)


def leaks(cluster: RunningCluster, client: Client, servers: list[str], volumes: list[str],
          usage_before: dict[str, int] | None) -> list[str]:
    """What is left of deleted servers and volumes: API view, cell DB rows, volume files, quota usage."""
    found = [f"server {s} still shown: {_state(client.server(s))}" for s in servers if client.server(s) != {}]
    found += [f"volume {v} still shown" for v in volumes if client.volume(v) != {}]
    if servers:
        marks = ",".join("?" * len(servers))
        with _cell_db(cluster) as db:
            for what, sql in (
                    ("instance row", f"SELECT uuid FROM instances WHERE deleted = 0 AND uuid IN ({marks})"),
                    ("claim", f"SELECT instance_uuid FROM claims WHERE instance_uuid IN ({marks})"),
                    ("port", f"SELECT id FROM ports WHERE device_id IN ({marks})"),
                    ("fixed IP", ("SELECT address FROM ip_allocations WHERE port_id IN "
                                  f"(SELECT id FROM ports WHERE device_id IN ({marks}))")),
                    ("volume attachment", f"SELECT volume_id FROM volume_attachments WHERE instance_uuid IN ({marks})")):
                found += [f"{what} {row[0]}" for row in db.execute(sql, servers).fetchall()]
    for vid in volumes:
        files = list((cluster.state / "hosts").glob(f"*/volumes/volume-{vid}.*"))
        found += [f"volume file {f}" for f in files]
    after = client.usage()
    if usage_before is not None and after != usage_before:
        found.append(f"quota usage {after} (before the case: {usage_before})")
    return found + leaked_guests(cluster)


def leaked_guests(cluster: RunningCluster) -> list[str]:
    """Guests no live record places on their host: every compute is asked what its hypervisor holds
    (the test driver's domains live in the compute process), and each domain must belong to a
    live instance recorded on that host or to an open move's copy there (a source awaiting confirm)."""
    import asyncio

    from cells.config import ClusterConfig
    from tools import health

    config = ClusterConfig.load(cluster.state / "cluster.json")
    hosts = sorted({s.host for s in config.services if s.kind == "compute"})

    async def ask() -> dict[str, dict[str, int] | str]:
        prober = health.Prober(config)
        out: dict[str, dict[str, int] | str] = {}
        try:
            for host in hosts:
                try:
                    out[host] = await prober.guest_inventory(host)
                except Exception as exc:  # noqa: BLE001 - a compute that cannot say is reported, not fatal
                    out[host] = f"{type(exc).__name__}: {exc}"
        finally:
            prober.close()
        return out

    found = []
    with _cell_db(cluster) as db:
        for host, guests in asyncio.run(ask()).items():
            if isinstance(guests, str):
                found.append(f"guests on {host}: its compute did not say ({guests})")
                continue
            placed = {str(r[0]) for r in db.execute(
                "SELECT uuid FROM instances WHERE deleted = 0 AND host = ? UNION SELECT instance_uuid FROM migrations "
                "WHERE status IN ('pre-migrating', 'migrating', 'accepted', 'finished') "
                "AND (source_host = ? OR dest_host = ?)", (host, host, host))}
            found += [f"domain of {uuid} on {host}: no live instance there" for uuid in sorted(guests)
                      if uuid not in placed]
    return found
