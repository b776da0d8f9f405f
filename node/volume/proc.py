"""Subprocesses for the volume worker: always with a timeout, never on the loop."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence


class CommandFailed(RuntimeError):
    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str) -> None:
        self.argv, self.returncode, self.stderr = list(argv), returncode, stderr
        what = "timed out" if returncode is None else f"exit {returncode}"
        super().__init__(f"{' '.join(argv)}: {what}: {stderr.strip()[-400:]}")


async def run(argv: Sequence[str], timeout: float = 30.0) -> str:
    """Run a command; its stdout, or CommandFailed with its stderr."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise CommandFailed(argv, None, "") from None
    if proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, err.decode(errors="replace") or out.decode(errors="replace"))
    return out.decode(errors="replace")
