"""Availability zones from cluster.yaml: every site and every cell is one, sites first, a name used twice
once (api/compute/availability_zones.py)."""
from __future__ import annotations

from dataclasses import replace

from api.compute.availability_zones import zones
from cells.config import CellSpec
from tests.compute_fakes import cluster_config


def test_each_site_and_each_cell_is_a_zone_holding_its_cells(tmp_path: object) -> None:
    base = cluster_config(str(tmp_path))
    a = CellSpec("cell-a", "site1!cell-a", "sqlite://", "tcp://127.0.0.1:1", "site1", site="site1")
    b = CellSpec("cell-b", "site1!cell-b", "sqlite://", "tcp://127.0.0.1:2", "site1", site="site1")
    c = CellSpec("site2", "site2", "sqlite://", "tcp://127.0.0.1:3", site="site2")  # a cell named as its site
    found = zones(replace(base, cells=(a, b, c)))
    assert list(found) == ["site1", "site2", "cell-a", "cell-b"]
    assert found["site1"] == [a, b] and found["cell-a"] == [a]
    assert found["site2"] == [c]  # the site's zone and the cell's zone are one: both name it
