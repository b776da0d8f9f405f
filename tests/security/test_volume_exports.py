"""Volume exports are reachable only by the host they were exported to.

Loopback stands for two hosts: the whole of 127.0.0.0/8 is local, and a client
connecting to 127.0.0.1 comes from 127.0.0.1, so an export made for "the compute
host 127.0.0.2" must refuse qemu-io run here, and one made for 127.0.0.1 must
serve it. Each test skips with the reason when its tools are not installed."""
from __future__ import annotations

import asyncio
import shutil
import struct
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cells import errors
from node.volume.backends import VolumeStorage
from node.volume.backends.file import FileBackend
from node.volume.proc import CommandFailed
from node.volume.targets import nbd as nbd_mod
from node.volume.targets import tgt as tgt_mod
from node.volume.targets.nbd import NbdTarget
from node.volume.targets.nbd_gate import IHAVEOPT, OPT_LIST
from node.volume.targets.tgt import TgtTarget, acls
from tests.contract.test_volume_drivers import qemu_io
from tools.devcluster import free_port

HERE = {"host": "compute-here", "ip": "127.0.0.1"}  # where qemu-io runs
ELSEWHERE = {"host": "compute-elsewhere", "ip": "127.0.0.2"}
OPT_GO = 7

_NO_QEMU_IO = None if shutil.which("qemu-io") else "qemu-io is not installed (qemu-utils)"


async def _raw_volume(tmp_path: Path) -> VolumeStorage:
    backend = FileBackend(str(tmp_path / "volumes"), "raw", capacity_gb=10)
    await backend.check()
    return await backend.create(str(uuid.uuid4()), 1)


@pytest.fixture
async def tgt(tmp_path: Path) -> AsyncIterator[TgtTarget]:
    reason = tgt_mod.unavailable_reason() or _NO_QEMU_IO
    if reason:
        pytest.skip(f"tgt: {reason}")
    target = TgtTarget("127.0.0.1", free_port(), str(tmp_path / "tgtd.log"))
    await target.start()
    yield target
    await target.stop()


async def test_tgt_admits_only_the_compute_host(tgt: TgtTarget, tmp_path: Path) -> None:
    storage = await _raw_volume(tmp_path)
    info = await tgt.export(storage, ELSEWHERE)
    with pytest.raises(CommandFailed):  # the iSCSI login from 127.0.0.1 is refused
        await qemu_io(info, "read 0 512")
    # exported again to this host (a move): the ACL moves with it, the other host is out
    assert await tgt.export(storage, HERE) == info
    await qemu_io(info, "write -P 0x5a 0 512")
    await qemu_io(info, "read -P 0x5a 0 512")
    show = await tgt._adm("--lld", "iscsi", "--op", "show", "--mode", "target")
    assert list(acls(show).values()) == [{"127.0.0.1"}]


@pytest.mark.parametrize("connector", [{"host": "nowhere"}, {"host": "any", "ip": "ALL"}])
async def test_tgt_refuses_an_export_without_a_host_address(tgt: TgtTarget, tmp_path: Path,
                                                            connector: dict[str, str]) -> None:
    storage = await _raw_volume(tmp_path)
    with pytest.raises(errors.VolumeExportFailed, match="no compute host address"):
        await tgt.export(storage, connector)
    assert await tgt.exported() == set()


@pytest.fixture
async def nbd(tmp_path: Path) -> AsyncIterator[NbdTarget]:
    reason = nbd_mod.unavailable_reason() or _NO_QEMU_IO
    if reason:
        pytest.skip(f"nbd: {reason}")
    target = NbdTarget("127.0.0.1", free_port(), str(tmp_path / "nbd"))
    await target.start()
    yield target
    await target.stop()


async def _option(port: int, source: str, option: int, data: bytes) -> bytes:
    """Open the NBD port from `source`, send one option; the server's first reply (b"" if it hung up)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        greeting = await reader.readexactly(18)  # NBDMAGIC, IHAVEOPT, handshake flags
        assert greeting[:8] == b"NBDMAGIC"
        writer.write(struct.pack(">I", 3))  # fixed newstyle, no zeroes
        writer.write(struct.pack(">QII", IHAVEOPT, option, len(data)) + data)
        await writer.drain()
        try:
            return await reader.readexactly(20)
        except asyncio.IncompleteReadError as exc:
            return exc.partial
    finally:
        writer.close()


def _go(name: str) -> bytes:
    raw = name.encode()
    return struct.pack(">I", len(raw)) + raw + struct.pack(">H", 0)


async def test_nbd_serves_an_export_only_to_its_host(nbd: NbdTarget, tmp_path: Path) -> None:
    storage = await _raw_volume(tmp_path)
    info = await nbd.export(storage, ELSEWHERE)
    with pytest.raises(CommandFailed):  # qemu-io connects from 127.0.0.1
        await qemu_io(info, "read 0 512")
    assert await nbd.export(storage, HERE) == info  # exported again to this host: the other one is out
    await qemu_io(info, "write -P 0x5a 0 512")
    await qemu_io(info, "read -P 0x5a 0 512")
    ours = info["data"]["name"]
    assert await _option(nbd.port, "127.0.0.2", OPT_GO, _go(ours)) == b""


async def test_nbd_gate_checks_every_option_that_names_an_export(nbd: NbdTarget, tmp_path: Path) -> None:
    mine, theirs = await _raw_volume(tmp_path), await _raw_volume(tmp_path)
    mine_info = await nbd.export(mine, ELSEWHERE)  # 127.0.0.2 plays the compute host here
    theirs_info = await nbd.export(theirs, HERE)
    reply = await _option(nbd.port, "127.0.0.2", OPT_GO, _go(mine_info["data"]["name"]))
    magic, option = struct.unpack(">QI", reply[:12])
    assert (magic, option) == (0x3E889045565A9, OPT_GO)  # the daemon answers its own export
    for option, data in ((OPT_GO, _go(theirs_info["data"]["name"])), (6, _go(theirs_info["data"]["name"])),
                         (OPT_LIST, b""), (1, theirs_info["data"]["name"].encode()), (OPT_GO, _go(""))):
        assert await _option(nbd.port, "127.0.0.2", option, data) == b"", option  # hung up, nothing said
    await nbd.unexport(mine.volume_id)
    assert await _option(nbd.port, "127.0.0.2", OPT_GO, _go(mine_info["data"]["name"])) == b""


async def test_nbd_refuses_an_export_without_a_host_address(nbd: NbdTarget, tmp_path: Path) -> None:
    storage = await _raw_volume(tmp_path)
    with pytest.raises(errors.VolumeExportFailed, match="no compute host address"):
        await nbd.export(storage, {"host": "nowhere"})
