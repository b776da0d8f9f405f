"""Shared fixtures of the API tests: a real SQLite API DB, bootstrapped, behind
aiohttp's test client; tokens for the admin and demo users."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from api import bootstrap
from api.app import make_app
from api.cell_router import CellRouter
from cells.config import ApiSpec, CellSpec, ClusterConfig

PUBLIC_URL = "http://cloud.test:8774"
SECRETS = {"admin_password": "admin-secret", "demo_password": "demo-secret", "service_password": "svc-secret",
           "image_reader_password": "reader-secret", "ec2_credential_key": "ec2-key-secret", "alt_demo_password": "alt-secret"}


def make_cluster(tmp: Path, router: str = "tcp://127.0.0.1:1", interval: float = 0.1,
                 list_bound: float = 10.0) -> ClusterConfig:
    """`list_bound`: 10 s, not the product's 1 s: a fake cell answers on the test's own event loop, which a
    loaded CI box can hold past 1 s (the bound's own behaviour is tested with a bound of its test's own)."""
    return ClusterConfig(
        name="test", state_dir=str(tmp),
        api=ApiSpec(listen="127.0.0.1:0", public_url=PUBLIC_URL, db=f"sqlite:///{tmp}/api.db",
                    image_dir=f"{tmp}/images"),
        cells=(CellSpec(name="cell1", path="cell1", db=f"sqlite:///{tmp}/cell1.db", router=router),),
        services=(), hosts=(), secrets=dict(SECRETS), heartbeat_interval=interval,
        list_bound=list_bound)


def auth_body(user: str, password: str, project: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": user, "domain": {"id": "default"}, "password": password}}}}}
    if project is not None:
        body["auth"]["scope"] = {"project": {"name": project, "domain": {"name": "Default"}}}
    return body


async def identity_call(client: TestClient[Any, Any], method: str, path: str, headers: dict[str, str],
                        status: int, body: Any = None) -> Any:
    """`method` /identity/v3`path`, asserting the answer's status; its JSON, if it has any."""
    resp = await client.request(method, "/identity/v3" + path, headers=headers, json=body)
    assert resp.status == status, f"{method} {path}: {resp.status} {await resp.text()}"
    return await resp.json() if resp.content_type == "application/json" and resp.status != 204 else None


async def token(client: TestClient[Any, Any], user: str, password: str, project: str) -> str:
    resp = await client.post("/identity/v3/auth/tokens", json=auth_body(user, password, project))
    assert resp.status == 201, await resp.text()
    return resp.headers["X-Subject-Token"]


async def start_client(cluster: ClusterConfig, router: CellRouter | None = None) -> TestClient[Any, Any]:
    await bootstrap.ensure(cluster)
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(cluster, router)))
    await client.start_server()
    return client


@pytest.fixture
def cluster(tmp_path: Path) -> ClusterConfig:
    return make_cluster(tmp_path)


@pytest_asyncio.fixture
async def client(cluster: ClusterConfig) -> AsyncIterator[TestClient[Any, Any]]:
    c = await start_client(cluster)
    yield c
    await c.close()


@pytest_asyncio.fixture
async def admin_headers(client: TestClient[Any, Any]) -> dict[str, str]:
    return {"X-Auth-Token": await token(client, "admin", SECRETS["admin_password"], "admin")}


@pytest_asyncio.fixture
async def demo_headers(client: TestClient[Any, Any]) -> dict[str, str]:
    return {"X-Auth-Token": await token(client, "demo", SECRETS["demo_password"], "demo")}
