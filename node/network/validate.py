"""The agent's own check of a host configuration before any of it reaches netlink, dnsmasq
or nftables (defence in depth: the controller validates too, but one bad row, from an
older release, a manual edit or a bug, must cost only its own port, never the whole
host's sync). Pure: `clean(config)` returns the usable part and logs what it dropped.

Accepted: device names of our own shapes (brq/vxlan-/tap + hex and dashes), MACs as
six hex octets (unicast), IPv4/IPv6 addresses and networks as Python parses them,
integer VNIs and MTUs in range, rules whose protocol, ports and prefixes are what the
controller could have written.
"""
from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any

from cells.network.policy import is_valid_mac

LOG = logging.getLogger(__name__)
DEVICE_RE = re.compile(r"^(brq|tap)[0-9a-f-]{1,11}$|^vxlan-[0-9]{1,8}$")
ID_RE = re.compile(r"^[0-9a-zA-Z-]{1,64}$")
PROTOCOLS = (None, "tcp", "udp", "icmp")
DIRECTIONS = ("ingress", "egress")


def _ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def _cidr(value: Any) -> bool:
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return False
    return isinstance(value, str)


def _int(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _network_ok(net: Any) -> bool:
    if not isinstance(net, dict):
        return False
    return bool(ID_RE.match(str(net.get("id"))) and DEVICE_RE.match(str(net.get("bridge")))
                and DEVICE_RE.match(str(net.get("vxlan"))) and _int(net.get("vni"), 1, (1 << 24) - 1)
                and _int(net.get("mtu"), 68, 9000)
                and isinstance(net.get("peers"), list) and all(_ip(p) for p in net["peers"])
                and (net.get("cidr") is None or _cidr(net["cidr"]))
                and (net.get("gateway_ip") is None or _ip(net["gateway_ip"]))
                and (net.get("host_ip") is None or _ip(net["host_ip"]))
                and isinstance(net.get("host_routes", []), list)
                and all(isinstance(r, dict) and _cidr(r.get("destination")) and _ip(r.get("nexthop"))
                        for r in net.get("host_routes", []))
                and isinstance(net.get("dhcp_hosts"), list))


def _port_ok(port: Any) -> bool:
    if not isinstance(port, dict):
        return False
    return bool(ID_RE.match(str(port.get("id"))) and DEVICE_RE.match(str(port.get("tap")))
                and is_valid_mac(port.get("mac")) and ID_RE.match(str(port.get("network_id")))
                and isinstance(port.get("ips"), list) and all(_ip(i) for i in port["ips"])
                and isinstance(port.get("security_groups"), list)
                and all(isinstance(g, str) and ID_RE.match(g) for g in port["security_groups"]))


def _rule_ok(rule: Any) -> bool:
    if not isinstance(rule, dict):
        return False
    lo, hi = rule.get("port_range_min"), rule.get("port_range_max")
    return bool(rule.get("direction") in DIRECTIONS and rule.get("ethertype") in ("IPv4", "IPv6")
                and rule.get("protocol") in PROTOCOLS
                and (lo is None or _int(lo, 0, 65535)) and (hi is None or _int(hi, 0, 65535))
                and (rule.get("remote_ip_prefix") is None or _cidr(rule["remote_ip_prefix"]))
                and (rule.get("remote_group_id") is None or ID_RE.match(str(rule["remote_group_id"]))))


def _dhcp_ok(entry: Any) -> bool:
    return isinstance(entry, (list, tuple)) and len(entry) == 2 and is_valid_mac(entry[0]) and _ip(entry[1])


def clean(config: dict[str, Any]) -> dict[str, Any]:
    """The part of `config` (cells/network/instance_ports.host_config) that is safe to render; every
    dropped network, port, DHCP entry, rule or member address is logged with its reason."""
    host = config.get("host")
    nets = []
    for net in config.get("networks") or []:
        if not _network_ok(net):
            LOG.error("host %s: skipping network %r: invalid values", host, _name(net))
            continue
        hosts = [e for e in net["dhcp_hosts"] if _dhcp_ok(e)]
        for bad in (e for e in net["dhcp_hosts"] if not _dhcp_ok(e)):
            LOG.error("host %s: skipping DHCP entry %r of network %s: invalid MAC or IP", host, bad, net["id"])
        nets.append({**net, "dhcp_hosts": hosts})
    ports = []
    for port in config.get("ports") or []:
        if _port_ok(port):
            ports.append(port)
        else:
            LOG.error("host %s: skipping port %r: invalid MAC, IP, device or group values", host, _name(port))
    groups = config.get("security_groups") or {}
    rules: dict[str, list[dict[str, Any]]] = {}
    for gid, group_rules in (groups.get("rules") or {}).items():
        rules[gid] = [r for r in group_rules if _rule_ok(r)]
        if len(rules[gid]) != len(group_rules):
            LOG.error("host %s: skipping %d invalid rule(s) of security group %s", host,
                      len(group_rules) - len(rules[gid]), gid)
    members = {gid: [a for a in addrs if _ip(a)] for gid, addrs in (groups.get("members") or {}).items()
               if isinstance(addrs, list)}
    cleaned = {**config, "networks": nets, "ports": ports, "security_groups": {"rules": rules, "members": members}}
    if config.get("l3") is not None:
        cleaned["l3"] = _clean_l3(host, config["l3"])
    return cleaned


def _external_ok(ext: Any) -> bool:
    return isinstance(ext, dict) and bool(
        ID_RE.match(str(ext.get("id"))) and DEVICE_RE.match(str(ext.get("bridge"))) and _cidr(ext.get("cidr"))
        and (ext.get("gateway_ip") is None or _ip(ext["gateway_ip"])) and _int(ext.get("table"), 10000, 59999))


def _router_ok(router: Any) -> bool:
    if not isinstance(router, dict):
        return False
    subnets, fips = router.get("subnets"), router.get("floating_ips")
    return bool(ID_RE.match(str(router.get("id")))
                and (router.get("external_network_id") is None or ID_RE.match(str(router["external_network_id"])))
                and (router.get("address") is None or _ip(router["address"])) and isinstance(router.get("snat"), bool)
                and isinstance(subnets, list) and all(isinstance(x, dict) and _cidr(x.get("cidr"))
                                                      and DEVICE_RE.match(str(x.get("bridge"))) for x in subnets)
                and isinstance(fips, list) and all(isinstance(f, dict) and _ip(f.get("address"))
                                                   and _ip(f.get("fixed_ip")) for f in fips))


def _clean_l3(host: Any, l3: Any) -> dict[str, Any]:
    """The routers and external networks that are safe to render; a bad one costs only itself."""
    if not isinstance(l3, dict):
        LOG.error("host %s: skipping the routers: not a map", host)
        return {"external_networks": [], "routers": []}
    externals = [e for e in l3.get("external_networks") or [] if _external_ok(e)]
    routers = [r for r in l3.get("routers") or [] if _router_ok(r)]
    dropped = len(l3.get("external_networks") or []) - len(externals) + len(l3.get("routers") or []) - len(routers)
    if dropped:
        LOG.error("host %s: skipping %d router(s) or external network(s) with invalid values", host, dropped)
    return {"external_networks": externals, "routers": routers}


def _name(item: Any) -> str:
    return str(item.get("id")) if isinstance(item, dict) else repr(item)[:80]
