"""The `lvm` backend: one logical volume per volume in a volume group.

Needs device-mapper in the kernel (/dev/mapper/control), the lvm2 tools and an
existing volume group. `check()` says which one is missing; on these test
machines the kernel has no device-mapper, so the backend refuses to start and
its tests skip with that reason.

Snapshots and clones are full logical volumes filled by `qemu-img convert`
(zeroes skipped); LVM thin pools (copy-on-write) are not used yet.
"""
from __future__ import annotations

import asyncio
import os
import shutil

from cells import errors
from node.volume.backends import VolumeStorage, snapshot_name, volume_name
from node.volume.proc import CommandFailed, run

DM_CONTROL = "/dev/mapper/control"


def unavailable_reason(dm_control: str = DM_CONTROL) -> str | None:
    """Why LVM cannot work on this host, or None."""
    if not os.path.exists(dm_control):
        return f"the kernel has no device-mapper ({dm_control} is missing)"
    if shutil.which("lvcreate") is None:
        return "the lvm2 tools are not installed (apt-get install lvm2)"
    return None


class LvmBackend:
    name = "lvm"

    def __init__(self, volume_group: str, dm_control: str = DM_CONTROL) -> None:
        self.volume_group = volume_group
        self.dm_control = dm_control

    def _path(self, volume_id: str) -> str:
        return f"/dev/{self.volume_group}/{volume_name(volume_id)}"

    def _fail(self, reason: str) -> errors.VolumeBackendUnavailable:
        return errors.VolumeBackendUnavailable(kind="backend", name="lvm", reason=reason)

    async def check(self) -> None:
        reason = await asyncio.to_thread(unavailable_reason, self.dm_control)
        if reason is not None:
            raise self._fail(reason)
        try:
            await run(["vgs", "--noheadings", "-o", "vg_name", self.volume_group], timeout=30)
        except CommandFailed as exc:
            raise self._fail(f"volume group {self.volume_group!r} is not usable: {exc.stderr.strip()}") from None

    async def create(self, volume_id: str, size_gb: int) -> VolumeStorage:
        path = self._path(volume_id)
        if not await asyncio.to_thread(os.path.exists, path):
            await run(["lvcreate", "-q", "-y", "-L", f"{size_gb}g", "-n", volume_name(volume_id),
                       self.volume_group], timeout=120)
        return VolumeStorage(volume_id, path, "raw", block_device=True)

    async def delete(self, volume_id: str) -> None:
        if await asyncio.to_thread(os.path.exists, self._path(volume_id)):
            await run(["lvremove", "-q", "-f", f"{self.volume_group}/{volume_name(volume_id)}"], timeout=120)

    async def locate(self, volume_id: str) -> VolumeStorage:
        path = self._path(volume_id)
        if not await asyncio.to_thread(os.path.exists, path):
            raise errors.VolumeNotFound(volume_id=volume_id)
        return VolumeStorage(volume_id, path, "raw", block_device=True)

    async def capacity_gb(self) -> int:
        out = await run(["vgs", "--noheadings", "--units", "g", "--nosuffix", "-o", "vg_size", self.volume_group])
        return int(float(out.strip() or 0))

    async def _copy_into(self, name: str, source: VolumeStorage, size_gb: int) -> VolumeStorage:
        path = f"/dev/{self.volume_group}/{name}"
        if await asyncio.to_thread(os.path.exists, path):
            return VolumeStorage(name, path, "raw", block_device=True)
        await run(["lvcreate", "-q", "-y", "-L", f"{size_gb}g", "-n", name, self.volume_group], timeout=120)
        try:
            await run(["qemu-img", "convert", "-n", "-f", source.disk_format, "-O", "raw", source.path, path],
                      timeout=3600)
        except CommandFailed:
            await run(["lvremove", "-q", "-f", f"{self.volume_group}/{name}"], timeout=120)
            raise
        return VolumeStorage(name, path, "raw", block_device=True)

    async def reconcile(self) -> list[str]:
        return []  # every copy is a whole logical volume made by one lvcreate; thin snapshots: not here yet

    async def create_snapshot(self, snapshot_id: str, volume_id: str, live: bool = False) -> VolumeStorage:
        volume = await self.locate(volume_id)
        size = int(float((await run(["blockdev", "--getsize64", volume.path])).strip()) // (1024 ** 3))
        made = await self._copy_into(snapshot_name(snapshot_id), volume, max(size, 1))
        return VolumeStorage(snapshot_id, made.path, "raw", block_device=True)

    async def delete_snapshot(self, snapshot_id: str, volume_id: str | None = None, live: bool = False) -> None:
        if await asyncio.to_thread(os.path.exists, f"/dev/{self.volume_group}/{snapshot_name(snapshot_id)}"):
            await run(["lvremove", "-q", "-f", f"{self.volume_group}/{snapshot_name(snapshot_id)}"], timeout=120)

    async def locate_snapshot(self, snapshot_id: str) -> VolumeStorage:
        path = f"/dev/{self.volume_group}/{snapshot_name(snapshot_id)}"
        if not await asyncio.to_thread(os.path.exists, path):
            raise errors.SnapshotNotFound(snapshot_id=snapshot_id)
        return VolumeStorage(snapshot_id, path, "raw", block_device=True)

    async def clone(self, volume_id: str, source: VolumeStorage, size_gb: int, live: bool = False) -> VolumeStorage:
        made = await self._copy_into(volume_name(volume_id), source, size_gb)
        return VolumeStorage(volume_id, made.path, "raw", block_device=True)

    async def import_image(self, volume_id: str, path: str, disk_format: str, size_gb: int) -> VolumeStorage:
        source = VolumeStorage(volume_id, path, "qcow2" if disk_format == "qcow2" else "raw")
        made = await self._copy_into(volume_name(volume_id), source, size_gb)
        return VolumeStorage(volume_id, made.path, "raw", block_device=True)

    async def extend(self, volume_id: str, size_gb: int) -> VolumeStorage:
        storage = await self.locate(volume_id)
        current = int((await run(["blockdev", "--getsize64", storage.path])).strip())
        if current < size_gb * 1024 ** 3:
            await run(["lvextend", "-q", "-L", f"{size_gb}g", f"{self.volume_group}/{volume_name(volume_id)}"],
                      timeout=120)
        return storage
