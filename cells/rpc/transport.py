"""ZeroMQ sockets read with `loop.add_reader`, draining every ready message.

Measured here: ~2.5x the throughput of zmq.asyncio futures. The zmq FD is
edge-triggered, so we drain until EAGAIN on every wake-up and once more after
each send (a send can consume the edge of a pending inbound message).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

LOG = logging.getLogger(__name__)
HWM = 100_000
# the largest message a socket takes: a bigger one drops that peer's connection (zmq reconnects it),
# never the process's memory. Requests: a 100-server boot with 64 KiB of user data each fits;
# replies: a disk copy's 16 MiB chunk (node/compute/disks.py MAX_CHUNK) or a long listing fits.
MAX_REQUEST = 8 * 1024 * 1024
MAX_REPLY = 64 * 1024 * 1024


@dataclass(frozen=True)
class CurveKeys:
    """This process's key pair plus the server key it expects when connecting."""
    public: bytes
    secret: bytes


_context: zmq.Context[zmq.Socket[bytes]] | None = None


def context() -> zmq.Context[zmq.Socket[bytes]]:
    global _context
    if _context is None or _context.closed:
        _context = zmq.Context()
    return _context


class ReaderSocket:
    """A zmq socket owned by one event loop; `on_frames` runs for each message."""

    def __init__(self, sock: zmq.Socket[bytes], on_frames: Callable[[list[Any]], None], copy: bool = True) -> None:
        """`copy=False`: `on_frames` gets zmq.Frame objects, whose properties (the ZAP User-Id) it can read."""
        self.sock = sock
        self.on_frames = on_frames
        self.copy = copy
        self.loop = asyncio.get_running_loop()
        self.fd: int = sock.getsockopt(zmq.FD)  # type: ignore[assignment]  # an int for zmq.FD
        self._drain_scheduled = False
        self.closed = False
        self.loop.add_reader(self.fd, self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        recv, copy = self.sock.recv_multipart, self.copy
        while not self.closed:
            try:
                frames = recv(zmq.NOBLOCK, copy=copy)
            except zmq.Again:
                return
            try:
                self.on_frames(frames)
            except Exception:  # one bad message never stops the drain (the next ones would wait for an edge)
                LOG.exception("dropped a message its handler could not take")

    def send(self, frames: list[bytes]) -> None:
        if self.closed:
            return
        self.sock.send_multipart(frames, zmq.NOBLOCK)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.fd)
        self.sock.close(linger=0)


def make_socket(kind: int, curve: CurveKeys | None = None, server_key: bytes | None = None,
                server: bool = False, identity: bytes | None = None,
                max_message: int = MAX_REPLY) -> zmq.Socket[bytes]:
    sock = context().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    if curve is not None:
        sock.curve_publickey = curve.public
        sock.curve_secretkey = curve.secret
        if server:
            sock.curve_server = True
        elif server_key is not None:
            sock.curve_serverkey = server_key
    return sock
