"""A compute worker's RPC surface (topic `compute.<host>`)."""
from __future__ import annotations

from typing import Any

from cells import errors
from cells.context import RequestContext
from cells.objects.records import InstanceRecord
from cells.rpc.principal import API, CONDUCTOR, NETWORK, OPERATOR, callers
from cells.rpc.wire import FAST, NORMAL, SLOW, Method, surface
from cells.rpcapi import Caller
from cells.rpcapi.move_methods import COMPUTE_METHODS as MOVE_METHODS
from cells.rpcapi.network import AGENT_REFRESH_VERSION
from cells.rpcapi.volume import COMPUTE_METHODS as VOLUME_METHODS

INVENTORY_VERSION = "1.5"  # guest_inventory (release 5)
SNAPSHOT_VERSION = "1.5"  # make/read/drop_snapshot (release 5, issue 16)
CONSOLE_VERSION = "1.5"
INTERFACE_VERSION = "1.5"  # attach/detach_interface (issue 16)  # console_* (release 5, issue 16)
DIAGNOSTICS_VERSION = "1.6"  # get_diagnostics (issue 16)
SHARED_NETWORK_HOST_VERSION = "1.6"  # sync_network (issue 17: a network host that runs a compute)
VNC_CONSOLE_VERSION = "1.6"  # console_open takes the console_type its token was made for (serial, novnc)
INSTANCE = {"instance": "Instance"}  # a versioned object (cells/objects/versions.py)
SURFACE = surface(
    Method("build_and_run_instance", NORMAL, cast=True, callers=callers(CONDUCTOR), args=INSTANCE),
    Method("terminate_instance", NORMAL, cast=True, callers=callers(CONDUCTOR), args=INSTANCE),
    # user actions on a server (stop, start, reboot, reboot_hard, pause, unpause, suspend, resume,
    # rebuild: cells/lifecycle.py USER_ACTIONS); the compute reports back with instance_action_done
    Method("run_instance_action", NORMAL, cast=True, callers=callers(CONDUCTOR), args=INSTANCE),
    Method("get_console_output", NORMAL, retry_safe=True, callers=callers(CONDUCTOR)),
    Method("get_diagnostics", NORMAL, retry_safe=True, version=DIAGNOSTICS_VERSION, callers=callers(CONDUCTOR)),
    # os-interface (issue 16): the conductor plugs or unplugs a port's VIF into the guest
    Method("attach_interface", NORMAL, retry_safe=True, version=INTERFACE_VERSION, callers=callers(CONDUCTOR)),
    Method("detach_interface", NORMAL, retry_safe=True, version=INTERFACE_VERSION, callers=callers(CONDUCTOR)),
    # the network controller: something this host's guests depend on changed (cells/network/fanout.py)
    Method("refresh_network", FAST, cast=True, version=AGENT_REFRESH_VERSION, callers=callers(NETWORK)),
    # the network controller whose network host is this compute's host: the agent, the host's one owner of
    # its devices, syncs the host's whole configuration (routers included) before answering
    Method("sync_network", NORMAL, version=SHARED_NETWORK_HOST_VERSION, callers=callers(NETWORK)),
    # the guests this host's hypervisor holds (an operator's check that none outlived its server:
    # the kill matrix's leak report, tools/chaos.py)
    Method("guest_inventory", FAST, retry_safe=True, version=INVENTORY_VERSION, callers=callers(OPERATOR)),
    # createImage (issue 16): the API, once the conductor set the server's task, takes the guest's disk
    # into its image store (node/compute/server_snapshots.py; api/compute/server_snapshots.py)
    Method("make_snapshot", SLOW, version=SNAPSHOT_VERSION, callers=callers(API)),
    Method("read_snapshot", NORMAL, retry_safe=True, version=SNAPSHOT_VERSION, callers=callers(API)),
    Method("drop_snapshot", NORMAL, retry_safe=True, version=SNAPSHOT_VERSION, callers=callers(API)),
    # remote consoles (issue 16): the API's websocket proxies (api/compute/remote_consoles.py) get a token
    # for one server, project and console type, then relay the guest's serial console or VNC display
    # (node/compute/remote_consoles.py)
    Method("console_authorize", FAST, version=CONSOLE_VERSION, callers=callers(API)),
    Method("console_open", FAST, version=VNC_CONSOLE_VERSION, callers=callers(API)),
    Method("console_read", FAST, version=CONSOLE_VERSION, callers=callers(API)),
    Method("console_write", FAST, version=CONSOLE_VERSION, callers=callers(API)),
    Method("console_close", FAST, retry_safe=True, version=CONSOLE_VERSION, callers=callers(API)),
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

    async def build_and_run_instance(self, ctx: RequestContext, host: str, instance: InstanceRecord) -> None:
        await self.caller.cast(topic(host), M["build_and_run_instance"], {"instance": instance}, ctx,
                               key=f"build-{instance['uuid']}-{host}")

    async def attach_interface(self, ctx: RequestContext, host: str, instance_uuid: str,
                               vif: dict[str, Any]) -> None:
        await self.caller.call(topic(host), M["attach_interface"], {"instance_uuid": instance_uuid, "vif": vif}, ctx)

    async def detach_interface(self, ctx: RequestContext, host: str, instance_uuid: str,
                               vif: dict[str, Any]) -> None:
        await self.caller.call(topic(host), M["detach_interface"], {"instance_uuid": instance_uuid, "vif": vif}, ctx)

    async def terminate_instance(self, ctx: RequestContext, host: str, instance: InstanceRecord) -> None:
        await self.caller.cast(topic(host), M["terminate_instance"], {"instance": instance}, ctx,
                               key=f"terminate-{instance['uuid']}")

    async def run_instance_action(self, ctx: RequestContext, host: str, instance: InstanceRecord, action: str,
                                  args: dict[str, Any]) -> None:
        await self.caller.cast(topic(host), M["run_instance_action"],
                               {"instance": instance, "action": action, "args": args}, ctx,
                               key=f"{action}-{instance['uuid']}-{instance.get('updated_at')}")

    async def refresh_network(self, ctx: RequestContext, host: str) -> None:
        await self.caller.cast(topic(host), M["refresh_network"], {}, ctx)

    async def sync_network(self, ctx: RequestContext, host: str) -> None:
        """The host's agent syncs its whole network configuration now; returns once it is applied."""
        await self.caller.call(topic(host), M["sync_network"], {}, ctx)

    async def get_console_output(self, ctx: RequestContext, host: str, uuid: str, length: int | None) -> str:
        """The guest's serial console log: the last `length` lines (None: all of it, up to a size cap)."""
        return str(await self.caller.call(topic(host), M["get_console_output"], {"uuid": uuid, "length": length},
                                          ctx))

    async def get_diagnostics(self, ctx: RequestContext, host: str, uuid: str) -> dict[str, Any]:
        """The guest's diagnostics in Nova's standard format, without uptime and config_drive."""
        found = await self.caller.call(topic(host), M["get_diagnostics"], {"uuid": uuid}, ctx)
        if not isinstance(found, dict):
            raise errors.RpcError(reason=f"compute {host} answered get_diagnostics with {type(found).__name__}")
        return found

    async def make_snapshot(self, ctx: RequestContext, host: str, uuid: str, image_id: str) -> dict[str, Any]:
        """The guest's disk now as one file on its host: {size, sha256, disk_format}."""
        made = await self.caller.call(topic(host), M["make_snapshot"], {"uuid": uuid, "image_id": image_id}, ctx)
        if not isinstance(made, dict):
            raise errors.RpcError(reason=f"compute {host} answered make_snapshot with {type(made).__name__}")
        return made

    async def read_snapshot(self, ctx: RequestContext, host: str, uuid: str, image_id: str, offset: int,
                            length: int) -> bytes:
        data = await self.caller.call(topic(host), M["read_snapshot"],
                                      {"uuid": uuid, "image_id": image_id, "offset": offset, "length": length}, ctx)
        if not isinstance(data, bytes):
            raise errors.RpcError(reason=f"compute {host} answered read_snapshot with {type(data).__name__}")
        return data

    async def drop_snapshot(self, ctx: RequestContext, host: str, uuid: str, image_id: str) -> None:
        await self.caller.call(topic(host), M["drop_snapshot"], {"uuid": uuid, "image_id": image_id}, ctx)

    async def console_authorize(self, ctx: RequestContext, host: str, uuid: str, project: str,
                                console_type: str) -> str:
        """A console token for the server (secret: only its hash stays on the host)."""
        return _text(host, "console_authorize", await self.caller.call(
            topic(host), M["console_authorize"],
            {"uuid": uuid, "project": project, "console_type": console_type}, ctx))

    async def console_open(self, ctx: RequestContext, host: str, uuid: str, project: str, secret: str,
                           console_type: str) -> str:
        """The session id of the guest's console of `console_type`, opened for the holder of `secret`."""
        return _text(host, "console_open", await self.caller.call(
            topic(host), M["console_open"],
            {"uuid": uuid, "project": project, "secret": secret, "console_type": console_type}, ctx))

    async def console_read(self, ctx: RequestContext, host: str, uuid: str, session: str, wait: float) -> bytes:
        data = await self.caller.call(topic(host), M["console_read"], {"uuid": uuid, "session": session,
                                                                       "wait": wait}, ctx)
        if not isinstance(data, bytes):
            raise errors.RpcError(reason=f"compute {host} answered console_read with {type(data).__name__}")
        return data

    async def console_write(self, ctx: RequestContext, host: str, uuid: str, session: str, data: bytes) -> None:
        await self.caller.call(topic(host), M["console_write"], {"uuid": uuid, "session": session, "data": data}, ctx)

    async def console_close(self, ctx: RequestContext, host: str, uuid: str, session: str) -> None:
        await self.caller.call(topic(host), M["console_close"], {"uuid": uuid, "session": session}, ctx)


def _text(host: str, method: str, value: Any) -> str:
    if not isinstance(value, str):
        raise errors.RpcError(reason=f"compute {host} answered {method} with {type(value).__name__}")
    return value
