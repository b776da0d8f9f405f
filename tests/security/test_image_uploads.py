"""A project member's hostile image uploads against the real API app (in-process, real SQLite
API DB, real image store on disk): images that would make QEMU open host files, data that is
not what its disk_format says, uploads over the size cap, the project's quota or the store's
free space are refused, and each leaves the image `queued` with no bytes in the store. An
upload whose process died gives its image back (`saving` -> `queued`, partial bytes gone)."""
from __future__ import annotations

import asyncio
import dataclasses
import shutil
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from api.db.engine import make_engine
from api.db.schema import images
from api.image import leases
from api.image.leases import UploadLease
from cells.config import ClusterConfig
from tests.unit.api_support import SECRETS, make_cluster, start_client, token

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) is not installed")
MIB = 1 << 20


def qemu_img_bytes(tmp: Path, name: str, fmt: str, *options: str) -> bytes:
    path = tmp / name
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, *options, str(path), "1M"], check=True, capture_output=True)
    return path.read_bytes()


def store_files(cluster: ClusterConfig) -> set[str]:
    root = Path(cluster.api.image_dir)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest_asyncio.fixture
async def bounded(tmp_path: Path) -> AsyncIterator[tuple[ClusterConfig, TestClient[Any, Any], dict[str, str]]]:
    base = make_cluster(tmp_path)
    cluster = dataclasses.replace(base, api=dataclasses.replace(base.api, image_size_cap=4 * MIB,
                                                                image_size_total=6 * MIB))
    client = await start_client(cluster)
    headers = {"X-Auth-Token": await token(client, "demo", SECRETS["demo_password"], "demo")}
    yield cluster, client, headers
    await client.close()


async def create(client: TestClient[Any, Any], headers: dict[str, str], disk_format: str) -> str:
    container = disk_format if disk_format in ("ami", "aki", "ari") else "bare"
    resp = await client.post("/image/v2/images", json={"name": "x", "disk_format": disk_format,
                                                      "container_format": container}, headers=headers)
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def put(client: TestClient[Any, Any], headers: dict[str, str], image_id: str, data: Any) -> tuple[int, str]:
    resp = await client.put(f"/image/v2/images/{image_id}/file", data=data,
                            headers={**headers, "Content-Type": "application/octet-stream"})
    body = await resp.json() if resp.status >= 400 else {}
    return resp.status, str(body.get("message", ""))


async def status(client: TestClient[Any, Any], headers: dict[str, str], image_id: str) -> dict[str, Any]:
    return dict(await (await client.get(f"/image/v2/images/{image_id}", headers=headers)).json())


def hostile_images(tmp: Path) -> list[tuple[str, str, bytes, str]]:
    """(what, declared disk_format, data, expected message)."""
    plain = qemu_img_bytes(tmp, "plain.qcow2", "qcow2")
    unknown = bytearray(plain)
    struct.pack_into(">Q", unknown, 72, 1 << 33)
    flat = (tmp / "flat.vmdk")
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", str(flat), "1M"],
                   check=True, capture_output=True)
    passwd_descriptor = flat.read_text().replace('"flat-flat.vmdk"', '"/etc/passwd"').encode()
    return [
        ("qcow2 backed by a host file", "qcow2", qemu_img_bytes(tmp, "b.qcow2", "qcow2", "-F", "raw", "-b",
                                                                 "/etc/passwd"),
         "Image data refused: the qcow2 image names a backing file."),
        ("qcow2 with an external data file", "qcow2",
         qemu_img_bytes(tmp, "d.qcow2", "qcow2", "-o", f"data_file={tmp / 'data.raw'}"),
         "Image data refused: the qcow2 image keeps its data in an external data file."),
        ("qcow2 with unknown incompatible features", "qcow2", bytes(unknown),
         "Image data refused: the qcow2 image has unknown incompatible features 0x200000000."),
        ("vmdk descriptor naming /etc/passwd, declared raw", "raw", passwd_descriptor,
         "Image data refused: a vmdk descriptor file keeps its data in other files."),
        ("sparse vmdk declared qcow2", "qcow2", qemu_img_bytes(tmp, "s.vmdk", "vmdk"),
         "Image data refused: the data is vmdk, not qcow2 as the image says."),
        ("raw declared qcow2", "qcow2", b"\x01" * MIB, "Image data refused: the data is raw, not qcow2 as the image says."),
        ("qcow2 declared raw", "raw", plain, "Image data refused: the data is qcow2, not raw as the image says."),
        ("qcow2 declared as a kernel", "aki", plain, "Image data refused: the data is qcow2, not aki as the image says."),
        ("truncated qcow2 header", "qcow2", plain[:50], "Image data refused: the qcow2 header is truncated."),
    ]


async def test_hostile_uploads_are_refused_and_leave_nothing(
        bounded: tuple[ClusterConfig, TestClient[Any, Any], dict[str, str]], tmp_path: Path) -> None:
    cluster, client, headers = bounded
    before = store_files(cluster)
    for what, disk_format, data, message in hostile_images(tmp_path):
        image_id = await create(client, headers, disk_format)
        assert await put(client, headers, image_id, data) == (400, message), what
        shown = await status(client, headers, image_id)
        assert (shown["status"], shown["size"], shown["checksum"]) == ("queued", None, None), what
        assert store_files(cluster) == before, what
        assert (await client.get(f"/image/v2/images/{image_id}/file", headers=headers)).status == 204


async def test_a_safe_qcow2_is_stored_with_its_virtual_size(
        bounded: tuple[ClusterConfig, TestClient[Any, Any], dict[str, str]], tmp_path: Path) -> None:
    _, client, headers = bounded
    image_id = await create(client, headers, "qcow2")
    assert await put(client, headers, image_id, qemu_img_bytes(tmp_path, "ok.qcow2", "qcow2")) == (204, "")
    shown = await status(client, headers, image_id)
    assert shown["status"] == "active" and shown["virtual_size"] == MIB and shown["size"] < MIB


async def test_only_checkable_disk_formats_are_offered_and_accepted(
        bounded: tuple[ClusterConfig, TestClient[Any, Any], dict[str, str]]) -> None:
    _, client, headers = bounded
    schema = await (await client.get("/image/v2/schemas/image", headers=headers)).json()
    assert schema["properties"]["disk_format"]["enum"] == [None, "ami", "ari", "aki", "raw", "qcow2"]
    for fmt in ("vmdk", "vhd", "vhdx", "vdi", "iso", "ploop"):
        resp = await client.post("/image/v2/images", json={"name": "x", "disk_format": fmt,
                                                          "container_format": "bare"}, headers=headers)
        assert resp.status == 400 and (await resp.json())["message"] == f"Invalid disk format '{fmt}' for image."


async def test_uploads_over_the_size_cap_or_the_quota_are_refused_with_413(
        bounded: tuple[ClusterConfig, TestClient[Any, Any], dict[str, str]]) -> None:
    cluster, client, headers = bounded
    before = store_files(cluster)
    big = await create(client, headers, "raw")
    assert await put(client, headers, big, bytes(5 * MIB)) == (
        413, f"Image exceeds the size limit: {5 * MIB} bytes is over the {4 * MIB} bytes one image may hold.")

    async def chunked(n: int) -> AsyncIterator[bytes]:  # no Content-Length: the cap stops it mid-stream
        for _ in range(n):
            yield bytes(MIB)
    code, message = await put(client, headers, big, chunked(5))
    assert code == 413 and message.startswith("Image exceeds the size limit")
    assert (await status(client, headers, big))["status"] == "queued" and store_files(cluster) == before
    first = await create(client, headers, "raw")
    assert await put(client, headers, first, b"\x02" * (4 * MIB)) == (204, "")
    second = await create(client, headers, "raw")
    code, message = await put(client, headers, second, b"\x03" * (3 * MIB))
    assert code == 413 and message == (f"Image exceeds the storage quota: the project's images would take "
                                       f"{7 * MIB} bytes, the limit is {6 * MIB} ({2 * MIB} bytes remaining).")
    assert (await status(client, headers, second))["status"] == "queued"
    assert await put(client, headers, second, b"\x03" * (2 * MIB)) == (204, "")  # what fits still fits


async def test_an_upload_that_would_fill_the_store_is_refused_with_503(tmp_path: Path) -> None:
    base = make_cluster(tmp_path)
    cluster = dataclasses.replace(base, api=dataclasses.replace(base.api, image_store_min_free=1 << 60))
    client = await start_client(cluster)
    try:
        headers = {"X-Auth-Token": await token(client, "demo", SECRETS["demo_password"], "demo")}
        before = store_files(cluster)
        image_id = await create(client, headers, "raw")
        code, message = await put(client, headers, image_id, bytes(MIB))
        # a fixed text for the tenant: the store's free bytes stay in the log
        assert code == 503 and message.startswith("The image store is too full to take this image. Try again later.")
        assert (await status(client, headers, image_id))["status"] == "queued"
        assert store_files(cluster) == before
    finally:
        await client.close()


async def _force_saving(cluster: ClusterConfig, image_id: str) -> None:
    engine = make_engine(cluster.api.db)
    try:
        async with engine.begin() as conn:
            await conn.execute(update(images).where(images.c.id == image_id).values(status="saving"))
    finally:
        await engine.dispose()


async def _db_status(cluster: ClusterConfig, image_id: str) -> str:
    engine = make_engine(cluster.api.db)
    try:
        async with engine.connect() as conn:
            return str((await conn.execute(select(images.c.status).where(images.c.id == image_id))).scalar())
    finally:
        await engine.dispose()


HOLDER = """
import sys, time
from api.image.leases import UploadLease
assert UploadLease(sys.argv[1], sys.argv[2]).acquire()
print("held", flush=True)
time.sleep(60)
"""


async def test_an_image_left_saving_by_a_dead_upload_goes_back_to_queued(
        bounded: tuple[ClusterConfig, TestClient[Any, Any], dict[str, str]]) -> None:
    """The upload's process holds the lease (a real second process here); while it lives the
    sweep leaves its image alone, once it is killed the sweep takes the image back."""
    cluster, client, headers = bounded
    image_id = await create(client, headers, "raw")
    await _force_saving(cluster, image_id)
    partial = Path(cluster.api.image_dir) / "tmp" / f"{image_id}.abc123"
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"half an image")
    holder = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLDER, cluster.api.image_dir, image_id,
                                                  stdout=asyncio.subprocess.PIPE, cwd=str(Path(__file__).parents[2]))
    try:
        assert holder.stdout is not None and await holder.stdout.readline() == b"held\n"
        engine = make_engine(cluster.api.db)
        try:
            assert await leases.sweep(engine, cluster.api.image_dir) == []
            assert await _db_status(cluster, image_id) == "saving" and partial.exists()
            holder.kill()
            await holder.wait()
            assert await leases.sweep(engine, cluster.api.image_dir) == [image_id]
        finally:
            await engine.dispose()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    assert await _db_status(cluster, image_id) == "queued" and not partial.exists()
    assert not leases.lease_path(cluster.api.image_dir, image_id).exists()
    assert await put(client, headers, image_id, bytes(MIB)) == (204, "")  # uploadable again


async def test_a_live_upload_keeps_its_image_while_it_streams(
        bounded: tuple[ClusterConfig, TestClient[Any, Any], dict[str, str]]) -> None:
    cluster, client, headers = bounded
    image_id = await create(client, headers, "raw")
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield bytes(MIB)
        await release.wait()
        yield bytes(MIB)
    upload = asyncio.create_task(put(client, headers, image_id, slow()))
    for _ in range(100):
        if await _db_status(cluster, image_id) == "saving":
            break
        await asyncio.sleep(0.02)
    engine = make_engine(cluster.api.db)
    try:
        assert await leases.sweep(engine, cluster.api.image_dir) == []
    finally:
        await engine.dispose()
    assert not UploadLease(cluster.api.image_dir, image_id).acquire()  # the upload holds it
    release.set()
    assert await upload == (204, "")
    assert (await status(client, headers, image_id))["status"] == "active"


async def test_a_dead_stage_goes_back_to_queued_and_a_staged_image_waits_for_its_import(
        bounded: tuple[ClusterConfig, TestClient[Any, Any], dict[str, str]]) -> None:
    """An image `uploading` with no data is a stage (api/image/imports.py) whose process died: the sweep
    takes it back to queued. Once staged (its data stored) it waits for its import, lease or none."""
    cluster, client, headers = bounded
    dead = await create(client, headers, "raw")
    staged = await create(client, headers, "raw")
    resp = await client.put(f"/image/v2/images/{staged}/stage", data=bytes(MIB),
                            headers={**headers, "Content-Type": "application/octet-stream"})
    assert resp.status == 204, await resp.text()
    engine = make_engine(cluster.api.db)
    try:
        async with engine.begin() as conn:
            await conn.execute(update(images).where(images.c.id == dead).values(status="uploading"))
        assert await leases.sweep(engine, cluster.api.image_dir) == [dead]
    finally:
        await engine.dispose()
    assert (await _db_status(cluster, dead), await _db_status(cluster, staged)) == ("queued", "uploading")
