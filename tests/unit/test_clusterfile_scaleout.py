"""cluster.yaml scale-out: several conductors/schedulers per cell and several API workers;
and the cell's move option allow_resize_to_same_host (issue 8)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cells.config import ClusterConfig
from tests.unit.test_clusterfile import BASE, cell, variant, write
from tools import clusterfile
from tools.clusterfile_fields import ClusterFileError


def _services(doc: dict[str, Any], tmp_path: Path) -> dict[str, tuple[str, str]]:
    cfg = clusterfile.load(write(tmp_path, doc))
    return {s.id: (s.kind, s.bind) for s in cfg.services}


def test_lists_of_conductors_and_schedulers(tmp_path: Path) -> None:
    doc = variant(lambda d: cell(d)["services"].update(conductor=["ctl", "ctl:5611"],
                                                        scheduler=["ctl:5612", "ctl:5613", "ctl:5614"]))
    svc = _services(doc, tmp_path)
    assert svc["cell1/conductor"] == ("conductor", "tcp://127.0.0.1:5602")  # default port router + 1
    assert svc["cell1/conductor-2"] == ("conductor", "tcp://127.0.0.1:5611")
    assert [svc[f"cell1/scheduler{n}"] for n in ("", "-2", "-3")] == [
        ("scheduler", "tcp://127.0.0.1:5612"), ("scheduler", "tcp://127.0.0.1:5613"),
        ("scheduler", "tcp://127.0.0.1:5614")]


def test_api_workers_share_the_port(tmp_path: Path) -> None:
    doc = variant(lambda d: d["api"].update(workers=3))
    cfg = clusterfile.load(write(tmp_path, doc))
    apis = [s for s in cfg.services if s.kind == "api"]
    assert [s.id for s in apis] == ["api", "api-2", "api-3"]
    assert {s.bind for s in apis} == {"127.0.0.1:8774"} and all(s.options["workers"] == 3 for s in apis)


@pytest.mark.parametrize("change, message", [
    (lambda d: cell(d)["services"].update(conductor=["ctl", "ctl"]),
     "sites[0].cells[0].services.conductor[1]: expected HOST:PORT (only the first conductor has a default port)"),
    (lambda d: cell(d)["services"].update(conductor=[]),
     "sites[0].cells[0].services.conductor: expected HOST, HOST:PORT or a non-empty list"),
    (lambda d: cell(d)["services"].update(scheduler=["ctl", "ctl:5602"]),
     "sites[0].cells[0].services.scheduler[1]: port 127.0.0.1:5602 of cell1/scheduler-2"),
    (lambda d: cell(d)["services"].update(network=["ctl", "ctl:5620"]),
     "sites[0].cells[0].services.network: expected HOST or HOST:PORT, got a list"),
    (lambda d: d["api"].update(workers=0), "api.workers: expected a number of processes 1-64, got 0"),
])
def test_scale_out_mistakes(tmp_path: Path, change: Any, message: str) -> None:
    with pytest.raises(ClusterFileError) as err:
        clusterfile.load(write(tmp_path, variant(change)))
    assert message in str(err.value)


def test_same_host_resize_is_a_cell_option_off_by_default(tmp_path: Path) -> None:
    assert clusterfile.load(write(tmp_path, BASE)).cell("cell1").allow_resize_to_same_host is False
    cfg = clusterfile.load(write(tmp_path, variant(lambda d: cell(d).update(allow_resize_to_same_host=True))))
    assert cfg.cell("cell1").allow_resize_to_same_host is True
    assert ClusterConfig.from_dict(json.loads(cfg.to_json())).cell("cell1").allow_resize_to_same_host is True
    with pytest.raises(ClusterFileError) as err:
        clusterfile.load(write(tmp_path, variant(lambda d: cell(d).update(allow_resize_to_same_host="yes"))))
    assert "sites[0].cells[0].allow_resize_to_same_host: expected true or false, got" in str(err.value)
