"""Who may set which network field, and which values are acceptable at all (pure: no I/O).

Neutron's default policy, as this cloud applies it: a project member creates
networks, subnets and ports of its own, but the fields that say where a port is
plugged or how a network is wired are for admins and for the boot flow (which
runs as a service):
  create_port:binding:host_id / binding:profile        admin only (Neutron's too)
  create_network:provider:* / router:external / shared admin only (Neutron's too)
  port device_owner compute:* / network:*, device_id   admin or the boot flow (stricter than
                                                        Neutron, which trusts the owner: here a
                                                        device_id puts the port into a server's
                                                        addresses and onto its host)
A refusal is Forbidden (403 PolicyNotAuthorized), raised before anything is written.

Values: a MAC is six hex octets, unicast, and is stored lower case; a subnet may not
cover loopback, link-local, multicast, reserved space, the cluster's own addresses or
its netns range, nor be shorter than the configured prefix.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cells import errors
from cells.context import RequestContext

MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
DEFAULT_NETNS_RANGE = "10.250.0.0/16"  # cluster.yaml's netns.range default
DEFAULT_MIN_PREFIX = 16  # a /15 or wider is refused: one tenant must not claim a sixteenth of 10/8
PRIVILEGED_DEVICE_OWNERS = ("compute:", "network:")  # what the boot flow and the network service set
# a port's fields only admins (and the boot flow, a service) may set
PORT_ADMIN_FIELDS = ("binding:host_id", "binding:profile", "device_id")
NETWORK_ADMIN_PREFIXES = ("provider:",)
NETWORK_ADMIN_FIELDS = ("router:external", "shared", "is_default")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# address space no tenant subnet may touch, whatever the cluster
ALWAYS_RESERVED: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8",  # "this network"
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local: the metadata service's 169.254.169.254 lives here
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the limited broadcast 255.255.255.255
    "::/128", "::1/128", "fe80::/10", "ff00::/8",
))


def privileged(ctx: RequestContext) -> bool:
    """Admins and services (the boot flow, agents); a context without a project is a service's."""
    return ctx.is_admin or "service" in ctx.roles or ctx.project is None


def _refuse(action: str, field: str) -> errors.Forbidden:
    return errors.Forbidden(f"(rule:{action} and rule:{action}:{field}) is disallowed by policy")


def normalize_mac(value: Any) -> str:
    """Six hex octets separated by ':', unicast (the low bit of the first octet clear); lower case."""
    if not isinstance(value, str) or not MAC_RE.match(value):
        raise errors.Invalid(reason=f"'{value}' is not a valid MAC address")
    mac = value.lower()
    first = int(mac[:2], 16)
    if first & 1:
        raise errors.Invalid(reason=f"'{value}' is not a valid MAC address: it is a multicast address")
    if mac == "00:00:00:00:00:00":
        raise errors.Invalid(reason=f"'{value}' is not a valid MAC address")
    return mac


def is_valid_mac(value: Any) -> bool:
    try:
        normalize_mac(value)
    except errors.Invalid:
        return False
    return True


def check_network_fields(ctx: RequestContext, body: Mapping[str, Any], action: str = "create_network") -> None:
    """403 when a member names a wiring field of a network (create, or an update's changed fields)."""
    if privileged(ctx):
        return
    for key in sorted(body):
        if key.startswith(NETWORK_ADMIN_PREFIXES) or key in NETWORK_ADMIN_FIELDS:
            if key in ("shared", "is_default", "router:external") and body[key] in (False, None):
                continue  # saying "not shared" asks for nothing
            raise _refuse(action, key)


def check_port_fields(ctx: RequestContext, body: Mapping[str, Any], action: str,
                      current: Mapping[str, Any] | None = None) -> None:
    """403 when a member sets where a port is plugged (create, or update to a new value).
    `current`: the port's record on update (a field sent back unchanged asks for nothing)."""
    if privileged(ctx):
        return
    for key in sorted(body):
        value = body[key]
        if current is not None and current.get(key) == value:
            continue
        if key.startswith("binding:") and key != "binding:vnic_type" or key in PORT_ADMIN_FIELDS:
            if action == "create_port" and value in ("", None, {}):
                continue  # an empty value asks for nothing
            raise _refuse(action, key)
        if key == "device_owner" and isinstance(value, str) and value.startswith(PRIVILEGED_DEVICE_OWNERS):
            raise _refuse(action, key)


def check_unsupported_binding(body: Mapping[str, Any]) -> None:
    """Binding values this cloud cannot honour are 400, not stored and ignored."""
    vnic = body.get("binding:vnic_type")
    if vnic not in (None, "normal"):
        raise errors.Invalid(reason=f"binding:vnic_type {vnic!r} is not supported here (supported: normal)")
    if body.get("binding:profile") not in (None, {}):
        raise errors.Invalid(reason="binding:profile is not supported by this cloud")


@dataclass(frozen=True)
class SubnetPolicy:
    """What a subnet may cover in this cloud: built once by the controller from cluster.json."""
    reserved: tuple[Network, ...] = field(default_factory=lambda: tuple(reserved_ranges(DEFAULT_NETNS_RANGE, ())))
    min_prefix: int = DEFAULT_MIN_PREFIX

    def check(self, cidr: Network) -> None:
        check_subnet_cidr(cidr, self.reserved, self.min_prefix)

    def allows(self, cidr: Network) -> bool:
        return not any(net.version == cidr.version and net.overlaps(cidr) for net in self.reserved)


def reserved_ranges(netns_range: str | None, addresses: Iterable[str]) -> list[Network]:
    """ALWAYS_RESERVED plus the cluster's own: its netns range and every host and service address."""
    out = list(ALWAYS_RESERVED)
    if netns_range:
        out.append(ipaddress.ip_network(netns_range, strict=False))
    for addr in addresses:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            continue  # a DNS name: nothing to reserve by number
        out.append(ipaddress.ip_network(ip))
    return out


def check_subnet_cidr(cidr: Network, reserved: Iterable[Network], min_prefix: int) -> None:
    """400 when a tenant subnet is too wide or covers space the cloud itself uses."""
    if cidr.version == 4 and cidr.prefixlen < min_prefix:
        raise errors.Invalid(reason=f"cidr {cidr} is too large: the shortest prefix allowed here is /{min_prefix}")
    if cidr.version == 6 and cidr.prefixlen < 64:
        raise errors.Invalid(reason=f"cidr {cidr} is too large: the shortest IPv6 prefix allowed here is /64")
    for net in reserved:
        if net.version == cidr.version and net.overlaps(cidr):
            raise errors.Invalid(reason=f"cidr {cidr} overlaps {net}, which this cloud reserves "
                                        "(loopback, link-local, multicast, reserved space or its own networks)")
