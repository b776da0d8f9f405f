"""A compute worker's RPC surface (topic `compute.<host>`)."""
from __future__ import annotations

from typing import Any

from cells.context import RequestContext
from cells.rpc.wire import NORMAL, Method, surface
from cells.rpcapi import Caller

SURFACE = surface(
    Method("build_and_run_instance", NORMAL, cast=True),
    Method("terminate_instance", NORMAL, cast=True),
)
M = SURFACE


def topic(host: str) -> str:
    return f"compute.{host}"


class ComputeAPI:
    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def build_and_run_instance(self, ctx: RequestContext, host: str, instance: dict[str, Any]) -> None:
        await self.caller.cast(topic(host), M["build_and_run_instance"], {"instance": instance}, ctx,
                               key=f"build-{instance['uuid']}-{host}")

    async def terminate_instance(self, ctx: RequestContext, host: str, instance: dict[str, Any]) -> None:
        await self.caller.cast(topic(host), M["terminate_instance"], {"instance": instance}, ctx,
                               key=f"terminate-{instance['uuid']}")
