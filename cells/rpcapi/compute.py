"""A compute worker's RPC surface (topic `compute.<host>`)."""
from __future__ import annotations

from typing import Any

from cells.context import RequestContext
from cells.rpc.principal import CONDUCTOR, NETWORK, OPERATOR, callers
from cells.rpc.wire import FAST, NORMAL, Method, surface
from cells.rpcapi import Caller
from cells.rpcapi.move_methods import COMPUTE_METHODS as MOVE_METHODS
from cells.rpcapi.network import AGENT_REFRESH_VERSION
from cells.rpcapi.volume import COMPUTE_METHODS as VOLUME_METHODS

INVENTORY_VERSION = "1.5"  # guest_inventory (release 5)
INSTANCE = {"instance": "Instance"}  # a versioned object (cells/objects/versions.py)
SURFACE = surface(
    Method("build_and_run_instance", NORMAL, cast=True, callers=callers(CONDUCTOR), args=INSTANCE),
    Method("terminate_instance", NORMAL, cast=True, callers=callers(CONDUCTOR), args=INSTANCE),
    # user actions on a server (stop, start, reboot, reboot_hard, pause, unpause, suspend, resume,
    # rebuild: cells/lifecycle.py USER_ACTIONS); the compute reports back with instance_action_done
    Method("run_instance_action", NORMAL, cast=True, callers=callers(CONDUCTOR), args=INSTANCE),
    Method("get_console_output", NORMAL, retry_safe=True, callers=callers(CONDUCTOR)),
    # the network controller: something this host's guests depend on changed (cells/network/fanout.py)
    Method("refresh_network", FAST, cast=True, version=AGENT_REFRESH_VERSION, callers=callers(NETWORK)),
    # the guests this host's hypervisor holds (an operator's check that none outlived its server:
    # the kill matrix's leak report, tools/chaos.py)
    Method("guest_inventory", FAST, retry_safe=True, version=INVENTORY_VERSION, callers=callers(OPERATOR)),
    # volume hot-plug (issue 6): cells/rpcapi/volume.py ComputeVolumeAPI
    *VOLUME_METHODS,
    # moves (issue 8), RPC 1.1: cells/rpcapi/move_methods.py MoveComputeAPI
    *MOVE_METHODS,
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

    async def run_instance_action(self, ctx: RequestContext, host: str, instance: dict[str, Any], action: str,
                                  args: dict[str, Any]) -> None:
        await self.caller.cast(topic(host), M["run_instance_action"],
                               {"instance": instance, "action": action, "args": args}, ctx,
                               key=f"{action}-{instance['uuid']}-{instance.get('updated_at')}")

    async def refresh_network(self, ctx: RequestContext, host: str) -> None:
        await self.caller.cast(topic(host), M["refresh_network"], {}, ctx)

    async def get_console_output(self, ctx: RequestContext, host: str, uuid: str, length: int | None) -> str:
        """The guest's serial console log: the last `length` lines (None: all of it, up to a size cap)."""
        return str(await self.caller.call(topic(host), M["get_console_output"], {"uuid": uuid, "length": length},
                                          ctx))
