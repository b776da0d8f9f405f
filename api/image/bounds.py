"""What one upload may take: Glance's image_size_cap and image_size_total, and a free-space
watermark on the image store's filesystem (cluster.yaml api: image_size_cap, image_size_total,
image_store_min_free; README "cluster.yaml").

An UploadGuard is made before the first byte (refusing at once what Content-Length already
shows is too big) and counts the bytes as they pass, so an upload stops the moment it goes
over, not after it filled the disk. The quota is checked again when the image goes active,
in the same transaction, so two uploads racing cannot both fit into the room left for one.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from sqlalchemy import Connection, and_, func, select

from api.db.schema import images
from cells import errors
from cells.config import ApiSpec

FREE_CHECK_EVERY = 64 << 20  # bytes between two statvfs() of the store while an upload streams


@errors._register
class ImageTooLarge(errors.CellcloudError):
    """Glance answers both the size cap and the storage quota with 413."""
    code, http_status, msg = "image_too_large", 413, "{reason}"


@errors._register
class ImageStoreFull(errors.CellcloudError):
    code, http_status, msg = "image_store_full", 503, "{reason}"


@dataclass(frozen=True)
class Bounds:
    size_cap: int  # bytes of one image's data
    size_total: int  # bytes of active image data one project may own
    min_free: int  # bytes the image store's filesystem keeps free

    @classmethod
    def of(cls, api: ApiSpec) -> Bounds:
        return cls(api.image_size_cap, api.image_size_total, api.image_store_min_free)


def used_by(conn: Connection, owner: str | None, but: str) -> int:
    """Bytes of active image data `owner` owns, leaving out image `but` (the one being uploaded)."""
    query = select(func.coalesce(func.sum(images.c.size), 0)).where(and_(
        images.c.owner == owner, images.c.status == "active", images.c.id != but))
    return int(conn.execute(query).scalar() or 0)


def free_bytes(path: str) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path` (blocking)."""
    os.makedirs(path, exist_ok=True)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_total(bounds: Bounds, used: int, size: int) -> None:
    if used + size > bounds.size_total:
        raise ImageTooLarge(reason=f"Image exceeds the storage quota: the project's images would take "
                                   f"{used + size} bytes, the limit is {bounds.size_total} "
                                   f"({max(0, bounds.size_total - used)} bytes remaining).")


class UploadGuard:
    """Counts an upload's bytes against the cap, the project's quota and the store's free space."""

    def __init__(self, bounds: Bounds, store_root: str, used: int, announced: int | None) -> None:
        self.bounds, self.store_root, self.used, self.announced = bounds, store_root, used, announced
        self.received = 0
        self._next_free_check = 0

    async def start(self) -> None:
        """Refuse at once what the announced length already shows cannot fit."""
        if self.announced is not None:
            self._check_size(self.announced)
        await self._check_free()

    async def passed(self, n: int) -> None:
        """`n` more bytes arrived."""
        self.received += n
        self._check_size(self.received)
        if self.received >= self._next_free_check:
            await self._check_free()

    def _check_size(self, size: int) -> None:
        if size > self.bounds.size_cap:
            raise ImageTooLarge(reason=f"Image exceeds the size limit: {size} bytes is over the "
                                       f"{self.bounds.size_cap} bytes one image may hold.")
        check_total(self.bounds, self.used, size)

    async def _check_free(self) -> None:
        self._next_free_check = self.received + FREE_CHECK_EVERY
        free = await asyncio.to_thread(free_bytes, self.store_root)
        still_to_come = max(0, (self.announced or 0) - self.received)
        if free - still_to_come < self.bounds.min_free:
            raise ImageStoreFull(reason=f"The image store is too full to take this image: {free} bytes free, "
                                        f"{still_to_come} more to come, and {self.bounds.min_free} must stay "
                                        f"free. Try again later.")
