"""tools/openstack_cli's fork server: the CLI's --wait loops (osc-lib's, openstacksdk's) pause as
devcluster.wait_for does: from 0.05 s, doubling, never longer than WAIT_POLL or than the loop asked."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tools.openstack_cli import WAIT_POLL, _WaitClock


def test_each_wait_pauses_from_0_05_s_doubling_up_to_wait_poll() -> None:
    clock = _WaitClock()
    assert WAIT_POLL == 0.5
    assert [clock.next_pause(5) for _ in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert clock.next_pause(0.2) == 0.2  # never longer than the loop asked
    clock.restart()  # the next wait starts short again
    assert [clock.next_pause(5) for _ in range(2)] == [0.05, 0.1]
    assert clock.monotonic() > 0  # the rest is the real time module


def test_the_server_gives_the_wait_loops_modules_the_clock() -> None:
    """What the fork server does before it serves (in a fresh interpreter: it changes those modules)."""
    script = ("from tools import openstack_cli\nopenstack_cli._quick_waits()\n"
              "import osc_lib.utils, openstack.utils\n"
              "print(type(osc_lib.utils.time).__name__, type(openstack.utils.time).__name__)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["_WaitClock", "_WaitClock"]
