"""Remote consoles (Nova's os-remote-consoles, issue 16): a guest's serial console or VNC display over a
websocket this API process serves.

    POST /v2.1/servers/{id}/remote-consoles  {"remote_console": {"protocol": "serial", "type": "serial"}}  2.6+
        or {"protocol": "vnc", "type": "novnc"}: 200 {"remote_console": {"protocol", "type", "url"}}
    POST /v2.1/servers/{id}/action  {"os-getSerialConsole": {"type": "serial"}} or {"os-getVNCConsole":
        {"type": "novnc"}}  200 {"console": {"type", "url"}}
    GET  /compute/serial-console?token=T   the websocket (subprotocol "binary" as Nova's serial proxy): the
        guest's output as binary frames, what the client sends (binary or text frames) as its input
    GET  /compute/vnc-console?token=T      the websocket of noVNC's page (api/compute/novnc.py; websockify's
        "binary" protocol): RFB both ways in binary frames, byte for byte with the guest's VNC server

The token is `<server uuid>.<secret>`; the server's compute host made the secret and keeps only its hash,
for that server, its project and the console type, for 10 minutes (node/compute/console_tokens.py), so any
API worker can take the connection and nothing lives in the API DB. Connecting checks the token with the
host, which opens the console (a serial port: the newest connection takes it from an older one; a VNC
display: a few viewers); the proxy then relays over RPC: long-polled reads out, writes in. SPICE, RDP and
MKS are not served (Nova's 400 "Unavailable console type"), nor any console on libvirt's test hypervisor
(the same 400).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from api.compute import mappings, novnc, service
from api.http import authorize, context, json_body
from api.keys import public_url
from api.validation import validate
from cells import errors
from cells.context import RequestContext, admin_context
from cells.rpcapi.compute import ComputeAPI

LOG = logging.getLogger(__name__)
REMOTE_CONSOLES_VERSION = (2, 6)
MKS_VERSION = (2, 8)
POLICY = "os_compute_api:os-remote-consoles"
READ_WAIT = 2.0  # seconds a relayed read waits on the host for output (the RPC's own limit is 5)
MAX_FRAME = 64 * 1024  # a client's websocket message; a bigger one closes the connection (1009)
# the legacy actions (one per console kind) and the console type each one's body may name
ACTIONS = {"os-getSerialConsole": ["serial"], "os-getVNCConsole": ["novnc", "xvpvnc"],
           "os-getSPICEConsole": ["spice-html5"], "os-getRDPConsole": ["rdp-html5"]}
SERIAL, VNC, NOVNC = "serial", "vnc", "novnc"
# the websocket of each console type; a console type's protocol in remote-consoles
PROTOCOL_OF = {SERIAL: SERIAL, NOVNC: VNC}


@dataclass(frozen=True)
class Proxy:
    """What differs between the console types' websockets."""
    console_type: str
    path: str  # under /compute
    text_input: bool  # text frames are input too (a serial console's keystrokes); RFB is binary only
    write_chunk: int  # the most the host takes per write
    idle_close: float | None  # seconds without a byte either way before the proxy closes the websocket


PROXIES = {SERIAL: Proxy(SERIAL, "/serial-console", True, 4096, None),
           NOVNC: Proxy(NOVNC, novnc.WEBSOCKET_PATH, False, 64 * 1024, 600.0)}


def remote_console_schema(mks: bool) -> dict[str, Any]:
    protocols, types = ["vnc", "spice", "rdp", "serial"], ["novnc", "xvpvnc", "rdp-html5", "spice-html5", "serial"]
    if mks:  # 2.8: VMware's
        protocols, types = [*protocols, "mks"], [*types, "webmks"]
    return {"type": "object", "required": ["remote_console"], "additionalProperties": False,
            "properties": {"remote_console": {
                "type": "object", "required": ["protocol", "type"], "additionalProperties": False,
                "properties": {"protocol": {"enum": protocols}, "type": {"enum": types}}}}}


def action_schema(types: list[str]) -> dict[str, Any]:
    return {"type": "object", "required": ["type"], "additionalProperties": False,
            "properties": {"type": {"type": "string", "enum": types}}}


async def _console_url(request: web.Request, server_id: str, protocol: str, console_type: str) -> str:
    """A console URL for the server: 404 for one the caller may not see, 400 for a console this cloud does
    not give it, 409 while it is not running."""
    cc, ctx = service.ComputeContext.of(request), context(request)
    mapping = await mappings.get(cc.db, ctx, server_id)
    authorize(request, POLICY, {"project_id": mapping.project_id})
    if protocol not in PROTOCOL_OF.values():
        raise errors.ConsoleTypeUnavailable(console_type=console_type)
    if PROTOCOL_OF.get(console_type) != protocol:  # Nova's compute: xvpvnc is gone, serial is no VNC
        raise errors.ConsoleTypeInvalid(console_type=console_type)
    if console_type == NOVNC:
        await novnc.check_installed()  # no URL to a page this API cannot serve
    record = await service.get(cc, ctx, server_id)
    if record.get("vm_state") != "active" or not record.get("host"):
        raise errors.InstanceNotReady(instance_id=record["uuid"])
    compute = ComputeAPI(cc.router.cell(mapping.cell_path))
    secret = await compute.console_authorize(ctx, str(record["host"]), str(record["uuid"]),
                                             str(mapping.project_id), console_type)
    base, token = public_url(request), f"{record['uuid']}.{secret}"
    if console_type == NOVNC:
        return novnc.page_url(base, token)
    scheme = "wss" if base.startswith("https:") else "ws"
    return f"{scheme}{base[base.index(':'):]}/compute{PROXIES[SERIAL].path}?token={token}"


async def create(request: web.Request) -> web.Response:
    cc = service.ComputeContext.of(request)
    if not cc.at_least(*REMOTE_CONSOLES_VERSION):
        raise errors.NotFound("The resource could not be found.")
    body = await json_body(request)
    validate(remote_console_schema(cc.at_least(*MKS_VERSION)), body, "body")
    protocol, console_type = body["remote_console"]["protocol"], body["remote_console"]["type"]
    url = await _console_url(request, request.match_info["server_id"], protocol, console_type)
    return web.json_response({"remote_console": {"protocol": protocol, "type": console_type, "url": url}})


async def action(request: web.Request, server_id: str, name: str, spec: Any) -> web.Response:
    """The legacy action `name` (ACTIONS): {"console": {"type", "url"}}; Nova's 2.1-2.5 only (remote-consoles
    replaced them at 2.6: a 404 from there on, as Nova's versioned action)."""
    if service.ComputeContext.of(request).at_least(*REMOTE_CONSOLES_VERSION):
        raise errors.NotFound("The resource could not be found.")
    validate(action_schema(ACTIONS[name]), spec, name)
    protocol = SERIAL if name == "os-getSerialConsole" else name.removeprefix("os-get").removesuffix("Console")
    url = await _console_url(request, server_id, protocol.lower(), spec["type"])
    return web.json_response({"console": {"type": spec["type"], "url": url}})


class Relay:
    """One websocket's console: the host's session, relayed both ways until either side ends (or, where the
    console type says so, until nothing moved either way for its idle_close)."""

    def __init__(self, compute: ComputeAPI, ctx: RequestContext, host: str, uuid: str, session: str,
                 proxy: Proxy) -> None:
        self.compute, self.ctx, self.host, self.uuid, self.session = compute, ctx, host, uuid, session
        self.proxy = proxy
        self.moved = time.monotonic()  # the last byte either way

    async def run(self, ws: web.WebSocketResponse) -> None:
        tasks = [asyncio.create_task(self._out(ws)), asyncio.create_task(self._in(ws))]
        if self.proxy.idle_close is not None:
            tasks.append(asyncio.create_task(self._idle(self.proxy.idle_close)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        with contextlib.suppress(errors.CellcloudError):
            await asyncio.shield(self.compute.console_close(self.ctx, self.host, self.uuid, self.session))

    async def _out(self, ws: web.WebSocketResponse) -> None:
        try:
            while not ws.closed:
                data = await self.compute.console_read(self.ctx, self.host, self.uuid, self.session, READ_WAIT)
                if data:
                    self.moved = time.monotonic()
                    await ws.send_bytes(data)
        except errors.CellcloudError as exc:  # the guest stopped, another connection took it, the host left
            LOG.info("%s console of %s ended: %s", self.proxy.console_type, self.uuid, exc.message)

    async def _in(self, ws: web.WebSocketResponse) -> None:
        async for msg in ws:  # a frame past MAX_FRAME ends this (aiohttp closes with 1009)
            if msg.type == WSMsgType.BINARY:
                data = bytes(msg.data)
            elif msg.type == WSMsgType.TEXT and self.proxy.text_input:
                data = str(msg.data).encode()
            else:
                break
            self.moved = time.monotonic()
            chunk = self.proxy.write_chunk
            for at in range(0, len(data), chunk):
                await self.compute.console_write(self.ctx, self.host, self.uuid, self.session, data[at:at + chunk])

    async def _idle(self, limit: float) -> None:
        while (left := self.moved + limit - time.monotonic()) > 0:
            await asyncio.sleep(left)
        LOG.info("%s console of %s closed: nothing moved for %.0f s", self.proxy.console_type, self.uuid, limit)


async def _opened(request: web.Request, proxy: Proxy) -> Relay:
    """The relay the request's token opens: 401 for a token that is malformed, expired, not the server's or
    not for this console type."""
    uuid, _, secret = str(request.query.get("token", "")).partition(".")
    if not secret:
        raise errors.Unauthorized("The console token is invalid or has expired.")
    cc = service.ComputeContext.of(request)
    try:
        mapping = await mappings.get(cc.db, admin_context(), uuid)
    except errors.InstanceNotFound:
        raise errors.Unauthorized("The console token is invalid or has expired.") from None
    project = str(mapping.project_id)
    ctx = RequestContext(project=project)  # the server's own project: what the token was made for
    record = await service.get(cc, ctx, uuid)
    if not record.get("host"):
        raise errors.InstanceNotReady(instance_id=uuid)
    compute = ComputeAPI(cc.router.cell(mapping.cell_path))
    host = str(record["host"])
    session = await compute.console_open(ctx, host, str(record["uuid"]), project, secret, proxy.console_type)
    return Relay(compute, ctx, host, str(record["uuid"]), session, proxy)


def _websocket(console_type: str) -> novnc.Handler:
    async def console_proxy(request: web.Request) -> web.StreamResponse:
        relay = await _opened(request, PROXIES[console_type])  # before the upgrade: a bad token is an HTTP 401, not a closed socket
        ws = web.WebSocketResponse(protocols=("binary",), heartbeat=30.0, max_msg_size=MAX_FRAME)
        try:
            await ws.prepare(request)
        except BaseException:
            await relay.close()
            raise
        await relay.run(ws)
        await ws.close()
        return ws
    return console_proxy


def is_public(request: web.Request) -> bool:
    """The websockets carry their own console token, not a Keystone one; noVNC's files hold no data."""
    return request.method in ("GET", "HEAD") and (
        request.path in {f"/compute{p.path}" for p in PROXIES.values()} or novnc.is_public(request.path))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v2.1/servers/{server_id}/remote-consoles", create)
    for console_type, proxy in PROXIES.items():
        app.router.add_get(proxy.path, _websocket(console_type))
    novnc.add_routes(app)  # noVNC's page and scripts
