"""A walk of every route the API serves (issue 19): a reader's token changes nothing on /compute,
/image, /volume and /network (every write route answers 403 before its handler runs), and a member's
token writes nothing in Keystone that is not its own (every identity write on another user or on the
cloud answers 403). The routes come from the apps themselves, so a route added later is walked too."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from api.compute.routes import make_compute_app
from api.identity.handlers import make_identity_app
from api.image.handlers import make_image_app
from api.network.routes import make_network_app
from api.volume.routes import make_volume_app
from tests.unit.api_support import admin_headers, client, cluster, demo_headers

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name
FAKE = "0f0f0f0f-0f0f-4f0f-8f0f-0f0f0f0f0f0f"
TENANT_APPS: tuple[tuple[str, Callable[[], web.Application]], ...] = (
    ("/compute", make_compute_app), ("/image", make_image_app), ("/volume", make_volume_app),
    ("/network", make_network_app))
# identity writes any authenticated caller may make on itself, or that need no token at all
IDENTITY_OPEN = {("POST", "/v3/auth/tokens"), ("DELETE", "/v3/auth/tokens"), ("POST", "/v3/ec2tokens"),
                 ("POST", "/v3/s3tokens")}


def write_routes(prefix: str, factory: Callable[[], web.Application]) -> Iterator[tuple[str, str, str]]:
    """(method, path with every {param} filled, the route's template) of each write route of the app."""
    for resource in factory().router.resources():
        for route in resource:
            if route.method in ("GET", "HEAD", "OPTIONS", "*"):
                continue
            template = resource.canonical
            yield route.method, prefix + re.sub(r"\{[^}]+\}", FAKE, template), template


async def _reader_headers(client: TestClient[Any, Any], admin: dict[str, str]) -> dict[str, str]:
    """A user with only the reader role on the demo project."""
    async def first_id(path: str, key: str) -> str:
        found: str = (await (await client.get(f"/identity/v3/{path}", headers=admin)).json())[key][0]["id"]
        return found

    made = await client.post("/identity/v3/users", headers=admin,
                             json={"user": {"name": "rita", "password": "rita-pw-123"}})
    user = (await made.json())["user"]["id"]
    project, role = await first_id("projects?name=demo", "projects"), await first_id("roles?name=reader", "roles")
    assert (await client.put(f"/identity/v3/projects/{project}/users/{user}/roles/{role}",
                             headers=admin)).status == 204
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "id": user, "password": "rita-pw-123"}}}, "scope": {"project": {"id": project}}}}
    token = (await client.post("/identity/v3/auth/tokens", json=body)).headers["X-Subject-Token"]
    return {"X-Auth-Token": token}


async def test_a_reader_is_refused_every_write_route(client: TestClient[Any, Any],
                                                     admin_headers: dict[str, str]) -> None:
    reader = await _reader_headers(client, admin_headers)
    walked, wrong = 0, []
    for prefix, factory in TENANT_APPS:
        for method, path, template in write_routes(prefix, factory):
            resp = await client.request(method, path, headers=reader, json={})
            walked += 1
            if resp.status != 403:
                wrong.append(f"{method} {prefix}{template}: {resp.status}")
    assert walked > 40 and wrong == []


async def test_a_member_writes_nothing_in_keystone_that_is_not_its_own(client: TestClient[Any, Any],
                                                                       demo_headers: dict[str, str]) -> None:
    walked, wrong = 0, []
    for method, path, template in write_routes("/identity", make_identity_app):
        if (method, template) in IDENTITY_OPEN:
            continue
        resp = await client.request(method, path, headers=demo_headers, json={})
        walked += 1
        if resp.status != 403:
            wrong.append(f"{method} /identity{template}: {resp.status}")
    assert walked >= 12 and wrong == []
