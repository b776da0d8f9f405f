"""Keystone domains and groups over HTTP (issue 19): domain create/update/disable/delete with
Keystone's rules (unique names, delete only once disabled, what it holds goes with it), the
Default domain kept; groups, membership, a group's grant reaching its members' tokens and
`role_assignments?effective`, and access taken away when a member leaves the group."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.api_support import PUBLIC_URL, admin_headers, auth_body, client, cluster, demo_headers, identity_call

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name
V3 = "/identity/v3"

_call = identity_call


async def _scoped_token(client: TestClient[Any, Any], user: str, domain: str, password: str,
                        project: str) -> tuple[int, str]:
    body = auth_body(user, password)
    body["auth"]["identity"]["password"]["user"]["domain"] = {"id": domain}
    body["auth"]["scope"] = {"project": {"name": project, "domain": {"id": domain}}}
    resp = await client.post(f"{V3}/auth/tokens", json=body)
    return resp.status, resp.headers.get("X-Subject-Token", "")


async def test_domain_lifecycle(client: TestClient[Any, Any], admin_headers: dict[str, str],
                                demo_headers: dict[str, str]) -> None:
    made = (await _call(client, "POST", "/domains", admin_headers, 201,
                        {"domain": {"name": "team-domain", "description": "a second organisation"}}))["domain"]
    assert (made["name"], made["description"], made["enabled"]) == ("team-domain", "a second organisation", True)
    assert made["links"]["self"] == f"{PUBLIC_URL}/identity/v3/domains/{made['id']}"
    dom = made["id"]
    await _call(client, "POST", "/domains", admin_headers, 409, {"domain": {"name": "team-domain"}})
    await _call(client, "POST", "/domains", admin_headers, 400, {"domain": {"name": ""}})
    await _call(client, "POST", "/domains", demo_headers, 403, {"domain": {"name": "mine"}})
    assert [d["name"] for d in (await _call(client, "GET", "/domains", admin_headers, 200))["domains"]] == \
        ["Default", "team-domain"]

    # a project, a user and a group in it; names are per domain (Default's demo is another)
    project = (await _call(client, "POST", "/projects", admin_headers, 201,
                           {"project": {"name": "demo", "domain_id": dom}}))["project"]
    assert (project["domain_id"], project["parent_id"]) == (dom, dom)
    user = (await _call(client, "POST", "/users", admin_headers, 201,
                        {"user": {"name": "demo", "domain_id": dom, "password": "pw-in-domain"}}))["user"]
    group = (await _call(client, "POST", "/groups", admin_headers, 201,
                         {"group": {"name": "ops", "domain_id": dom}}))["group"]
    roles = {r["name"]: r["id"] for r in (await _call(client, "GET", "/roles", admin_headers, 200))["roles"]}
    await _call(client, "PUT", f"/projects/{project['id']}/users/{user['id']}/roles/{roles['member']}",
                admin_headers, 204)
    status, token = await _scoped_token(client, "demo", dom, "pw-in-domain", "demo")
    assert status == 201
    assert [p["name"] for p in (await _call(client, "GET", f"/projects?domain_id={dom}", admin_headers, 200))
            ["projects"]] == ["demo"]

    renamed = (await _call(client, "PATCH", f"/domains/{dom}", admin_headers, 200,
                           {"domain": {"name": "team-org", "description": "renamed"}}))["domain"]
    assert (renamed["name"], renamed["description"]) == ("team-org", "renamed")
    await _call(client, "PATCH", f"/domains/{dom}", admin_headers, 409, {"domain": {"name": "Default"}})
    await _call(client, "DELETE", f"/domains/{dom}", admin_headers, 403)  # still enabled
    await _call(client, "PATCH", f"/domains/{dom}", admin_headers, 200, {"domain": {"enabled": False}})
    # a disabled domain's users cannot log in, and their tokens stop
    assert (await _scoped_token(client, "demo", dom, "pw-in-domain", "demo"))[0] == 401
    deadline = time.monotonic() + 5
    while (await client.get(f"{V3}/auth/projects", headers={"X-Auth-Token": token})).status != 401:
        assert time.monotonic() < deadline, "a disabled domain's token still worked after 5 s"
        await asyncio.sleep(0.2)

    await _call(client, "DELETE", f"/domains/{dom}", admin_headers, 204)
    await _call(client, "GET", f"/domains/{dom}", admin_headers, 404)
    # what it held went with it
    for path in (f"/projects/{project['id']}", f"/users/{user['id']}", f"/groups/{group['id']}"):
        await _call(client, "GET", path, admin_headers, 404)
    await _call(client, "DELETE", f"/domains/{dom}", admin_headers, 404)

    # the Default domain runs the cluster: never disabled, renamed or deleted
    await _call(client, "PATCH", "/domains/default", admin_headers, 403, {"domain": {"enabled": False}})
    await _call(client, "PATCH", "/domains/default", admin_headers, 403, {"domain": {"name": "Other"}})
    await _call(client, "DELETE", "/domains/default", admin_headers, 403)
    assert (await _call(client, "GET", "/domains/default", admin_headers, 200))["domain"]["enabled"] is True


async def test_group_grant_reaches_members(client: TestClient[Any, Any], admin_headers: dict[str, str],
                                           demo_headers: dict[str, str]) -> None:
    roles = {r["name"]: r["id"] for r in (await _call(client, "GET", "/roles", admin_headers, 200))["roles"]}
    project = (await _call(client, "POST", "/projects", admin_headers, 201, {"project": {"name": "team3"}}))["project"]
    bob = (await _call(client, "POST", "/users", admin_headers, 201,
                       {"user": {"name": "bob", "password": "bob-pw"}}))["user"]
    group = (await _call(client, "POST", "/groups", admin_headers, 201,
                         {"group": {"name": "team3-devs", "description": "developers"}}))["group"]
    assert (group["domain_id"], group["description"]) == ("default", "developers")
    await _call(client, "POST", "/groups", admin_headers, 409, {"group": {"name": "team3-devs"}})
    await _call(client, "POST", "/groups", admin_headers, 404, {"group": {"name": "x", "domain_id": "nope"}})
    await _call(client, "POST", "/groups", demo_headers, 403, {"group": {"name": "mine"}})
    gid, uid, pid = group["id"], bob["id"], project["id"]

    # bob has no role on team3 yet
    assert (await _scoped_token(client, "bob", "default", "bob-pw", "team3"))[0] == 401
    await _call(client, "PUT", f"/groups/{gid}/users/{uid}", admin_headers, 204)
    await _call(client, "PUT", f"/groups/{gid}/users/{uid}", admin_headers, 204)  # twice is once
    await _call(client, "HEAD", f"/groups/{gid}/users/{uid}", admin_headers, 204)
    await _call(client, "PUT", f"/groups/{gid}/users/nope", admin_headers, 404)
    assert [u["name"] for u in (await _call(client, "GET", f"/groups/{gid}/users", admin_headers, 200))["users"]] \
        == ["bob"]
    await _call(client, "PUT", f"/projects/{pid}/groups/{gid}/roles/{roles['member']}", admin_headers, 204)
    await _call(client, "HEAD", f"/projects/{pid}/groups/{gid}/roles/{roles['member']}", admin_headers, 204)
    await _call(client, "HEAD", f"/projects/{pid}/groups/{gid}/roles/{roles['admin']}", admin_headers, 404)
    granted = (await _call(client, "GET", f"/projects/{pid}/groups/{gid}/roles", admin_headers, 200))["roles"]
    assert [r["name"] for r in granted] == ["member"]

    # bob's token on team3 carries the group's role and what it implies
    status, token = await _scoped_token(client, "bob", "default", "bob-pw", "team3")
    assert status == 201
    bob_headers = {"X-Auth-Token": token}
    shown = await client.get(f"{V3}/auth/tokens", headers={**bob_headers, "X-Subject-Token": token})
    assert sorted(r["name"] for r in (await shown.json())["token"]["roles"]) == ["member", "reader"]
    assert [p["name"] for p in (await _call(client, "GET", "/auth/projects", bob_headers, 200))["projects"]] == \
        ["team3"]
    mine = (await _call(client, "GET", f"/users/{uid}/groups", bob_headers, 200))["groups"]
    assert [g["name"] for g in mine] == ["team3-devs"]
    await _call(client, "GET", f"/groups/{gid}", bob_headers, 403)  # a member is no group admin

    # role assignments: as made (the group's), then effective (bob's, through the group)
    made = (await _call(client, "GET", f"/role_assignments?scope.project.id={pid}", admin_headers, 200))
    assert made["role_assignments"] == [{
        "role": {"id": roles["member"]}, "scope": {"project": {"id": pid}}, "group": {"id": gid},
        "links": {"assignment": f"{PUBLIC_URL}/identity/v3/projects/{pid}/groups/{gid}/roles/{roles['member']}"}}]
    assert (await _call(client, "GET", f"/role_assignments?user.id={uid}", admin_headers, 200))[
        "role_assignments"] == []  # none made to bob himself
    effective = (await _call(client, "GET", f"/role_assignments?user.id={uid}&effective&include_names",
                             admin_headers, 200))["role_assignments"]
    assert sorted(a["role"]["name"] for a in effective) == ["member", "reader"]
    for entry in effective:
        assert entry["user"]["name"] == "bob" and entry["scope"]["project"]["name"] == "team3"
        assert "group" not in entry
        assert entry["links"]["assignment"] == \
            f"{PUBLIC_URL}/identity/v3/projects/{pid}/groups/{gid}/roles/{roles['member']}"
        assert entry["links"]["membership"] == f"{PUBLIC_URL}/identity/v3/groups/{gid}/users/{uid}"
    await _call(client, "GET", f"/role_assignments?group.id={gid}&effective", admin_headers, 400)
    by_group = (await _call(client, "GET", f"/role_assignments?group.id={gid}&include_names", admin_headers, 200))
    assert [a["group"]["name"] for a in by_group["role_assignments"]] == ["team3-devs"]

    # bob leaves the group: his token stops within 5 s, and a new one is refused
    await _call(client, "DELETE", f"/groups/{gid}/users/{uid}", admin_headers, 204)
    await _call(client, "DELETE", f"/groups/{gid}/users/{uid}", admin_headers, 404)
    deadline = time.monotonic() + 5
    while (await client.get(f"{V3}/auth/projects", headers=bob_headers)).status != 401:
        assert time.monotonic() < deadline, "a token still worked 5 s after its group membership ended"
        await asyncio.sleep(0.2)
    assert (await _scoped_token(client, "bob", "default", "bob-pw", "team3"))[0] == 401

    renamed = (await _call(client, "PATCH", f"/groups/{gid}", admin_headers, 200, {"group": {"name": "devs"}}))
    assert renamed["group"]["name"] == "devs"
    await _call(client, "DELETE", f"/projects/{pid}/groups/{gid}/roles/{roles['member']}", admin_headers, 204)
    await _call(client, "DELETE", f"/projects/{pid}/groups/{gid}/roles/{roles['member']}", admin_headers, 404)
    await _call(client, "DELETE", f"/groups/{gid}", admin_headers, 204)
    await _call(client, "GET", f"/groups/{gid}", admin_headers, 404)
    assert (await _call(client, "GET", "/groups", admin_headers, 200))["groups"] == []


async def test_system_role_grants(client: TestClient[Any, Any], admin_headers: dict[str, str],
                                  demo_headers: dict[str, str]) -> None:
    """PUT /v3/system/users/{u}/roles/{r}: a system role is a role on the admin project, what a
    system-scoped token of the user carries; revoked, the user may no longer scope to the system."""
    roles = {r["name"]: r["id"] for r in (await _call(client, "GET", "/roles", admin_headers, 200))["roles"]}
    sue = (await _call(client, "POST", "/users", admin_headers, 201,
                       {"user": {"name": "sue", "password": "sue-pw"}}))["user"]
    body = auth_body("sue", "sue-pw")
    body["auth"]["scope"] = {"system": {"all": True}}
    assert (await client.post(f"{V3}/auth/tokens", json=body)).status == 401
    grant = f"/system/users/{sue['id']}/roles/{roles['reader']}"
    await _call(client, "PUT", grant, demo_headers, 403)
    await _call(client, "PUT", grant, admin_headers, 204)
    await _call(client, "HEAD", grant, admin_headers, 204)
    listed = (await _call(client, "GET", f"/system/users/{sue['id']}/roles", admin_headers, 200))["roles"]
    assert [r["name"] for r in listed] == ["reader"]
    resp = await client.post(f"{V3}/auth/tokens", json=body)
    assert resp.status == 201
    assert [r["name"] for r in (await resp.json())["token"]["roles"]] == ["reader"]
    await _call(client, "DELETE", grant, admin_headers, 204)
    await _call(client, "DELETE", grant, admin_headers, 404)
    assert (await client.post(f"{V3}/auth/tokens", json=body)).status == 401
    # the last system administrator stays
    [admin] = (await _call(client, "GET", "/users?name=admin", admin_headers, 200))["users"]
    await _call(client, "DELETE", f"/system/users/{admin['id']}/roles/{roles['admin']}", admin_headers, 403)
