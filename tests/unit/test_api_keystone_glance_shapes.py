"""Details Keystone and Glance clients (Tempest among them) rely on: a revoked or unknown subject token
is a 404 to whoever asks, an application credential's expiry reads back as it was sent, a user name may
be 255 characters (a project's 64), and Glance's member schemas are served."""
from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.api_support import SECRETS, admin_headers, client, cluster, demo_headers, token

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name
V3 = "/identity/v3"


async def test_a_revoked_subject_token_is_not_found(client: TestClient[Any, Any], demo_headers: dict[str, str],
                                                    admin_headers: dict[str, str]) -> None:
    other = await token(client, "demo", SECRETS["demo_password"], "demo")
    subject = {"X-Subject-Token": other}
    assert (await client.get(f"{V3}/auth/tokens", headers={**demo_headers, **subject})).status == 200
    assert (await client.delete(f"{V3}/auth/tokens", headers={**demo_headers, **subject})).status == 204
    for headers in (demo_headers, admin_headers):
        assert (await client.get(f"{V3}/auth/tokens", headers={**headers, **subject})).status == 404
        assert (await client.head(f"{V3}/auth/tokens", headers={**headers, **subject})).status == 404
    unknown = {"X-Subject-Token": "gAAAA-not-a-token"}
    assert (await client.get(f"{V3}/auth/tokens", headers={**demo_headers, **unknown})).status == 404


async def test_application_credential_expiry_reads_back_as_sent(client: TestClient[Any, Any],
                                                                demo_headers: dict[str, str]) -> None:
    shown = await client.get(f"{V3}/auth/tokens", headers={**demo_headers, "X-Subject-Token":
                                                           demo_headers["X-Auth-Token"]})
    user_id = (await shown.json())["token"]["user"]["id"]
    resp = await client.post(f"{V3}/users/{user_id}/application_credentials", headers=demo_headers,
                             json={"application_credential": {"name": "ci", "expires_at": "2099-01-02T03:04:05.123456"}})
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["application_credential"]["expires_at"] == "2099-01-02T03:04:05.123456"


async def test_name_limits(client: TestClient[Any, Any], admin_headers: dict[str, str]) -> None:
    long_user = {"user": {"name": "u" * 255, "password": "pw-long-user"}}
    assert (await client.post(f"{V3}/users", headers=admin_headers, json=long_user)).status == 201
    too_long = {"user": {"name": "u" * 256, "password": "pw"}}
    assert (await client.post(f"{V3}/users", headers=admin_headers, json=too_long)).status == 400
    project = {"project": {"name": "p" * 65}}
    assert (await client.post(f"{V3}/projects", headers=admin_headers, json=project)).status == 400


async def test_glance_member_schemas(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    member = await (await client.get("/image/v2/schemas/member", headers=demo_headers)).json()
    assert member["name"] == "member"
    assert member["properties"]["status"]["enum"] == ["pending", "accepted", "rejected"]
    members = await (await client.get("/image/v2/schemas/members", headers=demo_headers)).json()
    assert (members["name"], members["properties"]["members"]["items"]) == ("members", member)
