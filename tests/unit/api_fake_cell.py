"""A fake child cell for the API tests: a real Directory router and a fake
conductor serving cells/rpcapi/conductor.py's SURFACE over real ZeroMQ.

The fake keeps instance records in memory and does what the API relies on:
build_instances stores the records (BUILD/scheduling), instance_get /
instance_list / instance_delete read and change them, with the list filters,
sorting and keyset paging of the cell DB. Tests move records along with
`activate()`; `fail_next_build` makes build_instances raise.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from api.cell_router import sort_key
from cells import errors, linear_regex
from cells.context import RequestContext
from cells.db.instances import fixed_ip_matcher, sort_params
from cells.objects import versions
from cells.objects.instance import PowerState, VmState, utcnow_iso
from cells.rpc.client import RpcClient
from cells.rpc.directory import SURFACE as DIRECTORY_SURFACE
from cells.rpc.directory import Directory, DirectoryView, Member
from cells.rpc.server import RpcServer
from cells.rpcapi.conductor import SURFACE as CONDUCTOR_SURFACE
from tests.conftest import free_port

INTERVAL = 0.1


@dataclass
class FakeConductor:
    cell: str = "cell1"
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    builds: list[dict[str, Any]] = field(default_factory=list)  # request_specs received
    fail_next_build: errors.CellcloudError | None = None
    lose_next_build_reply: errors.CellcloudError | None = None  # the build is made, the reply lost: this raised
    fail_deletes: int = 0  # instance_delete calls still to fail (the conductor down)
    list_calls: int = 0
    keys_calls: int = 0  # instance_keys (RPC 1.7) answered
    show_calls: int = 0  # instance_show (RPC 1.2) answered
    views_calls: int = 0  # instance_list_views (RPC 1.8) answered
    auto_after: float | None = None  # when set: builds go ACTIVE and deletes finish after this many seconds
    actions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # uuid -> instance actions
    _timers: list[asyncio.TimerHandle] = field(default_factory=list)

    async def build_instances(self, ctx: RequestContext, instances: list[dict[str, Any]],
                              request_spec: dict[str, Any]) -> list[dict[str, Any]]:
        if self.fail_next_build is not None:
            exc, self.fail_next_build = self.fail_next_build, None
            raise exc
        self.builds.append(request_spec)
        for inst in instances:
            self.records[inst["uuid"]] = dict(inst, cell=self.cell)
            self.actions[inst["uuid"]] = [{
                "uuid": inst["uuid"], "instance_uuid": inst["uuid"], "action": "create",
                "request_id": ctx.request_id, "user_id": ctx.user, "project_id": ctx.project,
                "start_time": utcnow_iso(), "finish_time": None, "message": None,
                "events": [{"event": "conductor_schedule_and_build_instances", "start_time": utcnow_iso(),
                            "finish_time": None, "result": None, "details": None, "host": None}]}]
            self._later(self.activate, inst["uuid"])
        if self.lose_next_build_reply is not None:
            exc, self.lose_next_build_reply = self.lose_next_build_reply, None
            raise exc
        return [self.records[i["uuid"]] for i in instances]

    def _visible(self, ctx: RequestContext, rec: dict[str, Any]) -> bool:
        return ctx.is_admin or rec["project_id"] == ctx.project

    async def instance_get(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        rec = self.records.get(uuid)
        if rec is None or rec["deleted"] or not self._visible(ctx, rec):
            raise errors.InstanceNotFound(instance_id=uuid)
        return rec

    async def instance_show(self, ctx: RequestContext, uuid: str, groups: bool = False) -> dict[str, Any]:
        self.show_calls += 1
        record, volumes = await self.instance_get(ctx, uuid), []
        attachments = getattr(self, "volume_attachments", None)  # a fake with the real volume flows has them
        if attachments is not None:
            volumes = [a["volume_id"] for a in (await attachments(ctx, [uuid])).get(uuid, [])]
        return {"instance": record, "volumes_attached": volumes, "security_groups": [] if groups else None}

    async def instance_list(self, ctx: RequestContext, filters: dict[str, Any], sort_keys: list[str],
                            sort_dirs: list[str], limit: int | None, marker: str | None) -> list[dict[str, Any]]:
        self.list_calls += 1
        allowed = {"project_id", "user_id", "name", "vm_state", "task_state", "host", "uuid", "deleted",
                   "changes_since", "flavor_id", "image_id", "ip", "ip6"}
        if set(filters) - allowed:
            raise errors.Invalid(reason=f"unknown instance filter(s) {sorted(set(filters) - allowed)}")
        recs = [r for r in self.records.values() if self._visible(ctx, r) and self._match(r, filters)]
        key = sort_key(sort_keys, sort_dirs)
        recs.sort(key=key)
        if marker is not None:
            if marker not in self.records:
                raise errors.MarkerNotFound(marker=marker)
            pivot = key(self.records[marker])
            recs = [r for r in recs if key(r) > pivot]
        return recs[:limit] if limit is not None else recs

    async def instance_list_views(self, ctx: RequestContext, filters: dict[str, Any], sort_keys: list[str],
                                  sort_dirs: list[str], limit: int | None, marker: str | None,
                                  groups: bool = False) -> list[dict[str, Any]]:
        """instance_list's records with instance_show's volumes and (empty) group names (RPC 1.8)."""
        self.views_calls += 1
        recs = await self.instance_list(ctx, filters, sort_keys, sort_dirs, limit, marker)
        self.list_calls -= 1  # counted as views
        attachments = getattr(self, "volume_attachments", None)  # a fake with the real volume flows has them
        found = await attachments(ctx, [r["uuid"] for r in recs]) if attachments is not None and recs else {}
        return [{**r, "volumes_attached": [a["volume_id"] for a in found.get(r["uuid"], [])],
                 **({"security_groups": []} if groups else {})} for r in recs]

    async def instance_keys(self, ctx: RequestContext, filters: dict[str, Any], sort_keys: list[str],
                            sort_dirs: list[str], limit: int, marker: str | None = None,
                            after: dict[str, Any] | None = None) -> list[list[Any]]:
        """instance_list's rows as their sort values, in the cell DB's key order (RPC 1.7)."""
        self.keys_calls += 1
        names = [k for k, _ in sort_params(sort_keys, sort_dirs)]
        recs = await self.instance_list(ctx, filters, sort_keys, sort_dirs, None, marker)
        self.list_calls -= 1  # not a records listing
        if after is not None:
            pivot = sort_key(sort_keys, sort_dirs)(after)
            recs = [r for r in recs if sort_key(sort_keys, sort_dirs)(r) > pivot]
        return [[r.get(k) for k in names] for r in recs[:limit]]

    @staticmethod
    def _match(rec: dict[str, Any], filters: dict[str, Any]) -> bool:
        for k in ("project_id", "user_id", "host", "uuid", "task_state"):  # exact match, str or list (as the cell DB)
            wanted = filters.get(k)
            if wanted is not None and rec.get(k) not in (wanted if isinstance(wanted, list) else [wanted]):
                return False
        if filters.get("vm_state") is not None:
            wanted = filters["vm_state"] if isinstance(filters["vm_state"], list) else [filters["vm_state"]]
            if rec["vm_state"] not in wanted:
                return False
        if filters.get("name") and not linear_regex.search(filters["name"], rec["name"]):
            return False
        ip_ok = fixed_ip_matcher(filters)
        if ip_ok is not None and not ip_ok(rec.get("addresses")):
            return False
        for key, built_from in (("flavor_id", "flavor"), ("image_id", "image")):
            if filters.get(key) is not None and (rec.get(built_from) or {}).get("id") != filters[key]:
                return False
        if filters.get("changes_since") is not None:
            return bool(rec["updated_at"] >= filters["changes_since"])
        return bool(rec["deleted"] == filters.get("deleted", False))

    async def instance_delete(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        if self.fail_deletes > 0:
            self.fail_deletes -= 1
            raise errors.NoLiveMember(topic="conductor")
        rec = await self.instance_get(ctx, uuid)
        rec.update(task_state="deleting", updated_at=utcnow_iso())
        self._later(self.destroy, uuid)
        return rec

    def _later(self, step: Callable[[str], None], uuid: str) -> None:
        if self.auto_after is not None:
            self._timers.append(asyncio.get_running_loop().call_later(self.auto_after, step, uuid))

    async def capacity(self, ctx: RequestContext) -> dict[str, Any]:
        return {"hosts": 1, "hosts_alive": 1}

    async def project_usage(self, ctx: RequestContext, project_id: str) -> dict[str, int]:
        live = [r for r in self.records.values() if r["project_id"] == project_id and not r["deleted"]]
        return {"instances": len(live), "cores": sum(r["flavor"]["vcpus"] for r in live),
                "ram": sum(r["flavor"]["ram"] for r in live)}

    async def instance_update(self, ctx: RequestContext, uuid: str, values: dict[str, Any],
                              expected_task_state: list[str | None] | None = None) -> dict[str, Any]:
        rec = await self.instance_get(ctx, uuid)
        rec.update(values, updated_at=utcnow_iso())
        return rec

    async def instance_actions(self, ctx: RequestContext, uuid: str) -> list[dict[str, Any]]:
        rec = self.records.get(uuid)
        if rec is None or not self._visible(ctx, rec):
            raise errors.InstanceNotFound(instance_id=uuid)
        return [dict(a) for a in self.actions.get(uuid, [])]

    async def instance_by_address(self, ctx: RequestContext, address: str) -> dict[str, Any]:
        for rec in self.records.values():
            if not rec["deleted"] and any(ip["addr"] == address for ips in rec["addresses"].values() for ip in ips):
                return rec
        raise errors.InstanceNotFound(instance_id=address)

    # --- test controls ------------------------------------------------------

    def activate(self, uuid: str, host: str = "node1") -> None:
        if self.records[uuid]["task_state"] == "deleting":
            return
        now = utcnow_iso()
        self.records[uuid].update(vm_state=VmState.ACTIVE, task_state=None, power_state=PowerState.RUNNING,
                                  host=host, launched_at=now, updated_at=now,
                                  addresses={"private": [{"addr": "10.0.0.5", "version": 4,
                                                          "OS-EXT-IPS:type": "fixed",
                                                          "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"}]})

    def destroy(self, uuid: str) -> None:
        now = utcnow_iso()
        self.records[uuid].update(vm_state=VmState.DELETED, task_state=None, deleted=True, terminated_at=now,
                                  updated_at=now)


@dataclass
class FakeCell:
    router: str
    conductor: FakeConductor
    router_server: RpcServer | None = None

    async def stop_router(self) -> None:
        """The cell's router dies: the API stops hearing from the cell."""
        if self.router_server is not None:
            server, self.router_server = self.router_server, None
            await server.stop()

    async def restart_router(self) -> None:
        """A new router process on the same address: it learns the conductor from its next beat."""
        await self.stop_router()
        self.router_server = RpcServer(self.router, Directory(INTERVAL), DIRECTORY_SURFACE)
        await self.router_server.start()


@asynccontextmanager
async def fake_cell(cell: str = "cell1", handler: FakeConductor | None = None,
                    rpc: str | None = None) -> AsyncIterator[FakeCell]:
    """A running router (real Directory) and a fake conductor (`handler`, default a new one) registered in it;
    `rpc`: the conductor RPC version it advertises (default this release's: an older one stands for an older
    conductor, which callers then do not ask newer methods)."""
    router_addr = f"tcp://127.0.0.1:{free_port()}"
    conductor_addr = f"tcp://127.0.0.1:{free_port()}"
    directory = Directory(INTERVAL)
    router = RpcServer(router_addr, directory, DIRECTORY_SURFACE)
    await router.start()
    handler = handler or FakeConductor(cell)
    server = RpcServer(conductor_addr, handler, CONDUCTOR_SURFACE)
    await server.start()
    client = RpcClient()
    speaks = versions.advertised(CONDUCTOR_SURFACE) or {}  # a conductor of this release, unless told
    me = Member(f"{cell}/conductor", conductor_addr, ("conductor",), version=versions.RELEASE,
                meta={"versions": {**speaks, "rpc": rpc} if rpc else speaks})
    view = DirectoryView(client, router_addr, me, INTERVAL)
    tasks = [asyncio.ensure_future(directory.background()), asyncio.ensure_future(view.run())]
    await view.wait_synced(2.0)
    fake = FakeCell(router_addr, handler, router)
    try:
        yield fake
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for timer in handler._timers:
            timer.cancel()
        await server.stop()
        await fake.stop_router()
        client.close()
