"""tools/devcluster.free_port: ports below the kernel's ephemeral range, a bound one skipped, and two
test processes never handing out the same port (each holds its own block by an flock)."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tools import devcluster

ROOT = Path(__file__).resolve().parents[2]


def test_ports_are_below_the_ephemeral_range_and_a_bound_one_is_skipped() -> None:
    blocks = devcluster._PortBlocks()
    first = blocks.take()
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert devcluster.PORT_RANGE[0] <= first < low
    with socket.socket() as taken:  # someone binds the port that would come next
        taken.bind(("127.0.0.1", first + devcluster.PORT_STRIDE))
        assert blocks.take() == first + 2 * devcluster.PORT_STRIDE


def test_two_processes_never_hand_out_the_same_port() -> None:
    """The other process keeps running (and so holds its block) while this one takes its ports."""
    code = ("import sys; from tools.devcluster import free_port; "
            "print(' '.join(str(free_port()) for _ in range(60)), flush=True); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=ROOT)
    try:
        assert child.stdout is not None
        theirs = {int(p) for p in child.stdout.readline().split()}
        ours = {devcluster.free_port() for _ in range(60)}
    finally:
        child.communicate("", timeout=30)
    assert len(theirs) == len(ours) == 60
    assert not theirs & ours
