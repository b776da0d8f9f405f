"""A shelve whose API process died while taking its image (api/compute/shelve.py sweep_orphans), on a real
API DB and image store: with no live holder of its shelve lease the sweep ends the shelve as failed in the
server's cell and deletes the image; a shelve whose lease is held (a live process, here another open file)
and an image already active are left alone."""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from sqlalchemy import insert, select, update

from api.compute import mappings, server_snapshots, shelve
from api.db.engine import make_database, make_engine
from api.db.schema import create_schema, images, instance_mappings
from api.image.leases import UploadLease
from api.image.store import ImageStore
from cells.context import RequestContext
from cells.db.engine import Database

TINY = {"vcpus": 1, "ram": 512, "disk": 1}


class Cells:
    """The router's conductor(path), recording the shelve steps it is told."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, str, str | None]] = []

    def conductor(self, path: str) -> Cells:
        return self

    async def shelve_progress(self, ctx: RequestContext, uuid: str, step: str,
                              message: str | None = None) -> dict[str, Any]:
        self.steps.append((uuid, step, message))
        return {}


@pytest_asyncio.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Any, Database, ImageStore]]:
    url = f"sqlite:///{tmp_path}/api.db"
    await create_schema(url)
    engine, db = make_engine(url), make_database(url)
    yield engine, db, ImageStore(tmp_path / "images")
    await db.close()
    await engine.dispose()


async def _shelving(engine: Any, db: Database, status: str) -> tuple[str, str]:
    """A server mapped in cell1 whose shelve image is in `status`: (server uuid, image id)."""
    server = {"uuid": str(uuidlib.uuid4()), "project_id": "p1", "user_id": "u", "name": "vm", "flavor": TINY}
    await mappings.add(db, [server], "cell1")
    values = server_snapshots.image_values({**server, "image": {}}, RequestContext(project="p1", user="u"),
                                           "vm-shelved", {}, {})
    async with engine.begin() as conn:
        await conn.execute(insert(images).values(**{**values, "status": status}))
        await conn.execute(update(instance_mappings).where(instance_mappings.c.instance_uuid == server["uuid"])
                           .values(shelved_image_id=values["id"]))
    return str(server["uuid"]), str(values["id"])


async def test_the_sweep_ends_only_the_shelves_nobody_takes(api: tuple[Any, Database, ImageStore]) -> None:
    engine, db, store = api
    orphan, _ = await _shelving(engine, db, "queued")
    live, live_image = await _shelving(engine, db, "saving")
    _, done_image = await _shelving(engine, db, "active")
    held = UploadLease(store.root, shelve.LEASE_PREFIX + live_image)  # the process taking it lives
    assert held.acquire()
    cells = Cells()
    try:
        assert await shelve.sweep_orphans(engine, cells, store) == [orphan]
    finally:
        held.release()
    assert cells.steps == [(orphan, "failed", shelve.ORPHANED)]
    async with engine.connect() as conn:
        left = {r.id for r in await conn.execute(select(images.c.id))}
        pinned = {r.instance_uuid: r.shelved_image_id for r in await conn.execute(select(instance_mappings))}
    assert left == {live_image, done_image} and pinned[orphan] is None and pinned[live] == live_image
    # once its holder is gone, the other one is an orphan too
    assert await shelve.sweep_orphans(engine, cells, store) == [live]
