"""cluster.yaml's tenant_networks: the shortest subnet prefix a tenant may ask for reaches every
network controller's options (and from there cells/network/policy.py); bad values name the field."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from cells.network.controller import subnet_policy
from tests.unit.test_clusterfile import BASE, write
from tools import clusterfile
from tools.clusterfile_fields import ClusterFileError


def _load(tmp_path: Path, tenant: Any = None) -> Any:
    doc = copy.deepcopy(BASE)
    if tenant is not None:
        doc["tenant_networks"] = tenant
    return clusterfile.load(write(tmp_path, doc))


def test_the_min_subnet_prefix_reaches_the_network_controllers(tmp_path: Path) -> None:
    default = [s for s in _load(tmp_path).services if s.kind == "network"]
    assert [s.options["min_subnet_prefix"] for s in default] == [16]
    cluster = _load(tmp_path, {"min_subnet_prefix": 22})
    [spec] = [s for s in cluster.services if s.kind == "network"]
    assert spec.options["min_subnet_prefix"] == 22
    assert subnet_policy(cluster, spec.options).min_prefix == 22


@pytest.mark.parametrize("value", [7, 30, "16", True, None])
def test_a_bad_min_subnet_prefix_names_the_field(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ClusterFileError, match="tenant_networks.min_subnet_prefix"):
        _load(tmp_path, {"min_subnet_prefix": value})


def test_an_unknown_tenant_networks_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ClusterFileError, match="tenant_networks"):
        _load(tmp_path, {"min_prefix": 16})


def test_the_external_network_reaches_its_cells_network_controller(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE)
    doc["external_network"] = {"cidr": "203.0.113.0/24"}
    cluster = clusterfile.load(write(tmp_path, doc))
    network = [s for s in cluster.services if s.kind == "network"]
    assert network[0].options["external_network"] == {"name": "public", "cidr": "203.0.113.0/24"}


@pytest.mark.parametrize(("value", "field"), [
    ({"cidr": "203.0.113.0/30"}, "external_network.cidr"), ({"cidr": "not-a-net"}, "external_network.cidr"),
    ({"cidr": "203.0.113.0/24", "cell": "nowhere"}, "external_network.cell"),
    ({"cidr": "203.0.113.0/24", "name": ""}, "external_network.name"), ({"name": "public"}, "external_network"),
])
def test_a_bad_external_network_names_the_field(tmp_path: Path, value: Any, field: str) -> None:
    doc = copy.deepcopy(BASE)
    doc["external_network"] = value
    with pytest.raises(ClusterFileError, match=field):
        clusterfile.load(write(tmp_path, doc))
