"""A small process supervisor: one OS process per local service of the cluster.

    python -m tools.supervisor --cluster <state>/cluster.json

`cellctl up` starts it detached (its own session). It starts the services in
order router -> conductor, scheduler, network -> compute -> api, sends each one's output
to <state>/log/<service id, '/' -> '_'>.log, writes <state>/run/supervisor.pid
and <state>/run/<service>.pid (the latest start's pid: kept while a crashed
service waits for its restart, removed on stop), restarts a service that exits with an
exponential backoff, and on SIGTERM/SIGINT stops the services in reverse order
(SIGTERM, then SIGKILL after a grace period). Exits are noticed with
Popen.poll (waitpid), never `kill -0`, which reports zombies as alive.
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LOG = logging.getLogger("supervisor")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Start order; stop order is the reverse.
RANK = {"router": 0, "conductor": 1, "scheduler": 1, "network": 1, "compute": 2, "volume": 2, "api": 3}
POLL = 0.1
STABLE_AFTER = 10.0  # a child that ran this long gets its backoff reset
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Program:
    id: str
    argv: tuple[str, ...]
    rank: int = 0


@dataclass
class _Child:
    program: Program
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    started: float = 0.0
    failures: int = 0  # consecutive quick exits, drives the backoff
    restarts: int = 0
    restart_at: float | None = None
    history: list[int] = field(default_factory=list)  # pids, for tests and status


def file_name(service_id: str) -> str:
    """Log and pid file stem of a service ("cell1/compute/node1" -> "cell1_compute_node1")."""
    return service_id.replace("/", "_")


def write_pid(path: Path, pid: int) -> None:
    """Atomic, so a reader never sees a half-written pid."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int, needle: str = "") -> bool:
    """True if `pid` runs (not a zombie) and its command line contains `needle`.

    Reaps it first if it is our own child; reads /proc instead of `kill -0`,
    which calls a zombie alive. `needle` guards against a reused pid."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return False
    return needle in cmdline


def running_supervisor(state_dir: Path) -> int | None:
    """The pid of the supervisor of this state dir, if it runs."""
    pid = read_pid(Path(state_dir) / "run" / "supervisor.pid")
    return pid if pid is not None and pid_alive(pid, "tools.supervisor") else None


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the supervisor dies (even by SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Supervisor:
    def __init__(self, state_dir: Path, programs: Sequence[Program], grace: float = 5.0,
                 backoff: float = 1.0, max_backoff: float = 30.0, group_delay: float = 0.2) -> None:
        self.state = Path(state_dir)
        self.log_dir = self.state / "log"
        self.run_dir = self.state / "run"
        self.children = [_Child(p) for p in sorted(programs, key=lambda p: p.rank)]
        self.grace = grace
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.group_delay = group_delay
        self.stopping = threading.Event()

    # --- lifecycle ---------------------------------------------------------------

    def run(self) -> int:
        """Start everything, keep it running until SIGTERM/SIGINT, then stop it all."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # detached: a closing terminal must not stop us
        write_pid(self.run_dir / "supervisor.pid", os.getpid())
        LOG.info("supervisor %d starting %d services", os.getpid(), len(self.children))
        try:
            self.start_all()
            while not self.stopping.wait(POLL):
                self.check_children()
        finally:
            self.stop_all()
            (self.run_dir / "supervisor.pid").unlink(missing_ok=True)
            LOG.info("supervisor %d stopped", os.getpid())
        return 0

    def start_all(self) -> None:
        rank: int | None = None
        for child in self.children:
            if self.stopping.is_set():
                return
            if rank is not None and child.program.rank != rank:
                time.sleep(self.group_delay)  # let the previous group bind its sockets first
            rank = child.program.rank
            self.spawn(child)

    def spawn(self, child: _Child) -> None:
        p = child.program
        log_file = self.log_dir / f"{file_name(p.id)}.log"
        if child.log is None:
            # kept open across restarts, closed in stop_all()
            child.log = open(log_file, "ab", buffering=0)  # noqa: SIM115
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        child.log.write(f"--- {stamp} supervisor: starting {p.id} (start #{child.restarts + 1}) ---\n".encode())
        # the service logs into the same file itself, rotating it by size (cells/logtrail.py); this fd
        # keeps what escapes logging
        env = dict(os.environ, PYTHONUNBUFFERED="1", CELLCLOUD_LOG_FILE=str(log_file))
        try:
            child.proc = subprocess.Popen(
                list(p.argv), stdin=subprocess.DEVNULL, stdout=child.log, stderr=subprocess.STDOUT,
                cwd=PROJECT_ROOT, env=env, preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads here
            )
        except OSError as exc:
            LOG.error("%s: cannot start %s: %s", p.id, p.argv[0], exc)
            child.proc = None
            child.started = time.monotonic()  # counts as a quick failure: the backoff grows
            self.schedule_restart(child, child.started)
            return
        child.started = time.monotonic()
        child.restart_at = None
        child.history.append(child.proc.pid)
        write_pid(self.run_dir / f"{file_name(p.id)}.pid", child.proc.pid)
        LOG.info("%s started (pid %d)", p.id, child.proc.pid)

    def schedule_restart(self, child: _Child, now: float) -> None:
        if now - child.started >= STABLE_AFTER:
            child.failures = 0
        child.failures += 1
        delay = min(self.max_backoff, self.backoff * 2 ** (child.failures - 1))
        child.restart_at = now + delay
        LOG.warning("%s: restarting in %.1f s (restart #%d)", child.program.id, delay, child.restarts + 1)

    def check_children(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None:
                code = child.proc.poll()  # reaps: no zombies
                if code is None:
                    continue
                LOG.warning("%s (pid %d) exited with %s after %.1f s", child.program.id, child.proc.pid,
                            _describe(code), now - child.started)
                child.proc = None
                self.schedule_restart(child, now)
            elif child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self.spawn(child)

    def stop_all(self) -> None:
        """Reverse start order; each rank gets SIGTERM, then SIGKILL after the grace period."""
        ranks = sorted({c.program.rank for c in self.children}, reverse=True)
        for rank in ranks:
            group = [c for c in self.children if c.program.rank == rank and c.proc is not None]
            for child in group:
                assert child.proc is not None
                LOG.info("stopping %s (pid %d)", child.program.id, child.proc.pid)
                _signal(child.proc, signal.SIGTERM)
            deadline = time.monotonic() + self.grace
            for child in group:
                assert child.proc is not None
                try:
                    child.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    LOG.warning("%s (pid %d) ignored SIGTERM for %.1f s: SIGKILL", child.program.id,
                                child.proc.pid, self.grace)
                    _signal(child.proc, signal.SIGKILL)
                    child.proc.wait()
        for child in self.children:
            child.proc = None
            (self.run_dir / f"{file_name(child.program.id)}.pid").unlink(missing_ok=True)
            if child.log is not None:
                child.log.close()
                child.log = None


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


CommandBuilder = Callable[[str, str], Sequence[str]]


def serve_command(cluster_json: str, service_id: str) -> Sequence[str]:
    return (sys.executable, "-m", "tools.serve", "--cluster", cluster_json, service_id)


def programs_for(cluster_json: Path, build: CommandBuilder = serve_command, host: str | None = None) -> list[Program]:
    """One program per service on a host reached `via: local`, or `via: netns` (run inside the
    host's namespace, made by `cellctl up`: tools/netns.py). With `host`: exactly that host's
    services, run as they are (the supervisor on a `via: ssh` machine: tools/remote.py).
    Simulated hosts (tools/simulated_hosts.py) are one program per process they share, named by it."""
    from cells.config import ClusterConfig
    from tools.netns import Topology

    cluster = ClusterConfig.load(cluster_json)
    if host is not None:
        mine = [s for s in cluster.services if s.host == host]
        prefix: dict[str, tuple[str, ...]] = {host: ()}
    else:
        local = {h.name for h in cluster.hosts if h.via == "local"}
        topology = Topology.from_cluster(cluster)
        prefix = {h.name: tuple(topology.exec_prefix(h.name)) for h in topology.hosts} | {name: () for name in local}
        mine = [s for s in cluster.services if s.host in prefix]
    programs: dict[str, Program] = {}
    for s in mine:
        pid = str(s.options.get("process") or s.id)
        if pid not in programs:
            programs[pid] = Program(pid, (*prefix[s.host], *build(str(cluster_json), pid)), RANK.get(s.kind, len(RANK)))
    return list(programs.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.supervisor", description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", required=True, help="resolved cluster: <state>/cluster.json")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("--host", help="run only this host's services (on a via: ssh machine)")
    args = parser.parse_args(argv)
    cluster_json = Path(args.cluster).resolve()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s [supervisor] %(message)s")
    return Supervisor(cluster_json.parent, programs_for(cluster_json, host=args.host), grace=args.grace).run()


if __name__ == "__main__":
    sys.exit(main())
