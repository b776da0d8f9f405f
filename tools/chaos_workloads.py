"""The kill matrix's other workloads (issue 14): `kill -9` one service during a volume attach/detach
burst, or during a burst of resizes, then check what became of every request the API accepted.
tools/chaos.py runs the boot/delete burst and holds what the cases share (the client, the kill, the
leak checks).

Attach/detach (`run_attach_case`): ATTACH_PAIRS servers, each with one volume attached beforehand and
one available; the burst attaches the available volume to its server and detaches the attached one,
interleaved. Within SETTLE every volume of the case is final (available, in-use or error: nothing
attaching or detaching), its attachment row agrees with its status (in-use: one `attached` row for the
server; available: none), an accepted attach ended in-use and an accepted detach available (otherwise
`errored`, with the volume's state). Then the volumes are detached, everything deleted, and nothing may
be left (tools/chaos.leaks: instance rows, claims, ports, IPs, attachments, volume files, quota usage).

Resize (`run_resize_case`): RESIZES servers of flavor TINY; the burst resizes each to SMALL. Within
SETTLE every server of the case is final (VERIFY_RESIZE, ACTIVE, SHUTOFF or ERROR with no task); each
VERIFY_RESIZE is confirmed and must end ACTIVE with no task. An accepted resize that did not end on
SMALL is `errored`. Then no migration of the case may be open (pre-migrating, migrating, accepted,
finished), each server holds exactly one claim, of its flavor's memory, under its own uuid, and the
project's usage counts each server's flavor; after deleting, the migrations' claims must be gone too.

Exports are not checked from outside: the test cluster's targets keep them inside the volume worker.
"""
from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from tools import chaos
from tools.devcluster import RunningCluster

ATTACH_KINDS = ("conductor", "compute", "volume", "api")
RESIZE_KINDS = ("conductor", "scheduler", "compute")
ATTACH_PAIRS = 8  # 16 requests: with CONCURRENCY 6 some are answered before the kill at the 8th
RESIZES = 8
TINY, SMALL = "1", "2"  # api/bootstrap.py FLAVORS: ids
FLAVOR_RAM = {TINY: 512, SMALL: 2048}
FINAL_VOLUME = {"available", "in-use", "error"}
FINAL_RESIZE = {"VERIFY_RESIZE", "ACTIVE", "SHUTOFF", "ERROR"}
OPEN_MIGRATION = ("pre-migrating", "migrating", "accepted", "finished")  # cells/db/migration_records.py OPEN

Jobs = list[tuple[str, Callable[[], str | None]]]


def _status(client: chaos.Client, vid: str) -> str:
    vol = client.volume(vid)
    return "the API did not answer" if vol is None else str(vol.get("status", "gone"))


def _setup_servers(client: chaos.Client, tag: str, n: int) -> list[str]:
    servers = [sid for i in range(n) if (sid := client.boot(f"{tag}-s{i}")) is not None]
    assert len(servers) == n, "the cluster did not accept the setup boots"
    settled = chaos._until(time.monotonic() + chaos.SETTLE,
                           lambda: all((client.server(s) or {}).get("status") == "ACTIVE" for s in servers))
    assert settled, "the setup boots did not become ACTIVE before the kill"
    return servers


def _unlimited_volumes(cluster: RunningCluster, client: chaos.Client) -> None:
    """Lift the project's volume quotas too: a refused attach or volume create is then the kill's doing."""
    import requests

    admin = {"X-Auth-Token": cluster.token("admin")}
    me = requests.get(f"{client.base}/identity/v3/auth/tokens", timeout=chaos.TIMEOUT,
                      headers={**admin, "X-Subject-Token": admin["X-Auth-Token"]}).json()
    resp = requests.put(f"{client.base}/volume/v3/{me['token']['project']['id']}/os-quota-sets/{client.project}",
                        headers=admin, timeout=chaos.TIMEOUT, json={"quota_set": {"volumes": -1, "gigabytes": -1}})
    assert resp.status_code == 200, resp.text


def _wait_volumes(client: chaos.Client, volumes: list[str], status: str) -> bool:
    return chaos._until(time.monotonic() + chaos.SETTLE,
                        lambda: all(_status(client, v) == status for v in volumes), 0.5)


def _attachments(cluster: RunningCluster, volumes: list[str]) -> dict[str, list[tuple[str, str]]]:
    """volume id -> [(instance uuid, status)] of its attachment rows in the cell DB."""
    marks = ",".join("?" * len(volumes))
    found: dict[str, list[tuple[str, str]]] = {v: [] for v in volumes}
    with chaos._cell_db(cluster) as db:
        for vid, uuid, status in db.execute("SELECT volume_id, instance_uuid, status FROM volume_attachments "
                                            f"WHERE volume_id IN ({marks})", volumes):
            found[str(vid)].append((str(uuid), str(status)))
    return found


def _volume_error(cluster: RunningCluster, vid: str) -> str:
    """Why the volume's last flow failed, as the cell DB keeps it (the 3.0 API does not show it)."""
    with chaos._cell_db(cluster) as db:
        row = db.execute("SELECT error FROM volumes WHERE id = ?", (vid,)).fetchone()
    return str(row[0]) if row and row[0] else "no reason recorded"


def _host(cluster: RunningCluster, sid: str) -> str:
    with chaos._cell_db(cluster) as db:
        row = db.execute("SELECT host FROM instances WHERE uuid = ?", (sid,)).fetchone()
    return str(row[0]) if row else "no host"


def run_attach_case(cluster: RunningCluster, kind: str, pairs: int = ATTACH_PAIRS) -> chaos.KillResult:
    started = time.monotonic()
    service = chaos.service_of(cluster, kind)
    result = chaos.KillResult(f"{kind} attach", service)
    client = chaos.Client(cluster)
    client.unlimited(cluster)
    _unlimited_volumes(cluster, client)
    before = client.usage()
    tag = f"chaos-attach-{kind}-{int(time.time())}"

    servers = _setup_servers(client, tag, pairs)
    volumes = [vid for i in range(2 * pairs) if (vid := client.create_volume(f"{tag}-v{i}")) is not None]
    assert len(volumes) == 2 * pairs, "the cluster did not accept the setup volumes"
    assert _wait_volumes(client, volumes, "available"), "the setup volumes did not become available"
    to_attach, attached = volumes[:pairs], volumes[pairs:]
    assert all(client.attach(s, v) for s, v in zip(servers, attached, strict=True)), "setup attach refused"
    assert _wait_volumes(client, attached, "in-use"), "the setup attachments did not become in-use"
    owner = dict(zip(to_attach, servers, strict=True)) | dict(zip(attached, servers, strict=True))

    jobs: Jobs = []
    for sid, new, old in zip(servers, to_attach, attached, strict=True):
        jobs.append((f"attach {new}", functools.partial(client.attach, sid, new)))
        jobs.append((f"detach {old}", functools.partial(client.detach, sid, old)))
    outcomes = chaos.burst_with_kill(cluster, service, kind, jobs, result,
                                     lambda name, vid: _status(client, vid) in ("attaching", "detaching"))
    wanted = {v: ("in-use" if n.startswith("attach") else "available") for n, v in outcomes if v}
    result.accepted = len(wanted)
    result.refused = len(jobs) - result.accepted
    result.refusals = dict(Counter(client.refusals))

    chaos._until(time.monotonic() + chaos.SETTLE,
                 lambda: all(_status(client, v) in FINAL_VOLUME for v in volumes), 0.5)
    rows = _attachments(cluster, volumes)
    for vid in volumes:
        status = _status(client, vid)
        if status not in FINAL_VOLUME:
            result.stuck.append(f"volume {vid}: {status}, attachment rows {rows[vid]}")
            continue
        result.final += vid in wanted
        expected_rows = [(owner[vid], "attached")] if status == "in-use" else []
        if rows[vid] != expected_rows:
            result.leaked.append(f"volume {vid} is {status} but its attachment rows are {rows[vid]}")
        if vid in wanted and status != wanted[vid]:
            result.errored += 1
            verb = "attach" if wanted[vid] == "in-use" else "detach"
            server = client.server(owner[vid]) or {}
            result.faults.append(f"{verb} {vid}: ended {status} ({_volume_error(cluster, vid)}); server "
                                 f"{owner[vid]} {chaos._state(server)} on {_host(cluster, owner[vid])}")

    in_use = [v for v in volumes if _status(client, v) == "in-use"]
    for vid in in_use:
        client.detach(owner[vid], vid)
    _wait_volumes(client, in_use, "available")
    _finish(cluster, client, result, servers, volumes, before, tag)
    result.seconds = time.monotonic() - started
    return result


def _final_resize(server: dict[str, Any] | None) -> bool:
    return bool(server) and server is not None and server["status"] in FINAL_RESIZE \
        and not server.get("OS-EXT-STS:task_state")


def _migrations(cluster: RunningCluster, servers: list[str]) -> list[tuple[str, str, str]]:
    """(migration uuid, instance uuid, status) of the servers' migrations."""
    marks = ",".join("?" * len(servers))
    with chaos._cell_db(cluster) as db:
        return [(str(m), str(i), str(s)) for m, i, s in db.execute(
            f"SELECT uuid, instance_uuid, status FROM migrations WHERE instance_uuid IN ({marks})", servers)]


def _claims(cluster: RunningCluster, consumers: list[str]) -> list[tuple[str, str, int]]:
    """(consumer, host, memory_mb) of the claims held by `consumers` (instance or migration uuids)."""
    if not consumers:
        return []
    marks = ",".join("?" * len(consumers))
    with chaos._cell_db(cluster) as db:
        return [(str(c), str(h), int(m)) for c, h, m in db.execute(
            f"SELECT instance_uuid, host, memory_mb FROM claims WHERE instance_uuid IN ({marks})", consumers)]


def run_resize_case(cluster: RunningCluster, kind: str, resizes: int = RESIZES) -> chaos.KillResult:
    started = time.monotonic()
    service = chaos.service_of(cluster, kind)
    result = chaos.KillResult(f"{kind} resize", service)
    client = chaos.Client(cluster)
    client.unlimited(cluster)
    before = client.usage()
    tag = f"chaos-resize-{kind}-{int(time.time())}"

    servers = _setup_servers(client, tag, resizes)
    jobs: Jobs = [(f"resize {sid}", functools.partial(client.action, sid, {"resize": {"flavorRef": SMALL}}))
                  for sid in servers]
    outcomes = chaos.burst_with_kill(cluster, service, kind, jobs, result,
                                     lambda name, sid: not _final_resize(client.server(sid)))
    resized = [sid for _, sid in outcomes if sid]
    result.accepted = len(resized)
    result.refused = len(jobs) - result.accepted
    result.refusals = dict(Counter(client.refusals))

    chaos._until(time.monotonic() + chaos.SETTLE, lambda: all(_final_resize(client.server(s)) for s in servers), 0.5)
    for sid in servers:
        server = client.server(sid)
        if not _final_resize(server):
            result.stuck.append(f"resize {sid}: {chaos._state(server)}")
        elif server is not None and server["status"] == "VERIFY_RESIZE" \
                and client.action(sid, {"confirmResize": None}, accepted=204) is None:
            result.stuck.append(f"resize {sid}: confirmResize refused ({client.refusals[-1]})")
    chaos._until(time.monotonic() + chaos.SETTLE,
                 lambda: all(chaos._boot_final(client.server(s)) for s in servers), 0.5)
    moves = _migrations(cluster, servers)
    flavors: dict[str, str] = {}
    for sid in servers:
        server = client.server(sid)
        if not chaos._boot_final(server) or server is None:
            if not any(s.startswith(f"resize {sid}") for s in result.stuck):
                result.stuck.append(f"confirm {sid}: {chaos._state(server)}")
            continue
        flavors[sid] = str(server["flavor"]["id"])
        result.final += sid in resized
        if sid in resized and (server["status"] == "ERROR" or flavors[sid] != SMALL):
            result.errored += 1
            fault = (server.get("fault") or {}).get("message", "no fault")
            its = [status for _, i, status in moves if i == sid] or "none"
            result.faults.append(f"resize {sid}: {server['status']} on flavor {flavors[sid]} ({fault}); "
                                 f"its migrations: {its}")
        result.shutoff += server["status"] == "SHUTOFF"
    result.rescheduled = sum(len(hosts) > 1 for hosts in chaos._retry_hosts(cluster, resized).values())

    result.stuck += [f"migration {m} of {i}: {s}" for m, i, s in moves if s in OPEN_MIGRATION]
    held = Counter(c for c, _, _ in _claims(cluster, servers))
    for consumer, host, memory in _claims(cluster, servers + [m for m, _, _ in moves]):
        if consumer in flavors and memory != FLAVOR_RAM.get(flavors[consumer]):
            result.leaked.append(f"claim of {consumer} on {host}: {memory} MB for flavor {flavors[consumer]}")
        elif consumer not in servers:
            result.leaked.append(f"migration claim {consumer} on {host}: {memory} MB")
    result.leaked += [f"server {s} holds {held[s]} claims" for s in flavors if held[s] != 1]
    usage = client.usage()
    if before is not None and usage is not None:
        expected = {"totalInstancesUsed": before["totalInstancesUsed"] + len(servers),
                    "totalCoresUsed": before["totalCoresUsed"] + len(servers),
                    "totalRAMUsed": before["totalRAMUsed"] + sum(FLAVOR_RAM.get(f, 0) for f in flavors.values())}
        if len(flavors) == len(servers) and usage != expected:
            result.leaked.append(f"quota usage {usage} while the servers' flavors count {expected}")

    _finish(cluster, client, result, servers, [], before, tag)
    left = _claims(cluster, [m for m, _, _ in moves])
    result.leaked += [f"migration claim {c} on {h} after delete" for c, h, _ in left]
    result.seconds = time.monotonic() - started
    return result


def _finish(cluster: RunningCluster, client: chaos.Client, result: chaos.KillResult, servers: list[str],
            volumes: list[str], before: dict[str, int] | None, tag: str) -> None:
    """Delete the case's servers (and any its API made without answering) and volumes; record leaks."""
    unacknowledged = [sid for sid in client.named(tag) if sid not in servers]
    result.unacknowledged = len(unacknowledged)
    servers = servers + unacknowledged
    chaos._cleanup(client, servers, volumes)
    deadline = time.monotonic() + chaos.LEAK_BOUND
    while (found := chaos.leaks(cluster, client, servers, volumes, before)) and time.monotonic() < deadline:
        time.sleep(0.5)
    result.leaked += found


def runners() -> dict[str, tuple[tuple[str, ...], Callable[[RunningCluster, str], chaos.KillResult]]]:
    """workload -> (the kinds it kills, the case runner): the full matrix's cases."""
    return {"burst": (chaos.KINDS, chaos.run_case), "attach": (ATTACH_KINDS, run_attach_case),
            "resize": (RESIZE_KINDS, run_resize_case)}
