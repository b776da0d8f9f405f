"""The Linux host network driver: bridges, VXLAN, taps and gateway addresses through
pyroute2; dnsmasq per network on its gateway host; security groups as nftables
rules. Mechanism only, and idempotent: `sync(config)` makes the host look like
the controller's `host_config` says and removes what it no longer names (our
devices are recognised by their prefixes brq/vxlan-/tap), so an agent that
crashed half-way is repaired by the next sync.

Everything may run inside a named network namespace (`netns`), which is how the
tests build hosts. Blocking netlink and process work runs in the caller's
executor (the agent's), never on the event loop.

This kernel has no bridge conntrack (nf_conntrack_bridge) on some hosts: the
rules are then stateless (replies pass as TCP with ACK and ICMP replies); the
detection result is reported by `capabilities()`.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import signal
import subprocess
import time
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, NetNS  # type: ignore[import-untyped]

from node.network import l3 as routers
from node.network import validate

LOG = logging.getLogger(__name__)
PREFIXES = ("brq", "vxlan-", "tap")
VXLAN_PORT = 4789
NFT_TABLE = "cellcloud"
CMD_TIMEOUT = 10.0
ZERO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True)
class Capabilities:
    vlan: bool
    vlan_reason: str
    bridge_conntrack: bool


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=CMD_TIMEOUT, check=False)


def detect_capabilities() -> Capabilities:
    """Try an 802.1Q link and a bridge conntrack rule in a scratch namespace (never the host's)."""
    name = f"ccprobe-{uuidlib.uuid4().hex[:8]}"
    if _run(["ip", "netns", "add", name]).returncode != 0:
        return Capabilities(False, "cannot create a scratch network namespace", False)
    try:
        _run(["ip", "-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1"])
        vlan = _run(["ip", "-n", name, "link", "add", "link", "p0", "name", "p0.10", "type", "vlan", "id", "10"])
        reason = "" if vlan.returncode == 0 else \
            f"the kernel cannot create 802.1Q VLAN devices ({vlan.stderr.strip() or 'vlan link refused'})"
        ct = _run(["ip", "netns", "exec", name, "nft", "-f", "-"],
                  "table bridge probe {\n chain f {\n  type filter hook forward priority 0;\n"
                  "  ct state established accept\n }\n}\n")  # nft needs the newlines between blocks
        return Capabilities(vlan.returncode == 0, reason, ct.returncode == 0)
    finally:
        _run(["ip", "netns", "del", name])


class LinuxNetworkDriver:
    def __init__(self, state_dir: str, netns: str | None = None, tunnel_ip: str = "127.0.0.1",
                 capabilities: Capabilities | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.netns = netns
        self.tunnel_ip = tunnel_ip
        self.caps = capabilities or Capabilities(False, "not probed", False)
        # the routers' NAT table as this process last left it; None: unknown (a new process, a failed
        # apply), so the next sync renders it whole: the reconcile on (re)start
        self.l3_applied: routers.NatApplied | None = None

    # --- plumbing --------------------------------------------------------------

    @contextmanager
    def _ipr(self) -> Iterator[Any]:
        ipr = NetNS(self.netns) if self.netns else IPRoute()
        try:
            yield ipr
        finally:
            ipr.close()

    def _in_ns(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    @staticmethod
    def _index(ipr: Any, name: str) -> int | None:
        found = ipr.link_lookup(ifname=name)
        return int(found[0]) if found else None

    # --- the one entry point ---------------------------------------------------------

    def sync(self, config: dict[str, Any]) -> None:
        """Make the host match `config` (cells/network/instance_ports.host_config); idempotent. Only the
        values that pass the agent's own check are rendered (node/network/validate.py)."""
        config = validate.clean(config)
        nets = {n["id"]: n for n in config.get("networks", [])}
        ports = config.get("ports", [])
        with self._ipr() as ipr:
            for net in nets.values():
                self._ensure_network(ipr, net)
            for port in ports:
                if port["network_id"] in nets:
                    self._ensure_port(ipr, port, nets[port["network_id"]])
            l3 = config.get("l3")  # the network host's routers (cells/network/l3_host.py); others have none
            if l3 is not None:
                applied, self.l3_applied = self.l3_applied, None
                self.l3_applied = routers.sync_l3(ipr, l3, _run, self._in_ns, applied)
            wanted = {n["bridge"] for n in nets.values()} | {n["vxlan"] for n in nets.values()} | \
                     {p["tap"] for p in ports} | routers.wanted_devices(l3 or {})
            self._remove_leftovers(ipr, wanted)
        self._sync_dhcp([n for n in nets.values() if n["gateway_host"]])
        self._sync_firewall(config, nets)

    # --- links ---------------------------------------------------------------------

    def _ensure_network(self, ipr: Any, net: dict[str, Any]) -> None:
        br = self._index(ipr, net["bridge"])
        if br is None:
            ipr.link("add", ifname=net["bridge"], kind="bridge")
            br = self._index(ipr, net["bridge"])
        ipr.link("set", index=br, state="up", mtu=net["mtu"])
        vx = self._index(ipr, net["vxlan"])
        if vx is None:
            ipr.link("add", ifname=net["vxlan"], kind="vxlan", vxlan_id=net["vni"], vxlan_local=self.tunnel_ip,
                     vxlan_port=VXLAN_PORT, vxlan_learning=0)
            vx = self._index(ipr, net["vxlan"])
        ipr.link("set", index=vx, master=br, state="up", mtu=net["mtu"])
        assert br is not None and vx is not None
        self._sync_peers(ipr, vx, set(net["peers"]))
        if net["cidr"]:
            self._sync_gateway(ipr, br, net)

    def _sync_peers(self, ipr: Any, vx: int, peers: set[str]) -> None:
        """Head-end replication: one all-zero FDB entry per peer host of the network."""
        have = set()
        for entry in ipr.fdb("dump", ifindex=vx):
            if entry.get_attr("NDA_LLADDR") == ZERO_MAC and entry.get_attr("NDA_DST"):
                have.add(entry.get_attr("NDA_DST"))
        for dst in peers - have:
            ipr.fdb("append", ifindex=vx, lladdr=ZERO_MAC, dst=dst)
        for dst in have - peers:
            ipr.fdb("del", ifindex=vx, lladdr=ZERO_MAC, dst=dst)

    @staticmethod
    def _sync_gateway(ipr: Any, br: int, net: dict[str, Any]) -> None:
        prefix = ipaddress.ip_network(net["cidr"]).prefixlen
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=br, family=2)}
        # the gateway address, or on a gateway-less subnet the DHCP port's: what dnsmasq answers from
        address = net.get("host_ip") or net.get("gateway_ip")
        want = {(address, prefix)} if net["gateway_host"] and address else set()
        for addr, plen in have - want:
            ipr.addr("del", index=br, address=addr, prefixlen=plen)
        for addr, plen in want - have:
            ipr.addr("add", index=br, address=addr, prefixlen=plen)

    def _ensure_port(self, ipr: Any, port: dict[str, Any], net: dict[str, Any]) -> None:
        """A tap per port (or an existing device of that name: a test's veth standing in for a guest NIC)."""
        idx = self._index(ipr, port["tap"])
        if idx is None:
            ipr.link("add", ifname=port["tap"], kind="tuntap", mode="tap")
            idx = self._index(ipr, port["tap"])
        ipr.link("set", index=idx, master=self._index(ipr, net["bridge"]), state="up", mtu=net["mtu"])

    def _remove_leftovers(self, ipr: Any, wanted: set[str]) -> None:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name and name.startswith(PREFIXES) and name not in wanted:
                LOG.info("removing leftover device %s", name)
                ipr.link("del", index=link["index"])

    # --- DHCP --------------------------------------------------------------------------

    def _dhcp_dir(self, net_id: str) -> Path:
        return self.state_dir / "dhcp" / net_id

    def _dnsmasq_argv(self, net: dict[str, Any], d: Path) -> list[str]:
        cidr = ipaddress.ip_network(net["cidr"])
        return self._in_ns([
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", f"--interface={net['bridge']}",
            "--bind-interfaces", "--except-interface=lo", f"--dhcp-range={cidr.network_address},static,{cidr.netmask},1h",
            f"--dhcp-hostsfile={d / 'hosts'}", f"--dhcp-leasefile={d / 'leases'}",
            f"--pid-file={d / 'pid'}", "--user=root", f"--dhcp-optsfile={d / 'opts'}"])

    @staticmethod
    def dhcp_options(net: dict[str, Any]) -> str:
        """dnsmasq's options for the network (its --dhcp-optsfile, re-read on SIGHUP): the MTU, the
        router (none on a gateway-less subnet: dnsmasq would offer its own address), and the subnet's
        host_routes as option 121, with the default route too since a client given 121 ignores 3."""
        gateway = net.get("gateway_ip")
        lines = [f"option:mtu,{net['mtu']}", f"option:router,{gateway}" if gateway else "option:router"]
        routes = [f"{r['destination']},{r['nexthop']}" for r in net.get("host_routes", [])]
        if routes:
            lines.append("option:classless-static-route," + ",".join(
                routes + ([f"0.0.0.0/0,{gateway}"] if gateway else [])))
        return "".join(f"{line}\n" for line in lines)

    def _sync_dhcp(self, nets: list[dict[str, Any]]) -> None:
        root = self.state_dir / "dhcp"
        root.mkdir(parents=True, exist_ok=True)
        wanted = {n["id"] for n in nets}
        for d in root.iterdir():
            if d.name not in wanted:
                _stop(d / "pid")
                for f in d.iterdir():
                    f.unlink()
                d.rmdir()
        for net in nets:
            d = self._dhcp_dir(net["id"])
            d.mkdir(parents=True, exist_ok=True)
            hosts = "".join(f"{mac},{ip}\n" for mac, ip in net["dhcp_hosts"])
            changed = _replace_if_changed(d / "hosts", hosts)
            changed = _replace_if_changed(d / "opts", self.dhcp_options(net)) or changed
            pid = _alive_pid(d / "pid", net["bridge"])
            if pid is not None and _alive_pid(d / "pid", "--dhcp-optsfile") is None:
                _stop(d / "pid")  # started by a version that gave its options on the command line
                _wait_gone(pid)
                pid = None
            if pid is None:
                subprocess.Popen(self._dnsmasq_argv(net, d), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)  # outlives the agent: a restart adopts it
                LOG.info("dnsmasq started for network %s on %s", net["id"], net["bridge"])
            elif changed:
                os.kill(pid, signal.SIGHUP)  # re-reads --dhcp-hostsfile and --dhcp-optsfile

    def stop_all_dhcp(self) -> None:
        root = self.state_dir / "dhcp"
        if root.exists():
            for d in root.iterdir():
                _stop(d / "pid")

    # --- security groups -------------------------------------------------------------------

    def _sync_firewall(self, config: dict[str, Any], nets: dict[str, dict[str, Any]]) -> None:
        text = render_nftables(config, nets, self.caps.bridge_conntrack)
        result = _run(self._in_ns(["nft", "-f", "-"]), text)
        if result.returncode != 0:
            raise RuntimeError(f"nft refused the security group rules: {result.stderr.strip()}")


def _alive_pid(pidfile: Path, needle: str) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return None
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    if ") Z " in stat:  # a zombie is not a running dnsmasq
        return None
    return pid if "dnsmasq" in cmdline and needle in cmdline else None


def _replace_if_changed(path: Path, text: str) -> bool:
    """Write `text` to `path` atomically unless it holds that already; whether it changed."""
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def _wait_gone(pid: int, timeout: float = 2.0) -> None:
    """Until the process has let go of its sockets (gone or a zombie), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ") Z " in Path(f"/proc/{pid}/stat").read_text():
                return
        except OSError:
            return
        time.sleep(0.02)


def _stop(pidfile: Path) -> None:
    pid = _alive_pid(pidfile, "")
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


# --- nftables rendering (pure) -------------------------------------------------------------------

def _rule_match(rule: dict[str, Any], members: dict[str, list[str]], ingress: bool) -> str | None:
    """The nft match of one security group rule, None when it can match nothing here."""
    if rule["ethertype"] == "IPv6":
        return "ether type ip6" if not rule["remote_ip_prefix"] and not rule["remote_group_id"] else None
    parts = ["ether type ip"]
    side = "saddr" if ingress else "daddr"
    if rule["remote_ip_prefix"]:  # kept with host bits as given (Neutron's way): the network it names
        parts.append(f"ip {side} {ipaddress.ip_network(rule['remote_ip_prefix'], strict=False)}")
    elif rule["remote_group_id"]:
        addrs = members.get(rule["remote_group_id"]) or []
        if not addrs:
            return None
        parts.append(f"ip {side} {{ {', '.join(addrs)} }}")
    proto = rule["protocol"]
    if proto in ("tcp", "udp"):
        parts.append(f"ip protocol {proto}")
        if rule["port_range_min"] is not None:
            lo, hi = rule["port_range_min"], rule["port_range_max"]
            parts.append(f"{proto} dport {lo}" if lo == hi else f"{proto} dport {lo}-{hi}")
    elif proto == "icmp":
        parts.append("ip protocol icmp")
        if rule["port_range_min"] is not None:
            parts.append(f"icmp type {rule['port_range_min']}")
    return " ".join(parts)


def render_nftables(config: dict[str, Any], nets: dict[str, dict[str, Any]], conntrack: bool) -> str:
    """One bridge-family table for every port of the host, replaced atomically."""
    groups = config.get("security_groups") or {}
    rules, members = groups.get("rules") or {}, groups.get("members") or {}
    replies = ["ct state established,related accept"] if conntrack else \
        ["ether type ip ip protocol tcp tcp flags & ack == ack accept",
         "ether type ip icmp type { echo-reply, destination-unreachable, time-exceeded } accept"]
    lines = [f"table bridge {NFT_TABLE} {{}}", f"delete table bridge {NFT_TABLE}", f"table bridge {NFT_TABLE} {{"]
    jumps_to, jumps_from, chains = [], [], []
    for port in config.get("ports", []):
        net = nets.get(port["network_id"])
        if net is None:
            continue
        tap = port["tap"]
        jumps_to.append(f'    oifname "{tap}" jump to-{tap}')
        jumps_from.append(f'    iifname "{tap}" jump from-{tap}')
        ingress = ["    ether type arp accept", *("    " + r for r in replies),
                   "    ether type ip udp sport 67 udp dport 68 accept"]
        server = net.get("host_ip") or net.get("gateway_ip")
        if server:  # the network's own gateway and DHCP server may always reach its guests
            ingress.append(f"    ether type ip ip saddr {server} accept")
        egress = ["    ether type arp accept", "    ether type ip udp sport 68 udp dport 67 accept",
                  f"    ether saddr != {port['mac']} drop"]
        if port["ips"]:
            egress.append(f"    ether type ip ip saddr != {{ {', '.join(port['ips'])} }} drop")
        for gid in port["security_groups"]:
            for rule in rules.get(gid, []):
                match = _rule_match(rule, members, rule["direction"] == "ingress")
                if match is not None:
                    (ingress if rule["direction"] == "ingress" else egress).append(f"    {match} accept")
        chains += [f"  chain to-{tap} {{", *ingress, "    drop", "  }",
                   f"  chain from-{tap} {{", *egress, "    drop", "  }"]
    for hook in ("forward", "output", "input"):
        jumps = (jumps_to if hook != "input" else []) + (jumps_from if hook != "output" else [])
        lines += [f"  chain {hook} {{", f"    type filter hook {hook} priority 0; policy accept;",
                  *(j.replace("    ", "    ", 1) for j in jumps), "  }"]
    lines += chains + ["}"]
    return "\n".join(lines) + "\n"
