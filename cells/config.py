"""The resolved cluster: what `tools/bootstrap` writes to `<state>/cluster.json`
from cluster.yaml, and what every service process reads at start.

Every address here is fixed and explicit (no random ports), so firewalls can be
written by hand.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# a host's virt URI for a simulated compute host (node/compute/driver.py: a private test hypervisor);
# cluster.yaml's `hosts: {simulated: N}` in a cell makes N of them (tools/simulated_hosts.py)
SIM_URI = "sim"

@dataclass(frozen=True)
class ServiceSpec:
    id: str  # "cell1/conductor", "cell1/compute/node1", "api"
    kind: str  # router | conductor | scheduler | compute | api
    host: str  # host name from cluster.yaml
    bind: str  # tcp://ADDR:PORT for RPC services, ADDR:PORT for the API
    cell: str | None = None  # cell path ("cell1", later "site1!cell-a"); None for the API
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {"virt_uri": "test:///default"}
    public_key: str = ""  # CURVE public key (z85); the secret half is in <state>/keys/


@dataclass(frozen=True)
class CellSpec:
    name: str
    path: str  # routing path from the top ("cell1")
    db: str  # SQLAlchemy async URL
    router: str  # tcp address of the cell's directory
    parent: str | None = None
    site: str = ""  # the site (from cluster.yaml) the cell belongs to: an availability zone
    allow_resize_to_same_host: bool = False  # a resize may pick the server's own host (Nova's option)


@dataclass(frozen=True)
class HostSpec:
    name: str
    address: str
    via: str = "local"
    site_net: str = ""  # via netns: the site whose network the host's namespace sits on (tools/netns.py)
    # via ssh: user, port, identity_file, host_key, remote_dir, remote_state (tools/remote.py);
    # empty for other hosts
    ssh: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiSpec:
    listen: str  # "127.0.0.1:8774"
    public_url: str  # "http://127.0.0.1:8774"
    db: str
    image_dir: str
    region: str = "RegionOne"
    # upload bounds (api/image/bounds.py): one image's data, a project's active image data, the
    # image store filesystem's free space an upload must leave
    image_size_cap: int = 8 << 30
    image_size_total: int = 32 << 30
    image_store_min_free: int = 1 << 30
    # cluster.yaml api.half_made_boot_grace: seconds a boot's mapping may stay not built before the API's
    # sweep asks its cell about it (api/compute/boot_sweep.py)
    half_made_boot_grace: float = 60.0
    # cluster.yaml api.metrics: Prometheus /metrics on a listener of its own (cells/metrics.py), "" = none;
    # API worker api-N serves on this port + N - 1
    metrics_listen: str = ""


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    state_dir: str
    api: ApiSpec
    cells: tuple[CellSpec, ...]
    services: tuple[ServiceSpec, ...]
    hosts: tuple[HostSpec, ...]
    secrets: dict[str, str] = field(default_factory=dict)  # admin_password, demo_password, service_password
    heartbeat_interval: float = 1.0
    dead_after: float = 60.0  # seconds a silent compute host is suspect before it is dead (cells/rpc/liveness.py)
    max_attempts: int = 3  # hosts one build may try, the first included (Nova's max_attempts)
    # seconds a deleted server is kept (SOFT_DELETED, restorable) before it is reclaimed; 0 = deleted at once
    reclaim_instance_interval: int = 0
    # seconds a SHELVED server keeps its host before it is offloaded (Nova's shelved_offload_time):
    # 0 = at once, -1 = never (an admin's shelveOffload still does)
    shelved_offload_time: int = 0
    curve: bool = False
    version: str = "1"
    operator_key: str = ""  # CURVE public key of cellctl and other tools
    list_bound: float = 1.0  # seconds a cell has to answer a scatter-gather (api/scatter.py) before it is down
    sites: tuple[str, ...] = ()  # site names, in file order (site i's netns network is the i-th /24)
    netns_range: str = "10.250.0.0/16"  # private range routed only into the cluster's netns hosts
    # the cluster's private PostgreSQL (tools/pgserver.py) when a db is `{engine: postgresql, managed: true}`:
    # {"dir": <state>/postgres, "port": 5432, "databases": ["api", "cell_cell1", ...]}; empty when none
    managed_postgres: dict[str, Any] = field(default_factory=dict)
    # cluster.yaml `logging:` (cells/logtrail.py): each service's log file rotates at log_max_bytes,
    # keeping log_backups old files; log_format "text" or "json" (one object a line, for shipping)
    log_max_bytes: int = 20 << 20
    log_backups: int = 5
    log_format: str = "text"

    def allowed_keys(self) -> set[str]:
        """Every public key of this cluster: the ZAP allowlist of each ROUTER."""
        return {s.public_key for s in self.services if s.public_key} | ({self.operator_key} - {""})

    def router_key(self, cell_path: str) -> bytes | None:
        if not self.curve:
            return None
        key = self.service(f"{cell_path}/router").public_key
        return key.encode() if key else None  # keys not made yet (a cluster never started)

    def service(self, service_id: str) -> ServiceSpec:
        for s in self.services:
            if s.id == service_id:
                return s
        raise KeyError(f"no service {service_id!r} in cluster {self.name!r}")

    def cell(self, path: str) -> CellSpec:
        for c in self.cells:
            if c.path == path:
                return c
        raise KeyError(f"no cell {path!r} in cluster {self.name!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClusterConfig:
        return cls(
            name=d["name"], state_dir=d["state_dir"], api=ApiSpec(**d["api"]),
            cells=tuple(CellSpec(**c) for c in d["cells"]),
            services=tuple(ServiceSpec(**s) for s in d["services"]),
            hosts=tuple(HostSpec(**h) for h in d["hosts"]),
            secrets=dict(d.get("secrets") or {}), heartbeat_interval=float(d.get("heartbeat_interval", 1.0)),
            dead_after=float(d.get("dead_after", 60.0)), max_attempts=int(d.get("max_attempts", 3)),
            reclaim_instance_interval=int(d.get("reclaim_instance_interval", 0)),
            shelved_offload_time=int(d.get("shelved_offload_time", 0)),
            curve=bool(d.get("curve", False)), version=str(d.get("version", "1")),
            operator_key=str(d.get("operator_key", "")), list_bound=float(d.get("list_bound", 1.0)),
            sites=tuple(d.get("sites") or ()), netns_range=str(d.get("netns_range", "10.250.0.0/16")),
            managed_postgres=dict(d.get("managed_postgres") or {}),
            log_max_bytes=int(d.get("log_max_bytes", 20 << 20)), log_backups=int(d.get("log_backups", 5)),
            log_format=str(d.get("log_format", "text")),
        )

    @classmethod
    def load(cls, path: str | Path) -> ClusterConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
