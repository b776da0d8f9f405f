"""Liveness of a running cluster, as `cellctl up` waits for it and `cellctl status` shows it.

A cell service is alive when its cell's directory (the router's `table` RPC)
lists it: members that miss 3 heartbeats leave that table, so this is the
same liveness the cluster itself routes by. A cell whose router does not
answer within ~1 s is down with all its services. The API is alive when
GET {public_url}/identity answers with any non-5xx status.
"""
from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cells.config import ClusterConfig, ServiceSpec

PROBE_TIMEOUT = 1.0


@dataclass
class CellHealth:
    path: str
    answered: bool = False  # the router answered the table RPC
    members: dict[str, float] = field(default_factory=dict)  # member id -> seconds since last beat
    # member id -> {"release", "rpc", "objects"} as it advertises them (release "1": before versioning)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str = ""
    capacity: dict[str, Any] | None = None  # the conductor's summary (cells/conductor/capacity.py)
    # compute host -> alive | suspect | dead | fenced, as the cell's conductor judges it (cells/rpc/liveness.py)
    host_states: dict[str, str] = field(default_factory=dict)
    unhealthy: dict[str, str] = field(default_factory=dict)  # member id -> why (its heartbeat's meta "health")


@dataclass
class Health:
    cells: dict[str, CellHealth]
    api_alive: bool
    api_error: str = ""
    # API workers sharing one port (api.workers > 1): is each one's process running?
    api_workers: dict[str, bool] = field(default_factory=dict)

    def alive(self, service: ServiceSpec) -> bool:
        if service.kind == "api":
            return self.api_alive and self.api_workers.get(service.id, True)
        cell = self.cells.get(service.cell or "")
        return cell is not None and service.id in cell.members

    def down(self, cluster: ClusterConfig) -> list[ServiceSpec]:
        return [s for s in cluster.services if not self.alive(s)]


class Prober:
    """Reuses one RPC client across probes (up polls every fraction of a second)."""

    def __init__(self, cluster: ClusterConfig) -> None:
        from cells.rpc.client import RpcClient  # zmq: only paid by commands that probe

        keys = None
        if cluster.curve:
            from cells.rpc import security
            if security.key_path(cluster.state_dir, security.OPERATOR).exists():
                keys = security.load_keys(cluster.state_dir, security.OPERATOR)
            else:  # never started here: nothing can answer, probe with a throw-away key
                keys = security.throwaway_keys()
        self.cluster = cluster
        self.client = RpcClient(keys, metrics=False)  # a CLI: no /metrics to count on

    def close(self) -> None:
        self.client.close()

    async def probe(self, timeout: float = PROBE_TIMEOUT) -> Health:
        cells = await asyncio.gather(*(self._cell(c.path, c.router, timeout) for c in self.cluster.cells))
        api_alive, api_error = await asyncio.to_thread(_http_answers, self.cluster.api.public_url + "/identity",
                                                       timeout)
        return Health({c.path: c for c in cells}, api_alive, api_error, _api_workers(self.cluster))

    async def _cell(self, path: str, router: str, timeout: float) -> CellHealth:
        from cells import errors
        from cells.context import RequestContext

        health = CellHealth(path)
        try:
            reply = await self.client.call_address(router, "table", {}, RequestContext(user="cellctl"), timeout,
                                                   self.cluster.router_key(path), "directory")
        except errors.CellcloudError as exc:
            health.error = str(exc)
            # drop the DEALER: its queue would replay stale requests when the router comes back
            self.client.forget(router)
            return health
        health.answered = True
        health.members = {str(m["id"]): float(m.get("age", 0.0)) for m in reply.get("members", [])}
        for m in reply.get("members", []):
            speaks = (m.get("meta") or {}).get("versions") or {}
            health.versions[str(m["id"])] = {"release": str(m.get("version") or "1"),
                                             "rpc": str(speaks.get("rpc") or "1.0"),
                                             "objects": dict(speaks.get("objects") or {"Instance": "1.0"})}
        for m in reply.get("members", []):
            meta = m.get("meta") or {}
            if "conductor" in (m.get("topics") or ()) and isinstance(meta.get("capacity"), dict):
                health.capacity = dict(meta["capacity"])
            if "conductor" in (m.get("topics") or ()) and isinstance(meta.get("hosts"), dict):
                health.host_states.update({str(h): str(v) for h, v in meta["hosts"].items()})
            if meta.get("health") not in (None, "ok"):
                health.unhealthy[str(m["id"])] = str(meta["health"])
        return health

    async def mark_host(self, host: str, down: bool, timeout: float = 5.0) -> dict[str, Any]:
        """`cellctl host down|up HOST`: the conductor of the host's cell records the operator's mark."""
        from cells.context import RequestContext

        cell = next((s.cell for s in self.cluster.services if s.kind == "compute" and s.host == host), None)
        if cell is None:
            raise KeyError(f"no compute host {host!r} in cluster {self.cluster.name!r}")
        conductor = self.cluster.service(f"{cell}/conductor")
        key = conductor.public_key.encode() if self.cluster.curve and conductor.public_key else None
        ctx = RequestContext(user="cellctl", roles=("admin",))
        reply: dict[str, Any] = await self.client.call_address(
            conductor.bind, "host_mark", {"host": host, "down": down}, ctx, timeout, key, "conductor")
        return reply


    async def guest_inventory(self, host: str, timeout: float = 5.0) -> dict[str, int]:
        """Instance uuid -> power state of every guest the compute of `host` holds (its hypervisor's
        view: libvirt's test driver keeps its domains inside the compute process)."""
        from cells.context import RequestContext

        compute = next((s for s in self.cluster.services if s.kind == "compute" and s.host == host), None)
        if compute is None:
            raise KeyError(f"no compute host {host!r} in cluster {self.cluster.name!r}")
        key = compute.public_key.encode() if self.cluster.curve and compute.public_key else None
        reply = await self.client.call_address(compute.bind, "guest_inventory", {}, RequestContext(user="cellctl"),
                                               timeout, key, f"compute.{host}")
        return {str(k): int(v) for k, v in dict(reply).items()}


def _api_workers(cluster: ClusterConfig) -> dict[str, bool]:
    """With several API workers on one port, the port answering does not say which one
    did: each worker is alive when the port answers and its process runs."""
    workers = [s for s in cluster.services if s.kind == "api"]
    if len(workers) < 2:
        return {}
    from tools.supervisor import file_name, pid_alive, read_pid

    run = Path(cluster.state_dir) / "run"
    out = {}
    for s in workers:
        pid = read_pid(run / f"{file_name(s.id)}.pid")
        out[s.id] = pid is not None and pid_alive(pid, "tools.serve")
    return out


def _http_answers(url: str, timeout: float) -> tuple[bool, str]:
    # No proxies: the API is local to the cluster even when http_proxy is set for package registries.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status < 500, ""
    except urllib.error.HTTPError as exc:
        return exc.code < 500, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, str(reason)


async def probe_once(cluster: ClusterConfig, timeout: float = PROBE_TIMEOUT) -> Health:
    prober = Prober(cluster)
    try:
        return await prober.probe(timeout)
    finally:
        prober.close()


def log_path(cluster: ClusterConfig, service_id: str) -> Path:
    """Where the service logs; on a `via: ssh` host shown as scp does: HOST:REMOTE_PATH (tools/remote.py)."""
    from tools.supervisor import file_name
    name = f"{file_name(service_id)}.log"
    on = next((s.host for s in cluster.services if s.id == service_id), None)
    host = next((h for h in cluster.hosts if h.via == "ssh" and h.name == on), None)
    if host is not None:
        from tools.remote import SshHost
        return Path(f"{host.name}:{SshHost.of(cluster, host).remote_state}/log/{name}")
    return Path(cluster.state_dir) / "log" / name


# --- status report ----------------------------------------------------------------

def report(cluster: ClusterConfig, health: Health, supervisor_pid: int | None) -> dict[str, Any]:
    """The status as plain data: what `cellctl status --json` prints and the text view renders.
    Linear in services (3,000 hosts: every lookup below is a dict, not a scan of the cluster)."""
    addresses = {h.name: h.address for h in cluster.hosts}
    vias = {h.name: h.via for h in cluster.hosts}
    logs = _log_paths(cluster)

    def service(s: ServiceSpec) -> dict[str, Any]:
        cell = health.cells.get(s.cell or "")
        age = cell.members.get(s.id) if cell else None
        speaks = cell.versions.get(s.id) if cell else None
        return {"id": s.id, "kind": s.kind, "bind": s.bind, "alive": health.alive(s),
                "unhealthy": cell.unhealthy.get(s.id) if cell else None,
                "last_beat_age": age, "log": logs[s.id],
                "release": speaks["release"] if speaks else None, "rpc": speaks["rpc"] if speaks else None}

    by_cell: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for s in cluster.services:
        if s.cell is not None:
            by_cell.setdefault(s.cell, {}).setdefault(s.host, []).append(service(s))
    cells = []
    for c in cluster.cells:
        ch = health.cells[c.path]
        hosts = [{"name": h, "address": addresses.get(h, ""), "via": vias.get(h, "local"),
                  "state": ch.host_states.get(h), "services": svcs}
                 for h, svcs in by_cell.get(c.path, {}).items()]
        cells.append({
            "name": c.name, "path": c.path, "parent": c.parent, "site": c.site, "router": c.router, "db": c.db,
            "alive": ch.answered, "error": ch.error, "capacity": ch.capacity, "pins": pins(ch),
            "summary": summarize(hosts, ch.capacity), "hosts": hosts,
        })
    api = cluster.service("api")
    return {
        "cluster": cluster.name, "state_dir": cluster.state_dir,
        "healthy": not health.down(cluster),
        "supervisor": {"running": supervisor_pid is not None, "pid": supervisor_pid},
        "api": {"id": api.id, "host": api.host, "url": cluster.api.public_url, "alive": health.api_alive,
                "error": health.api_error, "log": str(log_path(cluster, "api"))},
        "cells": cells,
    }


def _log_paths(cluster: ClusterConfig) -> dict[str, str]:
    """Every service's log (log_path, without a scan of the cluster per service)."""
    from tools.supervisor import file_name
    ssh = {h.name for h in cluster.hosts if h.via == "ssh"}
    local = f"{Path(cluster.state_dir) / 'log'}/"  # strings, not a Path per service: 3,000 of those cost 0.3 s
    return {s.id: str(log_path(cluster, s.id)) if s.host in ssh else f"{local}{file_name(s.id)}.log"
            for s in cluster.services}


def summarize(hosts: list[dict[str, Any]], capacity: dict[str, Any] | None) -> dict[str, Any]:
    """One cell in a few numbers (`cellctl status` without --hosts): its services by liveness, its
    compute hosts by the conductor's verdict, the capacity its live hosts offer and what is claimed."""
    services = {"alive": 0, "down": 0, "unhealthy": 0}
    host_states: dict[str, int] = {}
    for host in hosts:
        for s in host["services"]:
            services["alive" if s["alive"] else "down"] += 1
            services["unhealthy"] += bool(s.get("unhealthy"))
        if any(s["kind"] == "compute" for s in host["services"]):
            state = host.get("state") or "unknown"  # the conductor has not judged it (yet, or is down)
            host_states[state] = host_states.get(state, 0) + 1
    used: dict[str, Any] = {}
    if capacity and "vcpus_total" in capacity:  # a conductor of an older release reports free room only
        used = {r: [capacity.get(f"{r}_used", 0), capacity.get(f"{r}_total", 0)]
                for r in ("vcpus", "memory_mb", "local_gb")}
    return {"services": services, "hosts": host_states, "used_of_total": used}


def pins(cell: CellHealth) -> dict[str, str]:
    """What the cell pins to: per object, the lowest version any live member speaks
    (cells/objects/versions.py), and the lowest release running."""
    out: dict[str, str] = {}

    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))
    for v in cell.versions.values():
        for name, have in v["objects"].items():
            out[name] = min(out.get(name, have), have, key=key)
        out["release"] = min(out.get("release", v["release"]), v["release"], key=key)
    return out


EXCEPTIONS_SHOWN = 20  # hosts and services a summary names one by one (not alive, unhealthy) before "and N more"


def render(status: dict[str, Any], hosts: bool = False) -> str:
    """The text view: per cell a summary and what is wrong in it, or (`hosts`) every host and service."""
    def word(alive: bool) -> str:
        return "alive" if alive else "DOWN"

    sup = status["supervisor"]
    lines = [f"cluster {status['cluster']}  state {status['state_dir']}  "
             + (f"supervisor pid {sup['pid']}" if sup["running"] else "supervisor NOT RUNNING")]
    api = status["api"]
    lines.append(f"api  {api['url']}  on {api['host']}  {word(api['alive'])}"
                 + (f"  ({api['error']})" if api["error"] and not api["alive"] else ""))
    for cell in status["cells"]:  # in file order: a parent comes before its children
        pad = "  " * cell["path"].count("!")
        site = f"  site {cell['site']}" if cell.get("site") and not cell["parent"] else ""
        lines.append(f"{pad}cell {cell['path']}{site}  router {cell['router']}  {word(cell['alive'])}"
                     + (f"  ({cell['error']})" if cell["error"] else ""))
        cap = cell.get("capacity")
        if cap:
            lines.append(f"{pad}  free: {cap.get('vcpus_free', 0)} vCPUs, {cap.get('memory_mb_free', 0)} MB RAM, "
                         f"{cap.get('local_gb_free', 0)} GB disk on {cap.get('hosts_alive', 0)} of "
                         f"{cap.get('hosts', 0)} hosts alive (largest host: {cap.get('max_memory_mb_free', 0)} MB)")
        if hosts:
            shown = cell["hosts"]
        else:
            summary = cell.get("summary") or summarize(cell["hosts"], cap)
            lines.extend(f"{pad}  {line}" for line in _summary_lines(summary))
            shown = [h for h in cell["hosts"] if h.get("state") not in (None, "alive")  # what needs a look
                     or any(not s["alive"] or s.get("unhealthy") for s in h["services"])]
        for host in shown if hosts else shown[:EXCEPTIONS_SHOWN]:
            lines.extend(_host_lines(host, pad))
        if not hosts and len(shown) > EXCEPTIONS_SHOWN:
            lines.append(f"{pad}  ... and {len(shown) - EXCEPTIONS_SHOWN} more hosts not well (cellctl status --hosts)")
        if cell.get("pins"):
            lines.append(f"{pad}  pinned to the lowest live versions: "
                         + ", ".join(f"{k} {v}" for k, v in sorted(cell["pins"].items())))
    lines.append("healthy" if status["healthy"] else "NOT HEALTHY: some services are DOWN")
    return "\n".join(lines)


def _host_lines(host: dict[str, Any], pad: str) -> list[str]:
    via = f", via {host['via']}" if host.get("via", "local") != "local" else ""
    state = host.get("state") or ""  # the conductor's verdict: anything but alive is shouted
    shown = f"  {state if state == 'alive' else state.upper()}" if state else ""
    lines = [f"{pad}  host {host['name']} ({host['address']}{via}){shown}"]
    for s in host["services"]:
        beat = f"  beat {s['last_beat_age']:.1f}s ago" if s["last_beat_age"] is not None else ""
        ver = f"  release {s['release']} rpc {s['rpc']}" if s.get("release") else ""
        sick = f"  UNHEALTHY: {s['unhealthy']}" if s.get("unhealthy") else ""
        lines.append(f"{pad}    {s['id']:<28} {s['bind']:<24} {'alive' if s['alive'] else 'DOWN'}{beat}{ver}{sick}")
    return lines


def _counts(counts: dict[str, int]) -> str:
    """"12 alive, 2 SUSPECT": zero counts left out, anything but alive shouted."""
    return ", ".join(f"{n} {state if state == 'alive' else state.upper()}" for state, n in counts.items() if n)


def _summary_lines(summary: dict[str, Any]) -> list[str]:
    services = summary["services"]
    lines = [f"services: {_counts({'alive': services['alive'], 'down': services['down']}) or 'none'}"
             + (f", {services['unhealthy']} UNHEALTHY" if services["unhealthy"] else "")]
    if summary["hosts"]:
        order = ("alive", "suspect", "dead", "fenced", "unknown")
        states = sorted(summary["hosts"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 9)
        lines.append(f"compute hosts: {sum(summary['hosts'].values())} ({_counts(dict(states))})")
    used = summary.get("used_of_total")
    if used:
        units = {"vcpus": "vCPUs", "memory_mb": "MB RAM", "local_gb": "GB disk"}
        lines.append("used of live hosts' capacity: " + ", ".join(
            f"{u}/{t} {units[r]} ({100 * u / t:.0f}%)" if t else f"{u}/0 {units[r]}" for r, (u, t) in used.items()))
    return lines
