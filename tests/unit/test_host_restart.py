"""env.through_host_restart: a step on a compute that went away is sent again once the host is back
(killed and restarted, or suspect for a while), and given up only when the host is dead or keeps
coming back without answering (or, waiting on a dead host, cancelled). The directory view is a fake
(the routing table is all it reads)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from cells import errors
from cells.conductor.env import HOST_SENDS, FlowEnv, through_host_restart
from cells.rpc.liveness import HostLiveness

HOST = "node1"


@dataclass
class View:
    present: set[str] = field(default_factory=lambda: {HOST})

    def members(self, topic: str) -> list[str]:
        return [topic] if topic.removeprefix("compute.") in self.present else []


@dataclass
class Service:
    view: View = field(default_factory=View)


def make_env(grace: float = 60.0) -> tuple[FlowEnv, View]:
    service = Service()
    env = FlowEnv(db=cast(Any, None), service=cast(Any, service), cell="cell1", conductor_id="cell1/conductor",
                  spawn=lambda coro: coro.close(), liveness=HostLiveness(grace, time.monotonic()))
    return env, service.view


class Step:
    """Fails with the given errors in turn, then answers "done"; counts its sends."""

    def __init__(self, *failures: errors.CellcloudError) -> None:
        self.failures = list(failures)
        self.sends = 0

    async def __call__(self) -> str:
        self.sends += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


async def test_a_step_whose_compute_restarted_is_sent_again() -> None:
    env, _ = make_env()
    step = Step(errors.MemberGone(member="cell1/compute/node1", method="attach_volume"))
    assert await through_host_restart(env, HOST, "attach", step) == "done"
    assert step.sends == 2


async def test_a_suspect_host_is_waited_for_and_the_step_sent_once_it_is_back() -> None:
    env, view = make_env()
    view.present.clear()  # left the routing table: suspect (the grace has not passed)
    step = Step(errors.NoLiveMember(topic="compute.node1"))
    task = asyncio.ensure_future(through_host_restart(env, HOST, "attach", step))
    await asyncio.sleep(0.2)
    assert not task.done() and step.sends == 1  # waiting, not failed and not resent
    view.present.add(HOST)
    assert await asyncio.wait_for(task, 5) == "done" and step.sends == 2


async def test_the_step_fails_once_the_host_is_dead() -> None:
    env, view = make_env()
    view.present.clear()
    step = Step(errors.RpcTimeout(method="prep_move", topic="compute.node1", timeout=300))
    task = asyncio.ensure_future(through_host_restart(env, HOST, "resize", step))
    await asyncio.sleep(0.1)
    env.liveness.forced_down.add(HOST)  # `cellctl host down`: dead
    with pytest.raises(errors.ComputeHostDead):
        await asyncio.wait_for(task, 5)
    assert step.sends == 1


async def test_a_step_still_waiting_is_given_up_when_its_host_dies() -> None:
    """A retry-safe call would wait out its whole deadline for a member that never comes back:
    the step is cancelled as soon as the host is dead."""
    env, view = make_env()
    cancelled = asyncio.Event()

    async def hangs() -> str:
        try:
            await asyncio.Future()  # waiting for the dead compute's restart
        finally:
            cancelled.set()
        return "never"
    task = asyncio.ensure_future(through_host_restart(env, HOST, "resize", hangs))
    await asyncio.sleep(0.1)
    view.present.clear()
    env.liveness.forced_down.add(HOST)
    with pytest.raises(errors.ComputeHostDead):
        await asyncio.wait_for(task, 5)
    assert cancelled.is_set()


async def test_a_host_that_keeps_answering_nothing_is_given_up_after_host_sends() -> None:
    env, _ = make_env()
    step = Step(*[errors.RpcTimeout(method="finish_move", topic="compute.node1", timeout=1)] * (HOST_SENDS + 1))
    with pytest.raises(errors.RpcTimeout):
        await through_host_restart(env, HOST, "resize", step)
    assert step.sends == HOST_SENDS


async def test_a_refusal_is_not_sent_again() -> None:
    env, _ = make_env()
    step = Step(errors.VolumeAttachFailed(volume_id="v", instance_id="i", reason="no such disk"))
    with pytest.raises(errors.VolumeAttachFailed):
        await through_host_restart(env, HOST, "attach", step)
    assert step.sends == 1
