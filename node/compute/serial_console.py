"""A guest's serial console for the API's websocket proxy (Nova's remote consoles, issue 16): mechanism
on the compute host, behind the token check of remote_consoles.py.

  open(uuid) -> session                  the guest's console as a libvirt stream (virDomainOpenConsole,
                                         forced: the newest connection takes the console from an older one)
  read(uuid, session, wait) -> bytes     what the guest wrote since the last read (waits up to `wait` s)
  write(uuid, session, data)             keystrokes to the guest
  close(uuid, session)                   idempotent

The API relays over RPC (long-polled reads), so the compute never listens on another port and nothing
but the `api` principal reaches a console. The stream is non-blocking: libvirt's event thread reads what
the guest wrote into the session's bounded buffer and wakes the reader. A session nobody reads for
IDLE_TIMEOUT is closed (the API process that held it died).
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import libvirt  # type: ignore[import-untyped]

from cells import errors
from node.compute.disks import checked_uuid
from node.compute.hypervisor import Hypervisor

LOG = logging.getLogger(__name__)
IDLE_TIMEOUT = 60.0  # a session nobody reads for this long is closed
MAX_WAIT = 5.0  # longest a read waits for output
MAX_BUFFER = 64 * 1024  # what the guest wrote and nobody read yet; older bytes are dropped beyond it
MAX_WRITE = 4096  # bytes per write call
READ_SIZE = 4096
SERIAL = "serial"


@dataclass
class Session:
    id: str
    uuid: str
    stream: Any
    loop: asyncio.AbstractEventLoop
    buffer: bytearray = field(default_factory=bytearray)
    ended: bool = False
    last_read: float = field(default_factory=time.monotonic)
    woken: asyncio.Event = field(default_factory=asyncio.Event)

    def feed(self, data: bytes) -> None:
        """On the event loop: the guest's output in (the oldest dropped past MAX_BUFFER)."""
        self.buffer += data
        if len(self.buffer) > MAX_BUFFER:
            del self.buffer[:len(self.buffer) - MAX_BUFFER]
        self.woken.set()

    def end(self) -> None:
        self.ended = True
        self.woken.set()


class SerialConsoles:
    def __init__(self, hv: Hypervisor) -> None:
        self.hv = hv
        self._sessions: dict[str, Session] = {}  # instance uuid -> its one session

    # --- sessions --------------------------------------------------------------------------------

    def holds(self, session_id: Any) -> bool:
        return any(s.id == session_id for s in self._sessions.values())

    async def open(self, uuid: str) -> str:
        """A new session on the running guest `uuid`'s console (the caller checked the token)."""
        old = self._sessions.pop(uuid, None)
        if old is not None:  # one console per guest, as a serial port has: the newest connection wins
            await self._finish(old)
        session = Session(secrets.token_hex(16), uuid, None, asyncio.get_running_loop())
        try:
            session.stream = await self.hv._run(self._open_stream, session)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                raise errors.ConsoleTypeUnavailable(console_type=SERIAL) from None
            raise errors.InstanceNotReady(instance_id=uuid) from None
        self._sessions[uuid] = session
        return session.id

    def _open_stream(self, session: Session) -> Any:
        """Blocking (the pool): the console stream, read by libvirt's event thread into the session."""
        stream = self.hv.conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        try:
            self.hv.domain(session.uuid).openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
            stream.eventAddCallback(libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_HANGUP
                                    | libvirt.VIR_STREAM_EVENT_ERROR, self._on_stream, session)
        except BaseException:
            _abort(stream)
            raise
        return stream

    @staticmethod
    def _on_stream(stream: Any, events: int, session: Session) -> None:
        """libvirt's event thread: drain what the guest wrote; the end of the stream ends the session."""
        chunks: list[bytes] = []
        ended = bool(events & (libvirt.VIR_STREAM_EVENT_HANGUP | libvirt.VIR_STREAM_EVENT_ERROR))
        while not ended:
            try:
                data = stream.recv(READ_SIZE)
            except libvirt.libvirtError:
                ended = True
                break
            if data == -2:  # EAGAIN: all read
                break
            if not data:  # EOF: the guest stopped
                ended = True
                break
            chunks.append(data)
        if ended:
            with contextlib.suppress(libvirt.libvirtError):
                stream.eventRemoveCallback()
        try:
            if chunks:
                session.loop.call_soon_threadsafe(session.feed, b"".join(chunks))
            if ended:
                session.loop.call_soon_threadsafe(session.end)
        except RuntimeError:  # the service's loop is closed: nobody reads any more
            pass

    def _session(self, uuid: str, session_id: Any) -> Session:
        session = self._sessions.get(checked_uuid(uuid))
        if session is None or not isinstance(session_id, str) or not hmac.compare_digest(session.id, session_id):
            raise errors.ConsoleSessionGone(session=str(session_id)[:64], instance_id=uuid)
        return session

    async def read(self, uuid: str, session_id: Any, wait: float) -> bytes:
        session = self._session(uuid, session_id)
        session.last_read = time.monotonic()
        if not session.buffer and not session.ended:
            session.woken.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.woken.wait(), max(0.0, min(float(wait), MAX_WAIT)))
        session.last_read = time.monotonic()
        if session.buffer:
            data = bytes(session.buffer)
            session.buffer.clear()
            return data
        if session.ended:
            await self.close(uuid, session_id)
            raise errors.ConsoleSessionGone(session=session.id, instance_id=session.uuid)
        return b""

    async def write(self, uuid: str, session_id: Any, data: Any) -> None:
        session = self._session(uuid, session_id)
        if not isinstance(data, bytes) or len(data) > MAX_WRITE:
            raise errors.Invalid(reason=f"console input must be bytes, at most {MAX_WRITE} at a time")
        if session.ended:
            raise errors.ConsoleSessionGone(session=session.id, instance_id=session.uuid)
        await self.hv._run(_send_all, session.stream, data)

    async def close(self, uuid: str, session_id: Any) -> None:
        try:
            session = self._session(uuid, session_id)
        except errors.ConsoleSessionGone:
            return
        self._sessions.pop(session.uuid, None)
        await self._finish(session)

    async def sweep(self) -> int:
        """Close the sessions nobody read for IDLE_TIMEOUT; how many."""
        now = time.monotonic()
        idle = [s for s in self._sessions.values() if now - s.last_read > IDLE_TIMEOUT]
        for session in idle:
            self._sessions.pop(session.uuid, None)
            await self._finish(session)
        return len(idle)

    async def close_all(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await self._finish(session)

    async def _finish(self, session: Session) -> None:
        session.end()
        if session.stream is not None:
            await self.hv._run(_abort, session.stream)


def _send_all(stream: Any, data: bytes) -> None:
    """Blocking (the pool): all of `data` into a non-blocking stream (a pty takes a few KiB at once)."""
    deadline = time.monotonic() + 5.0
    while data:
        sent = stream.send(data)
        if sent == -2:  # EAGAIN: the guest is not reading
            if time.monotonic() > deadline:
                raise errors.Conflict(reason="the guest's console does not take input")
            time.sleep(0.01)
            continue
        data = data[sent:]


def _abort(stream: Any) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        stream.eventRemoveCallback()
    with contextlib.suppress(libvirt.libvirtError):
        stream.abort()

