"""The node's image cache: images downloaded from the API cell's image store,
verified, and kept content-addressed (cache_dir/<os_hash_value>).

A download streams into a temp file in the cache dir while hashing; only a
file whose hashes match the image record, and whose bytes are what its
disk_format says and safe for QEMU (cells/imageformat.py), is renamed into
place (atomic), so a cached file is always a verified one; every use of a
cached base inspects it again. Concurrent fetches of one image share
one download.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import time
import uuid as uuidlib
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Protocol

import aiohttp

from cells import errors, imageformat
from cells.config import ClusterConfig
from cells.metrics import IMAGE_CACHE_BYTES, IMAGE_CACHE_FILES

LOG = logging.getLogger(__name__)

CHUNK = 1024 * 1024
WRITE_BATCH = 4 * CHUNK  # bytes collected before one executor hop (write + hash)
HEX = re.compile(r"^[0-9a-f]{32,128}$")  # the hash names a file: hex only, no path tricks
ALGOS = frozenset({"sha256", "sha384", "sha512", "sha3_256", "sha3_512", "md5", "sha1"})
PARTIAL = ".part"
MAX_UNUSED_AGE = 24 * 3600.0  # seconds an unused base stays cached (Nova's remove_unused_original_minimum_age)


class ImageFetcher(Protocol):
    """Where image bits come from: an async stream of byte chunks."""

    def stream(self, image_id: str) -> AsyncGenerator[bytes, None]: ...

    async def record(self, image_id: str) -> dict[str, Any]:
        """The image's record (id, hashes, size, formats): what a download is verified against."""
        ...

    async def close(self) -> None: ...


class ImageCache:
    def __init__(self, cache_dir: str, fetcher: ImageFetcher, max_unused_age: float = MAX_UNUSED_AGE, *,
                 owns_fetcher: bool = True) -> None:
        """`owns_fetcher=False`: the fetcher is shared (the simulated hosts of one process): its owner closes it."""
        self.cache_dir = cache_dir
        self.fetcher = fetcher
        self.owns_fetcher = owns_fetcher
        self.max_unused_age = max_unused_age
        self._locks: dict[str, asyncio.Lock] = {}
        self.downloads = 0  # completed downloads (for tests and metrics)

    async def start(self) -> None:
        """Create the cache dir and remove downloads a previous process left half-done."""
        await asyncio.to_thread(self._prepare)

    def _prepare(self) -> None:
        os.makedirs(self.cache_dir, exist_ok=True)
        for name in os.listdir(self.cache_dir):
            if name.endswith(PARTIAL):
                try:
                    os.unlink(os.path.join(self.cache_dir, name))
                except FileNotFoundError:
                    pass

    async def close(self) -> None:
        if self.owns_fetcher:
            await self.fetcher.close()

    async def fetch(self, image: dict[str, Any]) -> str:
        """The local path of `image`'s verified bits, downloading them if needed."""
        image_id = str(image.get("id") or "")
        algo, expected = _expected_hash(image)
        path = os.path.join(self.cache_dir, expected)
        if await asyncio.to_thread(_touch_if_exists, path):
            return await _inspected(image, path)
        lock = self._locks.setdefault(expected, asyncio.Lock())
        try:
            async with lock:
                if await asyncio.to_thread(_touch_if_exists, path):  # another fetch finished it meanwhile
                    return await _inspected(image, path)
                await self._download(image_id, image, algo, expected, path)
                await self.publish_usage()  # a new base: the cache grew (prune publishes what it removed)
                return path
        finally:
            if not lock.locked() and self._locks.get(expected) is lock:
                del self._locks[expected]

    async def prune(self, in_use: set[str]) -> list[str]:
        """Remove cached bases no guest uses that were last fetched more than max_unused_age
        ago (a fetch touches the file). `in_use`: paths of bases some guest on this host uses."""
        async with asyncio.timeout(60):
            removed = await asyncio.to_thread(self._prune, {os.path.abspath(p) for p in in_use})
        for path in removed:
            LOG.info("image cache: removed unused base %s", path)
        if removed:
            await self.publish_usage()
        return removed

    def _prune(self, in_use: set[str]) -> list[str]:
        removed: list[str] = []
        cutoff = time.time() - self.max_unused_age
        for name in os.listdir(self.cache_dir) if os.path.isdir(self.cache_dir) else []:
            path = os.path.abspath(os.path.join(self.cache_dir, name))
            if not HEX.match(name) or path in in_use or self._locks.get(name) is not None:
                continue  # not a base, used, or being downloaded right now
            try:
                if os.stat(path).st_mtime < cutoff:
                    os.unlink(path)
                    removed.append(path)
            except FileNotFoundError:
                pass
        return removed

    async def publish_usage(self) -> None:
        """The cache's verified bases (count, bytes) on this host's /metrics."""
        files, size = await asyncio.to_thread(self._usage)
        IMAGE_CACHE_FILES.set(files)
        IMAGE_CACHE_BYTES.set(size)

    def _usage(self) -> tuple[int, int]:
        files = size = 0
        for name in os.listdir(self.cache_dir) if os.path.isdir(self.cache_dir) else []:
            if HEX.match(name):
                try:
                    size += os.stat(os.path.join(self.cache_dir, name)).st_size
                    files += 1
                except FileNotFoundError:
                    pass
        return files, size

    async def fetch_by_id(self, image_id: str) -> str:
        """fetch() for an image known only by id (an AMI's kernel_id / ramdisk_id): its record
        comes from the image store first."""
        return await self.fetch(await self.fetcher.record(image_id))

    async def _download(self, image_id: str, image: dict[str, Any], algo: str, expected: str, path: str) -> None:
        tmp = os.path.join(self.cache_dir, f".{expected[:16]}.{uuidlib.uuid4().hex}{PARTIAL}")
        await asyncio.to_thread(os.makedirs, self.cache_dir, 0o755, True)
        digest, md5 = hashlib.new(algo), hashlib.md5()
        f = await asyncio.to_thread(open, tmp, "wb")
        try:
            batch: list[bytes] = []
            size = 0
            async with aclosing(self.fetcher.stream(image_id)) as chunks:
                async for chunk in chunks:
                    batch.append(chunk)
                    size += len(chunk)
                    if size >= WRITE_BATCH:
                        await asyncio.to_thread(_write_and_hash, f, batch, digest, md5)
                        batch, size = [], 0
            await asyncio.to_thread(_write_and_hash, f, batch, digest, md5)
            await asyncio.to_thread(_flush_and_close, f)
            _verify(image_id, expected, digest.hexdigest(), image.get("checksum"), md5.hexdigest())
            await _inspected(image, tmp)  # refused bits never become a cached base
            await asyncio.to_thread(os.replace, tmp, path)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(_discard, f, tmp))
            raise
        self.downloads += 1
        LOG.info("image %s cached as %s", image_id, path)


async def _inspected(image: dict[str, Any], path: str) -> str:
    """`path`, once its bytes are what the image's disk_format says and safe for QEMU to open
    (cells/imageformat.py): the API inspected them at upload, the compute trusts no one and
    looks again before a base backs a guest's disk. ImageFormatRefused otherwise."""
    found = await asyncio.to_thread(imageformat.inspect_file, path)
    try:
        imageformat.check(str(image.get("disk_format") or "raw"), found)
    except imageformat.ImageFormatRefused as exc:
        LOG.warning("image %s refused as a base: %s", image.get("id"), exc.message)
        raise
    return path


def _expected_hash(image: dict[str, Any]) -> tuple[str, str]:
    """(algorithm, hex digest) the downloaded bits must match."""
    image_id = str(image.get("id") or "")
    algo = str(image.get("os_hash_algo") or "sha512").lower()
    value = str(image.get("os_hash_value") or "").lower()
    if not value and image.get("checksum"):  # an old-style record: md5 only
        algo, value = "md5", str(image["checksum"]).lower()
    if algo not in ALGOS:
        raise errors.Invalid(reason=f"image {image_id} uses unsupported hash algorithm {algo!r}")
    if not HEX.match(value):
        raise errors.Invalid(reason=f"image {image_id} has no usable checksum to verify its bits against")
    return algo, value


def _verify(image_id: str, expected: str, actual: str, checksum: Any, md5: str) -> None:
    if actual != expected:
        raise errors.ImageChecksumMismatch(image_id=image_id, expected=expected, actual=actual)
    if checksum and str(checksum).lower() != md5:
        raise errors.ImageChecksumMismatch(image_id=image_id, expected=str(checksum), actual=md5)


def _touch_if_exists(path: str) -> bool:
    try:
        os.utime(path)  # the mtime says when the image was last used (for a future cache pruner)
        return True
    except FileNotFoundError:
        return False


def _write_and_hash(f: Any, chunks: list[bytes], *digests: Any) -> None:
    for chunk in chunks:
        f.write(chunk)
        for digest in digests:
            digest.update(chunk)


def _flush_and_close(f: Any) -> None:
    f.flush()
    os.fsync(f.fileno())  # the rename must never expose a file whose data is not on disk
    f.close()


def _discard(f: Any, tmp: str) -> None:
    f.close()
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


class HttpImageFetcher:
    """Downloads from the API cell's image store (`GET /image/v2/images/{id}/file`)
    as the cluster's image reader (a user whose only role, image_reader, shows and downloads
    images: never the admin or service password), with a Keystone v3 token it renews on 401."""

    def __init__(self, api_url: str, password: str, *, user: str = "cellcloud-image-reader",
                 project: str = "service", connect_timeout: float = 10.0, read_timeout: float = 60.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.password = password
        self.user = user
        self.project = project
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._auth_lock = asyncio.Lock()
        self.auth_count = 0

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get_token(self, stale: str | None = None) -> str:
        """A valid token; `stale` is one the server just refused (renew unless another task already did)."""
        async with self._auth_lock:
            if self._token is None or self._token == stale:
                self._token = await self._authenticate()
            return self._token

    async def _authenticate(self) -> str:
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.user, "domain": {"id": "default"}, "password": self.password}}},
            "scope": {"project": {"name": self.project, "domain": {"id": "default"}}}}}
        url = f"{self.api_url}/identity/v3/auth/tokens"
        try:
            async with self._http().post(url, json=body, timeout=aiohttp.ClientTimeout(total=15)) as resp:
                token = resp.headers.get("X-Subject-Token")
                if resp.status not in (200, 201) or not token:
                    raise errors.ImageDownloadFailed(image_id="-", reason=f"service login failed: HTTP {resp.status}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise errors.ImageDownloadFailed(image_id="-", reason=f"service login failed: {exc!r}") from exc
        self.auth_count += 1
        return token

    async def record(self, image_id: str) -> dict[str, Any]:
        url = f"{self.api_url}/image/v2/images/{image_id}"
        stale: str | None = None
        for attempt in range(2):
            token = await self._get_token(stale)
            try:
                async with self._http().get(url, headers={"X-Auth-Token": token}) as resp:
                    if resp.status == 401 and attempt == 0:
                        stale = token
                        continue
                    if resp.status == 404:
                        raise errors.ImageNotFound(image_id=image_id)
                    if resp.status != 200:
                        raise errors.ImageDownloadFailed(image_id=image_id, reason=f"HTTP {resp.status}")
                    doc = await resp.json()
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                raise errors.ImageDownloadFailed(image_id=image_id, reason=repr(exc)) from exc
            if not isinstance(doc, dict) or doc.get("status") != "active":
                raise errors.ImageDownloadFailed(image_id=image_id, reason="the image is not active")
            return {k: doc.get(k) for k in ("id", "name", "checksum", "os_hash_algo", "os_hash_value", "size",
                                            "disk_format", "container_format")}
        raise errors.ImageDownloadFailed(image_id=image_id, reason="the image store refused the service token")

    async def stream(self, image_id: str) -> AsyncGenerator[bytes, None]:
        url = f"{self.api_url}/image/v2/images/{image_id}/file"
        stale: str | None = None
        for attempt in range(2):
            token = await self._get_token(stale)
            try:
                async with self._http().get(url, headers={"X-Auth-Token": token}) as resp:
                    if resp.status == 401 and attempt == 0:
                        stale = token  # expired or revoked: log in again once
                        continue
                    if resp.status == 404:
                        raise errors.ImageNotFound(image_id=image_id)
                    if resp.status != 200:
                        raise errors.ImageDownloadFailed(image_id=image_id, reason=f"HTTP {resp.status}")
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        yield chunk
                    return
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise errors.ImageDownloadFailed(image_id=image_id, reason=repr(exc)) from exc
        raise errors.ImageDownloadFailed(image_id=image_id, reason="the image store refused the service token")


def image_store_client(cluster: ClusterConfig) -> HttpImageFetcher:
    """The cluster's image store, as its image reader (the one user a node downloads images as)."""
    return HttpImageFetcher(cluster.api.public_url, cluster.secrets.get("image_reader_password", ""),
                            user="cellcloud-image-reader")
