"""Keystone v3 on /identity: discovery, tokens (issue, validate, revoke), the
catalog, and the 401 cases, against a real SQLite API DB."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from api.identity.passwords import hash_password_sync, verify_password_sync
from api.keys import TOKENS
from tests.unit.api_support import PUBLIC_URL, SECRETS, admin_headers, auth_body, client, cluster, demo_headers, token

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name


async def test_version_discovery(client: TestClient[Any, Any]) -> None:
    root = await client.get("/identity")
    assert root.status == 300
    values = (await root.json())["versions"]["values"]
    assert values[0]["id"].startswith("v3.") and values[0]["status"] == "stable"
    assert values[0]["links"] == [{"rel": "self", "href": f"{PUBLIC_URL}/identity/v3/"}]
    for path in ("/identity/v3", "/identity/v3/"):
        doc = await (await client.get(path)).json()
        assert doc["version"]["media-types"][0]["type"] == "application/vnd.openstack.identity-v3+json"


async def test_issue_project_token_with_catalog(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/identity/v3/auth/tokens",
                             json=auth_body("admin", SECRETS["admin_password"], "admin"))
    assert resp.status == 201
    assert len(resp.headers["X-Subject-Token"]) > 32
    tok = (await resp.json())["token"]
    assert tok["methods"] == ["password"]
    assert tok["user"]["name"] == "admin" and tok["user"]["domain"] == {"id": "default", "name": "Default"}
    assert tok["project"]["name"] == "admin" and tok["project"]["domain"]["id"] == "default"
    assert {r["name"] for r in tok["roles"]} == {"admin", "member", "reader"}  # implied roles included
    assert tok["expires_at"].endswith("Z") and len(tok["expires_at"]) == len("2026-11-21T13:00:00.000000Z")
    by_type = {entry["type"]: entry for entry in tok["catalog"]}
    assert set(by_type) == {"identity", "compute", "image", "network", "ec2", "block-storage", "volumev3"}
    volume = f"{PUBLIC_URL}/volume/v3/{tok['project']['id']}"  # Cinder's URLs name the project
    urls = {"identity": f"{PUBLIC_URL}/identity", "compute": f"{PUBLIC_URL}/compute/v2.1", "image": f"{PUBLIC_URL}/image",
            "network": f"{PUBLIC_URL}/network", "ec2": f"{PUBLIC_URL}/ec2", "block-storage": volume, "volumev3": volume}
    for kind, entry in by_type.items():
        assert {e["interface"] for e in entry["endpoints"]} == {"public", "internal", "admin"}
        for ep in entry["endpoints"]:
            assert set(ep) == {"id", "interface", "region", "region_id", "url"}
            assert ep["url"] == urls[kind] and ep["region"] == ep["region_id"] == "RegionOne"


async def test_scope_by_ids_and_unscoped(client: TestClient[Any, Any], admin_headers: dict[str, str]) -> None:
    first = await (await client.post("/identity/v3/auth/tokens",
                                     json=auth_body("demo", SECRETS["demo_password"], "demo"))).json()
    user_id, project_id = first["token"]["user"]["id"], first["token"]["project"]["id"]
    by_id = {"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"id": user_id, "password": SECRETS["demo_password"]}}},
        "scope": {"project": {"id": project_id}}}}
    resp = await client.post("/identity/v3/auth/tokens", json=by_id)
    assert resp.status == 201
    tok = (await resp.json())["token"]
    assert tok["project"]["id"] == project_id and {r["name"] for r in tok["roles"]} == {"member", "reader"}
    # no scope: the user's default project (as Keystone)
    resp = await client.post("/identity/v3/auth/tokens", json=auth_body("demo", SECRETS["demo_password"]))
    assert (await resp.json())["token"]["project"]["name"] == "demo"


async def test_bad_credentials_are_401_in_keystone_shape(client: TestClient[Any, Any]) -> None:
    cases = [auth_body("admin", "wrong", "admin"), auth_body("nobody", "x", "admin"),
             auth_body("demo", SECRETS["demo_password"], "admin")]  # no role on that project
    for body in cases:
        resp = await client.post("/identity/v3/auth/tokens", json=body)
        assert resp.status == 401
        err = (await resp.json())["error"]
        assert err["code"] == 401 and err["title"] == "Unauthorized" and err["message"]
        assert "X-Subject-Token" not in resp.headers


async def test_malformed_requests_are_400(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/identity/v3/auth/tokens", data=b"{not json",
                             headers={"Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"]["title"] == "Bad Request"
    resp = await client.post("/identity/v3/auth/tokens", json={"auth": {}})
    assert resp.status == 400
    no_domain = auth_body("admin", SECRETS["admin_password"])
    del no_domain["auth"]["identity"]["password"]["user"]["domain"]
    assert (await client.post("/identity/v3/auth/tokens", json=no_domain)).status == 400


async def test_validate_and_revoke(client: TestClient[Any, Any], admin_headers: dict[str, str]) -> None:
    demo = await token(client, "demo", SECRETS["demo_password"], "demo")
    resp = await client.get("/identity/v3/auth/tokens", headers={**admin_headers, "X-Subject-Token": demo})
    assert resp.status == 200 and (await resp.json())["token"]["user"]["name"] == "demo"
    assert (await client.head("/identity/v3/auth/tokens", headers={"X-Auth-Token": demo,
                                                                    "X-Subject-Token": demo})).status == 200
    # a member may not inspect someone else's token
    resp = await client.get("/identity/v3/auth/tokens", headers={"X-Auth-Token": demo,
                                                                 "X-Subject-Token": admin_headers["X-Auth-Token"]})
    assert resp.status == 403
    assert (await client.delete("/identity/v3/auth/tokens",
                                headers={"X-Auth-Token": demo, "X-Subject-Token": demo})).status == 204
    resp = await client.get("/compute/v2.1/flavors", headers={"X-Auth-Token": demo})
    assert resp.status == 401
    resp = await client.get("/identity/v3/auth/tokens", headers={**admin_headers, "X-Subject-Token": demo})
    assert resp.status == 404


async def test_expired_token_is_401(client: TestClient[Any, Any]) -> None:
    tokens = client.app[TOKENS]
    tokens.ttl = timedelta(seconds=-1)  # issue already-expired tokens
    expired = await token(client, "demo", SECRETS["demo_password"], "demo")
    tokens._cache.clear()  # and make the check go to the DB row
    resp = await client.get("/image/v2/images", headers={"X-Auth-Token": expired})
    assert resp.status == 401
    assert (await client.get("/image/v2/images", headers={"X-Auth-Token": "garbage"})).status == 401
    assert (await client.get("/image/v2/images")).status == 401


def test_password_hashes_are_salted_and_verify() -> None:
    a, b = hash_password_sync("pw"), hash_password_sync("pw")
    assert a != b and a.startswith("scrypt$")
    assert verify_password_sync("pw", a) and not verify_password_sync("other", a)
    assert not verify_password_sync("pw", "garbage")
