"""The conductor's volumes and snapshots (ConductorManager.volumes): what the RPC methods of
cells/rpcapi/volume.py CONDUCTOR_METHODS do; the flows are in cells/conductor/flows/volumes.py
and volume_snapshots.py."""
from __future__ import annotations

from typing import Any

from cells.conductor.env import FlowEnv
from cells.conductor.flows import messages, volume_extend, volume_snapshots, volume_states, volume_upload, volumes
from cells.context import RequestContext
from cells.db.volumes import ensure_volume_schema
from cells.objects.records import AttachmentRecord, VolumeRecord
from cells.rpc.principal import require_host


class VolumeConductor:
    def __init__(self, env: FlowEnv) -> None:
        self.env = env

    async def start(self) -> None:
        await ensure_volume_schema(self.env.db)

    async def volume_create(self, ctx: RequestContext, volume: dict[str, Any]) -> VolumeRecord:
        return await volumes.volume_create(self.env, ctx, volume)

    async def volume_get(self, ctx: RequestContext, volume_id: str) -> VolumeRecord:
        return await volumes.volume_get(self.env, ctx, volume_id)

    async def volume_list(self, ctx: RequestContext, filters: dict[str, Any] | None = None,
                          limit: int | None = None) -> list[VolumeRecord]:
        return await volumes.volume_list(self.env, ctx, filters, limit)

    async def volume_update(self, ctx: RequestContext, volume_id: str, values: dict[str, Any]) -> VolumeRecord:
        return await volumes.volume_update(self.env, ctx, volume_id, values)

    async def volume_delete(self, ctx: RequestContext, volume_id: str, cascade: bool = False) -> VolumeRecord:
        return await volumes.volume_delete(self.env, ctx, volume_id, cascade)

    async def volume_upload(self, ctx: RequestContext, volume_id: str, image_id: str, token: str,
                            disk_format: str = "raw") -> VolumeRecord:
        return await volume_upload.volume_upload(self.env, ctx, volume_id, image_id, token, disk_format)

    async def volume_extend(self, ctx: RequestContext, volume_id: str, new_size: int) -> VolumeRecord:
        return await volume_extend.volume_extend(self.env, ctx, volume_id, new_size)

    async def snapshot_create(self, ctx: RequestContext, snapshot: dict[str, Any],
                              force: bool = False) -> dict[str, Any]:
        return await volume_snapshots.snapshot_create(self.env, ctx, snapshot, force)

    async def snapshot_get(self, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
        return await volume_snapshots.snapshot_get(self.env, ctx, snapshot_id)

    async def snapshot_list(self, ctx: RequestContext, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return await volume_snapshots.snapshot_list(self.env, ctx, filters)

    async def snapshot_update(self, ctx: RequestContext, snapshot_id: str, values: dict[str, Any]) -> dict[str, Any]:
        return await volume_snapshots.snapshot_update(self.env, ctx, snapshot_id, values)

    async def snapshot_delete(self, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
        return await volume_snapshots.snapshot_delete(self.env, ctx, snapshot_id)

    async def volume_action(self, ctx: RequestContext, volume_id: str, action: str,
                            args: dict[str, Any] | None = None) -> VolumeRecord:
        return await volume_states.volume_action(self.env, ctx, volume_id, action, args)

    async def snapshot_action(self, ctx: RequestContext, snapshot_id: str, action: str,
                              args: dict[str, Any] | None = None) -> dict[str, Any]:
        return await volume_states.snapshot_action(self.env, ctx, snapshot_id, action, args)

    async def volume_host_list(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return await volume_states.volume_host_list(self.env, ctx)

    async def volume_host_set(self, ctx: RequestContext, host: str, values: dict[str, Any]) -> dict[str, Any]:
        return await volume_states.volume_host_set(self.env, ctx, host, values)

    async def message_list(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return await messages.message_list(self.env, ctx)

    async def message_get(self, ctx: RequestContext, message_id: str) -> dict[str, Any]:
        return await messages.message_get(self.env, ctx, message_id)

    async def message_delete(self, ctx: RequestContext, message_id: str) -> dict[str, Any]:
        return await messages.message_delete(self.env, ctx, message_id)

    async def volume_attach(self, ctx: RequestContext, volume_id: str, instance_uuid: str,
                            device: str | None = None) -> AttachmentRecord:
        return await volumes.volume_attach(self.env, ctx, volume_id, instance_uuid, device)

    async def volume_detach(self, ctx: RequestContext, volume_id: str, instance_uuid: str) -> AttachmentRecord:
        return await volumes.volume_detach(self.env, ctx, volume_id, instance_uuid)

    async def volume_attachments(self, ctx: RequestContext,
                                 instance_uuids: list[str]) -> dict[str, list[AttachmentRecord]]:
        return await volumes.attachments_for(self.env, ctx, list(instance_uuids))

    async def volume_connection(self, ctx: RequestContext, volume_id: str, instance_uuid: str) -> dict[str, Any]:
        return await volumes.volume_connection(self.env, ctx, volume_id, instance_uuid)

    async def volume_node_update(self, ctx: RequestContext, host: str, stats: dict[str, Any]) -> None:
        require_host(ctx, host, "volume_node_update")
        await volumes.node_update(self.env, ctx, host, stats)

    async def volumes_on_host(self, ctx: RequestContext, host: str) -> list[VolumeRecord]:
        require_host(ctx, host, "volumes_on_host")
        return await volumes.volumes_on_host(self.env, ctx, host)
