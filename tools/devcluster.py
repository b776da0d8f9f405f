"""Throw-away clusters for functional tests and benchmarks.

Writes a cluster.yaml with free loopback ports into a directory, brings it up
with the real `cellctl up` (real processes, real ZeroMQ, real HTTP), and
tears it down with `cellctl down`.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tools import openstack_cli

FIRST_POLL = 0.05  # wait_for's first pause (seconds); the pauses double from it


def poll_pauses(interval: float) -> Iterator[float]:
    """wait_for's pauses: FIRST_POLL, doubling up to `interval`, then `interval` for good. A fixed
    `interval` overshot a condition that came true just after a check by up to that long (0.5 s by
    default, ~150 waits in the functional tests); this finds the quick ones at once and polls the slow
    ones no more often than before once they have taken a second."""
    pause = min(FIRST_POLL, interval)
    while True:
        yield pause
        pause = min(pause * 2, interval)


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5) -> Any:
    """Poll until `predicate` returns something true, and return it; fail the test on timeout.
    `interval`: the longest pause between two checks (poll_pauses)."""
    deadline = time.monotonic() + timeout
    for pause in poll_pauses(interval):
        got = predicate()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(pause)
    raise AssertionError("poll_pauses never ends")  # for the type checker: the loop above returns or fails


# --- the caller's cloud never reaches a test ---------------------------------------------

# What `source var/openrc`, a clouds.yaml selection or an AWS profile leave in a shell: the openstack CLI,
# openstacksdk and boto3 prefer them to what a test passes, and would reach another cloud.
CALLER_CLOUD_PREFIXES = ("OS_", "AWS_")


def without_cloud_variables(env: Mapping[str, str]) -> dict[str, str]:
    """`env` minus every OS_* / AWS_* variable (OS_CLOUD, OS_AUTH_URL, AWS_PROFILE, ...)."""
    return {k: v for k, v in env.items() if not k.startswith(CALLER_CLOUD_PREFIXES)}


def cli_env(home: Path, **variables: str) -> dict[str, str]:
    """A client's environment built from scratch: PATH and the locale from ours, HOME = `home` (so no
    ~/.config/openstack/clouds.yaml or ~/.aws/config of the caller is read), plus `variables`."""
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ") if k in os.environ}
    return {**env, "HOME": str(home), **variables}


# --- ports no one else takes between the pick and the bind ----------------------------------

# Ports handed out below the kernel's ephemeral range (ip_local_port_range, 32768-60999 by default), so
# no outgoing connection of any process is given one; each test process holds a block of them by an
# flock on its own lock file (released when the process dies), so two test processes (two engineers'
# pytest runs, a pytest inside a test) never hand out the same port. A port still bound by someone else
# (a leftover cluster, a socket in TIME_WAIT) is skipped; cellctl up refuses ports taken since, and
# running_cluster then retries with fresh ones.
PORT_RANGE = (20000, 32000)
PORT_BLOCK = 200
PORT_STRIDE = 5  # a cell's conductor, scheduler and network default to its router's port + 1, 2, 3: never handed out
PORT_LOCK_DIR = Path("/tmp/cellcloud-test-ports")


class _PortBlocks:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: list[int] = []  # lock file descriptors, kept open for the process' life
        self.next = 0
        self.end = 0

    def _claim_block(self) -> None:
        first, last = PORT_RANGE[0], min(PORT_RANGE[1], _ephemeral_low() - 1)
        count = (last - first + 1) // PORT_BLOCK
        PORT_LOCK_DIR.mkdir(mode=0o1777, parents=True, exist_ok=True)
        for i in range(count):
            block = (os.getpid() + len(self.held) + i) % count
            fd = os.open(PORT_LOCK_DIR / f"block-{block}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.held.append(fd)
            self.next, self.end = first + block * PORT_BLOCK, first + (block + 1) * PORT_BLOCK
            return
        raise RuntimeError(f"every block of {PORT_BLOCK} test ports in {first}-{last} is held by another process")

    def take(self) -> int:
        with self.lock:
            while True:
                if self.next >= self.end:
                    self._claim_block()
                port, self.next = self.next, self.next + PORT_STRIDE
                if _bindable(port):
                    return port


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    """No SO_REUSEADDR: a port with a socket in TIME_WAIT counts as taken too."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_PORTS = _PortBlocks()


def free_port() -> int:
    """A loopback TCP port this process alone hands out (see PORT_RANGE), free when handed out."""
    return _PORTS.take()


# simulated hosts (tools/simulated_hosts.py) take consecutive ports: runs of them come from below
# PORT_RANGE, a run of RUN_BLOCK per lock file, held as PORT_RANGE's blocks are
RUN_RANGE = (10000, 20000)
RUN_BLOCK = 1000
_runs_held: list[list[int]] = []  # [lock fd, first port, ports of it handed out]


def free_port_run(count: int) -> int:
    """The first of `count` (at most RUN_BLOCK) consecutive loopback ports this process alone holds: the
    rest of a block it holds when that is enough (30 cells x 100 is 3 blocks, not 30), else a new block."""
    assert 0 < count <= RUN_BLOCK, count
    for held in _runs_held:
        if held[2] + count <= RUN_BLOCK:
            start = held[1] + held[2]
            if all(_bindable(port) for port in range(start, start + count)):
                held[2] += count
                return start
    PORT_LOCK_DIR.mkdir(mode=0o1777, parents=True, exist_ok=True)
    for first in range(RUN_RANGE[0], RUN_RANGE[1], RUN_BLOCK):
        if any(held[1] == first for held in _runs_held):
            continue
        fd = os.open(PORT_LOCK_DIR / f"run-{first}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        if all(_bindable(port) for port in range(first, first + count)):
            _runs_held.append([fd, first, count])
            return first
        os.close(fd)
    raise RuntimeError(f"no run of {count} free ports in {RUN_RANGE[0]}-{RUN_RANGE[1]} is free of other holders")


UP_ATTEMPTS = 3
PORT_TAKEN = "free these ports"  # what cellctl up says when a port was taken after it was picked


def cluster_yaml(hosts: int = 1, virt_uri: str = "test:///default", heartbeat: float = 1.0,
                 conductors: int = 1, schedulers: int = 1, api_workers: int = 1,
                 volumes: bool = False, same_host_resize: bool = False, postgres: bool = False,
                 dead_after: float | None = None, name: str = "test", sqlite_cell: bool = False,
                 metrics: bool = False, simulated: tuple[int, ...] = (), per_process: int = 0,
                 ctl_metrics: bool = False, reclaim_instance_interval: int = 0,
                 half_made_boot_grace: float = 0, api_metrics: bool = False) -> dict[str, Any]:
    """`volumes`: node1 is a volume host too (file backend; local, tgt and nbd exports on free ports).
    `same_host_resize`: the cell's allow_resize_to_same_host. `postgres`: the API and cell DBs live on the
    cluster's managed PostgreSQL (tools/pgserver.py) instead of SQLite files. `dead_after`: seconds a
    silent host is suspect before it is dead (default: cluster.yaml's). `sqlite_cell`: a second cell, cell2,
    on a SQLite file with the last host (needs hosts >= 2), beside cell1 (which keeps the others).
    `metrics`: the API serves /metrics on a free port (api.metrics; one API worker), node1's compute
    on another (hosts.node1.metrics_port; pair it with volumes=False: one service, one port) and ctl's cell
    services too (as ctl_metrics).
    `simulated`: simulated hosts (tools/simulated_hosts.py) per cell: the first number joins cell1 beside the
    real hosts, each next one a cell of its own (cell2, ...); `per_process` of them to a process.
    `ctl_metrics`: the cell services on ctl serve /metrics (hosts.ctl.metrics_port: a run of free ports).
    `api_metrics`: the API workers alone serve /metrics (api.metrics: a run of free ports, one per worker).
    `reclaim_instance_interval`: seconds a deleted server stays SOFT_DELETED (default 0: off).
    `half_made_boot_grace`: api.half_made_boot_grace (default 0: cluster.yaml's)."""
    router = free_port()
    # conductor and scheduler take router+1 and router+2 unless told: give explicit free ports
    host_names = [f"node{i + 1}" for i in range(hosts)]
    doc: dict[str, Any] = {
        "cluster": name,
        "state_dir": "var",
        "heartbeat_interval": heartbeat,
        "api": {"host": "ctl", "listen": f"127.0.0.1:{free_port()}"},
        "sites": [{"name": "site1", "cells": [{
            "name": "cell1",
            "services": {"router": f"ctl:{router}", "conductor": _scaled(conductors),
                         "scheduler": _scaled(schedulers), "network": f"ctl:{free_port()}"},
            "hosts": list(host_names),
        }]}],
        "hosts": {"ctl": {"address": "127.0.0.1", "via": "local"}},
    }
    if api_workers > 1:
        doc["api"]["workers"] = api_workers
    if metrics or api_metrics:  # worker api-N serves on this port + N - 1
        doc["api"]["metrics"] = f"127.0.0.1:{free_port_run(api_workers)}"
    if dead_after is not None:
        doc["dead_after"] = dead_after
    if reclaim_instance_interval:
        doc["reclaim_instance_interval"] = reclaim_instance_interval
    if half_made_boot_grace:
        doc["api"]["half_made_boot_grace"] = half_made_boot_grace
    if same_host_resize:
        doc["sites"][0]["cells"][0]["allow_resize_to_same_host"] = True
    if postgres:
        doc["api"]["db"] = {"engine": "postgresql", "managed": True}
        doc["sites"][0]["cells"][0]["db"] = {"engine": "postgresql", "managed": True}
    if sqlite_cell:
        doc["sites"][0]["cells"][0]["hosts"] = host_names[:-1]
        doc["sites"][0]["cells"].append({
            "name": "cell2", "hosts": host_names[-1:],
            "services": {"router": f"ctl:{free_port()}", "conductor": f"ctl:{free_port()}",
                         "scheduler": f"ctl:{free_port()}", "network": f"ctl:{free_port()}"}})
    _add_simulated(doc, simulated, per_process)
    if ctl_metrics or metrics:
        doc["hosts"]["ctl"]["metrics_port"] = free_port_run(4 * len(doc["sites"][0]["cells"]))
    for host in host_names:
        doc["hosts"][host] = {"address": "127.0.0.1", "via": "local", "roles": ["compute"],
                              "virt": {"uri": virt_uri}, "rpc_port": free_port()}
    if metrics:  # node1's services (its compute) serve /metrics too (ctl's: above)
        doc["hosts"]["node1"]["metrics_port"] = free_port()
    if volumes:
        doc["hosts"]["node1"]["roles"].append("volume")
        doc["hosts"]["node1"]["volume"] = {"capacity_gb": 20, "port": free_port(), "iscsi_port": free_port(),
                                           "nbd_port": free_port()}
    return doc


def _add_simulated(doc: dict[str, Any], counts: tuple[int, ...], per_process: int) -> None:
    cells = doc["sites"][0]["cells"]
    for i, count in enumerate(counts):  # a run of ports per cell: 3 cells x 1,000 is more than one run holds
        block: dict[str, Any] = {"simulated": count, "rpc_port": free_port_run(count)}
        if per_process:
            block["per_process"] = per_process
        if i == 0:
            cells[0]["hosts"].append(block)
            continue
        cells.append({"name": f"cell{i + 1}", "hosts": [block], "services": {
            "router": f"ctl:{free_port()}", "conductor": f"ctl:{free_port()}", "scheduler": f"ctl:{free_port()}",
            "network": f"ctl:{free_port()}"}})


def _scaled(n: int) -> str | list[str]:
    """One service process (HOST:PORT), or a list of n (scale-out)."""
    ports = [f"ctl:{free_port()}" for _ in range(n)]
    return ports[0] if n == 1 else ports


@dataclass
class RunningCluster:
    root: Path
    cluster_file: Path

    @property
    def state(self) -> Path:
        return self.root / "var"

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = json.loads((self.state / "cluster.json").read_text())
        return config

    @property
    def endpoint(self) -> str:
        return str(self.config["api"]["public_url"])

    def credentials(self, who: str = "demo") -> dict[str, str]:
        secrets = self.config["secrets"]
        return {"auth_url": self.endpoint + "/identity/v3", "username": who, "password": secrets[f"{who}_password"],
                "project_name": who, "user_domain_name": "Default", "project_domain_name": "Default"}

    def token(self, who: str = "demo") -> str:
        """A project-scoped Keystone token for one of the bootstrap users."""
        import requests  # test-only dependency (openstacksdk brings it): keep tools' imports lean
        creds = self.credentials(who)
        body: dict[str, Any] = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": creds["username"], "domain": {"name": "Default"}, "password": creds["password"]}}},
            "scope": {"project": {"name": creds["project_name"], "domain": {"name": "Default"}}}}}
        resp = requests.post(f"{self.endpoint}/identity/v3/auth/tokens", json=body, timeout=10)
        assert resp.status_code == 201, resp.text
        return str(resp.headers["X-Subject-Token"])

    def cellctl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tools.cellctl", *args], capture_output=True, text=True,
                              timeout=timeout, check=check, cwd=self.root, env=without_cloud_variables(os.environ))

    def cli(self, *args: str, who: str = "demo", timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the unmodified `openstack` CLI against this cluster, in an environment built from scratch:
        only this cluster's clouds.yaml says where to go."""
        env = cli_env(self.root, OS_CLIENT_CONFIG_FILE=str(self.state / "clouds.yaml"))
        cloud = "cellcloud" if who == "demo" else "cellcloud-admin"
        return openstack_cli.run(["--os-cloud", cloud, *args], env, timeout)

    def ok(self, *args: str, who: str = "demo") -> Any:
        """Run the CLI, which must succeed; its output parsed when asked for with -f json."""
        done = self.cli(*args, who=who)
        assert done.returncode == 0, f"openstack {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout) if "json" in args else done.stdout

    def pid(self, service_id: str) -> int:
        return int((self.state / "run" / (service_id.replace("/", "_") + ".pid")).read_text())

    def signal(self, service_id: str, sig: signal.Signals) -> int:
        pid = self.pid(service_id)
        os.kill(pid, sig)
        return pid

    def log(self, service_id: str) -> str:
        path = self.state / "log" / (service_id.replace("/", "_") + ".log")
        return path.read_text() if path.exists() else ""

    def settled(self, sid: str, status: str, timeout: float = 180) -> Any:
        """Wait until the server (shown as admin) has `status` and no task, and return it; on timeout, fail
        saying where it stopped (status, task, fault) and what the services complained of."""
        seen: dict[str, Any] = {}

        def there() -> Any:
            seen.update(self.ok("server", "show", sid, "-f", "json", who="admin"))
            return seen["status"] == status and seen["OS-EXT-STS:task_state"] is None and dict(seen)
        try:
            return wait_for(f"{sid} {status}", there, timeout=timeout, interval=1)
        except AssertionError as e:
            raise AssertionError(f"{e}: last {seen.get('status')}/{seen.get('OS-EXT-STS:task_state')}, fault "
                                 f"{seen.get('fault')}\n{self.troubles()}") from None

    def troubles(self, last: int = 40) -> str:
        """The last `last` WARNING and ERROR lines of every service's log, for a failing test's message."""
        lines = [f"{path.stem}: {line}" for path in sorted((self.state / "log").glob("*.log"))
                 for line in path.read_text(errors="replace").splitlines() if " WARNING " in line or " ERROR " in line]
        return "\n".join(lines[-last:])


@contextmanager
def running_cluster(root: Path, hosts: int = 1, virt_uri: str = "test:///default",
                    heartbeat: float = 1.0, dead_after: float | None = None, name: str = "test",
                    up_timeout: float = 60, **scale: Any) -> Iterator[RunningCluster]:
    """`scale`: conductors, schedulers, api_workers (processes of each; default 1); volumes=1 (True) makes
    node1 a volume host too; same_host_resize=1 (True) lets a resize stay on its host; simulated and
    per_process (cluster_yaml). `up_timeout`: seconds `cellctl up` waits for every service."""
    root.mkdir(parents=True, exist_ok=True)
    cluster_file = root / "cluster.yaml"
    cluster = RunningCluster(root, cluster_file)
    for _attempt in range(UP_ATTEMPTS):
        cluster_file.write_text(yaml.safe_dump(cluster_yaml(hosts, virt_uri, heartbeat, dead_after=dead_after,
                                                            name=name, **scale), sort_keys=False))
        up = cluster.cellctl("up", str(cluster_file), "--timeout", str(up_timeout), check=False,
                             timeout=up_timeout + 120)
        if PORT_TAKEN not in up.stderr:  # cellctl up started nothing when a port was taken: fresh ports
            break
    try:
        if up.returncode != 0:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((cluster.state / "log").glob("*.log"))) \
                if (cluster.state / "log").exists() else ""
            raise RuntimeError(f"cellctl up failed ({up.returncode}):\n{up.stdout}\n{up.stderr}\n{logs}")
        yield cluster
    finally:
        cluster.cellctl("down", str(cluster_file), check=False)
        _wait_gone(cluster)
        reap_guests(cluster.state)


@contextmanager
def running_netns_cluster(root: Path, name: str, hosts: tuple[str, ...] = ("n1", "n2"),
                          virt_uri: str = "qemu:///embed", timeout: float = 150,
                          volume_host: str | None = None, external_cidr: str | None = None
                          ) -> Iterator[RunningCluster]:
    """A cluster whose controller and compute hosts are netns hosts (tools/netns.py, made by
    `cellctl up`) on a 10.N.0.0/16 no other run on this machine uses: the network agents plumb
    for real (bridges, VXLAN, dnsmasq, nftables, metadata) without touching the root namespace.
    `name` names the namespaces (cc-NAME-HOST): keep it short and unique to the run. `volume_host`:
    that host runs a volume worker too (file backend; local, tgt and nbd exports; tgt on an iSCSI port and
    control port of the run's own, nbd on the default port inside the host's netns).
    `external_cidr`: cluster.yaml's external_network `public` with that CIDR: ctl is the network host and
    the namespace cc-NAME-outside stands for the internet on it (tools/netns.py)."""
    from tools.netns import unused_range
    prefix = unused_range().removesuffix("0.0/16")  # "10.N.": site1 is 10.N.1.0/24

    # tgtd's control socket is a unix socket shared by every netns: an iSCSI port (tgt's control port) of the
    # run's own, or two runs with a volume host drive (and stop) one tgtd
    iscsi_port = free_port()

    def roles(host: str) -> str:
        return f"[compute, volume], volume: {{capacity_gb: 20, iscsi_port: {iscsi_port}}}" if host == volume_host \
            else "[compute]"
    computes = "\n".join(
        f'  {h}: {{address: {prefix}1.{21 + i}, via: netns, site_net: site1, roles: {roles(h)}, rpc_port: 5700,\n'
        f'        virt: {{uri: "{virt_uri}"}}}}' for i, h in enumerate(hosts))
    root.mkdir(parents=True, exist_ok=True)
    (root / "cluster.yaml").write_text(f"""\
cluster: {name}
state_dir: var
heartbeat_interval: 1.0
api: {{host: ctl, listen: "{prefix}1.10:{free_port()}"}}
sites:
  - name: site1
    cells:
      - name: cell1
        services: {{router: "ctl:5610"}}
        hosts: [{", ".join(hosts)}]
hosts:
  ctl: {{address: {prefix}1.10, via: netns, site_net: site1}}
{computes}
netns: {{range: {prefix}0.0/16}}
security: {{curve: false}}
""" + (f"external_network: {{name: public, cidr: {external_cidr}, cell: cell1}}\n" if external_cidr else ""))
    cluster = RunningCluster(root, root / "cluster.yaml")
    up = cluster.cellctl("up", str(cluster.cluster_file), "--timeout", str(int(timeout)), check=False,
                         timeout=2 * timeout)
    try:
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"
        yield cluster
    finally:
        cluster.cellctl("down", str(cluster.cluster_file), check=False, timeout=180)
        reap_guests(cluster.state)


def reap_guests(state: Path) -> int:
    """What `cellctl down` should have stopped (tools/leftovers.py: guests, dnsmasq, tgtd, ...), killed
    so a throw-away cluster leaves nothing behind even when down failed; how many there were."""
    from tools import leftovers

    found = leftovers.find(state)
    leftovers.stop(found, grace=0.0)
    return len(found)


def _wait_gone(cluster: RunningCluster, timeout: float = 15) -> None:
    pidfile = cluster.state / "run" / "supervisor.pid"
    deadline = time.monotonic() + timeout
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
