"""Real QEMU guests end to end (qemu:///embed, TCG here): a cluster started by
`cellctl up` registers the tiny guest; through the API it boots, prints its banner
on the serial console (read back with os-getConsoleOutput and the openstack CLI),
reboots soft and hard (a new boot each), stops and starts, survives a compute
restart, is seen SHUTOFF when its QEMU dies behind our back, and is deleted
with its domain and overlay; its serial console (`openstack console url show --serial`)
reaches the guest's shell over the API's websocket, and its novnc console (`--novnc`) serves
noVNC's page whose websocket completes an RFB handshake with the guest's own VNC server.
Bad images end in ERROR and leave nothing behind."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import openstack
import pytest
import requests

from api.compute import novnc
from node.compute import driver as driver_mod
from tools.devcluster import RunningCluster, running_cluster
from tools.openstack_cli import WAIT_POLL

# real guests or netns hosts: the module's cluster comes up inside its first test's timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
BANNER = "CELLCLOUD-GUEST-UP"


def _unavailable() -> str | None:
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed"
    try:
        import grp
        import pwd
        pwd.getpwnam(driver_mod.EMBED_USER)
        grp.getgrnam(driver_mod.EMBED_USER)
    except KeyError:
        return f"qemu:///embed needs the user and group {driver_mod.EMBED_USER!r} (make deps creates them)"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    reason = _unavailable()
    if reason is not None:
        pytest.skip(reason)
    with running_cluster(tmp_path_factory.mktemp("qemu"), virt_uri="qemu:///embed") as c:
        images = sdk(c, "admin").image.images(name="tiny-linux")
        if not [i for i in images if i.status == "active"]:
            pytest.fail("cellctl up did not register tiny-linux: see its output (needs `apt-get update` once)")
        yield c


def sdk(cluster: RunningCluster, who: str = "demo") -> openstack.connection.Connection:
    return openstack.connect(**cluster.credentials(who), region_name="RegionOne")  # type: ignore[arg-type]


def host_dir(cluster: RunningCluster) -> Path:
    return cluster.state / "hosts" / "node1"


def qemu_pid(cluster: RunningCluster, server_id: str) -> int | None:
    pidfile = host_dir(cluster) / "embed" / "run" / "qemu" / f"cc-{server_id}.pid"
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def console(conn: openstack.connection.Connection, server_id: str, length: int | None = None) -> str:
    body = {"os-getConsoleOutput": {} if length is None else {"length": length}}
    resp = conn.compute.post(f"/servers/{server_id}/action", json=body)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["output"])


def wait_console(conn: openstack.connection.Connection, server_id: str, needle: str, count: int = 1,
                 timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = console(conn, server_id)
        if out.count(needle) >= count:
            return out
        assert time.monotonic() < deadline, f"{needle!r} x{count} not in the console within {timeout}s:\n{out}"
        time.sleep(0.25)


def wait_status(conn: openstack.connection.Connection, server_id: str, status: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        server = conn.compute.get_server(server_id)
        if server.status == status and not server.task_state:
            return server
        assert server.status != "ERROR" or status == "ERROR", f"server went ERROR: {server.fault}"
        assert time.monotonic() < deadline, f"server stayed {server.status}/{server.task_state}"
        time.sleep(0.25)


def boot(conn: openstack.connection.Connection, name: str, image: str = "tiny-linux") -> str:
    found, flavor = conn.image.find_image(image), conn.compute.find_flavor("m1.tiny")
    assert found is not None and flavor is not None
    server = conn.compute.create_server(name=name, image_id=found.id, flavor_id=flavor.id, networks="auto")
    return str(server.id)


def action(conn: openstack.connection.Connection, server_id: str, body: dict[str, Any]) -> None:
    resp = conn.compute.post(f"/servers/{server_id}/action", json=body)
    assert resp.status_code == 202, resp.text


def assert_gone(cluster: RunningCluster, server_id: str) -> None:
    assert not (host_dir(cluster) / "instances" / server_id).exists(), "the overlay and console log stayed"
    assert qemu_pid(cluster, server_id) is None, "the QEMU process stayed"
    defined = list((host_dir(cluster) / "embed").rglob(f"cc-{server_id}.xml"))
    assert defined == [], f"the domain is still defined: {defined}"


def test_boot_banner_reboots_stop_start_and_delete(cluster: RunningCluster) -> None:
    conn = sdk(cluster)
    sid = boot(conn, "real1")
    wait_status(conn, sid, "ACTIVE")
    out = wait_console(conn, sid, "CELLCLOUD-READY")
    assert BANNER in out and "CELLCLOUD-NET" in out
    overlay = host_dir(cluster) / "instances" / sid / "disk"
    assert overlay.exists()  # a copy-on-write overlay over the cached base
    last = cluster.cli("console", "log", "show", "--lines", "2", "real1")
    assert last.returncode == 0, last.stderr
    assert len(last.stdout.rstrip("\n").splitlines()) <= 2
    assert console(conn, sid, 1).count("\n") <= 1

    action(conn, sid, {"reboot": {"type": "SOFT"}})
    wait_status(conn, sid, "ACTIVE")
    wait_console(conn, sid, BANNER, count=2)
    action(conn, sid, {"reboot": {"type": "HARD"}})
    wait_status(conn, sid, "ACTIVE")
    wait_console(conn, sid, BANNER, count=3)

    action(conn, sid, {"os-stop": None})
    assert wait_status(conn, sid, "SHUTOFF").power_state == 4
    assert qemu_pid(cluster, sid) is None
    conflict = conn.compute.post(f"/servers/{sid}/action", json={"reboot": {"type": "SOFT"}})
    assert conflict.status_code == 409
    action(conn, sid, {"os-start": None})
    wait_status(conn, sid, "ACTIVE")
    wait_console(conn, sid, BANNER, count=4)

    conn.compute.delete_server(sid)
    conn.compute.wait_for_delete(conn.compute.get_server(sid), wait=60, interval=WAIT_POLL)
    assert_gone(cluster, sid)


def test_a_dead_guest_shows_shutoff_and_a_restarted_compute_reconnects(cluster: RunningCluster) -> None:
    conn = sdk(cluster)
    sid = boot(conn, "real2")
    wait_status(conn, sid, "ACTIVE")
    wait_console(conn, sid, "CELLCLOUD-READY")
    pid = qemu_pid(cluster, sid)
    assert pid is not None

    compute = cluster.signal("cell1/compute/node1", signal.SIGTERM)  # the supervisor starts a new one
    deadline = time.monotonic() + 60
    while cluster.pid("cell1/compute/node1") == compute or "compute node1 ready" not in \
            cluster.log("cell1/compute/node1").split("(start #2)")[-1]:
        assert time.monotonic() < deadline, "the compute worker did not come back"
        time.sleep(0.2)
    assert qemu_pid(cluster, sid) == pid  # the guest ran on, untouched
    assert conn.compute.get_server(sid).status == "ACTIVE"
    while True:  # until the cell's directory lists the new worker (a heartbeat or two), actions get 409
        resp = conn.compute.post(f"/servers/{sid}/action", json={"os-getConsoleOutput": {}})
        if resp.status_code != 409:
            break
        assert time.monotonic() < deadline, resp.text
        time.sleep(0.2)
    assert resp.status_code == 200 and BANNER in resp.json()["output"]  # the new worker reads the same console

    os.kill(pid, signal.SIGKILL)  # the guest dies behind the API's back
    t0 = time.monotonic()
    server = wait_status(conn, sid, "SHUTOFF", timeout=30)
    assert time.monotonic() - t0 < 15 and server.power_state in (4, 6)
    action(conn, sid, {"os-start": None})
    wait_status(conn, sid, "ACTIVE")
    wait_console(conn, sid, BANNER, count=2)
    conn.compute.delete_server(sid)
    conn.compute.wait_for_delete(conn.compute.get_server(sid), wait=60, interval=WAIT_POLL)
    assert_gone(cluster, sid)


def _upload(cluster: RunningCluster, name: str, disk_format: str, data: bytes, **props: str) -> str:
    admin = sdk(cluster, "admin")
    token = str(admin.session.get_token())
    base = f"{cluster.endpoint}/image/v2/images"
    resp = requests.post(base, json={"name": name, "disk_format": disk_format, "container_format": "bare" if disk_format == "raw" else disk_format,
                                     "visibility": "public", **props}, headers={"X-Auth-Token": token}, timeout=30)
    assert resp.status_code == 201, resp.text
    image_id = str(resp.json()["id"])
    put = requests.put(f"{base}/{image_id}/file", data=data, timeout=30,
                       headers={"X-Auth-Token": token, "Content-Type": "application/octet-stream"})
    assert put.status_code == 204, put.text
    return image_id


def claims(cluster: RunningCluster) -> list[Any]:
    with sqlite3.connect(cluster.state / "cells" / "cell1.db") as db:
        return db.execute("SELECT instance_uuid FROM claims").fetchall()


def test_a_tampered_image_and_a_guest_that_cannot_start_end_in_error_leaving_nothing(
        cluster: RunningCluster) -> None:
    conn = sdk(cluster)
    data = b"CELLCLOUD tampered image test\n".ljust(1 << 16, b"\0")
    tampered = _upload(cluster, "tampered", "raw", data)
    digest = hashlib.sha512(data).hexdigest()
    blob = cluster.state / "images" / "sha512" / digest[:2] / digest
    blob.write_bytes(data.replace(b"tampered", b"TAMPERED"))  # the store's bits no longer match the record
    bad_kernel = _upload(cluster, "bad-kernel", "aki", b"not a kernel" * 100)
    unbootable = _upload(cluster, "unbootable", "ami", b"\0" * 4096, kernel_id=bad_kernel)
    assert unbootable

    sid = boot(conn, "tampered1", "tampered")
    server = wait_status(conn, sid, "ERROR")
    assert tampered in json.dumps(server.fault) and "checksum" in json.dumps(server.fault)
    sid2 = boot(conn, "unbootable1", "unbootable")
    server2 = wait_status(conn, sid2, "ERROR")
    assert server2.fault and server2.fault.get("message")
    for s in (sid, sid2):
        assert_gone(cluster, s)
    assert claims(cluster) == []
    for s in (sid, sid2):
        conn.compute.delete_server(s)


async def _until(ws: aiohttp.ClientWebSocketResponse, needle: bytes, timeout: float = 30) -> bytes:
    """What the console sent until `needle` appeared (binary frames, as Nova's serial proxy sends)."""
    seen = b""
    async with asyncio.timeout(timeout):
        while needle not in seen:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.BINARY, f"{msg.type} after {seen[-300:]!r}"
            seen += msg.data
    return seen


async def _shell_session(url: str) -> tuple[bytes, aiohttp.WSMsgType]:
    """Run `echo` in the guest's shell through the console; then a second connection takes the console
    from the first. (the echo's output, what the first connection saw once the second connected)"""
    async with aiohttp.ClientSession() as http, http.ws_connect(url, protocols=("binary",)) as first:
        await first.send_bytes(b"\n")
        await _until(first, b"# ")  # busybox sh's prompt: a root shell on ttyS0
        await first.send_str("echo CC-$((6*7))\n")  # text frames are input too
        echoed = await _until(first, b"CC-42\r\n")
        async with http.ws_connect(url, protocols=("binary",)) as second:
            await second.send_bytes(b"echo SECOND-$((2+3))\n")
            await _until(second, b"SECOND-5\r\n")
            async with asyncio.timeout(30):
                while (msg := await first.receive()).type == aiohttp.WSMsgType.BINARY:
                    pass
        return echoed, msg.type


class Received:
    """What a websocket brought, read by size across its binary frames (RFB does not follow frames)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.buffer = ws, b""

    async def take(self, size: int) -> bytes:
        async with asyncio.timeout(30):
            while len(self.buffer) < size:
                msg = await self.ws.receive()
                assert msg.type == aiohttp.WSMsgType.BINARY, f"{msg.type} after {self.buffer!r}"
                self.buffer += msg.data
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


async def _rfb_handshake(url: str) -> tuple[bytes, bytes, int, int, str]:
    """RFB 3.8 through the websocket as noVNC speaks it, security type None: (the server's version, the
    security types it offers, the framebuffer's width and height, the desktop's name)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url, protocols=("binary",)) as ws:
        got = Received(ws)
        version = await got.take(12)
        await ws.send_bytes(b"RFB 003.008\n")
        offered = await got.take((await got.take(1))[0])
        await ws.send_bytes(b"\x01")  # None
        assert await got.take(4) == b"\0\0\0\0", "SecurityResult is not OK"
        await ws.send_bytes(b"\x01")  # ClientInit: shared
        width, height = struct.unpack(">HH", await got.take(4))
        await got.take(16)  # the pixel format
        name = await got.take(struct.unpack(">I", await got.take(4))[0])
        return version, offered, width, height, name.decode()


def _check_novnc(cluster: RunningCluster, sid: str, other: str) -> None:
    """`console url show --novnc` gives noVNC's page; its websocket reaches the guest's VNC server; a
    guessed token or one of another server opens nothing."""
    shown = cluster.ok("console", "url", "show", "--novnc", "-f", "json", "console1")
    url = str(shown["url"])
    assert shown["type"] == "novnc" and urlsplit(url).path == "/compute/vnc_lite.html", shown
    page = requests.get(url, timeout=30)
    assert page.status_code == 200 and "<title>noVNC</title>" in page.text and "./core/rfb.js" in page.text
    parts = urlsplit(url)
    websocket = f"ws://{parts.netloc}/{parse_qs(parts.query)['path'][0]}"
    version, offered, width, height, name = asyncio.run(_rfb_handshake(websocket))
    assert version.startswith(b"RFB 003.00") and 1 in offered, (version, offered)
    assert width > 0 and height > 0 and sid in name, (width, height, name)  # QEMU's "QEMU (cc-<uuid>)"
    base, token = websocket.split("?token=", 1)
    secret = token.split(".", 1)[1]
    http = base.replace("ws://", "http://", 1)
    for bad in (f"{sid}.{secret[:-2]}xx", f"{other}.{secret}"):
        assert requests.get(http, params={"token": bad}, timeout=30).status_code == 401, bad


def test_the_serial_and_novnc_console_urls_reach_the_guest(cluster: RunningCluster) -> None:
    if novnc.missing() is not None:
        pytest.skip(str(novnc.missing()))
    conn = sdk(cluster)
    sid = boot(conn, "console1")
    wait_status(conn, sid, "ACTIVE")
    wait_console(conn, sid, "CELLCLOUD-READY")
    shown = cluster.ok("console", "url", "show", "--serial", "-f", "json", "console1")
    url = str(shown["url"])
    assert shown["type"] == "serial" and url.startswith("ws://") and "/compute/serial-console?token=" in url, shown
    echoed, first_end = asyncio.run(_shell_session(url))
    assert b"CC-42" in echoed
    assert first_end in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    # the token is for this server only, and a guessed one opens nothing: 401 before any upgrade
    token = url.split("token=", 1)[1]
    server_part, secret = token.split(".", 1)
    base = url.split("?", 1)[0].replace("ws://", "http://", 1)
    for bad in (f"{server_part}.{secret[:-2]}xx", f"{server_part}.", secret):
        assert requests.get(base, params={"token": bad}, timeout=30).status_code == 401, bad
    other = boot(conn, "console2")
    wait_status(conn, other, "ACTIVE")
    assert requests.get(base, params={"token": f"{other}.{secret}"}, timeout=30).status_code == 401
    _check_novnc(cluster, sid, other)
    action(conn, sid, {"os-stop": None})
    wait_status(conn, sid, "SHUTOFF")
    stopped = conn.compute.post(f"/servers/{sid}/remote-consoles", json={"remote_console": {
        "protocol": "serial", "type": "serial"}}, microversion="2.6")
    assert stopped.status_code == 409 and "is not ready" in stopped.text, stopped.text
    servers = [conn.compute.get_server(server) for server in (sid, other)]
    for server in servers:
        conn.compute.delete_server(server)
    for server in servers:
        conn.compute.wait_for_delete(server, wait=60, interval=WAIT_POLL)
