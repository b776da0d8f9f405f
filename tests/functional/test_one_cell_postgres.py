"""The one-cell CLI lifecycle (tests/functional/test_one_cell.py) with the API and cell DBs on the
cluster's managed PostgreSQL: `cellctl up` runs initdb under the state dir, starts a private server
(unix socket only) before the services and `cellctl down` stops it after them."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.test_one_cell import (  # noqa: F401 - pytest collects them here, on this module's cluster
    test_bad_create_is_400_and_creates_nothing,
    test_concurrent_deletes_all_succeed,
    test_malformed_json_unknown_server_and_bad_token,
    test_openstack_cli_lifecycle,
    test_projects_are_isolated,
    test_spawn_failure_ends_in_error_with_fault_and_releases_claim,
    test_status_reports_every_service_alive,
)
from tools import pgserver
from tools.devcluster import RunningCluster, running_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[RunningCluster]:
    reason = pgserver.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    # not under pytest's temp dir: it is closed to other users, and the server runs as postgres when root
    root = Path(tempfile.mkdtemp(prefix="cc-pg1-"))
    os.chmod(root, 0o711)  # traverse only: the state dir below it is opened to the postgres group alone
    try:
        with running_cluster(root, postgres=True) as c:
            pg = c.state / "postgres"
            assert (pg / "data" / "PG_VERSION").exists() and (pg / ".s.PGSQL.5432").exists()
            yield c
        assert not (pg / ".s.PGSQL.5432").exists(), "cellctl down left the cluster's PostgreSQL running"
    finally:
        server = pgserver.PrivateServer(root / "var" / "postgres")
        server.stop()  # a failed up may leave it running
        shutil.rmtree(root, ignore_errors=True)


def test_every_db_is_on_the_managed_postgresql(cluster: RunningCluster) -> None:
    """The services were given the managed server's URLs, and no SQLite file was made."""
    config = cluster.config
    assert config["api"]["db"].startswith("postgresql+psycopg://cc@/api?host=")
    assert config["cells"][0]["db"].startswith("postgresql+psycopg://cc@/cell_cell1?host=")
    assert not (cluster.state / "api.db").exists() and not list((cluster.state / "cells").glob("*.db"))


def test_a_postgresql_cell_and_a_sqlite_cell_serve_one_cluster() -> None:
    """cell1 (and the API) on the managed PostgreSQL, cell2 on a SQLite file: a boot into each cell's
    availability zone lands there, goes ACTIVE, lists in one merged listing and deletes."""
    reason = pgserver.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="cc-pgmix-"))
    os.chmod(root, 0o711)
    try:
        with running_cluster(root, hosts=2, postgres=True, sqlite_cell=True, name="pgmix") as c:
            cells = {cell["name"]: cell["db"] for cell in c.config["cells"]}
            assert cells["cell1"].startswith("postgresql+psycopg://") and cells["cell2"].startswith("sqlite")
            ids = {}
            for zone in ("cell1", "cell2"):
                server = c.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw",
                              "--availability-zone", zone, "--wait", f"in-{zone}", "-f", "json")
                assert server["status"] == "ACTIVE"
                ids[zone] = server["id"]
                shown = c.ok("server", "show", server["id"], "-f", "json", who="admin")
                assert shown["OS-EXT-SRV-ATTR:host"] == ("node1" if zone == "cell1" else "node2")
            listed = {s["ID"] for s in c.ok("server", "list", "-f", "json")}
            assert set(ids.values()) <= listed
            for sid in ids.values():
                c.ok("server", "delete", "--wait", sid)
            assert not set(ids.values()) & {s["ID"] for s in c.ok("server", "list", "-f", "json")}
    finally:
        pgserver.PrivateServer(root / "var" / "postgres").stop()
        shutil.rmtree(root, ignore_errors=True)
