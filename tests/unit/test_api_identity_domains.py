"""Keystone over HTTP, issue 19's leftovers: roles an admin creates, changes and deletes; a user's extra
attributes (description, email); project hierarchies (parent_id, Keystone's depth, leaf-only delete and
enabled rules, parents/subtree as lists and as ids); grants on a domain and domain-scoped tokens, whose
admin manages that domain's projects, users and grants and nothing outside it."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.api_support import SECRETS, admin_headers, auth_body, client, cluster, demo_headers, identity_call

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name
V3 = "/identity/v3"

_call = identity_call


async def _domain_token(client: TestClient[Any, Any], user: str, user_domain: str, password: str,
                        scope: dict[str, str]) -> tuple[int, str, Any]:
    body = auth_body(user, password)
    body["auth"]["identity"]["password"]["user"]["domain"] = {"id": user_domain}
    body["auth"]["scope"] = {"domain": scope}
    resp = await client.post(f"{V3}/auth/tokens", json=body)
    return resp.status, resp.headers.get("X-Subject-Token", ""), await resp.json()


async def _roles(client: TestClient[Any, Any], headers: dict[str, str]) -> dict[str, str]:
    return {r["name"]: r["id"] for r in (await _call(client, "GET", "/roles", headers, 200))["roles"]}


async def test_role_create_update_delete(client: TestClient[Any, Any], admin_headers: dict[str, str],
                                         demo_headers: dict[str, str]) -> None:
    made = (await _call(client, "POST", "/roles", admin_headers, 201,
                        {"role": {"name": "auditor", "description": "reads the books"}}))["role"]
    assert (made["name"], made["description"], made["domain_id"]) == ("auditor", "reads the books", None)
    await _call(client, "POST", "/roles", admin_headers, 409, {"role": {"name": "Auditor"}})  # names ignore case
    await _call(client, "POST", "/roles", admin_headers, 400, {"role": {"name": ""}})
    await _call(client, "POST", "/roles", admin_headers, 404, {"role": {"name": "x", "domain_id": "no-such-domain"}})
    await _call(client, "POST", "/roles", demo_headers, 403, {"role": {"name": "mine"}})
    changed = (await _call(client, "PATCH", f"/roles/{made['id']}", admin_headers, 200,
                           {"role": {"name": "auditors", "description": None}}))["role"]
    assert (changed["name"], changed["description"]) == ("auditors", None)
    assert (await _call(client, "GET", f"/roles/{made['id']}", admin_headers, 200))["role"]["name"] == "auditors"

    # granted, then deleted: the grant goes with it, and so does the token that carried it
    roles = await _roles(client, admin_headers)
    demo_user = (await _call(client, "GET", "/users?name=demo", admin_headers, 200))["users"][0]["id"]
    demo_project = (await _call(client, "GET", "/projects?name=demo", admin_headers, 200))["projects"][0]["id"]
    await _call(client, "PUT", f"/projects/{demo_project}/users/{demo_user}/roles/{made['id']}", admin_headers, 204)
    resp = await client.post(f"{V3}/auth/tokens", json=auth_body("demo", SECRETS["demo_password"], "demo"))
    held = resp.headers["X-Subject-Token"]
    assert "auditors" in [r["name"] for r in (await resp.json())["token"]["roles"]]
    await _call(client, "DELETE", f"/roles/{made['id']}", admin_headers, 204)
    await _call(client, "GET", f"/roles/{made['id']}", admin_headers, 404)
    await _call(client, "GET", f"/projects/{demo_project}/users/{demo_user}/roles/{made['id']}", admin_headers, 404)
    deadline = time.monotonic() + 5
    while (await client.get(f"{V3}/auth/projects", headers={"X-Auth-Token": held})).status != 401:
        assert time.monotonic() < deadline, "a token carrying a deleted role still worked after 5 s"
        await asyncio.sleep(0.2)

    # the roles the policy defaults name stay as they are
    await _call(client, "DELETE", f"/roles/{roles['member']}", admin_headers, 403)
    await _call(client, "PATCH", f"/roles/{roles['reader']}", admin_headers, 403, {"role": {"name": "viewer"}})
    await _call(client, "DELETE", f"/roles/{roles['admin']}", demo_headers, 403)


async def test_user_extra_attributes(client: TestClient[Any, Any], admin_headers: dict[str, str]) -> None:
    made = (await _call(client, "POST", "/users", admin_headers, 201, {"user": {
        "name": "erin", "password": "erin-pw", "email": "erin@example.org", "description": "on call"}}))["user"]
    assert (made["email"], made["description"]) == ("erin@example.org", "on call")
    shown = (await _call(client, "GET", f"/users/{made['id']}", admin_headers, 200))["user"]
    assert (shown["email"], shown["description"], shown["name"]) == ("erin@example.org", "on call", "erin")
    changed = (await _call(client, "PATCH", f"/users/{made['id']}", admin_headers, 200,
                           {"user": {"email": "erin@example.com"}}))["user"]
    assert (changed["email"], changed["description"]) == ("erin@example.com", "on call")  # merged, as Keystone
    listed = [u for u in (await _call(client, "GET", "/users?name=erin", admin_headers, 200))["users"]]
    assert listed[0]["email"] == "erin@example.com"
    await _call(client, "POST", "/users", admin_headers, 400, {"user": {"name": "x", "email": {"nested": 1}}})
    await _call(client, "POST", "/users", admin_headers, 400, {"user": {"name": "x", "description": "d" * 256}})
    await _call(client, "POST", "/users", admin_headers, 400,
                {"user": {"name": "x", **{f"k{i}": "v" for i in range(17)}}})


async def test_project_hierarchy(client: TestClient[Any, Any], admin_headers: dict[str, str]) -> None:
    async def make(name: str, parent: str | None, status: int = 201, **extra: Any) -> Any:
        doc = {"name": name, **({"parent_id": parent} if parent else {}), **extra}
        return await _call(client, "POST", "/projects", admin_headers, status, {"project": doc})

    root = (await make("org", None))["project"]
    assert root["parent_id"] == "default"
    chain = [root]
    for depth in range(2, 6):  # Keystone's max_project_tree_depth: 5
        chain.append((await make(f"level{depth}", chain[-1]["id"]))["project"])
    assert [p["parent_id"] for p in chain[1:]] == [p["id"] for p in chain[:-1]]
    await make("level6", chain[-1]["id"], 403)
    sibling = (await make("org-b", root["id"]))["project"]
    assert "Could not find project" in (await make("nowhere", "0" * 32, 404))["error"]["message"]
    await _call(client, "GET", f"/projects/{root['id']}?subtree_as_list&subtree_as_ids", admin_headers, 400)
    other = (await _call(client, "POST", "/domains", admin_headers, 201, {"domain": {"name": "other"}}))["domain"]
    await make("crossed", root["id"], 400, domain_id=other["id"])

    children = (await _call(client, "GET", f"/projects?parent_id={root['id']}", admin_headers, 200))["projects"]
    assert sorted(p["name"] for p in children) == ["level2", "org-b"]
    top = (await _call(client, "GET", "/projects?parent_id=default", admin_headers, 200))["projects"]
    assert "org" in [p["name"] for p in top] and "level2" not in [p["name"] for p in top]

    leaf = chain[-1]
    shown = (await _call(client, "GET", f"/projects/{leaf['id']}?parents_as_list", admin_headers, 200))["project"]
    assert [p["project"]["name"] for p in shown["parents"]] == ["level4", "level3", "level2", "org"]
    ids = (await _call(client, "GET", f"/projects/{chain[2]['id']}?parents_as_ids", admin_headers, 200))["project"]
    assert ids["parents"] == {chain[1]["id"]: {root["id"]: None}}
    sub = (await _call(client, "GET", f"/projects/{root['id']}?subtree_as_list", admin_headers, 200))["project"]
    assert sorted(p["project"]["name"] for p in sub["subtree"]) == ["level2", "level3", "level4", "level5", "org-b"]
    sub_ids = (await _call(client, "GET", f"/projects/{chain[3]['id']}?subtree_as_ids", admin_headers, 200))
    assert sub_ids["project"]["subtree"] == {chain[4]["id"]: None}

    # leaf-only delete; no enabled project below a disabled one
    await _call(client, "DELETE", f"/projects/{root['id']}", admin_headers, 403)
    await _call(client, "PATCH", f"/projects/{root['id']}", admin_headers, 403, {"project": {"enabled": False}})
    await _call(client, "PATCH", f"/projects/{sibling['id']}", admin_headers, 200, {"project": {"enabled": False}})
    await make("under-disabled", sibling["id"], 400)
    await _call(client, "DELETE", f"/projects/{sibling['id']}", admin_headers, 204)
    await _call(client, "DELETE", f"/projects/{leaf['id']}", admin_headers, 204)
    await _call(client, "PATCH", f"/projects/{chain[3]['id']}", admin_headers, 400, {"project": {"parent_id": None}})


async def test_domain_admin_manages_only_their_domain(client: TestClient[Any, Any], admin_headers: dict[str, str],
                                                      demo_headers: dict[str, str]) -> None:
    roles = await _roles(client, admin_headers)
    dom = (await _call(client, "POST", "/domains", admin_headers, 201, {"domain": {"name": "acme"}}))["domain"]["id"]
    boss = (await _call(client, "POST", "/users", admin_headers, 201,
                        {"user": {"name": "boss", "domain_id": dom, "password": "boss-pw"}}))["user"]
    # no grant on the domain: no domain-scoped token
    status, _, _ = await _domain_token(client, "boss", dom, "boss-pw", {"id": dom})
    assert status == 401
    await _call(client, "PUT", f"/domains/{dom}/users/{boss['id']}/roles/{roles['admin']}", admin_headers, 204)
    await _call(client, "HEAD", f"/domains/{dom}/users/{boss['id']}/roles/{roles['admin']}", admin_headers, 204)
    listed = (await _call(client, "GET", f"/domains/{dom}/users/{boss['id']}/roles", admin_headers, 200))["roles"]
    assert [r["name"] for r in listed] == ["admin"]
    assignments = (await _call(client, "GET", f"/role_assignments?scope.domain.id={dom}", admin_headers, 200))
    assert [(a["user"]["id"], a["scope"]) for a in assignments["role_assignments"]] == [
        (boss["id"], {"domain": {"id": dom}})]

    status, token, body = await _domain_token(client, "boss", dom, "boss-pw", {"name": "acme"})
    assert status == 201
    assert body["token"]["domain"] == {"id": dom, "name": "acme"}
    assert sorted(r["name"] for r in body["token"]["roles"]) == ["admin", "member", "reader"]
    assert "project" not in body["token"] and body["token"]["catalog"]
    boss_h = {"X-Auth-Token": token}

    # their domain: projects, users and the grants among them
    team = (await _call(client, "POST", "/projects", boss_h, 201,
                        {"project": {"name": "team", "domain_id": dom}}))["project"]
    worker = (await _call(client, "POST", "/users", boss_h, 201,
                          {"user": {"name": "worker", "domain_id": dom, "password": "worker-pw"}}))["user"]
    await _call(client, "PUT", f"/projects/{team['id']}/users/{worker['id']}/roles/{roles['member']}", boss_h, 204)
    await _call(client, "PATCH", f"/projects/{team['id']}", boss_h, 200, {"project": {"description": "ours"}})
    assert [p["name"] for p in (await _call(client, "GET", "/projects", boss_h, 200))["projects"]] == ["team"]
    assert sorted(u["name"] for u in (await _call(client, "GET", "/users", boss_h, 200))["users"]) == \
        ["boss", "worker"]
    await _call(client, "GET", f"/domains/{dom}", boss_h, 200)

    # nothing outside it: the Default domain's projects, users and grants, nor the domains themselves
    demo_user = (await _call(client, "GET", "/users?name=demo", admin_headers, 200))["users"][0]["id"]
    demo_project = (await _call(client, "GET", "/projects?name=demo", admin_headers, 200))["projects"][0]["id"]
    await _call(client, "POST", "/projects", boss_h, 403, {"project": {"name": "sneaky"}})
    await _call(client, "POST", "/users", boss_h, 403, {"user": {"name": "sneaky"}})
    await _call(client, "GET", f"/projects/{demo_project}", boss_h, 403)
    await _call(client, "PATCH", f"/projects/{demo_project}", boss_h, 403, {"project": {"description": "x"}})
    await _call(client, "DELETE", f"/users/{demo_user}", boss_h, 403)
    await _call(client, "PUT", f"/projects/{demo_project}/users/{worker['id']}/roles/{roles['member']}", boss_h, 403)
    await _call(client, "PUT", f"/projects/{team['id']}/users/{demo_user}/roles/{roles['member']}", boss_h, 403)
    await _call(client, "PUT", f"/domains/default/users/{worker['id']}/roles/{roles['admin']}", boss_h, 403)
    await _call(client, "POST", "/domains", boss_h, 403, {"domain": {"name": "mine"}})
    await _call(client, "POST", "/roles", boss_h, 403, {"role": {"name": "mine"}})
    await _call(client, "GET", "/projects?domain_id=default", boss_h, 200)  # still their own domain only
    assert [p["name"] for p in (await _call(client, "GET", "/projects?domain_id=default", boss_h, 200))
            ["projects"]] == []
    # a domain-scoped token is no project's: the compute API has no project to act in
    assert (await client.get("/compute/v2.1/servers", headers=boss_h)).status in (401, 403)
    # a project member of Default is no domain reader
    await _call(client, "GET", "/users", demo_headers, 403)

    # a grant given through a group works alike; taking the user's own grant away ends the token
    group = (await _call(client, "POST", "/groups", admin_headers, 201,
                         {"group": {"name": "acme-readers", "domain_id": dom}}))["group"]
    await _call(client, "PUT", f"/groups/{group['id']}/users/{worker['id']}", admin_headers, 204)
    await _call(client, "PUT", f"/domains/{dom}/groups/{group['id']}/roles/{roles['reader']}", boss_h, 204)
    status, _, body = await _domain_token(client, "worker", dom, "worker-pw", {"id": dom})
    assert status == 201 and [r["name"] for r in body["token"]["roles"]] == ["reader"]
    effective = (await _call(client, "GET", f"/role_assignments?effective&user.id={worker['id']}",
                             admin_headers, 200))["role_assignments"]
    assert sorted((next(iter(a["scope"])), a["role"]["id"]) for a in effective) == sorted(
        [("domain", roles["reader"]), ("project", roles["member"]), ("project", roles["reader"])])
    await _call(client, "DELETE", f"/domains/{dom}/users/{boss['id']}/roles/{roles['admin']}", admin_headers, 204)
    await _call(client, "DELETE", f"/domains/{dom}/users/{boss['id']}/roles/{roles['admin']}", admin_headers, 404)
    deadline = time.monotonic() + 5
    while (await client.get(f"{V3}/users", headers=boss_h)).status != 401:
        assert time.monotonic() < deadline, "a domain token whose grant was removed still worked after 5 s"
        await asyncio.sleep(0.2)


async def test_implied_roles(client: TestClient[Any, Any], admin_headers: dict[str, str],
                             demo_headers: dict[str, str]) -> None:
    roles = await _roles(client, admin_headers)
    ops = (await _call(client, "POST", "/roles", admin_headers, 201, {"role": {"name": "ops"}}))["role"]["id"]
    viewer = (await _call(client, "POST", "/roles", admin_headers, 201, {"role": {"name": "viewer"}}))["role"]["id"]
    made = await _call(client, "PUT", f"/roles/{ops}/implies/{viewer}", admin_headers, 201)
    assert (made["role_inference"]["prior_role"]["name"], made["role_inference"]["implies"]["name"]) == \
        ("ops", "viewer")
    await _call(client, "HEAD", f"/roles/{ops}/implies/{viewer}", admin_headers, 204)
    assert (await _call(client, "GET", f"/roles/{ops}/implies/{viewer}", admin_headers, 200)) == made
    listed = (await _call(client, "GET", f"/roles/{ops}/implies", admin_headers, 200))["role_inference"]
    assert [r["name"] for r in listed["implies"]] == ["viewer"]
    rules = {(i["prior_role"]["name"], r["name"]) for i in
             (await _call(client, "GET", "/role_inferences", admin_headers, 200))["role_inferences"] for r in i["implies"]}
    assert rules == {("admin", "member"), ("member", "reader"), ("ops", "viewer")}  # Keystone's and the admin's

    # nothing implies admin, no cycle, the built-in ones stay; admins only
    await _call(client, "PUT", f"/roles/{ops}/implies/{roles['admin']}", admin_headers, 403)
    await _call(client, "PUT", f"/roles/{viewer}/implies/{ops}", admin_headers, 400)
    await _call(client, "DELETE", f"/roles/{roles['admin']}/implies/{roles['member']}", admin_headers, 403)
    await _call(client, "PUT", f"/roles/{viewer}/implies/{roles['reader']}", demo_headers, 403)
    await _call(client, "GET", f"/roles/{viewer}/implies/{ops}", admin_headers, 404)

    # a grant of ops brings viewer into the token and the effective assignments
    demo_user = (await _call(client, "GET", "/users?name=demo", admin_headers, 200))["users"][0]["id"]
    demo_project = (await _call(client, "GET", "/projects?name=demo", admin_headers, 200))["projects"][0]["id"]
    await _call(client, "PUT", f"/projects/{demo_project}/users/{demo_user}/roles/{ops}", admin_headers, 204)
    resp = await client.post(f"{V3}/auth/tokens", json=auth_body("demo", SECRETS["demo_password"], "demo"))
    held = resp.headers["X-Subject-Token"]
    assert {"ops", "viewer"} <= {r["name"] for r in (await resp.json())["token"]["roles"]}
    effective = (await _call(client, "GET", f"/role_assignments?effective&user.id={demo_user}&role.id={viewer}",
                             admin_headers, 200))["role_assignments"]
    assert [a["links"]["prior_role"].rsplit("/", 1)[1] for a in effective] == [ops]
    # the implication removed: the token that carried viewer stops, as a removed grant's does
    await _call(client, "DELETE", f"/roles/{ops}/implies/{viewer}", admin_headers, 204)
    await _call(client, "DELETE", f"/roles/{ops}/implies/{viewer}", admin_headers, 404)
    deadline = time.monotonic() + 5
    while (await client.get(f"{V3}/auth/projects", headers={"X-Auth-Token": held})).status != 401:
        assert time.monotonic() < deadline, "a token carrying a role no longer implied still worked after 5 s"
        await asyncio.sleep(0.2)
