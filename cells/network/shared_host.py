"""A network host that also runs a compute (issue 17): the compute's network agent is the host's one
owner of its network devices, so the routers go through it instead of a second driver.

Two syncs of one namespace by two drivers would undo each other (each removes the devices it does not
want, each runs its own dnsmasq and metadata listener on the same bridges). Here the controller's
network host does not plumb: `host_config` for this host answers the network host's whole
configuration (the compute's ports and networks plus the routers, `l3_host.network_host_config`),
and applying it is asking that compute's agent to sync now (`sync_network`, a call: a router or
floating-IP change is applied before the API answers, as on a dedicated network host).
"""
from __future__ import annotations

from typing import Any

from cells.context import admin_context
from cells.rpcapi.compute import ComputeAPI


class ComputeAgentNetworkHost:
    """NetworkHostPlumbing (cells/network/l3_host.py) whose node side is the host's compute agent."""

    shared_with_compute = True

    def __init__(self, host: str, tunnel_ip: str) -> None:
        self.host = host
        self.tunnel_ip = tunnel_ip
        self._compute: Any = None

    async def start(self, service: Any) -> None:
        self._compute = ComputeAPI(service) if service is not None else None

    async def apply(self, config: dict[str, Any]) -> None:
        """The agent reads the configuration itself (host_config): `config` only says one is due."""
        if self._compute is None:
            raise RuntimeError("shared network host not started")
        await self._compute.sync_network(admin_context(), self.host)

    async def stop(self) -> None:
        return None
