"""`cellctl status` of a big cloud (issue 21): examples/scale.yaml (3 sites x 10 cells x 100 simulated
hosts) with every router answering as it would, some hosts suspect, dead or unhealthy. By default a cell
is a few lines (services by liveness, compute hosts by the conductor's verdict, used of total capacity)
plus the hosts that need a look; --hosts lists every host and service; --json keeps every host."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cells.config import ClusterConfig
from tools import clusterfile, health

SCALE = Path(__file__).resolve().parents[2] / "examples" / "scale.yaml"


@pytest.fixture(scope="module")
def cloud() -> ClusterConfig:
    return clusterfile.load(SCALE)


def answered(cluster: ClusterConfig, verdicts: dict[str, str], silent: set[str],
             unhealthy: dict[str, str]) -> health.Health:
    """What the routers would answer: every service but `silent` a live member; each conductor's host
    verdicts (alive unless `verdicts` says otherwise) and capacity on its heartbeat."""
    cells = {c.path: health.CellHealth(c.path, answered=True) for c in cluster.cells}
    for s in cluster.services:
        if s.cell is None:
            continue
        cell = cells[s.cell]
        if s.id not in silent:
            cell.members[s.id] = 0.4
        if s.id in unhealthy:
            cell.unhealthy[s.id] = unhealthy[s.id]
        if s.kind == "compute":
            cell.host_states[s.host] = verdicts.get(s.host, "alive")
    for cell in cells.values():
        cell.capacity = {"hosts": 100, "hosts_alive": 100, "vcpus_free": 25000, "memory_mb_free": 100,
                         "local_gb_free": 10, "vcpus_total": 25600, "vcpus_used": 600,
                         "memory_mb_total": 26214400, "memory_mb_used": 262144,
                         "local_gb_total": 100000, "local_gb_used": 0}
    return health.Health(cells, api_alive=True)


def cell_lines(text: str, path: str) -> list[str]:
    """The lines of one cell's block in the text view."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(f"cell {path} "))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("cell ")), len(lines))
    return lines[start:end]


def test_a_big_clouds_status_is_a_summary_per_cell_with_what_needs_a_look(cloud: ClusterConfig) -> None:
    [sick_cell, other] = [c.path for c in cloud.cells[:2]]
    sims = [s for s in cloud.services if s.cell == sick_cell and s.kind == "compute"]
    verdicts = {sims[0].host: "suspect", sims[1].host: "dead", sims[2].host: "fenced"}
    found = answered(cloud, verdicts, silent={sims[1].id}, unhealthy={sims[3].id: "libvirt call spawn stuck"})
    status = health.report(cloud, found, supervisor_pid=None)
    assert len(status["cells"]) == 30 and sum(len(c["hosts"]) for c in status["cells"]) >= 3000  # --json: all

    summary = next(c for c in status["cells"] if c["path"] == sick_cell)["summary"]
    control = sum(1 for s in cloud.services if s.cell == sick_cell and s.kind != "compute")
    assert summary["services"] == {"alive": 100 + control - 1, "down": 1, "unhealthy": 1}
    assert summary["hosts"] == {"alive": 97, "suspect": 1, "dead": 1, "fenced": 1}
    assert summary["used_of_total"] == {"vcpus": [600, 25600], "memory_mb": [262144, 26214400],
                                        "local_gb": [0, 100000]}

    text = health.render(status)
    block = cell_lines(text, sick_cell)
    assert f"services: {100 + control - 1} alive, 1 DOWN, 1 UNHEALTHY" in [line.strip() for line in block]
    assert "compute hosts: 100 (97 alive, 1 SUSPECT, 1 DEAD, 1 FENCED)" in [line.strip() for line in block]
    assert "used of live hosts' capacity: 600/25600 vCPUs (2%), 262144/26214400 MB RAM (1%), " \
           "0/100000 GB disk (0%)" in [line.strip() for line in block]
    named = {line.split()[1] for line in block if line.strip().startswith("host ")}
    assert named == {s.host for s in sims[:4]}  # only the hosts that need a look, each with its services
    assert any("UNHEALTHY: libvirt call spawn stuck" in line for line in block)
    assert not any(line.strip().startswith("host ") for line in cell_lines(text, other))  # all well: no host
    assert len(text.splitlines()) < 30 * 6 + 20  # a few lines a cell, not 3,000 hosts

    every = health.render(status, hosts=True)
    assert sum(line.strip().startswith("host ") for line in every.splitlines()) == len(
        {(c["path"], h["name"]) for c in status["cells"] for h in c["hosts"]})


def test_a_summary_names_at_most_a_screen_of_sick_hosts(cloud: ClusterConfig) -> None:
    path = cloud.cells[0].path
    sims = [s for s in cloud.services if s.cell == path and s.kind == "compute"]
    status = health.report(cloud, answered(cloud, {s.host: "suspect" for s in sims}, set(), {}), None)
    block = cell_lines(health.render(status), path)
    assert sum(line.strip().startswith("host ") for line in block) == health.EXCEPTIONS_SHOWN
    assert block[-1].strip() == f"... and {100 - health.EXCEPTIONS_SHOWN} more hosts not well (cellctl status --hosts)"


def test_a_conductor_of_an_older_release_reports_no_totals_and_the_summary_says_none(cloud: ClusterConfig) -> None:
    found = answered(cloud, {}, set(), {})
    for cell in found.cells.values():
        cell.capacity = {k: v for k, v in (cell.capacity or {}).items() if not k.endswith(("_total", "_used"))}
    status: dict[str, Any] = health.report(cloud, found, None)
    assert status["cells"][0]["summary"]["used_of_total"] == {}
    assert "used of" not in health.render(status)
