"""A guest's VNC display for the API's noVNC proxy (Nova's novnc console, issue 16): mechanism on the
compute host, behind the token check of remote_consoles.py.

  port(uuid) -> int                      the display's TCP port, from the running domain's XML
  open(uuid) -> session                  one TCP connection to the display, on loopback
  read(uuid, session, wait) -> bytes     what QEMU's VNC server sent since the last read (waits up to `wait` s)
  write(uuid, session, data)             the viewer's RFB messages to it
  close(uuid, session)                   idempotent

QEMU serves the display on 127.0.0.1 only (domain_xml.py: Nova's <graphics type='vnc' listen='127.0.0.1'
autoport='yes'/>), at a port libvirt picks at start; the API relays RFB over RPC as it relays the serial
console, so the compute never listens on another port. RFB is one byte stream: nothing may be dropped,
so a reader that falls behind pauses the reading from QEMU (asyncio's StreamReader past STREAM_LIMIT)
instead of losing bytes. A display takes a few viewers (MAX_VIEWERS; the oldest goes when another
connects); a session nobody reads for IDLE_TIMEOUT is closed (the API process that held it died).
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from cells import errors
from node.compute.disks import checked_uuid
from node.compute.hypervisor import Hypervisor

LOG = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
VNC = "vnc"
MAX_VIEWERS = 4  # sessions on one display; a new one closes the oldest beyond this
IDLE_TIMEOUT = 60.0  # a session nobody reads for this long is closed
MAX_WAIT = 5.0  # longest a read waits for the display
READ_SIZE = 256 * 1024  # bytes per read (a full 1024x768 frame, raw, is 3 MiB: a few reads)
STREAM_LIMIT = 1024 * 1024  # unread bytes from QEMU before reading its socket pauses
MAX_WRITE = 64 * 1024  # bytes per write call (a viewer's messages are a few bytes; clipboard text more)
CONNECT_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0  # the display not taking input for this long ends the session


def display_port(domain_xml: str) -> int | None:
    """The TCP port of a running domain's VNC display (libvirt's live XML); None when it has none."""
    try:
        graphics = ET.fromstring(domain_xml).find("devices/graphics[@type='vnc']")
    except ET.ParseError:
        return None
    port = graphics.get("port", "") if graphics is not None else ""
    return int(port) if port.isdigit() and 0 < int(port) < 65536 else None  # -1 until the guest runs


@dataclass
class VncSession:
    id: str
    uuid: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    opened: float = field(default_factory=time.monotonic)
    last_read: float = field(default_factory=time.monotonic)
    reading: asyncio.Lock = field(default_factory=asyncio.Lock)  # a StreamReader takes one reader at a time


class VncConsoles:
    def __init__(self, hv: Hypervisor) -> None:
        self.hv = hv
        self._sessions: dict[str, VncSession] = {}  # session id -> session

    async def port(self, uuid: str) -> int:
        """The guest's display port: ConsoleTypeUnavailable (Nova's 400 "vnc") for a guest defined
        without one, InstanceNotReady when the guest is not here."""
        def live_xml() -> str:
            return str(self.hv.domain(uuid).XMLDesc(0))
        try:
            port = display_port(await self.hv._run(live_xml))
        except errors.InstanceNotFound:
            raise errors.InstanceNotReady(instance_id=uuid) from None
        if port is None:
            raise errors.ConsoleTypeUnavailable(console_type=VNC)
        return port

    def holds(self, session_id: Any) -> bool:
        return isinstance(session_id, str) and session_id in self._sessions

    async def open(self, uuid: str) -> str:
        """A new session on the running guest `uuid`'s display (the caller checked the token)."""
        port = await self.port(uuid)
        viewers = sorted((s for s in self._sessions.values() if s.uuid == uuid), key=lambda s: s.opened)
        for old in viewers[:max(0, len(viewers) + 1 - MAX_VIEWERS)]:
            await self._drop(old)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(LOOPBACK, port, limit=STREAM_LIMIT)
        except (OSError, TimeoutError):  # the guest stopped between the port and the connection
            raise errors.InstanceNotReady(instance_id=uuid) from None
        session = VncSession(secrets.token_hex(16), uuid, reader, writer)
        self._sessions[session.id] = session
        LOG.info("VNC session of %s opened (display port %d)", uuid, port)
        return session.id

    def _session(self, uuid: str, session_id: Any) -> VncSession:
        uuid = checked_uuid(uuid)
        session = self._sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None or not hmac.compare_digest(session.uuid, uuid):
            raise errors.ConsoleSessionGone(session=str(session_id)[:64], instance_id=uuid)
        return session

    async def read(self, uuid: str, session_id: Any, wait: float) -> bytes:
        session = self._session(uuid, session_id)
        session.last_read = time.monotonic()
        data = b""
        async with session.reading:
            try:
                async with asyncio.timeout(max(0.0, min(float(wait), MAX_WAIT))):
                    data = await session.reader.read(READ_SIZE)
            except TimeoutError:
                return b""  # nothing new on the display
            except OSError:
                data = b""
            finally:
                session.last_read = time.monotonic()
        if not data:  # QEMU closed the connection: the guest stopped
            await self.close(uuid, session_id)
            raise errors.ConsoleSessionGone(session=session.id, instance_id=session.uuid)
        return data

    async def write(self, uuid: str, session_id: Any, data: Any) -> None:
        session = self._session(uuid, session_id)
        if not isinstance(data, bytes) or len(data) > MAX_WRITE:
            raise errors.Invalid(reason=f"console input must be bytes, at most {MAX_WRITE} at a time")
        try:
            session.writer.write(data)
            async with asyncio.timeout(WRITE_TIMEOUT):
                await session.writer.drain()
        except (OSError, TimeoutError):
            await self.close(uuid, session_id)
            raise errors.ConsoleSessionGone(session=session.id, instance_id=session.uuid) from None

    async def close(self, uuid: str, session_id: Any) -> None:
        try:
            session = self._session(uuid, session_id)
        except errors.ConsoleSessionGone:
            return
        await self._drop(session)

    async def sweep(self) -> int:
        """Close the sessions nobody read for IDLE_TIMEOUT; how many."""
        now = time.monotonic()
        idle = [s for s in self._sessions.values() if now - s.last_read > IDLE_TIMEOUT and not s.reading.locked()]
        for session in idle:
            await self._drop(session)
        return len(idle)

    async def close_all(self) -> None:
        for session in list(self._sessions.values()):
            await self._drop(session)

    async def _drop(self, session: VncSession) -> None:
        self._sessions.pop(session.id, None)
        session.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await session.writer.wait_closed()
