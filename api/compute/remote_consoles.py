"""Remote consoles (Nova's os-remote-consoles, issue 16): a guest's serial console over a websocket this
API process serves.

    POST /v2.1/servers/{id}/remote-consoles  {"remote_console": {"protocol": "serial", "type": "serial"}}  2.6+
        200 {"remote_console": {"protocol", "type", "url"}}
    POST /v2.1/servers/{id}/action  {"os-getSerialConsole": {"type": "serial"}}  200 {"console": {"type", "url"}}
    GET  /compute/serial-console?token=T   the websocket (subprotocol "binary" as Nova's serial proxy): the
        guest's output as binary frames, what the client sends (binary or text frames) as its input

The token is `<server uuid>.<secret>`; the server's compute host made the secret and keeps only its hash,
for that server and its project, for 10 minutes (node/compute/serial_console.py), so any API worker can
take the connection and nothing lives in the API DB. Connecting checks the token with the host, which
opens the guest's console (the newest connection takes it from an older one); the proxy then relays over
RPC: long-polled reads out, writes in. No graphics console is served (VNC, SPICE, RDP, MKS: Nova's 400
"Unavailable console type"), nor a serial one on libvirt's test hypervisor (the same 400).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import WSMsgType, web

from api.compute import mappings, service
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
PATH = "/serial-console"  # under /compute
READ_WAIT = 2.0  # seconds a relayed read waits on the host for output (the RPC's own limit is 5)
WRITE_CHUNK = 4096  # the host takes at most this much per write
# the legacy actions (one per console kind) and the console type each one's body may name
ACTIONS = {"os-getSerialConsole": ["serial"], "os-getVNCConsole": ["novnc", "xvpvnc"],
           "os-getSPICEConsole": ["spice-html5"], "os-getRDPConsole": ["rdp-html5"]}
SERIAL = "serial"


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
    if protocol != SERIAL:
        raise errors.ConsoleTypeUnavailable(console_type=console_type)
    if console_type != SERIAL:
        raise errors.ConsoleTypeInvalid(console_type=console_type)
    record = await service.get(cc, ctx, server_id)
    if record.get("vm_state") != "active" or not record.get("host"):
        raise errors.InstanceNotReady(instance_id=record["uuid"])
    compute = ComputeAPI(cc.router.cell(mapping.cell_path))
    secret = await compute.console_authorize(ctx, str(record["host"]), str(record["uuid"]),
                                             str(mapping.project_id), console_type)
    base = public_url(request)
    scheme = "wss" if base.startswith("https:") else "ws"
    return f"{scheme}{base[base.index(':'):]}/compute{PATH}?token={record['uuid']}.{secret}"


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
    """The legacy action `name` (ACTIONS): {"console": {"type", "url"}}."""
    validate(action_schema(ACTIONS[name]), spec, name)
    protocol = SERIAL if name == "os-getSerialConsole" else name.removeprefix("os-get").removesuffix("Console")
    url = await _console_url(request, server_id, protocol.lower(), spec["type"])
    return web.json_response({"console": {"type": spec["type"], "url": url}})


class Relay:
    """One websocket's console: the host's session, relayed both ways until either side ends."""

    def __init__(self, compute: ComputeAPI, ctx: RequestContext, host: str, uuid: str, session: str) -> None:
        self.compute, self.ctx, self.host, self.uuid, self.session = compute, ctx, host, uuid, session

    async def run(self, ws: web.WebSocketResponse) -> None:
        outward = asyncio.create_task(self._out(ws))
        inward = asyncio.create_task(self._in(ws))
        try:
            await asyncio.wait([outward, inward], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (outward, inward):
                task.cancel()
            await asyncio.gather(outward, inward, return_exceptions=True)
            with contextlib.suppress(errors.CellcloudError):
                await asyncio.shield(self.compute.console_close(self.ctx, self.host, self.uuid, self.session))

    async def _out(self, ws: web.WebSocketResponse) -> None:
        try:
            while not ws.closed:
                data = await self.compute.console_read(self.ctx, self.host, self.uuid, self.session, READ_WAIT)
                if data:
                    await ws.send_bytes(data)
        except errors.CellcloudError as exc:  # the guest stopped, another connection took it, the host left
            LOG.info("serial console of %s ended: %s", self.uuid, exc.message)

    async def _in(self, ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                data = bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                data = str(msg.data).encode()
            else:
                break
            for at in range(0, len(data), WRITE_CHUNK):
                await self.compute.console_write(self.ctx, self.host, self.uuid, self.session,
                                                 data[at:at + WRITE_CHUNK])


async def _opened(request: web.Request) -> Relay:
    """The relay the request's token opens: 401 for a token that is malformed, expired or not the server's."""
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
    session = await compute.console_open(ctx, host, str(record["uuid"]), project, secret)
    return Relay(compute, ctx, host, str(record["uuid"]), session)


async def serial_proxy(request: web.Request) -> web.StreamResponse:
    relay = await _opened(request)  # before the upgrade: a bad token is an HTTP 401, not a closed socket
    ws = web.WebSocketResponse(protocols=("binary",), heartbeat=30.0, max_msg_size=64 * 1024)
    try:
        await ws.prepare(request)
    except BaseException:
        with contextlib.suppress(errors.CellcloudError):
            await asyncio.shield(relay.compute.console_close(relay.ctx, relay.host, relay.uuid, relay.session))
        raise
    await relay.run(ws)
    await ws.close()
    return ws


def is_public(request: web.Request) -> bool:
    """The websocket carries its own console token, not a Keystone one."""
    return request.method == "GET" and request.path == f"/compute{PATH}"


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v2.1/servers/{server_id}/remote-consoles", create)
    app.router.add_get(PATH, serial_proxy)
