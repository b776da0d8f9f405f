"""The VNC console through the API (api/compute/remote_consoles.py, novnc.py): remote-consoles (2.6+) and
os-getVNCConsole (2.1-2.5) answer Nova's novnc URL (noVNC's vnc_lite.html, the websocket's path and token in its `path`
query), with Nova's 400s for other types; the page and its scripts are noVNC's own files, nothing outside
them; the websocket completes an RFB handshake with the guest's display and refuses (401, before any
upgrade) a guessed token, another server's and a serial console's; a text frame, a frame past the bound and
a connection where nothing moves for the idle limit are closed. Real API app, real ZeroMQ to a compute whose
consoles are node/compute/remote_consoles.py over a fake hypervisor and a real TCP display
(tests/unit/test_vnc_console.py's FakeDisplay); a real QEMU's display: tests/functional/test_real_guests.py."""
from __future__ import annotations

import asyncio
import dataclasses
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import make_mocked_request

from api.compute import novnc, remote_consoles
from api.middleware import logged_path
from cells.objects import versions
from cells.rpc.client import RpcClient
from cells.rpc.directory import DirectoryView, Member
from cells.rpc.server import RpcServer
from cells.rpcapi.compute import SURFACE as COMPUTE_SURFACE
from node.compute.remote_consoles import ConsoleHandlers, RemoteConsoles
from tests.conftest import free_port
from tests.unit.api_fake_cell import INTERVAL
from tests.unit.test_api_servers import Cloud, open_cloud
from tests.unit.test_vnc_console import HEIGHT, WIDTH, FakeDisplay, Host, graphics, server_init

NOVNC_MISSING = novnc.missing()
needs_novnc = pytest.mark.skipif(NOVNC_MISSING is not None, reason=str(NOVNC_MISSING))


class ComputeConsoles(ConsoleHandlers):
    """A compute worker's console methods (node/compute/manager.py's), over a fake hypervisor."""

    def __init__(self, consoles: RemoteConsoles) -> None:
        self.consoles = consoles


@dataclasses.dataclass
class Console:
    cloud: Cloud
    host: Host
    server: str
    other: str  # another running server of the same project, on the same host


@pytest_asyncio.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    display = FakeDisplay()
    await display.start()
    host = Host()
    address = f"tcp://127.0.0.1:{free_port()}"
    server = RpcServer(address, ComputeConsoles(RemoteConsoles(host)), COMPUTE_SURFACE)
    await server.start()
    client = RpcClient()
    try:
        async with open_cloud(tmp_path) as cloud:
            me = Member("cell1/compute/node1", address, ("compute.node1",), host="node1", service="compute",
                        version=versions.RELEASE, meta={"versions": versions.advertised(COMPUTE_SURFACE) or {}})
            view = DirectoryView(client, cloud.cell.router, me, INTERVAL)
            beats = asyncio.ensure_future(view.run())
            try:
                await view.wait_synced(2.0)
                ids = [str((await cloud.boot(cloud.demo, name=name))["id"]) for name in ("vnc1", "vnc2")]
                for sid in ids:
                    cloud.cell.conductor.activate(sid, host="node1")
                    host.guests[sid] = (1, graphics(display.port))  # VIR_DOMAIN_RUNNING
                yield Console(cloud, host, ids[0], ids[1])
            finally:
                beats.cancel()
                await asyncio.gather(beats, return_exceptions=True)
    finally:
        await server.stop()
        client.close()
        await display.stop()


async def console_url(c: Console, protocol: str = "vnc", kind: str = "novnc", version: str = "2.6") -> Any:
    resp = await c.cloud.client.post(f"/compute/v2.1/servers/{c.server}/remote-consoles",
                                     json={"remote_console": {"protocol": protocol, "type": kind}},
                                     headers={**c.cloud.demo, "OpenStack-API-Version": f"compute {version}"})
    return resp.status, await resp.json()


def websocket_path(url: str) -> str:
    """The websocket noVNC's page opens: `path` (relative to the page's host) of the page's query."""
    return "/" + parse_qs(urlsplit(url).query)["path"][0]


@needs_novnc
async def test_the_novnc_url_is_novas_and_its_websocket_reaches_the_display(console: Console) -> None:
    status, body = await console_url(console)
    assert status == 200, body
    shown = body["remote_console"]
    url = shown["url"]
    assert (shown["protocol"], shown["type"]) == ("vnc", "novnc")
    assert urlsplit(url).path == "/compute/vnc_lite.html", url
    path = websocket_path(url)
    assert path.startswith(f"/compute/vnc-console?token={console.server}."), path
    legacy = await console.cloud.client.post(f"/compute/v2.1/servers/{console.server}/action",
                                             json={"os-getVNCConsole": {"type": "novnc"}}, headers=console.cloud.demo)
    assert legacy.status == 200 and (await legacy.json())["console"]["type"] == "novnc"
    newer = await console.cloud.client.post(f"/compute/v2.1/servers/{console.server}/action",
                                            json={"os-getVNCConsole": {"type": "novnc"}},
                                            headers={**console.cloud.demo, "OpenStack-API-Version": "compute 2.6"})
    assert newer.status == 404, await newer.text()  # Nova's legacy console actions end at 2.5
    async with console.cloud.client.ws_connect(path, protocols=("binary",)) as ws:
        assert ws.protocol == "binary"
        assert await _received(ws, 12) == b"RFB 003.008\n"
        await ws.send_bytes(b"RFB 003.008\n")
        assert await _received(ws, 2) == bytes([1, 1])  # security type None
        await ws.send_bytes(b"\x01")
        assert await _received(ws, 4) == b"\0\0\0\0"
        await ws.send_bytes(b"\x01")
        init = await _received(ws, len(server_init()))
        assert struct.unpack(">HH", init[:4]) == (WIDTH, HEIGHT)


async def _received(ws: aiohttp.ClientWebSocketResponse, size: int) -> bytes:
    seen = b""
    async with asyncio.timeout(10):
        while len(seen) < size:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            seen += msg.data
    return seen


@needs_novnc
async def test_other_console_types_are_novas_400s(console: Console) -> None:
    for protocol, kind, says in (("vnc", "xvpvnc", "Invalid console type xvpvnc"),
                                 ("vnc", "serial", "Invalid console type serial"),
                                 ("serial", "novnc", "Invalid console type novnc"),
                                 ("spice", "spice-html5", "Unavailable console type spice-html5.")):
        status, body = await console_url(console, protocol, kind)
        assert status == 400 and body["badRequest"]["message"] == says, (protocol, kind, body)
    console.host.guests[console.server] = (1, "<domain><devices/></domain>")  # defined without a display
    status, body = await console_url(console)
    assert status == 400 and body["badRequest"]["message"] == "Unavailable console type vnc.", body


@needs_novnc
async def test_a_guessed_another_servers_or_a_serial_token_opens_nothing(console: Console) -> None:
    _, body = await console_url(console)
    token = parse_qs(urlsplit(websocket_path(body["remote_console"]["url"])).query)["token"][0]
    secret = token.split(".", 1)[1]
    _, serial = await console_url(console, "serial", "serial")
    serial_token = parse_qs(urlsplit(serial["remote_console"]["url"]).query)["token"][0]
    for bad in (f"{console.server}.{secret[:-2]}xx", f"{console.other}.{secret}", console.server, "", serial_token):
        resp = await console.cloud.client.get("/compute/vnc-console", params={"token": bad})
        assert resp.status == 401, (bad, await resp.text())


@needs_novnc
async def test_a_text_frame_a_frame_past_the_bound_and_an_idle_connection_are_closed(
        console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    _, body = await console_url(console)
    path = websocket_path(body["remote_console"]["url"])
    client = console.cloud.client
    for hostile in ("text", b"x" * (remote_consoles.MAX_FRAME + 1)):
        async with client.ws_connect(path, protocols=("binary",)) as ws:
            await _received(ws, 12)
            await (ws.send_str(hostile) if isinstance(hostile, str) else ws.send_bytes(hostile))
            async with asyncio.timeout(10):
                while (msg := await ws.receive()).type == aiohttp.WSMsgType.BINARY:
                    pass
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
    proxy = remote_consoles.PROXIES[remote_consoles.NOVNC]
    monkeypatch.setitem(remote_consoles.PROXIES, remote_consoles.NOVNC, dataclasses.replace(proxy, idle_close=0.5))
    async with client.ws_connect(path, protocols=("binary",)) as ws:
        await _received(ws, 12)  # then nothing either way
        async with asyncio.timeout(10):
            msg = await ws.receive()
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg


@needs_novnc
async def test_the_page_and_its_scripts_are_novncs_files_and_nothing_else(console: Console) -> None:
    client = console.cloud.client  # no token: these hold no data
    page = await client.get("/compute/vnc_lite.html", params={"path": "compute/vnc-console?token=x.y"})
    text = await page.text()
    assert page.status == 200 and "<title>noVNC</title>" in text and "./core/rfb.js" in text
    script = await client.get("/compute/core/rfb.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert (await script.read()) == (novnc.NOVNC_DIR / "core" / "rfb.js").read_bytes()
    assert (await client.get("/compute/vendor/pako/lib/zlib/inflate.js")).status == 200
    for outside in ("/compute/core/..%2Fvnc.html", "/compute/core/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
                    "/compute/core/nothing.js", "/compute/vendor/pako/README.md"):
        assert (await client.get(outside)).status == 404, outside


async def test_without_novnc_no_url_is_handed_out_and_the_page_says_why(
        console: Console, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(novnc, "NOVNC_DIR", tmp_path / "no-novnc")
    status, body = await console_url(console)
    assert status == 400 and "noVNC is not installed on this API host" in body["badRequest"]["message"], body
    page = await console.cloud.client.get("/compute/vnc_lite.html")
    assert page.status == 404 and "Debian package novnc" in await page.text()


def test_the_page_url_keeps_an_api_path_prefix_and_its_token_stays_out_of_the_access_log() -> None:
    url = novnc.page_url("https://cloud.example/api", "3f1c2a54-7d7e-4a51-9b4e-0c1d2e3f4a5b.s3cret")
    assert url.startswith("https://cloud.example/api/compute/vnc_lite.html?path=")
    assert websocket_path(url) == "/api/compute/vnc-console?token=3f1c2a54-7d7e-4a51-9b4e-0c1d2e3f4a5b.s3cret"
    logged = logged_path(make_mocked_request("GET", urlsplit(url).path + "?" + urlsplit(url).query))
    assert "s3cret" not in logged and logged.endswith("vnc_lite.html?path=%2A%2A%2A")
