"""Power operations, the in-place flavor change of a stopped guest (a resize that stays
on its host), and console output of the libvirt driver (LibvirtDriver.power).

Mechanism only, as the rest of the driver: every libvirt call runs in the driver's
bounded pool with a timeout. A clean shutdown asks the guest (ACPI power button)
and waits, then pulls the plug, as Nova's power_off with clean_shutdown does; a
soft reboot is a clean shutdown followed by a start, falling back to a hard one.
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, TypeVar

import libvirt  # type: ignore[import-untyped]

from cells import errors
from node.compute import domain_xml
from node.compute.hypervisor import Hypervisor

LOG = logging.getLogger(__name__)
T = TypeVar("T")

SHUTDOWN_POLL = 0.2  # seconds between state checks while a guest shuts down
MAX_CONSOLE_BYTES = 100 * 1024  # Nova's cap on console output: the tail of the log
# a guest can write to its serial port forever: past this size the log is cut back to its last
# MAX_CONSOLE_BYTES (QEMU appends, O_APPEND, so its next write lands at the new end)
MAX_CONSOLE_LOG = 1024 * 1024
CONSOLE_LOG = "console.log"
# What a guest "prints" on libvirt's test hypervisor, which runs no guest and writes no serial log:
# Nova's fake driver's console, written at each start so `console log show` and its length work there.
TEST_CONSOLE_BOOT = ("test hypervisor: domain started (no guest OS runs on test:///)\n"
                     "FAKE CONSOLE OUTPUT\nANOTHER\nLAST LINE\n")


def tail_lines(data: bytes, length: int | None) -> str:
    """The last `length` lines of `data` (all of it for None), exactly as Nova's _tail_log: the text split
    at "\n", its last `length` pieces joined again, so a log ending in a newline counts the empty piece
    after it (length 3 of "a\nb\nc\n" is "b\nc\n", three pieces: what Tempest's console test counts).
    Bytes that are not UTF-8 are replaced, never an error."""
    text = data.decode("utf-8", errors="replace")
    if length is None:
        return text
    if length <= 0:
        return ""
    return "\n".join(text.split("\n")[-length:])


def read_tail(path: str, max_bytes: int = MAX_CONSOLE_BYTES) -> bytes:
    """The last `max_bytes` of a file (b"" when it does not exist yet), cut at a line start."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read(max_bytes)
    except FileNotFoundError:
        return b""
    if size > max_bytes:  # the first line is cut: drop it
        data = data.split(b"\n", 1)[-1]
    return data


def trim_log(path: str, limit: int = MAX_CONSOLE_LOG, keep: int = MAX_CONSOLE_BYTES) -> bool:
    """Cut a log longer than `limit` down to its last `keep` bytes, in place (copy-truncate: the
    writer keeps its descriptor). True when it was cut. What the writer adds between the read and
    the truncate is lost: a console log may drop a line, the host disk may not fill."""
    try:
        with open(path, "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= limit:
                return False
            f.seek(size - keep)
            tail = f.read(keep)
            f.seek(0)
            f.write(tail)
            f.truncate(len(tail))
    except FileNotFoundError:
        return False
    return True


def test_guest_booted(inst_dir: str) -> None:
    """On test:/// only: append the fake guest's boot lines to its serial log (blocking: a thread's)."""
    try:
        with open(os.path.join(inst_dir, CONSOLE_LOG), "a", encoding="utf-8") as log:
            log.write(TEST_CONSOLE_BOOT)
    except OSError as exc:  # a console line is never worth failing a start for
        LOG.warning("could not write the test guest's console log in %s: %s", inst_dir, exc)


class GuestPower:
    def __init__(self, hypervisor: Hypervisor) -> None:
        self.hv = hypervisor

    def _domain(self, uuid: str) -> Any:
        return self.hv.domain(uuid)

    def _is_active(self, uuid: str) -> bool:
        return bool(self._domain(uuid).isActive())

    async def _wait_inactive(self, uuid: str, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.hv._run(self._is_active, uuid):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(SHUTDOWN_POLL)
        return True

    def _ask_shutdown(self, uuid: str) -> bool:
        """Ask the guest to power off; False when it is already off."""
        dom = self._domain(uuid)
        if not dom.isActive():
            return False
        state = dom.state()[0]
        if state == libvirt.VIR_DOMAIN_PAUSED:  # a paused guest cannot hear the button
            dom.resume()
        dom.shutdown()
        return True

    def _hard_stop(self, uuid: str) -> None:
        dom = self._domain(uuid)
        if dom.isActive():
            dom.destroy()  # the definition stays: a stopped server keeps its domain

    async def power_off(self, uuid: str, clean_timeout: float = 0.0) -> None:
        """Stop the guest: a clean shutdown when `clean_timeout` > 0, then destroy if still running."""
        if clean_timeout > 0:
            try:
                asked = await self.hv._run(self._ask_shutdown, uuid)
            except libvirt.libvirtError as exc:
                LOG.info("clean shutdown of %s refused (%s): stopping it hard", uuid, exc)
                asked = True
            if not asked or await self._wait_inactive(uuid, clean_timeout):
                return
            LOG.info("%s did not shut down within %.0fs: stopping it hard", uuid, clean_timeout)
        await self.hv._run(self._hard_stop, uuid)

    def _start(self, uuid: str) -> None:
        dom = self._domain(uuid)
        if not dom.isActive():
            dom.create()  # restores a managed save image (suspend) when there is one
            if self.hv.is_test:
                test_guest_booted(self.hv.instance_dir(uuid))

    async def power_on(self, uuid: str) -> None:
        await self.hv._run(self._start, uuid)

    def _set_flavor(self, uuid: str, flavor: dict[str, Any]) -> None:
        dom = self._domain(uuid)
        if dom.isActive():
            raise errors.InstanceInvalidState(action="set_flavor", instance_id=uuid, attr="power_state",
                                              state="running")
        xml = domain_xml.with_flavor(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), flavor)
        self.hv.conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)  # same uuid and name: replaces it

    async def set_flavor(self, uuid: str, flavor: dict[str, Any]) -> None:
        """The stopped guest's vCPUs and memory become `flavor`'s at its next start."""
        await self.hv._run(self._set_flavor, uuid, flavor)

    def _drop_saved_state(self, uuid: str) -> None:
        dom = self._domain(uuid)
        if dom.isActive():
            dom.destroy()
        if dom.hasManagedSaveImage(0):
            dom.managedSaveRemove(0)

    async def reboot(self, uuid: str, hard: bool, clean_timeout: float) -> str:
        """Returns how it was done ("soft" or "hard"). A soft reboot that the guest ignores
        becomes a hard one, as Nova's."""
        if not hard:
            if await self.hv._run(self._is_active, uuid) \
                    and await self.hv._run(self._ask_shutdown, uuid) \
                    and await self._wait_inactive(uuid, clean_timeout):
                await self.hv._run(self._start, uuid)
                return "soft"
            LOG.info("soft reboot of %s did not complete: rebooting it hard", uuid)
        await self.hv._run(self._drop_saved_state, uuid)
        await self.hv._run(self._start, uuid)
        return "hard"

    async def pause(self, uuid: str) -> None:
        await self.hv._run(lambda: self._domain(uuid).suspend())

    async def unpause(self, uuid: str) -> None:
        await self.hv._run(lambda: self._domain(uuid).resume())

    async def suspend(self, uuid: str) -> None:
        """Save the guest's memory to disk and stop it (libvirt's managed save); start restores it."""
        await self.hv._run(lambda: self._domain(uuid).managedSave(0), timeout=max(60.0, 2 * self._timeout()))

    async def resume(self, uuid: str) -> None:
        await self.hv._run(self._start, uuid, timeout=max(60.0, 2 * self._timeout()))

    def _timeout(self) -> float:
        return self.hv.call_timeout

    async def trim_console_logs(self) -> int:
        """Bound every guest's serial log on this host (trim_log); how many were cut."""
        root = self.hv.instances_dir
        if not root:
            return 0

        def trim_all() -> int:
            try:
                uuids = os.listdir(root)
            except FileNotFoundError:
                return 0
            return sum(trim_log(os.path.join(root, uuid, CONSOLE_LOG)) for uuid in uuids)

        return await self.hv._run(trim_all)

    async def console_output(self, uuid: str, length: int | None) -> str:
        """The last `length` lines of the guest's serial log (Nova's os-getConsoleOutput)."""
        path = os.path.join(self.hv.instance_dir(uuid), CONSOLE_LOG)
        data = await self.hv._run(read_tail, path)
        return tail_lines(data, length)
