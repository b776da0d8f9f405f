"""cluster.yaml: role volume places a volume worker with its options and fixed ports."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tools import clusterfile
from tools.clusterfile_fields import ClusterFileError


def write(tmp_path: Path, node: dict[str, Any]) -> Path:
    doc = {"cluster": "t", "api": {"host": "ctl", "listen": "127.0.0.1:18774"},
           "sites": [{"name": "s", "cells": [{"name": "cell1", "services": {"router": "ctl:15601"},
                                              "hosts": ["node1"]}]}],
           "hosts": {"ctl": {"address": "127.0.0.1"}, "node1": {"address": "127.0.0.1", **node}}}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_volume_role_places_a_volume_worker_with_defaults(tmp_path: Path) -> None:
    cluster = clusterfile.load(write(tmp_path, {"roles": ["compute", "volume"]}))
    vol = cluster.service("cell1/volume/node1")
    assert vol.kind == "volume" and vol.bind == "tcp://127.0.0.1:5801"  # node1 is the host at index 1
    assert vol.options == {"iscsi_port": 3261, "nbd_port": 10810, "backend": "file", "format": "raw",
                           "targets": ["local", "tgt", "nbd"], "capacity_gb": None}
    assert cluster.service("cell1/compute/node1").kind == "compute"


def test_volume_only_host_runs_no_compute(tmp_path: Path) -> None:
    cluster = clusterfile.load(write(tmp_path, {"roles": ["volume"], "volume": {
        "port": 16000, "targets": ["nbd"], "format": "qcow2", "nbd_port": 16001, "capacity_gb": 3}}))
    assert [s.id for s in cluster.services if s.host == "node1"] == ["cell1/volume/node1"]
    assert cluster.service("cell1/volume/node1").options["capacity_gb"] == 3


@pytest.mark.parametrize("node, where", [
    ({"roles": ["compute"], "volume": {}}, "hosts.node1.volume"),
    ({"roles": ["volume"], "volume": {"backend": "ceph"}}, "hosts.node1.volume.backend"),
    ({"roles": ["volume"], "volume": {"targets": ["fc"]}}, "hosts.node1.volume.targets"),
    ({"roles": ["volume"], "volume": {"format": "qcow2", "targets": ["tgt"]}}, "hosts.node1.volume.format"),
    ({"roles": ["volume"], "volume": {"capacity_gb": 0}}, "hosts.node1.volume.capacity_gb"),
    ({"roles": ["volume"], "volume": {"nbd_port": 18774}}, "hosts.node1.volume.nbd_port"),  # the API's port
    ({"roles": ["volume"], "volume": {"size": 1}}, "hosts.node1.volume.size"),
])
def test_bad_volume_options_name_the_field(tmp_path: Path, node: dict[str, Any], where: str) -> None:
    with pytest.raises(ClusterFileError) as err:
        clusterfile.load(write(tmp_path, node))
    assert err.value.path == where, err.value
