"""tools/leftovers.py on real processes: what ties a process to a cluster's state dir, and stop()
ending even a process that ignores SIGTERM (as tgtd does). The stand-ins run under a helper's
program name (exec -a dnsmasq / tgtd): only helpers are stopped for naming the state dir."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tools import leftovers

IGNORES_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); " \
               "time.sleep(120)"


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def _helper(name: str, code: str, args: tuple[str, ...] = (), stdout: IO[bytes] | None = None
            ) -> subprocess.Popen[bytes]:
    """A Python process whose command line reads as the helper `name` (argv[0])."""
    return subprocess.Popen([name, "-c", code, *args], executable=sys.executable, stdout=stdout)


def test_find_ties_helpers_by_command_line_and_output_and_stop_ends_them(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    state = tmp_path / "var"
    state.mkdir()
    log = (state / "helper.log").open("wb")
    named = _helper("dnsmasq", "import time; time.sleep(120)", args=(f"--pid-file={state}/pid",))
    logging = _helper("tgtd", IGNORES_TERM, stdout=log)  # it logs there, and ignores SIGTERM as tgtd does
    tail = subprocess.Popen(["tail", "-f", str(state / "helper.log")], stdout=subprocess.DEVNULL)  # an operator's
    other = subprocess.Popen(["sleep", "121"], cwd=state)  # only its working directory is there
    unrelated = subprocess.Popen(["sleep", "122"])
    neighbour = _helper("dnsmasq", "import time; time.sleep(120)", args=(f"--pid-file={state}2/pid",))  # var2
    procs += [named, logging, tail, other, unrelated, neighbour]
    log.close()
    while "up" not in (state / "helper.log").read_text():  # its SIGTERM handler is set
        time.sleep(0.01)

    found = {p.pid: p.why for p in leftovers.find(state)}
    assert found == {named.pid: "its command line names the state dir",
                     logging.pid: f"it has {state / 'helper.log'} open (fd 1)"}
    strict = {p.pid for p in leftovers.find(state, anything=True)}
    assert strict == {named.pid, logging.pid, tail.pid, other.pid}  # not this test's process (an ancestor)

    assert leftovers.stop(leftovers.find(state), grace=0.5) == []
    assert named.wait(5) == -signal.SIGTERM
    assert logging.wait(5) == -signal.SIGKILL  # it ignored SIGTERM: SIGKILL after the grace
    assert tail.poll() is None and other.poll() is None and unrelated.poll() is None and neighbour.poll() is None
