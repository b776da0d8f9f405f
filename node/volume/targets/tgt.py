"""The `tgt` target: userspace iSCSI through a private tgtd.

Each volume host runs its own tgtd with its own control port (`tgtd -C N`) and
portal, so several volume hosts (or test clusters) on one machine never share
one. tgtd ignores SIGTERM: it is stopped with `tgtadm --op delete --mode
system` after its targets are removed. One target per volume, IQN
iqn.2010-10.dev.cellcloud:volume-<id>, data on LUN 1 (LUN 0 is tgt's
controller). The initiator is QEMU's built-in libiscsi (no host iSCSI stack).
tgt serves raw bytes only: qcow2 volumes go through nbd or local instead.
A target admits one initiator address, the compute host's (the connector's ip):
an export without one is refused, and re-exporting to another host moves the ACL.
"""
from __future__ import annotations

import asyncio
import logging
import re
import shutil
from typing import Any

from cells import errors
from node.volume.backends import VolumeStorage
from node.volume.proc import CommandFailed, run
from node.volume.targets import initiator_address, iqn
from node.volume.targets.daemon import Daemon

LOG = logging.getLogger(__name__)
LUN = 1
_TARGET_LINE = re.compile(r"^Target (\d+): (\S+)", re.MULTILINE)


def acls(show: str) -> dict[int, set[str]]:
    """tid -> the initiator addresses its ACL admits, from `tgtadm --op show --mode target`."""
    out: dict[int, set[str]] = {}
    tid, in_acl = None, False
    for line in show.splitlines():
        target = _TARGET_LINE.match(line)
        if target:
            tid, in_acl = int(target.group(1)), False
            out[tid] = set()
        elif line.strip() == "ACL information:":
            in_acl = True
        elif in_acl and tid is not None and line.startswith("        ") and line.strip():
            out[tid].add(line.strip())
        elif not line.startswith("        "):
            in_acl = False
    return out


def unavailable_reason() -> str | None:
    for tool in ("tgtd", "tgtadm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install tgt)"
    return None


def control_port_for(portal_port: int) -> int:
    """tgtd's -C takes 0-32767 and 0 is the system tgtd's: derive ours from the portal port."""
    return portal_port % 32768 or 32767


class TgtTarget:
    name = "tgt"
    formats: tuple[str, ...] = ("raw",)

    def __init__(self, address: str, port: int, log_path: str, control_port: int | None = None) -> None:
        self.address = address
        self.port = port
        self.control_port = control_port if control_port is not None else control_port_for(port)
        self.daemon = Daemon("tgt", ["tgtd", "-f", "-C", str(self.control_port),
                                     "--iscsi", f"portal={address}:{port}"], log_path)
        self._lock = asyncio.Lock()  # tid allocation: one target change at a time

    def reaches(self, connector: dict[str, Any]) -> bool:
        return True

    async def _adm(self, *args: str, timeout: float = 20.0) -> str:
        return await run(["tgtadm", "-C", str(self.control_port), *args], timeout=timeout)

    async def _answers(self) -> bool:
        try:
            await self._adm("--op", "show", "--mode", "system", timeout=5)
            return True
        except CommandFailed:
            return False

    async def start(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise errors.VolumeBackendUnavailable(kind="target", name=self.name, reason=reason)
        if await self._answers():  # a tgtd of a previous worker run: keep it and its sessions
            LOG.info("adopting the running tgtd on control port %d", self.control_port)
            return
        await self.daemon.spawn(self._answers)

    async def targets(self) -> dict[str, int]:
        """IQN -> tid of every target now."""
        out = await self._adm("--lld", "iscsi", "--op", "show", "--mode", "target")
        return {m.group(2): int(m.group(1)) for m in _TARGET_LINE.finditer(out)}

    async def export(self, storage: VolumeStorage, connector: dict[str, Any]) -> dict[str, Any]:
        if storage.disk_format != "raw":
            raise errors.VolumeExportFailed(volume_id=storage.volume_id,
                                            reason=f"tgt exports raw volumes only, this one is {storage.disk_format}")
        initiator = await initiator_address(storage.volume_id, connector)
        name = iqn(storage.volume_id)
        async with self._lock:
            existing = await self.targets()
            created = name not in existing
            tid = max(existing.values(), default=0) + 1 if created else existing[name]
            try:
                if created:
                    await self._adm("--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", str(tid), "-T", name)
                    await self._adm("--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid", str(tid),
                                    "--lun", str(LUN), "-b", storage.path)
                    admitted: set[str] = set()
                else:  # exported before, maybe to another host: only this one is admitted now
                    admitted = acls(await self._adm("--lld", "iscsi", "--op", "show", "--mode", "target")).get(
                        tid, set())
                for other in admitted - {initiator}:
                    await self._adm("--lld", "iscsi", "--op", "unbind", "--mode", "target", "--tid", str(tid),
                                    "-I", other)
                if initiator not in admitted:
                    await self._adm("--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", str(tid),
                                    "-I", initiator)
            except CommandFailed as exc:
                if created:
                    await self._delete(tid)
                raise errors.VolumeExportFailed(volume_id=storage.volume_id, reason=str(exc)) from None
        return {"driver_volume_type": "iscsi",
                "data": {"target": self.name, "target_portal": f"{self.address}:{self.port}",
                         "target_iqn": name, "target_lun": LUN}}

    async def _delete(self, tid: int) -> None:
        try:
            await self._adm("--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", str(tid), "--force")
        except CommandFailed as exc:
            LOG.warning("could not delete tgt target %d: %s", tid, exc)

    async def unexport(self, volume_id: str) -> None:
        async with self._lock:
            tid = (await self.targets()).get(iqn(volume_id))
            if tid is not None:
                await self._delete(tid)

    async def exported(self) -> set[str]:
        prefix = iqn("")
        return {name[len(prefix):] for name in await self.targets() if name.startswith(prefix)}

    async def stop(self) -> None:
        if not await self._answers():
            await self.daemon.kill()
            return
        for tid in (await self.targets()).values():
            await self._delete(tid)
        try:
            await self._adm("--op", "delete", "--mode", "system")
        except CommandFailed as exc:
            LOG.warning("tgtd on control port %d did not stop: %s", self.control_port, exc)
        await self.daemon.wait_exit()
