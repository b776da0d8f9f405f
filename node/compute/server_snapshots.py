"""A guest's disk as a new image (Nova's createImage, issue 16), on the compute host: mechanism only.

  make_snapshot(uuid, image_id)        the guest's disk now, flattened into one file of the instance dir
                                       (`snapshot-<image id>`): size, sha256 and disk format
  read_snapshot(uuid, image_id, ...)   one chunk of it (the API pulls the data into its image store)
  drop_snapshot(uuid, image_id)        remove it (idempotent)

QEMU: the root overlay and its base become one standalone qcow2 (`qemu-img convert`). A running guest
is paused for the copy (QEMU drains and flushes its disks when it stops the vCPUs, so the file is
consistent, as a crash would leave it) and resumed after, whatever happened. The test hypervisor runs no
guest and writes no disk: its snapshot is the image the guest was booted from, as the guest has it.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
from typing import Any

from cells import errors, imageformat
from cells.objects.instance import PowerState
from node.compute.disks import FILE_TIMEOUT, checked_uuid, qemu_img, read_checked_chunk
from node.compute.driver import BASES_FILE, LibvirtDriver
from node.locks import KeyedLocks

LOG = logging.getLogger(__name__)
PREFIX = "snapshot-"
CONVERT_TIMEOUT = 1800.0  # seconds qemu-img may take to flatten a disk (a large one on a slow disk)


def snapshot_path(inst_dir: str, image_id: Any) -> str:
    return os.path.join(inst_dir, PREFIX + checked_uuid(image_id))


def _describe(path: str) -> tuple[int, str, str]:
    """(size, sha256, format) of a finished snapshot file (blocking)."""
    found = imageformat.inspect_file(path)
    if found.unsafe:  # our own qemu-img output or the verified base: never expected, never handed on
        raise imageformat.ImageFormatRefused(reason=f"the snapshot is refused: {found.unsafe}")
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256")
        return os.fstat(f.fileno()).st_size, digest.hexdigest(), found.format


def _booted_base(inst_dir: str) -> str:
    """The cached image the test hypervisor's guest was booted from (its first base)."""
    try:
        with open(os.path.join(inst_dir, BASES_FILE)) as f:
            bases = json.load(f)
    except (OSError, ValueError):
        bases = []
    if not bases or not os.path.isfile(bases[0]):
        raise FileNotFoundError(f"no booted image recorded in {inst_dir}")
    return str(bases[0])


class GuestSnapshots:
    def __init__(self, driver: LibvirtDriver, locks: KeyedLocks) -> None:
        self.driver = driver
        self.locks = locks  # the manager's per-instance locks: no action or power sweep meanwhile

    async def make_snapshot(self, uuid: str, image_id: str) -> dict[str, Any]:
        uuid = checked_uuid(uuid)
        inst_dir = self.driver.instance_dir(uuid)
        path = snapshot_path(inst_dir, image_id)
        if not await asyncio.to_thread(os.path.isdir, inst_dir):
            raise errors.InstanceNotFound(instance_id=uuid)
        async with self.locks(uuid):
            try:
                if self.driver.is_test:
                    base = await asyncio.to_thread(_booted_base, inst_dir)
                    await asyncio.to_thread(shutil.copyfile, base, path + ".part")
                else:
                    await self._flatten(uuid, os.path.join(inst_dir, "disk"), path + ".part")
                await asyncio.to_thread(os.replace, path + ".part", path)
                async with asyncio.timeout(FILE_TIMEOUT):
                    size, sha256, fmt = await asyncio.to_thread(_describe, path)
            except BaseException:
                await asyncio.shield(self.drop_snapshot(uuid, image_id))
                raise
        LOG.info("snapshot %s of %s: %d bytes of %s", image_id, uuid, size, fmt)
        return {"size": size, "sha256": sha256, "disk_format": fmt}

    async def _flatten(self, uuid: str, disk: str, out: str) -> None:
        paused = await self.driver.power_state(uuid) == PowerState.RUNNING  # under the instance's lock
        if paused:
            await self.driver.power.pause(uuid)
        try:
            # -U: QEMU holds the overlay open; its vCPUs are stopped and its disks flushed
            await qemu_img("convert", "-U", "-f", "qcow2", "-O", "qcow2", disk, out, timeout=CONVERT_TIMEOUT)
        finally:
            if paused:
                await asyncio.shield(self.driver.power.unpause(uuid))

    async def read_snapshot(self, uuid: str, image_id: str, offset: int, length: int) -> bytes:
        path = snapshot_path(self.driver.instance_dir(checked_uuid(uuid)), image_id)
        try:
            return await read_checked_chunk(path, offset, length)
        except FileNotFoundError:
            raise errors.NotFound(f"Snapshot {image_id} of instance {uuid} could not be found.") from None

    async def drop_snapshot(self, uuid: str, image_id: str) -> None:
        inst_dir = self.driver.instance_dir(checked_uuid(uuid))
        for path in (snapshot_path(inst_dir, image_id), snapshot_path(inst_dir, image_id) + ".part"):
            try:
                await asyncio.to_thread(os.unlink, path)
            except FileNotFoundError:
                pass
