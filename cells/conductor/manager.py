"""The cell conductor service (topic `conductor`): every method of
cells/rpcapi/conductor.py SURFACE. Queries live here; multi-step flows live in
cells/conductor/flows/. Each RPC is one DB transaction (one unit of work);
background steps run in a TaskGroup owned by `background()`, so shutdown
cancels them with the service.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from sqlalchemy import ColumnElement, Connection, false, select

from cells import errors
from cells.conductor import capacity
from cells.conductor.env import FlowEnv
from cells.conductor.flows import (
    admin_lists,
    boot,
    compute_events,
    compute_services,
    delete,
    hosts,
    interfaces,
    locking,
    lookups,
    server_actions,
    server_password,
    server_snapshots,
    server_views,
    shelve,
    update,
    usage,
)
from cells.conductor.resource_reports import ReportBatcher
from cells.conductor.volume_rpc import VolumeConductor
from cells.config import ClusterConfig, ServiceSpec
from cells.context import RequestContext
from cells.db import hosts as hdb
from cells.db import instances as idb
from cells.db.engine import Database
from cells.db.fast import AnyRow
from cells.db.schema import compute_nodes, ensure_schema, instances
from cells.objects.records import AttachmentRecord, InstanceRecord, ShownInstance, VolumeRecord
from cells.rpc.directory import MISSED_BEATS
from cells.rpc.liveness import HostLiveness
from cells.rpc.principal import require_host
from cells.service_process import Service

LOG = logging.getLogger(__name__)
SWEEP_BEATS = 5  # the safety-net sweep runs every this many heartbeat intervals


def _known_hosts(conn: Connection) -> tuple[set[str], set[str], set[str]]:
    """(compute hosts the cell DB knows, hosts marked down, fenced hosts): the liveness watch's read."""
    known = set(conn.execute(select(compute_nodes.c.host)).scalars())
    down, fenced = hdb.read_marks(conn)
    return known, down, fenced


def _tenant_scope(ctx: RequestContext) -> list[ColumnElement[bool]]:
    """A listing's extra condition: a tenant sees its own project only (admins and services see all)."""
    if not (ctx.is_admin or "service" in ctx.roles) and ctx.project is not None:
        return [instances.c.project_id == ctx.project]
    return []


class ConductorManager:
    """Instance queries and flows (cells/conductor/flows/), and its volumes collaborator
    (`volumes`, cells/conductor/volume_rpc.py), made when the service starts."""

    volumes: VolumeConductor
    reports: ReportBatcher

    def __init__(self, cluster: ClusterConfig, spec: ServiceSpec) -> None:
        if spec.cell is None:
            raise ValueError(f"conductor {spec.id} belongs to no cell")
        self.cluster = cluster
        self.spec = spec
        self.cell = spec.cell
        self.db_url = cluster.cell(spec.cell).db
        self._env: FlowEnv | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._pending: list[Coroutine[Any, Any, None]] = []  # spawned before background() began
        self._compute_hosts: set[str] = set()
        self._conductors: set[str] = set()

    @property
    def env(self) -> FlowEnv:
        if self._env is None:
            raise errors.CellcloudError("conductor is not started")
        return self._env

    # --- service hooks -------------------------------------------------------------

    async def start(self, service: Service) -> None:
        db = Database(self.db_url)
        await ensure_schema(db)
        # the grace counts from our start: an empty table just after it (ours or the directory's) kills nobody
        liveness = HostLiveness(self.cluster.dead_after, time.monotonic())
        self._env = FlowEnv(db=db, service=service, cell=self.cell, conductor_id=self.spec.id, spawn=self._spawn,
                            allow_resize_to_same_host=self.cluster.cell(self.cell).allow_resize_to_same_host,
                            max_attempts=self.cluster.max_attempts, liveness=liveness,
                            shelved_offload_time=self.cluster.shelved_offload_time)
        # a previous run of this conductor died mid-flow: its scheduling builds have no owner now
        await hosts.orphaned_builds(self._env, [self.spec.id])
        self.reports = ReportBatcher(db)
        self.volumes = VolumeConductor(self._env)
        await self.volumes.start()
        service.view.listeners.append(self._on_membership)

    async def background(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            for coro in self._pending:
                tg.create_task(self._guarded(coro))
            self._pending.clear()
            tg.create_task(self._sweeper())
            tg.create_task(self._watch_hosts())
            if self.cluster.shelved_offload_time > 0:
                tg.create_task(self._offload_shelved())
            tg.create_task(capacity.report(self.env, self.cluster.heartbeat_interval))  # upward, on heartbeats
            try:
                await asyncio.Future()  # until the service cancels us
            finally:
                self._tg = None

    async def stop(self) -> None:
        for coro in self._pending:
            coro.close()
        self._pending.clear()
        if self._env is not None:
            self.reports.close()
            await self._env.db.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._tg is None:
            self._pending.append(coro)
        else:
            self._tg.create_task(self._guarded(coro))

    @staticmethod
    async def _guarded(coro: Coroutine[Any, Any, None]) -> None:
        """A failing flow is logged; it must not cancel its siblings in the TaskGroup."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            LOG.exception("background flow failed")

    def _on_membership(self, joined: set[str], left: set[str]) -> None:
        """Directory listener (sync): compute hosts that left are suspect (nothing destroyed:
        the liveness watch declares them dead after the grace), those back get the deletes
        asked meanwhile; builds of conductors that went away are adopted."""
        members = list(self.env.service.view.by_id.values())
        now_hosts = hosts.compute_hosts(members)
        self.env.liveness.observe(now_hosts, time.monotonic())
        for host in self._compute_hosts - now_hosts:
            LOG.warning("compute host %s left the directory: suspect", host)
        for host in now_hosts - self._compute_hosts:
            self._spawn(hosts.host_back(self.env, host))
        gone = {mid for mid in left if mid in self._conductors and mid != self.spec.id}
        if gone:
            self._spawn(hosts.orphaned_builds(self.env, sorted(gone)))
        self._compute_hosts = now_hosts
        self._conductors = {m.id for m in members if "conductor" in m.topics}

    async def _sweeper(self) -> None:
        view = self.env.service.view
        interval = self.cluster.heartbeat_interval
        await view.wait_synced(MISSED_BEATS * interval)
        suspects: set[str] = set()
        while True:
            await asyncio.sleep(SWEEP_BEATS * interval)
            try:
                suspects = await hosts.sweep(self.env, suspects)
            except errors.CellcloudError as exc:
                LOG.warning("dead-member sweep failed: %s", exc)
            except Exception:  # the sweep is a safety net: never let it take the service down
                LOG.exception("dead-member sweep failed")

    async def _offload_shelved(self) -> None:
        """Servers shelved longer than shelved_offload_time give their host back (Nova's periodic task)."""
        every = max(1.0, min(60.0, self.cluster.shelved_offload_time / 4))
        while True:
            await asyncio.sleep(every)
            try:
                await shelve.offload_due(self.env)
            except errors.CellcloudError as exc:
                LOG.warning("shelved offload sweep failed: %s", exc)
            except Exception:  # a safety net like the others: never take the service down
                LOG.exception("shelved offload sweep failed")

    async def _watch_hosts(self) -> None:
        """Every half heartbeat: the operator's marks and fences from the cell DB, the routing
        table, verdicts; a host newly dead is recovered (flows/hosts.py host_dead). The hosts'
        states ride on our heartbeat (meta "hosts"): computes see their fence, status shows them."""
        view = self.env.service.view
        liveness = self.env.liveness
        published: dict[str, str] | None = None
        while True:
            try:
                known, down, fenced = await self.env.db.read(_known_hosts)
                liveness.marks(down, fenced)
                now = time.monotonic()
                liveness.observe(hosts.compute_hosts(view.by_id.values()), now)
                for host in liveness.newly_dead(known, now):
                    self._spawn(hosts.host_dead(self.env, host))
                states = liveness.states(known, now)
                if states != published:
                    view.set_meta(hosts=states)
                    published = states
            except errors.CellcloudError as exc:
                LOG.warning("host liveness watch failed: %s", exc)
            except Exception:  # a safety net must never take the conductor down
                LOG.exception("host liveness watch failed")
            await asyncio.sleep(self.cluster.heartbeat_interval / 2)

    # --- RPC: operators and fenced hosts --------------------------------------------

    async def host_mark(self, ctx: RequestContext, host: str, down: bool) -> dict[str, str]:
        """`cellctl host down|up HOST`: the operator says the host is dead (destructive recovery
        may start at once), or takes the mark back (a fenced host still reconciles first)."""
        if not (ctx.is_admin or "service" in ctx.roles):
            raise errors.Forbidden(reason="marking a host down or up is an admin action")
        if not isinstance(host, str) or not isinstance(down, bool):
            raise errors.Invalid(reason="host must be a host name and down true or false")
        cell_hosts = {s.host for s in self.cluster.services if s.cell == self.cell and s.kind == "compute"}
        known = await self.env.db.read(_known_hosts)
        if host not in cell_hosts | known[0]:
            raise errors.NotFound(f"Compute host {host} could not be found.", host=host)
        await self.env.db.write(lambda conn: hdb.set_forced_down(conn, host, down))
        (self.env.liveness.forced_down.add if down else self.env.liveness.forced_down.discard)(host)
        LOG.warning("operator marked compute host %s %s", host, "down" if down else "up")
        return {"host": host, "state": self.env.host_state(host)}

    def _cell_hosts(self) -> set[str]:
        return {s.host for s in self.cluster.services if s.cell == self.cell and s.kind == "compute"}

    async def compute_service_list(self, ctx: RequestContext) -> dict[str, dict[str, Any]]:
        return await compute_services.service_list(self.env, ctx)

    async def compute_service_update(self, ctx: RequestContext, host: str,
                                     values: dict[str, Any]) -> dict[str, Any]:
        return await compute_services.service_update(self.env, ctx, host, values, self._cell_hosts())

    async def compute_service_delete(self, ctx: RequestContext, host: str) -> None:
        await compute_services.service_delete(self.env, ctx, host, self._cell_hosts())

    async def host_rejoined(self, ctx: RequestContext, host: str) -> dict[str, str]:
        """A fenced host's compute reconciled against the cell DB: it may serve again."""
        require_host(ctx, host, "host_rejoined")
        if not isinstance(host, str):
            raise errors.Invalid(reason="host must be a host name")
        if await self.env.db.write(lambda conn: hdb.unfence(conn, host)):
            LOG.warning("compute host %s reconciled after being declared dead: it rejoins", host)
        self.env.liveness.fenced.discard(host)
        return {"host": host, "state": self.env.host_state(host)}

    # --- RPC: from the API ---------------------------------------------------------

    async def build_instances(self, ctx: RequestContext, instances: list[dict[str, Any]],
                              request_spec: dict[str, Any]) -> list[InstanceRecord]:
        return await boot.build_instances(self.env, ctx, instances, request_spec)

    async def instance_get(self, ctx: RequestContext, uuid: str) -> InstanceRecord:
        row = await self.env.db.read(lambda conn: idb.get_row(conn, uuid))
        if row is None or row.deleted or not delete.visible(ctx, row):
            raise errors.InstanceNotFound(instance_id=uuid)
        return self.env.record(row)

    async def instance_show(self, ctx: RequestContext, uuid: str, groups: bool = False) -> dict[str, Any]:
        """A server view's reads in one unit of work (every poll of a booting server is one)."""
        def read(conn: Connection) -> tuple[AnyRow, server_views.Views]:
            row = idb.get_row(conn, uuid)
            if row is None or row.deleted or not delete.visible(ctx, row):
                raise errors.InstanceNotFound(instance_id=uuid)
            return row, server_views.views_of(conn, ctx, [uuid], bool(groups))
        row, (attached, names) = await self.env.db.read(read)
        return {"instance": self.env.record(row), "volumes_attached": attached.get(uuid, []),
                "security_groups": None if names is None else names.get(uuid, [])}

    async def instance_list(self, ctx: RequestContext, filters: dict[str, Any] | None = None,
                            sort_keys: list[str] | None = None, sort_dirs: list[str] | None = None,
                            limit: int | None = None, marker: str | None = None) -> list[InstanceRecord]:
        scope = _tenant_scope(ctx)
        rows = await self.env.db.read(
            lambda conn: idb.list_rows(conn, dict(filters or {}), sort_keys, sort_dirs, limit, marker, scope))
        return [self.env.record(r) for r in rows]

    async def instance_list_views(self, ctx: RequestContext, filters: dict[str, Any] | None = None,
                                  sort_keys: list[str] | None = None, sort_dirs: list[str] | None = None,
                                  limit: int | None = None, marker: str | None = None,
                                  groups: bool = False) -> list[ShownInstance]:
        """instance_list's records (same scope and filters), each with what a server view adds, as
        instance_show's: a detail listing's page in one call per cell (issue 21)."""
        return await server_views.instance_list_views(self.env, ctx, dict(filters or {}), sort_keys, sort_dirs,
                                                      limit, marker, _tenant_scope(ctx), groups)

    async def instance_keys(self, ctx: RequestContext, filters: dict[str, Any] | None = None,
                            sort_keys: list[str] | None = None, sort_dirs: list[str] | None = None,
                            limit: int = 0, marker: str | None = None,
                            after: dict[str, Any] | None = None) -> list[list[Any]]:
        """instance_list's rows (same scope and filters) as their sort-key values only, in sort_params
        order (uuid among them): the API merges these across cells, then fetches the page's records."""
        scope = _tenant_scope(ctx)
        return await self.env.db.read(
            lambda conn: idb.list_keys(conn, dict(filters or {}), sort_keys, sort_dirs, limit, marker, after, scope))

    async def instance_delete(self, ctx: RequestContext, uuid: str) -> InstanceRecord:
        return await delete.instance_delete(self.env, ctx, uuid)

    # --- RPC: from compute workers -------------------------------------------------

    async def compute_node_update(self, ctx: RequestContext, host: str, resources: dict[str, Any]) -> None:
        require_host(ctx, host, "compute_node_update")
        if not isinstance(resources, dict):
            raise errors.Invalid(reason="resources must be a map")
        for key in ("vcpus", "memory_mb", "local_gb"):
            value = resources.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise errors.Invalid(reason=f"resources.{key} must be a non-negative integer, not {value!r}")
        await self.reports.report(host, resources)  # with the others of this tick (cells/conductor/resource_reports.py)

    async def instance_event(self, ctx: RequestContext, uuid: str, host: str, event: str,
                             power_state: int | None = None, fault: dict[str, Any] | None = None,
                             retryable: bool = False) -> InstanceRecord | None:
        require_host(ctx, host, "instance_event")
        return await compute_events.instance_event(self.env, ctx, uuid, host, event, power_state, fault, retryable)

    async def instance_update(self, ctx: RequestContext, uuid: str, values: dict[str, Any],
                              expected_task_state: list[str | None] | None = None) -> InstanceRecord:
        return await update.instance_update(self.env, ctx, uuid, values, expected_task_state)

    async def build_failed(self, ctx: RequestContext, uuid: str, host: str, fault: dict[str, Any],
                           retryable: bool) -> None:
        require_host(ctx, host, "build_failed")
        await boot.build_failed(self.env, ctx, uuid, host, fault, retryable)

    async def instance_destroyed(self, ctx: RequestContext, uuid: str, host: str) -> None:
        require_host(ctx, host, "instance_destroyed")
        await delete.instance_destroyed(self.env, ctx, uuid, host)

    async def instances_on_host(self, ctx: RequestContext, host: str) -> list[InstanceRecord]:
        """Live (not deleted) instances recorded on `host`, for the compute's reconciliation."""
        require_host(ctx, host, "instances_on_host")
        rows = await self.env.db.read(
            lambda conn: idb.rows_where(conn, instances.c.host == host, instances.c.deleted == false()))
        return [self.env.record(r) for r in rows]

    # --- RPC: quotas, instance actions, metadata (cells/conductor/flows/lookups.py) --------

    async def project_usage(self, ctx: RequestContext, project_id: str) -> dict[str, int]:
        return await lookups.project_usage(self.env, ctx, project_id)

    async def usage_window(self, ctx: RequestContext, start: str, end: str, project_id: str | None, limit: int,
                           marker: str | None = None) -> list[dict[str, Any]]:
        return await usage.usage_window(self.env, ctx, start, end, project_id, limit, marker)

    async def instance_actions(self, ctx: RequestContext, uuid: str) -> list[dict[str, Any]]:
        return await lookups.instance_actions(self.env, ctx, uuid)

    async def instance_by_address(self, ctx: RequestContext, address: str) -> InstanceRecord:
        return await lookups.instance_by_address(self.env, ctx, address)

    async def instance_for_metadata(self, ctx: RequestContext, network_id: str, address: str) -> InstanceRecord:
        return await lookups.instance_for_metadata(self.env, ctx, network_id, address)

    # --- RPC: server actions (cells/conductor/flows/server_actions.py) ------------------------

    async def password_get(self, ctx: RequestContext, uuid: str) -> str:
        return await server_password.password_get(self.env, ctx, uuid)

    async def password_clear(self, ctx: RequestContext, uuid: str) -> None:
        await server_password.password_clear(self.env, ctx, uuid)

    async def password_post(self, ctx: RequestContext, network_id: str, address: str, password: str) -> str:
        return await server_password.password_post(self.env, ctx, network_id, address, password)

    async def shelve_begin(self, ctx: RequestContext, uuid: str) -> InstanceRecord:
        return await shelve.shelve_begin(self.env, ctx, uuid)

    async def shelve_progress(self, ctx: RequestContext, uuid: str, step: str,
                              message: str | None = None) -> InstanceRecord:
        return await shelve.shelve_progress(self.env, ctx, uuid, step, message)

    async def unshelve(self, ctx: RequestContext, uuid: str, image: dict[str, Any] | None = None,
                       placement: dict[str, Any] | None = None) -> InstanceRecord:
        return await shelve.unshelve(self.env, ctx, uuid, image, placement)

    async def instance_action(self, ctx: RequestContext, uuid: str, action: str,
                              args: dict[str, Any] | None = None) -> InstanceRecord:
        if action in ("shelve", "unshelve"):  # their own methods: an image to make or to boot from
            raise errors.Invalid(reason=f"{action} is not a plain server action: use {action} methods")
        return await server_actions.instance_action(self.env, ctx, uuid, action, args)

    async def interface_attach(self, ctx: RequestContext, uuid: str, port_id: str | None = None,
                               net_id: str | None = None, port_quota: int | None = None) -> dict[str, Any]:
        return await interfaces.interface_attach(self.env, ctx, uuid, port_id, net_id, port_quota)

    async def interface_detach(self, ctx: RequestContext, uuid: str, port_id: str) -> None:
        await interfaces.interface_detach(self.env, ctx, uuid, port_id)

    async def instance_lock(self, ctx: RequestContext, uuid: str, lock: bool, reason: str | None = None
                            ) -> InstanceRecord:
        return await locking.instance_lock(self.env, ctx, uuid, lock, reason)

    async def hypervisor_list(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return await admin_lists.hypervisor_list(self.env, ctx)

    async def migration_list(self, ctx: RequestContext, filters: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return await admin_lists.migration_list(self.env, ctx, filters)

    async def instance_reset_state(self, ctx: RequestContext, uuid: str, state: str) -> InstanceRecord:
        return await locking.instance_reset_state(self.env, ctx, uuid, state)

    async def snapshot_begin(self, ctx: RequestContext, uuid: str, action: str = "createImage") -> InstanceRecord:
        return await server_snapshots.snapshot_begin(self.env, ctx, uuid, action)

    async def snapshot_progress(self, ctx: RequestContext, uuid: str, step: str,
                                message: str | None = None, action: str = "createImage") -> InstanceRecord:
        return await server_snapshots.snapshot_progress(self.env, ctx, uuid, step, message, action)

    async def console_output(self, ctx: RequestContext, uuid: str, length: int | None = None) -> str:
        return await server_actions.console_output(self.env, ctx, uuid, length)

    async def instance_diagnostics(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        return await server_actions.diagnostics(self.env, ctx, uuid)

    async def instance_action_done(self, ctx: RequestContext, uuid: str, host: str, action: str, ok: bool,
                                   values: dict[str, Any], fault: dict[str, Any] | None = None) -> InstanceRecord:
        require_host(ctx, host, "instance_action_done")
        return await server_actions.instance_action_done(self.env, ctx, uuid, host, action, ok, values, fault)

    # --- RPC: moves (issue 8; cells/conductor/flows/moves.py, evacuate.py) ---------------

    async def move_instance(self, ctx: RequestContext, uuid: str, action: str, flavor: dict[str, Any] | None = None,
                            placement: dict[str, Any] | None = None) -> InstanceRecord:
        from cells.conductor.flows import moves
        return await moves.move_instance(self.env, ctx, uuid, action, flavor, placement)

    async def confirm_move(self, ctx: RequestContext, uuid: str) -> InstanceRecord:
        from cells.conductor.flows import moves
        return await moves.confirm_move(self.env, ctx, uuid)

    async def revert_move(self, ctx: RequestContext, uuid: str) -> InstanceRecord:
        from cells.conductor.flows import moves
        return await moves.revert_move(self.env, ctx, uuid)

    async def evacuate(self, ctx: RequestContext, uuid: str) -> InstanceRecord:
        from cells.conductor.flows import evacuate
        return await evacuate.evacuate(self.env, ctx, uuid)

    # --- RPC: volumes and snapshots (cells/conductor/volume_rpc.py VolumeConductor) -----------
    async def volume_create(self, ctx: RequestContext, volume: dict[str, Any]) -> VolumeRecord:
        return await self.volumes.volume_create(ctx, volume)

    async def volume_get(self, ctx: RequestContext, volume_id: str) -> VolumeRecord:
        return await self.volumes.volume_get(ctx, volume_id)

    async def volume_list(self, ctx: RequestContext, filters: dict[str, Any] | None = None,
                          limit: int | None = None) -> list[VolumeRecord]:
        return await self.volumes.volume_list(ctx, filters, limit)

    async def volume_update(self, ctx: RequestContext, volume_id: str, values: dict[str, Any]) -> VolumeRecord:
        return await self.volumes.volume_update(ctx, volume_id, values)

    async def volume_delete(self, ctx: RequestContext, volume_id: str, cascade: bool = False) -> VolumeRecord:
        return await self.volumes.volume_delete(ctx, volume_id, cascade)

    async def volume_upload(self, ctx: RequestContext, volume_id: str, image_id: str, token: str,
                            disk_format: str = "raw") -> VolumeRecord:
        return await self.volumes.volume_upload(ctx, volume_id, image_id, token, disk_format)

    async def volume_extend(self, ctx: RequestContext, volume_id: str, new_size: int) -> VolumeRecord:
        return await self.volumes.volume_extend(ctx, volume_id, new_size)

    async def snapshot_create(self, ctx: RequestContext, snapshot: dict[str, Any],
                              force: bool = False) -> dict[str, Any]:
        return await self.volumes.snapshot_create(ctx, snapshot, force)

    async def snapshot_get(self, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
        return await self.volumes.snapshot_get(ctx, snapshot_id)

    async def snapshot_list(self, ctx: RequestContext, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return await self.volumes.snapshot_list(ctx, filters)

    async def snapshot_update(self, ctx: RequestContext, snapshot_id: str, values: dict[str, Any]) -> dict[str, Any]:
        return await self.volumes.snapshot_update(ctx, snapshot_id, values)

    async def snapshot_delete(self, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
        return await self.volumes.snapshot_delete(ctx, snapshot_id)

    async def volume_action(self, ctx: RequestContext, volume_id: str, action: str,
                            args: dict[str, Any] | None = None) -> VolumeRecord:
        return await self.volumes.volume_action(ctx, volume_id, action, args)

    async def snapshot_action(self, ctx: RequestContext, snapshot_id: str, action: str,
                              args: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.volumes.snapshot_action(ctx, snapshot_id, action, args)

    async def volume_host_list(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return await self.volumes.volume_host_list(ctx)

    async def volume_host_set(self, ctx: RequestContext, host: str, values: dict[str, Any]) -> dict[str, Any]:
        return await self.volumes.volume_host_set(ctx, host, values)

    async def message_list(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return await self.volumes.message_list(ctx)

    async def message_get(self, ctx: RequestContext, message_id: str) -> dict[str, Any]:
        return await self.volumes.message_get(ctx, message_id)

    async def message_delete(self, ctx: RequestContext, message_id: str) -> dict[str, Any]:
        return await self.volumes.message_delete(ctx, message_id)

    async def volume_attach(self, ctx: RequestContext, volume_id: str, instance_uuid: str,
                            device: str | None = None) -> AttachmentRecord:
        return await self.volumes.volume_attach(ctx, volume_id, instance_uuid, device)

    async def volume_detach(self, ctx: RequestContext, volume_id: str, instance_uuid: str) -> AttachmentRecord:
        return await self.volumes.volume_detach(ctx, volume_id, instance_uuid)

    async def volume_attachments(self, ctx: RequestContext,
                                 instance_uuids: list[str]) -> dict[str, list[AttachmentRecord]]:
        return await self.volumes.volume_attachments(ctx, instance_uuids)

    async def volume_connection(self, ctx: RequestContext, volume_id: str, instance_uuid: str) -> dict[str, Any]:
        return await self.volumes.volume_connection(ctx, volume_id, instance_uuid)

    async def volume_node_update(self, ctx: RequestContext, host: str, stats: dict[str, Any]) -> None:
        await self.volumes.volume_node_update(ctx, host, stats)

    async def volumes_on_host(self, ctx: RequestContext, host: str) -> list[VolumeRecord]:
        return await self.volumes.volumes_on_host(ctx, host)
