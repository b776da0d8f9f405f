"""Keystone behaviours Tempest's identity admin tests found missing once the admin rule was out of the way
(issue 19, tools/tempest.py --legacy-admin): an application credential may carry a role granted after the token
was issued; a cloud admin changes another user's password given the original one; GET /v3/auth/domains lists
the domains a user may scope to, through their own grants and their groups'."""
from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.api_support import SECRETS, admin_headers, auth_body, client, cluster, demo_headers, identity_call

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name
V3 = "/identity/v3"
_call = identity_call


async def _id(client: TestClient[Any, Any], kind: str, name: str, headers: dict[str, str]) -> str:
    return str((await _call(client, "GET", f"/{kind}?name={name}", headers, 200))[kind][0]["id"])


async def test_application_credential_takes_a_role_granted_after_the_token(
        client: TestClient[Any, Any], admin_headers: dict[str, str], demo_headers: dict[str, str]) -> None:
    """A role granted to demo on its project after demo's token was issued goes into an application credential
    made with that token, and the credential's token carries it; a role demo has not there is refused (403)."""
    made = (await _call(client, "POST", "/roles", admin_headers, 201, {"role": {"name": "deployer"}}))["role"]
    other = (await _call(client, "POST", "/roles", admin_headers, 201, {"role": {"name": "auditor"}}))["role"]
    user, project = await _id(client, "users", "demo", admin_headers), await _id(client, "projects", "demo",
                                                                                   admin_headers)
    await _call(client, "GET", "/auth/projects", demo_headers, 200)  # the token is issued (and cached) first
    await _call(client, "PUT", f"/projects/{project}/users/{user}/roles/{made['id']}", admin_headers, 204)
    path = f"/users/{user}/application_credentials"
    cred = (await _call(client, "POST", path, demo_headers, 201, {"application_credential": {
        "name": "ci", "roles": [{"id": made["id"]}]}}))["application_credential"]
    assert [r["name"] for r in cred["roles"]] == ["deployer"]
    refused = await _call(client, "POST", path, demo_headers, 403, {"application_credential": {
        "name": "ci2", "roles": [{"name": other["name"]}]}})
    assert "auditor" in refused["error"]["message"]
    resp = await client.post(f"{V3}/auth/tokens", json={"auth": {"identity": {
        "methods": ["application_credential"],
        "application_credential": {"id": cred["id"], "secret": cred["secret"]}}}})
    assert resp.status == 201, await resp.text()
    token = (await resp.json())["token"]
    assert token["project"]["id"] == project and [r["id"] for r in token["roles"]] == [made["id"]]


async def test_a_cloud_admin_changes_a_users_password_given_the_original(
        client: TestClient[Any, Any], admin_headers: dict[str, str], demo_headers: dict[str, str]) -> None:
    """POST /v3/users/{id}/password: a cloud admin may change another user's (Tempest's test_update_user_password)
    with the original password, not without it; another user may not (403 identity:change_password)."""
    made = (await _call(client, "POST", "/users", admin_headers, 201, {"user": {
        "name": "carol", "password": "first-secret"}}))["user"]
    path = f"/users/{made['id']}/password"
    refused = await _call(client, "POST", path, demo_headers, 403, {"user": {
        "original_password": "first-secret", "password": "demo-chose-this"}})
    assert refused["error"]["message"].endswith("identity:change_password.")
    await _call(client, "POST", path, admin_headers, 401, {"user": {
        "original_password": "a-wrong-guess", "password": "second-secret"}})
    await _call(client, "POST", path, admin_headers, 204, {"user": {
        "original_password": "first-secret", "password": "second-secret"}})
    assert (await client.post(f"{V3}/auth/tokens", json=auth_body("carol", "first-secret"))).status == 401
    assert (await client.post(f"{V3}/auth/tokens", json=auth_body("carol", "second-secret"))).status == 201


async def test_auth_domains_lists_the_domains_a_user_may_scope_to(
        client: TestClient[Any, Any], admin_headers: dict[str, str], demo_headers: dict[str, str]) -> None:
    """GET /v3/auth/domains: a domain demo has a role on, one its group has a role on, not a disabled one nor one
    it has no role on; any token may ask, for its own user only."""
    assert (await _call(client, "GET", "/auth/domains", demo_headers, 200))["domains"] == []
    user = await _id(client, "users", "demo", admin_headers)
    reader = await _id(client, "roles", "reader", admin_headers)
    ids = {}
    for name in ("direct", "by-group", "disabled", "unrelated"):
        ids[name] = (await _call(client, "POST", "/domains", admin_headers, 201,
                                 {"domain": {"name": name}}))["domain"]["id"]
    for name in ("direct", "disabled"):
        await _call(client, "PUT", f"/domains/{ids[name]}/users/{user}/roles/{reader}", admin_headers, 204)
    group = (await _call(client, "POST", "/groups", admin_headers, 201, {"group": {"name": "team"}}))["group"]
    await _call(client, "PUT", f"/groups/{group['id']}/users/{user}", admin_headers, 204)
    await _call(client, "PUT", f"/domains/{ids['by-group']}/groups/{group['id']}/roles/{reader}", admin_headers, 204)
    await _call(client, "PATCH", f"/domains/{ids['disabled']}", admin_headers, 200,
                {"domain": {"enabled": False}})
    listed = await _call(client, "GET", "/auth/domains", demo_headers, 200)
    assert [d["name"] for d in listed["domains"]] == ["by-group", "direct"]
    assert listed["domains"][0]["id"] == ids["by-group"]
    mine = await client.post(f"{V3}/auth/tokens", json=auth_body("demo", SECRETS["demo_password"], "demo"))
    assert mine.status == 201  # a fresh token sees the same
    again = await _call(client, "GET", "/auth/domains", {"X-Auth-Token": mine.headers["X-Subject-Token"]}, 200)
    assert again["domains"] == listed["domains"]
    assert (await client.get(f"{V3}/auth/domains")).status == 401
