"""cluster.yaml: simulated compute hosts in a cell (issue 21), many served by one process.

    hosts: [node1, {simulated: 200, per_process: 100, on: ctl, rpc_port: 20000, sync_interval: 60}]
    hosts: {simulated: 200}            # the same, simulated hosts only

Each simulated host is a whole compute host to the rest of the cluster: a host entry of its own
(`<cell>-sim-001` ...), a compute service `<cell>/compute/<host>` with its own fixed RPC port
(rpc_port, rpc_port + 1, ...), its own CURVE key (principal compute@<host>), directory member,
heartbeats, resource report and hypervisor (virt uri `sim`: a private libvirt test hypervisor).
What they share is the process: the hosts of one chunk of `per_process` run in one
`<cell>/sim-<k>` process (tools/serve.py), so their services carry options["process"] and the
supervisor starts that process instead of one process per host.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cells.config import SIM_URI, ClusterConfig, ServiceSpec

if TYPE_CHECKING:
    from tools.clusterfile import _Parser

KEYS = ("simulated", "per_process", "on", "rpc_port", "sync_interval")
MAX_HOSTS = 10_000  # per block: past this the names' width and the port range run out first
DEFAULT_PER_PROCESS = 250  # hosts one process serves (measured: see tools/bench/scale.py)
DEFAULT_PORT_BASE = 20000  # the first block's first port; later blocks follow on
# seconds between a simulated host's power sweeps (each asks the conductor for the host's instances):
# the test hypervisor changes no guest by itself, and its domain events still wake a sweep at once
DEFAULT_SYNC_INTERVAL = 60.0


def is_simulated(options: dict[str, Any]) -> bool:
    return bool(options.get("process"))


def place(p: _Parser, value: Any, field: str, cell_path: str, cell_name: str, default_on: str) -> None:
    """Add the block's hosts and their compute services to the parser's tables."""
    from tools.clusterfile import _Host  # clusterfile imports this module: not at import time

    m = p.mapping(value, field, ("simulated",), KEYS[1:])
    count = _count(p, m["simulated"], f"{field}.simulated", 1, MAX_HOSTS)
    per_process = _count(p, m.get("per_process", DEFAULT_PER_PROCESS), f"{field}.per_process", 1, MAX_HOSTS)
    on = p.host_ref(m.get("on", default_on), f"{field}.on")
    if on.spec.via != "local":
        p.fail(f"{field}.on", f"simulated hosts run on a host reached via: local, not via: {on.spec.via}")
    sync = m.get("sync_interval", DEFAULT_SYNC_INTERVAL)
    if isinstance(sync, bool) or not isinstance(sync, (int, float)) or not 0 < sync <= 3600:
        p.fail(f"{field}.sync_interval", f"expected seconds between 0 and 3600, got {sync!r}")
    placed = sum(1 for s in p.services if is_simulated(s.options))
    base = p.port(m["rpc_port"], f"{field}.rpc_port") if "rpc_port" in m else DEFAULT_PORT_BASE + placed
    if base + count - 1 > 65535:
        p.fail(f"{field}.rpc_port", f"{count} hosts need ports {base}-{base + count - 1}: past 65535")
    width = len(str(count))
    for i in range(count):
        name = f"{cell_name}-sim-{i + 1:0{width}d}"
        if name in p.hosts or len(name) > 63:
            p.fail(field, f"simulated host name {name!r} is taken by a host of `hosts`" if name in p.hosts
                   else f"simulated host name {name!r} is longer than 63 characters (shorten the cell's name)")
        host = _Host(replace(on.spec, name=name, ssh={}), ("compute",), SIM_URI, "auto", base + i, True,
                     cell_field=field)
        p.hosts[name] = host
        service = p.place(cell_path, f"compute/{name}", host, base + i, field, f" (simulated, rpc_port {base} + {i})")
        p.services.append(replace(service, options={
            "virt_uri": SIM_URI, "virt_type": "auto", "sync_interval": float(sync),
            "process": f"{cell_path}/sim-{i // per_process + 1}"}))


def services_of(cluster: ClusterConfig, process: str) -> list[ServiceSpec]:
    """The simulated hosts' compute services that `process` (e.g. "cell1/sim-1") serves."""
    return [s for s in cluster.services if s.options.get("process") == process]


def _count(p: _Parser, value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        p.fail(field, f"expected an integer from {low} to {high}, got {value!r}")
    return value

