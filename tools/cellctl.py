"""cellctl: bring a Cellcloud cluster up, take it down, show its health.

    cellctl up     [FILE] [--state DIR] [--timeout 60]
    cellctl down   [FILE] [--state DIR]
    cellctl status [FILE] [--state DIR] [--json] [--hosts|-v]
    cellctl host down|up HOST [FILE] [--state DIR]
    cellctl image build-tiny [FILE] [--state DIR] [--force]
    cellctl db upgrade|status [FILE] [--state DIR] [--json]

FILE defaults to ./cluster.yaml. Exit codes: 0 healthy / done, 1 something is
down (or did not come up), 2 the cluster file is invalid (nothing started).
Imports stay lean here: zmq, SQLAlchemy, the API and the cluster file's resolver
(tools/clusterfile.py) load only in the commands that need them; `status` of a running
cluster reads the file's state_dir alone, then the cluster.json it started with.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tools.clusterfile_fields import ClusterFileError, read_yaml, state_dir_of
from tools.private_files import write_private
from tools.supervisor import PROJECT_ROOT, pid_alive, read_pid, running_supervisor

if TYPE_CHECKING:
    from cells.config import ClusterConfig

UP_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0  # the supervisor's own stop is bounded by ranks x grace (4 x 5 s)
CLOUD_DEMO, CLOUD_ADMIN = "cellcloud", "cellcloud-admin"


def _err(message: str) -> None:
    print(f"cellctl: {message}", file=sys.stderr)


def _state_of(args: argparse.Namespace) -> Path:
    """--state wins; else the file's state_dir, read alone: the rest of the file is resolved only where no
    cluster runs from that state (down/status work even if the file broke since, and a 3,000-host file
    costs `status` no resolution of its hosts)."""
    if args.state:
        return Path(args.state).resolve()
    return state_dir_of(Path(args.file), read_yaml(Path(args.file), args.file))


def _running_config(args: argparse.Namespace) -> ClusterConfig:
    """The cluster as it was started (<state>/cluster.json), else as the file describes it."""
    from cells.config import ClusterConfig

    state = _state_of(args)
    if (state / "cluster.json").exists():
        return ClusterConfig.load(state / "cluster.json")
    from tools import clusterfile
    return clusterfile.load(args.file, state)


# --- up -----------------------------------------------------------------------------

def cmd_up(args: argparse.Namespace) -> int:
    from tools import clusterfile

    cluster = clusterfile.resolve(args.file, args.state)  # validates first: a bad file starts nothing
    state = Path(cluster.state_dir)
    path = clusterfile.cluster_json(cluster)
    pid = running_supervisor(state)
    if pid is not None and path.exists() and path.read_text() != cluster.to_json() + "\n":
        _err(f"the cluster in {state} runs (supervisor pid {pid}) with another configuration: "
             f"run `cellctl down {args.file}` first to apply changes")
        return 1
    busy = ports_in_use(cluster) if pid is None else []
    if busy:
        for line in busy:
            _err(line)
        _err("free these ports or change them in the cluster file; nothing was started")
        return 1
    write_private(path, cluster.to_json() + "\n")
    for sub in ("log", "run", "images", "cells"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    try:
        start_managed_postgres(cluster)
        from tools import dbctl

        behind = dbctl.not_current(cluster, args.file)
        if behind:
            for line in behind:
                _err(line)
            _err("no service was started")
            return 1
        _create_databases(cluster)
    except Exception as exc:  # noqa: BLE001 - a missing module or a DB error: report it, start nothing
        _err(f"cannot create the databases: {type(exc).__name__}: {exc}")
        return 1
    files = write_credentials(cluster)
    if pid is None and not _make_netns(cluster):
        return 1
    if pid is None:
        proc = start_supervisor(path)
        print(f"started the supervisor (pid {proc.pid}); logs in {state / 'log'}")
    else:
        proc = None
        print(f"supervisor already running (pid {pid})")
    from tools import remote  # via: ssh hosts: copy their slice of the state, start their own supervisor

    if not remote.up(cluster, print, _err):
        _err("the other services keep running; fix the ssh host and run `cellctl up` again, or `cellctl down`")
        return 1
    if not _wait_healthy(cluster, args.timeout, proc):
        return 1
    print(f"cluster {cluster.name} is up: {len(cluster.services)} services alive")
    if _runs_real_guests(cluster):  # e.g. examples/qemu.yaml: a bootable image to try them with
        _register_tiny(cluster, force=False, quiet_failure=True)
    print(f"API endpoint: {cluster.api.public_url}")
    if cluster.api.metrics_listen:  # one scrape target per API worker (cells/metrics.py)
        host, _, port = cluster.api.metrics_listen.rpartition(":")
        workers = sum(1 for s in cluster.services if s.kind == "api")
        print("metrics:      " + " ".join(f"http://{host}:{int(port) + n}/metrics" for n in range(workers)))
    for svc in cluster.services:  # hosts.<host>.metrics_port
        if svc.options.get("metrics"):
            print(f"metrics:      http://{svc.options['metrics']}/metrics  ({svc.id})")
    print(f"credentials:  source {files['openrc']}   (admin: {files['openrc.admin']})")
    print(f"clouds.yaml:  {files['clouds.yaml']}   (clouds: {CLOUD_DEMO}, {CLOUD_ADMIN})")
    return 0


def start_managed_postgres(cluster: ClusterConfig) -> None:
    """The cluster's private PostgreSQL (cluster.yaml `db: {engine: postgresql, managed: true}`): initdb on
    first use, started before any service, each managed database created."""
    if not cluster.managed_postgres:
        return
    from tools import pgserver

    server = pgserver.PrivateServer(Path(cluster.managed_postgres["dir"]), int(cluster.managed_postgres["port"]))
    if not server.running():
        print(f"starting the cluster's PostgreSQL in {server.directory}")
    server.start()
    for name in cluster.managed_postgres["databases"]:
        server.create_database(name)


def _stop_managed_postgres(state: Path) -> None:
    """Stop the private PostgreSQL after the services that used it (its data stays for the next up)."""
    from tools import pgserver

    directory = state / "postgres"
    if not (directory / "data" / "PG_VERSION").exists():
        return
    try:
        from cells.config import ClusterConfig

        port = int(ClusterConfig.load(state / "cluster.json").managed_postgres.get("port") or 5432)
    except (OSError, ValueError, KeyError):
        port = 5432
    server = pgserver.PrivateServer(directory, port)
    if server.running():
        server.stop()
        print(f"stopped the cluster's PostgreSQL ({directory})")


def _create_databases(cluster: ClusterConfig) -> None:
    import asyncio

    for url in [c.db for c in cluster.cells] + [cluster.api.db]:
        prefix = "sqlite+aiosqlite:///"
        if url.startswith(prefix):
            Path(url[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)

    async def create() -> None:
        from api import bootstrap
        from api.db import schema as api_schema
        from cells.db import schema as cell_schema

        for cell in cluster.cells:
            await cell_schema.create_schema(cell.db)
        await api_schema.create_schema(cluster.api.db)
        await bootstrap.ensure(cluster)

    asyncio.run(create())


def write_credentials(cluster: ClusterConfig) -> dict[str, Path]:
    """<state>/openrc (demo), openrc.admin and clouds.yaml, all 0600: they hold passwords."""
    import shlex

    import yaml

    state = Path(cluster.state_dir)
    auth_url = f"{cluster.api.public_url}/identity/v3"
    paths: dict[str, Path] = {}
    clouds: dict[str, Any] = {}
    for who, rc, cloud in (("demo", "openrc", CLOUD_DEMO), ("admin", "openrc.admin", CLOUD_ADMIN)):
        password = cluster.secrets[f"{who}_password"]
        env = {
            "OS_AUTH_URL": auth_url, "OS_USERNAME": who, "OS_PASSWORD": password, "OS_PROJECT_NAME": who,
            "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
            "OS_IDENTITY_API_VERSION": "3", "OS_REGION_NAME": cluster.api.region,
            "OS_AUTH_TYPE": "password", "OS_INTERFACE": "public",
        }
        text = f"# Cellcloud cluster {cluster.name}: {who} credentials (written by cellctl up)\n"
        text += "unset OS_CLOUD OS_TOKEN\n"  # they would override these variables in the openstack CLI
        text += "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        paths[rc] = state / rc
        write_private(paths[rc], text)
        clouds[cloud] = {
            "auth": {"auth_url": auth_url, "username": who, "password": password, "project_name": who,
                     "user_domain_name": "Default", "project_domain_name": "Default"},
            "auth_type": "password", "region_name": cluster.api.region,
            "identity_api_version": 3, "interface": "public",
        }
    paths["clouds.yaml"] = state / "clouds.yaml"
    write_private(paths["clouds.yaml"], yaml.safe_dump({"clouds": clouds}, sort_keys=False))
    return paths


def ports_in_use(cluster: ClusterConfig) -> list[str]:
    """Each service's fixed port, tried before starting: a taken port would only show as a crash loop."""
    import socket

    local = {h.name for h in cluster.hosts if h.via == "local"}
    busy = []
    for s in cluster.services:
        if s.host not in local:
            continue
        host, _, port = s.bind.removeprefix("tcp://").rpartition(":")
        host = host.strip("[]")
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the services bind: TIME_WAIT is fine
            try:
                sock.bind((host, int(port)))
            except OSError as exc:
                busy.append(f"{s.id}: cannot bind {s.bind}: {exc.strerror or exc}")
    return busy


def start_supervisor(cluster_json: Path) -> subprocess.Popen[bytes]:
    """Detached: its own session, so it outlives this command and the terminal."""
    log = cluster_json.parent / "log" / "supervisor.log"
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tools.supervisor", "--cluster", str(cluster_json)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
            start_new_session=True, close_fds=True,
        )


def _wait_healthy(cluster: ClusterConfig, timeout: float, proc: subprocess.Popen[bytes] | None) -> bool:
    import asyncio

    from tools import health

    async def wait() -> tuple[bool, health.Health | None, str]:
        prober = health.Prober(cluster)
        deadline = time.monotonic() + timeout
        last: health.Health | None = None
        try:
            while time.monotonic() < deadline:
                if proc is not None and proc.poll() is not None:
                    return False, last, f"the supervisor exited with code {proc.returncode}"
                last = await prober.probe()
                down = last.down(cluster)
                progress.show(len(cluster.services) - len(down), [s.id for s in down])
                if not down:
                    return True, last, ""
                await asyncio.sleep(0.25)
            return False, last, f"not healthy after {timeout:.0f} s"
        finally:
            progress.end()
            prober.close()

    progress = UpProgress(len(cluster.services), sys.stdout)

    print(f"waiting for {len(cluster.services)} services (timeout {timeout:.0f} s) ...")
    ok, last, why = asyncio.run(wait())
    if ok:
        return True
    _err(why)
    for s in cluster.services if last is None else last.down(cluster):
        _err(f"  {s.id:<28} not alive   log: {health.log_path(cluster, s.id)}")
    _err(f"  supervisor log: {Path(cluster.state_dir) / 'log' / 'supervisor.log'}")
    _err("the services keep running (the supervisor restarts crashed ones); `cellctl down` stops them")
    return False


class UpProgress:
    """`alive N/M (waiting for ...)`: on a terminal one line rewritten in place as services come up; else
    (a log, CI) a line each time the count changes, so the output stays readable."""

    def __init__(self, total: int, out: TextIO, columns: int | None = None) -> None:
        self.total, self.out, self.columns = total, out, columns  # columns: the terminal's width by default
        self.tty = out.isatty()
        self.last = -1
        self.width = 0

    def show(self, alive: int, waiting: list[str]) -> None:
        if alive == self.last and not self.tty:
            return
        self.last = alive
        line = f"alive {alive}/{self.total}"
        if waiting:
            names = ", ".join(waiting[:3]) + (f" and {len(waiting) - 3} more" if len(waiting) > 3 else "")
            line += f"  waiting for {names}"
        if self.tty:
            line = line[:(self.columns or shutil.get_terminal_size().columns) - 1]  # never wraps
            self.out.write("\r" + line.ljust(self.width))
            self.width = len(line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def end(self) -> None:
        if self.tty and self.width:
            self.out.write("\n")
            self.out.flush()


class _Version(argparse.Action):
    """--version: the version is looked up only when asked (importlib.metadata costs every command ~10 ms)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"cellctl (cellcloud) {version()}")  # on stdout, as argparse's own version action
        parser.exit()


def version() -> str:
    """This checkout's version: the installed package's, else pyproject.toml's (a plain checkout)."""
    import importlib.metadata
    try:
        return importlib.metadata.version("cellcloud")
    except importlib.metadata.PackageNotFoundError:
        import tomllib
        with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])


def _make_netns(cluster: ClusterConfig) -> bool:
    """The namespaces of the `via: netns` hosts (tools/netns.py), made fresh before anything starts."""
    from tools import netns

    topology = netns.Topology.from_cluster(cluster)
    if not topology.hosts:
        return True
    try:
        topology.create()
    except netns.NetnsError as exc:
        _err(f"cannot create the network namespaces of the netns hosts: {exc}")
        _err("netns hosts need root and iproute2; nothing was started")
        return False
    print(f"made {len(topology.hosts)} netns hosts on {len(topology.sites)} site networks "
          f"({topology.network}, routed from here via {topology.root_link})")
    return True


def _remove_netns(state: Path) -> None:
    from cells.config import ClusterConfig
    from tools import netns

    if not (state / "cluster.json").exists():
        return
    topology = netns.Topology.from_cluster(ClusterConfig.load(state / "cluster.json"))
    if topology.hosts:
        topology.destroy()
        print(f"removed the {len(topology.hosts)} netns hosts and their site networks")


# --- down ---------------------------------------------------------------------------

def _stop_ssh_hosts(state: Path) -> bool:
    """The supervisors of the `via: ssh` hosts (tools/remote.py), stopped over ssh first."""
    from cells.config import ClusterConfig
    from tools import remote

    if not (state / "cluster.json").exists():
        return True
    return remote.down(ClusterConfig.load(state / "cluster.json"), print, _err)


def cmd_down(args: argparse.Namespace) -> int:
    state = _state_of(args)
    remote_ok = _stop_ssh_hosts(state)
    pid = running_supervisor(state)
    if pid is None:
        print(f"no supervisor running for {state}")
    else:
        print(f"stopping the supervisor (pid {pid}) and its services ...")
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, "tools.supervisor", STOP_TIMEOUT):
            _err(f"the supervisor (pid {pid}) did not stop in {STOP_TIMEOUT:.0f} s: SIGKILL")
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, "tools.supervisor", 5.0)
    stray = _stop_strays(state)
    helpers_ok = _stop_helpers(state)
    _stop_managed_postgres(state)
    _remove_netns(state)
    print("stopped" + (f" ({stray} stray service processes killed)" if stray else ""))
    return 0 if remote_ok and helpers_ok else 1


def _stop_helpers(state: Path) -> bool:
    """What the services started and left running on purpose (dnsmasq, tgtd, qemu-storage-daemon, QEMU
    guests: tools/leftovers.py), stopped while the netns hosts still exist to find them by."""
    from tools import leftovers

    found = leftovers.find(state, _namespaces(state))
    if not found:
        return True
    print(f"stopping {len(found)} processes the services left running ...")
    left = leftovers.stop(found)
    for p in left:
        _err(f"still running after SIGKILL: {p}")
    return not left


def _namespaces(state: Path) -> list[str]:
    from cells.config import ClusterConfig
    from tools import netns

    if not (state / "cluster.json").exists():
        return []
    topology = netns.Topology.from_cluster(ClusterConfig.load(state / "cluster.json"))
    return [h.namespace for h in topology.hosts] + ([topology.wan] if topology.hosts else [])


def _wait_gone(pid: int, needle: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid, needle):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _stop_strays(state: Path) -> int:
    """Services left behind by a supervisor that was killed hard: their pid files still name them."""
    run = state / "run"
    count = 0
    for pidfile in sorted(run.glob("*.pid")) if run.exists() else []:
        pid = read_pid(pidfile)
        if pidfile.name != "supervisor.pid" and pid is not None and pid_alive(pid, "tools.serve"):
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, "tools.serve", 5.0):
                os.kill(pid, signal.SIGKILL)
            count += 1
        pidfile.unlink(missing_ok=True)
    return count


# --- status -------------------------------------------------------------------------

def cmd_status(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from tools import health

    cluster = _running_config(args)
    status = health.report(cluster, asyncio.run(health.probe_once(cluster)),
                           running_supervisor(Path(cluster.state_dir)))
    print(json.dumps(status, indent=2) if args.json else health.render(status, hosts=args.hosts))
    return 0 if status["healthy"] else 1


def cmd_logs(args: argparse.Namespace) -> int:
    """`logs --request req-...`: that request's lines from every service's log, oldest first."""
    from tools import logtrail

    if not logtrail.REQUEST_ID.fullmatch(args.request):
        _err(f"not a request id: {args.request!r} (expected req-<uuid>, as in X-OpenStack-Request-ID)")
        return 2
    cluster = _running_config(args)
    lines = logtrail.trail(Path(cluster.state_dir) / "log", args.request)
    for line in lines:
        print(line.render())
    remote = sorted(h.name for h in cluster.hosts if h.via == "ssh")
    if remote:
        _err(f"not read: the logs on ssh hosts {', '.join(remote)} (on those machines)")
    if not lines:
        _err(f"no log line carries {args.request}")
        return 1
    return 0


def cmd_host(args: argparse.Namespace) -> int:
    """`host down HOST`: the operator says the host is dead (its servers may be evacuated, its
    builds go elsewhere, it is fenced); `host up HOST` takes the mark back."""
    import asyncio

    from cells import errors
    from tools import health

    cluster = _running_config(args)

    async def mark() -> dict[str, Any]:
        prober = health.Prober(cluster)
        try:
            return await prober.mark_host(args.host, args.host_command == "down")
        finally:
            prober.close()
    try:
        reply = asyncio.run(mark())
    except KeyError as exc:
        _err(str(exc.args[0]))
        return 2
    except errors.CellcloudError as exc:
        _err(f"host {args.host}: {exc.message}")
        return 1
    print(f"host {reply['host']} {reply['state']}")
    return 0


# --- image -----------------------------------------------------------------------------

def _runs_real_guests(cluster: ClusterConfig) -> bool:
    return any(s.kind == "compute" and not str(s.options.get("virt_uri") or "test:").startswith("test:")
               for s in cluster.services)


def _register_tiny(cluster: ClusterConfig, force: bool, quiet_failure: bool = False) -> int:
    from tools import tinyimage

    try:
        image = tinyimage.register(cluster.api.public_url, cluster.secrets["admin_password"],
                                   Path(cluster.state_dir) / "guest", force=force)
    except Exception as exc:  # noqa: BLE001 - apt, the build or the API: say which and how to retry
        _err(f"could not register the {tinyimage.NAME} image: {exc}")
        if quiet_failure:
            _err("the cluster runs; retry with `cellctl image build-tiny` (needs `apt-get update` once)")
        return 1
    print(f"image {image['name']} ({image['id']}): {image['disk_format']}, kernel {image.get('kernel_id')}, "
          f"ramdisk {image.get('ramdisk_id')}")
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    cluster = _running_config(args)
    return _register_tiny(cluster, force=args.force)


def cmd_db(args: argparse.Namespace) -> int:
    from tools import dbctl

    cluster = _running_config(args)
    if args.db_command == "status":
        return dbctl.status(cluster, print, args.json)
    return dbctl.upgrade(cluster, print, _err)


# --- CLI ----------------------------------------------------------------------------

def cmd_policy(args: argparse.Namespace) -> int:
    """`cellctl policy list`: every authorization rule in effect (defaults with <state>/policy.yaml's
    overrides applied, marked), as the API workers evaluate them."""
    import json

    from api.policy.enforce import POLICY_FILE, load_overrides, merged
    from api.policy.engine import PolicyError

    path = _state_of(args) / POLICY_FILE
    try:
        overrides = load_overrides(path)
        effective = merged(overrides)
    except PolicyError as exc:
        _err(f"the policy file is refused (the API keeps its previous rules): {exc}")
        return 1
    if args.json:
        print(json.dumps([{"name": name, "rule": rule, "overridden": name in overrides}
                          for name, rule in effective.items()], indent=2))
        return 0
    width = max(len(name) for name in effective)
    for name, rule in effective.items():
        mark = "  (overridden in " + str(path) + ")" if name in overrides else ""
        print(f"{name:<{width}}  {rule or '@'}{mark}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cellctl", description="Bring a Cellcloud cluster up, down, and "
                                     "show its health.")
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {"up": "validate FILE, create the state dir and DBs, start every service, wait until healthy",
             "down": "stop the supervisor and so every service, and wait",
             "status": "every cell (a summary; every host and service with --hosts) with its liveness, "
                       "and the API"}
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("file", nargs="?", default="cluster.yaml", help="the cluster file (default ./cluster.yaml)")
        p.add_argument("--state", help="state directory (default: state_dir of the file)")
        if name == "up":
            p.add_argument("--timeout", type=float, default=UP_TIMEOUT, help="seconds to wait for health")
        if name == "status":
            p.add_argument("--json", action="store_true", help="print the status as JSON (every host)")
            p.add_argument("--hosts", "-v", action="store_true",
                           help="every host and service; without it, per cell a summary and what is not well")
    logs_help = "one request's trail through every service's log, in time order"
    logs = sub.add_parser("logs", help=logs_help, description=logs_help)
    logs.add_argument("--request", required=True, metavar="REQ_ID",
                      help="the request id (X-OpenStack-Request-ID of the API's response: req-<uuid>)")
    logs.add_argument("file", nargs="?", default="cluster.yaml", help="the cluster file (default ./cluster.yaml)")
    logs.add_argument("--state", help="state directory (default: state_dir of the file)")
    host = sub.add_parser("host", help="an operator's verdict on a compute host")
    host_sub = host.add_subparsers(dest="host_command", required=True)
    verbs = {"down": "declare HOST dead now (no grace): its builds go elsewhere, its servers may be evacuated, "
                     "it is fenced until it reconciles",
             "up": "take back an operator's down mark (a fenced host still reconciles first)"}
    for verb, text in verbs.items():
        p = host_sub.add_parser(verb, help=text, description=text)
        p.add_argument("host", help="a compute host name from the cluster file")
        p.add_argument("file", nargs="?", default="cluster.yaml", help="the cluster file (default ./cluster.yaml)")
        p.add_argument("--state", help="state directory (default: state_dir of the file)")
    db = sub.add_parser("db", help="the cluster's API and cell databases (Alembic migrations)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_helps = {"upgrade": "migrate every API and cell DB to this code's head, online (data kept)",
                "status": "each DB's revision against this code's head"}
    for verb, text in db_helps.items():
        p = db_sub.add_parser(verb, help=text, description=text)
        p.add_argument("file", nargs="?", default="cluster.yaml", help="the cluster file (default ./cluster.yaml)")
        p.add_argument("--state", help="state directory (default: state_dir of the file)")
        if verb == "status":
            p.add_argument("--json", action="store_true", help="print the states as JSON")
    policy = sub.add_parser("policy", help="the API's authorization rules")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    policy_help = "every rule in effect: the defaults, with <state>/policy.yaml's overrides marked"
    plist = policy_sub.add_parser("list", help=policy_help, description=policy_help)
    plist.add_argument("file", nargs="?", default="cluster.yaml", help="the cluster file (default ./cluster.yaml)")
    plist.add_argument("--state", help="state directory (default: state_dir of the file)")
    plist.add_argument("--json", action="store_true", help="print the rules as JSON")
    image = sub.add_parser("image", help="images in the cluster's image store")
    image_sub = image.add_subparsers(dest="image_command", required=True)
    tiny_help = ("build the tiny guest from Debian packages (kernel + busybox initramfs) and register it as "
                 "tiny-linux (ami) with tiny-linux-kernel (aki) and tiny-linux-ramdisk (ari)")
    tiny = image_sub.add_parser("build-tiny", help=tiny_help, description=tiny_help)
    tiny.add_argument("file", nargs="?", default="cluster.yaml", help="the cluster file (default ./cluster.yaml)")
    tiny.add_argument("--state", help="state directory (default: state_dir of the file)")
    tiny.add_argument("--force", action="store_true", help="replace an existing tiny-linux")
    sub.add_parser("completion", help="print a bash completion script (eval \"$(cellctl completion)\")",
                   description="print a bash completion script for cellctl, made from its own parser")
    return parser


def cmd_completion(args: argparse.Namespace) -> int:
    from tools.cellctl_completion import bash_script
    print(bash_script(build_parser()), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "logs": cmd_logs, "host": cmd_host, "image": cmd_image,
                "db": cmd_db, "policy": cmd_policy, "completion": cmd_completion}
    try:
        return commands[args.command](args)
    except ClusterFileError as exc:
        _err(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
