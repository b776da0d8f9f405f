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
Disk copy (RPC 1.2, DISK_COPY_VERSION): finish_move takes `disk_source`, the host to copy the
  stopped guest's disks from, and then answers {power_state, files, bytes}; the conductor
  sends it only when both computes speak 1.2 (else the disk is made from the image, as
  before). The destination reads them from the source, compute to compute: disk_info
  (name, size, sha256 of each file) and read_disk (one chunk), node/compute/disks.py.
"""
from __future__ import annotations

from typing import Any

from cells import errors
from cells.context import RequestContext
from cells.objects.records import InstanceRecord
from cells.rpc.principal import API, COMPUTE, CONDUCTOR, callers
from cells.rpc.wire import NORMAL, SLOW, Method
from cells.rpcapi import Caller, instance_reply

MOVES_VERSION = "1.1"
PLACEMENT_VERSION = "1.6"  # move_instance takes the placement the API's aggregates allow
DISK_COPY_VERSION = "1.2"
MOVE_ARGS = {"instance": "Instance", "migration": "Migration"}  # versioned objects (cells/objects/versions.py)
CONDUCTOR_METHODS = (
    Method("move_instance", NORMAL, version=PLACEMENT_VERSION, callers=callers(API)),
    Method("confirm_move", NORMAL, version=MOVES_VERSION, callers=callers(API)),
    Method("revert_move", NORMAL, version=MOVES_VERSION, callers=callers(API)),
    Method("evacuate", NORMAL, version=MOVES_VERSION, callers=callers(API)),
)
COMPUTE_METHODS = (
    Method("prep_move", SLOW, retry_safe=True, version=MOVES_VERSION, callers=callers(CONDUCTOR), args=MOVE_ARGS),
    Method("finish_move", SLOW, retry_safe=True, version=MOVES_VERSION, callers=callers(CONDUCTOR), args=MOVE_ARGS),
    Method("confirm_move", NORMAL, retry_safe=True, version=MOVES_VERSION,
           callers=callers(CONDUCTOR), args=MOVE_ARGS),
    Method("revert_move", NORMAL, retry_safe=True, version=MOVES_VERSION,
           callers=callers(CONDUCTOR), args=MOVE_ARGS),
    Method("finish_revert", SLOW, retry_safe=True, version=MOVES_VERSION, callers=callers(CONDUCTOR), args=MOVE_ARGS),
    Method("rebuild_evacuated", SLOW, version=MOVES_VERSION, callers=callers(CONDUCTOR), args=MOVE_ARGS),
    Method("disk_info", NORMAL, retry_safe=True, version=DISK_COPY_VERSION, callers=callers(COMPUTE)),
    Method("read_disk", NORMAL, retry_safe=True, version=DISK_COPY_VERSION, callers=callers(COMPUTE)),
)
_C = {m.name: m for m in CONDUCTOR_METHODS}
_K = {m.name: m for m in COMPUTE_METHODS}


class MoveConductorAPI:
    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def move_instance(self, ctx: RequestContext, uuid: str, action: str, flavor: dict[str, Any] | None = None,
                            placement: dict[str, list[str]] | None = None) -> InstanceRecord:
        """action resize (with the new flavor) or migrate (admin); 400 bad flavor, 409 wrong state.
        `placement`: the hosts the aggregates allow ({only_hosts?, excluded_hosts?}; None: as at boot)."""
        return instance_reply(await self.caller.call("conductor", _C["move_instance"],
                                      {"uuid": uuid, "action": action, "flavor": flavor, "placement": placement},
                                      ctx))

    async def confirm_move(self, ctx: RequestContext, uuid: str) -> InstanceRecord:
        return instance_reply(await self.caller.call("conductor", _C["confirm_move"], {"uuid": uuid}, ctx))

    async def revert_move(self, ctx: RequestContext, uuid: str) -> InstanceRecord:
        return instance_reply(await self.caller.call("conductor", _C["revert_move"], {"uuid": uuid}, ctx))

    async def evacuate(self, ctx: RequestContext, uuid: str) -> InstanceRecord:
        return instance_reply(await self.caller.call("conductor", _C["evacuate"], {"uuid": uuid}, ctx))


class MoveComputeAPI:
    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def _call(self, method: str, ctx: RequestContext, host: str, instance: InstanceRecord,
                    migration: dict[str, Any]) -> int:
        return int(await self.caller.call(f"compute.{host}", _K[method],
                                          {"instance": instance, "migration": migration}, ctx) or 0)

    async def prep_move(self, ctx: RequestContext, host: str, instance: InstanceRecord,
                        migration: dict[str, Any]) -> int:
        return await self._call("prep_move", ctx, host, instance, migration)

    async def finish_move(self, ctx: RequestContext, host: str, instance: InstanceRecord,
                          migration: dict[str, Any]) -> int:
        return await self._call("finish_move", ctx, host, instance, migration)

    async def finish_move_copying(self, ctx: RequestContext, host: str, instance: InstanceRecord,
                                  migration: dict[str, Any], source: str) -> dict[str, int]:
        """finish_move with the guest's disks copied from `source` (both must speak
        DISK_COPY_VERSION): {power_state, files, bytes}."""
        done = await self.caller.call(f"compute.{host}", _K["finish_move"],
                                      {"instance": instance, "migration": migration, "disk_source": source}, ctx)
        if not isinstance(done, dict):
            raise errors.RpcError(reason=f"compute {host} answered finish_move with {done!r}, not what it copied")
        return {k: int(done.get(k) or 0) for k in ("power_state", "files", "bytes")}

    async def confirm_move(self, ctx: RequestContext, host: str, instance: InstanceRecord,
                           migration: dict[str, Any]) -> int:
        return await self._call("confirm_move", ctx, host, instance, migration)

    async def revert_move(self, ctx: RequestContext, host: str, instance: InstanceRecord,
                          migration: dict[str, Any]) -> int:
        return await self._call("revert_move", ctx, host, instance, migration)

    async def finish_revert(self, ctx: RequestContext, host: str, instance: InstanceRecord,
                            migration: dict[str, Any]) -> int:
        return await self._call("finish_revert", ctx, host, instance, migration)

    async def rebuild_evacuated(self, ctx: RequestContext, host: str, instance: InstanceRecord,
                                migration: dict[str, Any]) -> int:
        return await self._call("rebuild_evacuated", ctx, host, instance, migration)


class DiskCopyAPI:
    """Compute to compute (RPC 1.2): a move's destination reads the stopped guest's disks
    from the source (node/compute/disks.py)."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def disk_info(self, ctx: RequestContext, host: str, uuid: str) -> list[dict[str, Any]]:
        """[{name, size, sha256}] of the guest's disk files on `host` (409 while it runs)."""
        return list(await self.caller.call(f"compute.{host}", _K["disk_info"], {"uuid": uuid}, ctx) or [])

    async def read_disk(self, ctx: RequestContext, host: str, uuid: str, name: str, offset: int,
                        length: int) -> bytes:
        """At most `length` bytes of disk file `name` from `offset`."""
        data = await self.caller.call(f"compute.{host}", _K["read_disk"],
                                      {"uuid": uuid, "name": name, "offset": offset, "length": length}, ctx)
        if not isinstance(data, bytes):
            raise errors.RpcError(reason=f"compute {host} answered read_disk with {type(data).__name__}, not bytes")
        return data
