"""os-flavor-access over HTTP against a real SQLite API DB: an admin shares a private flavor with a
project (addTenantAccess) and takes it back (removeTenantAccess); the project sees, shows and lists the
flavor exactly while it is shared; Nova's 400/403/404/409 for what is refused."""
from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.api_support import SECRETS, admin_headers, auth_body, client, cluster, demo_headers

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name

FLAVORS = "/compute/v2.1/flavors"


async def _project_id(client: TestClient[Any, Any], user: str, password: str) -> str:
    resp = await client.post("/identity/v3/auth/tokens", json=auth_body(user, password, user))
    assert resp.status == 201
    return str((await resp.json())["token"]["project"]["id"])


async def _act(client: TestClient[Any, Any], headers: dict[str, str], flavor: str, action: str,
               tenant: Any) -> Any:
    return await client.post(f"{FLAVORS}/{flavor}/action", json={action: {"tenant": tenant}}, headers=headers)


async def _listed_ids(client: TestClient[Any, Any], headers: dict[str, str]) -> set[str]:
    found = set()
    for path in (FLAVORS, f"{FLAVORS}/detail"):
        resp = await client.get(path, headers=headers)
        assert resp.status == 200
        found |= {f["id"] for f in (await resp.json())["flavors"]}
    return found


async def test_a_shared_private_flavor_is_seen_by_that_project_only_while_shared(
        client: TestClient[Any, Any], admin_headers: dict[str, str], demo_headers: dict[str, str]) -> None:
    resp = await client.post(FLAVORS, json={"flavor": {"name": "secret", "id": "p1", "ram": 64, "vcpus": 1,
                                                       "disk": 0, "os-flavor-access:is_public": False}},
                             headers=admin_headers)
    assert resp.status == 200, await resp.text()
    demo = await _project_id(client, "demo", SECRETS["demo_password"])
    resp = await client.get(f"{FLAVORS}/p1/os-flavor-access", headers=admin_headers)
    assert (resp.status, await resp.json()) == (200, {"flavor_access": []})  # nobody, not even the creator
    assert "p1" not in await _listed_ids(client, demo_headers)
    assert (await client.get(f"{FLAVORS}/p1", headers=demo_headers)).status == 404

    resp = await _act(client, admin_headers, "p1", "addTenantAccess", demo)
    assert resp.status == 200, await resp.text()
    entry = {"flavor_id": "p1", "tenant_id": demo}
    assert await resp.json() == {"flavor_access": [entry]}
    resp = await client.get(f"{FLAVORS}/p1/os-flavor-access", headers=admin_headers)
    assert await resp.json() == {"flavor_access": [entry]}
    assert "p1" in await _listed_ids(client, demo_headers)
    resp = await client.get(f"{FLAVORS}/p1", headers=demo_headers)
    assert resp.status == 200
    assert (await resp.json())["flavor"]["os-flavor-access:is_public"] is False

    resp = await _act(client, admin_headers, "p1", "addTenantAccess", demo)
    assert resp.status == 409
    assert (await resp.json())["conflictingRequest"]["message"] == \
        f"Flavor access already exists for flavor p1 and project {demo} combination."

    resp = await _act(client, admin_headers, "p1", "removeTenantAccess", demo)
    assert (resp.status, await resp.json()) == (200, {"flavor_access": []})
    assert "p1" not in await _listed_ids(client, demo_headers)
    assert (await client.get(f"{FLAVORS}/p1", headers=demo_headers)).status == 404
    resp = await _act(client, admin_headers, "p1", "removeTenantAccess", demo)
    assert resp.status == 404
    assert (await resp.json())["itemNotFound"]["message"] == f"Flavor access not found for p1 / {demo} combination."


async def test_flavor_access_refusals(client: TestClient[Any, Any], admin_headers: dict[str, str],
                                      demo_headers: dict[str, str]) -> None:
    resp = await client.post(FLAVORS, json={"flavor": {"name": "secret", "id": "p2", "ram": 64, "vcpus": 1,
                                                       "disk": 0, "os-flavor-access:is_public": False}},
                             headers=admin_headers)
    assert resp.status == 200
    demo = await _project_id(client, "demo", SECRETS["demo_password"])
    # a public flavor has no access list and takes no access
    assert (await client.get(f"{FLAVORS}/1/os-flavor-access", headers=admin_headers)).status == 404
    resp = await _act(client, admin_headers, "1", "addTenantAccess", demo)
    assert resp.status == 409
    assert (await resp.json())["conflictingRequest"]["message"] == "Can not add access to a public flavor."
    assert (await _act(client, admin_headers, "1", "removeTenantAccess", demo)).status == 404
    # members may neither read nor change access lists
    assert (await client.get(f"{FLAVORS}/p2/os-flavor-access", headers=demo_headers)).status == 403
    for action in ("addTenantAccess", "removeTenantAccess"):
        resp = await _act(client, demo_headers, "p2", action, demo)
        assert resp.status == 403
        assert f"os-flavor-access:{'add' if action.startswith('add') else 'remove'}_tenant_access" in \
            (await resp.json())["forbidden"]["message"]
    # an unknown flavor, an unknown project, a malformed body
    assert (await _act(client, admin_headers, "nope", "addTenantAccess", demo)).status == 404
    resp = await _act(client, admin_headers, "p2", "addTenantAccess", "f" * 32)
    assert resp.status == 400
    assert (await resp.json())["badRequest"]["message"] == f"Project ID {'f' * 32} is not a valid project."
    bads: list[dict[str, Any]] = [{"addTenantAccess": {}}, {"addTenantAccess": {"tenant": ""}},
                                  {"addTenantAccess": {"tenant": demo, "x": 1}}, {"addTenantAccess": {"tenant": "a/b"}},
                                  {"addTenantAccess": {"tenant": demo}, "removeTenantAccess": {"tenant": demo}},
                                  {"grow": {}}]
    for bad in bads:
        resp = await client.post(f"{FLAVORS}/p2/action", json=bad, headers=admin_headers)
        assert resp.status == 400, bad
    resp = await client.get(f"{FLAVORS}/p2/os-flavor-access", headers=admin_headers)
    assert await resp.json() == {"flavor_access": []}  # nothing half-made


async def test_deleting_a_flavor_forgets_its_access_list(client: TestClient[Any, Any],
                                                         admin_headers: dict[str, str]) -> None:
    spec = {"name": "secret", "id": "p3", "ram": 64, "vcpus": 1, "disk": 0, "os-flavor-access:is_public": False}
    assert (await client.post(FLAVORS, json={"flavor": spec}, headers=admin_headers)).status == 200
    demo = await _project_id(client, "demo", SECRETS["demo_password"])
    assert (await _act(client, admin_headers, "p3", "addTenantAccess", demo)).status == 200
    assert (await client.delete(f"{FLAVORS}/p3", headers=admin_headers)).status == 202
    assert (await client.post(FLAVORS, json={"flavor": spec}, headers=admin_headers)).status == 200
    resp = await client.get(f"{FLAVORS}/p3/os-flavor-access", headers=admin_headers)
    assert await resp.json() == {"flavor_access": []}
