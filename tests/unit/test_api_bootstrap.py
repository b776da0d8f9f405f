"""The API DB schema (versioned, idempotent) and the bootstrap content."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from api import bootstrap
from api.db.engine import make_engine
from api.db.schema import LATEST, cell_mappings, create_schema, flavors, images, schema_version, users
from api.image.store import ImageStore
from tests.unit.api_support import make_cluster


async def _count(url: str, table: object) -> int:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def test_create_schema_is_idempotent_and_versioned(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sub/api.db"
    await create_schema(url)
    await create_schema(url)
    engine = make_engine(url)
    async with engine.connect() as conn:
        version = (await conn.execute(select(schema_version.c.version))).scalars().all()
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        index_names = await conn.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes("images")})
        journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
    await engine.dispose()
    assert version == [LATEST]
    assert {"domains", "projects", "users", "roles", "role_assignments", "tokens", "flavors", "images",
            "cell_mappings", "instance_mappings"} <= names
    assert "ix_images_name" in index_names and journal == "wal"


async def test_bootstrap_is_idempotent(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path)
    await bootstrap.ensure(cluster)
    await bootstrap.ensure(cluster)
    url = cluster.api.db
    assert await _count(url, users) == 5 and await _count(url, flavors) == 3  # admin, demo, alt_demo, service, image reader
    assert await _count(url, images) == 1 and await _count(url, cell_mappings) == 1


async def test_bootstrap_follows_changed_passwords_cells_and_lost_bits(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from api.app import make_app
    from tests.unit.api_support import auth_body

    cluster = make_cluster(tmp_path)
    await bootstrap.ensure(cluster)
    engine = make_engine(cluster.api.db)
    async with engine.connect() as conn:
        address = (await conn.execute(select(images.c.content_address))).scalar_one()
    await engine.dispose()
    ImageStore(cluster.api.image_dir).path(address).unlink()  # the image dir lost the bits

    moved = replace(cluster.cells[0], router="tcp://127.0.0.1:7777")
    changed = replace(cluster, secrets={**cluster.secrets, "demo_password": "new-demo"}, cells=(moved,))
    await bootstrap.ensure(changed)
    assert await ImageStore(cluster.api.image_dir).exists(address)
    engine = make_engine(cluster.api.db)
    async with engine.connect() as conn:
        assert (await conn.execute(select(cell_mappings.c.router))).scalar_one() == "tcp://127.0.0.1:7777"
    await engine.dispose()
    async with TestClient(TestServer(make_app(changed))) as client:
        assert (await client.post("/identity/v3/auth/tokens", json=auth_body("demo", "new-demo", "demo"))).status == 201
        assert (await client.post("/identity/v3/auth/tokens",
                                  json=auth_body("demo", cluster.secrets["demo_password"], "demo"))).status == 401
        svc = await client.post("/identity/v3/auth/tokens",
                                json=auth_body("cellcloud-service", cluster.secrets["service_password"], "service"))
        roles = {r["name"] for r in (await svc.json())["token"]["roles"]}
        assert {"admin", "service"} <= roles


async def test_bootstrap_refuses_missing_secrets(tmp_path: Path) -> None:
    cluster = replace(make_cluster(tmp_path), secrets={})
    with pytest.raises(ValueError, match="admin_password"):
        await bootstrap.ensure(cluster)
