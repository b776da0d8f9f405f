"""The cell conductor's RPC surface (topic `conductor`).

Instance records cross the wire as plain dicts, typed InstanceRecord here (cells/objects/records.py). The conductor is the only writer of the cell DB besides the
scheduler's claims; nodes never open a database.
"""
from __future__ import annotations

from typing import Any

from cells import errors
from cells.context import RequestContext
from cells.objects.records import InstanceRecord, ShownInstance, shown
from cells.rpc.principal import API, COMPUTE, NETWORK, OPERATOR, callers
from cells.rpc.wire import FAST, NORMAL, Method, surface
from cells.rpcapi import Caller, instance_reply, instances_reply, list_reply, map_reply
from cells.rpcapi.move_methods import CONDUCTOR_METHODS as MOVE_METHODS
from cells.rpcapi.volume import CONDUCTOR_METHODS as VOLUME_METHODS

TOPIC = "conductor"
SHOW_VERSION = "1.2"  # instance_show: a server view's record, volumes and security groups in one call
EVENTS_VERSION = "1.5"  # instance_event: a compute's report is a lifecycle event (issue 22)
OPS_VERSION = "1.5"  # instance_lock, snapshot_begin/progress (issue 16): release 5 with instance_event
BACKUP_VERSION = "1.6"  # snapshot_begin/progress take the action: createImage or createBackup
DIAGNOSTICS_VERSION = "1.6"  # instance_diagnostics (issue 16)
SHELVE_VERSION = "1.6"  # shelve_begin/progress, unshelve, password_get/clear/post (issue 16)
KEYS_VERSION = "1.7"  # instance_keys: a listing's sort keys only, for the API's keys-first merge (issue 21)
# instance_list_views: a detail listing's records with their views' volumes and security groups (issue 21)
VIEWS_VERSION = "1.8"
SURFACE = surface(
    # from the API
    # retry-safe: a repeat gets the rows the first one made (flows/boot.py _insert_build), so a build
    # whose conductor died is sent again to the restarted one instead of failing the boot
    Method("build_instances", NORMAL, retry_safe=True, callers=callers(API), plain_args={"instances": "Instance"}),
    Method("instance_get", FAST, retry_safe=True, callers=callers(API, COMPUTE), result="Instance"),
    Method("instance_show", FAST, retry_safe=True, version=SHOW_VERSION, callers=callers(API),
           result="Instance@instance"),  # {"instance": an Instance, the rest plain}
    Method("instance_list", FAST, retry_safe=True, callers=callers(API)),
    # instance_list's rows as [sort values...] only (api/listing_merge.py picks a page from them)
    Method("instance_keys", FAST, retry_safe=True, version=KEYS_VERSION, callers=callers(API)),
    # instance_list's records with what their server views add (as instance_show): round 2 of a detail listing
    Method("instance_list_views", FAST, retry_safe=True, version=VIEWS_VERSION, callers=callers(API)),
    # retry-safe: a repeated delete re-sends the terminate under the same action (flows/delete.py)
    Method("instance_delete", NORMAL, retry_safe=True, callers=callers(API)),
    # from compute workers
    Method("compute_node_update", FAST, retry_safe=True, callers=callers(COMPUTE)),
    # a step of an instance's flow (cells/lifecycle.py COMPUTE_EVENTS: spawning, spawned, spawn_failed,
    # destroyed, delete_failed, power_observed): cells/conductor/flows/compute_events.py
    Method("instance_event", FAST, version=EVENTS_VERSION, callers=callers(COMPUTE), result="Instance"),
    # the API's server set (name, metadata); computes of release 4 and before sent their steps with it
    Method("instance_update", FAST, callers=callers(API, COMPUTE), result="Instance"),
    # computes of release 4 and before (instance_event's spawn_failed and destroyed now)
    Method("build_failed", FAST, callers=callers(COMPUTE)),
    Method("instance_destroyed", FAST, retry_safe=True, callers=callers(COMPUTE)),
    Method("instances_on_host", FAST, retry_safe=True, callers=callers(COMPUTE), result="Instance[]"),
    # host liveness (cells/rpc/liveness.py): an operator's mark (cellctl host down|up), a fenced host back
    Method("host_mark", FAST, retry_safe=True, callers=callers(OPERATOR)),
    Method("host_rejoined", FAST, retry_safe=True, callers=callers(COMPUTE)),
    # os-services (issue 16): a compute service disabled, forced down or deleted (admin)
    Method("compute_service_list", FAST, retry_safe=True, version=OPS_VERSION, callers=callers(API)),
    Method("compute_service_update", FAST, retry_safe=True, version=OPS_VERSION, callers=callers(API)),
    Method("compute_service_delete", FAST, retry_safe=True, version=OPS_VERSION, callers=callers(API)),
    # quotas, instance actions, the metadata service (issue 7)
    Method("project_usage", FAST, retry_safe=True, callers=callers(API)),
    # os-simple-tenant-usage (issue 16): instances alive in a time window
    Method("usage_window", FAST, retry_safe=True, version=OPS_VERSION, callers=callers(API)),
    Method("instance_actions", FAST, retry_safe=True, callers=callers(API)),
    Method("instance_by_address", FAST, retry_safe=True, callers=callers(COMPUTE)),
    # a guest's metadata request, from the metadata service on the network's gateway host (any compute)
    Method("instance_for_metadata", FAST, retry_safe=True, callers=callers(COMPUTE, NETWORK)),  # network host
    # server actions (issue 4): from the API, and the compute's report when one is done
    Method("instance_action", NORMAL, callers=callers(API)),
    Method("console_output", NORMAL, retry_safe=True, callers=callers(API)),
    Method("instance_diagnostics", NORMAL, retry_safe=True, version=DIAGNOSTICS_VERSION, callers=callers(API)),
    Method("instance_action_done", FAST, callers=callers(COMPUTE), result="Instance"),
    # lock/unlock (issue 16): a locked server refuses changes by non-admins
    Method("instance_lock", FAST, version=OPS_VERSION, callers=callers(API), result="Instance"),
    # os-interface (issue 16): a port attached to or detached from a server (cells/conductor/flows/interfaces.py)
    Method("interface_attach", NORMAL, version=OPS_VERSION, callers=callers(API)),
    Method("interface_detach", NORMAL, retry_safe=True, version=OPS_VERSION, callers=callers(API)),
    Method("hypervisor_list", FAST, retry_safe=True, version=OPS_VERSION, callers=callers(API)),  # admin
    Method("migration_list", FAST, retry_safe=True, version=OPS_VERSION, callers=callers(API)),  # admin
    Method("instance_reset_state", FAST, version=OPS_VERSION, callers=callers(API), result="Instance"),  # admin
    # createImage, createBackup (issue 16): the server's task while the API takes its disk into the image service
    Method("snapshot_begin", FAST, version=BACKUP_VERSION, callers=callers(API), result="Instance"),
    Method("snapshot_progress", FAST, version=BACKUP_VERSION, callers=callers(API), result="Instance"),
    # shelve / unshelve (issue 16, cells/conductor/flows/shelve.py): the API takes the disk into the shelve
    # image as for createImage; shelveOffload is the plain action "shelve_offload" (instance_action)
    Method("shelve_begin", FAST, version=SHELVE_VERSION, callers=callers(API), result="Instance"),
    Method("shelve_progress", FAST, version=SHELVE_VERSION, callers=callers(API), result="Instance"),
    Method("unshelve", NORMAL, version=SHELVE_VERSION, callers=callers(API), result="Instance"),
    # os-server-password (issue 16, flows/server_password.py): the API reads and clears it, the metadata
    # service on a network's host (any compute, or the network host) stores what a guest posts, once
    Method("password_get", FAST, retry_safe=True, version=SHELVE_VERSION, callers=callers(API)),
    Method("password_clear", FAST, retry_safe=True, version=SHELVE_VERSION, callers=callers(API)),
    Method("password_post", FAST, version=SHELVE_VERSION, callers=callers(COMPUTE, NETWORK)),
    # volumes (issue 6): cells/rpcapi/volume.py VolumeConductorAPI
    *VOLUME_METHODS,
    # moves (issue 8), RPC 1.1: cells/rpcapi/move_methods.py MoveConductorAPI
    *MOVE_METHODS,
)
M = SURFACE


def _names(value: Any, what: str) -> list[str]:
    """A view's list of ids or names from a suspect peer: strings only, else the reply is refused."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.RpcError(reason=f"instance_list_views: a peer answered {what} that is not a list of strings")
    return value


class ConductorAPI:
    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def build_instances(self, ctx: RequestContext, instances: list[dict[str, Any]],
                              request_spec: dict[str, Any]) -> list[InstanceRecord]:
        """Create the instance rows (BUILD/scheduling) and return them at once;
        scheduling and spawning continue in the conductor's background."""
        return instances_reply(await self.caller.call(TOPIC, M["build_instances"],
                                      {"instances": instances, "request_spec": request_spec}, ctx))

    async def instance_get(self, ctx: RequestContext, uuid: str) -> InstanceRecord:
        return instance_reply(await self.caller.call(TOPIC, M["instance_get"], {"uuid": uuid}, ctx))

    async def instance_show(self, ctx: RequestContext, uuid: str, groups: bool) -> ShownInstance:
        """instance_get's record with what a server view adds: "volumes_attached" (volume ids, oldest
        attachment first) and, when `groups` (the cell has a network controller), "security_groups"
        (its ports' group names). UnsupportedVersion from a conductor older than SHOW_VERSION."""
        answer = await self.caller.call(TOPIC, M["instance_show"], {"uuid": uuid, "groups": groups}, ctx)
        record = shown(instance_reply(answer["instance"]))
        record["volumes_attached"] = list(answer.get("volumes_attached") or [])
        if answer.get("security_groups") is not None:
            record["security_groups"] = list(answer["security_groups"])
        return record

    async def instance_list(self, ctx: RequestContext, filters: dict[str, Any], sort_keys: list[str],
                            sort_dirs: list[str], limit: int | None, marker: str | None) -> list[InstanceRecord]:
        return instances_reply(await self.caller.call(TOPIC, M["instance_list"],
                                      {"filters": filters, "sort_keys": sort_keys, "sort_dirs": sort_dirs,
                                       "limit": limit, "marker": marker}, ctx))

    async def instance_list_views(self, ctx: RequestContext, filters: dict[str, Any], sort_keys: list[str],
                                  sort_dirs: list[str], limit: int | None, marker: str | None,
                                  groups: bool) -> list[ShownInstance]:
        """instance_list's records, each with what instance_show adds: "volumes_attached" and, when `groups`
        (the cell has a network controller), "security_groups". UnsupportedVersion from a conductor older
        than VIEWS_VERSION (UnknownMethod through relays)."""
        answer = await self.caller.call(TOPIC, M["instance_list_views"],
                                        {"filters": filters, "sort_keys": sort_keys, "sort_dirs": sort_dirs,
                                         "limit": limit, "marker": marker, "groups": groups}, ctx)
        records = [shown(r) for r in instances_reply(answer)]
        for record in records:
            record["volumes_attached"] = _names(record.get("volumes_attached"), "volumes_attached")
            if groups:
                record["security_groups"] = _names(record.get("security_groups"), "security_groups")
            else:
                record.pop("security_groups", None)
        return records

    async def instance_keys(self, ctx: RequestContext, filters: dict[str, Any], sort_keys: list[str],
                            sort_dirs: list[str], limit: int, marker: str | None = None,
                            after: dict[str, Any] | None = None) -> list[list[Any]]:
        """instance_list as each row's sort values (in the cell's sort_params order, uuid among them),
        after `marker` (a uuid of this cell) or `after` ({sort key: value}, a pivot from any cell).
        UnsupportedVersion from a conductor older than KEYS_VERSION (UnknownMethod through relays)."""
        answer = await self.caller.call(TOPIC, M["instance_keys"],
                                        {"filters": filters, "sort_keys": sort_keys, "sort_dirs": sort_dirs,
                                         "limit": limit, "marker": marker, "after": after}, ctx)
        rows = list_reply(answer)
        if not all(isinstance(row, list) for row in rows):
            raise errors.RpcError(reason="instance_keys: a peer answered rows that are not lists of key values")
        return rows

    async def instance_delete(self, ctx: RequestContext, uuid: str) -> InstanceRecord:
        return instance_reply(await self.caller.call(TOPIC, M["instance_delete"], {"uuid": uuid}, ctx))

    async def compute_node_update(self, ctx: RequestContext, host: str, resources: dict[str, Any]) -> None:
        await self.caller.call(TOPIC, M["compute_node_update"], {"host": host, "resources": resources}, ctx)

    async def instance_update(self, ctx: RequestContext, uuid: str, values: dict[str, Any],
                              expected_task_state: list[str | None] | None = None) -> InstanceRecord:
        return instance_reply(await self.caller.call(TOPIC, M["instance_update"],
                                      {"uuid": uuid, "values": values,
                                       "expected_task_state": expected_task_state}, ctx))

    async def instance_event(self, ctx: RequestContext, uuid: str, host: str, event: str, *,
                             power_state: int | None = None, fault: dict[str, Any] | None = None,
                             retryable: bool = False) -> dict[str, Any] | None:
        """Report a lifecycle event of an instance on `host`; the record after it (None for
        spawn_failed and destroyed). A transition the lifecycle refuses is a Conflict."""
        args: dict[str, Any] = {"uuid": uuid, "host": host, "event": event}
        if power_state is not None:
            args["power_state"] = power_state
        if fault is not None:
            args["fault"] = fault
        if retryable:
            args["retryable"] = True
        result = await self.caller.call(TOPIC, M["instance_event"], args, ctx)
        return None if result is None else map_reply(result)

    async def instances_on_host(self, ctx: RequestContext, host: str) -> list[InstanceRecord]:
        return instances_reply(await self.caller.call(TOPIC, M["instances_on_host"], {"host": host}, ctx))

    async def host_rejoined(self, ctx: RequestContext, host: str) -> dict[str, Any]:
        """Our host reconciled after being declared dead (fenced): it may serve again."""
        return map_reply(await self.caller.call(TOPIC, M["host_rejoined"], {"host": host}, ctx))

    async def compute_service_list(self, ctx: RequestContext) -> dict[str, Any]:
        """Admin: host -> its compute service's marks (disabled, disabled_reason, forced_down, deleted,
        updated_at) and liveness state, for the hosts that have marks."""
        return map_reply(await self.caller.call(TOPIC, M["compute_service_list"], {}, ctx))

    async def compute_service_update(self, ctx: RequestContext, host: str, values: dict[str, Any]) -> dict[str, Any]:
        """Admin: values of disabled, disabled_reason, forced_down; the host's marks after it."""
        return map_reply(await self.caller.call(TOPIC, M["compute_service_update"],
                                                {"host": host, "values": values}, ctx))

    async def compute_service_delete(self, ctx: RequestContext, host: str) -> None:
        """Admin: forget the host's compute service (409 while it holds servers or still runs)."""
        await self.caller.call(TOPIC, M["compute_service_delete"], {"host": host}, ctx)

    async def project_usage(self, ctx: RequestContext, project_id: str) -> dict[str, int]:
        """{"instances", "cores", "ram"} used by the project's live instances in this cell (for quotas)."""
        return map_reply(await self.caller.call(TOPIC, M["project_usage"], {"project_id": project_id}, ctx))

    async def usage_window(self, ctx: RequestContext, start: str, end: str, project_id: str | None, limit: int,
                           marker: str | None) -> list[dict[str, Any]]:
        """Instances launched by `end` and not terminated before `start` (deleted ones too), of one project
        or (admin) all, by uuid after `marker`, at most `limit`."""
        return list_reply(await self.caller.call(TOPIC, M["usage_window"], {
            "start": start, "end": end, "project_id": project_id, "limit": limit, "marker": marker}, ctx))

    async def instance_actions(self, ctx: RequestContext, uuid: str) -> list[dict[str, Any]]:
        """The instance's actions, oldest first, each with its "events" (os-instance-actions)."""
        return list_reply(await self.caller.call(TOPIC, M["instance_actions"], {"uuid": uuid}, ctx))

    async def instance_by_address(self, ctx: RequestContext, address: str) -> InstanceRecord:
        """The one live instance with this fixed IP in the cell (404 when none or several); admin/service
        only. The metadata service asks instance_for_metadata instead: an IP alone is no identity."""
        return instance_reply(await self.caller.call(TOPIC, M["instance_by_address"], {"address": address}, ctx))

    async def instance_for_metadata(self, ctx: RequestContext, network_id: str, address: str) -> InstanceRecord:
        """The live instance whose port on `network_id` holds `address` (the metadata service's lookup:
        the network its request arrived on and its source IP); admin/service only."""
        return instance_reply(await self.caller.call(TOPIC, M["instance_for_metadata"],
                                                {"network_id": network_id, "address": address}, ctx))

    async def instance_action(self, ctx: RequestContext, uuid: str, action: str,
                              args: dict[str, Any] | None = None) -> InstanceRecord:
        """Check `action` fits the server's state (409 otherwise), set its task_state, send it to the
        compute; returns the record at once (the compute finishes it in the background)."""
        return instance_reply(await self.caller.call(TOPIC, M["instance_action"],
                                      {"uuid": uuid, "action": action, "args": args or {}}, ctx))

    async def instance_lock(self, ctx: RequestContext, uuid: str, lock: bool,
                            reason: str | None = None) -> dict[str, Any]:
        """Lock (with an optional reason) or unlock the server; 403 for a member lifting an admin's lock."""
        return map_reply(await self.caller.call(TOPIC, M["instance_lock"],
                                                {"uuid": uuid, "lock": lock, "reason": reason}, ctx))

    async def interface_attach(self, ctx: RequestContext, uuid: str, port_id: str | None, net_id: str | None,
                               port_quota: int | None) -> dict[str, Any]:
        """A port (the project's `port_id`, or a new one on `net_id`) plugged into the server; {"port_id"}."""
        return map_reply(await self.caller.call(TOPIC, M["interface_attach"], {
            "uuid": uuid, "port_id": port_id, "net_id": net_id, "port_quota": port_quota}, ctx))

    async def interface_detach(self, ctx: RequestContext, uuid: str, port_id: str) -> None:
        await self.caller.call(TOPIC, M["interface_detach"], {"uuid": uuid, "port_id": port_id}, ctx)

    async def hypervisor_list(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """Admin: the cell's compute nodes, their capacity, use, running servers and liveness."""
        return list_reply(await self.caller.call(TOPIC, M["hypervisor_list"], {}, ctx))

    async def migration_list(self, ctx: RequestContext, filters: dict[str, str]) -> list[dict[str, Any]]:
        """Admin: the cell's migrations (resize, migration, evacuation), newest first."""
        return list_reply(await self.caller.call(TOPIC, M["migration_list"], {"filters": filters}, ctx))

    async def instance_reset_state(self, ctx: RequestContext, uuid: str, state: str) -> dict[str, Any]:
        """Admin: vm_state active or error, the task cleared (Nova's os-resetState)."""
        return map_reply(await self.caller.call(TOPIC, M["instance_reset_state"], {"uuid": uuid, "state": state},
                                                ctx))

    async def snapshot_begin(self, ctx: RequestContext, uuid: str, action: str = "createImage") -> dict[str, Any]:
        """The server enters task image_snapshot, or image_backup for createBackup (409 when its state does
        not allow a snapshot)."""
        return map_reply(await self.caller.call(TOPIC, M["snapshot_begin"], {"uuid": uuid, "action": action}, ctx))

    async def snapshot_progress(self, ctx: RequestContext, uuid: str, step: str,
                                message: str | None = None, action: str = "createImage") -> dict[str, Any]:
        """step uploading (task image_uploading), done or failed (the task ends; `message`: why it failed)."""
        return map_reply(await self.caller.call(TOPIC, M["snapshot_progress"],
                                                {"uuid": uuid, "step": step, "message": message, "action": action},
                                                ctx))

    async def password_get(self, ctx: RequestContext, uuid: str) -> str:
        """The password the server's guest posted ('' when none)."""
        return str(await self.caller.call(TOPIC, M["password_get"], {"uuid": uuid}, ctx))

    async def password_clear(self, ctx: RequestContext, uuid: str) -> None:
        await self.caller.call(TOPIC, M["password_clear"], {"uuid": uuid}, ctx)

    async def password_post(self, ctx: RequestContext, network_id: str, address: str, password: str) -> str:
        """The metadata service: the guest at `address` on `network_id` stores its password (once); its uuid."""
        return str(await self.caller.call(TOPIC, M["password_post"], {"network_id": network_id, "address": address,
                                                                      "password": password}, ctx))

    async def shelve_begin(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        """The server enters task shelving_image_pending_upload (409 when its state does not allow shelve)."""
        return map_reply(await self.caller.call(TOPIC, M["shelve_begin"], {"uuid": uuid}, ctx))

    async def shelve_progress(self, ctx: RequestContext, uuid: str, step: str,
                              message: str | None = None) -> dict[str, Any]:
        """step uploading, done (the compute powers the guest off: SHELVED, then offloaded when the cell's
        shelved_offload_time is 0) or failed (the task ends; `message`: why)."""
        return map_reply(await self.caller.call(TOPIC, M["shelve_progress"],
                                                {"uuid": uuid, "step": step, "message": message}, ctx))

    async def unshelve(self, ctx: RequestContext, uuid: str, image: dict[str, Any] | None,
                       placement: dict[str, Any] | None) -> dict[str, Any]:
        """Start the server again: on its host (SHELVED), or (offloaded) from `image` on a host the scheduler
        claims, within `placement` (only_hosts / excluded_hosts) when given, else the boot's."""
        return map_reply(await self.caller.call(TOPIC, M["unshelve"],
                                                {"uuid": uuid, "image": image, "placement": placement}, ctx))

    async def instance_diagnostics(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        """os-server-diagnostics: Nova's standard diagnostics of the server's guest (admin)."""
        return map_reply(await self.caller.call(TOPIC, M["instance_diagnostics"], {"uuid": uuid}, ctx))

    async def console_output(self, ctx: RequestContext, uuid: str, length: int | None) -> str:
        return str(await self.caller.call(TOPIC, M["console_output"], {"uuid": uuid, "length": length}, ctx))

    async def instance_action_done(self, ctx: RequestContext, uuid: str, host: str, action: str, ok: bool,
                                   values: dict[str, Any], fault: dict[str, Any] | None = None) -> InstanceRecord:
        return instance_reply(await self.caller.call(TOPIC, M["instance_action_done"],
                                      {"uuid": uuid, "host": host, "action": action, "ok": ok, "values": values,
                                       "fault": fault}, ctx))
