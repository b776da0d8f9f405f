"""`via: ssh` hosts: a real remote machine runs its own services under its own supervisor.

cluster.yaml (every key but address and via is optional):

    node3:
      address: 192.0.2.7           # peers connect here over ZeroMQ; ssh connects here too
      via: ssh
      user: cellcloud              # default: ssh's own choice (the user running cellctl, ~/.ssh/config)
      port: 22                     # the remote sshd's port
      identity_file: ~/.ssh/id_ed25519   # default: ssh's own keys and agent; relative = to the cluster file
      host_key: "ssh-ed25519 AAAA..."     # pins the remote's host key (StrictHostKeyChecking yes); without
                                   # it the first key seen is recorded (accept-new) and a changed key refused
      remote_dir: /opt/cellcloud   # the cellcloud checkout on the remote, with its .venv made by
                                   # `make deps`; default: the same path as this checkout
      remote_state: /var/lib/cc    # the host's state dir there; default <remote_dir>/var/ssh/<cluster>/<host>

What `cellctl up` does for each ssh host (in parallel, after the local supervisor started):
  1. `ssh true`-like probe: reachable, host key matches, login works, REMOTE_DIR/.venv/bin/python exists;
  2. mkdir REMOTE_STATE/{keys,log,run} (0700), then `scp -p` the host's slice of cluster.json
     (state_dir = REMOTE_STATE, of the secrets only the service password its compute needs to
     fetch images, cell DB URLs only for cells whose DB services run there) and the CURVE
     secret keys of that host's own services, nothing else, all 0600;
  3. `ssh ... python -m tools.remote agent-start`: starts `tools.supervisor --host NAME` there,
     detached, which runs exactly that host's services (logs in REMOTE_STATE/log/).
`cellctl down` runs `agent-stop` over ssh (supervisor SIGTERM, then SIGKILL, then stray
services), before it stops the local supervisor. `cellctl status` needs no ssh: the remote
services heartbeat to their cells' routers over ZeroMQ like any other.

Every ssh/scp call: OpenSSH client, BatchMode (never a prompt), ConnectTimeout, and
StrictHostKeyChecking against a known_hosts file the tool manages (<state>/ssh/known_hosts,
the system and user known_hosts files are not consulted); a command timeout bounds it all.
An ssh host may run compute and volume workers and cell routers (no database); the API,
and conductors, schedulers and network controllers on a SQLite DB, need this machine's
files and are refused on an ssh host (a cell on postgresql may run them there).
"""
from __future__ import annotations

import argparse
import base64
import binascii
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn, Protocol

from cells.config import ClusterConfig, HostSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SSH_KEYS = ("user", "port", "identity_file", "host_key", "remote_dir", "remote_state")
DB_KINDS = ("conductor", "scheduler", "network")  # services that open their cell's database
CONNECT_TIMEOUT = 10  # seconds for the TCP connect + ssh handshake
COMMAND_TIMEOUT = 90.0  # seconds for a whole ssh/scp call (agent-stop waits for the services)
PARALLEL = 8
SSH = "ssh"
SCP = "scp"
NO_INSTALL = 3  # agent exit code: no cellcloud at remote_dir


class RemoteError(Exception):
    """An ssh host could not be reached, set up, started or stopped: names the host and why."""


# --- cluster.yaml: the ssh keys of a host (called by tools/clusterfile.py) ------------------

class _Fields(Protocol):
    base_dir: Path

    def fail(self, path: str, message: str) -> NoReturn: ...

    def string(self, value: Any, path: str, expected: str = ...) -> str: ...

    def port(self, value: Any, path: str) -> int: ...


def parse_options(p: _Fields, m: dict[str, Any], path: str) -> dict[str, Any]:
    """hosts.<name>: the ssh keys, validated (only a `via: ssh` host takes them)."""
    via = m.get("via", "local")
    if via != "ssh":
        for key in SSH_KEYS:
            if key in m:
                p.fail(f"{path}.{key}", f"only a host with via: ssh takes {key} (via is {via})")
        return {}
    out: dict[str, Any] = {"port": p.port(m["port"], f"{path}.port") if "port" in m else 22}
    if "user" in m:
        user = p.string(m["user"], f"{path}.user", "a user name")
        if not user.replace("-", "").replace("_", "").replace(".", "").isalnum():
            p.fail(f"{path}.user", f"expected a user name of letters, digits, '.', '-' and '_', got {user!r}")
        out["user"] = user
    if "identity_file" in m:
        raw = p.string(m["identity_file"], f"{path}.identity_file", "a path to an ssh private key")
        out["identity_file"] = str((p.base_dir / Path(raw).expanduser()).resolve())
    if "host_key" in m:
        out["host_key"] = _host_key(p, m["host_key"], f"{path}.host_key")
    for key in ("remote_dir", "remote_state"):
        if key in m:
            text = p.string(m[key], f"{path}.{key}", "an absolute path on the remote machine")
            if not text.startswith("/") or "\n" in text:
                p.fail(f"{path}.{key}", f"expected an absolute path on the remote machine, got {text!r}")
            out[key] = text.rstrip("/") or "/"
    return out


def _host_key(p: _Fields, raw: Any, path: str) -> str:
    expected = "a public host key 'TYPE BASE64' as in ssh_host_*_key.pub (e.g. ssh-ed25519 AAAA...)"
    text = p.string(raw, path, expected)
    fields = text.split()
    if len(fields) < 2 or not fields[0].startswith(("ssh-", "ecdsa-", "sk-")):
        p.fail(path, f"expected {expected}, got {text!r}")
    try:
        base64.b64decode(fields[1], validate=True)
    except (binascii.Error, ValueError):
        p.fail(path, f"expected {expected}; the key part is not base64, got {fields[1]!r}")
    return f"{fields[0]} {fields[1]}"  # the comment is not part of the key


def placement_problem(cluster: ClusterConfig) -> tuple[str, str] | None:
    """(field path, message) when a service on an ssh host needs files of this machine."""
    ssh_hosts = {h.name for h in cluster.hosts if h.via == "ssh"}
    for s in cluster.services:
        if s.host not in ssh_hosts:
            continue
        if s.kind == "api":
            return "api.host", (f"the API cannot run on ssh host {s.host!r} (its database and image store "
                                "are in this machine's state dir): use a local or netns host")
        local_db = cluster.cell(s.cell).db.startswith("sqlite") or _on_managed_postgres(cluster, s.cell) \
            if s.cell else False
        if s.kind in DB_KINDS and s.cell and local_db:
            why = (f"ssh host {s.host!r} would run {s.id}, which opens the database of cell {s.cell} on this machine "
                   "(a SQLite file or the managed PostgreSQL's unix socket): run it on a local or netns host, or "
                   "give the cell the URL of a PostgreSQL server it can reach")
            return f"hosts.{s.host}.via", why
    return None


def _on_managed_postgres(cluster: ClusterConfig, cell: str) -> bool:
    directory = cluster.managed_postgres.get("dir")
    return bool(directory) and f"host={directory}" in cluster.cell(cell).db


# --- what an ssh host is ---------------------------------------------------------------------

@dataclass(frozen=True)
class SshHost:
    name: str
    address: str
    port: int
    user: str | None
    identity_file: str | None
    host_key: str | None
    remote_dir: str
    remote_state: str
    known_hosts: Path  # managed by this tool, on this machine

    @classmethod
    def of(cls, cluster: ClusterConfig, host: HostSpec) -> SshHost:
        o = host.ssh
        remote_dir = str(o.get("remote_dir") or PROJECT_ROOT)
        state = str(o.get("remote_state") or f"{remote_dir}/var/ssh/{cluster.name}/{host.name}")
        return cls(host.name, host.address, int(o.get("port", 22)), o.get("user"), o.get("identity_file"),
                   o.get("host_key"), remote_dir, state, Path(cluster.state_dir) / "ssh" / "known_hosts")

    @property
    def destination(self) -> str:
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.user}@{address}" if self.user else address

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH names this host in known_hosts."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def options(self) -> list[str]:
        strict = "yes" if self.host_key else "accept-new"  # pinned, or trust on first use then pinned
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
                "-o", f"StrictHostKeyChecking={strict}", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "HashKnownHosts=no", "-o", "LogLevel=ERROR",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if self.identity_file:
            opts += ["-o", "IdentitiesOnly=yes", "-i", self.identity_file]
        return opts

    def ssh_argv(self, command: str) -> list[str]:
        return [SSH, "-T", "-p", str(self.port), *self.options(), self.destination, command]

    def scp_argv(self, files: Sequence[Path], remote_dir: str) -> list[str]:
        return [SCP, "-q", "-p", "-P", str(self.port), *self.options(), *map(str, files),
                f"{self.destination}:{remote_dir}/"]

    def python(self, *args: str) -> str:
        """A shell command running `python -m tools.remote ARGS` from the remote checkout."""
        d = shlex.quote(self.remote_dir)
        missing = shlex.quote(f"no cellcloud at {self.remote_dir} on this host (no .venv/bin/python)")
        return (f"cd {d} 2>/dev/null && test -x .venv/bin/python || {{ echo {missing} >&2; exit {NO_INSTALL}; }}; "
                f"exec .venv/bin/python -m tools.remote {' '.join(map(shlex.quote, args))}")


def ssh_hosts(cluster: ClusterConfig) -> list[SshHost]:
    return [SshHost.of(cluster, h) for h in cluster.hosts if h.via == "ssh"]


def host_config(cluster: ClusterConfig, host: SshHost) -> ClusterConfig:
    """The host's slice of the cluster: its own state dir, no operator passwords, no foreign DB URLs."""
    db_cells = {s.cell for s in cluster.services if s.host == host.name and s.kind in DB_KINDS}
    cells = tuple(c if c.path in db_cells else replace(c, db="") for c in cluster.cells)
    secrets = {k: v for k, v in cluster.secrets.items() if k == "image_reader_password"}  # fetches images only
    return replace(cluster, state_dir=host.remote_state, secrets=secrets, cells=cells)


def own_keys(cluster: ClusterConfig, host: SshHost) -> list[Path]:
    """The CURVE secret keys of the host's own services (never another's, never the operator's)."""
    if not cluster.curve:
        return []
    from cells.rpc import security

    return [security.key_path(cluster.state_dir, s.id) for s in cluster.services if s.host == host.name]


def write_known_host(host: SshHost) -> None:
    """Pin `host_key` in the managed known_hosts: this host's old lines go, other hosts' stay."""
    path = host.known_hosts
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not host.host_key:
        return
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if line.split(" ", 1)[0] != host.known_hosts_name]
    kept.append(f"{host.known_hosts_name} {host.host_key}")
    from tools.private_files import write_private

    write_private(path, "\n".join(kept) + "\n")


# --- running ssh and scp ---------------------------------------------------------------------

Runner = Callable[[list[str], float], subprocess.CompletedProcess[str]]


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          check=False)


def explain(host: SshHost, proc: subprocess.CompletedProcess[str], doing: str) -> str:
    """An operator's reading of a failed ssh/scp call."""
    said = proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
    where = f"{host.name} ({host.destination} port {host.port})"
    if proc.returncode == NO_INSTALL and "no cellcloud at" in said:
        return (f"{where}: {said}: install cellcloud there (the same checkout, then `make deps`) or set "
                f"hosts.{host.name}.remote_dir")
    if "Host key verification failed" in said or "REMOTE HOST IDENTIFICATION HAS CHANGED" in said:
        source = f"the pinned hosts.{host.name}.host_key" if host.host_key else f"the key recorded in {host.known_hosts}"
        return (f"{where}: {doing}: the host key does not match {source}; if the machine really changed, "
                "fix host_key (or remove its line from the known_hosts file) and retry")
    if "Permission denied" in said:
        return (f"{where}: {doing}: ssh login refused ({said}): check user and identity_file, and that the key "
                "is in the remote authorized_keys")
    if proc.returncode == 255:
        return f"{where}: {doing}: ssh failed: {said}"
    return f"{where}: {doing}: the remote command failed: {said}"


class Remote:
    """ssh/scp to one host; `runner` is the process boundary (tests may record argv)."""

    def __init__(self, host: SshHost, runner: Runner = _run) -> None:
        self.host = host
        self.runner = runner

    def ssh(self, command: str, doing: str, timeout: float = COMMAND_TIMEOUT) -> str:
        argv = self.host.ssh_argv(command)
        try:
            proc = self.runner(argv, timeout)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.host.name}: {doing}: no answer in {timeout:.0f} s") from None
        except OSError as exc:
            raise RemoteError(f"{self.host.name}: cannot run {argv[0]}: {exc} (install openssh-client)") from None
        if proc.returncode != 0:
            raise RemoteError(explain(self.host, proc, doing))
        return proc.stdout

    def copy(self, files: Sequence[Path], remote_dir: str, doing: str) -> None:
        argv = self.host.scp_argv(files, remote_dir)
        try:
            proc = self.runner(argv, COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.host.name}: {doing}: no answer in {COMMAND_TIMEOUT:.0f} s") from None
        except OSError as exc:
            raise RemoteError(f"{self.host.name}: cannot run {argv[0]}: {exc} (install openssh-client)") from None
        if proc.returncode != 0:
            raise RemoteError(explain(self.host, proc, doing))

    def check(self) -> None:
        """Reachable, the host key matches, the login works and cellcloud is installed there."""
        write_known_host(self.host)
        self.ssh(self.host.python("agent-check"), "checking the host")

    def push(self, cluster: ClusterConfig) -> None:
        """The host's cluster.json and its own services' secret keys, into the remote state dir (0600)."""
        state = shlex.quote(self.host.remote_state)
        self.ssh(f"umask 077 && mkdir -p {state}/keys {state}/log {state}/run && chmod 700 {state} {state}/keys",
                 "making the remote state dir")
        with tempfile.TemporaryDirectory(prefix="cellcloud-ssh-") as tmp:
            staged = Path(tmp) / "cluster.json"
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(host_config(cluster, self.host).to_json() + "\n")
            self.copy([staged], self.host.remote_state, "copying cluster.json")
        keys = own_keys(cluster, self.host)
        missing = [str(k) for k in keys if not k.exists()]
        if missing:
            raise RemoteError(f"{self.host.name}: CURVE keys not made yet: {', '.join(missing)}")
        if keys:
            self.copy(keys, f"{self.host.remote_state}/keys", "copying the CURVE keys")

    def start(self) -> str:
        cluster_json = f"{self.host.remote_state}/cluster.json"
        return self.ssh(self.host.python("agent-start", "--cluster", cluster_json, "--host", self.host.name),
                        "starting its supervisor").strip()

    def stop(self) -> str:
        return self.ssh(self.host.python("agent-stop", "--state", self.host.remote_state),
                        "stopping its supervisor").strip()


def _each(hosts: list[SshHost], work: Callable[[SshHost], str]) -> list[tuple[SshHost, str, bool]]:
    """Run `work` on every host in parallel: (host, what it said or why it failed, ok)."""
    def one(host: SshHost) -> tuple[SshHost, str, bool]:
        try:
            return host, work(host), True
        except RemoteError as exc:
            return host, str(exc), False

    if not hosts:
        return []
    with ThreadPoolExecutor(min(PARALLEL, len(hosts))) as pool:
        return list(pool.map(one, hosts))


def up(cluster: ClusterConfig, say: Callable[[str], None], err: Callable[[str], None]) -> bool:
    """cellctl up: check, push and start every ssh host; False if any failed (each failure reported)."""
    def bring_up(host: SshHost) -> str:
        remote = Remote(host)
        remote.check()
        remote.push(cluster)
        return remote.start()

    ok = True
    for host, said, good in _each(ssh_hosts(cluster), bring_up):
        if good:
            say(f"ssh host {host.name} ({host.destination}): {said}; state in {host.remote_state}")
        else:
            ok = False
            err(said)
    return ok


def down(cluster: ClusterConfig, say: Callable[[str], None], err: Callable[[str], None]) -> bool:
    """cellctl down: stop every ssh host's supervisor; False if one could not be reached."""
    def stop(host: SshHost) -> str:
        write_known_host(host)
        return Remote(host).stop()

    ok = True
    for host, said, good in _each(ssh_hosts(cluster), stop):
        if good:
            say(f"ssh host {host.name}: {said}")
        else:
            ok = False
            err(f"{said}; its services may still run there")
    return ok


# --- the remote side: run over ssh as `python -m tools.remote agent-...` ---------------------

def agent_start(cluster_json: Path, host: str) -> int:
    """Start this host's supervisor detached (its own session), unless one runs for this state dir."""
    from tools.supervisor import read_pid, running_supervisor

    state = cluster_json.parent
    pid = running_supervisor(state)
    if pid is not None:
        print(f"supervisor already running (pid {pid})")
        return 0
    for sub in ("log", "run"):
        (state / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    pidfile = state / "run" / "supervisor.pid"
    pidfile.unlink(missing_ok=True)  # a stale one from a supervisor killed hard
    with open(state / "log" / "supervisor.log", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.supervisor", "--cluster", str(cluster_json), "--host", host],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
            start_new_session=True, close_fds=True)
    deadline = time.monotonic() + 10.0
    while read_pid(pidfile) != proc.pid:  # it writes its pid file once its services are being started
        if proc.poll() is not None:
            print(f"the supervisor exited with code {proc.returncode}; see {state / 'log' / 'supervisor.log'}",
                  file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    print(f"started the supervisor (pid {proc.pid})")
    return 0


def agent_stop(state: Path) -> int:
    """Stop this host's supervisor (SIGTERM, SIGKILL after the wait) and any stray service."""
    from tools.cellctl import STOP_TIMEOUT, _stop_strays, _wait_gone
    from tools.supervisor import running_supervisor

    pid = running_supervisor(state)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, "tools.supervisor", STOP_TIMEOUT):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, "tools.supervisor", 5.0)
    stray = _stop_strays(state)
    from tools import leftovers  # dnsmasq, tgtd, qemu-storage-daemon, guests the services left running

    helpers = leftovers.find(state)
    left = leftovers.stop(helpers)
    said = f"stopped the supervisor (pid {pid})" if pid is not None else "no supervisor running"
    print(said + (f", {stray} stray service processes killed" if stray else "")
          + (f", {len(helpers) - len(left)} helper processes stopped" if helpers else ""))
    for p in left:
        print(f"still running after SIGKILL: {p}", file=sys.stderr)
    return 1 if left else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.remote",
                                     description="the remote side of a via: ssh host (cellctl runs it over ssh)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("agent-check", help="exit 0: this checkout can run services")
    start = sub.add_parser("agent-start", help="start the supervisor of this host's services, detached")
    start.add_argument("--cluster", required=True, help="REMOTE_STATE/cluster.json")
    start.add_argument("--host", required=True, help="the host's name in the cluster")
    stop = sub.add_parser("agent-stop", help="stop the supervisor and its services")
    stop.add_argument("--state", required=True, help="REMOTE_STATE")
    args = parser.parse_args(argv)
    if args.command == "agent-check":
        import tools.supervisor  # noqa: F401 - the code the supervisor needs imports here

        print(f"cellcloud at {PROJECT_ROOT}, python {sys.version.split()[0]}")
        return 0
    if args.command == "agent-start":
        return agent_start(Path(args.cluster).resolve(), args.host)
    return agent_stop(Path(args.state).resolve())


if __name__ == "__main__":
    sys.exit(main())
