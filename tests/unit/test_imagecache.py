"""The image cache against a real (small) aiohttp image store and token endpoint."""
from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cells import errors
from node.imagecache import HttpImageFetcher, ImageCache

PASSWORD = "s3cret"
DATA = os.urandom(3 * 1024 * 1024 + 17)  # spans several chunks and write batches


@dataclass
class Store:
    images: dict[str, bytes] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    logins: int = 0
    downloads: int = 0
    delay: float = 0.0
    url: str = ""

    def revoke_all(self) -> None:
        self.tokens.clear()

    async def login(self, request: web.Request) -> web.Response:
        body = await request.json()
        ident = body["auth"]["identity"]["password"]["user"]
        scope = body["auth"]["scope"]["project"]
        if (ident["name"], ident["password"], scope["name"]) != ("cellcloud-image-reader", PASSWORD, "service"):
            return web.json_response({"error": {"code": 401}}, status=401)
        self.logins += 1
        token = f"tok-{self.logins}"
        self.tokens.add(token)
        return web.json_response({"token": {}}, status=201, headers={"X-Subject-Token": token})

    async def image_file(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("X-Auth-Token") not in self.tokens:
            return web.json_response({"error": "unauthorized"}, status=401)
        data = self.images.get(request.match_info["image_id"])
        if data is None:
            return web.json_response({"error": "not found"}, status=404)
        self.downloads += 1
        resp = web.StreamResponse()
        resp.content_length = len(data)
        await resp.prepare(request)
        for i in range(0, len(data), 256 * 1024):
            await resp.write(data[i:i + 256 * 1024])
            if self.delay:
                await asyncio.sleep(self.delay)
        await resp.write_eof()
        return resp


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = Store(images={"img-1": DATA})
    app = web.Application()
    app.router.add_post("/identity/v3/auth/tokens", s.login)
    app.router.add_get("/image/v2/images/{image_id}/file", s.image_file)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    s.url = f"http://127.0.0.1:{port}"
    yield s
    await runner.cleanup()


@pytest.fixture
async def cache(store: Store, tmp_path: Path) -> AsyncIterator[ImageCache]:
    c = ImageCache(str(tmp_path / "images"), HttpImageFetcher(store.url, PASSWORD))
    await c.start()
    yield c
    await c.close()


def record(data: bytes = DATA, image_id: str = "img-1", **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": image_id, "os_hash_algo": "sha512", "os_hash_value": hashlib.sha512(data).hexdigest(),
                           "checksum": hashlib.md5(data).hexdigest(), "size": len(data), "disk_format": "raw"}
    rec.update(over)
    return rec


def files(cache: ImageCache) -> list[str]:
    return sorted(os.listdir(cache.cache_dir))


async def test_good_image_is_cached_content_addressed(cache: ImageCache, store: Store) -> None:
    path = await cache.fetch(record())
    assert Path(path).read_bytes() == DATA
    assert os.path.basename(path) == hashlib.sha512(DATA).hexdigest()
    assert files(cache) == [os.path.basename(path)]  # no temp file left
    assert (store.logins, store.downloads) == (1, 1)


async def test_second_fetch_is_served_from_cache(cache: ImageCache, store: Store) -> None:
    first = await cache.fetch(record())
    second = await cache.fetch(record())
    assert first == second
    assert store.downloads == 1 and cache.downloads == 1


async def test_wrong_hash_raises_and_leaves_no_file(cache: ImageCache, store: Store) -> None:
    bad = record(os_hash_value=hashlib.sha512(b"other bits").hexdigest())
    with pytest.raises(errors.ImageChecksumMismatch) as info:
        await cache.fetch(bad)
    assert info.value.kwargs["image_id"] == "img-1" and "img-1" in str(info.value)
    assert info.value.kwargs["actual"] == hashlib.sha512(DATA).hexdigest()
    assert files(cache) == []
    assert store.downloads == 1


async def test_wrong_md5_checksum_is_caught_too(cache: ImageCache) -> None:
    with pytest.raises(errors.ImageChecksumMismatch):
        await cache.fetch(record(checksum=hashlib.md5(b"x").hexdigest()))
    assert files(cache) == []


async def test_other_hash_algorithm(cache: ImageCache) -> None:
    path = await cache.fetch(record(os_hash_algo="sha256", os_hash_value=hashlib.sha256(DATA).hexdigest()))
    assert os.path.basename(path) == hashlib.sha256(DATA).hexdigest()


async def test_concurrent_fetches_share_one_download(cache: ImageCache, store: Store) -> None:
    store.delay = 0.01
    paths = await asyncio.gather(*(cache.fetch(record()) for _ in range(8)))
    assert len(set(paths)) == 1
    assert store.downloads == 1 and store.logins == 1
    assert Path(paths[0]).read_bytes() == DATA


async def test_expired_token_is_renewed_once(cache: ImageCache, store: Store) -> None:
    store.images["img-2"] = b"second image"
    await cache.fetch(record())
    store.revoke_all()
    path = await cache.fetch(record(b"second image", "img-2"))
    assert Path(path).read_bytes() == b"second image"
    assert store.logins == 2


async def test_missing_image_and_bad_password(cache: ImageCache, store: Store, tmp_path: Path) -> None:
    with pytest.raises(errors.ImageNotFound):
        await cache.fetch(record(b"nothing", "img-404"))
    locked_out = ImageCache(str(tmp_path / "other"), HttpImageFetcher(store.url, "wrong"))
    try:
        with pytest.raises(errors.ImageDownloadFailed, match="login failed"):
            await locked_out.fetch(record())
    finally:
        await locked_out.close()
    assert files(cache) == []


async def test_unreachable_store(tmp_path: Path) -> None:
    from tests.conftest import free_port
    c = ImageCache(str(tmp_path / "c"), HttpImageFetcher(f"http://127.0.0.1:{free_port()}", PASSWORD))
    try:
        with pytest.raises(errors.ImageDownloadFailed):
            await c.fetch(record())
    finally:
        await c.close()


@pytest.mark.parametrize("over", [
    {"os_hash_value": "../../etc/passwd", "checksum": None},
    {"os_hash_value": None, "checksum": None},
    {"os_hash_algo": "crc32"},
])
async def test_records_without_a_usable_hash_are_refused(cache: ImageCache, store: Store,
                                                         over: dict[str, Any]) -> None:
    with pytest.raises(errors.Invalid):
        await cache.fetch(record(**over))
    assert store.downloads == 0


async def test_md5_only_record_still_verifies(cache: ImageCache) -> None:
    path = await cache.fetch(record(os_hash_algo=None, os_hash_value=None))
    assert os.path.basename(path) == hashlib.md5(DATA).hexdigest()


async def test_start_removes_stale_partial_downloads(store: Store, tmp_path: Path) -> None:
    d = tmp_path / "images"
    d.mkdir()
    (d / ".abc.123.part").write_bytes(b"half")
    (d / "keep").write_bytes(b"cached")
    c = ImageCache(str(d), HttpImageFetcher(store.url, PASSWORD))
    await c.start()
    await c.close()
    assert sorted(os.listdir(d)) == ["keep"]


async def test_caches_sharing_a_fetcher_log_in_once_and_keep_their_own_files(store: Store, tmp_path: Path) -> None:
    """The simulated hosts of one process (tools/serve_simulated.py): 20 caches, one image store client,
    fetching at once; one closing leaves the client to its owner."""
    closes = []

    class Shared(HttpImageFetcher):
        async def close(self) -> None:
            closes.append(1)
            await super().close()

    shared = Shared(store.url, PASSWORD)
    caches = [ImageCache(str(tmp_path / f"host{i}"), shared, owns_fetcher=False) for i in range(20)]
    try:
        for c in caches:
            await c.start()
        paths = await asyncio.gather(*(c.fetch(record()) for c in caches))
        assert len({os.path.dirname(p) for p in paths}) == 20  # a copy in each host's cache
        assert (store.logins, store.downloads) == (1, 20)
        await caches[0].close()
        assert not closes  # a cache closes only a fetcher of its own
        late = ImageCache(str(tmp_path / "late"), shared, owns_fetcher=False)
        await late.start()
        assert Path(await late.fetch(record())).read_bytes() == DATA  # the shared client still serves
        assert store.logins == 1
    finally:
        await shared.close()
    assert len(closes) == 1
