"""On a real cluster (cellctl up) with the unmodified `openstack` CLI: security groups
added to and removed from a server (issue 5), and the key pair a server booted with
reaching the metadata service through the cell conductor's instance_by_address (issue 7)."""
from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.cell_router import CellClient
from cells.config import ClusterConfig
from cells.context import admin_context
from cells.objects.records import InstanceRecord
from cells.rpc import security
from node.network import metadata
from tools.devcluster import RunningCluster, running_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("secgroups")) as c:
        yield c


def fails(cluster: RunningCluster, *args: str) -> str:
    done = cluster.cli(*args)
    assert done.returncode != 0, f"openstack {' '.join(args)} should have failed: {done.stdout}"
    return done.stderr


def groups_of(cluster: RunningCluster, server: str) -> list[str]:
    shown = cluster.ok("server", "show", server, "-f", "json")
    return [g["name"] for g in shown.get("security_groups") or []]


def test_server_add_and_remove_security_group(cluster: RunningCluster) -> None:
    web = cluster.ok("security", "group", "create", "web", "-f", "json")
    cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "sg1")
    assert groups_of(cluster, "sg1") == ["default"]

    cluster.ok("server", "add", "security", "group", "sg1", "web")
    assert groups_of(cluster, "sg1") == ["default", "web"]
    [port] = cluster.ok("port", "list", "--server", "sg1", "-f", "json")
    assert web["id"] in cluster.ok("port", "show", port["ID"], "-f", "json")["security_group_ids"]
    assert "is already associated with the instance" in fails(cluster, "server", "add", "security", "group",
                                                              "sg1", "web")
    assert "is not found for project" in fails(cluster, "server", "add", "security", "group", "sg1", "nope")

    cluster.ok("server", "remove", "security", "group", "sg1", "web")
    assert groups_of(cluster, "sg1") == ["default"]
    assert web["id"] not in cluster.ok("port", "show", port["ID"], "-f", "json")["security_group_ids"]
    assert "not associated with the instance" in fails(cluster, "server", "remove", "security", "group",
                                                       "sg1", "web")
    cluster.ok("server", "remove", "security", "group", "sg1", "default")
    assert groups_of(cluster, "sg1") == []  # no group left: Nova leaves the key out

    events = [e["Action"] for e in cluster.ok("server", "event", "list", "sg1", "-f", "json")]
    assert sorted(events) == ["addSecurityGroup", "create", "removeSecurityGroup", "removeSecurityGroup"]
    cluster.ok("server", "delete", "--wait", "sg1")
    cluster.ok("security", "group", "delete", "web")  # no port holds it any more


async def _lookup_and_serve(cluster: RunningCluster, address: str) -> tuple[InstanceRecord, dict[str, str]]:
    """The cell conductor's record for `address` (asked as the metadata service asks it, with the
    operator's key) and what the metadata app makes of it."""
    cfg = ClusterConfig.load(cluster.state / "cluster.json")
    cell = CellClient(cfg.cell("cell1"), cfg.heartbeat_interval, security.load_keys(cfg.state_dir, security.OPERATOR),
                      cfg.router_key("cell1"))
    task = asyncio.create_task(cell.run())
    try:
        await cell.view.wait_synced(10)
        found = await cell.conductor.instance_by_address(admin_context(), address)
        # the test reaches the app from loopback: stand in for the guest's source address, as a NAT would
        app = metadata.make_app(lambda source: cell.conductor.instance_by_address(
            admin_context(), {"127.0.0.1": address}[source]))
        async with TestClient(TestServer(app)) as client:
            served = {p: await (await client.get(p)).text() for p in (
                "/latest/meta-data/public-keys", "/latest/meta-data/public-keys/0/openssh-key",
                "/openstack/latest/meta_data.json")}
        return found, served
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        cell.close()


def test_the_key_pair_reaches_the_metadata_service(cluster: RunningCluster, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@laptop", "-f", str(tmp_path / "id")],
                   check=True)
    public = (tmp_path / "id.pub").read_text().strip()
    cluster.ok("keypair", "create", "--public-key", str(tmp_path / "id.pub"), "mine")
    server = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--key-name", "mine",
                "--wait", "-f", "json", "keyed")
    assert server["key_name"] == "mine"
    [address] = [a for nets in cluster.ok("server", "show", "keyed", "-f", "json")["addresses"].values()
                 for a in nets]
    cluster.ok("keypair", "delete", "mine")  # the server keeps the key it was booted with, as Nova's

    found, served = asyncio.run(_lookup_and_serve(cluster, address))
    assert (found["uuid"], found["key_name"], found["key_data"]) == (server["id"], "mine", public)
    assert served["/latest/meta-data/public-keys"] == "0=mine"
    assert served["/latest/meta-data/public-keys/0/openssh-key"] == public + "\n"
    doc = json.loads(served["/openstack/latest/meta_data.json"])
    assert doc["public_keys"] == {"mine": public} and doc["keys"] == [{"name": "mine", "type": "ssh", "data": public}]
    cluster.ok("server", "delete", "--wait", "keyed")


def test_server_on_a_network_the_project_made(cluster: RunningCluster) -> None:
    cluster.ok("network", "create", "blue", "-f", "json")
    cluster.ok("subnet", "create", "--network", "blue", "--subnet-range", "172.31.7.0/24", "blue-sub", "-f", "json")
    cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--network", "blue", "--wait", "nb1")
    shown = cluster.ok("server", "show", "nb1", "-f", "json")
    (address,) = shown["addresses"]["blue"]  # the CLI prints {network: [ip, ...]}
    assert address.startswith("172.31.7.")  # a fixed IP of the subnet, its port on the network
    [port] = cluster.ok("port", "list", "--server", "nb1", "-f", "json")
    assert port["Fixed IP Addresses"][0]["ip_address"] == address
    assert "ports" in fails(cluster, "network", "delete", "blue")  # in use: 409
    cluster.ok("server", "delete", "--wait", "nb1")
    assert cluster.ok("port", "list", "--network", "blue", "-f", "json") == []  # the boot's port went with it
    cluster.ok("network", "delete", "blue")
