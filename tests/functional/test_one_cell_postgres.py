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
