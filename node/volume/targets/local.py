"""The `local` target: no export at all; the compute host opens the volume's
file (or block device) directly. Only for a compute on the volume's own host."""
from __future__ import annotations

from typing import Any

from cells import errors
from node.volume.backends import VolumeStorage


class LocalTarget:
    name = "local"
    formats: tuple[str, ...] = ("raw", "qcow2")  # the guest's QEMU opens the file and its backing chain

    def __init__(self, host: str) -> None:
        self.host = host
        self._exported: set[str] = set()

    def reaches(self, connector: dict[str, Any]) -> bool:
        return connector.get("host") == self.host

    async def start(self) -> None:
        return None

    async def export(self, storage: VolumeStorage, connector: dict[str, Any]) -> dict[str, Any]:
        if not self.reaches(connector):
            raise errors.VolumeExportFailed(volume_id=storage.volume_id,
                                            reason=f"the local target serves host {self.host} only, "
                                                   f"not {connector.get('host')!r}")
        self._exported.add(storage.volume_id)
        return {"driver_volume_type": "local",
                "data": {"target": self.name, "path": storage.path, "format": storage.disk_format,
                         "block_device": storage.block_device}}

    async def unexport(self, volume_id: str) -> None:
        self._exported.discard(volume_id)

    async def exported(self) -> set[str]:
        return set(self._exported)

    async def stop(self) -> None:
        self._exported.clear()
