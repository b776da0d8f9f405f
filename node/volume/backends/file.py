"""The `file` backend: one file per volume under the host's volumes directory.

raw files are sparse (truncate): a 1 GiB volume costs nothing until written.
qcow2 files are made with qemu-img. Either way the data stays when the volume
is detached, and the file is removed only when the volume is deleted.

Snapshots and volumes made from a snapshot or another volume copy nothing. How is
chosen at start-up (`cow`, logged): where `cp --reflink=always` works in the
directory (XFS, btrfs) a snapshot or clone is a reflink copy; elsewhere (ext4, as
here) qcow2 chains, as Cinder's NFS/remotefs drivers keep them:

    snapshot S of volume V   V's file is frozen as snapshot-S (a hard link, no copy) and V
                             becomes a new qcow2 overlay on it: snapshot-S <- volume-V.qcow2
    volume C from snapshot S volume-C.qcow2, an empty overlay on snapshot-S
    volume C from volume V   V's file is frozen as base-C and both V and C become overlays on it
    delete snapshot S        where only V's own overlay reads through it and V is detached, V's overlay
                             is committed into it and it becomes V's file again (Cinder's remotefs
                             merge); else (V in use, or volumes made from S read through it) it is
                             marked deleted and its file removed once nothing reads through it
                             (collect): the snapshot is gone, its bytes stay as their hidden base

A volume a guest or an export may be writing (in-use, `live`) keeps its file where it
is: its forced snapshot, or a clone of it, is a copy (`cp --reflink=auto --sparse=always`,
the written blocks only; of an overlay, only what was written since its base). Every
multi-step change goes through names that `reconcile` completes or undoes after a
crash (qcow2_chain.py lists them), so a killed worker leaves no orphan file.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from pathlib import Path

from cells import errors
from node.compute.disks import limited
from node.volume.backends import VolumeStorage, snapshot_name, volume_name
from node.volume.backends import qcow2_chain as chains
from node.volume.backends.qcow2_chain import PART, TOMBSTONE, unlink_quietly
from node.volume.proc import CommandFailed, run

LOG = logging.getLogger(__name__)

FORMATS = ("raw", "qcow2")
GIB = 1024 ** 3
COPY_TIMEOUT = 3600.0  # a sparse copy of a large, full volume on a slow disk
COW_MODES = ("reflink", "qcow2", "copy")  # copy: no reflinks and no qemu-img (a sparse copy, as before)


class FileBackend:
    name = "file"

    def __init__(self, directory: str, disk_format: str = "raw", capacity_gb: int | None = None) -> None:
        if disk_format not in FORMATS:
            raise errors.Invalid(reason=f"file backend format must be one of {', '.join(FORMATS)}, not {disk_format!r}")
        self.directory = directory
        self.disk_format = disk_format
        self._capacity_gb = capacity_gb
        self.cow = "copy"  # settled by check()
        self._chains = asyncio.Lock()  # one chain change at a time in the directory (collect reads them all)

    def _path(self, volume_id: str, fmt: str) -> str:
        return os.path.join(self.directory, f"{volume_name(volume_id)}.{fmt}")

    def _snapshot_path(self, snapshot_id: str, fmt: str) -> str:
        return os.path.join(self.directory, f"{snapshot_name(snapshot_id)}.{fmt}")

    async def check(self) -> None:
        await asyncio.to_thread(os.makedirs, self.directory, 0o700, True)
        has_qemu_img = shutil.which("qemu-img") is not None
        if self.disk_format == "qcow2" and not has_qemu_img:
            raise errors.VolumeBackendUnavailable(kind="backend", name="file",
                                                  reason="qcow2 volumes need qemu-img (apt-get install qemu-utils)")
        if await asyncio.to_thread(chains.reflinks_work, self.directory):
            self.cow = "reflink"
        else:
            self.cow = "qcow2" if has_qemu_img else "copy"
        LOG.info("file backend at %s: snapshots and clones by %s", self.directory, {
            "reflink": "reflink copies (cp --reflink=always works here)",
            "qcow2": "qcow2 overlays (no reflinks on this filesystem)",
            "copy": "sparse copies (no reflinks here and no qemu-img)"}[self.cow])

    async def reconcile(self) -> list[str]:
        """After a (re)start: finish or undo what a killed worker left half-done; the names removed."""
        async with self._chains:
            removed = await asyncio.to_thread(self._reconcile)
        if removed:
            LOG.warning("file backend: removed %d leftover file(s): %s", len(removed), ", ".join(sorted(removed)))
        return removed

    def _reconcile(self) -> list[str]:
        removed = []
        for name in os.listdir(self.directory):
            if name.endswith(PART):  # an unfinished copy, link or overlay: the step is redone or never was
                unlink_quietly(os.path.join(self.directory, name))
                removed.append(name)
        names = set(os.listdir(self.directory))
        for name in sorted(names):
            if not (name.startswith("volume-") and name.endswith(".qcow2")) or chains.stem(name) + ".raw" not in names:
                continue
            # both names: a freeze (the overlay's backing exists) or a merge (it is gone) stopped before its end
            backing = chains.backing_of(os.path.join(self.directory, name))
            stale = chains.stem(name) + ".raw" if backing and backing in names else name
            unlink_quietly(os.path.join(self.directory, stale))
            removed.append(stale)
        names = set(os.listdir(self.directory))
        actives = [os.path.join(self.directory, n) for n in names if n.startswith("volume-")]
        for name in names:
            path = os.path.join(self.directory, name)
            if name.startswith((chains.SNAPSHOT_PREFIX, chains.BASE_PREFIX)) \
                    and not name.endswith(TOMBSTONE) and any(os.path.samefile(path, a) for a in actives):
                unlink_quietly(path)  # a freeze that never made the overlay: a link to the live file, no copy
                removed.append(name)
        return removed + chains.collect(self.directory)

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
        async with self._chains:
            await self._remove([self._path(volume_id, fmt) for fmt in FORMATS])
            await asyncio.to_thread(chains.collect, self.directory)  # bases only this volume read through

    async def _remove(self, paths: list[str]) -> None:
        await asyncio.to_thread(self._remove_now, paths)

    @staticmethod
    def _remove_now(paths: list[str]) -> None:
        for path in paths:
            for name in (path, path + PART):
                unlink_quietly(name)

    async def _copy(self, source: VolumeStorage, path: str) -> None:
        """`source`'s bytes at `path` (a repeat finds it made); nothing under `path` if it fails."""
        if await asyncio.to_thread(os.path.exists, path):
            return
        tmp = path + ".part"
        try:
            await run(["cp", "--reflink=auto", "--sparse=always", source.path, tmp], timeout=COPY_TIMEOUT)
            await asyncio.to_thread(os.replace, tmp, path)
        except BaseException as exc:
            await asyncio.to_thread(unlink_quietly, tmp)
            if isinstance(exc, CommandFailed):
                raise errors.VolumeBackendUnavailable(kind="backend", name="file", reason=f"copy failed: {exc}") \
                    from None
            raise

    async def create_snapshot(self, snapshot_id: str, volume_id: str, live: bool = False) -> VolumeStorage:
        if self.cow == "qcow2" and not live:
            async with self._chains:
                return await asyncio.to_thread(self._freeze_as_snapshot, snapshot_id, volume_id)
        volume = await self.locate(volume_id)
        path = self._snapshot_path(snapshot_id, volume.disk_format)
        await self._copy(volume, path)
        return VolumeStorage(snapshot_id, path, volume.disk_format)

    def _freeze_as_snapshot(self, snapshot_id: str, volume_id: str) -> VolumeStorage:
        name, fmt = self._freeze(volume_id, snapshot_name(snapshot_id))
        return VolumeStorage(snapshot_id, os.path.join(self.directory, name), fmt)

    def _freeze(self, volume_id: str, stem: str) -> tuple[str, str]:
        """The volume's current file becomes `stem`.<fmt> (read-only from now on) and the volume a new, empty
        qcow2 overlay on it: nothing copied. A repeat finds it done; a crash at any step leaves names that
        `_reconcile` completes or undoes. (frozen name, its format)"""
        found = self._active(volume_id)
        if found is None:
            raise errors.VolumeNotFound(volume_id=volume_id)
        path, fmt = found
        overlay = self._path(volume_id, "qcow2")
        frozen = os.path.join(self.directory, f"{stem}.{fmt}")
        if path == overlay and chains.backing_of(overlay) == os.path.basename(frozen) and os.path.exists(frozen):
            return os.path.basename(frozen), fmt  # done before (the chain already reads through it)
        for fmt_made in FORMATS:  # a retried copy-made snapshot is done too
            made = os.path.join(self.directory, f"{stem}.{fmt_made}")
            if os.path.exists(made) and not os.path.samefile(made, path):
                return os.path.basename(made), fmt_made
            unlink_quietly(made)  # a link to the live file from a freeze cut short: start again
        size = chains.virtual_size(path, fmt)
        try:
            os.link(path, frozen + PART)
            chains.make_overlay(overlay + PART, os.path.basename(frozen), fmt, size)
            os.replace(frozen + PART, frozen)
            os.replace(overlay + PART, overlay)  # the volume reads through the frozen file from here on
        except BaseException as exc:
            for leftover in (frozen + PART, overlay + PART):
                unlink_quietly(leftover)
            if isinstance(exc, CommandFailed):
                raise errors.VolumeBackendUnavailable(kind="backend", name="file",
                                                      reason=f"overlay failed: {exc}") from None
            raise
        if path != overlay:
            unlink_quietly(path)  # the raw name: its data lives on as the frozen file
        return os.path.basename(frozen), fmt

    async def delete_snapshot(self, snapshot_id: str, volume_id: str | None = None, live: bool = False) -> None:
        """Merged back into its volume (`volume_id`, when not `live` and nothing else reads through it), or
        marked deleted and removed once nothing reads through it (volumes made from it keep their bytes)."""
        async with self._chains:
            await asyncio.to_thread(self._delete_snapshot, snapshot_id, volume_id, live)

    def _delete_snapshot(self, snapshot_id: str, volume_id: str | None, live: bool) -> None:
        name = next((f"{snapshot_name(snapshot_id)}.{fmt}" for fmt in FORMATS
                     if os.path.exists(self._snapshot_path(snapshot_id, fmt))), None)
        if name is None:
            self._remove_now([self._snapshot_path(snapshot_id, fmt) for fmt in FORMATS])
            chains.collect(self.directory)
            return
        readers = {top for top, backing in chains.backings(self.directory).items() if backing == name}
        found = self._active(volume_id) if volume_id else None
        with open(os.path.join(self.directory, chains.stem(name) + TOMBSTONE), "wb"):
            pass  # from here on the snapshot is gone for good: a crash finishes the removal, never undoes it
        if found is not None and not live and readers == {os.path.basename(found[0])}:
            self._merge(found[0], name)
        chains.collect(self.directory)

    def _merge(self, overlay: str, name: str) -> None:
        """Commit the volume's overlay into the deleted snapshot's file, which becomes the volume's file: the
        cost is what was written since the snapshot. The overlay stays valid until the rename."""
        frozen = os.path.join(self.directory, name)
        chains.qemu_img(["commit", "-q", "-d", "-f", "qcow2", overlay], timeout=COPY_TIMEOUT)
        fmt = name.rsplit(".", 1)[1]
        target = os.path.join(self.directory, chains.stem(os.path.basename(overlay)) + f".{fmt}")
        os.replace(frozen, target)
        if target != overlay:
            unlink_quietly(overlay)  # its backing is gone: _active and _reconcile take the raw file now

    async def locate_snapshot(self, snapshot_id: str) -> VolumeStorage:
        """A live snapshot's file (a deleted one's, kept as a base, is not the snapshot any more)."""
        tombstone = os.path.join(self.directory, snapshot_name(snapshot_id) + TOMBSTONE)
        if not await asyncio.to_thread(os.path.exists, tombstone):
            for fmt in FORMATS:
                path = self._snapshot_path(snapshot_id, fmt)
                if await asyncio.to_thread(os.path.exists, path):
                    return VolumeStorage(snapshot_id, path, fmt)
        raise errors.SnapshotNotFound(snapshot_id=snapshot_id)

    async def clone(self, volume_id: str, source: VolumeStorage, size_gb: int, live: bool = False) -> VolumeStorage:
        """A new volume holding `source`'s bytes (a snapshot, or a volume: `live` when it is in use), grown to
        `size_gb` (a repeat finds it made)."""
        if self.cow == "qcow2" and not live:
            async with self._chains:
                return await asyncio.to_thread(self._overlay_clone, volume_id, source, size_gb)
        path = self._path(volume_id, source.disk_format)
        await self._copy(source, path)
        made = VolumeStorage(volume_id, path, source.disk_format)
        await self._grow(made, size_gb)
        return made

    def _overlay_clone(self, volume_id: str, source: VolumeStorage, size_gb: int) -> VolumeStorage:
        path = self._path(volume_id, "qcow2")
        if os.path.exists(path):
            return VolumeStorage(volume_id, path, "qcow2")
        if os.path.basename(source.path).startswith("volume-"):  # a live file: freeze it first, as a hidden base
            backing, fmt = self._freeze(source.volume_id, f"{chains.BASE_PREFIX}{volume_id}")
        else:
            backing, fmt = os.path.basename(source.path), source.disk_format
        size = max(size_gb * GIB, chains.virtual_size(os.path.join(self.directory, backing), fmt))
        try:
            chains.make_overlay(path + PART, backing, fmt, size)
            os.replace(path + PART, path)
        except BaseException as exc:
            unlink_quietly(path + PART)
            if isinstance(exc, CommandFailed):
                raise errors.VolumeBackendUnavailable(kind="backend", name="file",
                                                      reason=f"overlay failed: {exc}") from None
            raise
        return VolumeStorage(volume_id, path, "qcow2")

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
            await asyncio.to_thread(unlink_quietly, tmp)
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
        found = await asyncio.to_thread(self._active, volume_id)
        if found is None:
            raise errors.VolumeNotFound(volume_id=volume_id)
        return VolumeStorage(volume_id, found[0], found[1])

    def _active(self, volume_id: str) -> tuple[str, str] | None:
        """The volume's current file and format: its qcow2, unless a merge cut short left it beside the raw
        file it was committed into (its backing gone); (None when the volume has no file)."""
        overlay, raw = self._path(volume_id, "qcow2"), self._path(volume_id, "raw")
        if os.path.exists(overlay):
            backing = chains.backing_of(overlay)
            if backing is None or os.path.exists(os.path.join(self.directory, backing)) or not os.path.exists(raw):
                return overlay, "qcow2"
        if os.path.exists(raw):
            return raw, "raw"
        return None

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
