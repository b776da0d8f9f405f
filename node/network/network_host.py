"""The node side of a cell's network host (issue 17): the network controller's own host applies
its configuration (cells/network/l3_host.py network_host_config) with the same Linux driver the
compute agents use, plus the routers (node/network/l3.py), and serves the metadata of the
networks whose gateway it holds. tools/serve.py gives one to the controller when plumbing is on.

Plumbing follows the compute's rule (`network_plumbing`: auto, on, off): "auto" plumbs only in
a network namespace of our own (a netns host), never in the machine's root namespace. On a host that
also runs a compute, that compute's agent is the one owner of the host's devices (two syncs of one
namespace would undo each other's): the controller gets a cells/network/shared_host.py network host
that has the agent apply the routers too, when that agent plumbs; otherwise routers stay API-only, logged.
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from cells.config import ClusterConfig, ServiceSpec
from cells.network.shared_host import ComputeAgentNetworkHost
from cells.rpcapi.conductor import ConductorAPI
from node.network import metadata, validate
from node.network.agent import SYNC_TIMEOUT, in_own_netns
from node.network.agent import plumbing_decision as agent_plumbing

if TYPE_CHECKING:  # imported when plumbing starts: pyroute2 is the controller's dearest import, and most
    from node.network.linux import LinuxNetworkDriver  # controllers (root namespace) never plumb

LOG = logging.getLogger(__name__)


def plumbing_decision(mode: str, own_netns: bool, runs_compute: bool) -> tuple[bool, str]:
    """(enabled, why): pure, so the policy is tested without namespaces. A host that runs a compute is
    decided by `shared_decision` instead."""
    if mode == "off":
        return False, "network_plumbing: off"
    if runs_compute:
        return False, "a compute runs on this host too; its agent owns the host's network devices"
    if mode == "on":
        return True, "network_plumbing: on"
    if not own_netns:
        return False, "the controller runs in the machine's root network namespace (run it on a netns host)"
    return True, "network controller on a netns host"


def shared_decision(mode: str, compute_options: dict[str, Any]) -> tuple[bool, str]:
    """(routers through the compute's agent, why) for a network host that runs a compute: only when
    that agent plumbs (its own rule: node/network/agent.py plumbing_decision)."""
    if mode == "off":
        return False, "network_plumbing: off"
    plumbs, why = agent_plumbing(str(compute_options.get("network_plumbing") or "auto"),
                                 str(compute_options.get("virt_uri") or "test:///default"), in_own_netns())
    if not plumbs:
        return False, f"a compute runs on this host too and its agent does not plumb ({why})"
    return True, f"a compute runs on this host too: its agent owns the host's devices ({why})"


class NetworkHost:
    def __init__(self, host: str, state_dir: str, tunnel_ip: str, *,
                 metadata_address: str | None = metadata.METADATA_ADDRESS) -> None:
        self.host = host
        self.tunnel_ip = tunnel_ip
        self.state_dir = state_dir
        self.metadata_address = metadata_address
        self.driver: LinuxNetworkDriver | None = None
        self._metadata: metadata.MetadataServer | None = None

    @classmethod
    def for_controller(cls, cluster: ClusterConfig, spec: ServiceSpec) -> NetworkHost | ComputeAgentNetworkHost | None:
        """The controller's network host, or None (logged why) when it must not plumb here."""
        host = next((h for h in cluster.hosts if h.name == spec.host), None)
        compute = next((s for s in cluster.services if s.kind == "compute" and s.host == spec.host), None)
        mode = str(spec.options.get("network_plumbing") or "auto")
        if compute is not None:
            shared, reason = shared_decision(mode, compute.options)
            LOG.info("network host plumbing on %s: %s (%s)", spec.host, "through its compute's agent" if shared
                     else "off", reason)
            if not shared or host is None:
                return None
            return ComputeAgentNetworkHost(spec.host, str(compute.options.get("tunnel_ip") or host.address))
        enabled, reason = plumbing_decision(mode, in_own_netns(), False)
        LOG.info("network host plumbing on %s: %s (%s)", spec.host, "on" if enabled else "off", reason)
        if not enabled or host is None:
            return None
        return cls(spec.host, os.path.join(cluster.state_dir, "hosts", spec.host, "network"), host.address)

    async def start(self, service: Any) -> None:
        from node.network.linux import LinuxNetworkDriver, detect_capabilities

        loop = asyncio.get_running_loop()
        caps = await asyncio.wait_for(loop.run_in_executor(None, detect_capabilities), SYNC_TIMEOUT)
        self.driver = LinuxNetworkDriver(self.state_dir, tunnel_ip=self.tunnel_ip, capabilities=caps)
        if service is not None and self.metadata_address:
            self._metadata = metadata.MetadataServer(ConductorAPI(service), self.metadata_address)

    async def apply(self, config: dict[str, Any]) -> None:
        driver = self.driver
        if driver is None:
            raise RuntimeError("network host not started")
        clean = validate.clean(config)
        await asyncio.get_running_loop().run_in_executor(None, driver.sync, clean)
        if self._metadata is not None:  # a listener per network whose gateway is here
            await self._metadata.ensure([(str(n["id"]), str(n["bridge"]))
                                         for n in clean.get("networks", []) if n.get("gateway_host")])

    async def stop(self) -> None:
        if self._metadata is not None:
            await self._metadata.stop()
