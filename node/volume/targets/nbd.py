"""The `nbd` target: one qemu-storage-daemon per volume host, one NBD port,
one export per volume (export name volume-<id>).

Exports are added and removed at run time over the daemon's QMP socket
(blockdev-add + block-export-add, block-export-del + blockdev-del), so a single
fixed port serves every volume. qemu-storage-daemon opens raw and qcow2
files alike and serves plain bytes: the guest side always sees raw. The daemon
listens on a unix socket in the worker's private run dir; the NBD port is the
worker's gate (nbd_gate.py), which lets a client open only the exports made for
its address. A worker restart drops the NBD connections (the gate lives in it).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from typing import Any

from cells import errors
from node.volume.backends import VolumeStorage, volume_name
from node.volume.targets import initiator_address
from node.volume.targets.daemon import Daemon
from node.volume.targets.nbd_gate import NbdGate

LOG = logging.getLogger(__name__)
QMP_TIMEOUT = 10.0


class QmpError(RuntimeError):
    def __init__(self, command: str, error: dict[str, Any]) -> None:
        self.cls = str(error.get("class", ""))
        super().__init__(f"{command}: {error.get('desc', error)}")


def unavailable_reason() -> str | None:
    if shutil.which("qemu-storage-daemon") is None:
        return "qemu-storage-daemon is not installed (apt-get install qemu-system-x86 or qemu-utils)"
    return None


def node_name(volume_id: str) -> str:
    """QEMU block node names are at most 31 characters."""
    return "v" + volume_id.replace("-", "")[:30]


class Qmp:
    """A QMP connection over a unix socket: one command at a time, events skipped."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        async with asyncio.timeout(QMP_TIMEOUT):
            self._reader, self._writer = await asyncio.open_unix_connection(self.path)
            await self._reply()  # the greeting
            await self._send("qmp_capabilities", {})

    async def _reply(self) -> dict[str, Any]:
        assert self._reader is not None
        while True:
            line = await self._reader.readline()
            if not line:
                raise ConnectionError("QMP socket closed")
            msg = json.loads(line)
            if "event" not in msg:
                return dict(msg)

    async def _send(self, command: str, args: dict[str, Any]) -> Any:
        assert self._writer is not None
        self._writer.write(json.dumps({"execute": command, "arguments": args}).encode() + b"\n")
        await self._writer.drain()
        reply = await self._reply()
        if "error" in reply:
            raise QmpError(command, reply["error"])
        return reply.get("return")

    async def command(self, command: str, **args: Any) -> Any:
        async with self._lock:
            async with asyncio.timeout(QMP_TIMEOUT):
                return await self._send(command, args)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class NbdTarget:
    name = "nbd"
    formats: tuple[str, ...] = ("raw", "qcow2")  # qemu-storage-daemon opens the qcow2 and its backing chain

    def __init__(self, address: str, port: int, run_dir: str) -> None:
        self.address = address
        self.port = port
        self.socket = os.path.join(run_dir, "qsd.qmp")
        self.nbd_socket = os.path.join(run_dir, "qsd.nbd")
        self.daemon = Daemon("nbd", [
            "qemu-storage-daemon",
            "--chardev", f"socket,id=qmp,path={self.socket},server=on,wait=off",
            "--monitor", "chardev=qmp",
            "--nbd-server", f"addr.type=unix,addr.path={self.nbd_socket}",
        ], os.path.join(run_dir, "qsd.log"))
        self.gate = NbdGate(address, port, self.nbd_socket)
        self.run_dir = run_dir
        self.qmp: Qmp | None = None

    def reaches(self, connector: dict[str, Any]) -> bool:
        return True

    async def _connect(self) -> bool:
        qmp = Qmp(self.socket)
        try:
            await qmp.connect()
        except (OSError, ConnectionError, TimeoutError, ValueError):
            qmp.close()
            return False
        self.qmp = qmp
        return True

    async def start(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise errors.VolumeBackendUnavailable(kind="target", name=self.name, reason=reason)
        await asyncio.to_thread(os.makedirs, self.run_dir, 0o700, True)
        if await self._connect():  # the daemon of a previous worker run: keep it and its exports
            LOG.info("adopting the running qemu-storage-daemon at %s", self.socket)
        else:
            for path in (self.socket, self.nbd_socket):
                try:
                    await asyncio.to_thread(os.unlink, path)
                except FileNotFoundError:
                    pass
            await self.daemon.spawn(self._connect)
        try:
            await self.gate.start()
        except OSError as exc:
            raise errors.VolumeBackendUnavailable(kind="target", name=self.name,
                                                  reason=f"NBD port {self.address}:{self.port}: {exc}") from None

    def _qmp(self) -> Qmp:
        if self.qmp is None:
            raise errors.VolumeBackendUnavailable(kind="target", name=self.name, reason="not started")
        return self.qmp

    async def export(self, storage: VolumeStorage, connector: dict[str, Any]) -> dict[str, Any]:
        vid, qmp = storage.volume_id, self._qmp()
        node, name = node_name(vid), volume_name(vid)
        client = await initiator_address(vid, connector)
        if name not in await self._exports():
            try:
                if node not in await self._nodes():
                    protocol = {"driver": "host_device" if storage.block_device else "file", "filename": storage.path}
                    await qmp.command("blockdev-add", **{"driver": storage.disk_format, "node-name": node,
                                                         "file": protocol})
                await qmp.command("block-export-add", type="nbd", id=name, **{"node-name": node}, name=name,
                                  writable=True)
            except (QmpError, TimeoutError) as exc:
                await self._drop(vid)
                raise errors.VolumeExportFailed(volume_id=vid, reason=str(exc)) from None
        self.gate.grant(name, client)  # a re-export to another host (a move) takes it from the previous one
        return {"driver_volume_type": "nbd",
                "data": {"target": self.name, "host": self.address, "port": self.port, "name": name}}

    async def _exports(self) -> set[str]:
        return {str(e["id"]) for e in await self._qmp().command("query-block-exports")}

    async def _nodes(self) -> set[str]:
        return {str(n["node-name"]) for n in await self._qmp().command("query-named-block-nodes", flat=True)}

    async def _drop(self, volume_id: str) -> None:
        qmp, node, name = self._qmp(), node_name(volume_id), volume_name(volume_id)
        if name in await self._exports():
            await qmp.command("block-export-del", id=name, mode="hard")  # hard: drop a connected client too
        for _ in range(100):  # the export lets go of its node asynchronously
            if node not in await self._nodes():
                return
            try:
                await qmp.command("blockdev-del", **{"node-name": node})
                return
            except QmpError:
                await asyncio.sleep(0.05)
        LOG.warning("node %s is still busy after its export was removed", node)

    async def unexport(self, volume_id: str) -> None:
        self.gate.revoke(volume_name(volume_id))
        try:
            await self._drop(volume_id)
        except (QmpError, TimeoutError) as exc:
            raise errors.VolumeExportFailed(volume_id=volume_id, reason=f"unexport: {exc}") from None

    async def exported(self) -> set[str]:
        prefix = volume_name("")
        return {e[len(prefix):] for e in await self._exports() if e.startswith(prefix)}

    async def stop(self) -> None:
        await self.gate.stop()
        if self.qmp is not None:
            try:
                await self.qmp.command("quit")
            except (QmpError, TimeoutError, ConnectionError, OSError) as exc:
                LOG.warning("qemu-storage-daemon quit: %s", exc)
            self.qmp.close()
            self.qmp = None
        await self.daemon.wait_exit()
