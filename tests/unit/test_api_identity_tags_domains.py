"""Keystone over HTTP, issue 19's last identity leftovers: domain-specific roles (granted only within their
domain, never carried by a token themselves, only through the global roles they imply), a group's system
role grant, project tags (the tags API, tags at create and update, the four list filters, who may tag), and
`is_domain` projects (a domain made, shown, listed, disabled and deleted through the projects API)."""
from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.api_support import admin_headers, auth_body, client, cluster, demo_headers, identity_call

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name
V3 = "/identity/v3"
_call = identity_call


async def _roles(client: TestClient[Any, Any], headers: dict[str, str]) -> dict[str, str]:
    return {r["name"]: r["id"] for r in (await _call(client, "GET", "/roles", headers, 200))["roles"]}


async def _project_token(client: TestClient[Any, Any], user: str, domain: str, password: str,
                         project_id: str) -> tuple[int, Any]:
    body = auth_body(user, password)
    body["auth"]["identity"]["password"]["user"]["domain"] = {"id": domain}
    body["auth"]["scope"] = {"project": {"id": project_id}}
    resp = await client.post(f"{V3}/auth/tokens", json=body)
    return resp.status, await resp.json()


async def test_domain_specific_roles(client: TestClient[Any, Any], admin_headers: dict[str, str]) -> None:
    roles = await _roles(client, admin_headers)
    dom = (await _call(client, "POST", "/domains", admin_headers, 201, {"domain": {"name": "dsr"}}))["domain"]["id"]
    other = (await _call(client, "POST", "/domains", admin_headers, 201, {"domain": {"name": "dsr2"}}))["domain"]["id"]
    role = (await _call(client, "POST", "/roles", admin_headers, 201,
                        {"role": {"name": "dsr-operator", "domain_id": dom}}))["role"]
    assert role["domain_id"] == dom
    assert (await _call(client, "GET", f"/roles/{role['id']}", admin_headers, 200))["role"] == role
    assert (await _call(client, "GET", f"/roles?domain_id={dom}", admin_headers, 200))["roles"] == [role]
    assert (await _call(client, "GET", f"/roles?domain_id={other}", admin_headers, 200))["roles"] == []
    assert "dsr-operator" not in await _roles(client, admin_headers)  # the global list holds global roles only
    # names are unique across the cloud: a policy rule's role name names one role
    await _call(client, "POST", "/roles", admin_headers, 409, {"role": {"name": "member", "domain_id": dom}})
    await _call(client, "PATCH", f"/roles/{role['id']}", admin_headers, 400, {"role": {"domain_id": other}})

    inside = (await _call(client, "POST", "/projects", admin_headers, 201,
                          {"project": {"name": "dsr-team", "domain_id": dom}}))["project"]["id"]
    outside = (await _call(client, "POST", "/projects", admin_headers, 201,
                           {"project": {"name": "dsr-elsewhere"}}))["project"]["id"]
    user = (await _call(client, "POST", "/users", admin_headers, 201,
                        {"user": {"name": "dsr-user", "domain_id": dom, "password": "dsr-pw"}}))["user"]["id"]
    # granted only within its domain: on its projects and on the domain itself, not elsewhere nor the system
    await _call(client, "PUT", f"/projects/{outside}/users/{user}/roles/{role['id']}", admin_headers, 403)
    await _call(client, "PUT", f"/domains/{other}/users/{user}/roles/{role['id']}", admin_headers, 403)
    await _call(client, "PUT", f"/system/users/{user}/roles/{role['id']}", admin_headers, 403)
    await _call(client, "PUT", f"/projects/{inside}/users/{user}/roles/{role['id']}", admin_headers, 204)
    await _call(client, "PUT", f"/domains/{dom}/users/{user}/roles/{role['id']}", admin_headers, 204)
    assert (await _call(client, "GET", f"/projects/{outside}/users/{user}/roles", admin_headers, 200))["roles"] == []

    # a token never carries it: alone it gives no access; what it implies is what the token holds
    status, _ = await _project_token(client, "dsr-user", dom, "dsr-pw", inside)
    assert status == 401
    await _call(client, "PUT", f"/roles/{roles['member']}/implies/{role['id']}", admin_headers, 403)  # global -> domain
    await _call(client, "PUT", f"/roles/{role['id']}/implies/{roles['member']}", admin_headers, 201)
    status, body = await _project_token(client, "dsr-user", dom, "dsr-pw", inside)
    assert status == 201
    assert sorted(r["name"] for r in body["token"]["roles"]) == ["member", "reader"]
    effective = (await _call(client, "GET", f"/role_assignments?effective&user.id={user}&scope.project.id={inside}",
                             admin_headers, 200))["role_assignments"]
    assert sorted(a["role"]["id"] for a in effective) == sorted([roles["member"], roles["reader"]])
    made = (await _call(client, "GET", f"/role_assignments?user.id={user}&scope.project.id={inside}",
                        admin_headers, 200))["role_assignments"]
    assert [a["role"]["id"] for a in made] == [role["id"]]  # as made, the grant is listed

    # the domain goes, and its roles with it
    await _call(client, "PATCH", f"/domains/{dom}", admin_headers, 200, {"domain": {"enabled": False}})
    await _call(client, "DELETE", f"/domains/{dom}", admin_headers, 204)
    await _call(client, "GET", f"/roles/{role['id']}", admin_headers, 404)


async def test_group_system_grant(client: TestClient[Any, Any], admin_headers: dict[str, str],
                                  demo_headers: dict[str, str]) -> None:
    """PUT /v3/system/groups/{g}/roles/{r}: every member of the group holds the role on the system."""
    roles = await _roles(client, admin_headers)
    group = (await _call(client, "POST", "/groups", admin_headers, 201, {"group": {"name": "sysreaders"}}))["group"]
    kim = (await _call(client, "POST", "/users", admin_headers, 201,
                       {"user": {"name": "kim", "password": "kim-pw"}}))["user"]
    await _call(client, "PUT", f"/groups/{group['id']}/users/{kim['id']}", admin_headers, 204)
    body = auth_body("kim", "kim-pw")
    body["auth"]["scope"] = {"system": {"all": True}}
    assert (await client.post(f"{V3}/auth/tokens", json=body)).status == 401
    grant = f"/system/groups/{group['id']}/roles/{roles['reader']}"
    await _call(client, "PUT", grant, demo_headers, 403)
    await _call(client, "HEAD", grant, admin_headers, 404)
    await _call(client, "PUT", grant, admin_headers, 204)
    await _call(client, "HEAD", grant, admin_headers, 204)
    listed = (await _call(client, "GET", f"/system/groups/{group['id']}/roles", admin_headers, 200))["roles"]
    assert [r["id"] for r in listed] == [roles["reader"]]
    await _call(client, "GET", f"/system/groups/{group['id']}/roles", demo_headers, 403)
    resp = await client.post(f"{V3}/auth/tokens", json=body)
    assert resp.status == 201
    token = await resp.json()
    assert token["token"]["system"] == {"all": True}
    assert [r["name"] for r in token["token"]["roles"]] == ["reader"]
    await _call(client, "PUT", f"/system/groups/no-such-group/roles/{roles['reader']}", admin_headers, 404)
    await _call(client, "DELETE", grant, admin_headers, 204)
    await _call(client, "DELETE", grant, admin_headers, 404)
    assert (await client.post(f"{V3}/auth/tokens", json=body)).status == 401


async def test_project_tags(client: TestClient[Any, Any], admin_headers: dict[str, str],
                            demo_headers: dict[str, str]) -> None:
    made = (await _call(client, "POST", "/projects", admin_headers, 201,
                        {"project": {"name": "tagged", "tags": ["blue", "prod", "blue"]}}))["project"]
    pid = made["id"]
    assert made["tags"] == ["blue", "prod"]
    plain = (await _call(client, "POST", "/projects", admin_headers, 201, {"project": {"name": "plain"}}))["project"]
    await _call(client, "PUT", f"/projects/{pid}/tags/green", admin_headers, 201)
    await _call(client, "PUT", f"/projects/{pid}/tags/green", admin_headers, 201)  # already there: unchanged
    await _call(client, "HEAD", f"/projects/{pid}/tags/green", admin_headers, 204)
    await _call(client, "HEAD", f"/projects/{pid}/tags/red", admin_headers, 404)
    assert (await _call(client, "GET", f"/projects/{pid}/tags", admin_headers, 200))["tags"] == \
        ["blue", "green", "prod"]
    assert (await _call(client, "GET", f"/projects/{pid}", admin_headers, 200))["project"]["tags"] == \
        ["blue", "green", "prod"]

    def names(listing: Any) -> set[str]:
        return {p["name"] for p in listing["projects"]} & {"tagged", "plain"}
    assert names(await _call(client, "GET", "/projects?tags=blue,green", admin_headers, 200)) == {"tagged"}
    assert names(await _call(client, "GET", "/projects?tags=blue,red", admin_headers, 200)) == set()
    assert names(await _call(client, "GET", "/projects?tags-any=red,prod", admin_headers, 200)) == {"tagged"}
    assert names(await _call(client, "GET", "/projects?not-tags=blue,red", admin_headers, 200)) == \
        {"tagged", "plain"}
    assert names(await _call(client, "GET", "/projects?not-tags=blue,prod", admin_headers, 200)) == {"plain"}
    assert names(await _call(client, "GET", "/projects?not-tags-any=red,green", admin_headers, 200)) == {"plain"}

    replaced = await _call(client, "PUT", f"/projects/{pid}/tags", admin_headers, 200, {"tags": ["a", "b"]})
    assert replaced["tags"] == ["a", "b"]
    patched = await _call(client, "PATCH", f"/projects/{pid}", admin_headers, 200, {"project": {"tags": ["c"]}})
    assert patched["project"]["tags"] == ["c"]
    # bad tags: a separator, too long, too many; nothing changes
    await _call(client, "PUT", f"/projects/{pid}/tags", admin_headers, 400, {"tags": ["x,y"]})
    await _call(client, "PUT", f"/projects/{pid}/tags", admin_headers, 400, {"tags": ["t" * 256]})
    await _call(client, "PUT", f"/projects/{pid}/tags", admin_headers, 400, {"tags": [f"t{i}" for i in range(81)]})
    await _call(client, "PUT", f"/projects/{pid}/tags", admin_headers, 400, {"tags": "c"})
    assert (await _call(client, "GET", f"/projects/{pid}/tags", admin_headers, 200))["tags"] == ["c"]
    await _call(client, "PUT", "/projects/no-such-project/tags/x", admin_headers, 404)

    # a member tags neither another project nor their own (Keystone: the project's admins do); readers read
    demo = (await _call(client, "GET", "/projects?name=demo", admin_headers, 200))["projects"][0]["id"]
    await _call(client, "PUT", f"/projects/{pid}/tags/mine", demo_headers, 403)
    await _call(client, "PUT", f"/projects/{pid}/tags", demo_headers, 403, {"tags": []})
    await _call(client, "DELETE", f"/projects/{pid}/tags/c", demo_headers, 403)
    await _call(client, "GET", f"/projects/{pid}/tags", demo_headers, 403)
    await _call(client, "PUT", f"/projects/{demo}/tags/mine", demo_headers, 403)
    assert (await _call(client, "GET", f"/projects/{demo}/tags", demo_headers, 200))["tags"] == []
    assert (await _call(client, "GET", f"/projects/{pid}/tags", admin_headers, 200))["tags"] == ["c"]

    await _call(client, "DELETE", f"/projects/{pid}/tags/c", admin_headers, 204)
    await _call(client, "DELETE", f"/projects/{pid}/tags/c", admin_headers, 404)
    await _call(client, "PUT", f"/projects/{pid}/tags", admin_headers, 200, {"tags": ["d", "e"]})
    await _call(client, "DELETE", f"/projects/{pid}/tags", admin_headers, 204)
    assert (await _call(client, "GET", f"/projects/{pid}/tags", admin_headers, 200))["tags"] == []
    assert plain["tags"] == []


async def test_is_domain_projects(client: TestClient[Any, Any], admin_headers: dict[str, str],
                                  demo_headers: dict[str, str]) -> None:
    await _call(client, "POST", "/projects", demo_headers, 403, {"project": {"name": "evil", "is_domain": True}})
    await _call(client, "POST", "/projects", admin_headers, 400,
                {"project": {"name": "bad", "is_domain": True, "parent_id": "default"}})
    made = (await _call(client, "POST", "/projects", admin_headers, 201,
                        {"project": {"name": "as-domain", "is_domain": True, "description": "both"}}))["project"]
    assert (made["is_domain"], made["domain_id"], made["parent_id"], made["enabled"]) == (True, None, None, True)
    did = made["id"]
    domain = (await _call(client, "GET", f"/domains/{did}", admin_headers, 200))["domain"]
    assert (domain["name"], domain["description"]) == ("as-domain", "both")
    assert (await _call(client, "GET", f"/projects/{did}", admin_headers, 200))["project"] == made
    assert did in [p["id"] for p in (await _call(client, "GET", "/projects?is_domain=true", admin_headers, 200))
                   ["projects"]]
    assert did not in [p["id"] for p in (await _call(client, "GET", "/projects", admin_headers, 200))["projects"]]
    await _call(client, "GET", "/projects?is_domain=true", demo_headers, 403)
    await _call(client, "GET", f"/projects/{did}", demo_headers, 403)
    # a project in it is an ordinary project of that domain
    inner = (await _call(client, "POST", "/projects", admin_headers, 201,
                         {"project": {"name": "inner", "domain_id": did}}))["project"]
    assert (inner["domain_id"], inner["parent_id"], inner["is_domain"]) == (did, did, False)

    await _call(client, "PATCH", f"/projects/{did}", demo_headers, 403, {"project": {"enabled": False}})
    await _call(client, "DELETE", f"/projects/{did}", admin_headers, 403)  # enabled: disable it first
    changed = (await _call(client, "PATCH", f"/projects/{did}", admin_headers, 200,
                           {"project": {"enabled": False}}))["project"]
    assert (changed["enabled"], changed["is_domain"]) == (False, True)
    assert (await _call(client, "GET", f"/domains/{did}", admin_headers, 200))["domain"]["enabled"] is False
    await _call(client, "PATCH", "/projects/default", admin_headers, 403, {"project": {"enabled": False}})
    await _call(client, "DELETE", f"/projects/{did}", demo_headers, 403)
    await _call(client, "DELETE", f"/projects/{did}", admin_headers, 204)
    await _call(client, "GET", f"/domains/{did}", admin_headers, 404)
    await _call(client, "GET", f"/projects/{inner['id']}", admin_headers, 404)  # what it held went with it


async def test_a_domain_admin_stays_in_their_domain(client: TestClient[Any, Any], admin_headers: dict[str, str],
                                                    demo_headers: dict[str, str]) -> None:
    """A domain's admin tags its projects and grants its roles there, and nothing else: no tag on another
    domain's project, no role of another domain, no domain role or domain of its own making."""
    roles = await _roles(client, admin_headers)
    dom = (await _call(client, "POST", "/domains", admin_headers, 201, {"domain": {"name": "da"}}))["domain"]["id"]
    far = (await _call(client, "POST", "/domains", admin_headers, 201, {"domain": {"name": "da-far"}}))["domain"]["id"]
    boss = (await _call(client, "POST", "/users", admin_headers, 201,
                        {"user": {"name": "da-boss", "domain_id": dom, "password": "boss-pw"}}))["user"]["id"]
    await _call(client, "PUT", f"/domains/{dom}/users/{boss}/roles/{roles['admin']}", admin_headers, 204)
    body = auth_body("da-boss", "boss-pw")
    body["auth"]["identity"]["password"]["user"]["domain"] = {"id": dom}
    body["auth"]["scope"] = {"domain": {"id": dom}}
    resp = await client.post(f"{V3}/auth/tokens", json=body)
    assert resp.status == 201
    boss_h = {"X-Auth-Token": resp.headers["X-Subject-Token"]}
    ours = (await _call(client, "POST", "/projects", boss_h, 201,
                        {"project": {"name": "da-team", "domain_id": dom, "tags": ["ours"]}}))["project"]
    assert ours["tags"] == ["ours"]
    await _call(client, "PUT", f"/projects/{ours['id']}/tags/more", boss_h, 201)
    demo = (await _call(client, "GET", "/projects?name=demo", admin_headers, 200))["projects"][0]["id"]
    await _call(client, "PUT", f"/projects/{demo}/tags/mine", boss_h, 403)
    await _call(client, "GET", f"/projects/{demo}/tags", boss_h, 403)
    far_role = (await _call(client, "POST", "/roles", admin_headers, 201,
                            {"role": {"name": "da-far-role", "domain_id": far}}))["role"]["id"]
    worker = (await _call(client, "POST", "/users", boss_h, 201,
                          {"user": {"name": "da-worker", "domain_id": dom, "password": "w-pw"}}))["user"]["id"]
    await _call(client, "PUT", f"/projects/{ours['id']}/users/{worker}/roles/{far_role}", boss_h, 403)
    await _call(client, "PUT", f"/projects/{ours['id']}/users/{worker}/roles/{roles['member']}", boss_h, 204)
    await _call(client, "POST", "/roles", boss_h, 403, {"role": {"name": "da-own", "domain_id": dom}})
    await _call(client, "GET", f"/roles?domain_id={dom}", boss_h, 403)
    await _call(client, "POST", "/projects", boss_h, 403, {"project": {"name": "da-dom", "is_domain": True}})
    await _call(client, "PATCH", f"/projects/{dom}", boss_h, 403, {"project": {"description": "x"}})
    await _call(client, "PATCH", f"/projects/{far}", boss_h, 403, {"project": {"enabled": False}})
    await _call(client, "GET", "/projects?is_domain=true", boss_h, 403)
    await _call(client, "PUT", f"/system/users/{worker}/roles/{roles['reader']}", boss_h, 403)
