"""Volume attachments on the compute worker (ComputeManager.volumes): the RPC methods of
cells/rpcapi/volume.py COMPUTE_METHODS. What this host opens comes from the conductor's record
of the attachment; the plugging itself (libvirt XML and calls) is the driver's
(node/compute/hotplug.py, node/compute/volume_xml.py).
"""
from __future__ import annotations

import logging
from typing import Any

import libvirt  # type: ignore[import-untyped]

from cells import errors
from cells.context import RequestContext
from cells.rpcapi.volume import VolumeConductorAPI
from node.compute.hotplug import VolumeHotplug
from node.locks import KeyedLocks

LOG = logging.getLogger(__name__)


class VolumeAttachments:
    def __init__(self, hotplug: VolumeHotplug, conductor: VolumeConductorAPI, locks: KeyedLocks) -> None:
        self.hotplug = hotplug
        self.conductor = conductor
        self.locks = locks  # the manager's per-instance locks: an attach waits for a build or move

    async def attach(self, ctx: RequestContext, instance_uuid: str, volume_id: str,
                     device: str | None = None) -> dict[str, Any]:
        """Plug the volume into the instance's guest here, for an instance on this host only."""
        info = await self.conductor.volume_connection(ctx, volume_id, instance_uuid)
        async with self.locks(instance_uuid):
            try:
                dev = await self.hotplug.attach(instance_uuid, volume_id, info, device)
            except (libvirt.libvirtError, TimeoutError, KeyError, ValueError) as exc:
                reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
                raise errors.VolumeAttachFailed(volume_id=volume_id, instance_id=instance_uuid,
                                                reason=reason) from None
        LOG.info("volume %s attached to %s as %s", volume_id, instance_uuid, dev)
        return {"device": dev}

    async def extend(self, ctx: RequestContext, instance_uuid: str, volume_id: str, new_size: int) -> None:
        """The guest's disk of the volume (grown by its volume host) is now `new_size` GiB."""
        if isinstance(new_size, bool) or not isinstance(new_size, int) or new_size < 1:
            raise errors.Invalid(reason=f"new_size must be a positive number of GiB, not {new_size!r}")
        async with self.locks(instance_uuid):
            try:
                await self.hotplug.resize(instance_uuid, volume_id, new_size << 30)
            except (libvirt.libvirtError, TimeoutError) as exc:
                reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
                raise errors.VolumeAttachFailed(volume_id=volume_id, instance_id=instance_uuid,
                                                reason=f"resize: {reason}") from None
        LOG.info("volume %s of %s resized to %d GiB", volume_id, instance_uuid, new_size)

    async def detach(self, ctx: RequestContext, instance_uuid: str, volume_id: str) -> None:
        async with self.locks(instance_uuid):
            try:
                await self.hotplug.detach(instance_uuid, volume_id)
            except errors.InstanceNotFound:
                LOG.info("detach of %s: instance %s has no domain here any more", volume_id, instance_uuid)
            except (libvirt.libvirtError, TimeoutError) as exc:
                reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
                raise errors.VolumeAttachFailed(volume_id=volume_id, instance_id=instance_uuid,
                                                reason=f"detach: {reason}") from None
        LOG.info("volume %s detached from %s", volume_id, instance_uuid)
