"""The cell scheduler's RPC surface (topic `scheduler`)."""
from __future__ import annotations

from typing import Any

from cells.context import RequestContext
from cells.rpc.principal import CONDUCTOR, callers
from cells.rpc.wire import NORMAL, Method, surface
from cells.rpcapi import Caller, list_reply

TOPIC = "scheduler"
SURFACE = surface(Method("select_destinations", NORMAL, callers=callers(CONDUCTOR)))
M = SURFACE


class SchedulerAPI:
    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def select_destinations(self, ctx: RequestContext, request_spec: dict[str, Any],
                                  instance_uuids: list[str], exclude_hosts: list[str],
                                  alternates: int = 2) -> list[dict[str, Any]]:
        """For each instance: {"instance_uuid", "host", "alternates": [host, ...]}.
        The chosen host's resources are claimed in the same transaction that picks it;
        alternates are not claimed. Raises NoValidHost when nothing fits."""
        return list_reply(await self.caller.call(TOPIC, M["select_destinations"],
                                      {"request_spec": request_spec, "instance_uuids": instance_uuids,
                                       "exclude_hosts": exclude_hosts, "alternates": alternates}, ctx))
