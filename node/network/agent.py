"""The compute host's network agent: plugs an instance's VIFs before its domain starts
and unplugs them after it is gone, through the cell's network controller (topic
`network`: bind_instance, host_config) and node/network/linux.py.

Every change is one whole-host `sync` (the controller's host_config applied
idempotently), serialised by a lock: plugging binds the instance's ports to this
host first, so the sync makes their taps (and the network's bridge, VXLAN,
gateway, dnsmasq, nftables); unplugging syncs after the conductor released the
ports, so their taps and DHCP entries go. A restarted agent syncs once at start,
which recreates what is missing and removes what a crash left behind.

When plumbing is on (`network_plumbing` option of the compute service):
- "on": always;
- "off": never (guests boot without NICs; ports stay DOWN and unbound);
- "auto" (default): only for a real hypervisor running inside its own network
  namespace (a netns host, tools/netns.py). The test hypervisor has no guest to
  plug, and a compute in the machine's root namespace must not grow bridges,
  dnsmasq and nftables there (HOST_NOTES: guest networking lives in a netns).
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from cells import errors
from cells.config import SIM_URI
from cells.context import RequestContext, admin_context
from cells.rpcapi import Caller
from cells.rpcapi.network import NetworkAPI
from node.network import metadata, validate

LOG = logging.getLogger(__name__)
SYNC_TIMEOUT = 60.0  # netlink, dnsmasq start and nft together; far above the ~0.2 s they take
MODES = ("auto", "on", "off")


def in_own_netns(self_ns: str = "/proc/self/ns/net", named_dir: str = "/run/netns") -> bool:
    """Whether this process runs inside a named network namespace (`ip netns identify`'s test:
    a netns host of tools/netns.py is one; /proc/1/ns is not readable in every container)."""
    try:
        mine = os.stat(self_ns)
        names = os.listdir(named_dir)
    except OSError:
        return False
    for name in names:
        try:
            st = os.stat(os.path.join(named_dir, name))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            return True
    return False


def plumbing_decision(mode: str, virt_uri: str, own_netns: bool) -> tuple[bool, str]:
    """(enabled, why): pure, so the policy is tested without namespaces."""
    if mode not in MODES:
        raise errors.Invalid(reason=f"network_plumbing must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "on":
        return True, "network_plumbing: on"
    if mode == "off":
        return False, "network_plumbing: off"
    if virt_uri.startswith("test:") or virt_uri == SIM_URI:  # a simulated host's test hypervisor
        return False, "the test hypervisor has no guest NICs to plug"
    if not own_netns:
        return False, "the compute runs in the machine's root network namespace (run it on a netns host)"
    return True, "real hypervisor on a netns host"


class NetworkAgent:
    def __init__(self, host: str, state_dir: str, *, enabled: bool, reason: str, tunnel_ip: str,
                 driver: Any = None, metadata_address: str | None = metadata.METADATA_ADDRESS) -> None:
        self.host = host
        self.state_dir = state_dir
        self.enabled = enabled
        self.reason = reason
        self.tunnel_ip = tunnel_ip
        self.driver = driver  # LinuxNetworkDriver, made at start (its capability probe spawns processes)
        self.metadata_address = metadata_address
        self._api: NetworkAPI | None = None
        self._lock = asyncio.Lock()
        self._metadata: metadata.MetadataServer | None = None
        self._ports: dict[str, str] = {}  # port id -> network id, as last applied
        self._refresh_waiting = False

    @classmethod
    def from_options(cls, host: str, state_dir: str, options: dict[str, Any], virt_uri: str,
                     default_tunnel_ip: str) -> NetworkAgent:
        enabled, reason = plumbing_decision(str(options.get("network_plumbing") or "auto"), virt_uri,
                                            in_own_netns())
        return cls(host, state_dir, enabled=enabled, reason=reason,
                   tunnel_ip=str(options.get("tunnel_ip") or default_tunnel_ip))

    @property
    def api(self) -> NetworkAPI:
        if self._api is None:
            raise errors.RpcError(reason="network agent not started")
        return self._api

    async def start(self, caller: Caller, conductor: Any = None) -> None:
        self._api = NetworkAPI(caller)
        LOG.info("network plumbing on %s: %s (%s)", self.host, "on" if self.enabled else "off", self.reason)
        if not self.enabled:
            return
        loop = asyncio.get_running_loop()
        if self.driver is None:
            from node.network.linux import LinuxNetworkDriver, detect_capabilities
            caps = await asyncio.wait_for(loop.run_in_executor(None, detect_capabilities), SYNC_TIMEOUT)
            if not caps.vlan:
                LOG.info("802.1Q VLAN segmentation unavailable here: %s; VXLAN only", caps.vlan_reason)
            if not caps.bridge_conntrack:
                LOG.info("no bridge conntrack (nf_conntrack_bridge) here: security groups are stateless "
                         "(replies pass as TCP with ACK and ICMP replies)")
            self.driver = LinuxNetworkDriver(self.state_dir, tunnel_ip=self.tunnel_ip, capabilities=caps)
        if conductor is not None and self.metadata_address:
            self._metadata = metadata.MetadataServer(conductor, self.metadata_address)

    async def stop(self) -> None:
        if self._metadata is not None:
            await self._metadata.stop()

    async def report_and_sync(self) -> None:
        """At start (after the conductor answered): announce our tunnel address, then rebuild the host."""
        if not self.enabled:
            return
        caps = getattr(self.driver, "caps", None)
        await self.api.agent_report(admin_context(), self.host, self.tunnel_ip, bool(getattr(caps, "vlan", False)))
        try:
            await self.sync()
        except errors.RpcError:
            raise  # the controller is not answering yet: the caller retries
        except Exception:  # a host we cannot plumb still serves; each plug retries the sync
            LOG.exception("network sync of %s failed", self.host)

    async def plug(self, ctx: RequestContext, instance: dict[str, Any]) -> list[dict[str, Any]]:
        """Bind the instance's ports here and make their taps; returns the VIFs for the domain XML."""
        if not self.enabled or not instance.get("addresses"):
            return []
        vifs = await self.api.bind_instance(ctx, str(instance["uuid"]), self.host)
        # announced even when this agent's memory says nothing changed: a move may bring back a port
        # that was bound here before, which the other hosts have since dropped from their peers
        await self.sync(announce={str(v["network_id"]) for v in vifs})
        return vifs

    async def unplug(self) -> None:
        """After an instance is gone: the sync drops taps and DHCP entries of released ports."""
        if self.enabled:
            await self.sync()

    async def refresh(self) -> None:
        """The controller says a change elsewhere concerns this host (refresh_network). Refreshes
        arriving while one already waits for the lock join it: that sync reads the newest config."""
        if not self.enabled or self._refresh_waiting:
            return
        self._refresh_waiting = True
        await self.sync()

    async def sync(self, announce: set[str] | None = None) -> None:
        async with self._lock:
            self._refresh_waiting = False
            config = validate.clean(await self.api.host_config(admin_context(), self.host))
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.run_in_executor(None, self.driver.sync, config), SYNC_TIMEOUT)
            if self._metadata is not None:  # a listener per network whose gateway is here
                await self._metadata.ensure([(str(n["id"]), str(n["bridge"]))
                                             for n in config.get("networks", []) if n.get("gateway_host")])
            ports = {str(p["id"]): str(p["network_id"]) for p in config.get("ports", [])}
            changed = sorted({net for _, net in set(self._ports.items()) ^ set(ports.items())} | (announce or set()))
            self._ports = ports
        if changed:  # our ports came or went: the other hosts on those networks re-sync
            await self._announce(changed)

    async def _announce(self, network_ids: list[str]) -> None:
        try:
            await self.api.host_changed(admin_context(), self.host, network_ids)
        except errors.UnsupportedVersion:
            LOG.info("the network controller is too old for host_changed; peers catch up at their periodic sync")
        except errors.CellcloudError as exc:
            LOG.warning("could not announce the port change on %s: %s", ", ".join(network_ids), exc)
