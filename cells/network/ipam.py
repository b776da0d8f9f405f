"""IP address management in the cell DB.

Allocation and release run inside the caller's write transaction (one unit of
work with the port they belong to), so a failed port create leaves no address
behind and a deleted port frees its addresses in the same commit. The primary
key (subnet_id, address) makes a double hand-out impossible even on a backend
whose writers run concurrently (PostgreSQL): a losing insert raises
IntegrityError inside a SAVEPOINT and the next free address is tried.

Pure helpers (pools, CIDR checks) are tested without a database.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from cells import errors
from cells.network.schema import ip_allocations, subnets

MAX_RACE_RETRIES = 16
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- pure ------------------------------------------------------------------

def parse_cidr(cidr: Any) -> IPNetwork:
    """A subnet CIDR, strict (host bits must be zero), with room for a gateway and one guest."""
    if not isinstance(cidr, str):
        raise errors.Invalid(reason=f"cidr must be a string like 10.0.0.0/24, not {cidr!r}")
    try:
        net = ipaddress.ip_network(cidr.strip(), strict=True)
    except ValueError as exc:
        raise errors.Invalid(reason=f"invalid cidr {cidr!r}: {exc}") from None
    if net.version == 4 and net.prefixlen > 29:
        raise errors.Invalid(reason=f"cidr {cidr} is too small: a /29 or larger is needed")
    if net.version == 6 and net.prefixlen > 125:
        raise errors.Invalid(reason=f"cidr {cidr} is too small")
    return net


def parse_address(value: Any, net: IPNetwork, what: str) -> IPAddress:
    try:
        addr = ipaddress.ip_address(str(value))
    except ValueError:
        raise errors.Invalid(reason=f"{what} {value!r} is not an IP address") from None
    if addr not in net or addr in (net.network_address, net.broadcast_address):
        raise errors.Invalid(reason=f"{what} {addr} is not a usable address of {net}")
    return addr


def default_pools(net: IPNetwork, gateway: IPAddress | None) -> list[dict[str, str]]:
    """Every host address but the gateway, as Neutron: one or two ranges around the gateway."""
    first, last = int(net.network_address) + 1, int(net.broadcast_address) - (1 if net.version == 4 else 0)
    gw = None if gateway is None else int(gateway)

    def text(n: int) -> str:
        return str(ipaddress.ip_address(n))

    if gw is None or gw < first or gw > last:
        return [{"start": text(first), "end": text(last)}]
    pools = []
    if gw > first:
        pools.append({"start": text(first), "end": text(gw - 1)})
    if gw < last:
        pools.append({"start": text(gw + 1), "end": text(last)})
    return pools


def validate_pools(raw: Any, net: IPNetwork, gateway: IPAddress | None) -> list[dict[str, str]]:
    if raw is None:
        return default_pools(net, gateway)
    if not isinstance(raw, list) or not raw:
        raise errors.Invalid(reason="allocation_pools must be a non-empty list of {start, end}")
    pools: list[tuple[int, int]] = []
    gw = None if gateway is None else int(gateway)
    for pool in raw:
        if not isinstance(pool, dict) or set(pool) != {"start", "end"}:
            raise errors.Invalid(reason="each allocation pool must be {start, end}")
        start = int(parse_address(pool["start"], net, "allocation pool start"))
        end = int(parse_address(pool["end"], net, "allocation pool end"))
        if end < start:
            raise errors.Invalid(reason=f"allocation pool {pool['start']}-{pool['end']}: end is before start")
        if gw is not None and start <= gw <= end:
            raise errors.Invalid(reason=f"gateway {gateway} is inside allocation pool {pool['start']}-{pool['end']}")
        for s, e in pools:
            if start <= e and s <= end:
                raise errors.Invalid(reason=f"allocation pools {ipaddress.ip_address(s)}-{ipaddress.ip_address(e)} and {pool['start']}-{pool['end']} overlap")
        pools.append((start, end))
    return [{"start": str(ipaddress.ip_address(s)), "end": str(ipaddress.ip_address(e))} for s, e in sorted(pools)]


def pool_size(pools: Sequence[dict[str, str]]) -> int:
    return sum(int(ipaddress.ip_address(p["end"])) - int(ipaddress.ip_address(p["start"])) + 1 for p in pools)


def candidates(pools: Sequence[dict[str, str]], used: set[str]) -> Iterator[str]:
    """Free addresses in pool order (lowest first: a released address is reused first)."""
    for pool in pools:
        start, end = int(ipaddress.ip_address(pool["start"])), int(ipaddress.ip_address(pool["end"]))
        for n in range(start, end + 1):
            text = str(ipaddress.ip_address(n))
            if text not in used:
                yield text


def overlapping(cidr: IPNetwork, others: Sequence[str]) -> str | None:
    for other in others:
        o = ipaddress.ip_network(other)
        if o.version == cidr.version and o.overlaps(cidr):
            return other
    return None


# --- in a write transaction ------------------------------------------------------

def used_addresses(conn: Connection, subnet_id: str) -> set[str]:
    rows = conn.execute(select(ip_allocations.c.address).where(ip_allocations.c.subnet_id == subnet_id))
    return {str(r[0]) for r in rows}


def allocate(conn: Connection, subnet: Any, port_id: str, address: str | None = None) -> str:
    """One address of `subnet` (a row) for `port_id`; `address` asks for a specific one.
    Raises IpAddressExhausted when the pools are full, Conflict when `address` is taken."""
    net = ipaddress.ip_network(subnet.cidr)
    values = {"subnet_id": subnet.id, "port_id": port_id, "network_id": subnet.network_id}
    if address is not None:
        wanted = str(parse_address(address, net, "ip_address"))
        if subnet.gateway_ip and wanted == subnet.gateway_ip:
            raise errors.Conflict(reason=f"IP address {wanted} is the gateway of subnet {subnet.id}")
        if not _insert(conn, {**values, "address": wanted}):
            raise errors.Conflict(reason=f"IP address {wanted} already allocated in subnet {subnet.id}")
        return wanted
    for _ in range(MAX_RACE_RETRIES):
        free = next(candidates(subnet.allocation_pools, used_addresses(conn, subnet.id)), None)
        if free is None:
            raise errors.IpAddressExhausted(net_id=subnet.network_id)
        if _insert(conn, {**values, "address": free}):
            return free
    raise errors.IpAddressExhausted(net_id=subnet.network_id)


def _insert(conn: Connection, values: dict[str, Any]) -> bool:
    """Insert in a SAVEPOINT: a unique violation (someone else took it) undoes only this row."""
    try:
        with conn.begin_nested():
            conn.execute(insert(ip_allocations), values)
    except IntegrityError:
        return False
    return True


def release_port(conn: Connection, port_id: str) -> int:
    return conn.execute(delete(ip_allocations).where(ip_allocations.c.port_id == port_id)).rowcount


def port_ips(conn: Connection, port_ids: Sequence[str]) -> dict[str, list[dict[str, str]]]:
    """port id -> [{"subnet_id", "ip_address"}] (Neutron's fixed_ips)."""
    out: dict[str, list[dict[str, str]]] = {p: [] for p in port_ids}
    if not port_ids:
        return out
    rows = conn.execute(select(ip_allocations).where(ip_allocations.c.port_id.in_(list(port_ids)))
                        .order_by(ip_allocations.c.subnet_id, ip_allocations.c.address))
    for r in rows:
        out.setdefault(r.port_id, []).append({"subnet_id": r.subnet_id, "ip_address": r.address})
    return out


def free_count(conn: Connection, subnet_id: str) -> int:
    row = conn.execute(select(subnets).where(subnets.c.id == subnet_id)).first()
    if row is None:
        raise errors.SubnetNotFound(subnet_id=subnet_id)
    return pool_size(row.allocation_pools) - len(used_addresses(conn, subnet_id))
