"""Storage backends: where a volume's bytes live on its volume host.

    file  raw sparse files (default) or qcow2, under the host's state dir
    lvm   logical volumes of one volume group (hosts with device-mapper only)

Every backend call that touches the disk runs off the event loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class VolumeStorage:
    """Where one volume is, as targets need it."""
    volume_id: str
    path: str
    disk_format: str  # raw | qcow2 (how the bytes at `path` are laid out)
    block_device: bool = False  # a block device (LVM) rather than a regular file


class Backend(Protocol):
    name: str

    async def check(self) -> None:
        """Raise VolumeBackendUnavailable when this host cannot run the backend."""

    async def create(self, volume_id: str, size_gb: int) -> VolumeStorage: ...

    async def delete(self, volume_id: str) -> None: ...

    async def locate(self, volume_id: str) -> VolumeStorage:
        """Raise VolumeNotFound when the volume has no storage here."""

    async def capacity_gb(self) -> int: ...

    async def reconcile(self) -> list[str]:
        """At start-up: finish or undo what a killed worker left half-made; the names removed."""

    async def create_snapshot(self, snapshot_id: str, volume_id: str, live: bool = False) -> VolumeStorage:
        """A point-in-time copy of the volume (idempotent; nothing left when it fails). `live`: a guest or an
        export may be writing the volume, so its storage must stay where it is."""

    async def delete_snapshot(self, snapshot_id: str, volume_id: str | None = None, live: bool = False) -> None:
        """SnapshotIsBusy while a volume made from the snapshot depends on its storage."""

    async def locate_snapshot(self, snapshot_id: str) -> VolumeStorage:
        """Raise SnapshotNotFound when the snapshot has no storage here."""

    async def clone(self, volume_id: str, source: VolumeStorage, size_gb: int, live: bool = False) -> VolumeStorage:
        """A new volume with `source`'s bytes, `size_gb` large (idempotent; `live` as for create_snapshot)."""

    async def import_image(self, volume_id: str, path: str, disk_format: str, size_gb: int) -> VolumeStorage:
        """A new volume holding the (verified) image file's disk, `size_gb` large (idempotent)."""

    async def extend(self, volume_id: str, size_gb: int) -> VolumeStorage:
        """Grow the volume to `size_gb` (never shrinks; idempotent)."""


def volume_name(volume_id: str) -> str:
    return f"volume-{volume_id}"


def snapshot_name(snapshot_id: str) -> str:
    return f"snapshot-{snapshot_id}"
