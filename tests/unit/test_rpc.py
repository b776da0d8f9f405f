"""The RPC layer over real ZeroMQ sockets on loopback: call, cast, fanout,
deadlines, errors carried as codes, and dead members leaving routing."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import zmq

from cells import errors
from cells.context import RequestContext
from cells.rpc import wire
from cells.rpc.client import RpcClient
from cells.rpc.directory import MISSED_BEATS, Directory, DirectoryView, LivenessTable, Member
from cells.rpc.directory import SURFACE as DIRECTORY_SURFACE
from cells.rpc.principal import CONDUCTOR, callers
from cells.rpc.server import RpcServer
from cells.rpc.transport import make_socket
from tests.conftest import free_port

INTERVAL = 0.1
PEERS = callers(CONDUCTOR)
SURFACE = wire.surface(
    wire.Method("echo", timeout=2.0, callers=PEERS),
    wire.Method("sleep", timeout=2.0, callers=PEERS),
    wire.Method("sleep_safe", timeout=2.0, retry_safe=True, callers=PEERS),
    wire.Method("fail", timeout=2.0, callers=PEERS),
    wire.Method("note", cast=True, callers=PEERS),
)


@dataclass
class EchoHandler:
    name: str
    notes: list[Any] = field(default_factory=list)
    started: int = 0

    async def echo(self, ctx: RequestContext, value: Any) -> dict[str, Any]:
        return {"value": value, "by": self.name, "project": ctx.project}

    async def sleep(self, ctx: RequestContext, seconds: float) -> str:
        self.started += 1
        await asyncio.sleep(seconds)
        return "slept"

    async def sleep_safe(self, ctx: RequestContext, seconds: float) -> dict[str, Any]:
        await self.sleep(ctx, seconds)
        return {"by": self.name, "started": self.started}

    async def fail(self, ctx: RequestContext, instance_id: str) -> None:
        raise errors.InstanceNotFound(instance_id=instance_id)

    async def note(self, ctx: RequestContext, value: Any) -> None:
        self.notes.append(value)

    async def not_declared(self, ctx: RequestContext) -> str:
        return "should never run"


def _addr() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


@dataclass
class Cell:
    directory_address: str
    client: RpcClient
    view: DirectoryView
    handlers: dict[str, EchoHandler]
    servers: dict[str, RpcServer]
    member_tasks: dict[str, asyncio.Task[None]]
    tasks: list[asyncio.Task[None]]

    async def add_member(self, name: str, topics: tuple[str, ...], address: str | None = None,
                         meta: dict[str, Any] | None = None) -> EchoHandler:
        address = address or _addr()
        handler = EchoHandler(name)
        server = RpcServer(address, handler, SURFACE)
        await server.start()
        view = DirectoryView(RpcClient(), self.directory_address, Member(name, address, topics, meta=meta or {}),
                             INTERVAL)
        self.handlers[name], self.servers[name] = handler, server
        self.member_tasks[name] = asyncio.ensure_future(view.run())
        return handler

    async def kill_member(self, name: str) -> None:
        """Stop serving and stop beating, as a crashed process would."""
        self.member_tasks.pop(name).cancel()
        await self.servers.pop(name).stop()

    async def wait_for(self, topic: str, count: int, timeout: float = 3.0) -> float:
        start = time.monotonic()
        while len(self.view.members(topic)) != count:
            assert time.monotonic() - start < timeout, f"{topic} never reached {count} members"
            await asyncio.sleep(0.01)
        return time.monotonic() - start


@pytest.fixture
async def cell() -> AsyncIterator[Cell]:
    address = _addr()
    directory = Directory(INTERVAL)
    dserver = RpcServer(address, directory, DIRECTORY_SURFACE)
    await dserver.start()
    client = RpcClient()
    view = DirectoryView(client, address, None, INTERVAL)
    tasks = [asyncio.ensure_future(directory.background()), asyncio.ensure_future(view.run())]
    c = Cell(address, client, view, {}, {}, {}, tasks)
    yield c
    for t in [*c.tasks, *c.member_tasks.values()]:
        t.cancel()
    for s in c.servers.values():
        await s.stop()
    await dserver.stop()
    client.close()


async def test_call_returns_result_and_carries_context(cell: Cell) -> None:
    await cell.add_member("w1", ("work",))
    await cell.wait_for("work", 1)
    ctx = RequestContext(project="p1")
    result = await cell.client.call(cell.view, "work", SURFACE["echo"], {"value": [1, "a"]}, ctx)
    assert result == {"value": [1, "a"], "by": "w1", "project": "p1"}


async def test_errors_travel_as_codes_and_are_rebuilt(cell: Cell) -> None:
    await cell.add_member("w1", ("work",))
    await cell.wait_for("work", 1)
    with pytest.raises(errors.InstanceNotFound) as info:
        await cell.client.call(cell.view, "work", SURFACE["fail"], {"instance_id": "abc"}, RequestContext())
    assert info.value.kwargs == {"instance_id": "abc"}
    assert "abc" in info.value.message


async def test_undeclared_method_is_refused(cell: Cell) -> None:
    await cell.add_member("w1", ("work",))
    await cell.wait_for("work", 1)
    with pytest.raises(errors.UnknownMethod):
        await cell.client.call(cell.view, "work", wire.Method("not_declared"), {}, RequestContext())


async def test_round_robin_over_live_members(cell: Cell) -> None:
    await cell.add_member("w1", ("work",))
    await cell.add_member("w2", ("work",))
    await cell.wait_for("work", 2)
    by = [(await cell.client.call(cell.view, "work", SURFACE["echo"], {"value": i}, RequestContext()))["by"]
          for i in range(6)]
    assert by.count("w1") == 3 and by.count("w2") == 3


async def test_cast_and_fanout_reach_members(cell: Cell) -> None:
    h1 = await cell.add_member("w1", ("work", "all"))
    h2 = await cell.add_member("w2", ("all",))
    await cell.wait_for("all", 2)
    await cell.client.cast(cell.view, "work", SURFACE["note"], {"value": "one"}, RequestContext())
    sent = await cell.client.fanout(cell.view, "all", SURFACE["note"], {"value": "both"}, RequestContext())
    assert sent == 2
    for _ in range(100):
        if h1.notes == ["one", "both"] and h2.notes == ["both"]:
            break
        await asyncio.sleep(0.01)
    assert h1.notes == ["one", "both"] and h2.notes == ["both"]


async def test_cast_with_same_idempotency_key_runs_once(cell: Cell) -> None:
    h1 = await cell.add_member("w1", ("work",))
    await cell.wait_for("work", 1)
    for _ in range(3):
        await cell.client.cast(cell.view, "work", SURFACE["note"], {"value": "x"}, RequestContext(), key="k-1")
    await cell.client.cast(cell.view, "work", SURFACE["note"], {"value": "y"}, RequestContext(), key="k-2")
    for _ in range(100):
        if len(h1.notes) == 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert h1.notes == ["x", "y"]


async def test_call_times_out_at_its_deadline(cell: Cell) -> None:
    await cell.add_member("w1", ("work",))
    await cell.wait_for("work", 1)
    start = time.monotonic()
    with pytest.raises(errors.RpcTimeout):
        await cell.client.call(cell.view, "work", SURFACE["sleep"], {"seconds": 2}, RequestContext(), timeout=0.2)
    assert 0.15 < time.monotonic() - start < 1.0


async def test_server_drops_requests_past_their_deadline(cell: Cell) -> None:
    handler = await cell.add_member("w1", ("work",))
    await cell.wait_for("work", 1)
    member = cell.view.members("work")[0]
    expired = RequestContext(deadline=time.time() - 1)
    # send straight on the wire, bypassing the client's own deadline check
    sock = make_socket(zmq.DEALER)
    sock.connect(member.address)
    try:
        sock.send(wire.request(1, "sleep", expired.to_wire(), {"seconds": 0}, True))
        await asyncio.sleep(0.2)
        assert handler.started == 0
        assert sock.poll(0) == 0  # and no reply either
    finally:
        sock.close(linger=0)


async def test_expired_context_is_refused_by_the_caller(cell: Cell) -> None:
    await cell.add_member("w1", ("work",))
    await cell.wait_for("work", 1)
    with pytest.raises(errors.DeadlineExpired):
        await cell.client.call(cell.view, "work", SURFACE["echo"], {"value": 1},
                               RequestContext(deadline=time.time() - 0.01))


async def test_no_live_member(cell: Cell) -> None:
    with pytest.raises(errors.NoLiveMember):
        await cell.client.call(cell.view, "nobody", SURFACE["echo"], {"value": 1}, RequestContext())


async def test_dead_member_leaves_routing_within_three_beats(cell: Cell) -> None:
    await cell.add_member("w1", ("work",))
    await cell.add_member("w2", ("work",))
    await cell.wait_for("work", 2)
    left: list[set[str]] = []
    cell.view.listeners.append(lambda joined, gone: left.append(gone))
    await cell.kill_member("w2")
    elapsed = await cell.wait_for("work", 1, timeout=5)
    # expiry after MISSED_BEATS intervals, plus up to one interval for our view to refresh
    assert elapsed <= (MISSED_BEATS + 2) * INTERVAL
    assert {"w2"} in left
    # every call now goes to the survivor
    for i in range(4):
        r = await cell.client.call(cell.view, "work", SURFACE["echo"], {"value": i}, RequestContext())
        assert r["by"] == "w1"


async def test_retry_safe_call_to_a_restarted_only_member_is_sent_again_to_its_new_process(cell: Cell) -> None:
    """The topic's only member is killed while it holds a retry-safe call and comes back at once
    (same id and address, so it never leaves the table): its new incarnation abandons the call,
    which is sent again to the new process and answered within the call's deadline, where it
    would have waited out the whole timeout for a reply the dead process took with it."""
    address = _addr()
    first = await cell.add_member("w1", ("only",), address, {"incarnation": "one"})
    await cell.wait_for("only", 1)
    call = asyncio.ensure_future(cell.client.call(cell.view, "only", SURFACE["sleep_safe"], {"seconds": 0.3},
                                                  RequestContext()))
    for _ in range(100):
        if first.started:
            break
        await asyncio.sleep(0.01)
    assert first.started == 1
    await cell.kill_member("w1")
    second = await cell.add_member("w1", ("only",), address, {"incarnation": "two"})
    started = time.monotonic()
    reply = await call
    assert reply == {"by": "w1", "started": 1} and second.started == 1
    assert time.monotonic() - started < SURFACE["sleep_safe"].timeout  # not timed out and retried


async def test_member_comes_back_after_directory_restart() -> None:
    address = _addr()
    directory = Directory(INTERVAL)
    dserver = RpcServer(address, directory, DIRECTORY_SURFACE)
    await dserver.start()
    worker_address = _addr()
    server = RpcServer(worker_address, EchoHandler("w1"), SURFACE)
    await server.start()
    member_view = DirectoryView(RpcClient(), address, Member("w1", worker_address, ("work",)), INTERVAL)
    beat = asyncio.ensure_future(member_view.run())
    try:
        await member_view.wait_synced(2)
        await dserver.stop()
        # a fresh directory (restarted router) learns the member from its next heartbeat
        directory2 = Directory(INTERVAL)
        dserver = RpcServer(address, directory2, DIRECTORY_SURFACE)
        await dserver.start()
        for _ in range(50):
            if "w1" in directory2.liveness.members:
                break
            await asyncio.sleep(0.05)
        assert "w1" in directory2.liveness.members
    finally:
        beat.cancel()
        await server.stop()
        await dserver.stop()


def test_liveness_table_expires_after_missed_beats() -> None:
    table = LivenessTable(interval=1.0)
    table.beat(Member("a", "tcp://x:1", ("t",)), now=100.0)
    table.beat(Member("b", "tcp://x:2", ("t",)), now=100.0)
    v = table.version
    table.beat(Member("a", "tcp://x:1", ("t",)), now=102.5)
    assert table.version == v  # a heartbeat that changes nothing does not bump the version
    assert table.expire(now=102.9) == []
    assert table.expire(now=103.1) == ["b"]
    assert set(table.members) == {"a"} and table.version == v + 1


def test_malformed_envelope_does_not_crash_the_server() -> None:
    async def run() -> None:
        address = _addr()
        server = RpcServer(address, EchoHandler("w"), SURFACE)
        await server.start()
        sock = make_socket(zmq.DEALER)
        sock.connect(address)
        try:
            sock.send(b"\xc1not msgpack")
            sock.send(wire.pack([1, 2, 3]))  # type: ignore[arg-type]  # not a map: the server must drop it
            await asyncio.sleep(0.1)
            client = RpcClient()
            r = await client.call_address(address, "echo", {"value": 5}, RequestContext(), 2.0)
            assert r["value"] == 5
            client.close()
        finally:
            sock.close(linger=0)
            await server.stop()

    asyncio.run(run())


async def test_directory_restart_loses_no_member_from_the_views() -> None:
    """While a restarted directory relearns its members, views keep the ones not back yet
    (no member seen leaving); once it is warm, a member that never came back is dropped."""
    beat = 0.3  # warming lasts MISSED_BEATS of them: room for the re-registration on a loaded machine
    address = _addr()
    directory = Directory(beat)
    dserver = RpcServer(address, directory, DIRECTORY_SURFACE)
    await dserver.start()
    client = RpcClient()
    views = {mid: DirectoryView(client, address, Member(mid, _addr(), ("work",)), beat) for mid in ("w1", "w2")}
    beats = {mid: asyncio.ensure_future(v.run()) for mid, v in views.items()}
    left: list[set[str]] = []
    views["w1"].listeners.append(lambda _joined, gone: left.append(gone) if gone else None)
    directory2: Directory | None = None
    try:
        while len(views["w1"].members("work")) != 2:
            await asyncio.sleep(0.01)
        old_version = views["w1"].version
        beats.pop("w2").cancel()  # w2 dies with the old directory: it never re-registers
        await dserver.stop()
        directory2 = Directory(beat)
        dserver = RpcServer(address, directory2, DIRECTORY_SURFACE)
        await dserver.start()
        while views["w1"].version == old_version:  # w1 re-registered and installed the warming table
            await asyncio.sleep(0.01)
        assert {m.id for m in views["w1"].members("work")} == {"w1", "w2"} and left == []
        start = time.monotonic()
        while "w2" in views["w1"].by_id:
            assert time.monotonic() - start < (MISSED_BEATS + 3) * beat, "w2 never dropped"
            await asyncio.sleep(0.01)
        assert left == [{"w2"}]
    finally:
        for task in beats.values():
            task.cancel()
        await dserver.stop()
        client.close()


async def test_a_method_is_sent_only_the_way_it_is_declared(cell: Cell) -> None:
    """Method.cast is read: call() of a declared cast and cast()/fanout() of a declared call are refused
    before anything is sent."""
    h1 = await cell.add_member("w1", ("work", "all"))
    await cell.wait_for("all", 1)
    with pytest.raises(errors.RpcError, match="declared a cast"):
        await cell.client.call(cell.view, "work", SURFACE["note"], {"value": "x"}, RequestContext())
    with pytest.raises(errors.RpcError, match="declared a call"):
        await cell.client.cast(cell.view, "work", SURFACE["sleep"], {"seconds": 0}, RequestContext())
    with pytest.raises(errors.RpcError, match="declared a call"):
        await cell.client.fanout(cell.view, "all", SURFACE["sleep"], {"seconds": 0}, RequestContext())
    await asyncio.sleep(0.1)
    assert (h1.notes, h1.started) == ([], 0)
