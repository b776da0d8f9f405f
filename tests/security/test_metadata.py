"""The metadata service answers each guest about itself only. Real pieces: a cell's conductor over
ZeroMQ (tests/unit/test_conductor.py's Cell), the port table filled by the boot flow's own
functions, node/network/metadata.MetadataServer with a listener per network bound to its bridge,
inside a network namespace this test makes; guests are namespaces on veths into the bridges, asking
with curl.

Two guests on different networks with the same IP each get their own data; an address no port
holds gets 404, as do stale and ambiguous matches; a flood from one source is answered 429 while
the other network's guest is still served."""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid as uuidlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Connection, insert, select, update

from cells import errors
from cells.context import RequestContext, admin_context
from cells.db.schema import instances
from cells.network import instance_ports, resources
from cells.network.schema import ip_allocations, networks, ports, subnets
from cells.objects.instance import VmState
from node.network import metadata
from tests.unit.test_conductor import Cell, cell_fixture

cell = pytest.fixture(cell_fixture({"node1": "ok"}))
TAG = uuidlib.uuid4().hex[:5]
HOST = f"ccmd-{TAG}"
SHARED_IP = "10.9.0.5"
URL = f"http://{metadata.METADATA_ADDRESS}/openstack/latest/meta_data.json"


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=False, capture_output=True, text=True, timeout=30)


def must(*argv: str) -> None:
    done = sh(*argv)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"


@dataclass
class Guest:
    ns: str
    uuid: str | None  # the server it is, None for an address no port holds
    network: str


async def _network(c: Cell, project: str, cidr: str, copy_of: str | None = None) -> str:
    """A network of `project` with a subnet on `cidr`. The API refuses overlapping subnets in a cell;
    `copy_of` (a network id) writes the same subnet row again on the new network, as two cells could
    hold it, because the lookup must not depend on that refusal."""
    ctx = RequestContext(project=project, roles=("service",))

    def make(conn: Connection) -> str:
        net = resources.create_network(conn, ctx, {"name": f"net-{project}"})
        if copy_of is None:
            resources.create_subnet(conn, ctx, {"network_id": net["id"], "cidr": cidr})
        else:
            row = conn.execute(select(subnets).where(subnets.c.network_id == copy_of)).one()._mapping
            conn.execute(insert(subnets), {**row, "id": str(uuidlib.uuid4()), "network_id": net["id"],
                                           "project_id": project})
        return str(net["id"])
    return await c.db.write(make)


async def _server_on(c: Cell, project: str, network: str, ip: str) -> str:
    rec = await c.boot(f"vm-{project}", project=project)
    await c.wait_state(rec["uuid"], VmState.ACTIVE)

    def plug(conn: Connection) -> None:  # the boot flow's network steps
        instance_ports.allocate_for_instance(conn, rec["uuid"], project, [{"uuid": network, "fixed_ip": ip}], None)
        instance_ports.bind_instance(conn, rec["uuid"], "node1")
    await c.db.write(plug)
    return str(rec["uuid"])


@pytest.fixture
def host_ns() -> Iterator[str]:
    if not shutil.which("curl"):
        pytest.skip("needs curl for the guests' requests")
    made = sh("ip", "netns", "add", HOST)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        must("ip", "-n", HOST, "link", "set", "lo", "up")
        must("ip", "netns", "exec", HOST, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
        yield HOST
    finally:
        for ns in sh("ip", "netns", "list").stdout.split():
            if ns.startswith(f"ccmdg{TAG}"):
                sh("ip", "netns", "del", ns)
        sh("ip", "netns", "del", HOST)


def _bridge(network: str) -> None:
    br = instance_ports.bridge_name(network)
    must("ip", "-n", HOST, "link", "add", br, "type", "bridge")
    must("ip", "-n", HOST, "addr", "add", "10.9.0.1/24", "dev", br)  # both networks' gateway: same address
    must("ip", "-n", HOST, "link", "set", br, "up")


def _guest(name: str, network: str, ip: str) -> str:
    ns = f"ccmdg{TAG}{name}"
    must("ip", "netns", "add", ns)
    must("ip", "link", "add", f"v{TAG}{name}", "netns", HOST, "type", "veth", "peer", "name", "eth0", "netns", ns)
    must("ip", "-n", HOST, "link", "set", f"v{TAG}{name}", "master", instance_ports.bridge_name(network), "up")
    for argv in (("link", "set", "lo", "up"), ("link", "set", "eth0", "up"), ("addr", "add", f"{ip}/24", "dev", "eth0"),
                 ("route", "add", "default", "via", "10.9.0.1")):
        must("ip", "-n", ns, *argv)
    return ns


async def fetch(ns: str, url: str = URL) -> tuple[int, str]:
    """(HTTP status, body) of a GET from inside the guest namespace `ns`."""
    done = await asyncio.get_running_loop().run_in_executor(
        None, sh, "ip", "netns", "exec", ns, "curl", "-s", "-m", "5", "-w", "\n%{http_code}", url)
    body, _, status = done.stdout.rpartition("\n")
    return int(status or 0), body


@pytest.fixture
async def scene(cell: Cell, host_ns: str) -> AsyncIterator[tuple[metadata.MetadataServer, dict[str, Guest]]]:
    net_a = await _network(cell, "p1", "10.9.0.0/24")
    net_b = await _network(cell, "p2", "10.9.0.0/24", copy_of=net_a)
    guests = {"a": Guest("", await _server_on(cell, "p1", net_a, SHARED_IP), net_a),
              "b": Guest("", await _server_on(cell, "p2", net_b, SHARED_IP), net_b),
              "stranger": Guest("", None, net_a)}
    loop = asyncio.get_running_loop()
    for net in (net_a, net_b):
        await loop.run_in_executor(None, _bridge, net)
    for name, ip in (("a", SHARED_IP), ("b", SHARED_IP), ("stranger", "10.9.0.9")):
        guests[name].ns = await loop.run_in_executor(None, _guest, name[0], guests[name].network, ip)
    server = metadata.MetadataServer(cell.conductor, netns=host_ns, rate=0.5, burst=6)
    await server.ensure([(net_a, instance_ports.bridge_name(net_a)), (net_b, instance_ports.bridge_name(net_b))])
    try:
        yield server, guests
    finally:
        await server.stop()


@pytest.mark.slow
async def test_each_guest_gets_its_own_data_a_stranger_nothing_and_a_flood_429(
        scene: tuple[metadata.MetadataServer, dict[str, Guest]]) -> None:
    _, guests = scene
    for name in ("a", "b"):  # the same source IP on two networks: each its own server
        status, body = await fetch(guests[name].ns)
        assert status == 200, body
        assert json.loads(body)["uuid"] == guests[name].uuid
    assert (await fetch(guests["stranger"].ns))[0] == 404

    statuses = [(await fetch(guests["a"].ns))[0] for _ in range(10)]  # 5 tokens left, 0.5 more per second
    assert statuses.count(429) >= 4 and set(statuses) <= {200, 429}, statuses
    status, body = await fetch(guests["b"].ns)  # another source, another network: still served
    assert status == 200 and json.loads(body)["uuid"] == guests["b"].uuid


async def test_the_lookup_refuses_stale_and_ambiguous_matches(cell: Cell) -> None:
    """Through the conductor: a port whose server is deleted, a port left unbound, a port of another
    project than its server, and two ports holding one address on one network all answer 404."""
    net = await _network(cell, "p1", "10.8.0.0/24")
    uuid = await _server_on(cell, "p1", net, "10.8.0.5")
    ask = cell.conductor.instance_for_metadata
    assert (await ask(admin_context(), net, "10.8.0.5"))["uuid"] == uuid
    with pytest.raises(errors.InstanceNotFound):  # the right address on another network is not it
        await ask(admin_context(), str(uuidlib.uuid4()), "10.8.0.5")
    with pytest.raises(errors.Forbidden):  # tenants do not look guests up
        await ask(RequestContext(project="p1", roles=("member",)), net, "10.8.0.5")

    async def after(change: Any) -> None:
        await cell.db.write(change)
        with pytest.raises(errors.InstanceNotFound):
            await ask(admin_context(), net, "10.8.0.5")

    def port_id(conn: Connection) -> str:
        return str(conn.execute(select(ports.c.id).where(ports.c.device_id == uuid)).scalar_one())

    def unbind(conn: Connection) -> None:
        conn.execute(update(ports).where(ports.c.id == port_id(conn)).values(binding_host=None))
    await after(unbind)

    def other_project(conn: Connection) -> None:
        conn.execute(update(ports).where(ports.c.id == port_id(conn)).values(binding_host="node1", project_id="p2"))
    await after(other_project)

    def ambiguous(conn: Connection) -> None:  # restore, then a second port claims the address on another subnet
        conn.execute(update(ports).where(ports.c.id == port_id(conn)).values(project_id="p1"))
        twin = resources.new_port(conn, conn.execute(select(networks).where(networks.c.id == net)).one(), "p1", [],
                                  device_id=uuid, device_owner="compute:nova", binding_host="node1")
        other_subnet = str(uuidlib.uuid4())
        sub = conn.execute(select(subnets).where(subnets.c.network_id == net)).one()._mapping
        conn.execute(insert(subnets), {**sub, "id": other_subnet})
        conn.execute(update(ip_allocations).where(ip_allocations.c.port_id == twin)
                     .values(subnet_id=other_subnet, address="10.8.0.5"))
    await after(ambiguous)

    await cell.conductor.instance_delete(admin_context(), uuid)
    await cell.wait_state(uuid, VmState.DELETED)
    with pytest.raises(errors.InstanceNotFound):
        await ask(admin_context(), net, "10.8.0.5")


def test_the_rate_limiter_is_a_token_bucket_per_source() -> None:
    now = [0.0]
    limiter = metadata.RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.allow("10.0.0.5") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("10.0.0.6")  # another source has its own bucket
    now[0] += 0.5  # one token back
    assert [limiter.allow("10.0.0.5") for _ in range(2)] == [True, False]
    now[0] += 100.0
    assert [limiter.allow("10.0.0.5") for _ in range(4)] == [True, True, True, False]  # never above the burst


def test_forged_sources_do_not_grow_the_limiter_without_bound() -> None:
    now = [0.0]
    limiter = metadata.RateLimiter(rate=1.0, burst=2, clock=lambda: now[0])
    for i in range(3 * limiter.MAX_KEYS):
        now[0] += 0.01
        limiter.allow(f"k{i}")
    assert len(limiter._buckets) <= limiter.MAX_KEYS + 1


async def test_the_address_only_lookup_refuses_an_address_two_servers_hold(cell: Cell) -> None:
    """instance_by_address (operators' lookup) answers only when exactly one live server holds the IP."""
    one, two = await cell.boot("one"), await cell.boot("two")
    for rec in (one, two):
        await cell.wait_state(rec["uuid"], VmState.ACTIVE)
    addresses = {"private": [{"addr": "10.7.0.5", "version": 4, "OS-EXT-IPS:type": "fixed"}]}
    await cell.db.write(lambda conn: conn.execute(update(instances).where(instances.c.uuid == one["uuid"])
                                                  .values(addresses=addresses)))
    assert (await cell.conductor.instance_by_address(admin_context(), "10.7.0.5"))["uuid"] == one["uuid"]
    await cell.db.write(lambda conn: conn.execute(update(instances).where(instances.c.uuid == two["uuid"])
                                                  .values(addresses=addresses)))
    with pytest.raises(errors.InstanceNotFound):
        await cell.conductor.instance_by_address(admin_context(), "10.7.0.5")


async def test_a_guest_posts_its_password_once_and_its_users_read_and_clear_it(cell: Cell) -> None:
    """os-server-password: the guest (its network and address) stores a password once (409 after, 400 past
    256 bytes, over the metadata service's HTTP too); the server's project reads it, a stranger gets 404,
    a tenant cannot post; cleared, the guest may post again."""
    net = await _network(cell, "pw", "10.8.9.0/24")
    uuid = await _server_on(cell, "pw", net, "10.8.9.4")
    owner, stranger = RequestContext(project="pw", roles=("member",)), RequestContext(project="x", roles=("member",))
    c = cell.conductor
    assert await c.password_get(owner, uuid) == ""
    with pytest.raises(errors.Forbidden):  # only the metadata service stores one
        await c.password_post(owner, net, "10.8.9.4", "secret")
    with pytest.raises(errors.InstanceNotFound):  # an address no guest holds
        await c.password_post(admin_context(), net, "10.8.9.99", "secret")

    async def post(source: str, password: str) -> str:  # the listener of `net`; the test client is 127.0.0.1
        return await c.password_post(admin_context(), net, "10.8.9.4", password)
    app = metadata.make_app(lambda source: c.instance_for_metadata(admin_context(), net, "10.8.9.4"), None, post)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        too_long = await client.post("/openstack/latest/password", data=b"x" * 257)
        assert too_long.status == 400
        assert (await client.post("/openstack/latest/password", data=b"enc0ded")).status == 200
        assert (await client.post("/openstack/2013-04-04/password", data=b"again")).status == 409  # once
    assert await c.password_get(owner, uuid) == "enc0ded"
    with pytest.raises(errors.InstanceNotFound):
        await c.password_get(stranger, uuid)
    with pytest.raises(errors.InstanceNotFound):
        await c.password_clear(stranger, uuid)
    await c.password_clear(owner, uuid)
    assert await c.password_get(owner, uuid) == ""
    assert await c.password_post(admin_context(), net, "10.8.9.4", "x" * 256) == uuid
