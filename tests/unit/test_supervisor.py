"""The supervisor as a real process: starts its children in order, restarts a killed
one with backoff, and on SIGTERM stops them all in reverse order (SIGKILL for the
ones that ignore SIGTERM). The children are small Python programs, not services."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cells.config import ClusterConfig
from tools import clusterfile
from tools.supervisor import Program, Supervisor, _Child, pid_alive, programs_for, read_pid

ROOT = Path(__file__).resolve().parents[2]

# A child that notes its start and its SIGTERM in a shared file; "stubborn" ignores SIGTERM.
CHILD = """
import os, signal, sys, time
name, marks, mode = sys.argv[1:4]
def note(what):
    with open(marks, "a") as f:
        f.write(f"{what} {name} {os.getpid()}\\n")
def on_term(*_):
    note("term")
    if mode != "stubborn":
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
note("start")
print(f"{name} is running", flush=True)
while True:
    time.sleep(0.05)
"""

RUNNER = """
import logging, sys
from pathlib import Path
from tools.supervisor import Program, Supervisor
state, child, marks = sys.argv[1:4]
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
def prog(sid, rank, mode="normal"):
    return Program(sid, (sys.executable, child, sid.replace("/", "-"), marks, mode), rank)
programs = [prog("api", 3, "stubborn"), prog("cell1/conductor", 1), prog("cell1/router", 0)]
sys.exit(Supervisor(Path(state), programs, grace=0.5, backoff=0.2, group_delay=0.05).run())
"""
IDS = ("cell1/router", "cell1/conductor", "api")


@dataclass
class Running:
    proc: subprocess.Popen[str]
    state: Path
    marks: Path
    stderr: Path

    def pid(self, sid: str) -> int | None:
        return read_pid(self.state / "run" / (sid.replace("/", "_") + ".pid"))

    def log(self) -> str:
        return self.stderr.read_text()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Running]:
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "runner.py").write_text(RUNNER)
    state, marks, stderr = tmp_path / "state", tmp_path / "marks", tmp_path / "supervisor.err"
    marks.touch()
    with open(stderr, "w") as err:
        proc = subprocess.Popen([sys.executable, str(tmp_path / "runner.py"), str(state), str(tmp_path / "child.py"),
                                 str(marks)], cwd=ROOT, stderr=err, text=True,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
    running = Running(proc, state, marks, stderr)
    try:
        wait_for("all children", lambda: all(running.pid(s) and pid_alive(running.pid(s) or 0) for s in IDS))
        # and their SIGTERM handlers are installed (they note "start" after that)
        wait_for("all children ready", lambda: marks.read_text().count("start ") == len(IDS))
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for line in marks.read_text().splitlines():  # never leave a child behind, whatever failed
            pid = int(line.split()[2])
            if pid_alive(pid, "child.py"):
                os.kill(pid, signal.SIGKILL)


def test_starts_children_in_rank_order_with_pid_and_log_files(supervisor: Running) -> None:
    started = [line.split()[0] for line in supervisor.log().splitlines() if line.endswith(")") and "started" in line]
    assert started == list(IDS)
    assert read_pid(supervisor.state / "run" / "supervisor.pid") == supervisor.proc.pid
    for sid in IDS:
        log = supervisor.state / "log" / (sid.replace("/", "_") + ".log")
        wait_for(f"{sid} output", lambda log=log: "is running" in log.read_text())  # type: ignore[misc]
        assert f"supervisor: starting {sid} (start #1)" in log.read_text()


def test_restarts_a_killed_child_with_backoff(supervisor: Running) -> None:
    old = supervisor.pid("cell1/conductor")
    assert old is not None
    os.kill(old, signal.SIGKILL)
    wait_for("a new conductor", lambda: supervisor.pid("cell1/conductor") not in (None, old))
    new = supervisor.pid("cell1/conductor")
    assert new is not None and pid_alive(new, "child.py")
    assert not pid_alive(old)
    log = supervisor.log()
    assert f"cell1/conductor (pid {old}) exited with signal SIGKILL" in log
    assert "cell1/conductor: restarting in 0.2 s (restart #1)" in log
    # kill it again at once: the next delay doubles
    os.kill(new, signal.SIGKILL)
    wait_for("the second restart", lambda: supervisor.pid("cell1/conductor") not in (None, new))
    assert "cell1/conductor: restarting in 0.4 s (restart #2)" in supervisor.log()
    assert supervisor.proc.poll() is None
    exits = [line for line in supervisor.log().splitlines() if "exited with" in line]
    assert len(exits) == 2 and all(line.startswith("cell1/conductor ") for line in exits)  # others left alone


def test_sigterm_stops_children_in_reverse_order(supervisor: Running) -> None:
    pids = {sid: supervisor.pid(sid) for sid in IDS}
    supervisor.proc.send_signal(signal.SIGTERM)
    assert supervisor.proc.wait(timeout=10) == 0
    for sid, pid in pids.items():
        assert pid is not None and not pid_alive(pid), sid
    terms = [line.split()[1] for line in supervisor.marks.read_text().splitlines() if line.startswith("term")]
    assert terms == ["api", "cell1-conductor", "cell1-router"]
    assert "api" in supervisor.log() and "ignored SIGTERM for 0.5 s: SIGKILL" in supervisor.log()
    assert sorted(p.name for p in (supervisor.state / "run").iterdir()) == []


def test_children_die_with_a_killed_supervisor(supervisor: Running) -> None:
    pids = [supervisor.pid(sid) for sid in ("cell1/router", "cell1/conductor")]
    supervisor.proc.kill()  # no chance to clean up: the children get SIGTERM from the kernel
    supervisor.proc.wait()
    for pid in pids:
        assert pid is not None
        wait_for(f"pid {pid} to exit", lambda pid=pid: not pid_alive(pid, "child.py"))  # type: ignore[misc]


def test_backoff_doubles_caps_and_resets_after_a_stable_run(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, [], backoff=1.0, max_backoff=4.0)
    child = _Child(Program("x", ("true",)))
    delays = []
    for now in (1.0, 2.0, 3.0, 4.0):
        child.started = now - 0.5  # each run lasted half a second
        sup.schedule_restart(child, now)
        assert child.restart_at is not None
        delays.append(child.restart_at - now)
    assert delays == [1.0, 2.0, 4.0, 4.0]
    child.started = 100.0
    sup.schedule_restart(child, 200.0)  # it ran 100 s: a fresh failure, not a crash loop
    assert child.restart_at == 201.0


def test_programs_for_a_cluster_run_tools_serve_per_local_service(tmp_path: Path) -> None:
    cluster = clusterfile.prepare(ROOT / "cluster.yaml", state_dir=tmp_path)
    path = tmp_path / "cluster.json"
    assert ClusterConfig.load(path) == cluster
    programs = {p.id: p for p in programs_for(path)}
    assert set(programs) == {s.id for s in cluster.services}
    assert programs["cell1/compute/node1"].argv == (sys.executable, "-m", "tools.serve", "--cluster", str(path),
                                                   "cell1/compute/node1")
    ranks = {sid: p.rank for sid, p in programs.items()}
    assert ranks["cell1/router"] < ranks["cell1/conductor"] == ranks["cell1/scheduler"] \
        < ranks["cell1/compute/node1"] < ranks["api"]
