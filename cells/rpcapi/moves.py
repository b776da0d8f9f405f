"""Move RPC (issue 8): resize, cold migration, evacuation. Appended to the conductor's
and the compute worker's surfaces at RPC version 1.1: a caller checks the pin first
(a compute of the previous release does not have them: it is not a move destination).

Conductor (from the API): move_instance (resize | migrate), confirm_move, revert_move,
evacuate: each checks, records and returns the record at once; the conductor runs the
rest (cells/conductor/flows/moves.py, evacuate.py).
Compute (from the conductor, calls: the conductor drives every step):
  prep_move (source: power the guest off, keep it), finish_move (destination: make the
  guest with the new flavor), confirm_move (source: destroy its copy), revert_move
  (destination: destroy its copy), finish_revert (source: start the guest again),
  rebuild_evacuated (destination: a new guest from the image). Each returns the power state.
"""
from __future__ import annotations

from typing import Any

from cells.context import RequestContext
from cells.rpc.wire import NORMAL, SLOW, Method
from cells.rpcapi import Caller

MOVES_VERSION = "1.1"
CONDUCTOR_METHODS = (
    Method("move_instance", NORMAL, version=MOVES_VERSION),
    Method("confirm_move", NORMAL, version=MOVES_VERSION),
    Method("revert_move", NORMAL, version=MOVES_VERSION),
    Method("evacuate", NORMAL, version=MOVES_VERSION),
)
COMPUTE_METHODS = (
    Method("prep_move", SLOW, version=MOVES_VERSION),
    Method("finish_move", SLOW, version=MOVES_VERSION),
    Method("confirm_move", NORMAL, retry_safe=True, version=MOVES_VERSION),
    Method("revert_move", NORMAL, retry_safe=True, version=MOVES_VERSION),
    Method("finish_revert", SLOW, version=MOVES_VERSION),
    Method("rebuild_evacuated", SLOW, version=MOVES_VERSION),
)
_C = {m.name: m for m in CONDUCTOR_METHODS}
_K = {m.name: m for m in COMPUTE_METHODS}


class MoveConductorAPI:
    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def move_instance(self, ctx: RequestContext, uuid: str, action: str,
                            flavor: dict[str, Any] | None = None) -> dict[str, Any]:
        """action resize (with the new flavor) or migrate (admin); 400 bad flavor, 409 wrong state."""
        return await self.caller.call("conductor", _C["move_instance"],
                                      {"uuid": uuid, "action": action, "flavor": flavor}, ctx)

    async def confirm_move(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        return await self.caller.call("conductor", _C["confirm_move"], {"uuid": uuid}, ctx)

    async def revert_move(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        return await self.caller.call("conductor", _C["revert_move"], {"uuid": uuid}, ctx)

    async def evacuate(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        return await self.caller.call("conductor", _C["evacuate"], {"uuid": uuid}, ctx)


class MoveComputeAPI:
    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def _call(self, method: str, ctx: RequestContext, host: str, instance: dict[str, Any],
                    migration: dict[str, Any]) -> int:
        return int(await self.caller.call(f"compute.{host}", _K[method],
                                          {"instance": instance, "migration": migration}, ctx) or 0)

    async def prep_move(self, ctx: RequestContext, host: str, instance: dict[str, Any],
                        migration: dict[str, Any]) -> int:
        return await self._call("prep_move", ctx, host, instance, migration)

    async def finish_move(self, ctx: RequestContext, host: str, instance: dict[str, Any],
                          migration: dict[str, Any]) -> int:
        return await self._call("finish_move", ctx, host, instance, migration)

    async def confirm_move(self, ctx: RequestContext, host: str, instance: dict[str, Any],
                           migration: dict[str, Any]) -> int:
        return await self._call("confirm_move", ctx, host, instance, migration)

    async def revert_move(self, ctx: RequestContext, host: str, instance: dict[str, Any],
                          migration: dict[str, Any]) -> int:
        return await self._call("revert_move", ctx, host, instance, migration)

    async def finish_revert(self, ctx: RequestContext, host: str, instance: dict[str, Any],
                            migration: dict[str, Any]) -> int:
        return await self._call("finish_revert", ctx, host, instance, migration)

    async def rebuild_evacuated(self, ctx: RequestContext, host: str, instance: dict[str, Any],
                                migration: dict[str, Any]) -> int:
        return await self._call("rebuild_evacuated", ctx, host, instance, migration)
