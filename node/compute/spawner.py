"""The guest made on this host (ComputeManager.spawner; used by builds, rebuilds and moves): the
image and an AMI's kernel and ramdisk fetched into the host's cache (hash-verified), the VIFs
plugged, then the domain defined and started by the driver."""
from __future__ import annotations

from typing import Any

from cells.context import admin_context
from cells.rpcapi.volume import VolumeConductorAPI
from node.compute.driver import LibvirtDriver
from node.compute.volume_xml import disk_xml
from node.imagecache import ImageCache
from node.network.agent import NetworkAgent


class GuestSpawner:
    def __init__(self, driver: LibvirtDriver, images: ImageCache, network: NetworkAgent,
                 volumes: VolumeConductorAPI | None = None) -> None:
        self.driver = driver
        self.images = images
        self.network = network
        self.volumes = volumes  # where a boot-from-volume guest's root volume export is asked for

    async def spawn(self, instance: dict[str, Any], disk_ready: bool = False, start: bool = True) -> None:
        """Fetch the image (and an AMI's kernel and ramdisk: hash-verified through the cache),
        then define and start the domain (`disk_ready`: on a disk a move copied here; `start`
        False: defined only, a guest the hypervisor lost made again shut off)."""
        image: dict[str, Any] = instance.get("image") or {}
        image_path = await self.images.fetch(image) if image.get("id") else None
        props: dict[str, Any] = image.get("properties") or {}
        kernel = ramdisk = None
        if props.get("kernel_id"):  # Nova's AMI: direct kernel boot
            kernel = await self._companion(image, "kernel", "kernel_id")
            if props.get("ramdisk_id"):
                ramdisk = await self._companion(image, "ramdisk", "ramdisk_id")
        root_volume = await self._root_volume(instance, image)
        vifs = await self.network.plug(admin_context(), instance)  # node/network/agent.py: taps before the domain
        if vifs:
            instance = {**instance, "vifs": vifs}
        await self.driver.spawn(instance, image_path, kernel=kernel, ramdisk=ramdisk, disk_ready=disk_ready,
                                start=start, root_volume=root_volume)

    async def _root_volume(self, instance: dict[str, Any], image: dict[str, Any]) -> str | None:
        """A boot-from-volume guest's root <disk> (vda): the export the conductor made for this host,
        asked from the conductor (never taken from the record: only the attachment being made to
        this instance on this host is answered)."""
        volume_id = image.get("root_volume_id")
        if not volume_id:
            return None
        if self.volumes is None:
            raise RuntimeError("this compute cannot open volumes")
        info = await self.volumes.volume_connection(admin_context(), str(volume_id), str(instance["uuid"]))
        return disk_xml(info, "vda", str(volume_id))

    async def _companion(self, image: dict[str, Any], key: str, prop: str) -> str:
        """The cached kernel or ramdisk of an AMI: the record the API resolved with the requester's
        visibility (api/image/images.py boot_snapshot_of). Instances recorded before the API did
        that carry only the property's id: those are looked up by id, as they always were."""
        record = image.get(key)
        if isinstance(record, dict) and record.get("id") == (image.get("properties") or {}).get(prop):
            return await self.images.fetch(record)
        return await self.images.fetch_by_id(str(image["properties"][prop]))

    async def prune_image_cache(self) -> None:
        """Remove cached bases that no guest here uses and nobody fetched for a while."""
        await self.images.prune(await self.driver.bases_in_use())
