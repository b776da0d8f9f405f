"""Run the unmodified `openstack` CLI many times without paying its start-up each time.

Importing python-openstackclient and its plugins costs ~1.7 s of CPU, most of what one command costs, and
the tests run hundreds of commands. A fork server imports the client once; each command then runs in a
fresh child forked from it, through the same `openstackclient.shell.main` the `openstack` script calls,
with its own argv, environment, stdin (/dev/null), stdout and stderr: no state passes from one command to
the next. Where the server can't start, commands run as the `openstack` executable instead.

    python -m tools.openstack_cli SOCKET    # the server (started on first use by run())
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

OPENSTACK = Path(sys.executable).with_name("openstack")
# Modules the commands we run import at run time (cliff loads a command's module only when it runs).
PRELOAD = ("openstackclient.shell", "openstack.connection", "openstackclient.compute.v2.server",
           "openstackclient.compute.v2.flavor", "openstackclient.volume.v3.volume", "openstackclient.image.v2.image",
           "openstackclient.network.v2.network", "openstackclient.network.v2.port",
           "openstackclient.identity.v3.project", "openstackclient.common.quota")
# The CLI's --wait polls every 5 s (osc-lib's wait_for_status/wait_for_delete) or 2 s (openstacksdk's
# proxies): right for a real cloud's minute-long builds, but a test cluster's servers, volumes and images
# change state within a second, so each --wait spent up to 5 s asleep (the tests hold ~100). Commands of
# the fork server poll every WAIT_POLL seconds at most: what they wait for and what they print are unchanged.
WAIT_POLL = 0.5  # the tests' own openstacksdk waits pass it too (interval=WAIT_POLL; the SDK's default is 2 s)
_WAITS = (("osc_lib.utils", "wait_for_status", "sleep_time"), ("osc_lib.utils", "wait_for_delete", "sleep_time"),
          ("openstack.resource", "wait_for_status", "interval"), ("openstack.resource", "wait_for_delete", "interval"))


# the modules whose `time.sleep` is the waits' pause (osc-lib's two waits; openstacksdk's iterate_timeout)
_WAIT_CLOCKS = ("osc_lib.utils", "openstack.utils")


class _WaitClock:
    """The `time` module as the waits' modules see it: sleep(s) pauses as devcluster.wait_for does (from
    0.05 s, doubling, never longer than s), anew for each wait, so a server ACTIVE 0.1 s after a check is
    seen then and not after a whole WAIT_POLL. Everything else is the real `time`."""

    def __init__(self) -> None:
        # here, not at import (devcluster imports this module): the server makes its clock before it forks
        from tools.devcluster import poll_pauses

        self.poll_pauses = poll_pauses
        self.pauses: Iterator[float] | None = None

    def restart(self) -> None:
        self.pauses = None

    def next_pause(self, seconds: float) -> float:
        if self.pauses is None:
            self.pauses = self.poll_pauses(WAIT_POLL)
        return min(seconds, next(self.pauses))

    def sleep(self, seconds: float) -> None:
        time.sleep(self.next_pause(seconds))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _quick_waits() -> None:
    """Cap the poll interval of the CLI's waits at WAIT_POLL (the commands look these functions up at call time),
    their first pauses shorter still (_WaitClock)."""
    import functools
    import importlib
    import inspect

    clock = _WaitClock()

    def capped(original: Any, param: str) -> Any:
        signature = inspect.signature(original)

        @functools.wraps(original)
        def wait(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            given = bound.arguments.get(param)
            bound.arguments[param] = WAIT_POLL if given is None else min(given, WAIT_POLL)
            clock.restart()
            return original(*bound.args, **bound.kwargs)
        return wait

    for module_name, name, param in _WAITS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, name):
            setattr(module, name, capped(getattr(module, name), param))
    for module_name in _WAIT_CLOCKS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if getattr(module, "time", None) is time:
            module.time = clock  # type: ignore[attr-defined]


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    conn.sendall(struct.pack("!I", len(data)) + data)


def _recv(conn: socket.socket) -> dict[str, Any]:
    header = _recv_exactly(conn, 4)
    result: dict[str, Any] = json.loads(_recv_exactly(conn, struct.unpack("!I", header)[0]))
    return result


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("the CLI server closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- the server ----------------------------------------------------------------------------------------

def serve(path: str) -> None:
    import importlib
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # a plugin this client version lacks: its commands just import it themselves
            pass
    _quick_waits()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    listener.settimeout(1.0)
    print("ready", flush=True)
    while os.getppid() == parent:  # ends with the process that started it
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        if os.fork() == 0:
            listener.close()
            _run_command(conn)
        conn.close()


def _run_command(conn: socket.socket) -> None:
    """In the forked child: run one command as the `openstack` executable would, answer, exit."""
    status = 1
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command may wait for processes of its own
    try:
        conn.settimeout(None)
        request = _recv(conn)
        _send(conn, {"pid": os.getpid()})
        os.environ.clear()
        os.environ.update(request["env"])
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.argv = [str(OPENSTACK), *request["args"]]
            from openstackclient import shell
            try:
                code: Any = shell.main(request["args"])
            except SystemExit as exit_:
                code = exit_.code
            except BaseException:  # noqa: BLE001 - reported as the executable would: traceback, status 1
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            returncode = code if isinstance(code, int) else (0 if code is None else 1)
            out.seek(0)
            err.seek(0)
            _send(conn, {"returncode": returncode, "stdout": out.read().decode(errors="replace"),
                         "stderr": err.read().decode(errors="replace")})
        status = 0
    finally:
        os._exit(status)


# --- the client ----------------------------------------------------------------------------------------

class _Server:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner = 0  # the pid that started it: a forked test process starts its own
        self.path = ""
        self.proc: subprocess.Popen[str] | None = None

    def address(self) -> str | None:
        with self.lock:
            if self.owner != os.getpid() or self.proc is None or self.proc.poll() is not None:
                self._start()
            return self.path or None

    def _start(self) -> None:
        self.owner, self.path = os.getpid(), ""
        path = os.path.join(tempfile.mkdtemp(prefix="openstack-cli-"), "socket")
        # An environment with nothing of the caller's cloud: each command brings its own.
        env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ") if k in os.environ}
        root = str(Path(__file__).resolve().parent.parent)
        self.proc = subprocess.Popen([sys.executable, "-m", "tools.openstack_cli", path], cwd=root, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready":
            self.path = path


_server = _Server()


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`openstack ARGS` in environment `env` (nothing else of ours), as a finished process."""
    path = _server.address()
    if path is None:
        return subprocess.run([str(OPENSTACK), *args], capture_output=True, text=True, check=False,
                              timeout=timeout, env=env)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(path)
        _send(conn, {"args": args, "env": env})
        pid = int(_recv(conn)["pid"])
        try:
            answer = _recv(conn)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            raise subprocess.TimeoutExpired([str(OPENSTACK), *args], timeout) from None
    return subprocess.CompletedProcess([str(OPENSTACK), *args], answer["returncode"], answer["stdout"],
                                       answer["stderr"])


async def run_async(args: list[str], env: dict[str, str],
                    timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run, args, env, timeout)


def password_env(auth_url: str, user: str, password: str, project: str) -> dict[str, str]:
    """The OS_* variables of a password login scoped to `project` (all in the Default domain)."""
    return {"OS_AUTH_URL": auth_url, "OS_USERNAME": user, "OS_PASSWORD": password, "OS_PROJECT_NAME": project,
            "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
            "OS_IDENTITY_API_VERSION": "3", "OS_REGION_NAME": "RegionOne"}


if __name__ == "__main__":
    serve(sys.argv[1])
