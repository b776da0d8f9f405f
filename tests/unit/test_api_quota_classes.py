"""os-quota-class-sets over HTTP against a real SQLite API DB: an admin changes the "default" class and
every project without its own limit gets it (quota set, defaults); a project's own limit still
wins; another class limits nobody; the resources each microversion shows; members get 403."""
from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.api_support import SECRETS, admin_headers, auth_body, client, cluster, demo_headers

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name

CLASSES = "/compute/v2.1/os-quota-class-sets"


def _at(headers: dict[str, str], version: str) -> dict[str, str]:
    return {**headers, "OpenStack-API-Version": f"compute {version}"}


async def _demo_project(client: TestClient[Any, Any]) -> str:
    resp = await client.post("/identity/v3/auth/tokens", json=auth_body("demo", SECRETS["demo_password"], "demo"))
    return str((await resp.json())["token"]["project"]["id"])


async def test_the_default_class_is_every_projects_default(client: TestClient[Any, Any],
                                                           admin_headers: dict[str, str],
                                                           demo_headers: dict[str, str]) -> None:
    resp = await client.get(f"{CLASSES}/default", headers=admin_headers)
    assert resp.status == 200
    shown = (await resp.json())["quota_class_set"]
    assert shown["id"] == "default" and shown["cores"] == 20 and shown["instances"] == 10

    resp = await client.put(f"{CLASSES}/default", json={"quota_class_set": {"cores": 33, "instances": "7"}},
                            headers=admin_headers)
    assert resp.status == 200, await resp.text()
    updated = (await resp.json())["quota_class_set"]
    assert "id" not in updated and (updated["cores"], updated["instances"], updated["ram"]) == (33, 7, 51200)

    demo = await _demo_project(client)
    quota_set = (await (await client.get(f"/compute/v2.1/os-quota-sets/{demo}", headers=demo_headers)).json())
    assert (quota_set["quota_set"]["cores"], quota_set["quota_set"]["instances"]) == (33, 7)
    defaults = await (await client.get(f"/compute/v2.1/os-quota-sets/{demo}/defaults", headers=demo_headers)).json()
    assert defaults["quota_set"]["cores"] == 33

    # a project's own limit beats the class; another class limits nobody
    resp = await client.put(f"/compute/v2.1/os-quota-sets/{demo}", json={"quota_set": {"cores": 5}},
                            headers=admin_headers)
    assert resp.status == 200
    resp = await client.put(f"{CLASSES}/gold", json={"quota_class_set": {"instances": 99}}, headers=admin_headers)
    assert resp.status == 200
    assert (await (await client.get(f"{CLASSES}/gold", headers=admin_headers)).json())["quota_class_set"]["instances"] \
        == 99
    quota_set = (await (await client.get(f"/compute/v2.1/os-quota-sets/{demo}", headers=demo_headers)).json())
    assert (quota_set["quota_set"]["cores"], quota_set["quota_set"]["instances"]) == (5, 7)


async def test_quota_class_resources_follow_the_microversion(client: TestClient[Any, Any],
                                                             admin_headers: dict[str, str]) -> None:
    keys = {}
    for version in ("2.1", "2.50", "2.57"):
        resp = await client.get(f"{CLASSES}/default", headers=_at(admin_headers, version))
        keys[version] = set((await resp.json())["quota_class_set"])
    assert {"fixed_ips", "floating_ips", "security_groups", "security_group_rules", "injected_files"} <= keys["2.1"]
    assert not {"server_groups", "server_group_members"} & keys["2.1"]
    assert {"server_groups", "server_group_members", "injected_files"} <= keys["2.50"]
    assert not {"fixed_ips", "floating_ips", "security_groups", "security_group_rules"} & keys["2.50"]
    assert keys["2.57"] == keys["2.50"] - {"injected_files", "injected_file_content_bytes",
                                           "injected_file_path_bytes"}
    # what a version does not show, it does not take
    resp = await client.put(f"{CLASSES}/default", json={"quota_class_set": {"server_groups": 3}},
                            headers=_at(admin_headers, "2.1"))
    assert resp.status == 400
    resp = await client.put(f"{CLASSES}/default", json={"quota_class_set": {"floating_ips": 3}},
                            headers=_at(admin_headers, "2.50"))
    assert resp.status == 400


async def test_quota_classes_refusals(client: TestClient[Any, Any], admin_headers: dict[str, str],
                                      demo_headers: dict[str, str]) -> None:
    assert (await client.get(f"{CLASSES}/default", headers=demo_headers)).status == 403
    resp = await client.put(f"{CLASSES}/default", json={"quota_class_set": {"cores": 1}}, headers=demo_headers)
    assert resp.status == 403
    assert "os-quota-class-sets:update" in (await resp.json())["forbidden"]["message"]
    bads: list[Any] = [{"quota_class_set": {"cores": "lots"}}, {"quota_class_set": {"cores": -2}},
                       {"quota_class_set": {"cores": 2 ** 31}}, {"quota_class_set": {"color": 1}}, {"cores": 1}]
    for bad in bads:
        resp = await client.put(f"{CLASSES}/default", json=bad, headers=admin_headers)
        assert resp.status == 400, bad
    shown = (await (await client.get(f"{CLASSES}/default", headers=admin_headers)).json())["quota_class_set"]
    assert shown["cores"] == 20  # nothing half-made
