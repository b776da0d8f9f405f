"""The image store: image bits as content-addressed files.

A blob's address is "sha512:<hex>" and it lives at <root>/sha512/<aa>/<hex>.
Writing goes to a temporary file in the same directory tree, hashed on the way
(md5 for Glance's `checksum`, sha512 for `os_hash_value` and the address), then
is renamed into place: a reader never sees a half-written blob, and two images
with the same bits share one file. Blocking file I/O runs in threads.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from cells import errors

HASH_ALGO = "sha512"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Blob:
    address: str  # "sha512:<hex>"
    size: int
    md5: str
    sha512: str


class ImageStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, address: str) -> Path:
        algo, _, digest = address.partition(":")
        if algo != HASH_ALGO or len(digest) != 128 or not all(c in "0123456789abcdef" for c in digest):
            raise errors.Invalid(reason=f"bad content address {address!r}")
        return self.root / algo / digest[:2] / digest

    async def exists(self, address: str) -> bool:
        return await asyncio.to_thread(self.path(address).is_file)

    async def put_bytes(self, data: bytes) -> Blob:
        async def one() -> AsyncIterator[bytes]:
            yield data
        return await self.put_stream(one())

    async def put_stream(self, chunks: AsyncIterable[bytes], verify: Callable[[Blob], None] | None = None,
                         tmp_prefix: str = "") -> Blob:
        """Store the bytes of `chunks`; returns where they went and their hashes. `verify` sees the
        blob before it is placed: when it raises, the bytes are removed and never seen by anyone.
        The temporary file's name starts with `tmp_prefix` (a dead upload's partial bytes are found by it)."""
        tmp_dir = self.root / "tmp"
        await asyncio.to_thread(tmp_dir.mkdir, parents=True, exist_ok=True)
        fd, tmp_name = await asyncio.to_thread(tempfile.mkstemp, dir=tmp_dir, prefix=tmp_prefix or "tmp")
        md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha512()
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    md5.update(chunk)
                    sha.update(chunk)
                    size += len(chunk)
                    await asyncio.to_thread(f.write, chunk)
                await asyncio.to_thread(os.fsync, f.fileno())
            blob = Blob(address=f"{HASH_ALGO}:{sha.hexdigest()}", size=size, md5=md5.hexdigest(),
                        sha512=sha.hexdigest())
            if verify is not None:
                verify(blob)
            final = self.path(blob.address)
            await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(os.replace, tmp_name, final)  # atomic: readers see all or nothing
            return blob
        except BaseException:
            await asyncio.to_thread(_unlink, tmp_name)
            raise

    async def delete(self, address: str) -> None:
        """Remove a blob; the caller makes sure no image record still points at it."""
        await asyncio.to_thread(_unlink, str(self.path(address)))


def _unlink(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass
