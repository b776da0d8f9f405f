"""IP address management in the cell DB.

Allocation and release run inside the caller's write transaction (one unit of
work with the port they belong to), so a failed port create leaves no address
behind and a deleted port frees its addresses in the same commit. The primary
key (subnet_id, address) makes a double hand-out impossible even on a backend
whose writers run concurrently (PostgreSQL): each claim is one conditional
INSERT (ON CONFLICT DO NOTHING) and a lost race just tries the next address.

Allocation is O(1) statements: a per-subnet cursor (ip_cursors) names the next
candidate, handed out round-robin through the pools, so a released address comes
back last (as Linux PIDs; a guest's stale ARP and DHCP entries age out meanwhile).
Only a crowded pool (FAST_PROBES candidates in a row taken) reads the subnet's
addresses once to find the next free one, and only that says "exhausted".

Pure helpers (pools, CIDR checks, the round-robin walk) are tested without a database.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from cells import errors
from cells.db.fast import AnyRow, Fast
from cells.network.schema import ip_allocations, ip_cursors, subnets
from cells.objects.records import FixedIp

MAX_RACE_RETRIES = 16
FAST_PROBES = 8  # taken candidates in a row before one read of the subnet's addresses
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


MAX_HOST_ROUTES = 20  # Neutron's max_subnet_host_routes default


def validate_host_routes(raw: Any, net: IPNetwork) -> list[dict[str, str]]:
    """A subnet's host_routes as Neutron validates them: at most 20 distinct {destination, nexthop},
    the destination a CIDR without host bits and the next hop an address, both of the subnet's version."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_HOST_ROUTES:
        raise errors.Invalid(reason=f"host_routes must be a list of at most {MAX_HOST_ROUTES} routes")
    routes: list[dict[str, str]] = []
    for route in raw:
        if not isinstance(route, dict) or set(route) != {"destination", "nexthop"}:
            raise errors.Invalid(reason="each host route must be {destination, nexthop}")
        try:
            dest = ipaddress.ip_network(str(route["destination"]), strict=True)
            hop = ipaddress.ip_address(str(route["nexthop"]))
        except ValueError as exc:
            raise errors.Invalid(reason=f"Invalid data format for hostroute: {route!r} ({exc})") from None
        if dest.version != net.version or hop.version != net.version:
            raise errors.Invalid(reason=f"host route {route!r} is not IPv{net.version}, as subnet {net}")
        clean = {"destination": str(dest), "nexthop": str(hop)}
        if clean in routes:
            raise errors.Invalid(reason=f"Duplicate hostroute '{dest} {hop}'")
        routes.append(clean)
    return routes


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


Ranges = list[tuple[int, int]]


def pool_ranges(pools: Sequence[dict[str, str]]) -> Ranges:
    """The pools as sorted (first, last) integer ranges."""
    return sorted((int(ipaddress.ip_address(p["start"])), int(ipaddress.ip_address(p["end"]))) for p in pools)


def in_pools(ranges: Ranges, n: int) -> int:
    """`n` if it lies in a pool, else the next pool address after it (wrapping to the first)."""
    for first, last in ranges:
        if n <= last:
            return max(n, first)
    return ranges[0][0]


def following(ranges: Ranges, n: int) -> int:
    """The pool address after `n`, round-robin."""
    return in_pools(ranges, n + 1)


def walk(ranges: Ranges, start: int) -> Iterator[int]:
    """Every pool address once, from `start` (a pool address) round-robin."""
    n = start
    for _ in range(sum(last - first + 1 for first, last in ranges)):
        yield n
        n = following(ranges, n)


def first_free(ranges: Ranges, used: set[int], start: int) -> int | None:
    """The first address not in `used`, walking from `start`; None when every one is taken."""
    return next((n for n in walk(ranges, start) if n not in used), None)


def overlapping(cidr: IPNetwork, others: Sequence[str]) -> str | None:
    for other in others:
        o = ipaddress.ip_network(other)
        if o.version == cidr.version and o.overlaps(cidr):
            return other
    return None


# --- in a write transaction ------------------------------------------------------

_SUBNETS = Fast(select(subnets, ip_cursors.c.next_address)
                .outerjoin(ip_cursors, ip_cursors.c.subnet_id == subnets.c.id)
                .where(subnets.c.network_id == bindparam("b_network")).order_by(subnets.c.created_at))
_MOVE_CURSOR = Fast(update(ip_cursors).where(ip_cursors.c.subnet_id == bindparam("b_subnet")))
# conditional INSERTs by (dialect, table): a row whose key is taken inserts nothing (rowcount 0)
_UNLESS_TAKEN: dict[tuple[str, str], Fast | None] = {}


def _conditional_insert(dialect: str, table: Table) -> Any:
    if dialect == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing()
    if dialect == "postgresql":  # psycopg reports no rowcount for an INSERT: the row it returns says it
        return pg_insert(table).on_conflict_do_nothing().returning(*table.primary_key.columns)
    return None


def used_addresses(conn: Connection, subnet_id: str) -> set[str]:
    rows = conn.execute(select(ip_allocations.c.address).where(ip_allocations.c.subnet_id == subnet_id))
    return {str(r[0]) for r in rows}


def network_subnets(conn: Connection, network_id: str) -> list[AnyRow]:
    """The network's subnets, oldest first, each with its cursor (`next_address`) for `allocate`."""
    return _SUBNETS.rows(conn, {"b_network": network_id})


def allocate(conn: Connection, subnet: Any, port_id: str, address: str | None = None) -> str:
    """One address of `subnet` (a row of network_subnets) for `port_id`; `address` asks for a
    specific one. Raises IpAddressExhausted when the pools are full, Conflict when `address` is taken."""
    net = ipaddress.ip_network(subnet.cidr)
    values = {"subnet_id": subnet.id, "port_id": port_id, "network_id": subnet.network_id}
    if address is not None:
        wanted = str(parse_address(address, net, "ip_address"))
        if subnet.gateway_ip and wanted == subnet.gateway_ip:
            raise errors.Conflict(reason=f"IP address {wanted} is the gateway of subnet {subnet.id}")
        if not insert_unless_taken(conn, ip_allocations, {**values, "address": wanted}):
            raise errors.Conflict(reason=f"IP address {wanted} already allocated in subnet {subnet.id}")
        return wanted
    ranges = pool_ranges(subnet.allocation_pools)
    cursor = subnet.next_address
    n = in_pools(ranges, int(ipaddress.ip_address(cursor)) if cursor else ranges[0][0])
    for probe in range(FAST_PROBES + MAX_RACE_RETRIES):
        if probe >= FAST_PROBES:  # crowded: read what is taken once, go to the next free one
            used = {int(ipaddress.ip_address(a)) for a in used_addresses(conn, subnet.id)}
            free = first_free(ranges, used, n)
            if free is None:
                raise errors.IpAddressExhausted(net_id=subnet.network_id)
            n = free
        text = str(ipaddress.ip_address(n))
        if insert_unless_taken(conn, ip_allocations, {**values, "address": text}):
            _move_cursor(conn, subnet.id, str(ipaddress.ip_address(following(ranges, n))))
            return text
        n = following(ranges, n)  # taken (or lost a race): the next candidate
    raise errors.IpAddressExhausted(net_id=subnet.network_id)


def insert_unless_taken(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """Insert the row unless a unique key of it is taken (one statement, no savepoint on SQLite
    and PostgreSQL); True when this call inserted it."""
    key = (conn.dialect.name, table.name)
    if key not in _UNLESS_TAKEN:
        stmt = _conditional_insert(conn.dialect.name, table)  # built once, so its SQL is cached
        _UNLESS_TAKEN[key] = None if stmt is None else Fast(stmt)
    fast = _UNLESS_TAKEN[key]
    if fast is not None and key[0] == "postgresql":
        return fast.first(conn, values) is not None
    if fast is not None:
        return bool(fast.run(conn, values))
    try:  # another backend: the unique violation undoes only this row, in a SAVEPOINT
        with conn.begin_nested():
            conn.execute(insert(table), values)
    except IntegrityError:
        return False
    return True


def _move_cursor(conn: Connection, subnet_id: str, next_address: str) -> None:
    if not _MOVE_CURSOR.run(conn, {"b_subnet": subnet_id, "next_address": next_address}):
        # the subnet's first allocation; a concurrent one may make the row first: a hint either way
        insert_unless_taken(conn, ip_cursors, {"subnet_id": subnet_id, "next_address": next_address})


def release_port(conn: Connection, port_id: str) -> int:
    return conn.execute(delete(ip_allocations).where(ip_allocations.c.port_id == port_id)).rowcount


def port_ips(conn: Connection, port_ids: Sequence[str]) -> dict[str, list[FixedIp]]:
    """port id -> [{"subnet_id", "ip_address"}] (Neutron's fixed_ips)."""
    out: dict[str, list[FixedIp]] = {p: [] for p in port_ids}
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
    used = conn.execute(select(func.count()).select_from(ip_allocations)
                        .where(ip_allocations.c.subnet_id == subnet_id)).scalar()
    return pool_size(row.allocation_pools) - int(used or 0)


def forget_subnets(conn: Connection, subnet_ids: Sequence[str]) -> None:
    """Drop the subnets' cursors (before their rows go)."""
    conn.execute(delete(ip_cursors).where(ip_cursors.c.subnet_id.in_(list(subnet_ids))))
