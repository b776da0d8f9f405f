"""A guest's VNC display on the compute host (node/compute/vnc_console.py through remote_consoles.py): a novnc
token opens a TCP session to the display port the running domain's XML names, and the session relays bytes both
ways unchanged, none dropped when the reader falls behind; a guest without a display or not running has none;
the viewers of one display are bounded, oldest closed first; an unread session is swept; input is bounded.
The display here is a real TCP server on loopback (FakeDisplay); a real QEMU's: tests/functional/test_real_guests.py."""
from __future__ import annotations

import asyncio
import struct
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import libvirt  # type: ignore[import-untyped]
import pytest
import pytest_asyncio

from cells import errors
from node.compute import vnc_console
from node.compute.remote_consoles import RemoteConsoles
from node.compute.vnc_console import display_port

T = TypeVar("T")
PROJECT = "p1"
WIDTH, HEIGHT = 640, 480


def server_init(name: bytes = b"fake-guest") -> bytes:
    """RFB ServerInit: size, a 32-bit true-colour pixel format, the desktop's name."""
    pixel_format = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
    return struct.pack(">HH", WIDTH, HEIGHT) + pixel_format + struct.pack(">I", len(name)) + name


class FakeDisplay:
    """A VNC server's side of RFB 3.8 with security type None, then an echo of what the viewer sends;
    `first`: bytes it sends as soon as a viewer connects, before the handshake (a burst to relay)."""

    def __init__(self, first: bytes = b"") -> None:
        self.first = first
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:  # Python 3.11's Server has no close_clients()
                writer.close()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        if (me := asyncio.current_task()) is not None:
            self._handlers.append(me)
        try:
            writer.write(self.first + b"RFB 003.008\n")
            await reader.readexactly(12)  # the viewer's version
            writer.write(bytes([1, 1]))  # one security type: None
            await reader.readexactly(1)
            writer.write(struct.pack(">I", 0))  # SecurityResult OK
            await reader.readexactly(1)  # ClientInit (shared flag)
            writer.write(server_init())
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class Domain:
    def __init__(self, state: int, xml: str) -> None:
        self._state, self._xml = state, xml

    def state(self) -> list[int]:
        return [self._state, 0]

    def XMLDesc(self, flags: int) -> str:  # libvirt's name
        return self._xml


def graphics(port: int | str) -> str:
    return (f"<domain><devices><graphics type='vnc' port='{port}' autoport='yes' listen='127.0.0.1'>"
            "<listen type='address' address='127.0.0.1'/></graphics></devices></domain>")


class Host:
    """The Hypervisor protocol over a dict of guests (uuid -> (libvirt state, live XML))."""

    is_test = False
    call_timeout = 5.0
    instances_dir = ""

    def __init__(self) -> None:
        self.guests: dict[str, tuple[int, str]] = {}

    @property
    def conn(self) -> Any:
        raise AssertionError("no libvirt stream is opened by these tests")

    async def _run(self, func: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        return func(*args)

    def instance_dir(self, uuid: str) -> str:
        return f"/nowhere/{uuid}"

    def domain(self, uuid: str) -> Domain:
        if uuid not in self.guests:
            raise errors.InstanceNotFound(instance_id=uuid)
        return Domain(*self.guests[uuid])

    def add(self, xml: str, state: int = libvirt.VIR_DOMAIN_RUNNING) -> str:
        uuid = str(uuidlib.uuid4())
        self.guests[uuid] = (state, xml)
        return uuid


@pytest_asyncio.fixture
async def display() -> AsyncIterator[FakeDisplay]:
    shown = FakeDisplay()
    await shown.start()
    yield shown
    await shown.stop()


async def read_until(consoles: RemoteConsoles, uuid: str, session: str, size: int) -> bytes:
    seen = b""
    async with asyncio.timeout(10):
        while len(seen) < size:
            data = await consoles.read(uuid, session, 1.0)
            assert len(data) <= vnc_console.READ_SIZE  # one RPC reply's worth at most
            seen += data
    return seen


async def open_display(consoles: RemoteConsoles, uuid: str) -> str:
    secret = await consoles.authorize(uuid, PROJECT, "novnc")
    return await consoles.open(uuid, PROJECT, secret, "novnc")


def test_the_display_port_is_the_live_xmls_vnc_port_and_nothing_else() -> None:
    assert display_port(graphics(5901)) == 5901
    for xml in (graphics(-1), graphics("5901; rm"), graphics(70000), "<domain><devices/></domain>", "<not xml",
                "<domain><devices><graphics type='spice' port='5901'/></devices></domain>"):
        assert display_port(xml) is None, xml


async def test_a_novnc_token_opens_the_display_and_rfb_passes_both_ways_unchanged(display: FakeDisplay) -> None:
    host = Host()
    consoles = RemoteConsoles(host)
    uuid = host.add(graphics(display.port))
    serial_secret = await consoles.authorize(uuid, PROJECT, "serial")
    with pytest.raises(errors.Unauthorized):  # a serial console's token opens no display
        await consoles.open(uuid, PROJECT, serial_secret, "novnc")
    session = await open_display(consoles, uuid)
    assert await read_until(consoles, uuid, session, 12) == b"RFB 003.008\n"
    await consoles.write(uuid, session, b"RFB 003.008\n")
    assert await read_until(consoles, uuid, session, 2) == bytes([1, 1])
    await consoles.write(uuid, session, b"\x01")
    assert await read_until(consoles, uuid, session, 4) == b"\0\0\0\0"
    await consoles.write(uuid, session, b"\x01")
    init = await read_until(consoles, uuid, session, len(server_init()))
    assert struct.unpack(">HH", init[:4]) == (WIDTH, HEIGHT)
    await consoles.write(uuid, session, b"\x03\x01\x00\x00\x00\x00\x02\x80\x01\xe0")  # FramebufferUpdateRequest
    assert await read_until(consoles, uuid, session, 10) == b"\x03\x01\x00\x00\x00\x00\x02\x80\x01\xe0"
    assert await consoles.read(uuid, session, 0.05) == b""  # nothing new: an empty read, the session stays
    with pytest.raises(errors.Invalid):
        await consoles.write(uuid, session, b"x" * (vnc_console.MAX_WRITE + 1))
    other = host.add(graphics(display.port))
    with pytest.raises(errors.ConsoleSessionGone):  # a session is its own guest's only
        await consoles.read(other, session, 0.0)
    await consoles.close(uuid, session)
    with pytest.raises(errors.ConsoleSessionGone):
        await consoles.read(uuid, session, 0.0)


async def test_a_reader_that_falls_behind_loses_no_byte() -> None:
    """More than the session buffers (STREAM_LIMIT) arrives before anyone reads: reading from the display
    pauses, and every byte still arrives in order."""
    burst = bytes(range(256)) * (3 * vnc_console.STREAM_LIMIT // 256)
    shown = FakeDisplay(first=burst)
    await shown.start()
    try:
        host = Host()
        consoles = RemoteConsoles(host)
        uuid = host.add(graphics(shown.port))
        session = await open_display(consoles, uuid)
        await asyncio.sleep(0.3)  # the display sends while nobody reads
        got = await read_until(consoles, uuid, session, len(burst) + 12)
        assert got == burst + b"RFB 003.008\n"
    finally:
        await shown.stop()


async def test_no_display_for_a_guest_without_one_or_not_running(display: FakeDisplay) -> None:
    host = Host()
    consoles = RemoteConsoles(host)
    for xml in ("<domain><devices/></domain>", graphics(-1)):  # defined before displays; not started
        with pytest.raises(errors.ConsoleTypeUnavailable, match="Unavailable console type vnc."):
            await consoles.authorize(host.add(xml), PROJECT, "novnc")
    stopped = host.add(graphics(display.port), libvirt.VIR_DOMAIN_SHUTOFF)
    for uuid in (stopped, str(uuidlib.uuid4())):
        with pytest.raises(errors.InstanceNotReady):
            await consoles.authorize(uuid, PROJECT, "novnc")
    running = host.add(graphics(display.port))
    secret = await consoles.authorize(running, PROJECT, "novnc")
    host.guests[running] = (libvirt.VIR_DOMAIN_SHUTOFF, graphics(display.port))  # stopped since
    with pytest.raises(errors.InstanceNotReady):
        await consoles.open(running, PROJECT, secret, "novnc")


async def test_viewers_of_a_display_are_bounded_the_oldest_closed_first(display: FakeDisplay) -> None:
    host = Host()
    consoles = RemoteConsoles(host)
    uuid = host.add(graphics(display.port))
    sessions = [await open_display(consoles, uuid) for _ in range(vnc_console.MAX_VIEWERS + 1)]
    with pytest.raises(errors.ConsoleSessionGone):
        await consoles.read(uuid, sessions[0], 1.0)
    for session in sessions[1:]:
        assert await read_until(consoles, uuid, session, 12) == b"RFB 003.008\n"
    assert display.connections == vnc_console.MAX_VIEWERS + 1


async def test_an_unread_session_is_swept_and_a_closed_display_ends_its_session(
        display: FakeDisplay, monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host()
    consoles = RemoteConsoles(host)
    uuid = host.add(graphics(display.port))
    unread = await open_display(consoles, uuid)
    monkeypatch.setattr(vnc_console, "IDLE_TIMEOUT", 0.0)
    await asyncio.sleep(0.01)
    assert await consoles.sweep() == 1
    with pytest.raises(errors.ConsoleSessionGone):
        await consoles.read(uuid, unread, 0.0)
    monkeypatch.setattr(vnc_console, "IDLE_TIMEOUT", 60.0)
    session = await open_display(consoles, uuid)
    await read_until(consoles, uuid, session, 12)
    await display.stop()  # QEMU went away (the guest stopped)
    with pytest.raises(errors.ConsoleSessionGone):
        async with asyncio.timeout(10):
            while True:
                await consoles.read(uuid, session, 1.0)
