"""Routers and floating IPs on the cell's network host (issue 17): the `l3` part of its
configuration (cells/network/l3_host.py) made real in the host's own namespace.

- Each external network is a bridge (`brq...`, as any network) whose uplink is the host's
  interface UPLINK (tools/netns.py gives the network host one, wired to the "outside"); it
  carries each router's gateway address and, as /32s, the floating IPs associated now.
- The subnets of a router are the bridges whose gateway the host already holds; their traffic
  leaves by policy routing: `from <subnet> lookup <the external network's table>`, whose one
  route is the default via the external subnet's gateway; `lookup main suppress_prefixlength 0`
  before it keeps the connected routes.
- One nftables table (family ip), replaced atomically on every sync: DNAT of each floating IP
  to its fixed address and SNAT back, SNAT of the subnets to the router's gateway address, and
  a forward filter that passes only what a router routes (a subnet to its router's external
  network or other subnets, and DNAT'd traffic in), so guests never reach the underlay, and
  drops every flow DNAT'd for a floating IP no longer associated, established ones included.
  Security groups still apply on the guest's own host: DNAT keeps the outside's source.

Pure rendering (`render_l3_nftables`) is separate from the commands (`sync_l3`).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
from collections.abc import Callable
from typing import Any

LOG = logging.getLogger(__name__)
UPLINK = "ext0"
L3_TABLE = "cellcloud_l3"
MAIN_RULE_PREF, SUBNET_RULE_PREF = 1000, 1100
TABLE_RANGE = range(10000, 60000)  # cells/network/l3_host.py routing_table()
Run = Callable[[list[str]], subprocess.CompletedProcess[str]]


def wanted_devices(l3: dict[str, Any]) -> set[str]:
    return {e["bridge"] for e in l3.get("external_networks", [])}


def render_l3_nftables(l3: dict[str, Any]) -> str:
    externals = {e["id"]: e for e in l3.get("external_networks", [])}
    pre: list[str] = []
    post: list[str] = []
    forward: list[str] = []
    pairs = [f"{f['address']} . {f['fixed_ip']}" for r in l3.get("routers", []) for f in r["floating_ips"]]
    # a flow DNAT'd for a floating IP that is no longer associated (to that address) ends at once, even
    # one kept alive since (a steady ping): conntrack would go on translating it
    forward.append(f"    ct status dnat ct original ip daddr . ct reply ip saddr != {{ {', '.join(pairs)} }} drop"
                   if pairs else "    ct status dnat drop")
    forward.append("    ct state established,related accept")
    for r in l3.get("routers", []):
        ext = externals.get(r.get("external_network_id") or "")
        inside = sorted({s["bridge"] for s in r["subnets"]})
        if len(inside) > 1:
            names = _set_of(inside)
            forward.append(f"    iifname {{ {names} }} oifname {{ {names} }} accept")
        if ext is None or not r.get("address"):
            continue
        out = ext["bridge"]
        for fip in r["floating_ips"]:
            pre.append(f"    ip daddr {fip['address']} dnat to {fip['fixed_ip']}")
            post.append(f'    oifname "{out}" ip saddr {fip["fixed_ip"]} snat to {fip["address"]}')
        if r["snat"]:
            post += [f'    oifname "{out}" ip saddr {s["cidr"]} snat to {r["address"]}' for s in r["subnets"]]
        if inside:
            forward.append(f'    iifname {{ {_set_of(inside)} }} oifname "{out}" accept')
            forward.append(f'    iifname "{out}" oifname {{ {_set_of(inside)} }} ct status dnat accept')
    lines = [f"table ip {L3_TABLE} {{}}", f"delete table ip {L3_TABLE}", f"table ip {L3_TABLE} {{",
             "  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;", *pre, "  }",
             "  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;", *post, "  }",
             "  chain forward {", "    type filter hook forward priority 0; policy drop;", *forward, "  }", "}"]
    return "\n".join(lines) + "\n"


def _set_of(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _addresses_wanted(l3: dict[str, Any]) -> dict[str, set[tuple[str, int]]]:
    """External bridge -> the (address, prefix length) it must carry."""
    out: dict[str, set[tuple[str, int]]] = {e["bridge"]: set() for e in l3.get("external_networks", [])}
    by_id = {e["id"]: e for e in l3.get("external_networks", [])}
    for r in l3.get("routers", []):
        ext = by_id.get(r.get("external_network_id") or "")
        if ext is None or not r.get("address"):
            continue
        out[ext["bridge"]].add((r["address"], ipaddress.ip_network(ext["cidr"]).prefixlen))
        out[ext["bridge"]] |= {(f["address"], 32) for f in r["floating_ips"]}
    return out


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def sync_l3(ipr: Any, l3: dict[str, Any], run: Run, in_ns: Callable[[list[str]], list[str]]) -> None:
    """Make the host's routers look like `l3` (validated): bridges and addresses, routing, NAT."""
    routers = l3.get("routers", [])
    uplink = _index(ipr, UPLINK)
    for bridge, wanted in _addresses_wanted(l3).items():
        br = _index(ipr, bridge)
        if br is None:
            ipr.link("add", ifname=bridge, kind="bridge")
            br = _index(ipr, bridge)
        ipr.link("set", index=br, state="up")
        if uplink is not None:
            ipr.link("set", index=uplink, master=br, state="up")
        else:
            LOG.warning("no uplink %s on this host: external network bridge %s reaches nothing", UPLINK, bridge)
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=br, family=2)}
        for addr, plen in have - wanted:
            ipr.addr("del", index=br, address=addr, prefixlen=plen)
        for addr, plen in sorted(wanted - have):
            ipr.addr("add", index=br, address=addr, prefixlen=plen)
    if routers:
        _check(run(in_ns(["sysctl", "-qw", "net.ipv4.ip_forward=1"])), "enable forwarding")
    _sync_routing(l3, run, in_ns)
    _check(_nft(in_ns, render_l3_nftables(l3)), "load the router NAT rules")


def _nft(in_ns: Callable[[list[str]], list[str]], text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(in_ns(["nft", "-f", "-"]), input=text, capture_output=True, text=True, timeout=10,
                          check=False)


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"could not {what}: {result.stderr.strip() or f'exit {result.returncode}'}")


def _sync_routing(l3: dict[str, Any], run: Run, in_ns: Callable[[list[str]], list[str]]) -> None:
    externals = {e["id"]: e for e in l3.get("external_networks", [])}
    tables: dict[int, tuple[str, str]] = {}  # table -> (gateway, bridge)
    rules: set[tuple[int, str, str]] = set()  # (pref, from, table)
    for r in l3.get("routers", []):
        ext = externals.get(r.get("external_network_id") or "")
        if ext is None or not r.get("address") or not ext.get("gateway_ip"):
            continue
        tables[int(ext["table"])] = (ext["gateway_ip"], ext["bridge"])
        rules |= {(SUBNET_RULE_PREF, str(ipaddress.ip_network(s["cidr"])), str(ext["table"])) for s in r["subnets"]}
    if rules:
        rules.add((MAIN_RULE_PREF, "all", "main"))
    have_rules = set()
    for rule in json.loads(run(in_ns(["ip", "-j", "-4", "rule", "show"])).stdout or "[]"):
        pref = int(rule.get("priority", -1))
        if pref in (MAIN_RULE_PREF, SUBNET_RULE_PREF):
            src = rule.get("src", "all")
            if src != "all":
                src = f"{src}/{rule.get('srclen', 32)}"
            have_rules.add((pref, src, str(rule.get("table"))))
    for pref, src, table in have_rules - rules:
        run(in_ns(["ip", "-4", "rule", "del", "pref", str(pref), "from", src, "lookup", table]))
    for pref, src, table in sorted(rules - have_rules):
        extra = ["suppress_prefixlength", "0"] if table == "main" else []
        _check(run(in_ns(["ip", "-4", "rule", "add", "pref", str(pref), "from", src, "lookup", table, *extra])),
               f"add the routing rule from {src}")
    for number, (gateway, bridge) in tables.items():
        _check(run(in_ns(["ip", "-4", "route", "replace", "default", "via", gateway, "dev", bridge,
                          "table", str(number)])), f"route table {number}")
    routes = json.loads(run(in_ns(["ip", "-j", "-4", "route", "show", "table", "all"])).stdout or "[]")
    for number in {int(t) for t in (r.get("table") for r in routes) if str(t).isdigit()}:
        if number in TABLE_RANGE and number not in tables:
            run(in_ns(["ip", "-4", "route", "flush", "table", str(number)]))
