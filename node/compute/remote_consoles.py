"""A compute host's remote consoles for the API's websocket proxies (Nova's os-remote-consoles, issue 16):
the token check (console_tokens.py), then a session on the console the token was made for: the guest's
serial port (serial_console.py) or its VNC display (vnc_console.py).

  authorize(uuid, project, console_type) -> secret   "serial" or "novnc", for a running guest here
  open(uuid, project, secret, console_type) -> session
  read(uuid, session, wait) -> bytes / write(uuid, session, data) / close(uuid, session)

Only the `api` principal calls these (cells/rpcapi/compute.py). libvirt's test hypervisor runs no guest:
no console of any type (ConsoleTypeUnavailable, Nova's 400).
"""
from __future__ import annotations

from typing import Any

import libvirt  # type: ignore[import-untyped]

from cells import errors
from cells.context import RequestContext
from node.compute.console_tokens import ConsoleGrants
from node.compute.disks import checked_uuid
from node.compute.hypervisor import Hypervisor
from node.compute.serial_console import SerialConsoles
from node.compute.vnc_console import VncConsoles

SERIAL, NOVNC = "serial", "novnc"
CONSOLE_TYPES = (SERIAL, NOVNC)


class RemoteConsoles:
    def __init__(self, hv: Hypervisor) -> None:
        self.hv = hv
        self.tokens = ConsoleGrants()
        self.serial = SerialConsoles(hv)
        self.vnc = VncConsoles(hv)

    async def authorize(self, uuid: str, project: str, console_type: str = SERIAL) -> str:
        """A console token (secret) for the server's console of `console_type`."""
        uuid = checked_uuid(uuid)
        if console_type not in CONSOLE_TYPES:
            raise errors.ConsoleTypeInvalid(console_type=console_type)
        if self.hv.is_test:
            raise errors.ConsoleTypeUnavailable(console_type=console_type)
        await self._running(uuid)
        if console_type == NOVNC:
            await self.vnc.port(uuid)  # a guest defined without a display has none (Nova's 400 "vnc")
        return self.tokens.grant(uuid, str(project), console_type)

    async def open(self, uuid: str, project: str, secret: Any, console_type: Any = SERIAL) -> str:
        uuid = checked_uuid(uuid)
        self.tokens.check(uuid, str(project), secret, console_type)
        await self.sweep()
        await self._running(uuid)
        return await (self.vnc if console_type == NOVNC else self.serial).open(uuid)

    def _of(self, session_id: Any) -> SerialConsoles | VncConsoles:
        return self.vnc if self.vnc.holds(session_id) else self.serial

    async def read(self, uuid: str, session_id: Any, wait: float) -> bytes:
        return await self._of(session_id).read(uuid, session_id, wait)

    async def write(self, uuid: str, session_id: Any, data: Any) -> None:
        await self._of(session_id).write(uuid, session_id, data)

    async def close(self, uuid: str, session_id: Any) -> None:
        await self._of(session_id).close(uuid, session_id)

    async def sweep(self) -> int:
        """Forget expired tokens, close the sessions nobody reads; how many sessions closed."""
        self.tokens.forget_expired()
        return await self.serial.sweep() + await self.vnc.sweep()

    async def close_all(self) -> None:
        await self.serial.close_all()
        await self.vnc.close_all()

    async def _running(self, uuid: str) -> None:
        """InstanceNotReady (Nova's 409) unless the guest runs here."""
        def state() -> int:
            return int(self.hv.domain(uuid).state()[0])
        try:
            running = await self.hv._run(state) == libvirt.VIR_DOMAIN_RUNNING
        except errors.InstanceNotFound:
            running = False
        if not running:
            raise errors.InstanceNotReady(instance_id=uuid)


class ConsoleHandlers:
    """The compute's console RPC methods (cells/rpcapi/compute.py, the `api` principal's), over `consoles`."""

    consoles: RemoteConsoles

    async def console_authorize(self, ctx: RequestContext, uuid: str, project: str, console_type: str) -> str:
        return await self.consoles.authorize(uuid, project, console_type)

    async def console_open(self, ctx: RequestContext, uuid: str, project: str, secret: str,
                           console_type: str = SERIAL) -> str:
        return await self.consoles.open(uuid, project, secret, console_type)

    async def console_read(self, ctx: RequestContext, uuid: str, session: str, wait: float) -> bytes:
        return await self.consoles.read(uuid, session, wait)

    async def console_write(self, ctx: RequestContext, uuid: str, session: str, data: bytes) -> None:
        await self.consoles.write(uuid, session, data)

    async def console_close(self, ctx: RequestContext, uuid: str, session: str) -> None:
        await self.consoles.close(uuid, session)
