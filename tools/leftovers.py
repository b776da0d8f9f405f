"""The processes a cluster left on this machine, found by what ties them to it, and stopped.

Services run under the supervisor, which stops them; but the helpers they start outlive them on
purpose (a restarted worker adopts them): the networks' dnsmasq, tgtd, qemu-storage-daemon, and
QEMU guests. `cellctl down` ends with `stop(find(state, namespaces))`, before it removes the netns
hosts (a process in a deleted namespace keeps running and can no longer be found by it).

What ties a process to a cluster:
- it runs in one of the cluster's network namespaces (everything in a netns host is the cluster's);
- it is one of the HELPERS and its command line names the state dir (dnsmasq's --pid-file, QEMU's
  -pidfile, the qsd socket), or its stdout or stderr is a file there (tgtd and qsd log there);
- a QEMU pid file under the state dir's embed roots names it (libvirt may name the root by alias).
Other programs that merely name the state dir are not the cluster's to stop (an operator's `tail -f`
of a log, the ssh client that runs `tools.remote agent-stop --state DIR` on this very machine).
A process's own pid and its ancestors (the shell or test running cellctl) are never counted.
`find(..., anything=True)` counts any program, and a working directory or any open file under the
state dir too: the stricter check a test makes that nothing at all is left.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

GRACE = 3.0  # seconds between SIGTERM and SIGKILL (tgtd ignores SIGTERM)
KILL_WAIT = 5.0
QEMU_PIDFILES = "hosts/*/embed/run/qemu/*.pid"
HELPERS = ("dnsmasq", "tgtd", "qemu-storage-daemon", "qemu-system-")  # what services start and leave running


@dataclass(frozen=True)
class Leftover:
    pid: int
    start: str  # /proc/<pid>/stat starttime: the same pid later is another process
    command: str
    why: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command[:120]}): {self.why}"


def namespace_ids(namespaces: Iterable[str]) -> set[tuple[int, int]]:
    """(device, inode) of each named network namespace that exists: what a process in it shows in
    /proc/<pid>/ns/net, even after the name is gone."""
    ids = set()
    for name in namespaces:
        try:
            st = os.stat(f"/run/netns/{name}")
        except OSError:
            continue
        ids.add((st.st_dev, st.st_ino))
    return ids


def _ancestors() -> set[int]:
    pids, pid = {os.getpid()}, os.getpid()
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        pids.add(pid)
    return pids


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, ...]; None for a zombie or a gone process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields


def _under(path: str, state: str) -> bool:
    return path == state or path.startswith(state + "/")


def _qemu_pids(state: Path) -> set[int]:
    pids = set()
    for pidfile in state.glob(QEMU_PIDFILES):
        try:
            pids.add(int(pidfile.read_text().strip()))
        except (OSError, ValueError):
            continue
    return pids


def _why(pid: int, state: str, command: str, ns_ids: set[tuple[int, int]], qemu: set[int],
         anything: bool) -> str | None:
    if ns_ids:
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
            if (st.st_dev, st.st_ino) in ns_ids:
                return "runs in one of the cluster's network namespaces"
        except OSError:
            pass
    if pid in qemu and "qemu-system" in command:
        return "a QEMU pid file of the cluster names it"
    if not anything and not os.path.basename(command.split(" ", 1)[0]).startswith(HELPERS):
        return None
    if state + "/" in command or f"{state} " in command + " ":  # not /x/var2 for /x/var
        return "its command line names the state dir"
    fds: tuple[str, ...] = ("1", "2")
    if anything:
        try:
            if _under(os.readlink(f"/proc/{pid}/cwd"), state):
                return "its working directory is in the state dir"
            fds = tuple(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return None
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if _under(target, state):
            return f"it has {target} open (fd {fd})"
    return None


def find(state: Path, namespaces: Iterable[str] = (), anything: bool = False,
         ns_ids: set[tuple[int, int]] | None = None) -> list[Leftover]:
    """The live processes tied to the cluster of `state` (see the module doc); `ns_ids`: namespaces
    known by namespace_ids() earlier, which may have lost their names since."""
    root = str(Path(state).resolve())
    ns_ids = namespace_ids(namespaces) | (ns_ids or set())
    qemu = _qemu_pids(Path(root))
    skip = _ancestors()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        pid = int(entry)
        fields = _stat_fields(pid)
        if fields is None:
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if not command:  # kernel threads
            continue
        why = _why(pid, root, command, ns_ids, qemu, anything)
        if why is not None:
            found.append(Leftover(pid, fields[19], command, why))
    return found


def _alive(p: Leftover) -> bool:
    fields = _stat_fields(p.pid)
    return fields is not None and fields[19] == p.start


def _signal_all(processes: Iterable[Leftover], sig: signal.Signals) -> None:
    for p in processes:
        if _alive(p):
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass


def _wait(processes: list[Leftover], timeout: float) -> list[Leftover]:
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in processes if _alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def stop(processes: list[Leftover], grace: float = GRACE) -> list[Leftover]:
    """SIGTERM, then SIGKILL what is still there after `grace`; returns what even that left running."""
    _signal_all(processes, signal.SIGTERM)
    left = _wait(processes, grace)
    _signal_all(left, signal.SIGKILL)
    return _wait(left, KILL_WAIT)
