"""IPAM and the network controller on a real SQLite cell DB: atomic allocation under
concurrency (two engines = two processes), no leaks over create/delete cycles,
and clear errors that leave nothing half-made."""
from __future__ import annotations

import asyncio
import ipaddress
import uuid as uuidlib
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Connection, func, select

from cells import errors
from cells.conductor.flows.boot import validate_build
from cells.context import RequestContext
from cells.db import instances as idb
from cells.db.engine import Database
from cells.db.schema import create_schema
from cells.network import ipam
from cells.network.controller import NetworkController
from cells.network.instance_ports import release_instance
from cells.network.schema import ip_allocations, ports
from cells.objects.instance import utcnow_iso
from cells.objects.records import PortRecord

DEMO = RequestContext(project="demo", user="u1", roles=("member",))
ALT = RequestContext(project="alt", user="u2", roles=("member",))


@pytest_asyncio.fixture
async def controllers(db_url: str) -> AsyncIterator[tuple[NetworkController, NetworkController]]:
    url = db_url
    await create_schema(url)
    one, two = NetworkController(db_url=url), NetworkController(db_url=url)  # two "processes"
    await one.start()
    await two.start()
    yield one, two
    await one.stop()
    await two.stop()


async def _net(c: NetworkController, ctx: RequestContext, cidr: str, **subnet: Any) -> tuple[str, str]:
    net = await c.network_create(ctx, {"name": f"net-{cidr}"})
    sub = await c.subnet_create(ctx, {"network_id": net["id"], "cidr": cidr, **subnet})
    return net["id"], sub["id"]


async def _count(db: Database, table: Any) -> int:
    return int(await db.read(lambda c: c.execute(select(func.count()).select_from(table)).scalar() or 0))


def test_pools_skip_the_gateway_and_validate() -> None:
    net = ipaddress.ip_network("10.0.0.0/29")
    assert ipam.default_pools(net, ipaddress.ip_address("10.0.0.1")) == [{"start": "10.0.0.2", "end": "10.0.0.6"}]
    assert ipam.pool_size(ipam.default_pools(net, ipaddress.ip_address("10.0.0.3"))) == 5
    with pytest.raises(errors.Invalid, match="overlap"):
        ipam.validate_pools([{"start": "10.0.0.2", "end": "10.0.0.4"}, {"start": "10.0.0.4", "end": "10.0.0.5"}],
                            net, ipaddress.ip_address("10.0.0.1"))
    with pytest.raises(errors.Invalid, match="gateway"):
        ipam.validate_pools([{"start": "10.0.0.1", "end": "10.0.0.4"}], net, ipaddress.ip_address("10.0.0.1"))
    for bad in ("10.0.0.1/24", "300.0.0.0/24", "10.0.0.0/30", "x", 7):
        with pytest.raises(errors.Invalid):
            ipam.parse_cidr(bad)


async def test_concurrent_ports_from_two_processes_never_share_and_the_pool_returns_to_full(
        controllers: tuple[NetworkController, NetworkController]) -> None:
    one, two = controllers
    net_id, sub_id = await _net(one, DEMO, "10.20.0.0/26")  # 61 usable addresses
    full = await one.db.read(lambda c: ipam.free_count(c, sub_id))
    assert full == 61
    for _ in range(3):  # cycles: create 40 at once over both engines, then delete them all at once
        made = await asyncio.gather(*((one if i % 2 else two).port_create(DEMO, {"network_id": net_id})
                                      for i in range(40)))
        addrs = [p["fixed_ips"][0]["ip_address"] for p in made]
        assert len(set(addrs)) == 40
        assert "10.20.0.1" not in addrs  # the gateway is never handed out
        assert await one.db.read(lambda c: ipam.free_count(c, sub_id)) == full - 40
        await asyncio.gather(*((two if i % 2 else one).port_delete(DEMO, p["id"]) for i, p in enumerate(made)))
        assert await one.db.read(lambda c: ipam.free_count(c, sub_id)) == full
    assert await _count(one.db, ip_allocations) == 0


async def test_a_full_subnet_is_409_and_leaves_no_port(controllers: tuple[NetworkController, NetworkController]) -> None:
    one, _ = controllers
    net_id, _ = await _net(one, DEMO, "10.30.0.0/29", allocation_pools=[{"start": "10.30.0.2", "end": "10.30.0.3"}])
    await one.port_create(DEMO, {"network_id": net_id})
    await one.port_create(DEMO, {"network_id": net_id})
    with pytest.raises(errors.IpAddressExhausted) as exc:
        await one.port_create(DEMO, {"network_id": net_id})
    assert exc.value.http_status == 409
    assert await _count(one.db, ports) == 2


async def test_a_taken_or_foreign_address_is_refused(controllers: tuple[NetworkController, NetworkController]) -> None:
    one, _ = controllers
    net_id, _ = await _net(one, DEMO, "10.31.0.0/24")
    await one.port_create(DEMO, {"network_id": net_id, "fixed_ips": [{"ip_address": "10.31.0.50"}]})
    with pytest.raises(errors.Conflict, match="already allocated"):
        await one.port_create(DEMO, {"network_id": net_id, "fixed_ips": [{"ip_address": "10.31.0.50"}]})
    with pytest.raises(errors.Invalid):
        await one.port_create(DEMO, {"network_id": net_id, "fixed_ips": [{"ip_address": "10.99.0.5"}]})
    assert await _count(one.db, ports) == 1


async def test_overlapping_and_invalid_cidrs_are_400_and_make_nothing(
        controllers: tuple[NetworkController, NetworkController]) -> None:
    one, _ = controllers
    await _net(one, DEMO, "10.40.0.0/24")
    other = await one.network_create(ALT, {"name": "alt-net"})
    for cidr in ("10.40.0.128/25", "10.0.0.0/8", "10.40.0.5/24", "banana"):
        with pytest.raises(errors.Invalid) as exc:
            await one.subnet_create(ALT, {"network_id": other["id"], "cidr": cidr})
        assert exc.value.http_status == 400
    assert (await one.network_get(ALT, other["id"]))["subnets"] == []


async def test_another_projects_network_is_invisible_and_not_usable(
        controllers: tuple[NetworkController, NetworkController]) -> None:
    one, _ = controllers
    net_id, _ = await _net(one, DEMO, "10.50.0.0/24")
    with pytest.raises(errors.NetworkNotFound):
        await one.network_get(ALT, net_id)
    with pytest.raises(errors.NetworkNotFound) as exc:  # as Neutron: 404, as for a network that never was
        await one.port_create(ALT, {"network_id": net_id})
    assert exc.value.http_status == 404
    assert net_id not in {n["id"] for n in await one.network_list(ALT)}


async def test_deleting_a_network_with_ports_is_409(controllers: tuple[NetworkController, NetworkController]) -> None:
    one, _ = controllers
    net_id, _ = await _net(one, DEMO, "10.60.0.0/24")
    port = await one.port_create(DEMO, {"network_id": net_id})
    with pytest.raises(errors.NetworkInUse) as exc:
        await one.network_delete(DEMO, net_id)
    assert exc.value.http_status == 409
    await one.port_delete(DEMO, port["id"])
    await one.network_delete(DEMO, net_id)
    with pytest.raises(errors.NetworkNotFound):
        await one.network_get(DEMO, net_id)


async def test_every_project_gets_its_own_default_network_once(
        controllers: tuple[NetworkController, NetworkController]) -> None:
    one, two = controllers
    lists = await asyncio.gather(one.network_list(DEMO), two.network_list(DEMO), one.network_list(ALT))
    demo_nets = {n["id"] for n in lists[0]} | {n["id"] for n in lists[1]}
    assert len(demo_nets) == 1 and lists[0][0]["name"] == "private" and lists[0][0]["is_default"]
    (alt_net,) = lists[2]
    assert alt_net["id"] not in demo_nets
    subnets = await one.subnet_list(DEMO)
    alt_subnets = await one.subnet_list(ALT)
    assert not ipaddress.ip_network(subnets[0]["cidr"]).overlaps(ipaddress.ip_network(alt_subnets[0]["cidr"]))
    assert lists[0][0]["provider:segmentation_id"] != alt_net["provider:segmentation_id"]
    groups = await one.security_group_list(DEMO)
    assert [g["name"] for g in groups] == ["default"]
    ingress = [r for r in groups[0]["security_group_rules"] if r["direction"] == "ingress"]
    assert ingress and all(r["remote_group_id"] == groups[0]["id"] for r in ingress)


def test_round_robin_walk_over_the_pools() -> None:
    ranges = ipam.pool_ranges([{"start": "10.0.0.10", "end": "10.0.0.11"}, {"start": "10.0.0.2", "end": "10.0.0.3"}])
    assert ranges == [(167772162, 167772163), (167772170, 167772171)]
    first = ranges[0][0]
    assert ipam.in_pools(ranges, first + 5) == ranges[1][0]  # between pools: the next pool's first address
    assert ipam.following(ranges, ranges[1][1]) == first  # past the last: wraps to the first
    assert list(ipam.walk(ranges, ranges[1][0])) == [ranges[1][0], ranges[1][1], first, first + 1]
    assert ipam.first_free(ranges, {ranges[1][0], ranges[1][1]}, ranges[1][0]) == first
    assert ipam.first_free(ranges, {first, first + 1, *ranges[1]}, first) is None


async def test_addresses_go_round_robin_and_a_crowded_pool_finds_its_holes(
        controllers: tuple[NetworkController, NetworkController]) -> None:
    one, _ = controllers
    net_id, sub_id = await _net(one, DEMO, "10.32.0.0/27")  # .2-.30: 29 addresses

    def ip(port: PortRecord) -> str:
        return str(port["fixed_ips"][0]["ip_address"])

    a = await one.port_create(DEMO, {"network_id": net_id})
    b = await one.port_create(DEMO, {"network_id": net_id})
    assert (ip(a), ip(b)) == ("10.32.0.2", "10.32.0.3")
    await one.port_delete(DEMO, a["id"])
    assert ip(await one.port_create(DEMO, {"network_id": net_id})) == "10.32.0.4"  # .2 comes back last
    # fill the rest but .20 by hand: the cursor (.5) then meets a long run of taken addresses
    for n in range(5, 31):
        if n != 20:
            await one.port_create(DEMO, {"network_id": net_id, "fixed_ips": [{"ip_address": f"10.32.0.{n}"}]})
    assert ip(await one.port_create(DEMO, {"network_id": net_id})) == "10.32.0.20"
    assert ip(await one.port_create(DEMO, {"network_id": net_id})) == "10.32.0.2"  # wrapped to the released one
    with pytest.raises(errors.IpAddressExhausted):
        await one.port_create(DEMO, {"network_id": net_id})
    assert await one.db.read(lambda c: ipam.free_count(c, sub_id)) == 0


def _insert_instances(rows: list[dict[str, Any]], conn: Connection) -> None:
    conn.execute(idb.INSERT, rows)


async def test_many_boots_and_deletes_return_the_pool_to_full(
        controllers: tuple[NetworkController, NetworkController]) -> None:
    """allocate_for_instance / release_instance, as the boot and delete flows run them, over
    two engines at once, for more cycles than the pool has addresses: nothing leaks, nothing is shared."""
    one, two = controllers
    net_id, sub_id = await _net(one, DEMO, "10.33.0.0/28")  # 13 addresses
    full = await one.db.read(lambda c: ipam.free_count(c, sub_id))
    for cycle in range(4):
        uuids = [str(uuidlib.uuid4()) for _ in range(10)]
        records = [{"uuid": u, "name": f"c{cycle}-{i}", "project_id": "demo", "flavor": {"vcpus": 1, "ram": 64}}
                   for i, u in enumerate(uuids)]
        await one.db.write(partial(_insert_instances, validate_build(records, {}, utcnow_iso(), "test")))
        made = await asyncio.gather(*((one if i % 2 else two).allocate_for_instance(
            DEMO, u, "demo", [{"uuid": net_id}], None) for i, u in enumerate(uuids)))
        addrs = [a for m in made for ips in m.values() for a in (ip["addr"] for ip in ips)]
        assert len(addrs) == len(set(addrs)) == 10
        await asyncio.gather(*((two if i % 2 else one).db.write(partial(release_instance, uuid=u))
                               for i, u in enumerate(uuids)))
        assert await one.db.read(lambda c: ipam.free_count(c, sub_id)) == full
    assert await _count(one.db, ip_allocations) == 0 and await _count(one.db, ports) == 0
