"""The `file` backend: one file per volume under the host's volumes directory.

raw files are sparse (truncate): a 1 GiB volume costs nothing until written.
qcow2 files are made with qemu-img. Either way the data stays when the volume
is detached, and the file is removed only when the volume is deleted.

Snapshots (`snapshot-<id>.<fmt>` beside the volumes) and volumes made from a
snapshot or another volume are copies made by `cp --reflink=auto
--sparse=always`: a copy-on-write clone where the filesystem has reflinks
(XFS, btrfs), else a copy of the written data only (holes stay holes). A copy
is made under a `.part` name and renamed when whole, so a failed or
interrupted one never leaves a file under the real name.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

from cells import errors
from node.compute.disks import limited
from node.volume.backends import VolumeStorage, snapshot_name, volume_name
from node.volume.proc import CommandFailed, run

FORMATS = ("raw", "qcow2")
GIB = 1024 ** 3
COPY_TIMEOUT = 3600.0  # a sparse copy of a large, full volume on a slow disk


class FileBackend:
    name = "file"

    def __init__(self, directory: str, disk_format: str = "raw", capacity_gb: int | None = None) -> None:
        if disk_format not in FORMATS:
            raise errors.Invalid(reason=f"file backend format must be one of {', '.join(FORMATS)}, not {disk_format!r}")
        self.directory = directory
        self.disk_format = disk_format
        self._capacity_gb = capacity_gb

    def _path(self, volume_id: str, fmt: str) -> str:
        return os.path.join(self.directory, f"{volume_name(volume_id)}.{fmt}")

    def _snapshot_path(self, snapshot_id: str, fmt: str) -> str:
        return os.path.join(self.directory, f"{snapshot_name(snapshot_id)}.{fmt}")

    async def check(self) -> None:
        await asyncio.to_thread(os.makedirs, self.directory, 0o700, True)
        if self.disk_format == "qcow2" and shutil.which("qemu-img") is None:
            raise errors.VolumeBackendUnavailable(kind="backend", name="file",
                                                  reason="qcow2 volumes need qemu-img (apt-get install qemu-utils)")

    async def create(self, volume_id: str, size_gb: int) -> VolumeStorage:
        path = self._path(volume_id, self.disk_format)
        if await asyncio.to_thread(os.path.exists, path):  # a retried create: the first one made it
            return VolumeStorage(volume_id, path, self.disk_format)
        tmp = path + ".part"  # never leave a half-made volume under the real name
        if self.disk_format == "raw":
            def make() -> None:
                with open(tmp, "wb") as f:
                    f.truncate(size_gb * GIB)
            await asyncio.to_thread(make)
        else:
            await run(["qemu-img", "create", "-q", "-f", "qcow2", tmp, f"{size_gb}G"], timeout=60)
        await asyncio.to_thread(os.replace, tmp, path)
        return VolumeStorage(volume_id, path, self.disk_format)

    async def delete(self, volume_id: str) -> None:
        await self._remove([self._path(volume_id, fmt) for fmt in FORMATS])

    async def _remove(self, paths: list[str]) -> None:
        for path in paths:
            for name in (path, path + ".part"):
                try:
                    await asyncio.to_thread(os.unlink, name)
                except FileNotFoundError:
                    pass

    async def _copy(self, source: VolumeStorage, path: str) -> None:
        """`source`'s bytes at `path` (a repeat finds it made); nothing under `path` if it fails."""
        if await asyncio.to_thread(os.path.exists, path):
            return
        tmp = path + ".part"
        try:
            await run(["cp", "--reflink=auto", "--sparse=always", source.path, tmp], timeout=COPY_TIMEOUT)
            await asyncio.to_thread(os.replace, tmp, path)
        except BaseException as exc:
            await asyncio.to_thread(_unlink_quietly, tmp)
            if isinstance(exc, CommandFailed):
                raise errors.VolumeBackendUnavailable(kind="backend", name="file", reason=f"copy failed: {exc}") \
                    from None
            raise

    async def create_snapshot(self, snapshot_id: str, volume_id: str) -> VolumeStorage:
        volume = await self.locate(volume_id)
        path = self._snapshot_path(snapshot_id, volume.disk_format)
        await self._copy(volume, path)
        return VolumeStorage(snapshot_id, path, volume.disk_format)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        await self._remove([self._snapshot_path(snapshot_id, fmt) for fmt in FORMATS])

    async def locate_snapshot(self, snapshot_id: str) -> VolumeStorage:
        for fmt in FORMATS:
            path = self._snapshot_path(snapshot_id, fmt)
            if await asyncio.to_thread(os.path.exists, path):
                return VolumeStorage(snapshot_id, path, fmt)
        raise errors.SnapshotNotFound(snapshot_id=snapshot_id)

    async def clone(self, volume_id: str, source: VolumeStorage, size_gb: int) -> VolumeStorage:
        """A new volume holding `source`'s bytes, grown to `size_gb` (a repeat finds it made)."""
        path = self._path(volume_id, source.disk_format)
        await self._copy(source, path)
        made = VolumeStorage(volume_id, path, source.disk_format)
        await self._grow(made, size_gb)
        return made

    async def import_image(self, volume_id: str, path: str, disk_format: str, size_gb: int) -> VolumeStorage:
        """qemu-img convert (under the compute's qemu-img limits) into this backend's format; the image's
        virtual size must fit. A `.part` until whole, as every copy."""
        target = self._path(volume_id, self.disk_format)
        if await asyncio.to_thread(os.path.exists, target):
            return VolumeStorage(volume_id, target, self.disk_format)
        source_format = "qcow2" if disk_format == "qcow2" else "raw"
        await check_image_fits(path, source_format, size_gb)
        tmp = target + ".part"
        try:
            await run(limited(["qemu-img", "convert", "-q", "-f", source_format, "-O", self.disk_format, path, tmp]),
                      timeout=COPY_TIMEOUT)
            await asyncio.to_thread(os.replace, tmp, target)
        except BaseException as exc:
            await asyncio.to_thread(_unlink_quietly, tmp)
            if isinstance(exc, CommandFailed):
                raise errors.VolumeBackendUnavailable(kind="backend", name="file",
                                                      reason=f"image conversion failed: {exc}") from None
            raise
        made = VolumeStorage(volume_id, target, self.disk_format)
        await self._grow(made, size_gb)
        return made

    async def extend(self, volume_id: str, size_gb: int) -> VolumeStorage:
        storage = await self.locate(volume_id)
        await self._grow(storage, size_gb)
        return storage

    async def _grow(self, storage: VolumeStorage, size_gb: int) -> None:
        """To `size_gb`, never smaller (a repeat of a done extend changes nothing)."""
        if storage.disk_format == "raw":
            def grow() -> None:
                if os.path.getsize(storage.path) < size_gb * GIB:
                    os.truncate(storage.path, size_gb * GIB)
            await asyncio.to_thread(grow)
            return
        info = await run(["qemu-img", "info", "--output=json", "-f", "qcow2", storage.path], timeout=60)
        if int(json.loads(info)["virtual-size"]) < size_gb * GIB:
            await run(["qemu-img", "resize", "-q", "-f", "qcow2", storage.path, f"{size_gb}G"], timeout=60)

    async def locate(self, volume_id: str) -> VolumeStorage:
        for fmt in FORMATS:
            path = self._path(volume_id, fmt)
            if await asyncio.to_thread(os.path.exists, path):
                return VolumeStorage(volume_id, path, fmt)
        raise errors.VolumeNotFound(volume_id=volume_id)

    async def capacity_gb(self) -> int:
        """Configured capacity, else the size of the filesystem holding the volumes."""
        if self._capacity_gb is not None:
            return self._capacity_gb
        usage = await asyncio.to_thread(shutil.disk_usage, Path(self.directory))
        return int(usage.total // GIB)


async def check_image_fits(path: str, disk_format: str, size_gb: int) -> None:
    """Invalid when the image's virtual size is larger than the volume (Cinder's ImageUnacceptable)."""
    info = json.loads(await run(limited(["qemu-img", "info", "--output=json", "-f", disk_format, path]), timeout=60))
    virtual = int(info.get("virtual-size") or 0)
    if virtual > size_gb * GIB:
        raise errors.Invalid(reason=f"Image virtual size is {-(-virtual // GIB)}GB and doesn't fit in a volume of "
                                    f"size {size_gb}GB.")


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
