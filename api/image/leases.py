"""Who owns an upload in progress, and the sweep that takes back the uploads nobody owns.

An upload holds an exclusive flock on <image_dir>/uploads/<image_id>.lease from before the
image turns `saving` until it is `active` or `queued` again. The kernel drops the lock the
moment its process dies (killed, OOM, power loss of the API host), so an image left `saving`
whose lease can be locked has no live upload: the sweep, run when an API process starts and
then periodically by each API worker, puts it back to `queued` and removes its partial bytes
(issue 14: every transition has an owner). All API workers of a cluster share one host and
image_dir, so the flock is seen by all of them.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from api.db.schema import images
from api.http import is_uuid
from api.timeutil import utcnow

LOG = logging.getLogger(__name__)
SWEEP_INTERVAL = 60.0  # seconds between two sweeps of one API process


def lease_path(image_dir: str | Path, image_id: str) -> Path:
    return Path(image_dir) / "uploads" / f"{image_id}.lease"


def partial_prefix(image_id: str) -> str:
    """How the store names an upload's temporary file (api/image/store.py put_stream)."""
    return f"{image_id}."


class UploadLease:
    """The exclusive flock of one image's upload (blocking calls: run them in a thread)."""

    def __init__(self, image_dir: str | Path, image_id: str) -> None:
        self.path = lease_path(image_dir, image_id)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lease; False when a live upload holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = _lock(self.path)
        if fd is None:
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lease up (the file goes first, so nobody locks a file about to vanish)."""
        if self._fd is not None:
            _unlink(self.path)
            os.close(self._fd)
            self._fd = None


def _lock(path: Path) -> int | None:
    """An fd holding the exclusive lock of the file now at `path`; None when someone else holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder unlinked it while we opened it: lock the file there now


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _abandoned(image_dir: str, image_id: str) -> bool:
    """Whether `image_id`'s upload has no live owner; if so its lease and partial bytes are gone after."""
    lease = lease_path(image_dir, image_id)
    fd = _lock(lease)
    if fd is None:
        return False
    try:
        tmp = Path(image_dir) / "tmp"
        for partial in tmp.glob(partial_prefix(image_id) + "*") if tmp.is_dir() else []:
            _unlink(partial)
        _unlink(lease)
    finally:
        os.close(fd)
    return True


# an upload in flight: `saving`, or `uploading` with no data yet (a stage, api/image/imports.py; once staged
# the data is there and the image waits for its import, whoever holds no lease)
_IN_FLIGHT = or_(images.c.status == "saving", and_(images.c.status == "uploading", images.c.content_address.is_(None)))


async def sweep(engine: AsyncEngine, image_dir: str) -> list[str]:
    """Put images left `saving` (or staging) by a dead upload back to `queued`; returns their ids."""
    async with engine.connect() as conn:
        saving = [r.id for r in await conn.execute(select(images.c.id).where(_IN_FLIGHT))]
    taken: list[str] = []
    for image_id in saving:
        if not is_uuid(image_id) or not await asyncio.to_thread(_abandoned, image_dir, image_id):
            continue
        async with engine.begin() as conn:
            done = await conn.execute(update(images).where(and_(images.c.id == image_id, _IN_FLIGHT))
                                      .values(status="queued", updated_at=utcnow()))
        if done.rowcount:
            LOG.warning("image %s was left saving by an upload that died: back to queued, partial data removed",
                        image_id)
            taken.append(image_id)
    return taken


async def sweep_forever(engine: AsyncEngine, image_dir: str, interval: float = SWEEP_INTERVAL) -> None:
    while True:
        try:
            await sweep(engine, image_dir)
        except Exception:  # a failed sweep is retried next time; it must not end the loop
            LOG.exception("upload sweep failed")
        await asyncio.sleep(interval)
