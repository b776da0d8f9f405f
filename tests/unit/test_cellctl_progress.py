"""`cellctl --version` and the `alive N/M` progress line of `cellctl up` (tools/cellctl.py)."""
from __future__ import annotations

import io
import subprocess
import sys
import tomllib
from pathlib import Path

from tools.cellctl import UpProgress

ROOT = Path(__file__).resolve().parents[2]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_version_prints_the_projects_version() -> None:
    out = subprocess.run([sys.executable, "-m", "tools.cellctl", "--version"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert out == f"cellctl (cellcloud) {version}\n"


def test_on_a_terminal_one_line_is_rewritten_in_place() -> None:
    out = Terminal()
    progress = UpProgress(5, out, columns=200)
    progress.show(1, ["cell1/conductor", "cell1/scheduler", "cell1/network", "cell1/compute/node1"])
    progress.show(4, ["cell1/compute/node1"])
    progress.show(5, [])
    progress.end()
    screen = Terminal()
    UpProgress(5, screen, columns=20).show(1, ["cell1/conductor"])
    assert screen.getvalue() == "\ralive 1/5  waiting "  # cut to the terminal's width, never wrapped
    frames = out.getvalue().split("\r")[1:]
    assert [f.split()[:2] for f in frames] == [["alive", "1/5"], ["alive", "4/5"], ["alive", "5/5"]]
    assert "cell1/conductor, cell1/scheduler, cell1/network and 1 more" in frames[0]
    assert frames[1].rstrip() == "alive 4/5  waiting for cell1/compute/node1"
    # the shorter last frame blanks what the longer one before it left on the line, then the line ends
    assert frames[2] == "alive 5/5".ljust(len(frames[1].rstrip())) + "\n"


def test_elsewhere_a_line_only_when_the_count_changes() -> None:
    out = io.StringIO()
    progress = UpProgress(3, out)
    for alive in (0, 0, 2, 2, 3):
        progress.show(alive, ["x"] * (3 - alive))
    progress.end()
    assert out.getvalue().splitlines() == ["alive 0/3  waiting for x, x, x", "alive 2/3  waiting for x",
                                           "alive 3/3"]
