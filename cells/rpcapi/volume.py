"""Volume RPC surfaces and caller stubs (issue 6).

- `SURFACE`: a volume worker's (topic `volume.<host>`): make, remove, export
  and unexport the volumes of its host.
- `CONDUCTOR_METHODS`: the volume part of the conductor's surface (appended to
  cells/rpcapi/conductor.py SURFACE): the API's volume requests and the volume
  workers' reports. `VolumeConductorAPI` is their caller stub.
- `COMPUTE_METHODS`: the volume part of a compute worker's surface (appended to
  cells/rpcapi/compute.py SURFACE): hot-plug and unplug. `ComputeVolumeAPI`.

Volume records cross the wire as plain dicts (cells/db/volumes.py
`volume_record`); a connection_info is {"driver_volume_type": tgt|iscsi|nbd|
local|lio, "data": {...}} as the export answered (node/volume/targets).
"""
from __future__ import annotations

from typing import Any

from cells.context import RequestContext
from cells.objects.records import VolumeRecord
from cells.rpc.principal import API, COMPUTE, CONDUCTOR, VOLUME, callers
from cells.rpc.wire import FAST, NORMAL, SLOW, Method, surface
from cells.rpcapi import Caller, list_reply, map_reply

CONDUCTOR_TOPIC = "conductor"
UPLOAD = 3600.0  # a volume's bytes through the image API: a large volume on a slow disk
CONNECTION_VERSION = "1.4"  # conductor volume_connection: a compute resolves what it plugs itself
STATES_VERSION = "1.5"  # conductor volume_action / snapshot_action (release 5)
SERVICE_VERSION = "1.6"  # conductor volume_host_set (os-services disable/enable/freeze/thaw), message_*

SURFACE = surface(
    # retry-safe: a repeat finds the volume made (node/volume/backends), so a create the volume
    # worker's death cut off is sent again to the restarted worker, not left `creating`
    Method("create_volume", SLOW, retry_safe=True, callers=callers(CONDUCTOR)),
    Method("delete_volume", SLOW, retry_safe=True, callers=callers(CONDUCTOR)),
    Method("export_volume", NORMAL, retry_safe=True, callers=callers(CONDUCTOR)),
    Method("unexport_volume", NORMAL, retry_safe=True, callers=callers(CONDUCTOR)),
    Method("volume_stats", FAST, retry_safe=True, callers=callers(CONDUCTOR)),
    # issue 18: each finds its work done on a repeat (a copy made, a file gone, a file grown)
    Method("create_snapshot", SLOW, retry_safe=True, callers=callers(CONDUCTOR)),
    Method("delete_snapshot", SLOW, retry_safe=True, callers=callers(CONDUCTOR)),
    Method("extend_volume", SLOW, retry_safe=True, callers=callers(CONDUCTOR)),
    # a repeat uploads again to a queued image (a saving or active one refuses: the first one won)
    Method("upload_volume", UPLOAD, callers=callers(CONDUCTOR)),
)
M = SURFACE

CONDUCTOR_METHODS = (
    # from the API
    Method("volume_create", NORMAL, callers=callers(API)),
    Method("volume_get", FAST, retry_safe=True, callers=callers(API, VOLUME)),
    Method("volume_list", FAST, retry_safe=True, callers=callers(API)),
    Method("volume_update", FAST, callers=callers(API)),
    Method("volume_delete", NORMAL, callers=callers(API)),
    Method("volume_attach", NORMAL, callers=callers(API)),
    Method("volume_detach", NORMAL, callers=callers(API)),
    Method("volume_attachments", FAST, retry_safe=True, callers=callers(API)),
    Method("volume_extend", NORMAL, callers=callers(API)),
    Method("volume_upload", NORMAL, callers=callers(API)),
    # snapshots (issue 18)
    Method("snapshot_create", NORMAL, retry_safe=True, callers=callers(API)),
    Method("snapshot_get", FAST, retry_safe=True, callers=callers(API)),
    Method("snapshot_list", FAST, retry_safe=True, callers=callers(API)),
    Method("snapshot_update", FAST, callers=callers(API)),
    Method("snapshot_delete", NORMAL, callers=callers(API)),
    # Cinder's state actions: admin resets and force deletes, legacy attach bookkeeping, readonly, retype
    # (cells/conductor/flows/volume_states.py)
    Method("volume_action", NORMAL, version=STATES_VERSION, callers=callers(API)),
    Method("snapshot_action", NORMAL, version=STATES_VERSION, callers=callers(API)),
    # admin: the cell's volume hosts (Cinder's os-services, scheduler-stats, os-hosts, capabilities)
    Method("volume_host_list", FAST, retry_safe=True, version=STATES_VERSION, callers=callers(API)),
    # admin: os-services disable/enable/freeze/thaw of a volume host (placement skips it)
    Method("volume_host_set", FAST, retry_safe=True, version=SERVICE_VERSION, callers=callers(API)),
    # Cinder's user messages of the cell's volume failures (cells/conductor/flows/messages.py)
    Method("message_list", FAST, retry_safe=True, version=SERVICE_VERSION, callers=callers(API)),
    Method("message_get", FAST, retry_safe=True, version=SERVICE_VERSION, callers=callers(API)),
    Method("message_delete", FAST, retry_safe=True, version=SERVICE_VERSION, callers=callers(API)),
    # from compute workers: the connection of the volume a compute is plugging (it asks, never takes one)
    Method("volume_connection", FAST, retry_safe=True, version=CONNECTION_VERSION, callers=callers(COMPUTE)),
    # from volume workers
    Method("volume_node_update", FAST, retry_safe=True, callers=callers(VOLUME)),
    Method("volumes_on_host", FAST, retry_safe=True, callers=callers(VOLUME)),
)
_C = {m.name: m for m in CONDUCTOR_METHODS}

COMPUTE_METHODS = (
    # retry-safe: a repeat finds the disk plugged (its serial is the volume id) and answers the same,
    # so an attach its compute's death cut off is sent again to the restarted compute
    Method("attach_volume", NORMAL, retry_safe=True, callers=callers(CONDUCTOR)),
    Method("detach_volume", NORMAL, retry_safe=True, callers=callers(CONDUCTOR)),
    # issue 18: the guest's disk of a volume grown while attached (a repeat finds it that size)
    Method("extend_volume", NORMAL, retry_safe=True, callers=callers(CONDUCTOR)),
)
_K = {m.name: m for m in COMPUTE_METHODS}


def topic(host: str) -> str:
    return f"volume.{host}"


def compute_topic(host: str) -> str:
    return f"compute.{host}"


class VolumeAPI:
    """Calls to one volume worker."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def create_volume(self, ctx: RequestContext, host: str, volume: VolumeRecord) -> dict[str, Any]:
        """Make the volume's storage; returns {"backend", "disk_format"}. Idempotent for one id."""
        return map_reply(await self.caller.call(topic(host), M["create_volume"], {"volume": volume}, ctx))

    async def delete_volume(self, ctx: RequestContext, host: str, volume: VolumeRecord) -> None:
        await self.caller.call(topic(host), M["delete_volume"], {"volume": volume}, ctx)

    async def export_volume(self, ctx: RequestContext, host: str, volume: VolumeRecord,
                            connector: dict[str, Any]) -> dict[str, Any]:
        """Export to the compute host in `connector` ({"host": name}); returns the connection_info."""
        return map_reply(await self.caller.call(topic(host), M["export_volume"], {"volume": volume, "connector": connector},
                                      ctx))

    async def unexport_volume(self, ctx: RequestContext, host: str, volume: VolumeRecord,
                              connection_info: dict[str, Any] | None) -> None:
        await self.caller.call(topic(host), M["unexport_volume"],
                               {"volume": volume, "connection_info": connection_info}, ctx)

    async def volume_stats(self, ctx: RequestContext, host: str) -> dict[str, Any]:
        return map_reply(await self.caller.call(topic(host), M["volume_stats"], {}, ctx))

    async def create_snapshot(self, ctx: RequestContext, host: str, snapshot: dict[str, Any]) -> None:
        """Copy the snapshot's volume into it; on failure nothing of the copy is left."""
        await self.caller.call(topic(host), M["create_snapshot"], {"snapshot": snapshot}, ctx)

    async def delete_snapshot(self, ctx: RequestContext, host: str, snapshot: dict[str, Any]) -> None:
        await self.caller.call(topic(host), M["delete_snapshot"], {"snapshot": snapshot}, ctx)

    async def upload_volume(self, ctx: RequestContext, host: str, volume: VolumeRecord, image_id: str,
                            api_url: str, token: str, disk_format: str = "raw") -> None:
        """PUT the volume's bytes to the image API's {api_url}/image/v2/images/{image_id}/file with `token`,
        as a raw or a (standalone) qcow2 image."""
        args: dict[str, Any] = {"volume": volume, "image_id": image_id, "api_url": api_url, "token": token}
        if disk_format != "raw":  # sent only when asked: a worker from before qcow2 uploads refuses it by name
            args["disk_format"] = disk_format
        await self.caller.call(topic(host), M["upload_volume"], args, ctx)

    async def extend_volume(self, ctx: RequestContext, host: str, volume: VolumeRecord, new_size: int) -> None:
        """Grow the volume's storage to `new_size` GiB (never shrinks it)."""
        await self.caller.call(topic(host), M["extend_volume"], {"volume": volume, "new_size": new_size}, ctx)


class VolumeConductorAPI:
    """The conductor's volume methods (same topic as cells/rpcapi/conductor.py)."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def _call(self, method: str, ctx: RequestContext, **args: Any) -> Any:
        return await self.caller.call(CONDUCTOR_TOPIC, _C[method], args, ctx)

    async def volume_create(self, ctx: RequestContext, volume: dict[str, Any]) -> dict[str, Any]:
        """Insert the volume (status creating) and return it at once; placement and the
        volume worker's create continue in the conductor's background."""
        return map_reply(await self._call("volume_create", ctx, volume=volume))

    async def volume_get(self, ctx: RequestContext, volume_id: str) -> dict[str, Any]:
        return map_reply(await self._call("volume_get", ctx, volume_id=volume_id))

    async def volume_list(self, ctx: RequestContext, filters: dict[str, Any],
                          limit: int | None = None) -> list[dict[str, Any]]:
        return list_reply(await self._call("volume_list", ctx, filters=filters, limit=limit))

    async def volume_update(self, ctx: RequestContext, volume_id: str, values: dict[str, Any]) -> dict[str, Any]:
        return map_reply(await self._call("volume_update", ctx, volume_id=volume_id, values=values))

    async def volume_delete(self, ctx: RequestContext, volume_id: str, cascade: bool = False) -> dict[str, Any]:
        """cascade: its snapshots are deleted with it (else a volume with snapshots is refused)."""
        if cascade:
            return map_reply(await self._call("volume_delete", ctx, volume_id=volume_id, cascade=True))
        return map_reply(await self._call("volume_delete", ctx, volume_id=volume_id))

    async def volume_extend(self, ctx: RequestContext, volume_id: str, new_size: int) -> dict[str, Any]:
        """available -> extending at once; the volume host grows it in the background."""
        return map_reply(await self._call("volume_extend", ctx, volume_id=volume_id, new_size=new_size))

    async def volume_upload(self, ctx: RequestContext, volume_id: str, image_id: str, token: str,
                            disk_format: str = "raw") -> dict[str, Any]:
        """available -> uploading at once; the volume host uploads it to the (queued) image in the background,
        as raw or qcow2 (`disk_format`)."""
        if disk_format != "raw":
            return map_reply(await self._call("volume_upload", ctx, volume_id=volume_id, image_id=image_id,
                                              token=token, disk_format=disk_format))
        return map_reply(await self._call("volume_upload", ctx, volume_id=volume_id, image_id=image_id, token=token))

    async def snapshot_create(self, ctx: RequestContext, snapshot: dict[str, Any], force: bool = False) -> dict[str, Any]:
        """Insert the snapshot (creating) and return it; the copy is made in the background."""
        return map_reply(await self._call("snapshot_create", ctx, snapshot=snapshot, force=force))

    async def snapshot_get(self, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
        return map_reply(await self._call("snapshot_get", ctx, snapshot_id=snapshot_id))

    async def snapshot_list(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return list_reply(await self._call("snapshot_list", ctx, filters=filters))

    async def snapshot_update(self, ctx: RequestContext, snapshot_id: str, values: dict[str, Any]) -> dict[str, Any]:
        return map_reply(await self._call("snapshot_update", ctx, snapshot_id=snapshot_id, values=values))

    async def snapshot_delete(self, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
        return map_reply(await self._call("snapshot_delete", ctx, snapshot_id=snapshot_id))

    async def volume_action(self, ctx: RequestContext, volume_id: str, action: str,
                            args: dict[str, Any] | None = None) -> dict[str, Any]:
        """One of cells/conductor/flows/volume_states.py VOLUME_ACTIONS; the volume's record after it."""
        return map_reply(await self._call("volume_action", ctx, volume_id=volume_id, action=action, args=args or {}))

    async def snapshot_action(self, ctx: RequestContext, snapshot_id: str, action: str,
                              args: dict[str, Any] | None = None) -> dict[str, Any]:
        """reset_status {"status"} or force_delete; the snapshot's record after it."""
        return map_reply(await self._call("snapshot_action", ctx, snapshot_id=snapshot_id, action=action,
                                          args=args or {}))

    async def volume_host_list(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """The cell's volume hosts: capacity, what each holds, up or not (admin)."""
        return list_reply(await self._call("volume_host_list", ctx))

    async def volume_host_set(self, ctx: RequestContext, host: str, values: dict[str, Any]) -> dict[str, Any]:
        """A volume host's os-services state: disabled, disabled_reason, frozen (admin)."""
        return map_reply(await self._call("volume_host_set", ctx, host=host, values=values))

    async def message_list(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """The caller's project's user messages in this cell (admins: every project's), newest first."""
        return list_reply(await self._call("message_list", ctx))

    async def message_get(self, ctx: RequestContext, message_id: str) -> dict[str, Any]:
        return map_reply(await self._call("message_get", ctx, message_id=message_id))

    async def message_delete(self, ctx: RequestContext, message_id: str) -> dict[str, Any]:
        return map_reply(await self._call("message_delete", ctx, message_id=message_id))

    async def volume_attach(self, ctx: RequestContext, volume_id: str, instance_uuid: str,
                            device: str | None = None) -> dict[str, Any]:
        """Atomically available -> attaching (exactly one of concurrent attaches wins);
        returns the attachment at once, export and hot-plug run in the background."""
        return map_reply(await self._call("volume_attach", ctx, volume_id=volume_id, instance_uuid=instance_uuid,
                                device=device))

    async def volume_detach(self, ctx: RequestContext, volume_id: str, instance_uuid: str) -> dict[str, Any]:
        return map_reply(await self._call("volume_detach", ctx, volume_id=volume_id, instance_uuid=instance_uuid))

    async def volume_attachments(self, ctx: RequestContext, instance_uuids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """instance uuid -> its attachments (oldest first)."""
        return map_reply(await self._call("volume_attachments", ctx, instance_uuids=instance_uuids))

    async def volume_connection(self, ctx: RequestContext, volume_id: str, instance_uuid: str) -> dict[str, Any]:
        """The connection_info of the volume being attached to the instance (a compute's own host's)."""
        return map_reply(await self._call("volume_connection", ctx, volume_id=volume_id, instance_uuid=instance_uuid))

    async def volume_node_update(self, ctx: RequestContext, host: str, stats: dict[str, Any]) -> None:
        await self._call("volume_node_update", ctx, host=host, stats=stats)

    async def volumes_on_host(self, ctx: RequestContext, host: str) -> list[dict[str, Any]]:
        return list_reply(await self._call("volumes_on_host", ctx, host=host))


class ComputeVolumeAPI:
    """Hot-plug calls to a compute worker."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def attach_volume(self, ctx: RequestContext, host: str, instance_uuid: str, volume_id: str,
                            connection_info: dict[str, Any], device: str | None) -> dict[str, Any]:
        """Hot-plug into the running domain; returns {"device": target dev}. A compute of this release
        asks the conductor for the connection itself (volume_connection) and ignores `connection_info`,
        which only a compute of release 3 or before reads."""
        return map_reply(await self.caller.call(compute_topic(host), _K["attach_volume"],
                                                {"instance_uuid": instance_uuid, "volume_id": volume_id,
                                                 "connection_info": connection_info, "device": device}, ctx))

    async def extend_volume(self, ctx: RequestContext, host: str, instance_uuid: str, volume_id: str,
                            new_size: int) -> None:
        """Tell the running guest its volume disk is now `new_size` GiB (libvirt blockResize)."""
        await self.caller.call(compute_topic(host), _K["extend_volume"],
                               {"instance_uuid": instance_uuid, "volume_id": volume_id, "new_size": new_size}, ctx)

    async def detach_volume(self, ctx: RequestContext, host: str, instance_uuid: str, volume_id: str) -> None:
        await self.caller.call(compute_topic(host), _K["detach_volume"],
                               {"instance_uuid": instance_uuid, "volume_id": volume_id}, ctx)
