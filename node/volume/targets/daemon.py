"""A helper daemon the volume worker starts (tgtd, qemu-storage-daemon): spawn it in
its own session with its output in a log file, wait until it answers, stop it."""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence

from cells import errors

LOG = logging.getLogger(__name__)


class Daemon:
    def __init__(self, name: str, argv: Sequence[str], log_path: str) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None  # None: not started by us (adopted, or none)

    async def spawn(self, ready: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
        """Start the daemon and wait until `ready()` says it answers."""
        await asyncio.to_thread(os.makedirs, os.path.dirname(self.log_path), 0o755, True)
        log = await asyncio.to_thread(open, self.log_path, "ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True)  # a Ctrl-C in the worker's terminal must not hit the data path
        except OSError as exc:
            raise errors.VolumeBackendUnavailable(kind="target", name=self.name, reason=str(exc)) from None
        finally:
            log.close()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while True:
            if self.proc.returncode is not None:
                raise errors.VolumeBackendUnavailable(
                    kind="target", name=self.name,
                    reason=f"{self.argv[0]} exited with {self.proc.returncode}: {await self.log_tail()}")
            if await ready():
                LOG.info("%s started (pid %d)", self.name, self.proc.pid)
                return
            if loop.time() > give_up:
                await self.kill()
                raise errors.VolumeBackendUnavailable(kind="target", name=self.name,
                                                      reason=f"{self.argv[0]} did not answer within {timeout}s")
            await asyncio.sleep(0.05)

    async def log_tail(self, size: int = 600) -> str:
        def tail() -> str:
            try:
                with open(self.log_path, "rb") as f:
                    f.seek(max(0, os.path.getsize(self.log_path) - size))
                    return f.read().decode(errors="replace").strip()
            except OSError:
                return ""
        return await asyncio.to_thread(tail)

    async def wait_exit(self, timeout: float = 5.0) -> None:
        """After asking the daemon to quit: reap it, killing it if it does not go."""
        if self.proc is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self.proc.wait()
        except TimeoutError:
            await self.kill()
        self.proc = None

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            await self.proc.wait()
