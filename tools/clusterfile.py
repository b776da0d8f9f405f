"""cluster.yaml -> cells.config.ClusterConfig: validate, resolve, write <state>/cluster.json.

The schema (every key not listed here is an error; paths are relative to the
directory that holds the file):

    cluster: demo                    # required; name [A-Za-z0-9][A-Za-z0-9_-]*
    state_dir: var                   # default "var"; `cellctl --state DIR` overrides it
    heartbeat_interval: 1.0          # seconds, default 1.0; a member missing 3 beats is suspect
    dead_after: 60                   # seconds (default 60) a suspect host stays silent before it is dead
    max_attempts: 3                  # hosts a build may try, the first included (default 3, Nova's)
    reclaim_instance_interval: 0     # seconds a deleted server stays SOFT_DELETED (restorable); 0 = off
    shelved_offload_time: 0          # seconds a SHELVED server keeps its host's claim before it is
                                     # offloaded (Nova's option): 0 = at once (default), -1 = never
    api:                             # required: the API cell's HTTP endpoint
      host: ctl                      # required; a name from `hosts`
      listen: 127.0.0.1:8774         # default <address of host>:8774
      public_url: http://...:8774    # default http://<listen> (the host's address if listen is 0.0.0.0)
      region: RegionOne              # default RegionOne
      workers: 1                     # API processes (default 1), all on the listen port (SO_REUSEPORT:
                                     # the kernel spreads connections); ids api, api-2, ... Losing
                                     # one costs capacity only; each shows in `cellctl status`
      list_bound: 1.0                # seconds each cell has to answer a request sent to every cell
                                     # (default 1.0; api/scatter.py); a cell slower than that is down
                                     # for it: in a server listing its servers list as UNKNOWN
      half_made_boot_grace: 60       # seconds (default 60, at least 25) a boot's mapping may stay not
                                     # built before its cell is asked (api/compute/boot_sweep.py)
    sites:                           # required, non-empty; a site groups cells
      - name: site1
        cells:                       # required, non-empty
          - name: cell1              # unique in the whole file
            db: sqlite:///var/cells/cell1.db    # default <state>/cells/<path>.db;
                                     # sqlite:///REL (relative to the file), sqlite:////ABS,
                                     # postgresql://USER@HOST/DB (+psycopg or +asyncpg:
                                     # both run on psycopg 3, cells/db/engine.py)
            services:                # where the cell's own services run
              router: ctl:5601       # required HOST:PORT (HOST = a name from `hosts`)
              conductor: ctl         # HOST or HOST:PORT; default <router host>:<router port + 1>
              scheduler: ctl         # HOST or HOST:PORT; default <router host>:<router port + 2>
                                     # conductor and scheduler also take a list, one process each:
                                     #   conductor: [ctl, ctl:5611]   (entries after the first need a
                                     #   PORT); ids <cell>/conductor, <cell>/conductor-2, ... Members
                                     #   share the topic round-robin; a flow is owned by one conductor
                                     #   and adopted by a live one when its owner leaves the directory
              network: ctl           # the network controller; default <router host>:<router port + 3>
                                     # a cell with child cells and no hosts runs only its router (a
                                     # relay) unless conductor/scheduler/network are given
            hosts: [node1]           # compute hosts of this cell (each host in at most one cell)
            allow_resize_to_same_host: false   # default false (Nova's option): a resize may stay on
                                     # the server's own host (its flavor changed in place; both
                                     # flavors claimed there until confirm); a migration never does
            cells: [...]             # nested child cells, same schema; path "cell1!child"
    hosts:                           # required: name -> host
      ctl:   {address: 127.0.0.1, via: local}
      node1:
        address: 127.0.0.1           # required; IP address or DNS name peers connect to
        via: local                   # local | netns | ssh (a remote machine: tools/remote.py)
        site_net: site1              # via netns only (required): the site whose network the host is on;
                                     # address must be in that site's /24 of netns.range (tools/netns.py)
        roles: [compute]             # default [compute]; compute and/or volume (network: not supported yet)
        volume: {backend: file, format: raw, targets: [local, tgt, nbd], capacity_gb: 20,
                 port: 5800, iscsi_port: 3260, nbd_port: 10809}   # role volume only; ports default
                                     # to these + the host's index; backend lvm takes volume_group;
                                     # backend_name: NAME (volume types' volume_backend_name; default the backend)
        virt: {uri: "test:///default", type: auto}   # type: auto | kvm | qemu
        rpc_port: 5610               # compute RPC port; default 5700 + index of the host in `hosts`
        metrics_port: 9190           # default none: each cell service on the host serves /metrics on its
                                     # own port from this one up (file order; `cellctl up` prints them)
      node3:                         # via ssh: cellctl copies the host's slice of cluster.json and its own
        address: 192.0.2.7           # services' CURVE keys there with scp and starts a supervisor for its
        via: ssh                     # services with ssh; `down` stops it over ssh (details: tools/remote.py)
        user: cellcloud              # default: ssh's own (the user running cellctl, ~/.ssh/config)
        port: 22                     # the remote sshd's port (default 22)
        identity_file: ~/.ssh/id_ed25519    # default: ssh's own keys/agent; relative = to this file
        host_key: "ssh-ed25519 AAAA..."     # pins the remote host key; without it the first key seen is
                                     # recorded in <state>/ssh/known_hosts and a changed key is refused
        remote_dir: /opt/cellcloud   # the cellcloud checkout + .venv (`make deps`) there; default: this path
        remote_state: /var/lib/cc    # its state dir there; default <remote_dir>/var/ssh/<cluster>/<host>
                                     # an ssh host runs compute/volume workers and routers; the API and
                                     # DB services of a SQLite cell are refused there
    netns: {range: 10.250.0.0/16}    # default; site i (1-based, file order) gets the i-th /24, gateway .1
    tenant_networks: {min_subnet_prefix: 16}   # default; a tenant subnet wider than this is refused (8-29)
    external_network: {name: public, cidr: 203.0.113.0/24, cell: cell1}   # optional: the router:external
                                     # network floating IPs come from, made by that cell's network
                                     # controller at start (cell default: the first with one)
    security: {curve: true}          # default true: CURVE on every socket, keys in <state>/keys/;
                                     # false = plaintext, a development setting only
    logging: {max_bytes: 20M, backups: 5, format: text}   # defaults: each service's <state>/log/<id>.log
                                     # rotates at max_bytes keeping `backups` old files; format json =
                                     # one object a line for shipping (cells/logtrail.py)

Resolution: every port is fixed and explicit; two services on the same address
and port are an error. Cell path = cell name, or "<parent path>!<name>" for a
nested cell. Service ids: "api", "<cell>/router", "<cell>/conductor",
"<cell>/scheduler", "<cell>/network", "<cell>/compute/<host>"; extra processes of a
scaled-out service: "api-2", "<cell>/conductor-2", "<cell>/scheduler-2", ... sqlite URLs become
sqlite+aiosqlite:///ABSPATH. Secrets (admin/demo/service passwords) are made
once and kept in <state>/secrets.json (0600); with curve: true every service
and the operator (cellctl) get a key pair once, in <state>/keys/. The resolved
cluster, secrets and public keys included, is written to <state>/cluster.json (0600).
"""
from __future__ import annotations

import ipaddress
import json
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cells import logtrail
from cells.config import SIM_URI, ApiSpec, CellSpec, ClusterConfig, HostSpec, ServiceSpec
from cells.db import settings as dbsettings
from cells.network.policy import DEFAULT_MIN_PREFIX
from cells.rpc.liveness import DEFAULT_GRACE
from tools import pgserver, remote, simulated_hosts
from tools.clusterfile_fields import ClusterFileError, FieldParser, got, read_yaml, state_dir_of
from tools.private_files import write_private

VIA = ("local", "netns", "ssh")
VIA_SUPPORTED = ("local", "netns", "ssh")
ROLES = ("compute", "volume", "network")
ROLES_SUPPORTED = ("compute", "volume")
VIRT_TYPES = ("auto", "kvm", "qemu")
SCALABLE = ("conductor", "scheduler")  # cell services that may run as several processes
DEFAULT_API_PORT = 8774
DEFAULT_POSTGRES_PORT = 5432  # a managed PostgreSQL listens on a unix socket only: the port names its socket file
DEFAULT_COMPUTE_PORT_BASE = 5700
# volume hosts (issue 6): RPC, iSCSI portal and NBD server ports default to these + the host's index
DEFAULT_VOLUME_PORT_BASE, DEFAULT_ISCSI_PORT_BASE, DEFAULT_NBD_PORT_BASE = 5800, 3260, 10809
VOLUME_KEYS = ("port", "backend", "format", "volume_group", "capacity_gb", "targets", "iscsi_port", "nbd_port",
               "backend_name")
# a boot's last build call is sent up to RESTART_BOUND (15 s) after its mapping is written and answered or
# dropped BUILD_BOUND (5 s) later (api/compute/cell_boot.py): a shorter grace could sweep a boot in flight
MIN_BOOT_GRACE = 25.0
IMAGE_BOUNDS = ("image_size_cap", "image_size_total", "image_store_min_free")  # api/image/bounds.py
# ec2_credential_key seals the EC2 secrets in the API DB (api/identity/ec2creds.py)
# alt_demo_password: the second project's user (multi-tenant checks, Tempest's alt credentials)
SECRET_NAMES = ("admin_password", "demo_password", "service_password", "image_reader_password", "ec2_credential_key",
                "alt_demo_password")


@dataclass
class _Host:
    spec: HostSpec
    roles: tuple[str, ...]
    virt_uri: str
    virt_type: str
    rpc_port: int
    rpc_port_given: bool
    cell_field: str | None = None  # where the host was placed in a cell
    metrics_port: int | None = None  # first /metrics port of the host's cell services (one each, file order)
    volume: dict[str, Any] | None = None  # the volume worker's options (role volume)


class _Parser(FieldParser):
    def __init__(self, label: str, base_dir: Path) -> None:
        super().__init__(label)
        self.base_dir = base_dir
        self.hosts: dict[str, _Host] = {}
        self.ports: dict[tuple[str, int], str] = {}  # (address, port) -> who uses it
        self.cell_names: dict[str, str] = {}  # name -> field path of its first use
        self.dbs: dict[str, str] = {}
        self.cells: list[CellSpec] = []
        self.services: list[ServiceSpec] = []
        self.site = ""  # the site whose cells are being parsed
        self.list_bound = 1.0
        self.api_workers: list[ServiceSpec] = []  # api-2 .. api-N
        self.api_db: Any = None  # api.db as written (resolved in load, once the state dir is known)
        self.managed_postgres: dict[str, Any] = {}  # the cluster's private PostgreSQL, when a db asks for it
        self.api_db_settings: Any = None  # api.db_settings as written (checked in load, with the api.db)

    def host_ref(self, value: Any, path: str) -> _Host:
        if not isinstance(value, str) or value not in self.hosts:
            known = ", ".join(self.hosts) or "none"
            self.fail(path, f"unknown host {got(value)} (hosts defined: {known})")
        return self.hosts[value]

    def claim_port(self, address: str, port: int, owner: str, path: str) -> None:
        """Fixed ports must not collide: same address (or a wildcard) and same port. Looked up, not scanned:
        examples/scale.yaml claims 3,000 ports (a scan made loading it 5 s)."""
        wildcards = ("0.0.0.0", "::")
        others = ([(a, p) for a, p in self.ports if p == port] if address in wildcards
                  else [(a, port) for a in (address, *wildcards) if (a, port) in self.ports])
        if others:
            self.fail(path, f"port {_join(address, port)} of {owner} is already used by {self.ports[others[0]]}")
        self.ports[(address, port)] = owner

    # --- sections --------------------------------------------------------------

    def parse_hosts(self, raw: Any) -> None:
        if not isinstance(raw, dict) or not raw:
            self.fail("hosts", f"expected a non-empty mapping of host name -> host, got {got(raw)}")
        for index, (name, value) in enumerate(raw.items()):
            path = f"hosts.{name}"
            self.name(name, path)
            if isinstance(value, dict) and "via" in value:
                via = value["via"]
                if via not in VIA:
                    self.fail(f"{path}.via", f"expected one of {', '.join(VIA)}, got {got(via)}")
                if via not in VIA_SUPPORTED:
                    self.fail(f"{path}.via", f"{via!r} is not supported yet (supported: {', '.join(VIA_SUPPORTED)}; "
                                             "for a remote machine, run `cellctl up` there with its hosts as "
                                             "via: local)")
            m = self.mapping(value, path, ("address",), ("via", "roles", "virt", "rpc_port", "site_net", "volume", "metrics_port",
                                                          *remote.SSH_KEYS))
            address = self.address(m["address"], f"{path}.address")
            roles = self.roles(m.get("roles", ["compute"]), f"{path}.roles")
            virt = self.mapping(m.get("virt", {}), f"{path}.virt", (), ("uri", "type"))
            uri = self.string(virt.get("uri", "test:///default"), f"{path}.virt.uri", "a libvirt URI like test:///default")
            if "://" not in uri and uri != SIM_URI:
                self.fail(f"{path}.virt.uri", f"expected a libvirt URI like test:///default, got {uri!r}")
            vtype = virt.get("type", "auto")
            if vtype not in VIRT_TYPES:
                self.fail(f"{path}.virt.type", f"expected one of {', '.join(VIRT_TYPES)}, got {got(vtype)}")
            given = "rpc_port" in m
            port = self.port(m["rpc_port"], f"{path}.rpc_port") if given else DEFAULT_COMPUTE_PORT_BASE + index
            site_net = self.site_net(m, path)
            self.hosts[name] = _Host(HostSpec(name=name, address=address, via=m.get("via", "local"),
                                              site_net=site_net, ssh=remote.parse_options(self, m, path)),
                                     roles, uri, vtype, port, given)
            self.hosts[name].volume = self.volume(m, path, roles, index)
            if "metrics_port" in m:
                self.hosts[name].metrics_port = self.port(m["metrics_port"], f"{path}.metrics_port")

    def place_metrics(self) -> None:
        """Each cell service on a host with metrics_port serves /metrics on its own port, counted up
        from it in file order (cells/metrics.py: a listener apart from the service's RPC socket)."""
        for name, host in self.hosts.items():
            if host.metrics_port is None:
                continue
            mine = [i for i, s in enumerate(self.services) if s.host == name]
            if host.metrics_port + len(mine) - 1 > 65535:
                self.fail(f"hosts.{name}.metrics_port", f"ports {host.metrics_port}-"
                                                        f"{host.metrics_port + len(mine) - 1} pass 65535")
            for n, i in enumerate(mine):
                svc = self.services[i]
                port = host.metrics_port + n
                self.claim_port(host.spec.address, port, f"{svc.id} metrics (hosts.{name}.metrics_port)",
                                f"hosts.{name}.metrics_port")
                self.services[i] = replace(svc, options={**svc.options,
                                                         "metrics": _join(host.spec.address, port)})

    def site_net(self, m: dict[str, Any], path: str) -> str:
        via = m.get("via", "local")
        if via != "netns":
            if "site_net" in m:
                self.fail(f"{path}.site_net", f"only a host with via: netns sits on a site network (via is {via})")
            return ""
        if "site_net" not in m:
            self.fail(f"{path}.site_net", "required key is missing (via: netns: the site whose network it is on)")
        return self.name(m["site_net"], f"{path}.site_net")

    def check_netns(self, sites: list[str], raw_range: Any) -> str:
        """netns hosts: their site exists and their address is theirs alone, inside the site's /24."""
        text = self.string(raw_range, "netns.range", "a private IPv4 /16 like 10.250.0.0/16")
        try:
            net = ipaddress.ip_network(text)
        except ValueError:
            self.fail("netns.range", f"expected a private IPv4 /16 like 10.250.0.0/16, got {text!r}")
        if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 16 or not net.is_private:
            self.fail("netns.range", f"expected a private IPv4 network of /16 or wider, got {text!r}")
        if len(sites) > 250:
            self.fail("sites", "at most 250 sites fit netns.range")
        used: dict[str, str] = {}
        for name, host in self.hosts.items():
            spec = host.spec
            if spec.via != "netns":
                continue
            path = f"hosts.{name}"
            if spec.site_net not in sites:
                self.fail(f"{path}.site_net", f"unknown site {spec.site_net!r} (sites: {', '.join(sites)})")
            subnet = list(net.subnets(new_prefix=24))[sites.index(spec.site_net) + 1]
            try:
                addr = ipaddress.ip_address(spec.address)
            except ValueError:
                self.fail(f"{path}.address", f"expected an IP address in {subnet} (site {spec.site_net}), "
                                             f"got {spec.address!r}")
            if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address,
                                              subnet.network_address + 1):
                self.fail(f"{path}.address", f"expected an address in {subnet} (site {spec.site_net}'s network; "
                                             f".0, .1 = gateway and .255 are taken), got {spec.address}")
            if spec.address in used:
                self.fail(f"{path}.address", f"address {spec.address} is already host {used[spec.address]}'s")
            used[spec.address] = name
        return str(net)

    def roles(self, raw: Any, path: str) -> tuple[str, ...]:
        if not isinstance(raw, list):
            self.fail(path, f"expected a list of roles ({', '.join(ROLES)}), got {got(raw)}")
        out: list[str] = []
        for i, role in enumerate(raw):
            if role not in ROLES:
                self.fail(f"{path}[{i}]", f"expected one of {', '.join(ROLES)}, got {got(role)}")
            if role not in ROLES_SUPPORTED:
                self.fail(f"{path}[{i}]", f"role {role!r} is not supported yet (supported: {', '.join(ROLES_SUPPORTED)})")
            if role in out:
                self.fail(f"{path}[{i}]", f"role {role!r} is listed twice")
            out.append(role)
        return tuple(out)

    def parse_api(self, raw: Any) -> tuple[ApiSpec, ServiceSpec]:
        m = self.mapping(raw, "api", ("host",), ("listen", "public_url", "region", "list_bound", "workers", "db",
                                                  "db_settings", "metrics", "half_made_boot_grace", *IMAGE_BOUNDS))
        self.api_db = m.get("db")
        self.api_db_settings = m.get("db_settings")
        self.list_bound = self.seconds(m.get("list_bound", 1.0), "api.list_bound", 0, 30)
        grace = self.seconds(m.get("half_made_boot_grace", 60), "api.half_made_boot_grace", MIN_BOOT_GRACE, 86400)
        host = self.host_ref(m["host"], "api.host")
        listen_raw = m.get("listen", _join(host.spec.address, DEFAULT_API_PORT))
        addr, port = self.host_port(listen_raw, "api.listen", "ADDRESS:PORT (e.g. 127.0.0.1:8774)")
        addr = self.address(addr, "api.listen")
        listen = _join(addr, port)
        self.claim_port(addr, port, "api (api.listen)", "api.listen")
        public = _join(host.spec.address if addr in ("0.0.0.0", "::") else addr, port)
        url = self.string(m.get("public_url", f"http://{public}"), "api.public_url", "an http(s):// URL")
        if not url.startswith(("http://", "https://")):
            self.fail("api.public_url", f"expected an http(s):// URL, got {url!r}")
        region = self.name(m.get("region", "RegionOne"), "api.region")
        # The API DB and image store always live in the state dir: filled in by resolve().
        bounds = {key: self.byte_size(m[key], f"api.{key}") for key in IMAGE_BOUNDS if key in m}
        svc = ServiceSpec(id="api", kind="api", host=host.spec.name, bind=listen)
        workers = m.get("workers", 1)
        if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
            self.fail("api.workers", f"expected a number of processes 1-64, got {got(workers)}")
        metrics = ""
        if "metrics" in m:  # one port per API worker from this one up (cells/metrics.py: why not the API port)
            maddr, mport = self.host_port(m["metrics"], "api.metrics", "ADDRESS:PORT (e.g. 127.0.0.1:9180)")
            maddr = self.address(maddr, "api.metrics")
            if mport + workers - 1 > 65535:
                self.fail("api.metrics", f"ports {mport}-{mport + workers - 1} (one per API worker) pass 65535")
            for n in range(workers):
                self.claim_port(maddr, mport + n, f"api metrics (api.metrics, worker {n + 1})", "api.metrics")
            metrics = _join(maddr, mport)
        spec = ApiSpec(listen=listen, public_url=url.rstrip("/"), db="", image_dir="", region=region,
                       metrics_listen=metrics, half_made_boot_grace=grace, **bounds)
        # workers share the one port (SO_REUSEPORT: the kernel spreads connections over them)
        self.api_workers = [replace(svc, id=f"api-{n}", options={"workers": workers}) for n in range(2, workers + 1)]
        return spec, replace(svc, options={"workers": workers}) if workers > 1 else svc

    def db_settings(self, raw: Any, path: str, sqlite: bool) -> dbsettings.DbSettings:
        """cells/db/settings.py: synchronous NORMAL|FULL, lock_timeout seconds, min_free_mb MiB (SQLite only)."""
        if raw is None:
            return dbsettings.DEFAULTS
        m = self.mapping(raw, path, (), ("synchronous", "lock_timeout", "min_free_mb"))
        if m and not sqlite:
            self.fail(path, "db_settings apply to SQLite databases only (PostgreSQL has its own)")
        sync = m.get("synchronous", dbsettings.DEFAULTS.synchronous)
        if sync not in dbsettings.SYNCHRONOUS:
            self.fail(f"{path}.synchronous", f"expected one of {', '.join(dbsettings.SYNCHRONOUS)}, got {got(sync)}")
        timeout = m.get("lock_timeout", dbsettings.DEFAULTS.lock_timeout)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
            self.fail(f"{path}.lock_timeout", f"expected seconds between 0 and 3600, got {got(timeout)}")
        free = m.get("min_free_mb", dbsettings.DEFAULTS.min_free_mb)
        if isinstance(free, bool) or not isinstance(free, int) or not 0 <= free <= 1 << 20:
            self.fail(f"{path}.min_free_mb", f"expected MiB between 0 and 1048576, got {got(free)}")
        return dbsettings.DbSettings(synchronous=sync, lock_timeout=float(timeout), min_free_mb=free)

    def parse_sites(self, raw: Any, state: Path) -> None:
        if not isinstance(raw, list) or not raw:
            self.fail("sites", f"expected a non-empty list of sites, got {got(raw)}")
        site_names: set[str] = set()
        for i, value in enumerate(raw):
            path = f"sites[{i}]"
            m = self.mapping(value, path, ("name", "cells"), ())
            name = self.name(m["name"], f"{path}.name")
            if name in site_names:
                self.fail(f"{path}.name", f"site {name!r} is defined twice")
            site_names.add(name)
            self.site = name  # the cells parsed now (nested ones too) belong to this site
            self.parse_cells(m["cells"], f"{path}.cells", None, state)

    def parse_cells(self, raw: Any, path: str, parent: CellSpec | None, state: Path) -> None:
        if not isinstance(raw, list) or (not raw and parent is None):
            self.fail(path, f"expected a non-empty list of cells, got {got(raw)}")
        for i, value in enumerate(raw):
            self.parse_cell(value, f"{path}[{i}]", parent, state)

    def parse_cell(self, value: Any, path: str, parent: CellSpec | None, state: Path) -> None:
        m = self.mapping(value, path, ("name", "services"), ("db", "db_settings", "hosts", "cells",
                                                             "allow_resize_to_same_host"))
        name = self.name(m["name"], f"{path}.name")
        if name in self.cell_names:
            self.fail(f"{path}.name", f"cell {name!r} is already defined at {self.cell_names[name]}")
        self.cell_names[name] = path
        cell_path = f"{parent.path}!{name}" if parent else name
        db = self.db_url(m.get("db"), f"{path}.db", cell_path, state)
        db = dbsettings.with_settings(db, self.db_settings(m.get("db_settings"), f"{path}.db_settings",
                                                           db.startswith("sqlite")))

        svc = self.mapping(m["services"], f"{path}.services", ("router",), ("conductor", "scheduler", "network"))
        rhost_name, rport = self.host_port(svc["router"], f"{path}.services.router", "HOST:PORT")
        rhost = self.host_ref(rhost_name, f"{path}.services.router")
        router = self.place(cell_path, "router", rhost, rport, f"{path}.services.router", "")
        same_host = m.get("allow_resize_to_same_host", False)
        if not isinstance(same_host, bool):
            self.fail(f"{path}.allow_resize_to_same_host", f"expected true or false, got {got(same_host)}")
        cell = CellSpec(name=name, path=cell_path, db=db, router=router.bind, parent=parent.path if parent else None,
                        site=self.site, allow_resize_to_same_host=same_host)
        relay_only = bool(m.get("cells")) and not m.get("hosts")  # holds no instances: a router is enough
        self.cells.append(cell)
        self.services.append(router)
        for offset, kind in ((1, "conductor"), (2, "scheduler"), (3, "network")):
            field = f"{path}.services.{kind}"
            if relay_only and kind not in svc:
                continue
            raw = svc.get(kind, rhost.spec.name)
            # scale-out: conductor and scheduler take a list; members share the topic (round-robin)
            entries = raw if isinstance(raw, list) and kind in SCALABLE else [raw]
            if not entries:
                self.fail(field, "expected HOST, HOST:PORT or a non-empty list of them, got an empty list")
            for n, entry in enumerate(entries):
                efield = f"{field}[{n}]" if isinstance(raw, list) and kind in SCALABLE else field
                if not isinstance(entry, str):
                    lists = " or a list of them" if kind in SCALABLE else ""
                    self.fail(efield, f"expected HOST or HOST:PORT{lists}, got {got(entry)}")
                if ":" in entry:
                    hname, port = self.host_port(entry, efield, "HOST or HOST:PORT")
                    note = ""
                elif n == 0:
                    hname, port = entry, rport + offset
                    note = f" (default port: router + {offset})"
                    if port > 65535:
                        self.fail(efield, f"default port router + {offset} = {port} is past 65535; give HOST:PORT")
                else:
                    self.fail(efield, f"expected HOST:PORT (only the first {kind} has a default port), got {entry!r}")
                suffix = kind if n == 0 else f"{kind}-{n + 1}"
                self.services.append(replace(self.place(cell_path, suffix, self.host_ref(hname, efield), port,
                                                        efield, note), kind=kind))

        hosts = m.get("hosts", [])
        hosts = [hosts] if isinstance(hosts, dict) else hosts  # {simulated: N} alone
        if not isinstance(hosts, list):
            self.fail(f"{path}.hosts", f"expected a list of host names, got {got(hosts)}")
        for j, hname in enumerate(hosts):
            field = f"{path}.hosts[{j}]"
            if isinstance(hname, dict):  # {simulated: N}: tools/simulated_hosts.py
                simulated_hosts.place(self, hname, field, cell_path, name, rhost.spec.name)
                continue
            host = self.host_ref(hname, field)
            if host.cell_field is not None:
                self.fail(field, f"host {hname!r} is already in a cell at {host.cell_field}")
            if "compute" not in host.roles and "volume" not in host.roles:
                self.fail(field, f"host {hname!r} has no role to run in a cell (set roles: [compute] or [volume])")
            host.cell_field = field
            if "compute" in host.roles:
                note = "" if host.rpc_port_given else f" (default rpc_port {DEFAULT_COMPUTE_PORT_BASE} + host index)"
                compute = self.place(cell_path, f"compute/{hname}", host, host.rpc_port, field, note)
                self.services.append(replace(compute, options={"virt_uri": host.virt_uri,
                                                               "virt_type": host.virt_type}))
            if host.volume is not None:
                self.place_volume(cell_path, hname, host, field)
        if "cells" in m:
            self.parse_cells(m["cells"], f"{path}.cells", cell, state)

    def volume(self, m: dict[str, Any], path: str, roles: tuple[str, ...], index: int) -> dict[str, Any] | None:
        """hosts.<name>.volume: the volume worker's options (only with role volume)."""
        if "volume" not in roles:
            if "volume" in m:
                self.fail(f"{path}.volume", "only a host with role volume takes volume options")
            return None
        v = self.mapping(m.get("volume", {}), f"{path}.volume", (), VOLUME_KEYS)
        out: dict[str, Any] = {"port": DEFAULT_VOLUME_PORT_BASE + index, "iscsi_port": DEFAULT_ISCSI_PORT_BASE + index,
                               "nbd_port": DEFAULT_NBD_PORT_BASE + index}
        for key in ("port", "iscsi_port", "nbd_port"):
            if key in v:
                out[key] = self.port(v[key], f"{path}.volume.{key}")
        backend = v.get("backend", "file")
        if backend not in ("file", "lvm"):
            self.fail(f"{path}.volume.backend", f"expected file or lvm, got {got(backend)}")
        fmt = v.get("format", "raw")
        if fmt not in ("raw", "qcow2"):
            self.fail(f"{path}.volume.format", f"expected raw or qcow2, got {got(fmt)}")
        targets = v.get("targets", ["local", "tgt", "nbd"])
        if not isinstance(targets, list) or not targets or any(t not in ("local", "tgt", "nbd", "lio") for t in targets):
            self.fail(f"{path}.volume.targets", f"expected a non-empty list of local, tgt, nbd, lio, got {got(targets)}")
        if fmt == "qcow2" and {"tgt", "lio"} & set(targets):
            self.fail(f"{path}.volume.format", "tgt and lio export raw volumes only: use format raw, or targets "
                                               "[local, nbd]")
        cap = v.get("capacity_gb")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            self.fail(f"{path}.volume.capacity_gb", f"expected a positive number of GiB, got {got(cap)}")
        out.update(backend=backend, format=fmt, targets=list(targets), capacity_gb=cap)
        if "backend_name" in v:  # what volume types' volume_backend_name match (default: the backend)
            out["backend_name"] = self.name(v["backend_name"], f"{path}.volume.backend_name")
        if backend == "lvm":
            out["volume_group"] = self.name(v.get("volume_group", "cellcloud"), f"{path}.volume.volume_group")
        return out

    def place_volume(self, cell_path: str, hname: str, host: _Host, field: str) -> None:
        opts = dict(host.volume or {})
        addr = host.spec.address
        svc = self.place(cell_path, f"volume/{hname}", host, int(opts.pop("port")), field, "")
        for key in ("iscsi_port", "nbd_port"):
            self.claim_port(addr, int(opts[key]), f"{svc.id} {key}", f"hosts.{hname}.volume.{key}")
        self.services.append(replace(svc, options=opts))

    def place(self, cell_path: str, suffix: str, host: _Host, port: int, field: str, note: str) -> ServiceSpec:
        sid = f"{cell_path}/{suffix}"
        self.claim_port(host.spec.address, port, f"{sid} ({field}{note})", field)
        return ServiceSpec(id=sid, kind=suffix.split("/")[0], host=host.spec.name,
                           bind=f"tcp://{_join(host.spec.address, port)}", cell=cell_path)

    def db_url(self, raw: Any, path: str, cell_path: str, state: Path, managed_name: str = "") -> str:
        expected = ("sqlite:///PATH, postgresql://USER@HOST/DB (+psycopg or +asyncpg) or "
                    "{engine: postgresql, managed: true}")
        if isinstance(raw, dict):
            url = self.managed_db(raw, path, managed_name or "cell_" + cell_path.replace("!", "_").lower(), state)
        elif raw is None:
            url = f"sqlite+aiosqlite:///{state / 'cells' / (cell_path.replace('!', '/') + '.db')}"
        else:
            text = self.string(raw, path, expected)
            scheme, sep, rest = text.partition("://")
            if not sep:
                self.fail(path, f"expected {expected}, got {text!r}")
            if scheme in ("sqlite", "sqlite+aiosqlite"):
                file = rest[1:] if rest.startswith("/") else ""
                if not file or file == ":memory:":
                    self.fail(path, f"expected sqlite:///PATH with a file path (each service is its own process), "
                                    f"got {text!r}")
                url = f"sqlite+aiosqlite:///{(self.base_dir / file).resolve()}"
            elif scheme in ("postgresql", "postgresql+asyncpg", "postgresql+psycopg"):
                url = f"postgresql+psycopg://{rest}"  # one driver for the DB threads and the async engine
            else:
                self.fail(path, f"expected {expected}, got {text!r}")
        if url in self.dbs:
            self.fail(path, f"database {url} is already used by {self.dbs[url]}")
        self.dbs[url] = path
        return url

    def managed_db(self, raw: dict[str, Any], path: str, database: str, state: Path) -> str:
        """`{engine: postgresql, managed: true, port: 5432}`: a database on the cluster's private PostgreSQL
        (tools/pgserver.py, in <state>/postgres; one server for every managed DB of the cluster)."""
        m = self.mapping(raw, path, ("engine",), ("managed", "port"))
        if m["engine"] != "postgresql":
            self.fail(f"{path}.engine", f"expected postgresql, got {got(m['engine'])}")
        if m.get("managed", False) is not True:
            self.fail(f"{path}.managed", "expected true (a server of your own: give its URL as db instead)")
        port = m.get("port", self.managed_postgres.get("port", DEFAULT_POSTGRES_PORT))
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            self.fail(f"{path}.port", f"expected a port number, got {got(port)}")
        if self.managed_postgres and self.managed_postgres["port"] != port:
            self.fail(f"{path}.port", f"the cluster's one private PostgreSQL already has port "
                                      f"{self.managed_postgres['port']} ({self.managed_postgres['field']})")
        directory = state / "postgres"
        if not self.managed_postgres:
            self.managed_postgres = {"dir": str(directory), "port": port, "field": f"{path}.port",
                                     "databases": []}
        self.managed_postgres["databases"].append(database)
        return pgserver.url(directory, port, database)


def _join(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


# --- public API -------------------------------------------------------------------

def _with_external_network(p: _Parser, raw: Any, services: list[ServiceSpec]) -> list[ServiceSpec]:
    """external_network: {name, cidr, cell} reaches the options of that cell's network controllers,
    which make the router:external network at start (cells/network/controller.py)."""
    ext = p.mapping(raw, "external_network", ("cidr",), ("name", "cell"))
    name = ext.get("name", "public")
    if not isinstance(name, str) or not 0 < len(name) <= 255:
        p.fail("external_network.name", f"expected a network name, got {got(name)}")
    try:
        cidr = ipaddress.IPv4Network(str(ext["cidr"]))
    except ValueError:
        p.fail("external_network.cidr", f"expected an IPv4 network like 203.0.113.0/24, got {got(ext['cidr'])}")
    if not isinstance(ext["cidr"], str) or cidr.prefixlen > 29:
        p.fail("external_network.cidr", f"expected an IPv4 network of /29 or wider, got {got(ext['cidr'])}")
    cells = [s.cell for s in services if s.kind == "network" and s.cell]
    cell = ext.get("cell", cells[0] if cells else None)
    if cell not in cells:
        p.fail("external_network.cell", f"expected a cell with a network controller ({', '.join(cells)}), "
                                        f"got {got(cell)}")
    wanted = {"name": name, "cidr": str(cidr)}
    return [replace(s, options={**s.options, "external_network": wanted})
            if s.kind == "network" and s.cell == cell else s for s in services]


def load(path: str | Path, state_dir: str | Path | None = None) -> ClusterConfig:
    """Validate and resolve cluster.yaml. No side effects; the result has no secrets yet."""
    file = Path(path)
    label = str(path)
    p = _Parser(label, file.resolve().parent)
    raw = read_yaml(file, label)
    top = p.mapping(raw, "", ("cluster", "api", "sites", "hosts"),
                    ("state_dir", "heartbeat_interval", "dead_after", "max_attempts", "reclaim_instance_interval",
                     "shelved_offload_time", "security", "netns", "tenant_networks", "logging",
                     "external_network"))
    name = p.name(top["cluster"], "cluster")
    if state_dir is not None:
        state = Path(state_dir).resolve()
    else:
        state = state_dir_of(file, top, p)
    interval = p.seconds(top.get("heartbeat_interval", 1.0), "heartbeat_interval", 0, 60)
    dead_after = top.get("dead_after", DEFAULT_GRACE)
    if isinstance(dead_after, bool) or not isinstance(dead_after, (int, float)) \
            or not 3 * interval < dead_after <= 86400:
        p.fail("dead_after", f"expected seconds above 3 heartbeats ({3 * interval:g}) and up to 86400, "
                             f"got {got(dead_after)}")
    attempts = top.get("max_attempts", 3)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 20:
        p.fail("max_attempts", f"expected an integer between 1 and 20, got {got(attempts)}")
    reclaim = top.get("reclaim_instance_interval", 0)
    if isinstance(reclaim, bool) or not isinstance(reclaim, int) or not 0 <= reclaim <= 365 * 86400:
        p.fail("reclaim_instance_interval", f"expected seconds from 0 (off) to 31536000, got {got(reclaim)}")
    offload = top.get("shelved_offload_time", 0)
    if isinstance(offload, bool) or not isinstance(offload, int) or not -1 <= offload <= 365 * 86400:
        p.fail("shelved_offload_time", f"expected seconds from -1 (never) to 31536000, got {got(offload)}")
    security = p.mapping(top.get("security", {}), "security", (), ("curve",))
    curve = security.get("curve", True)  # plaintext only when the file says so
    if not isinstance(curve, bool):
        p.fail("security.curve", f"expected true or false, got {got(curve)}")

    logs = p.mapping(top.get("logging", {}), "logging", (), ("max_bytes", "backups", "format"))
    log_max_bytes = p.byte_size(logs.get("max_bytes", logtrail.DEFAULT_MAX_BYTES), "logging.max_bytes")
    log_backups = logs.get("backups", logtrail.DEFAULT_BACKUPS)
    if isinstance(log_backups, bool) or not isinstance(log_backups, int) or not 1 <= log_backups <= 100:
        p.fail("logging.backups", f"expected an integer between 1 and 100, got {got(log_backups)}")
    log_format = logs.get("format", "text")
    if log_format not in logtrail.FORMATS:
        p.fail("logging.format", f"expected one of {', '.join(logtrail.FORMATS)}, got {got(log_format)}")

    p.parse_hosts(top["hosts"])
    api, api_service = p.parse_api(top["api"])
    p.parse_sites(top["sites"], state)
    p.place_metrics()
    api_db = f"sqlite+aiosqlite:///{state / 'api.db'}"
    if p.api_db is not None:
        api_db = p.db_url(p.api_db, "api.db", "", state, managed_name="api")
    api_db = dbsettings.with_settings(api_db, p.db_settings(p.api_db_settings, "api.db_settings",
                                                            api_db.startswith("sqlite")))
    api = replace(api, db=api_db, image_dir=str(state / "images"))
    sites = [str(s["name"]) for s in top["sites"]]
    netns = p.mapping(top.get("netns", {}), "netns", (), ("range",))
    netns_range = p.check_netns(sites, netns.get("range", "10.250.0.0/16"))
    tenant = p.mapping(top.get("tenant_networks", {}), "tenant_networks", (), ("min_subnet_prefix",))
    min_prefix = tenant.get("min_subnet_prefix", DEFAULT_MIN_PREFIX)
    if isinstance(min_prefix, bool) or not isinstance(min_prefix, int) or not 8 <= min_prefix <= 29:
        p.fail("tenant_networks.min_subnet_prefix", f"expected a prefix length from 8 to 29, got {got(min_prefix)}")
    services = [replace(s, options={**s.options, "min_subnet_prefix": min_prefix}) if s.kind == "network" else s
                for s in p.services]  # the network controllers enforce it (cells/network/policy.py)
    if "external_network" in top:
        services = _with_external_network(p, top["external_network"], services)
    cluster = ClusterConfig(
        name=name, state_dir=str(state), api=api, cells=tuple(p.cells),
        services=(*services, api_service, *p.api_workers), hosts=tuple(h.spec for h in p.hosts.values()),
        heartbeat_interval=float(interval), dead_after=float(dead_after), max_attempts=attempts,
        reclaim_instance_interval=reclaim, shelved_offload_time=offload, curve=curve, list_bound=p.list_bound,
        sites=tuple(sites),
        netns_range=netns_range,
        managed_postgres={k: v for k, v in p.managed_postgres.items() if k != "field"},
        log_max_bytes=log_max_bytes, log_backups=log_backups, log_format=str(log_format),
    )
    problem = remote.placement_problem(cluster)  # what an ssh host cannot run (this machine's files)
    if problem is not None:
        p.fail(*problem)
    return cluster


def load_secrets(state: Path) -> dict[str, str]:
    """The cluster's passwords: made once, then read back from <state>/secrets.json."""
    path = state / "secrets.json"
    stored: dict[str, str] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ClusterFileError(str(path), "", f"cannot read secrets: {exc}") from None
        if not isinstance(data, dict):
            raise ClusterFileError(str(path), "", "expected a JSON object of name -> secret")
        stored = {str(k): str(v) for k, v in data.items()}
    missing = [n for n in SECRET_NAMES if not stored.get(n)]
    if missing:
        stored.update({n: secrets.token_urlsafe(18) for n in missing})
        write_private(path, json.dumps(stored, indent=2, sort_keys=True) + "\n")
    return stored


def resolve(path: str | Path, state_dir: str | Path | None = None) -> ClusterConfig:
    """load(), then create the state dir and add the secrets (and CURVE keys): all made once, reused."""
    cluster = load(path, state_dir)
    state = Path(cluster.state_dir)
    state.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds passwords, keys and the DBs
    cluster = replace(cluster, secrets=load_secrets(state))
    if cluster.curve:
        from cells.rpc import security  # imports zmq: only when CURVE is on

        services = tuple(replace(s, public_key=security.ensure_keypair(state, s.id)) for s in cluster.services)
        cluster = replace(cluster, services=services,
                          operator_key=security.ensure_keypair(state, security.OPERATOR))
    return cluster


def cluster_json(cluster: ClusterConfig) -> Path:
    return Path(cluster.state_dir) / "cluster.json"


def prepare(path: str | Path, state_dir: str | Path | None = None) -> ClusterConfig:
    """resolve(), then write <state>/cluster.json (0600): what every service process reads."""
    cluster = resolve(path, state_dir)
    write_private(cluster_json(cluster), cluster.to_json() + "\n")
    return cluster
