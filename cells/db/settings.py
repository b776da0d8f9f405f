"""Per-database settings (cluster.yaml `db_settings` of a cell or of the API, SQLite only),
and what the database does when its disk fills.

The settings travel in the DB URL's query (`...cell1.db?cc_synchronous=FULL`), so every
process that opens the database gets them from cluster.json with the URL; `split` takes
them out before SQLAlchemy sees the URL.

    synchronous   NORMAL (default) or FULL. In WAL mode both lose nothing when a process
                  dies (kill -9): a commit is in the WAL, in the OS's page cache, before
                  the caller hears of it. NORMAL may lose the last commits when the whole
                  machine loses power; FULL syncs the WAL on every commit (slower).
    lock_timeout  seconds a writer waits for the DB's writer lock (<db>-wlock) before its
                  request fails with DBBusy (503); default 30.
    min_free_mb   free space (MiB) the DB's file system must keep: below it, new builds are
                  refused with LowDiskSpace (507) so deletes and state changes of existing
                  servers can still be written; default 64.

A write that fails because the disk is full fails its request with DBFull (507); the
transaction is rolled back and the service goes on.
"""
from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import time
from dataclasses import dataclass, fields
from urllib.parse import urlencode

from cells import errors  # no SQLAlchemy at import: cellctl reads cluster.yaml through this module

PREFIX = "cc_"
SYNCHRONOUS = ("NORMAL", "FULL")
FREE_SPACE_RECHECK = 1.0  # seconds a free-space reading is reused (statvfs per boot is waste)


@dataclass(frozen=True)
class DbSettings:
    synchronous: str = "NORMAL"
    lock_timeout: float = 30.0
    min_free_mb: int = 64

    def __post_init__(self) -> None:
        if self.synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, not {self.synchronous!r}")
        if not 0 < self.lock_timeout <= 3600:
            raise ValueError(f"lock_timeout must be seconds in (0, 3600], not {self.lock_timeout!r}")
        if not 0 <= self.min_free_mb <= 1 << 20:
            raise ValueError(f"min_free_mb must be MiB in [0, 1048576], not {self.min_free_mb!r}")


DEFAULTS = DbSettings()


def split(url: str) -> tuple[str, DbSettings]:
    """(the URL without our settings, the settings); ValueError for a bad value."""
    if PREFIX not in url:
        return url, DEFAULTS
    from sqlalchemy.engine import make_url
    parsed = make_url(url)
    ours = {k[len(PREFIX):]: v for k, v in parsed.query.items() if k.startswith(PREFIX)}
    rest = {k: v for k, v in parsed.query.items() if not k.startswith(PREFIX)}
    unknown = set(ours) - {f.name for f in fields(DbSettings)}
    if unknown:
        raise ValueError(f"unknown database setting(s) {sorted(unknown)}")
    values: dict[str, object] = {}
    for f in fields(DbSettings):
        if f.name in ours:
            raw = ours[f.name]
            raw = raw[-1] if isinstance(raw, tuple) else raw
            values[f.name] = {"synchronous": str, "lock_timeout": float, "min_free_mb": int}[f.name](raw)
    clean = parsed.set(query=rest).render_as_string(hide_password=False)
    return clean, DbSettings(**values)  # type: ignore[arg-type]


def with_settings(url: str, settings: DbSettings) -> str:
    """`url` carrying the settings that differ from the defaults (cluster.yaml -> cluster.json)."""
    changed = {f"{PREFIX}{f.name}": getattr(settings, f.name) for f in fields(DbSettings)
               if getattr(settings, f.name) != getattr(DEFAULTS, f.name)}
    if not changed:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode(changed)}"


def pragmas(settings: DbSettings) -> tuple[str, ...]:
    # busy_timeout first: journal_mode may need to wait
    return ("PRAGMA busy_timeout=10000", "PRAGMA journal_mode=WAL", f"PRAGMA synchronous={settings.synchronous}",
            "PRAGMA foreign_keys=ON")


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL ("database or disk is full"), or an ENOSPC/EFBIG under it."""
    orig = getattr(exc, "orig", None) or exc  # SQLAlchemy's DBAPIError wraps the driver's
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(orig)
    return isinstance(orig, OSError) and orig.errno in (errno.ENOSPC, errno.EFBIG)


def full_error(path: str, exc: BaseException) -> errors.DBFull:
    return errors.DBFull(db=os.path.basename(path) or path, reason=str(getattr(exc, "orig", exc)))


class FreeSpace:
    """The free space of the file system holding `path`, against the watermark."""

    def __init__(self, path: str, min_free_mb: int) -> None:
        self.directory = os.path.dirname(os.path.abspath(path))
        self.min_free_mb = min_free_mb
        self._read_at = -FREE_SPACE_RECHECK
        self._free_mb = 0

    def _read(self) -> int:
        st = os.statvfs(self.directory)
        return int(st.f_bavail * st.f_frsize // (1 << 20))

    async def free_mb(self) -> int:
        now = time.monotonic()
        if now - self._read_at >= FREE_SPACE_RECHECK:
            self._free_mb = await asyncio.get_running_loop().run_in_executor(None, self._read)
            self._read_at = now
        return self._free_mb

    async def check(self, what: str) -> None:
        """LowDiskSpace (507) when the file system has less than the watermark free."""
        if self.min_free_mb <= 0:
            return
        free = await self.free_mb()
        if free < self.min_free_mb:
            raise errors.LowDiskSpace(what=what, free=free, needed=self.min_free_mb, where=self.directory)
