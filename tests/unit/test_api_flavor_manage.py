"""Flavor administration at 2.1: admin flavor create/delete with Nova's validation and
conflicts, os-extra_specs (read by members, written by admins only) and the
os-flavor-access list, against a real SQLite API DB."""
from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.api_support import admin_headers, client, cluster, demo_headers

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name

FLAVORS = "/compute/v2.1/flavors"


async def _create(client: TestClient[Any, Any], headers: dict[str, str], **flavor: Any) -> Any:
    return await client.post(FLAVORS, json={"flavor": flavor}, headers=headers)


async def test_admin_creates_shows_and_deletes_a_flavor(client: TestClient[Any, Any],
                                                         admin_headers: dict[str, str]) -> None:
    resp = await _create(client, admin_headers, name="m2.big", id="42", ram="4096", vcpus=2, disk=10,
                         swap=512, rxtx_factor=2.0)
    assert resp.status == 200, await resp.text()
    flavor = (await resp.json())["flavor"]
    assert {k: flavor[k] for k in ("id", "name", "ram", "vcpus", "disk", "swap", "rxtx_factor",
                                   "os-flavor-access:is_public", "OS-FLV-EXT-DATA:ephemeral")} == {
        "id": "42", "name": "m2.big", "ram": 4096, "vcpus": 2, "disk": 10, "swap": 512, "rxtx_factor": 2.0,
        "os-flavor-access:is_public": True, "OS-FLV-EXT-DATA:ephemeral": 0}
    shown = await (await client.get(f"{FLAVORS}/42", headers=admin_headers)).json()
    assert shown["flavor"] == flavor
    resp = await client.delete(f"{FLAVORS}/42", headers=admin_headers)
    assert resp.status == 202
    assert (await client.get(f"{FLAVORS}/42", headers=admin_headers)).status == 404
    assert (await client.delete(f"{FLAVORS}/42", headers=admin_headers)).status == 404


async def test_flavor_without_id_gets_a_uuid(client: TestClient[Any, Any], admin_headers: dict[str, str]) -> None:
    resp = await _create(client, admin_headers, name="gen", ram=64, vcpus=1, disk=0, id=None)
    assert resp.status == 200
    assert len((await resp.json())["flavor"]["id"]) == 36


async def test_flavor_create_conflicts_and_bad_input(client: TestClient[Any, Any],
                                                     admin_headers: dict[str, str]) -> None:
    resp = await _create(client, admin_headers, name="m1.tiny", ram=64, vcpus=1, disk=0)
    assert resp.status == 409
    assert (await resp.json())["conflictingRequest"]["message"] == "Flavor with name m1.tiny already exists."
    resp = await _create(client, admin_headers, name="other", id="1", ram=64, vcpus=1, disk=0)
    assert resp.status == 409
    assert (await resp.json())["conflictingRequest"]["message"] == "Flavor with ID 1 already exists."
    for bad in ({"name": "x", "ram": 0, "vcpus": 1, "disk": 0}, {"name": "x", "ram": 64, "vcpus": 1},
                {"name": " x", "ram": 64, "vcpus": 1, "disk": 0}, {"name": "x", "ram": 64, "vcpus": 1, "disk": -1},
                {"name": "x", "ram": 64, "vcpus": 1, "disk": 0, "id": "a/b"},
                {"name": "x", "ram": 2147483648, "vcpus": 1, "disk": 0},
                {"name": "x", "ram": 64, "vcpus": 1, "disk": 0, "rxtx_factor": 0},
                {"name": "x", "ram": 64, "vcpus": 1, "disk": 0, "color": "red"}):
        resp = await _create(client, admin_headers, **bad)
        assert resp.status == 400, bad
        assert "badRequest" in await resp.json()
    names = [f["name"] for f in (await (await client.get(f"{FLAVORS}?is_public=none",
                                                         headers=admin_headers)).json())["flavors"]]
    assert "x" not in names and "other" not in names


async def test_members_may_not_manage_flavors(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    resp = await _create(client, demo_headers, name="mine", ram=64, vcpus=1, disk=0)
    assert resp.status == 403
    assert "os-flavor-manage:create" in (await resp.json())["forbidden"]["message"]
    assert (await client.delete(f"{FLAVORS}/1", headers=demo_headers)).status == 403
    resp = await client.post(f"{FLAVORS}/1/os-extra_specs", json={"extra_specs": {"a": "b"}}, headers=demo_headers)
    assert resp.status == 403
    assert (await client.put(f"{FLAVORS}/1/os-extra_specs/a", json={"a": "c"}, headers=demo_headers)).status == 403
    assert (await client.delete(f"{FLAVORS}/1/os-extra_specs/a", headers=demo_headers)).status == 403
    assert (await client.get(f"{FLAVORS}/1", headers=demo_headers)).status == 200


async def test_extra_specs_lifecycle(client: TestClient[Any, Any], admin_headers: dict[str, str],
                                     demo_headers: dict[str, str]) -> None:
    specs = f"{FLAVORS}/1/os-extra_specs"
    resp = await client.get(specs, headers=demo_headers)
    assert resp.status == 200 and await resp.json() == {"extra_specs": {}}
    resp = await client.post(specs, json={"extra_specs": {"hw:cpu_policy": "shared", "quota:vif": 5,
                                                         "trust": True}}, headers=admin_headers)
    assert resp.status == 200
    assert await resp.json() == {"extra_specs": {"hw:cpu_policy": "shared", "quota:vif": "5", "trust": "True"}}
    resp = await client.put(f"{specs}/quota:vif", json={"quota:vif": "7"}, headers=admin_headers)
    assert resp.status == 200 and await resp.json() == {"quota:vif": "7"}
    resp = await client.get(f"{specs}/quota:vif", headers=demo_headers)
    assert await resp.json() == {"quota:vif": "7"}
    assert (await client.delete(f"{specs}/trust", headers=admin_headers)).status == 200
    resp = await client.get(specs, headers=demo_headers)
    assert await resp.json() == {"extra_specs": {"hw:cpu_policy": "shared", "quota:vif": "7"}}
    resp = await client.get(f"{specs}/trust", headers=demo_headers)
    assert resp.status == 404
    assert (await resp.json())["itemNotFound"]["message"] == "Flavor 1 has no extra specs with key trust."
    assert (await client.delete(f"{specs}/trust", headers=admin_headers)).status == 404


async def test_extra_specs_bad_input(client: TestClient[Any, Any], admin_headers: dict[str, str]) -> None:
    specs = f"{FLAVORS}/1/os-extra_specs"
    bodies: list[dict[str, Any]] = [{"extra_specs": {"bad/key": "v"}}, {"extra_specs": {"k": ""}},
                                    {"extra_specs": {"k": None}}, {"extra_specs": {"k": "v" * 256}}, {"specs": {}}]
    for body in bodies:
        assert (await client.post(specs, json=body, headers=admin_headers)).status == 400, body
    resp = await client.put(f"{specs}/a", json={"b": "1"}, headers=admin_headers)
    assert resp.status == 400 and (await resp.json())["badRequest"]["message"] == "Request body and URI mismatch"
    resp = await client.put(f"{specs}/a", json={"a": "1", "b": "2"}, headers=admin_headers)
    assert (await resp.json())["badRequest"]["message"] == "Request body contains too many items"
    resp = await client.post(f"{FLAVORS}/nope/os-extra_specs", json={"extra_specs": {"a": "b"}},
                             headers=admin_headers)
    assert resp.status == 404
    assert await (await client.get(specs, headers=admin_headers)).json() == {"extra_specs": {}}


async def test_private_flavor_access_list(client: TestClient[Any, Any], admin_headers: dict[str, str],
                                          demo_headers: dict[str, str]) -> None:
    resp = await _create(client, admin_headers, name="secret", id="s1", ram=64, vcpus=1, disk=0,
                         **{"os-flavor-access:is_public": False})
    assert (await resp.json())["flavor"]["os-flavor-access:is_public"] is False
    resp = await client.get(f"{FLAVORS}/s1/os-flavor-access", headers=admin_headers)
    assert resp.status == 200 and await resp.json() == {"flavor_access": []}
    resp = await client.get(f"{FLAVORS}/1/os-flavor-access", headers=admin_headers)
    assert resp.status == 404
    assert (await resp.json())["itemNotFound"]["message"] == "Access list not available for public flavors."
    assert (await client.get(f"{FLAVORS}/s1", headers=demo_headers)).status == 404
    assert (await client.get(f"{FLAVORS}/s1/os-extra_specs", headers=demo_headers)).status == 404
