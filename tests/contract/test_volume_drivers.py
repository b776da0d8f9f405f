"""One suite for every storage backend x export target this machine can run.

Data goes through the real data path: qemu-io writes a marker through one
export (iSCSI via tgtd, NBD via qemu-storage-daemon, or the local file), the
export is removed, and the marker is read back through another export type.
A backend or target the kernel lacks (LVM without device-mapper, LIO without
configfs) is skipped with the reason its own detection gives.
"""
from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cells import errors
from node.volume.backends import Backend
from node.volume.backends import lvm as lvm_mod
from node.volume.backends.file import FileBackend
from node.volume.backends.lvm import LvmBackend
from node.volume.proc import CommandFailed, run
from node.volume.targets import Target
from node.volume.targets import lio as lio_mod
from node.volume.targets import nbd as nbd_mod
from node.volume.targets import tgt as tgt_mod
from node.volume.targets.lio import LioTarget
from node.volume.targets.local import LocalTarget
from node.volume.targets.nbd import NbdTarget
from node.volume.targets.tgt import TgtTarget
from tools.devcluster import free_port

HOST = "vol1"
CONNECTOR = {"host": HOST, "ip": "127.0.0.1"}


def qemu_url(info: dict[str, Any]) -> tuple[str, str]:
    """(image, format) for qemu-io: what QEMU itself will open when a guest uses the export."""
    data = info["data"]
    if info["driver_volume_type"] == "iscsi":
        return f"iscsi://{data['target_portal']}/{data['target_iqn']}/{data['target_lun']}", "raw"
    if info["driver_volume_type"] == "nbd":
        return f"nbd://{data['host']}:{data['port']}/{data['name']}", "raw"
    return str(data["path"]), str(data["format"])


async def qemu_io(info: dict[str, Any], command: str) -> str:
    image, fmt = qemu_url(info)
    return await run(["qemu-io", "-f", fmt, "-c", command, image], timeout=30)


def backend_skip(name: str) -> str | None:
    if name == "lvm":
        return lvm_mod.unavailable_reason()
    if name == "file-qcow2" and shutil.which("qemu-img") is None:
        return "qemu-img is not installed"
    return None


def target_skip(name: str) -> str | None:
    if shutil.which("qemu-io") is None:
        return "qemu-io is not installed (qemu-utils)"
    reasons: dict[str, Callable[[], str | None]] = {
        "tgt": tgt_mod.unavailable_reason, "nbd": nbd_mod.unavailable_reason,
        "lio": lio_mod.unavailable_reason, "local": lambda: None}
    return reasons[name]()


def make_backend(name: str, tmp: Path) -> Backend:
    if name == "lvm":
        return LvmBackend("cellcloud")
    return FileBackend(str(tmp / "volumes"), "qcow2" if name == "file-qcow2" else "raw", capacity_gb=10)


def make_target(name: str, tmp: Path) -> Target:
    if name == "tgt":
        return TgtTarget("127.0.0.1", free_port(), str(tmp / "tgtd.log"))
    if name == "nbd":
        return NbdTarget("127.0.0.1", free_port(), str(tmp / "nbd"))
    if name == "lio":
        return LioTarget("127.0.0.1", free_port())
    return LocalTarget(HOST)


@pytest.fixture(params=["file-raw", "file-qcow2", "lvm"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    reason = backend_skip(request.param)
    if reason:
        pytest.skip(f"{request.param} backend: {reason}")
    b = make_backend(request.param, tmp_path)
    await b.check()
    return b


@pytest.fixture(params=["tgt", "nbd", "local", "lio"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    reason = target_skip(request.param)
    if reason:
        pytest.skip(f"{request.param} target: {reason}")
    t = make_target(request.param, tmp_path)
    await t.start()
    yield t
    await t.stop()


async def test_export_write_unexport_reexport_read(backend: Backend, target: Target) -> None:
    vid = str(uuid.uuid4())
    storage = await backend.create(vid, 1)
    assert (await backend.locate(vid)) == storage
    try:
        if target.name in ("tgt", "lio") and storage.disk_format != "raw":
            with pytest.raises(errors.VolumeExportFailed, match="raw"):
                await target.export(storage, CONNECTOR)
            assert vid not in await target.exported()
            return
        info = await target.export(storage, CONNECTOR)
        assert info["data"]["target"] == target.name
        assert await target.export(storage, CONNECTOR) == info  # idempotent: a restarted worker re-exports
        assert vid in await target.exported()
        await qemu_io(info, "write -P 0x5a 4096 512")
        await qemu_io(info, "read -P 0x5a 4096 512")  # -P: qemu-io fails unless every byte matches
        await target.unexport(vid)
        await target.unexport(vid)  # idempotent
        assert vid not in await target.exported()
        # the data stays with the volume: read it back through the local path after the export is gone
        local = await LocalTarget(HOST).export(storage, CONNECTOR)
        await qemu_io(local, "read -P 0x5a 4096 512")
        with pytest.raises(CommandFailed):
            await qemu_io(local, "read -P 0x11 4096 512")  # and a wrong pattern does fail
    finally:
        await target.unexport(vid)
        await backend.delete(vid)
    with pytest.raises(errors.VolumeNotFound):
        await backend.locate(vid)


async def test_marker_survives_a_trip_through_every_available_target(tmp_path: Path) -> None:
    names = [n for n in ("tgt", "nbd", "local") if target_skip(n) is None]
    if len(names) < 2:
        pytest.skip(f"fewer than two export targets usable here: {names}")
    backend = FileBackend(str(tmp_path / "volumes"), "raw", capacity_gb=10)
    await backend.check()
    vid = str(uuid.uuid4())
    storage = await backend.create(vid, 1)
    targets = [make_target(n, tmp_path / n) for n in names]
    for t in targets:
        await t.start()
    try:
        for i, t in enumerate(targets):
            info = await t.export(storage, CONNECTOR)
            if i:  # what the previous target wrote is here
                await qemu_io(info, f"read -P {0x40 + i} {i * 512} 512")
            await qemu_io(info, f"write -P {0x41 + i} {(i + 1) * 512} 512")
            await t.unexport(vid)
    finally:
        for t in targets:
            await t.stop()
        await backend.delete(vid)


async def test_local_target_refuses_another_host(tmp_path: Path) -> None:
    backend = FileBackend(str(tmp_path / "v"), "raw", capacity_gb=1)
    await backend.check()
    storage = await backend.create(str(uuid.uuid4()), 1)
    with pytest.raises(errors.VolumeExportFailed, match="serves host vol1 only"):
        await LocalTarget(HOST).export(storage, {"host": "elsewhere"})


@pytest.mark.skipif(tgt_mod.unavailable_reason() is not None, reason=str(tgt_mod.unavailable_reason()))
async def test_tgt_daemon_is_adopted_by_a_restarted_worker_and_stopped(tmp_path: Path) -> None:
    port = free_port()
    first = TgtTarget("127.0.0.1", port, str(tmp_path / "tgtd.log"))
    await first.start()
    backend = FileBackend(str(tmp_path / "v"), "raw", capacity_gb=1)
    await backend.check()
    storage = await backend.create(str(uuid.uuid4()), 1)
    await first.export(storage, CONNECTOR)
    second = TgtTarget("127.0.0.1", port, str(tmp_path / "tgtd.log"))  # a new worker process, same host
    await second.start()
    assert second.daemon.proc is None  # adopted, not a second daemon
    assert await second.exported() == {storage.volume_id}
    await second.stop()
    await first.daemon.wait_exit()  # tgtd went away on `--op delete --mode system`
    with pytest.raises(CommandFailed):
        await run(["tgtadm", "-C", str(port), "--op", "show", "--mode", "system"], timeout=5)


def test_missing_kernel_features_are_reported_with_their_reason(tmp_path: Path) -> None:
    assert lvm_mod.unavailable_reason(str(tmp_path / "no-such-control")) is not None
    assert "device-mapper" in str(lvm_mod.unavailable_reason(str(tmp_path / "no-such-control")))


async def test_lvm_backend_refuses_to_start_without_device_mapper(tmp_path: Path) -> None:
    with pytest.raises(errors.VolumeBackendUnavailable, match="device-mapper"):
        await LvmBackend("cellcloud", dm_control=str(tmp_path / "control")).check()


async def test_lio_refuses_to_start_where_configfs_is_missing() -> None:
    reason = lio_mod.unavailable_reason()
    if reason is None:
        pytest.skip("this host has configfs: LIO runs in the main suite")
    with pytest.raises(errors.VolumeBackendUnavailable, match="lio"):
        await LioTarget("127.0.0.1", free_port()).start()


async def test_file_backend_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(errors.Invalid):
        FileBackend(str(tmp_path), "vmdk")
