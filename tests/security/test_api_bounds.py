"""Bounded inputs: every refusal is Nova's status and error shape, and leaves nothing made or changed.

Bodies over 1 MiB are a 413; metadata (create, rebuild, set) over the project's metadata_items
quota a 403, keys over 255 characters and values over 255 a 400; user_data over 65535 base64
characters a 400; personality files over the injected_files quotas a 403 (Nova 2.1); a guest's
serial log is cut back on its compute host once it passes MAX_CONSOLE_LOG."""
from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from api.http import MAX_BODY
from api.volume.volumes import _metadata_filter
from cells import errors
from node.compute.driver import LibvirtDriver
from node.compute.power import CONSOLE_LOG, MAX_CONSOLE_BYTES, MAX_CONSOLE_LOG, trim_log
from tests.unit.test_api_servers import Cloud, cloud

__all__ = ["cloud"]  # fixture used by name

SERVERS = "/compute/v2.1/servers"


async def _refused(cloud: Cloud, resp: Any, status: int, fault: str, message: str) -> None:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body[fault]["code"] == status
    assert message in body[fault]["message"], body


async def _nothing_built(cloud: Cloud) -> None:
    assert await cloud.mappings() == 0
    assert cloud.cell.conductor.builds == []


def _server(cloud: Cloud, **extra: Any) -> dict[str, Any]:
    return {"server": {"name": "s1", "flavorRef": "1", "imageRef": cloud.image_id, **extra}}


async def test_body_over_the_limit_is_413(cloud: Cloud) -> None:
    body = _server(cloud, metadata={"k": "v" * 10}, adminPass="x" * MAX_BODY)
    resp = await cloud.client.post(SERVERS, json=body, headers=cloud.demo)
    await _refused(cloud, resp, 413, "overLimit", "Request is too large.")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the read itself must stop
        yield b'{"server": {"name": "s1", "adminPass": "'
        for _ in range(MAX_BODY // 65536 + 1):
            yield b"x" * 65536
        yield b'"}}'

    resp = await cloud.client.post(SERVERS, data=chunks(), headers={**cloud.demo, "Content-Type": "application/json"})
    await _refused(cloud, resp, 413, "overLimit", "Request is too large.")
    await _nothing_built(cloud)


async def test_create_metadata_bounds(cloud: Cloud) -> None:
    items = {f"k{i}": "v" for i in range(129)}
    resp = await cloud.client.post(SERVERS, json=_server(cloud, metadata=items), headers=cloud.demo)
    await _refused(cloud, resp, 403, "forbidden", "Quota exceeded for metadata_items")
    for meta in ({"k" * 256: "v"}, {"k": "v" * 256}, {"": "v"}):
        resp = await cloud.client.post(SERVERS, json=_server(cloud, metadata=meta), headers=cloud.demo)
        await _refused(cloud, resp, 400, "badRequest", "Invalid input for field/attribute")
    await _nothing_built(cloud)


async def test_user_data_over_65535_is_400(cloud: Cloud) -> None:
    too_big = base64.b64encode(b"x" * 49152).decode() + "AAAA"  # 65540 characters of valid base64
    resp = await cloud.client.post(SERVERS, json=_server(cloud, user_data=too_big), headers=cloud.demo)
    await _refused(cloud, resp, 400, "badRequest", "user_data")
    await _nothing_built(cloud)


@pytest.mark.parametrize(("files", "message"), [
    ([{"path": f"/etc/f{i}", "contents": "YQ=="} for i in range(6)], "Personality file limit exceeded"),
    ([{"path": "/" + "p" * 255, "contents": "YQ=="}], "Personality file path exceeds maximum 255"),
    ([{"path": "/etc/big", "contents": base64.b64encode(b"x" * 10241).decode()}],
     "Personality file content exceeds maximum 10240"),
])
async def test_personality_over_quota_is_403(cloud: Cloud, files: list[dict[str, str]], message: str) -> None:
    resp = await cloud.client.post(SERVERS, json=_server(cloud, personality=files), headers=cloud.demo)
    await _refused(cloud, resp, 403, "forbidden", message)
    await _nothing_built(cloud)


async def test_personality_within_quota_is_accepted(cloud: Cloud) -> None:
    files = [{"path": f"/etc/f{i}", "contents": base64.b64encode(b"x" * 10240).decode()} for i in range(5)]
    resp = await cloud.client.post(SERVERS, json=_server(cloud, personality=files), headers=cloud.demo)
    assert resp.status == 202, await resp.text()


async def _active_server(cloud: Cloud) -> str:
    sid = str((await cloud.boot(cloud.demo, metadata={"keep": "me"}))["id"])
    cloud.cell.conductor.activate(sid)
    return sid


async def _metadata(cloud: Cloud, sid: str) -> dict[str, str]:
    resp = await cloud.client.get(f"{SERVERS}/{sid}/metadata", headers=cloud.demo)
    assert resp.status == 200
    return dict((await resp.json())["metadata"])


async def test_rebuild_metadata_bounds(cloud: Cloud) -> None:
    sid = await _active_server(cloud)
    action = f"{SERVERS}/{sid}/action"
    rebuild = {"imageRef": cloud.image_id, "metadata": {f"k{i}": "v" for i in range(1000)}}
    resp = await cloud.client.post(action, json={"rebuild": rebuild}, headers=cloud.demo)
    await _refused(cloud, resp, 403, "forbidden", "Quota exceeded for metadata_items")
    for meta in ({"k" * 256: "v"}, {"k": "v" * 256}, {"k": 1}):
        resp = await cloud.client.post(action, json={"rebuild": {"imageRef": cloud.image_id, "metadata": meta}},
                                       headers=cloud.demo)
        await _refused(cloud, resp, 400, "badRequest", "Invalid input for field/attribute")
    files = [{"path": f"/f{i}", "contents": "YQ=="} for i in range(6)]
    resp = await cloud.client.post(action, json={"rebuild": {"imageRef": cloud.image_id, "personality": files}},
                                   headers=cloud.demo)
    await _refused(cloud, resp, 403, "forbidden", "Personality file limit exceeded")
    assert await _metadata(cloud, sid) == {"keep": "me"}


async def test_metadata_set_bounds(cloud: Cloud) -> None:
    sid = await _active_server(cloud)
    url = f"{SERVERS}/{sid}/metadata"
    resp = await cloud.client.put(url, json={"metadata": {f"k{i}": "v" for i in range(129)}}, headers=cloud.demo)
    await _refused(cloud, resp, 403, "forbidden", "Quota exceeded for metadata_items")
    # a merge that would pass the quota only with what is already there
    resp = await cloud.client.post(url, json={"metadata": {f"k{i}": "v" for i in range(128)}}, headers=cloud.demo)
    await _refused(cloud, resp, 403, "forbidden", "Quota exceeded for metadata_items")
    resp = await cloud.client.put(f"{url}/{'k' * 256}", json={"meta": {"k" * 256: "v"}}, headers=cloud.demo)
    await _refused(cloud, resp, 400, "badRequest", "Invalid input for field/attribute")
    resp = await cloud.client.put(f"{url}/k", json={"meta": {"k": "v" * 256}}, headers=cloud.demo)
    await _refused(cloud, resp, 400, "badRequest", "Invalid input for field/attribute")
    assert await _metadata(cloud, sid) == {"keep": "me"}


def test_console_log_is_cut_back_while_its_writer_appends(tmp_path: Path) -> None:
    """A writer holding the log open with O_APPEND (as QEMU's serial log) goes on writing at the
    new end after a cut; the file stays bounded and keeps its newest bytes."""
    path = tmp_path / CONSOLE_LOG
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        line = b"x" * 1023 + b"\n"
        for _ in range(MAX_CONSOLE_LOG // len(line)):
            os.write(fd, line)
        assert trim_log(str(path)) is False  # at the limit: untouched
        os.write(fd, b"the newest line\n")
        assert trim_log(str(path)) is True
        assert path.stat().st_size <= MAX_CONSOLE_BYTES
        os.write(fd, b"after the cut\n")
        data = path.read_bytes()
        assert data.endswith(b"the newest line\nafter the cut\n")
        assert b"\x00" not in data  # the writer did not leave a hole at its old offset
    finally:
        os.close(fd)


async def test_compute_driver_bounds_every_guest_log(tmp_path: Path) -> None:
    driver = LibvirtDriver("test:///default", instances_dir=str(tmp_path))
    for uuid, size in (("big", MAX_CONSOLE_LOG + 4096), ("small", 1000)):
        (tmp_path / uuid).mkdir()
        (tmp_path / uuid / CONSOLE_LOG).write_bytes(b"y" * size)
    (tmp_path / "no-log-yet").mkdir()
    assert await driver.power.trim_console_logs() == 1
    assert (tmp_path / "big" / CONSOLE_LOG).stat().st_size == MAX_CONSOLE_BYTES
    assert (tmp_path / "small" / CONSOLE_LOG).stat().st_size == 1000


@pytest.mark.parametrize("raw", ["{'k': '" + "v" * 5000 + "'}", "{'k': " + "[" * 1000 + "]" * 1000 + "}", "{'k'"])
def test_volume_metadata_filter_is_bounded(raw: str) -> None:
    """The metadata filter of GET /volumes is parsed from a literal: too long or too deep is a 400."""
    with pytest.raises(errors.Invalid, match="metadata filter"):
        _metadata_filter(raw)
    assert _metadata_filter("{'k': 'v'}") == {"k": "v"}
