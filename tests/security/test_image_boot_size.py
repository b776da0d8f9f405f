"""A qcow2 is small on the wire and big on the host: a boot checks the flavor's disk against the
virtual size the upload's inspection recorded, not only the file's size (real API app
in-process, fake cell over real ZeroMQ, an image made by qemu-img)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_api_servers import Cloud, cloud

__all__ = ["cloud"]  # fixture used by name
pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) is not installed")


def make_qcow2(tmp_path: Path, size: str) -> Path:
    path = tmp_path / f"{size}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True, capture_output=True)
    return path


async def upload_qcow2(cloud: Cloud, tmp_path: Path, size: str) -> str:
    path = make_qcow2(tmp_path, size)
    resp = await cloud.client.post("/image/v2/images", json={"name": size, "disk_format": "qcow2",
                                                            "container_format": "bare"}, headers=cloud.demo)
    image_id = str((await resp.json())["id"])
    put = await cloud.client.put(f"/image/v2/images/{image_id}/file", data=path.read_bytes(),
                                 headers={**cloud.demo, "Content-Type": "application/octet-stream"})
    assert put.status == 204, await put.text()
    return image_id


async def test_a_qcow2_bigger_inside_than_the_flavor_disk_is_refused(cloud: Cloud, tmp_path: Path) -> None:
    huge = await upload_qcow2(cloud, tmp_path, "100G")  # a ~200 KiB file; m1.tiny has a 1 GiB disk
    shown = await (await cloud.client.get(f"/image/v2/images/{huge}", headers=cloud.demo)).json()
    assert shown["size"] < 1 << 20 and shown["virtual_size"] == 100 << 30
    body = {"server": {"name": "vm", "flavorRef": "1", "imageRef": huge, "networks": []}}
    resp = await cloud.client.post("/compute/v2.1/servers", json=body, headers=cloud.demo)
    assert resp.status == 400
    assert (await resp.json())["badRequest"]["message"] == "Flavor's disk is too small for requested image."
    assert cloud.cell.conductor.records == {} and await cloud.mappings() == 0
    fits = await upload_qcow2(cloud, tmp_path, "512M")
    body["server"]["imageRef"] = fits
    assert (await cloud.client.post("/compute/v2.1/servers", json=body, headers=cloud.demo)).status == 202
