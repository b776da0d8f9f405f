"""Keystone v3 read API (projects, users, roles, domains, role assignments):
Keystone's shapes, name filters, and its policy (admin lists; a user sees
their own user, project and domain; 403 for the rest whether it exists or not)."""
from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.api_support import PUBLIC_URL, admin_headers, client, cluster, demo_headers

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name


async def _get(client: TestClient[Any, Any], path: str, headers: dict[str, str], status: int = 200) -> Any:
    resp = await client.get(f"/identity/v3{path}", headers=headers)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_projects_by_id_and_name(client: TestClient[Any, Any], admin_headers: dict[str, str]) -> None:
    listed = await _get(client, "/projects", admin_headers)
    assert sorted(p["name"] for p in listed["projects"]) == ["admin", "alt_demo", "demo", "service"]
    assert listed["links"] == {"self": f"{PUBLIC_URL}/identity/v3/projects", "previous": None, "next": None}
    [demo] = (await _get(client, "/projects?name=demo", admin_headers))["projects"]
    assert set(demo) == {"id", "name", "domain_id", "description", "enabled", "parent_id", "is_domain", "tags",
                         "options", "links"}
    assert (demo["domain_id"], demo["parent_id"], demo["enabled"], demo["is_domain"]) == \
        ("default", "default", True, False)
    assert demo["links"]["self"] == f"{PUBLIC_URL}/identity/v3/projects/{demo['id']}"
    assert (await _get(client, f"/projects/{demo['id']}", admin_headers))["project"] == demo
    assert (await _get(client, "/projects?name=nope", admin_headers))["projects"] == []
    assert (await _get(client, "/projects?enabled=false", admin_headers))["projects"] == []
    missing = await _get(client, "/projects/nope", admin_headers, status=404)
    assert missing == {"error": {"code": 404, "message": "Could not find project: nope.", "title": "Not Found"}}


async def test_non_admin_sees_only_its_own(client: TestClient[Any, Any], demo_headers: dict[str, str],
                                           admin_headers: dict[str, str]) -> None:
    denied = await _get(client, "/projects", demo_headers, status=403)
    assert denied["error"]["message"].endswith("identity:list_projects.")
    projects = {p["name"]: p["id"] for p in (await _get(client, "/projects", admin_headers))["projects"]}
    own = await _get(client, f"/projects/{projects['demo']}", demo_headers)
    assert own["project"]["name"] == "demo"
    await _get(client, f"/projects/{projects['admin']}", demo_headers, status=403)
    await _get(client, "/projects/does-not-exist", demo_headers, status=403)  # no probing for ids
    for path in ("/users", "/roles", "/domains", "/role_assignments"):
        await _get(client, path, demo_headers, status=403)
    users = {u["name"]: u["id"] for u in (await _get(client, "/users", admin_headers))["users"]}
    me = await _get(client, f"/users/{users['demo']}", demo_headers)
    assert me["user"]["name"] == "demo" and me["user"]["default_project_id"] == projects["demo"]
    await _get(client, f"/users/{users['admin']}", demo_headers, status=403)
    assert (await _get(client, "/domains/default", demo_headers))["domain"]["name"] == "Default"
    mine = await _get(client, f"/users/{users['demo']}/projects", demo_headers)
    assert [p["name"] for p in mine["projects"]] == ["demo"]
    assert [p["name"] for p in (await _get(client, "/auth/projects", demo_headers))["projects"]] == ["demo"]
    await _get(client, f"/users/{users['admin']}/projects", demo_headers, status=403)
    assert (await client.get("/identity/v3/projects")).status == 401


async def test_users_roles_domains(client: TestClient[Any, Any], admin_headers: dict[str, str]) -> None:
    [demo] = (await _get(client, "/users?name=demo", admin_headers))["users"]
    assert set(demo) == {"id", "name", "domain_id", "enabled", "password_expires_at", "options", "links",
                         "default_project_id"}
    assert "password_hash" not in str(demo)
    assert (await _get(client, "/users/nope", admin_headers, status=404))["error"]["message"] == \
        "Could not find user: nope."
    roles = (await _get(client, "/roles", admin_headers))["roles"]
    assert [r["name"] for r in roles] == ["admin", "image_reader", "member", "reader", "service"]
    [member] = (await _get(client, "/roles?name=member", admin_headers))["roles"]
    assert (await _get(client, f"/roles/{member['id']}", admin_headers))["role"] == member
    assert member["domain_id"] is None
    [domain] = (await _get(client, "/domains?name=Default", admin_headers))["domains"]
    assert (domain["id"], domain["enabled"]) == ("default", True)
    await _get(client, "/domains/nope", admin_headers, status=404)


async def test_role_assignments_filters_names_and_effective(client: TestClient[Any, Any],
                                                            admin_headers: dict[str, str]) -> None:
    users = {u["name"]: u["id"] for u in (await _get(client, "/users", admin_headers))["users"]}
    projects = {p["name"]: p["id"] for p in (await _get(client, "/projects", admin_headers))["projects"]}
    roles = {r["name"]: r["id"] for r in (await _get(client, "/roles", admin_headers))["roles"]}
    direct = (await _get(client, f"/role_assignments?user.id={users['admin']}", admin_headers))["role_assignments"]
    assert direct == [{"role": {"id": roles["admin"]}, "scope": {"project": {"id": projects["admin"]}},
                       "user": {"id": users["admin"]},
                       "links": {"assignment": f"{PUBLIC_URL}/identity/v3/projects/{projects['admin']}/users/"
                                               f"{users['admin']}/roles/{roles['admin']}"}}]
    effective = (await _get(client, f"/role_assignments?user.id={users['admin']}&effective&include_names",
                            admin_headers))["role_assignments"]
    assert sorted(a["role"]["name"] for a in effective) == ["admin", "member", "reader"]
    implied = next(a for a in effective if a["role"]["name"] == "reader")
    assert implied["links"]["prior_role"] == f"{PUBLIC_URL}/identity/v3/roles/{roles['member']}"
    assert implied["user"] == {"id": users["admin"], "name": "admin", "domain": {"id": "default", "name": "Default"}}
    on_demo = (await _get(client, f"/role_assignments?scope.project.id={projects['demo']}", admin_headers))
    assert [(a["user"]["id"], a["role"]["id"]) for a in on_demo["role_assignments"]] == \
        [(users["demo"], roles["member"])]
    assert (await _get(client, "/role_assignments?group.id=g", admin_headers))["role_assignments"] == []
    await _get(client, "/role_assignments?include_subtree=true", admin_headers, status=400)

