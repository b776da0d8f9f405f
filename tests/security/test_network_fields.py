"""A hostile project member against /network/v2.0 (in-process API, real network controller over
ZeroMQ, real cell DB): the fields that wire a port or a network are refused (Neutron's 403
PolicyNotAuthorized), bad MACs and subnets on space the cloud reserves are 400, and every
refusal leaves the DB as it was: no port, network or subnet row, the victim's server addresses
and its host's configuration unchanged."""
from __future__ import annotations

import ipaddress
import uuid as uuidlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import Connection, func, select

from cells import errors
from cells.conductor.flows.boot import validate_build
from cells.config import HostSpec, ServiceSpec
from cells.db import instances as idb
from cells.db.engine import Database
from cells.network import instance_ports
from cells.network.controller import subnet_policy
from cells.network.schema import networks, ports, subnets
from cells.objects.instance import utcnow_iso
from tests.unit.api_support import make_cluster
from tests.unit.test_api_network import api_client

VICTIM_HOST = "node-victim"


@dataclass
class Scene:
    client: TestClient[Any, Any]
    member: dict[str, str]  # the hostile member's token (project demo)
    admin: dict[str, str]
    db: Database  # the cell DB the controller writes, opened beside it to set up and inspect
    member_project: str
    victim: str  # a server of the admin project with a port, bound to VICTIM_HOST
    member_net: str  # a network of the member's, with a subnet


async def _project_of(client: TestClient[Any, Any], headers: dict[str, str]) -> str:
    me = await (await client.get("/identity/v3/auth/tokens",
                                 headers={**headers, "X-Subject-Token": headers["X-Auth-Token"]})).json()
    return str(me["token"]["project"]["id"])


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    async with api_client(tmp_path) as (client, member, admin):
        db = Database(f"sqlite+aiosqlite:///{tmp_path}/cell1.db")
        try:
            victim_project = await _project_of(client, admin)
            victim = str(uuidlib.uuid4())
            rows = validate_build([{"uuid": victim, "name": "victim", "project_id": victim_project,
                                    "flavor": {"vcpus": 1, "ram": 64}}], {}, utcnow_iso(), "test")

            def boot(conn: Connection) -> None:  # what the boot flow does for it: ports, then the bind
                conn.execute(idb.INSERT, rows)
                instance_ports.allocate_for_instance(conn, victim, victim_project, None, None)
                instance_ports.bind_instance(conn, victim, VICTIM_HOST)
            await db.write(boot)
            resp = await client.post("/network/v2.0/networks", json={"network": {"name": "mine"}}, headers=member)
            net = (await resp.json())["network"]
            resp = await client.post("/network/v2.0/subnets", headers=member, json={"subnet": {
                "network_id": net["id"], "cidr": "192.168.60.0/24"}})
            assert resp.status == 201, await resp.text()
            yield Scene(client, member, admin, db, await _project_of(client, member), victim, net["id"])
        finally:
            await db.close()


async def _counts(s: Scene) -> tuple[int, int, int]:
    def count(conn: Connection) -> tuple[int, int, int]:
        return tuple(int(conn.execute(select(func.count()).select_from(t)).scalar_one())  # type: ignore[return-value]
                     for t in (networks, subnets, ports))
    return await s.db.read(count)


async def _victim_view(s: Scene) -> tuple[Any, Any]:
    """The victim server's addresses and its host's whole network configuration."""
    return await s.db.read(lambda c: (instance_ports.addresses(c, s.victim), instance_ports.host_config(c, VICTIM_HOST)))


async def _refused(s: Scene, method: str, path: str, body: dict[str, Any], status: int, kind: str,
                   headers: dict[str, str] | None = None) -> str:
    resp = await s.client.request(method, path, json=body, headers=headers or s.member)
    error = (await resp.json())["NeutronError"]
    assert (resp.status, error["type"]) == (status, kind), error
    return str(error["message"])


@pytest.mark.parametrize("mac", ["zz:zz:zz:zz:zz:zz", "fa:16:3e:00:00", "fa-16-3e-00-00-01", "01:00:5e:00:00:01",
                                 "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "fa:16:3e:00:00:01\nx", 42])
async def test_a_bad_or_multicast_mac_is_400_and_makes_no_port(scene: Scene, mac: Any) -> None:
    before = await _counts(scene)
    message = await _refused(scene, "POST", "/network/v2.0/ports",
                             {"port": {"network_id": scene.member_net, "mac_address": mac}}, 400, "InvalidInput")
    assert "MAC address" in message
    assert await _counts(scene) == before


async def test_a_valid_mac_is_stored_lower_case(scene: Scene) -> None:
    resp = await scene.client.post("/network/v2.0/ports", headers=scene.member, json={"port": {
        "network_id": scene.member_net, "mac_address": "FA:16:3E:AB:CD:EF"}})
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["port"]["mac_address"] == "fa:16:3e:ab:cd:ef"
    stored = await scene.db.read(lambda c: c.execute(select(ports.c.mac_address)
                                                     .where(ports.c.mac_address.ilike("fa:16:3e:ab:cd:ef"))).all())
    assert [r[0] for r in stored] == ["fa:16:3e:ab:cd:ef"]


@pytest.mark.parametrize("fields", [
    {"binding:host_id": VICTIM_HOST},
    {"binding:profile": {"pci_slot": "0000:00:01.0"}},
    {"device_owner": "compute:nova"},
    {"device_owner": "network:dhcp"},
    {"device_id": "VICTIM"},
    {"device_id": "VICTIM", "device_owner": "compute:nova"},
])
async def test_a_member_may_not_wire_a_new_port(scene: Scene, fields: dict[str, Any]) -> None:
    """binding:*, a compute/network device_owner and device_id are the boot flow's and admins'."""
    fields = {k: scene.victim if v == "VICTIM" else v for k, v in fields.items()}
    before, view = await _counts(scene), await _victim_view(scene)
    message = await _refused(scene, "POST", "/network/v2.0/ports",
                             {"port": {"network_id": scene.member_net, **fields}}, 403, "PolicyNotAuthorized")
    assert "is disallowed by policy" in message
    assert await _counts(scene) == before
    assert await _victim_view(scene) == view


@pytest.mark.parametrize("fields", [
    {"binding:host_id": VICTIM_HOST}, {"device_id": "VICTIM"}, {"device_owner": "compute:nova"},
])
async def test_a_member_may_not_rewire_its_own_port(scene: Scene, fields: dict[str, Any]) -> None:
    fields = {k: scene.victim if v == "VICTIM" else v for k, v in fields.items()}
    resp = await scene.client.post("/network/v2.0/ports", json={"port": {"network_id": scene.member_net}},
                                   headers=scene.member)
    port = (await resp.json())["port"]
    view = await _victim_view(scene)
    await _refused(scene, "PUT", f"/network/v2.0/ports/{port['id']}", {"port": fields}, 403, "PolicyNotAuthorized")
    after = (await (await scene.client.get(f"/network/v2.0/ports/{port['id']}", headers=scene.member)).json())["port"]
    assert after == port
    assert await _victim_view(scene) == view
    # a field sent back unchanged asks for nothing, as clients that echo a record do
    resp = await scene.client.put(f"/network/v2.0/ports/{port['id']}", headers=scene.member, json={"port": {
        "device_id": "", "binding:host_id": "", "name": "renamed"}})
    assert resp.status == 200 and (await resp.json())["port"]["name"] == "renamed"


async def test_a_port_joins_a_server_of_its_own_project_only_even_by_an_admin(scene: Scene) -> None:
    before, view = await _counts(scene), await _victim_view(scene)
    message = await _refused(scene, "POST", "/network/v2.0/ports", {"port": {
        "network_id": scene.member_net, "project_id": scene.member_project, "device_id": scene.victim,
        "device_owner": "compute:nova"}}, 409, "Conflict", headers=scene.admin)
    assert "another project" in message
    await _refused(scene, "POST", "/network/v2.0/ports", {"port": {
        "network_id": scene.member_net, "project_id": scene.member_project, "device_id": str(uuidlib.uuid4()),
        "device_owner": "compute:nova"}}, 400, "InvalidInput", headers=scene.admin)
    assert await _counts(scene) == before
    assert await _victim_view(scene) == view


@pytest.mark.parametrize("fields", [
    {"provider:segmentation_id": 1000}, {"provider:network_type": "vxlan"}, {"provider:physical_network": "x"},
    {"router:external": True}, {"shared": True},
])
async def test_a_member_may_not_set_how_a_network_is_wired(scene: Scene, fields: dict[str, Any]) -> None:
    before = await _counts(scene)
    await _refused(scene, "POST", "/network/v2.0/networks", {"network": {"name": "n", **fields}}, 403,
                   "PolicyNotAuthorized")
    assert await _counts(scene) == before


@pytest.mark.parametrize("cidr", [
    "127.0.0.0/24",  # loopback
    "169.254.169.0/24",  # link-local: the metadata address
    "224.0.0.0/24", "239.255.0.0/16",  # multicast
    "0.0.0.0/24", "240.0.0.0/24", "255.255.255.0/24",  # reserved, broadcast
    "10.250.0.0/24", "10.250.7.0/28",  # the cluster's netns range
    "10.0.0.0/8", "172.16.0.0/12",  # wider than the /16 a tenant may take
])
async def test_a_subnet_on_reserved_or_too_wide_space_is_400(scene: Scene, cidr: str) -> None:
    before = await _counts(scene)
    message = await _refused(scene, "POST", "/network/v2.0/subnets",
                             {"subnet": {"network_id": scene.member_net, "cidr": cidr}}, 400, "InvalidInput")
    assert cidr.split("/")[0] in message or "too large" in message
    assert await _counts(scene) == before


async def test_segmentation_ids_come_from_the_gaps(scene: Scene) -> None:
    """A freed VNI is not reused while higher ones are free (a host may still hold its VXLAN device);
    once the top of the range is taken (here by an admin), allocation goes on in the gaps instead of
    running out."""
    async def create(headers: dict[str, str], **fields: Any) -> dict[str, Any]:
        resp = await scene.client.post("/network/v2.0/networks", json={"network": {"name": "g", **fields}},
                                       headers=headers)
        assert resp.status == 201, await resp.text()
        return dict((await resp.json())["network"])

    first, second = await create(scene.member), await create(scene.member)
    assert (await scene.client.delete(f"/network/v2.0/networks/{first['id']}", headers=scene.member)).status == 204
    third = await create(scene.member)
    assert third["provider:segmentation_id"] == second["provider:segmentation_id"] + 1

    top = await create(scene.admin, **{"provider:segmentation_id": (1 << 24) - 1})
    assert (await create(scene.member))["provider:segmentation_id"] == first["provider:segmentation_id"]
    made = [await create(scene.member) for _ in range(3)]
    vnis = [n["provider:segmentation_id"] for n in made]
    assert vnis == list(range(vnis[0], vnis[0] + 3))
    assert (await scene.client.delete(f"/network/v2.0/networks/{made[1]['id']}", headers=scene.member)).status == 204
    again = await create(scene.member)
    assert again["provider:segmentation_id"] == vnis[1]
    assert top["provider:segmentation_id"] == (1 << 24) - 1


def test_the_clusters_own_addresses_and_netns_range_are_reserved_for_subnets() -> None:
    """The controller's subnet policy comes from cluster.json: every host's and service's address and
    netns.range are off limits, and min_subnet_prefix bounds a subnet's size."""
    base = make_cluster(Path("/nonexistent"), router="tcp://10.20.0.7:5601")
    cluster = replace(base, netns_range="10.251.0.0/16", hosts=(HostSpec("node1", "172.30.4.9"),),
                      services=(ServiceSpec("cell1/router", "router", "ctl", "tcp://10.20.0.7:5601", "cell1"),))
    rules = subnet_policy(cluster, {"min_subnet_prefix": 20})
    for cidr in ("172.30.4.0/24", "10.20.0.0/28", "10.251.9.0/24", "169.254.1.0/24", "10.40.0.0/19"):
        with pytest.raises(errors.Invalid):
            rules.check(ipaddress.ip_network(cidr))
    for cidr in ("172.30.5.0/24", "10.20.1.0/24", "10.250.0.0/24", "10.40.0.0/20"):
        rules.check(ipaddress.ip_network(cidr))  # 10.250/16 is this cluster's default only
    for cidr in ("::1/128", "fe80::/64", "ff02::/64"):
        with pytest.raises(errors.Invalid):
            rules.check(ipaddress.ip_network(cidr))
