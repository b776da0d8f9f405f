"""The `file` backend: one file per volume under the host's volumes directory.

raw files are sparse (truncate): a 1 GiB volume costs nothing until written.
qcow2 files are made with qemu-img. Either way the data stays when the volume
is detached, and the file is removed only when the volume is deleted.
"""
from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from cells import errors
from node.volume.backends import VolumeStorage, volume_name
from node.volume.proc import run

FORMATS = ("raw", "qcow2")
GIB = 1024 ** 3


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
        for fmt in FORMATS:
            for path in (self._path(volume_id, fmt), self._path(volume_id, fmt) + ".part"):
                try:
                    await asyncio.to_thread(os.unlink, path)
                except FileNotFoundError:
                    pass

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
