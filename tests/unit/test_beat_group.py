"""Batched heartbeats (cells/rpc/beat_group.py, issue 21): the hosts of one process beat as one
`heartbeats` message over real CURVE sockets, each stays its own member with its own liveness, they
share one table, and a key speaks only for the hosts of its own process."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from cells import errors
from cells.context import RequestContext
from cells.rpc import directory, security
from cells.rpc.beat_group import GroupView
from cells.rpc.client import RpcClient
from cells.rpc.directory import Directory, Member
from cells.rpc.principal import COMPUTE, ROUTER, Principal
from cells.rpc.server import RpcServer
from tests.conftest import free_port

PROCESS = {"h1": "cell1/sim-1", "h2": "cell1/sim-1", "h3": "cell1/sim-1", "h9": "cell1/sim-2"}


def _member(host: str, **meta: str) -> Member:
    return Member(id=f"cell1/compute/{host}", address="tcp://127.0.0.1:1", topics=(f"compute.{host}",),
                  host=host, service=COMPUTE, meta=dict(meta))


async def test_a_process_beats_once_for_its_hosts_each_its_own_member_and_no_one_elses(tmp_path: Path) -> None:
    router_pub = security.ensure_keypair(tmp_path, "cell1/router")
    keys = {h: security.ensure_keypair(tmp_path, f"cell1/compute/{h}") for h in PROCESS}
    security.start_allowlist({router_pub: Principal(ROUTER, "cell1/router", "ctl", "cell1"),
                              **{keys[h]: Principal(COMPUTE, f"cell1/compute/{h}", h, "cell1") for h in PROCESS}})
    d = Directory(1.0)
    d.beat_groups = {f"cell1/compute/{h}": (p, COMPUTE, h) for h, p in PROCESS.items()}
    address = f"tcp://127.0.0.1:{free_port()}"
    server = RpcServer(address, d, directory.SURFACE, security.load_keys(tmp_path, "cell1/router"), cell="cell1")
    await server.start()
    clients = {h: RpcClient(security.load_keys(tmp_path, f"cell1/compute/{h}")) for h in PROCESS}
    group = GroupView(address, 1.0, router_pub.encode())
    views = {h: group.join(clients[h], _member(h)) for h in ("h1", "h2", "h3")}
    try:
        await group.beat_once()
        assert sorted(d.liveness.members) == [f"cell1/compute/{h}" for h in ("h1", "h2", "h3")]
        # one table for the process: every host's view reads it, and sees its siblings
        assert all(v.by_id is group.by_id and v.alive("cell1/compute/h3") for v in views.values())
        assert [m.id for m in views["h1"].members("compute.h2")] == ["cell1/compute/h2"]

        views["h2"].set_meta(health="stuck")  # one host's meta is its own
        await group.beat_once()
        assert d.liveness.members["cell1/compute/h2"].meta["health"] == "stuck"
        assert "health" not in d.liveness.members["cell1/compute/h1"].meta

        # a host that leaves stops being beaten for: it alone misses its beats and expires
        group.drop(views["h3"])
        await group.beat_once()
        later = time.monotonic() + directory.MISSED_BEATS + 0.5
        d.liveness.last_seen["cell1/compute/h1"] = d.liveness.last_seen["cell1/compute/h2"] = later
        assert d.liveness.expire(later) == ["cell1/compute/h3"]

        # another process's host may not beat for this one's, nor put them in its batch: nothing is recorded
        before = dict(d.liveness.members)
        for batch in ([_member("h1", health="forged")], [_member("h9"), _member("h1", health="forged")]):
            with pytest.raises(errors.RpcForbidden):
                await clients["h9"].call_address(address, "heartbeats",
                                                 {"members": [m.to_wire() for m in batch], "version": -1},
                                                 RequestContext(), 2.0, router_pub.encode())
        assert d.liveness.members == before and "cell1/compute/h9" not in d.liveness.members
        assert d.liveness.members["cell1/compute/h1"].meta.get("health") is None
        # a host beating alone (`heartbeat`) still speaks only for itself
        with pytest.raises(errors.RpcForbidden):
            await clients["h9"].call_address(address, "heartbeat", {"member": _member("h1").to_wire(), "version": -1},
                                             RequestContext(), 2.0, router_pub.encode())
        with pytest.raises(errors.Invalid):
            await clients["h1"].call_address(address, "heartbeats", {"members": [], "version": -1},
                                             RequestContext(), 2.0, router_pub.encode())
    finally:
        for c in clients.values():
            c.close()
        await server.stop()
        security.stop_allowlist()


async def test_an_unchanged_member_takes_the_fast_path_and_a_changed_one_is_checked_again() -> None:
    """A beat equal to the member's last costs no decode; one with new topics is checked as a new member."""
    d = Directory(1.0)
    ctx = RequestContext(principal=Principal(COMPUTE, "cell1/compute/h1", "h1", "cell1"))
    await d.heartbeat(ctx, _member("h1").to_wire(), -1)
    member = d.liveness.members["cell1/compute/h1"]
    version = d.liveness.version
    await d.heartbeat(ctx, _member("h1").to_wire(), version)
    assert d.liveness.members["cell1/compute/h1"] is member and d.liveness.version == version
    wider = Member(**{**_member("h1").__dict__, "topics": ("compute.h1", "compute.h2")})
    with pytest.raises(errors.RpcForbidden):
        await d.heartbeat(ctx, wider.to_wire(), version)
    assert d.liveness.members["cell1/compute/h1"] is member


def test_a_delta_reads_back_only_as_far_as_its_version() -> None:
    table = directory.LivenessTable(1.0)
    for i in range(5):
        table.beat(_member(f"h{i}"), 0.0)
    since = table.version
    table.beat(_member("h1", health="stuck"), 1.0)
    table.leave("cell1/compute/h3")
    table.beat(_member("h1", health="fine"), 2.0)
    assert table.changed_since(since) == ["cell1/compute/h1", "cell1/compute/h3"]  # newest first, each once
    assert table.changed_since(table.version) == []
