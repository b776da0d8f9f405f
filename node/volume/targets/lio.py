"""The `lio` target: the kernel's iSCSI target through rtslib-fb.

Needs configfs (/sys/kernel/config) with the target_core modules; on these test
machines configfs cannot be mounted, so `start()` refuses with rtslib's reason
and the tests skip with it. One iSCSI target per volume (same IQN scheme as
tgt), one TPG, the volume on LUN 0, a portal on the host's address, and
generated node ACLs (no CHAP yet: only the control plane hands out the IQN,
as with tgt). Every rtslib call blocks
(configfs writes), so all of them run in a thread.
"""
from __future__ import annotations

import asyncio
from typing import Any

from cells import errors
from node.volume.backends import VolumeStorage, volume_name
from node.volume.targets import iqn

LUN = 0


def unavailable_reason() -> str | None:
    try:
        import rtslib_fb  # type: ignore[import-untyped]
    except ImportError:
        return "rtslib-fb is not installed (pip install rtslib-fb)"
    try:
        rtslib_fb.RTSRoot()
    except Exception as exc:  # noqa: BLE001 - rtslib raises RTSLibError or OSError depending on what is missing
        return f"rtslib cannot use configfs: {exc}"
    return None


class LioTarget:
    name = "lio"
    formats: tuple[str, ...] = ("raw",)

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.port = port

    def reaches(self, connector: dict[str, Any]) -> bool:
        return True

    async def start(self) -> None:
        reason = await asyncio.to_thread(unavailable_reason)
        if reason is not None:
            raise errors.VolumeBackendUnavailable(kind="target", name=self.name, reason=reason)

    def _export_sync(self, storage: VolumeStorage) -> None:
        import rtslib_fb

        name = volume_name(storage.volume_id)
        root = rtslib_fb.RTSRoot()
        if any(t.wwn == iqn(storage.volume_id) for t in root.targets):
            return
        if storage.block_device:
            so = rtslib_fb.BlockStorageObject(name, dev=storage.path)
        else:
            so = rtslib_fb.FileIOStorageObject(name, storage.path)
        target = rtslib_fb.Target(rtslib_fb.FabricModule("iscsi"), iqn(storage.volume_id))
        tpg = rtslib_fb.TPG(target, 1)
        tpg.set_attribute("authentication", "0")
        tpg.set_attribute("generate_node_acls", "1")
        tpg.set_attribute("demo_mode_write_protect", "0")
        rtslib_fb.LUN(tpg, LUN, so)
        rtslib_fb.NetworkPortal(tpg, self.address, self.port)
        tpg.enable = True

    async def export(self, storage: VolumeStorage, connector: dict[str, Any]) -> dict[str, Any]:
        if storage.disk_format != "raw":
            raise errors.VolumeExportFailed(volume_id=storage.volume_id, reason="lio exports raw volumes only")
        try:
            await asyncio.to_thread(self._export_sync, storage)
        except Exception as exc:  # noqa: BLE001 - rtslib's errors carry the configfs reason
            raise errors.VolumeExportFailed(volume_id=storage.volume_id, reason=str(exc)) from None
        return {"driver_volume_type": "iscsi",
                "data": {"target": self.name, "target_portal": f"{self.address}:{self.port}",
                         "target_iqn": iqn(storage.volume_id), "target_lun": LUN}}

    def _unexport_sync(self, volume_id: str) -> None:
        import rtslib_fb

        root = rtslib_fb.RTSRoot()
        for target in list(root.targets):
            if target.wwn == iqn(volume_id):
                target.delete()
        for so in list(root.storage_objects):
            if so.name == volume_name(volume_id):
                so.delete()

    async def unexport(self, volume_id: str) -> None:
        await asyncio.to_thread(self._unexport_sync, volume_id)

    async def exported(self) -> set[str]:
        def names() -> set[str]:
            import rtslib_fb
            prefix = iqn("")
            return {t.wwn[len(prefix):] for t in rtslib_fb.RTSRoot().targets if t.wwn.startswith(prefix)}
        return await asyncio.to_thread(names)

    async def stop(self) -> None:
        for vid in await self.exported():  # kernel targets outlive us otherwise
            await self.unexport(vid)
