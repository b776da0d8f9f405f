"""Credentials behave: a revoked token, a disabled user or project, a removed role stop working on
every API worker within 5 s (two API apps on one API DB stand for two workers); EC2 secrets are
sealed at rest, plaintext rows from before are sealed when an API starts, and the key lives in the
state dir's 0600 secrets file."""
from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from api.db.engine import make_engine
from api.db.schema import ec2_credentials, projects, role_assignments, roles, users
from api.identity.ec2creds import SEALED
from api.timeutil import utcnow
from tests.unit.api_support import SECRETS, make_cluster, start_client, token
from tests.unit.test_api_ec2 import Ec2, credentials
from tests.unit.test_api_servers import Cloud, cloud
from tools.clusterfile import load_secrets

__all__ = ["cloud"]  # fixture used by name

PROPAGATION = 5.0  # what must hold: every worker refuses within this many seconds
PROBE = "/compute/v2.1/flavors"  # answered from the API DB alone


class Workers:
    def __init__(self, a: TestClient[Any, Any], b: TestClient[Any, Any], engine: AsyncEngine) -> None:
        self.a, self.b, self.engine = a, b, engine

    async def status(self, client: TestClient[Any, Any], tok: str) -> int:
        resp = await client.get(PROBE, headers={"X-Auth-Token": tok})
        return resp.status

    async def refused_everywhere(self, tok: str) -> bool:
        """Poll both workers until both answer 401, for at most PROPAGATION seconds."""
        deadline = time.monotonic() + PROPAGATION
        while time.monotonic() < deadline:
            if await self.status(self.a, tok) == 401 and await self.status(self.b, tok) == 401:
                return True
            await asyncio.sleep(0.1)
        return False

    async def db(self, statement: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(statement)


@pytest_asyncio.fixture
async def workers(tmp_path: Path) -> AsyncIterator[Workers]:
    cluster = make_cluster(tmp_path)
    a = await start_client(cluster)
    b = await start_client(cluster)
    engine = make_engine(cluster.api.db)
    try:
        yield Workers(a, b, engine)
    finally:
        await engine.dispose()
        await a.close()
        await b.close()


async def _demo_token(w: Workers) -> str:
    tok = await token(w.a, "demo", SECRETS["demo_password"], "demo")
    assert await w.status(w.a, tok) == 200 and await w.status(w.b, tok) == 200  # both have it cached now
    return tok


async def test_revoked_token_stops_on_every_worker(workers: Workers) -> None:
    tok = await _demo_token(workers)
    admin = await token(workers.a, "admin", SECRETS["admin_password"], "admin")
    resp = await workers.a.delete("/identity/v3/auth/tokens", headers={"X-Auth-Token": admin, "X-Subject-Token": tok})
    assert resp.status == 204
    assert await workers.status(workers.a, tok) == 401  # the worker that revoked it: at once
    assert await workers.refused_everywhere(tok)


@pytest.mark.parametrize("change", ["disable user", "disable project", "remove role"])
async def test_disabled_principal_or_removed_role_stops_on_every_worker(workers: Workers, change: str) -> None:
    tok = await _demo_token(workers)
    if change == "disable user":
        await workers.db(update(users).where(users.c.name == "demo").values(enabled=False))
    elif change == "disable project":
        await workers.db(update(projects).where(projects.c.name == "demo").values(enabled=False))
    else:
        async with workers.engine.connect() as conn:
            user = (await conn.execute(select(users.c.id).where(users.c.name == "demo"))).scalar_one()
            project = (await conn.execute(select(projects.c.id).where(projects.c.name == "demo"))).scalar_one()
            member = (await conn.execute(select(roles.c.id).where(roles.c.name == "member"))).scalar_one()
        await workers.db(delete(role_assignments).where(
            role_assignments.c.user_id == user, role_assignments.c.project_id == project,
            role_assignments.c.role_id == member))
    assert await workers.refused_everywhere(tok)
    resp = await workers.b.post("/identity/v3/auth/tokens", json={"auth": {"identity": {
        "methods": ["password"], "password": {"user": {"name": "demo", "domain": {"id": "default"},
                                                       "password": SECRETS["demo_password"]}}},
        "scope": {"project": {"name": "demo", "domain": {"name": "Default"}}}}})
    assert resp.status == 401  # and no new token either


async def _raw_secret(cloud: Cloud, access: str) -> str:
    engine = make_engine(cloud.cluster.api.db)
    try:
        async with engine.connect() as conn:
            return str((await conn.execute(select(ec2_credentials.c.secret)
                                           .where(ec2_credentials.c.access == access))).scalar_one())
    finally:
        await engine.dispose()


async def test_ec2_secret_is_sealed_at_rest_and_still_signs(cloud: Cloud) -> None:
    cred = await credentials(cloud, cloud.demo)
    stored = await _raw_secret(cloud, cred["access"])
    assert stored.startswith(SEALED) and cred["secret"] not in stored
    assert (await Ec2(cloud, cred["access"], cred["secret"])("describe_images"))["Images"]


async def test_plaintext_ec2_rows_are_sealed_when_an_api_starts(cloud: Cloud) -> None:
    me = await (await cloud.client.get("/identity/v3/auth/tokens", headers={
        **cloud.demo, "X-Subject-Token": cloud.demo["X-Auth-Token"]})).json()
    access, secret = "a" * 32, "b" * 32
    engine = make_engine(cloud.cluster.api.db)
    try:
        async with engine.begin() as conn:  # a row as an older release stored it
            await conn.execute(insert(ec2_credentials).values(
                access=access, secret=secret, user_id=me["token"]["user"]["id"],
                project_id=me["token"]["project"]["id"], created_at=utcnow()))
    finally:
        await engine.dispose()
    restarted = await start_client(cloud.cluster)
    try:
        stored = await _raw_secret(cloud, access)
        assert stored.startswith(SEALED) and secret not in stored
        assert (await Ec2(cloud, access, secret)("describe_images"))["Images"]  # it still signs
    finally:
        await restarted.close()


async def test_disabled_user_ec2_credential_is_refused(cloud: Cloud) -> None:
    cred = await credentials(cloud, cloud.demo)
    ec2 = Ec2(cloud, cred["access"], cred["secret"])
    engine = make_engine(cloud.cluster.api.db)
    try:
        async with engine.begin() as conn:
            await conn.execute(update(users).where(users.c.name == "demo").values(enabled=False))
    finally:
        await engine.dispose()
    assert (await ec2.error_detail("describe_images"))[0] == "AuthFailure"


def test_the_sealing_key_is_made_once_in_the_0600_secrets_file(tmp_path: Path) -> None:
    first = load_secrets(tmp_path)
    assert len(first["ec2_credential_key"]) >= 24
    assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600
    assert load_secrets(tmp_path)["ec2_credential_key"] == first["ec2_credential_key"]


