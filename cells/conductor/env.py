"""What every conductor flow needs: the cell DB, the service (RPC + directory view),
the cell path, and a way to start background work in the service's TaskGroup."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cells import errors
from cells.context import RequestContext
from cells.db import instances as idb
from cells.db.engine import Database
from cells.db.fast import AnyRow
from cells.lifecycle import State
from cells.objects.records import InstanceRecord
from cells.rpc.liveness import ALIVE, DEAD, DEFAULT_GRACE, FENCED, SUSPECT, HostLiveness
from cells.rpcapi.compute import topic as compute_topic
from cells.service_process import Service

LOG = logging.getLogger(__name__)
T = TypeVar("T")
Spawn = Callable[[Coroutine[Any, Any, None]], None]
# a call its compute did not answer because it went away: killed (and restarted), or suspect
HOST_WENT_AWAY = (errors.MemberGone, errors.RpcTimeout, errors.NoLiveMember)
HOST_SENDS = 4  # sends of one step to a host that keeps coming back without answering
HOST_POLL = 0.5  # seconds between looks at a suspect host's state


@dataclass
class FlowEnv:
    db: Database
    service: Service
    cell: str
    conductor_id: str  # this conductor's member id (owner of the build flows it runs)
    spawn: Spawn  # run a coroutine in the conductor's TaskGroup (errors are logged, never fatal)
    allow_resize_to_same_host: bool = False  # the cell's option (cluster.yaml), as Nova's
    max_attempts: int = 3  # hosts one build may try (cluster.yaml max_attempts)
    shelved_offload_time: int = 0  # cluster.yaml: seconds before a shelved server is offloaded (-1 never)
    liveness: HostLiveness = field(default_factory=lambda: HostLiveness(DEFAULT_GRACE, time.monotonic()))

    def host_alive(self, host: str) -> bool:
        """Usable now: its compute is in the routing table and it is not fenced or marked down."""
        return self.host_state(host) == ALIVE

    def host_state(self, host: str) -> str:
        """alive | suspect | dead | fenced (cells/rpc/liveness.py), by the routing table as it is now."""
        present = bool(self.service.view.members(compute_topic(host)))
        return self.liveness.state(host, time.monotonic(), present)

    def host_dead(self, host: str) -> bool:
        """Only a dead host's work may be recovered destructively (local deletes, evacuation)."""
        return self.host_state(host) == DEAD

    def record(self, row: AnyRow | Mapping[str, Any]) -> InstanceRecord:
        return idb.to_record(row, self.cell)


def state_of(row: AnyRow) -> State:
    return State(row.vm_state, row.task_state, row.power_state)


def state_values(state: State) -> dict[str, Any]:
    return {"vm_state": state.vm_state, "task_state": state.task_state, "power_state": state.power_state}


def background_ctx(ctx: RequestContext) -> RequestContext:
    """Background steps outlive the API call's deadline; keep the request id for tracing."""
    return dataclasses.replace(ctx, deadline=None)


async def through_host_restart(env: FlowEnv, host: str, what: str, step: Callable[[], Awaitable[T]]) -> T:
    """Run `step`, a call to `host`'s compute that is idempotent there; when the compute went away
    before answering (killed and restarted by its supervisor, or suspect: frozen, partitioned) it is
    sent again once the host is back, as Nova's conductor drives an attachment or a move again when
    its host returns. Given up (for the caller to roll back) only once the host is dead or fenced
    (ComputeHostDead: a retry-safe call would otherwise wait out its whole deadline for a member that
    is not coming back), or after HOST_SENDS sends it came back from without answering."""
    sends = 0
    while True:
        sends += 1
        try:
            return await _unless_host_dies(env, host, what, step)
        except HOST_WENT_AWAY as exc:
            while (state := env.host_state(host)) == SUSPECT:
                await asyncio.sleep(HOST_POLL)
            if state != ALIVE:
                raise errors.ComputeHostDead(host=host, state=state, what=what) from exc
            if sends >= HOST_SENDS:
                raise
            LOG.warning("%s: %s did not answer (%s): sending it again", what, host, exc.message)


async def _unless_host_dies(env: FlowEnv, host: str, what: str, step: Callable[[], Awaitable[T]]) -> T:
    """`step`, cancelled as soon as `host` is dead or fenced."""
    task = asyncio.ensure_future(step())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HOST_POLL)
            if done:
                return task.result()
            state = env.host_state(host)
            if state in (DEAD, FENCED):
                raise errors.ComputeHostDead(host=host, state=state, what=what)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
