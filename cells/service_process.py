"""The shell every cell-side service process runs in.

It binds the service's ROUTER at its fixed address, joins the cell directory
(register + heartbeat), runs the handler's background work in one TaskGroup,
and on SIGTERM/SIGINT shuts down in reverse order (structured concurrency).

A handler may define:
  async def start(self, service: Service) -> None   # before serving
  async def background(self) -> None                  # runs in the TaskGroup
  async def stop(self) -> None                        # after serving stops
"""
from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from typing import Any

from cells.config import ClusterConfig, ServiceSpec
from cells.context import RequestContext
from cells.objects import versions
from cells.rpc import security, wire
from cells.rpc.beat_group import GroupView
from cells.rpc.client import RpcClient
from cells.rpc.directory import DirectoryView, Member
from cells.rpc.principal import principals_of
from cells.rpc.server import RpcServer
from cells.rpc.transport import CurveKeys

LOG = logging.getLogger(__name__)
CODE_VERSION = versions.RELEASE  # the release; what each surface and object speaks: cells/objects/versions.py


class Service:
    def __init__(self, cluster: ClusterConfig, spec: ServiceSpec, handler: Any,
                 surface: dict[str, wire.Method], topics: tuple[str, ...], beat_group: GroupView | None = None) -> None:
        """`beat_group`: the process's hosts beat together and share one table (cells/rpc/beat_group.py)."""
        self.cluster = cluster
        self.spec = spec
        self.handler = handler
        self.cell = cluster.cell(spec.cell) if spec.cell else None
        keys = process_keys(cluster, spec.id)
        self.client = RpcClient(keys)
        self.server = RpcServer(spec.bind, handler, surface, keys, cell=spec.cell)
        speaks = versions.advertised(surface)  # in every heartbeat: peers pin to the lowest they see
        # incarnation: peers tell a restart (same id and address) apart and abandon what the dead process held
        meta: dict[str, Any] = {"incarnation": uuid.uuid4().hex}
        if speaks is not None:
            meta["versions"] = speaks
        me = Member(id=spec.id, address=spec.bind, topics=topics, host=spec.host, service=spec.kind,
                    version=versions.local.release, public_key=keys.public if keys else None, meta=meta)
        router = self.cell.router if self.cell else spec.bind
        self.view: DirectoryView = beat_group.join(self.client, me) if beat_group is not None else DirectoryView(
            self.client, router, me, cluster.heartbeat_interval, cluster.router_key(self.cell.path) if self.cell else None)

    async def call(self, topic: str, method: wire.Method, args: dict[str, Any], ctx: RequestContext,
                   timeout: float | None = None) -> Any:
        return await self.client.call(self.view, topic, method, args, ctx, timeout)

    async def cast(self, topic: str, method: wire.Method, args: dict[str, Any], ctx: RequestContext,
                   key: str | None = None) -> None:
        await self.client.cast(self.view, topic, method, args, ctx, key)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or stop_on_signals()
        if hasattr(self.handler, "start"):
            await self.handler.start(self)
        await self.server.start()
        LOG.info("%s serving on %s", self.spec.id, self.spec.bind)
        metrics_runner = None
        try:
            if self.spec.options.get("metrics"):  # cluster.yaml hosts.<host>.metrics_port
                from cells import metrics
                mhost, _, mport = str(self.spec.options["metrics"]).rpartition(":")
                metrics_runner = await metrics.start_listener(mhost.strip("[]"), int(mport))
                LOG.info("%s metrics on http://%s/metrics", self.spec.id, self.spec.options["metrics"])
            async with asyncio.TaskGroup() as tg:
                beat = tg.create_task(self.view.run())
                work = tg.create_task(self.handler.background()) if hasattr(self.handler, "background") else None
                await stop.wait()
                LOG.info("%s stopping", self.spec.id)
                await self.view.leave()
                for task in (work, beat):
                    if task is not None:
                        task.cancel()
        finally:
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            await self.server.stop()
            if hasattr(self.handler, "stop"):
                await self.handler.stop()
            self.client.close()


def process_keys(cluster: ClusterConfig, owner: str) -> CurveKeys | None:
    """This process's CURVE keys, with its ZAP allowlist running; None in plaintext dev mode."""
    if not cluster.curve:
        return None
    keys = security.load_keys(cluster.state_dir, owner)
    security.start_allowlist(principals_of(cluster))
    return keys


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
