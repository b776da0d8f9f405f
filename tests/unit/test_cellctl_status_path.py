"""`cellctl status FILE` of a running cluster (issue 21: < 1 s for 3,000 hosts): it reads the file's
state_dir alone and then the cluster.json the cluster started with, so neither a 3,000-host file's
resolution nor the resolver's imports are paid, and a file broken since the start still shows the cluster."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_clusterfile import ROOT, cell, variant, write
from tools import cellctl, clusterfile
from tools.clusterfile_fields import ClusterFileError
from tools.private_files import write_private


def _started(tmp_path: Path) -> Path:
    """A cluster file whose cluster.json is in its state dir, as `cellctl up` leaves it."""
    path = write(tmp_path, variant(lambda d: d.update(state_dir="st")))
    cluster = clusterfile.load(path)
    (tmp_path / "st").mkdir()
    write_private(clusterfile.cluster_json(cluster), cluster.to_json() + "\n")
    return path


def _broken(doc: dict[str, Any]) -> None:
    doc["state_dir"] = "st"
    cell(doc)["bogus"] = 1


def test_status_of_a_started_cluster_shows_it_though_its_file_broke_since(tmp_path: Path) -> None:
    path = _started(tmp_path)
    started = clusterfile.load(path)
    write(tmp_path, variant(_broken))
    with pytest.raises(ClusterFileError):
        clusterfile.load(path)
    shown = cellctl._running_config(argparse.Namespace(file=str(path), state=None))
    assert shown.to_json() == started.to_json()
    assert shown.state_dir == str(tmp_path / "st")


def test_a_file_of_no_started_cluster_is_still_validated_whole(tmp_path: Path) -> None:
    path = write(tmp_path, variant(_broken))
    with pytest.raises(ClusterFileError, match="bogus"):
        cellctl._running_config(argparse.Namespace(file=str(path), state=None))


def test_a_state_dir_that_is_no_path_is_refused_by_status_as_by_the_resolver(tmp_path: Path) -> None:
    path = write(tmp_path, variant(lambda d: d.update(state_dir=5)))
    for read in (lambda: clusterfile.load(path), lambda: cellctl._state_of(argparse.Namespace(file=str(path), state=None))):
        with pytest.raises(ClusterFileError, match="state_dir: expected a directory path"):
            read()


def test_status_of_a_started_cluster_imports_neither_the_resolver_nor_the_db_nor_the_api_nor_prometheus(
        tmp_path: Path) -> None:
    """What the status path loads, in a fresh interpreter, up to its prober's RPC client: the cluster file's
    resolver (tools/clusterfile.py, and through it the DB settings), SQLAlchemy, aiohttp, importlib.metadata
    and prometheus_client (the CLI serves no /metrics) stay unloaded."""
    path = _started(tmp_path)
    code = ("import argparse, sys\nfrom tools import cellctl, health\nimport cells.rpc.client\n"
            f"cellctl.build_parser()\ncluster = cellctl._running_config(argparse.Namespace(file={str(path)!r}, state=None))\n"
            "health.Prober(cluster).close()\n"
            "print(sorted(m for m in ('tools.clusterfile', 'cells.db.settings', 'sqlalchemy', 'aiohttp', "
            "'importlib.metadata', 'prometheus_client', 'cells.metrics') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
