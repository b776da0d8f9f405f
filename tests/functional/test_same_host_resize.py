"""Same-host resize (issue 8) where the cell allows it (cluster.yaml
allow_resize_to_same_host: true) on a one-host cell, real processes: the unmodified
`openstack` CLI resizes and waits for VERIFY_RESIZE on the same host with both flavors
claimed there; revert and confirm leave one claim of the right flavor; a migration
still never picks the server's own host."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.functional.test_moves import Admin, claims
from tools.bench.boot import TEST_NODE
from tools.devcluster import RunningCluster, running_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    root = tmp_path_factory.mktemp("samehost")
    node = root / "testnode.xml"  # a test hypervisor with room for both flavors at once
    node.write_text(TEST_NODE)
    with running_cluster(root / "cluster", hosts=1, virt_uri=f"test://{node}", same_host_resize=True) as c:
        yield c


def test_resize_stays_on_its_host_where_the_cell_allows_it(cluster: RunningCluster) -> None:
    api = Admin(cluster)
    sid = api.boot("samehost")
    assert api.host(sid) == "node1" and claims(cluster)[sid] == ("node1", 512, 1)
    done = cluster.cli("server", "resize", "--flavor", "m1.small", "--wait", sid)
    assert done.returncode == 0, done.stderr
    doc = api.wait(sid, "VERIFY_RESIZE")
    assert api.host(sid) == "node1" and doc["flavor"]["id"] == "2"
    held = claims(cluster)
    assert held[sid] == ("node1", 512, 1)  # the old flavor, until confirm or revert
    assert [v for k, v in held.items() if k != sid] == [("node1", 2048, 20)]  # the new one, under the migration
    assert cluster.cli("server", "resize", "revert", sid).returncode == 0
    doc = api.wait(sid, "ACTIVE")
    assert doc["flavor"]["id"] == "1" and claims(cluster) == {sid: ("node1", 512, 1)}
    assert cluster.cli("server", "resize", "--flavor", "m1.small", "--wait", sid).returncode == 0
    assert cluster.cli("server", "resize", "confirm", sid).returncode == 0
    doc = api.wait(sid, "ACTIVE")
    assert doc["flavor"]["id"] == "2" and claims(cluster) == {sid: ("node1", 2048, 20)}
    log = cluster.log("cell1/compute/node1")
    assert f"instance {sid} on node1: flavor m1.small in place" in log and "moved here" not in log
    assert api.post(sid, {"migrate": None}, admin=True).status_code == 202  # never the same host
    api.wait(sid, "ACTIVE")
    migrate = next(a for a in api.events(sid) if a[0] == "migrate")[1]
    assert ("compute_prep_resize", "Error") in migrate, migrate
    assert api.host(sid) == "node1" and claims(cluster) == {sid: ("node1", 2048, 20)}
