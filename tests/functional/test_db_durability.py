"""The database survives its process and its disk (issue 14), with real processes and a real
small file system.

- kill -9 of a process in the middle of group-committed writes (64 writers in flight, so
  the units share transactions): every write it acknowledged is in the DB afterwards, the
  DB passes SQLite's integrity check and opens and takes writes again. Three rounds, each
  killed at a different moment.
- A full disk (a 6 MiB tmpfs, filled): the write that hits it fails with DBFull (507), the
  process and its Database go on, the watermark refuses new builds first, and once space is
  freed the same Database writes again.
"""
from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from subprocess import PIPE

import pytest
from sqlalchemy import text

from cells import errors
from cells.db import settings as dbsettings
from cells.db.engine import Database

pytestmark = pytest.mark.slow
WRITER = """
import asyncio, sys
from sqlalchemy import text
from cells.db.engine import Database

async def main(url: str, round_: int) -> None:
    db = Database(url)
    await db.write(lambda conn: conn.execute(text(
        "CREATE TABLE IF NOT EXISTS acked (id TEXT PRIMARY KEY, payload TEXT NOT NULL)")))
    print("ready", flush=True)
    n = 0

    async def writer(w: int) -> None:
        nonlocal n
        while True:
            n += 1
            key = f"{round_}-{w}-{n}"
            await db.write(lambda conn: conn.execute(text("INSERT INTO acked VALUES (:k, :p)"),
                                                     {"k": key, "p": "x" * 200}))
            print(key, flush=True)  # acknowledged: the write's caller was told it committed
    await asyncio.gather(*(writer(w) for w in range(64)))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def _acked_then_killed(url: str, round_: int, at_least: int) -> list[str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, url, str(round_), stdout=PIPE,
                                                cwd=str(Path(__file__).resolve().parents[2]))
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
    acked: list[str] = []
    while len(acked) < at_least:
        acked.append((await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip())
    proc.send_signal(signal.SIGKILL)  # mid-stream: writes queued, a batch likely in its transaction
    rest = await proc.stdout.read()  # acknowledged before the kill landed
    acked += [line for line in rest.decode().split("\n") if line.strip()]
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return acked


async def test_kill_9_during_group_commit_loses_no_acknowledged_write(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cell.db'}"
    every: list[str] = []
    for round_ in range(3):
        every += await _acked_then_killed(url, round_, random.randint(200, 1500))
        db = sqlite3.connect(tmp_path / "cell.db")  # opens clean: the WAL is recovered
        try:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            stored = {r[0] for r in db.execute("SELECT id FROM acked")}
        finally:
            db.close()
        missing = [k for k in every if k not in stored]
        assert not missing, f"round {round_}: {len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    again = Database(url)  # and it takes writes again
    try:
        await again.write(lambda conn: conn.execute(text("INSERT INTO acked VALUES ('after', 'y')")))
    finally:
        await again.close()


# --- full disk ---------------------------------------------------------------------------------

@pytest.fixture
def small_fs() -> Iterator[Path]:
    """A 6 MiB tmpfs (mount needs root and a kernel that lets this process mount)."""
    where = Path(tempfile.mkdtemp(prefix="cc-fullfs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(where)],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here for the full-disk test: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)
        where.rmdir()


def fill(path: Path) -> None:
    """Take every free byte of the file system holding `path`."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (65536, 512):  # then the last partial blocks
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass


async def test_a_full_disk_fails_the_write_that_hit_it_and_the_db_goes_on(small_fs: Path) -> None:
    url = dbsettings.with_settings(f"sqlite+aiosqlite:///{small_fs / 'cell.db'}",
                                   dbsettings.DbSettings(min_free_mb=2))
    db = Database(url)
    try:
        await db.write(lambda conn: conn.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")))
        await db.write(lambda conn: conn.execute(text("INSERT INTO blobs (data) VALUES (zeroblob(1000))")))
        await db.check_free_space("new servers")  # ~6 MiB free: above the 2 MiB watermark
        filler = small_fs / "filler"
        await asyncio.to_thread(fill, filler)
        await asyncio.sleep(dbsettings.FREE_SPACE_RECHECK)  # the cached reading expires
        with pytest.raises(errors.LowDiskSpace):  # the watermark refuses new builds first
            await db.check_free_space("new servers")
        with pytest.raises(errors.DBFull) as full:  # a write that needs new pages: the disk is full
            await db.write(lambda conn: conn.execute(text("INSERT INTO blobs (data) VALUES (zeroblob(4000000))")))
        assert full.value.http_status == 507 and "cell.db is out of disk space" in full.value.message
        filler.unlink()
        await db.write(lambda conn: conn.execute(text("INSERT INTO blobs (data) VALUES (zeroblob(1000))")))
        count = await db.read(lambda conn: conn.execute(text("SELECT count(*) FROM blobs")).scalar())
        assert count == 2  # the failed one rolled back, the others are there
    finally:
        await db.close()
    check = sqlite3.connect(small_fs / "cell.db")
    try:
        assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        check.close()
    assert os.path.exists(small_fs / "cell.db-wlock")
