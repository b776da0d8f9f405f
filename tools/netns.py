"""Simulated hosts: one network namespace per `via: netns` host, on its site's network.

    root namespace --veth-- "wan" namespace (routes between sites, ip_forward on there only)
                              +-- site i: bridge br<i> <-veth-> gateway up<i> (.1 of the site's /24)
                              |             +-- veth h<j> <-> eth0 in host j's namespace (its address)

Site i (1-based, the order of `sites` in cluster.yaml) gets the i-th /24 of the
cluster's private range (default 10.250.0.0/16, netns.range); the range's first
/30 links the root namespace to the wan namespace, and the root namespace
routes the range (and nothing else) into it, so cellctl, the openstack CLI and
tests on this machine reach the API and routers. Cutting a site = setting its
gateway link down (`set_site_link`): the site's hosts still reach each other,
nothing else. Everything is removed by `destroy`.

With cluster.yaml's `external_network`, the wan namespace also holds that network's wire
(bridge brx): the network host (the netns host of the external network's cell's network
controller) gets an interface `ext0` on it, which its routers use as their uplink
(node/network/l3.py), and a namespace `cc-<cluster>-outside` standing for the internet sits on it
with the external subnet's gateway address (its first one), routing nothing anywhere else.

The network engineer's guest-networking tests use the same namespaces:
`Topology.from_cluster(cluster)` then `namespace(host)`, `exec_prefix(host)`,
`site_subnet(site)`, `create()`, `destroy()`, `set_site_link(site, up)`.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from cells.config import ClusterConfig

IP = "ip"
TIMEOUT = 10.0


class NetnsError(Exception):
    """A namespace, link or route could not be made: names the command and what it said."""


@dataclass(frozen=True)
class NetnsHost:
    name: str
    namespace: str
    address: str
    site: str


def _run(args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(args)}: {exc}") from None
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(args)}: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    return proc


def namespaces() -> set[str]:
    out = _run([IP, "netns", "list"]).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def unused_range(first: int = 200, last: int = 249) -> str:
    """A 10.N.0.0/16 (first <= N <= last) that no route or address of this machine uses yet: for
    throw-away topologies (tests) that may run beside other ones. Starts at a pid-dependent N so
    two runs starting together rarely pick the same one."""
    used = _run([IP, "-4", "route", "show", "table", "all"]).stdout + _run([IP, "-4", "addr", "show"]).stdout
    span = last - first + 1
    for i in range(span):
        n = first + (os.getpid() + i) % span
        if f" 10.{n}." not in used and f"\n10.{n}." not in used and not used.startswith(f"10.{n}."):
            return f"10.{n}.0.0/16"
    raise NetnsError(f"every 10.N.0.0/16 with N in {first}..{last} is in use on this machine")


@dataclass(frozen=True)
class Topology:
    cluster: str
    network: ipaddress.IPv4Network
    sites: tuple[str, ...]
    hosts: tuple[NetnsHost, ...]
    external_cidr: str | None = None  # cluster.yaml's external_network, wired to external_host's ext0
    external_host: str | None = None

    @classmethod
    def from_cluster(cls, cluster: ClusterConfig) -> Topology:
        prefix = f"cc-{cluster.name}-"
        hosts = tuple(NetnsHost(h.name, prefix + h.name, h.address, h.site_net)
                      for h in cluster.hosts if h.via == "netns")
        net = ipaddress.ip_network(cluster.netns_range)
        assert isinstance(net, ipaddress.IPv4Network)
        ext = next(((s.options["external_network"], s.host) for s in cluster.services
                    if s.kind == "network" and s.options.get("external_network")), None)
        netns_hosts = {h.name for h in hosts}
        if ext is None or ext[1] not in netns_hosts:
            return cls(cluster.name, net, tuple(cluster.sites), hosts)
        return cls(cluster.name, net, tuple(cluster.sites), hosts, str(ext[0]["cidr"]), ext[1])

    # --- names ---------------------------------------------------------------------------

    @property
    def wan(self) -> str:
        return f"cc-{self.cluster}-wan"

    @property
    def root_link(self) -> str:
        """The root namespace's end of the wan link (interface names are at most 15 characters)."""
        return "cc" + hashlib.sha1(self.cluster.encode()).hexdigest()[:8]

    @property
    def outside(self) -> str:
        """The namespace standing for the internet on the external network (when there is one)."""
        return f"cc-{self.cluster}-outside"

    @property
    def outside_address(self) -> str | None:
        """Its address: the external subnet's gateway (the subnet's first address, Neutron's default)."""
        if self.external_cidr is None:
            return None
        return str(ipaddress.ip_network(self.external_cidr).network_address + 1)

    def host(self, name: str) -> NetnsHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"host {name!r} is not a netns host of cluster {self.cluster!r}")

    def namespace(self, host: str) -> str:
        return self.host(host).namespace

    def exec_prefix(self, host: str) -> list[str]:
        """Prepend to a command to run it inside the host's namespace."""
        return [IP, "netns", "exec", self.namespace(host)]

    def site_subnet(self, site: str) -> ipaddress.IPv4Network:
        return list(self.network.subnets(new_prefix=24))[self.sites.index(site) + 1]

    def gateway(self, site: str) -> str:
        return str(self.site_subnet(site).network_address + 1)

    def _link_addresses(self) -> tuple[str, str]:
        base = self.network.network_address
        return str(base + 1), str(base + 2)  # root end, wan end (the range's first /30)

    # --- lifecycle -------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.wan in namespaces()

    def create(self) -> None:
        """Make every namespace, link, address and route; leftovers of an earlier run go first."""
        if not self.hosts:
            return
        self.destroy()
        root_ip, wan_ip = self._link_addresses()
        wan = self.wan
        try:
            _run([IP, "netns", "add", wan])
            _run([IP, "-n", wan, "link", "set", "lo", "up"])
            _run([IP, "netns", "exec", wan, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
            _run([IP, "link", "add", self.root_link, "type", "veth", "peer", "name", "root", "netns", wan])
            _run([IP, "addr", "add", f"{root_ip}/30", "dev", self.root_link])
            _run([IP, "link", "set", self.root_link, "up"])
            _run([IP, "-n", wan, "addr", "add", f"{wan_ip}/30", "dev", "root"])
            _run([IP, "-n", wan, "link", "set", "root", "up"])
            _run([IP, "route", "replace", str(self.network), "via", wan_ip, "dev", self.root_link])
            for i, site in enumerate(self.sites, start=1):
                br, up, down = f"br{i}", f"up{i}", f"dn{i}"
                _run([IP, "-n", wan, "link", "add", br, "type", "bridge"])
                _run([IP, "-n", wan, "link", "set", br, "up"])
                _run([IP, "-n", wan, "link", "add", up, "type", "veth", "peer", "name", down])
                _run([IP, "-n", wan, "link", "set", down, "master", br, "up"])
                _run([IP, "-n", wan, "addr", "add", f"{self.gateway(site)}/24", "dev", up])
                _run([IP, "-n", wan, "link", "set", up, "up"])
            for j, h in enumerate(self.hosts):
                index = self.sites.index(h.site) + 1
                _run([IP, "netns", "add", h.namespace])
                _run([IP, "-n", h.namespace, "link", "set", "lo", "up"])
                _run([IP, "-n", wan, "link", "add", f"h{j}", "type", "veth", "peer", "name", "eth0",
                      "netns", h.namespace])
                _run([IP, "-n", wan, "link", "set", f"h{j}", "master", f"br{index}", "up"])
                _run([IP, "-n", h.namespace, "addr", "add", f"{h.address}/24", "dev", "eth0"])
                _run([IP, "-n", h.namespace, "link", "set", "eth0", "up"])
                _run([IP, "-n", h.namespace, "route", "add", "default", "via", self.gateway(h.site)])
            if self.external_host is not None:
                self._create_outside()
        except NetnsError:
            self.destroy()
            raise

    def _create_outside(self) -> None:
        assert self.external_cidr is not None and self.external_host is not None
        wan, outside = self.wan, self.outside
        prefix = ipaddress.ip_network(self.external_cidr).prefixlen
        _run([IP, "-n", wan, "link", "add", "brx", "type", "bridge"])
        _run([IP, "-n", wan, "link", "set", "brx", "up"])
        _run([IP, "netns", "add", outside])
        _run([IP, "-n", outside, "link", "set", "lo", "up"])
        _run([IP, "-n", wan, "link", "add", "xo", "type", "veth", "peer", "name", "eth0", "netns", outside])
        _run([IP, "-n", wan, "link", "set", "xo", "master", "brx", "up"])
        _run([IP, "-n", outside, "addr", "add", f"{self.outside_address}/{prefix}", "dev", "eth0"])
        _run([IP, "-n", outside, "link", "set", "eth0", "up"])
        _run([IP, "-n", wan, "link", "add", "xh", "type", "veth", "peer", "name", "ext0",
              "netns", self.namespace(self.external_host)])
        _run([IP, "-n", wan, "link", "set", "xh", "master", "brx", "up"])
        _run([IP, "-n", self.namespace(self.external_host), "link", "set", "ext0", "up"])

    def destroy(self) -> None:
        """Remove the namespaces (their links go with them), the root link and the route. Idempotent."""
        present = namespaces()
        for name in [h.namespace for h in self.hosts] + [self.wan, self.outside]:
            if name in present:
                _run([IP, "netns", "del", name], check=False)
        _run([IP, "link", "del", self.root_link], check=False)  # gone with its peer already, normally

    def set_site_link(self, site: str, up: bool) -> None:
        """Cut a site off the WAN (down) or bring it back (up): its gateway link in the wan namespace."""
        index = self.sites.index(site) + 1
        _run([IP, "-n", self.wan, "link", "set", f"up{index}", "up" if up else "down"])
