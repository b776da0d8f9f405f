"""The NBD port's gate: a client may open only the exports granted to its address.

qemu-storage-daemon's NBD server has no per-export access control (TLS-PSK or
x509 would authenticate a host for every export, and libvirt's NBD disks speak
neither PSK nor a per-volume identity). So the daemon listens on a unix socket in
the worker's private run dir, and this gate listens on the volume host's NBD port
and relays each TCP client to it, reading what the client sends during the NBD
handshake (fixed newstyle negotiation):

    client flags (4 bytes), then options: "IHAVEOPT" (8) | option (4) | length (4) | data

Every option that names an export (EXPORT_NAME, INFO, GO, LIST_META_CONTEXT,
SET_META_CONTEXT) must name one granted to the client's address, else the
connection is closed; LIST (it would name every export) and STARTTLS are refused
the same way. The first transmission request (its own magic) ends the handshake:
from there bytes pass unread. A client that sends anything else is cut off.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import struct

LOG = logging.getLogger(__name__)

IHAVEOPT = 0x49484156454F5054
REQUEST_MAGICS = (0x25609513, 0x21E41C71)  # simple and extended transmission headers
OPT_EXPORT_NAME, OPT_LIST, OPT_STARTTLS = 1, 3, 5
NAMED_OPTIONS = (6, 7, 9, 10)  # INFO, GO, LIST_META_CONTEXT, SET_META_CONTEXT: u32 name length, name, ...
MAX_OPTION = 64 * 1024  # NBD strings are at most 4096 bytes; an option is never near this
MAX_OPTIONS = 64  # options one handshake may send
CHUNK = 256 * 1024


class Refused(Exception):
    """The client asked for something its address is not granted: the connection is closed."""


class NbdGate:
    def __init__(self, address: str, port: int, backend_socket: str) -> None:
        self.address, self.port, self.backend_socket = address, port, backend_socket
        self.grants: dict[str, str] = {}  # export name -> the one client address that may open it
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def grant(self, export: str, client_ip: str) -> None:
        self.grants[export] = client_ip

    def revoke(self, export: str) -> None:
        self.grants.pop(export, None)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.address, self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _may_open(self, peer: str, name: bytes) -> bool:
        try:
            export = name.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return self.grants.get(export) == peer

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = str(writer.get_extra_info("peername")[0])
        try:
            back_reader, back_writer = await asyncio.open_unix_connection(self.backend_socket)
        except OSError as exc:
            LOG.warning("NBD gate: the storage daemon is not reachable: %s", exc)
            writer.close()
            self._tasks.discard(task)
            return
        to_client = asyncio.create_task(_pump(back_reader, writer))
        try:
            await self._handshake(peer, reader, back_writer)
            await _pump(reader, back_writer)
        except Refused as exc:
            LOG.warning("NBD gate: refused %s: %s", peer, exc)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            to_client.cancel()
            for w in (writer, back_writer):
                w.close()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await to_client
            self._tasks.discard(task)

    async def _handshake(self, peer: str, reader: asyncio.StreamReader, out: asyncio.StreamWriter) -> None:
        """Relay the client's side of the negotiation, checking every export it names."""
        out.write(await reader.readexactly(4))  # client flags
        for _ in range(MAX_OPTIONS):
            head = await reader.readexactly(8)
            (magic,) = struct.unpack(">Q", head)
            if magic >> 32 in REQUEST_MAGICS:  # a transmission request: the negotiation is over
                out.write(head)
                return
            if magic != IHAVEOPT:
                raise Refused("not an NBD option")
            option, length = struct.unpack(">II", await reader.readexactly(8))
            if length > MAX_OPTION:
                raise Refused(f"option {option} of {length} bytes")
            data = await reader.readexactly(length)
            if option in (OPT_LIST, OPT_STARTTLS):
                raise Refused(f"option {option} is not served")
            if option == OPT_EXPORT_NAME or option in NAMED_OPTIONS:
                name = data if option == OPT_EXPORT_NAME else _named(data)
                if not self._may_open(peer, name):
                    raise Refused(f"export {name[:80]!r} is not granted to this address")
            out.write(head + struct.pack(">II", option, length) + data)
            await out.drain()
            if option == OPT_EXPORT_NAME:  # the old way in: no reply on success, transmission follows
                return
        raise Refused("too many options")


def _named(data: bytes) -> bytes:
    if len(data) < 4:
        raise Refused("truncated option")
    (size,) = struct.unpack(">I", data[:4])
    if 4 + size > len(data):
        raise Refused("truncated export name")
    return data[4:4 + size]


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(CHUNK):
        writer.write(chunk)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
