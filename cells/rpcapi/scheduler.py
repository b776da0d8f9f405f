"""The cell scheduler's RPC surface (topic `scheduler`)."""
from __future__ import annotations

from typing import Any

from cells.context import RequestContext
from cells.rpc.principal import CONDUCTOR, callers
from cells.rpc.wire import NORMAL, Method, surface
from cells.rpcapi import Caller, list_reply

TOPIC = "scheduler"
# retry-safe: a claim is per instance uuid and claiming again releases the previous one
# (cells/db/claims.py try_claim), so asking again after a scheduler died never holds two
SURFACE = surface(Method("select_destinations", NORMAL, retry_safe=True, callers=callers(CONDUCTOR)))
M = SURFACE


class SchedulerAPI:
    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def select_destinations(self, ctx: RequestContext, request_spec: dict[str, Any],
                                  instance_uuids: list[str], exclude_hosts: list[str]) -> list[dict[str, Any]]:
        """For each instance: {"instance_uuid", "host"}. The chosen host's resources are claimed in
        the same transaction that picks it. Raises NoValidHost when nothing fits. A build that fails
        on its host asks again with the hosts it tried in `exclude_hosts` (Nova's retry)."""
        return list_reply(await self.caller.call(TOPIC, M["select_destinations"],
                                      {"request_spec": request_spec, "instance_uuids": instance_uuids,
                                       "exclude_hosts": exclude_hosts}, ctx))
