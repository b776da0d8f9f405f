"""/network/v2.0/quotas against a real network controller: Neutron's default limits, the
N+1th resource refused with 409 OverQuota in the write that would make it (nothing made,
even by concurrent creates), details counting what the project really holds, limits
settable and resettable by admins only, and the unmodified `openstack quota show`."""
from __future__ import annotations

import asyncio
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import Connection

from api.compute.server_create import BuildSpec, request_spec
from cells import errors
from cells.conductor.flows.boot import validate_build
from cells.db import instances as idb
from cells.network.controller import NetworkController
from cells.objects.instance import utcnow_iso
from tests.unit.test_api_network import _cli, api_client, cli_api, cli_as
from tests.unit.test_network_ipam import DEMO, _net, controllers
from tools.openstack_cli import OPENSTACK


async def _admin_cli(home: Path, url: str, *args: str) -> None:
    await cli_as(home, url, "admin", *args)


__all__ = ["controllers"]
NEUTRON_DEFAULTS = {"network": 100, "subnet": 100, "port": 500, "security_group": 10, "security_group_rule": 100,
                    "router": 10, "floatingip": 50, "rbac_policy": -1, "subnetpool": -1}


async def _project(client: TestClient[Any, Any], headers: dict[str, str]) -> str:
    me = await (await client.get("/identity/v3/auth/tokens",
                                 headers={**headers, "X-Subject-Token": headers["X-Auth-Token"]})).json()
    return str(me["token"]["project"]["id"])


async def _names(client: TestClient[Any, Any], headers: dict[str, str], collection: str) -> list[str]:
    return [r["name"] for r in (await (await client.get(f"/network/v2.0/{collection}", headers=headers)).json())
            [collection.replace("-", "_")]]


async def test_defaults_are_neutrons_and_details_count_real_use(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, _admin):
        project = await _project(client, demo)
        resp = await client.post("/network/v2.0/networks", json={"network": {"name": "blue"}}, headers=demo)
        assert resp.status == 201
        shown = (await (await client.get(f"/network/v2.0/quotas/{project}", headers=demo)).json())["quota"]
        assert shown == NEUTRON_DEFAULTS
        default = await (await client.get(f"/network/v2.0/quotas/{project}/default", headers=demo)).json()
        assert default["quota"] == NEUTRON_DEFAULTS
        details = (await (await client.get(f"/network/v2.0/quotas/{project}/details", headers=demo)).json())["quota"]
        nets = await _names(client, demo, "networks")
        assert sorted(nets) == ["blue", "private"]  # private: made on first use, and counted
        assert details["network"] == {"limit": 100, "used": 2, "reserved": 0}
        assert details["subnet"]["used"] == 1 and details["router"] == {"limit": 10, "used": 0, "reserved": 0}
        assert details["security_group"]["used"] == 1  # the default group

        resp = await client.get("/network/v2.0/quotas/someone-else", headers=demo)
        assert resp.status == 403 and (await resp.json())["NeutronError"]["type"] == "PolicyNotAuthorized"
        resp = await client.get("/network/v2.0/quotas", headers=demo)
        assert resp.status == 403


async def test_the_n_plus_first_network_is_409_over_quota_and_nothing_is_made(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, admin):
        project = await _project(client, demo)
        resp = await client.put(f"/network/v2.0/quotas/{project}", json={"quota": {"network": 3}}, headers=demo)
        assert resp.status == 403  # a member does not set its own limits
        resp = await client.put(f"/network/v2.0/quotas/{project}", json={"quota": {"network": 3}}, headers=admin)
        assert resp.status == 200 and (await resp.json())["quota"]["network"] == 3
        assert (await (await client.get("/network/v2.0/quotas", headers=admin)).json())["quotas"] == [
            {"project_id": project, "tenant_id": project, **NEUTRON_DEFAULTS, "network": 3}]
        await _names(client, demo, "networks")  # the default network: 1 of 3

        async def create(name: str) -> int:
            resp = await client.post("/network/v2.0/networks", json={"network": {"name": name}}, headers=demo)
            body = await resp.json()
            if resp.status == 409:
                assert body["NeutronError"]["type"] == "OverQuota"
                assert body["NeutronError"]["message"] == "Quota exceeded for resources: ['network']."
            return resp.status
        # concurrent creates race for the last two: exactly two pass, checked in the writes themselves
        statuses = await asyncio.gather(*(create(f"n{i}") for i in range(6)))
        assert sorted(statuses) == [201, 201, 409, 409, 409, 409]
        assert len(await _names(client, demo, "networks")) == 3
        details = (await (await client.get(f"/network/v2.0/quotas/{project}/details", headers=demo)).json())["quota"]
        assert details["network"] == {"limit": 3, "used": 3, "reserved": 0}

        resp = await client.delete(f"/network/v2.0/quotas/{project}", headers=admin)
        assert resp.status == 204
        assert (await (await client.get(f"/network/v2.0/quotas/{project}", headers=demo)).json())["quota"] == \
            NEUTRON_DEFAULTS
        assert await create("after-reset") == 201


async def test_each_counted_kind_stops_at_its_limit(tmp_path: Path) -> None:
    """subnet, port, security_group and security_group_rule are counted like networks."""
    async with api_client(tmp_path) as (client, demo, admin):
        project = await _project(client, demo)
        [private] = [n for n in (await (await client.get("/network/v2.0/networks", headers=demo)).json())["networks"]]
        groups = (await (await client.get("/network/v2.0/security-groups", headers=demo)).json())["security_groups"]
        limits = {"subnet": 1, "port": 1, "security_group": 1, "security_group_rule": 4}  # what first use made
        resp = await client.put(f"/network/v2.0/quotas/{project}", json={"quota": limits}, headers=admin)
        assert resp.status == 200, await resp.text()
        assert (await client.post("/network/v2.0/ports", json={"port": {"network_id": private["id"]}},
                                  headers=demo)).status == 201
        attempts = {
            "subnet": {"network_id": private["id"], "cidr": "192.168.77.0/24"},
            "port": {"network_id": private["id"]},
            "security_group": {"name": "web"},
            "security_group_rule": {"security_group_id": groups[0]["id"], "direction": "ingress",
                                    "protocol": "tcp", "port_range_min": 22, "port_range_max": 22},
        }
        for kind, body in attempts.items():
            collection = kind.replace("_", "-") + "s"
            before = (await (await client.get(f"/network/v2.0/{collection}", headers=demo)).json())
            resp = await client.post(f"/network/v2.0/{collection}", json={kind: body}, headers=demo)
            assert resp.status == 409, (kind, await resp.text())
            assert (await resp.json())["NeutronError"]["type"] == "OverQuota"
            after = (await (await client.get(f"/network/v2.0/{collection}", headers=demo)).json())
            assert after == before, kind


async def test_a_bad_quota_change_is_400_and_changes_nothing(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, admin):
        project = await _project(client, demo)
        for body in ({"quota": {"network": -2}}, {"quota": {"network": "many"}}, {"quota": {"subnetpool": 5}},
                     {"quota": {"bogus": 1}}, {"network": 5}, {"quota": {"network": True}}):
            resp = await client.put(f"/network/v2.0/quotas/{project}", json=body, headers=admin)
            assert resp.status == 400, body
        shown = (await (await client.get(f"/network/v2.0/quotas/{project}", headers=demo)).json())["quota"]
        assert shown == NEUTRON_DEFAULTS


@pytest.mark.slow
@pytest.mark.skipif(not OPENSTACK.exists(), reason="python-openstackclient is not installed")
async def test_openstack_quota_show_lists_the_network_limits(tmp_path: Path) -> None:
    async with cli_api(tmp_path) as url:
        rows = await _cli(tmp_path, url, "quota", "show", "--network", "-f", "json")
        shown = {r["Resource"]: r["Limit"] for r in rows}
        assert (shown["networks"], shown["subnets"], shown["ports"]) == (100, 100, 500)
        assert (shown["security_groups"], shown["security_group_rules"], shown["routers"]) == (10, 100, 10)
        await _admin_cli(tmp_path, url, "quota", "set", "--networks", "5", "--ports", "7", "demo")
        rows = await _cli(tmp_path, url, "quota", "show", "--network", "-f", "json")
        shown = {r["Resource"]: r["Limit"] for r in rows}
        assert (shown["networks"], shown["ports"], shown["subnets"]) == (5, 7, 100)


async def _instance(c: NetworkController, project: str = "demo") -> str:
    uuid = str(uuidlib.uuid4())
    rows = validate_build([{"uuid": uuid, "name": "vm", "project_id": project, "flavor": {"vcpus": 1, "ram": 64}}],
                          {}, utcnow_iso(), "test")

    def insert(conn: Connection) -> None:
        conn.execute(idb.INSERT, rows)
    await c.db.write(insert)
    return uuid


async def test_ports_a_boot_makes_count_against_the_port_quota(
        controllers: tuple[NetworkController, NetworkController]) -> None:
    """The boot flow's allocate_for_instance checks the project's port limit (the API puts it in the
    request_spec) in the write that makes the ports: past it OverQuota, and the instance gets none."""
    c, _ = controllers
    net, _ = await _net(c, DEMO, "192.168.33.0/24")
    await c.port_create(DEMO, {"network_id": net}, {"project": "demo", "limit": 2})  # 1 of 2
    first = await _instance(c)
    assert await c.allocate_for_instance(DEMO, first, "demo", [{"uuid": net}], None, 2)
    second = await _instance(c)
    with pytest.raises(errors.OverQuota):
        await c.allocate_for_instance(DEMO, second, "demo", [{"uuid": net}, {"uuid": net}], None, 3)
    assert await c.port_list(DEMO, {"device_id": second}) == []  # both of its ports rolled back
    assert len(await c.port_list(DEMO, {})) == 2
    assert await c.allocate_for_instance(DEMO, second, "demo", [{"uuid": net}], None, -1)  # -1: unlimited


def test_the_boot_request_spec_carries_the_port_limit() -> None:
    spec = BuildSpec(name="vm", count=1, flavor={}, image={}, metadata={}, key_name=None, key_data=None,
                     availability_zone="nova", user_data=None, access_ipv4=None, access_ipv6=None, hints={},
                     limits={"port": 7})
    assert request_spec(spec, DEMO, [{"uuid": "u"}])["port_quota"] == 7
