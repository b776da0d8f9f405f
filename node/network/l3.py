"""Routers and floating IPs on the cell's network host (issue 17): the `l3` part of its
configuration (cells/network/l3_host.py) made real in the host's own namespace.

- Each external network is a bridge (`brq...`, as any network) whose uplink is the host's
  interface UPLINK (tools/netns.py gives the network host one, wired to the "outside"); it
  carries each router's gateway address and, as /32s, the floating IPs associated now.
- The subnets of a router are the bridges whose gateway the host already holds; their traffic
  leaves by policy routing: `from <subnet> lookup <the external network's table>`, whose one
  route is the default via the external subnet's gateway; `lookup main suppress_prefixlength 0`
  before it keeps the connected routes.
- One nftables table (family ip): DNAT of each floating IP to its fixed address and SNAT back,
  SNAT of the subnets to the router's gateway address, and a forward filter that passes only
  what a router routes (a subnet to its router's external network or other subnets, and DNAT'd
  traffic in), so guests never reach the underlay, and drops every flow DNAT'd for a floating IP
  no longer associated, established ones included. Security groups still apply on the guest's
  own host: DNAT keeps the outside's source.
- The floating IPs are elements of three maps/sets (FIP -> fixed, out bridge . fixed -> FIP, and
  the associated FIP . fixed pairs), read by a fixed set of rules: an associate or disassociate
  is an `add element` / `delete element` of that one floating IP in one nft transaction, not a
  rewrite of every rule. The table is rendered whole (replaced atomically) when something else
  changed (routers, subnets, SNAT, external networks), on the first sync of a process (the
  reconcile on restart), after a failed apply, and on a sync that changes nothing (the
  controller's periodic re-sync: what was changed behind the host's back comes back).

Pure rendering (`render_l3_nftables`, `nat_changes`) is separate from the commands (`sync_l3`).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger(__name__)
UPLINK = "ext0"
L3_TABLE = "cellcloud_l3"
FIP_DNAT, FIP_SNAT, FIP_FLOWS = "fip_dnat", "fip_snat", "fip_flows"  # the table's floating-IP maps and set
MAIN_RULE_PREF, SUBNET_RULE_PREF = 1000, 1100
TABLE_RANGE = range(10000, 60000)  # cells/network/l3_host.py routing_table()
Run = Callable[[list[str]], subprocess.CompletedProcess[str]]


def wanted_devices(l3: dict[str, Any]) -> set[str]:
    return {e["bridge"] for e in l3.get("external_networks", [])}


@dataclass(frozen=True, order=True)
class FloatingRule:
    """One floating IP's translation: DNAT of `address` to `fixed_ip`, SNAT back when leaving by `bridge`."""

    address: str
    fixed_ip: str
    bridge: str


@dataclass(frozen=True)
class NatApplied:
    """What the host's NAT table holds now, and how the last change got there (the bench reads it)."""

    l3: dict[str, Any]
    full: bool  # rendered whole (reconcile) or changed element by element
    statements: int  # lines given to nft for the last change
    seconds: float = 0.0  # the last change's time in nft


def _gateway_routers(l3: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(router, its external network) for the routers with a gateway address: the ones that translate."""
    externals = {e["id"]: e for e in l3.get("external_networks", [])}
    return [(r, externals[r["external_network_id"]]) for r in l3.get("routers", [])
            if r.get("external_network_id") in externals and r.get("address")]


def floating_rules(l3: dict[str, Any]) -> list[FloatingRule]:
    """Each associated floating IP once; a second claim on an address or a fixed IP is skipped (logged):
    map keys are unique, and the controller never makes such a pair."""
    rules: list[FloatingRule] = []
    addresses: set[str] = set()
    sources: set[tuple[str, str]] = set()
    for router, ext in _gateway_routers(l3):
        for fip in router["floating_ips"]:
            rule = FloatingRule(fip["address"], fip["fixed_ip"], ext["bridge"])
            if rule.address in addresses or (rule.bridge, rule.fixed_ip) in sources:
                LOG.error("router %s: floating IP %s -> %s clashes with another; skipped", router["id"],
                          rule.address, rule.fixed_ip)
                continue
            addresses.add(rule.address)
            sources.add((rule.bridge, rule.fixed_ip))
            rules.append(rule)
    return sorted(rules)


def _elements(rule: FloatingRule) -> tuple[tuple[str, str, str], ...]:
    """(map or set, key, key : value) of one floating IP in each of the three."""
    return ((FIP_DNAT, rule.address, f"{rule.address} : {rule.fixed_ip}"),
            (FIP_SNAT, f'"{rule.bridge}" . {rule.fixed_ip}', f'"{rule.bridge}" . {rule.fixed_ip} : {rule.address}'),
            (FIP_FLOWS, f"{rule.address} . {rule.fixed_ip}", f"{rule.address} . {rule.fixed_ip}"))


def render_l3_nftables(l3: dict[str, Any], with_floating_ips: bool = True) -> str:
    """The whole table, replacing the one there; without the floating IPs it is the table's shape,
    which an associate or disassociate leaves alone."""
    pre: list[str] = []
    post: list[str] = []
    forward: list[str] = []
    gateways = _gateway_routers(l3)
    if gateways:  # the floating IPs' rules: one each way, whatever their number
        pre.append(f"    dnat to ip daddr map @{FIP_DNAT}")
        post.append(f"    snat to oifname . ip saddr map @{FIP_SNAT}")
    # a flow DNAT'd for a floating IP that is no longer associated (to that address) ends at once, even
    # one kept alive since (a steady ping): conntrack would go on translating it
    forward.append(f"    ct status dnat ct original ip daddr . ct reply ip saddr != @{FIP_FLOWS} drop")
    forward.append("    ct state established,related accept")
    for r in l3.get("routers", []):
        inside = sorted({s["bridge"] for s in r["subnets"]})
        if len(inside) > 1:
            names = _set_of(inside)
            forward.append(f"    iifname {{ {names} }} oifname {{ {names} }} accept")
    for r, ext in gateways:
        out = ext["bridge"]
        inside = sorted({s["bridge"] for s in r["subnets"]})
        if r["snat"]:
            post += [f'    oifname "{out}" ip saddr {s["cidr"]} snat to {r["address"]}' for s in r["subnets"]]
        if inside:
            forward.append(f'    iifname {{ {_set_of(inside)} }} oifname "{out}" accept')
            forward.append(f'    iifname "{out}" oifname {{ {_set_of(inside)} }} ct status dnat accept')
    kinds = {FIP_DNAT: "map", FIP_SNAT: "map", FIP_FLOWS: "set"}
    types = {FIP_DNAT: "ipv4_addr : ipv4_addr", FIP_SNAT: "ifname . ipv4_addr : ipv4_addr",
             FIP_FLOWS: "ipv4_addr . ipv4_addr"}
    members: dict[str, list[str]] = {name: [] for name in kinds}
    for rule in floating_rules(l3) if with_floating_ips else []:
        for name, _key, element in _elements(rule):
            members[name].append(element)
    lines = [f"table ip {L3_TABLE} {{}}", f"delete table ip {L3_TABLE}", f"table ip {L3_TABLE} {{"]
    for name, kind in kinds.items():
        lines.append(f"  {kind} {name} {{")
        lines.append(f"    type {types[name]};")
        if members[name]:  # one element a line: an empty `elements = { }` is refused
            lines += ["    elements = {", *(f"      {m}," for m in members[name]), "    }"]
        lines.append("  }")
    lines += ["  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;", *pre, "  }",
              "  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;", *post, "  }",
              "  chain forward {", "    type filter hook forward priority 0; policy drop;", *forward, "  }", "}"]
    return "\n".join(lines) + "\n"


def nat_changes(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """The nft transaction that turns the table of `before` into that of `after` when only floating IPs
    differ (elements out, then in: a floating IP moved to another port is both); None when the table's
    shape changed and it must be rendered whole; "" when nothing changed."""
    if render_l3_nftables(before, False) != render_l3_nftables(after, False):
        return None
    old, new = set(floating_rules(before)), set(floating_rules(after))
    lines = [f"delete element ip {L3_TABLE} {name} {{ {key} }}"
             for rule in sorted(old - new) for name, key, _element in _elements(rule)]
    lines += [f"add element ip {L3_TABLE} {name} {{ {element} }}"
              for rule in sorted(new - old) for name, _key, element in _elements(rule)]
    return "".join(line + "\n" for line in lines)


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


def sync_l3(ipr: Any, l3: dict[str, Any], run: Run, in_ns: Callable[[list[str]], list[str]],
            applied: NatApplied | None = None) -> NatApplied:
    """Make the host's routers look like `l3` (validated): bridges and addresses, routing, NAT. `applied`
    is what the last sync of this process left (None: unknown, so the NAT table is rendered whole)."""
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
    changes = None if applied is None else nat_changes(applied.l3, l3)
    start = time.perf_counter()
    if changes:  # only floating IPs changed: their elements, in one transaction
        done = _nft(in_ns, changes)
        if done.returncode == 0:
            return NatApplied(l3, False, len(changes.splitlines()), time.perf_counter() - start)
        # the table is not what this process left (changed behind its back): reconcile it whole
        LOG.warning("floating IP change refused by nft (%s); rendering the NAT table whole", done.stderr.strip())
    # the first sync, a change of anything else, or none at all (the controller's periodic re-sync): the
    # whole table, atomically, which also restores what was changed behind this process's back
    text = render_l3_nftables(l3)
    _check(_nft(in_ns, text), "load the router NAT rules")
    return NatApplied(l3, True, len(text.splitlines()), time.perf_counter() - start)


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
