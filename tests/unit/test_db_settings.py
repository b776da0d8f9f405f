"""Per-database settings (cluster.yaml db_settings): synchronous applied to every connection,
the writer-lock wait bounded, the free-space watermark; real SQLite files, and a real other
process holding the writer lock."""
from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
from sqlalchemy import text

from cells import errors
from cells.db import settings as dbsettings
from cells.db.engine import Database
from tests.unit.test_clusterfile import BASE, cell, variant, write
from tools import clusterfile
from tools.clusterfile_fields import ClusterFileError

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def url(tmp_path: Path, **settings: Any) -> str:
    return dbsettings.with_settings(f"sqlite+aiosqlite:///{tmp_path / 'cell.db'}", dbsettings.DbSettings(**settings))


async def pragma_synchronous(db: Database) -> int:
    value: Any = await db.write(lambda conn: conn.execute(text("PRAGMA synchronous")).scalar())
    return int(value)


async def test_synchronous_is_normal_by_default_and_full_when_asked(tmp_path: Path) -> None:
    plain, full = Database(url(tmp_path)), Database(url(tmp_path, synchronous="FULL"))
    try:
        assert plain.url.endswith("cell.db") and "cc_synchronous=FULL" in full.url
        assert await pragma_synchronous(plain) == 1  # NORMAL
        assert await pragma_synchronous(full) == 2  # FULL
        assert await full.read(lambda conn: conn.execute(text("PRAGMA journal_mode")).scalar()) == "wal"
    finally:
        await plain.close()
        await full.close()


def test_settings_ride_in_the_url_and_bad_ones_are_refused() -> None:
    s = dbsettings.DbSettings(synchronous="FULL", lock_timeout=2.5, min_free_mb=10)
    clean, back = dbsettings.split(dbsettings.with_settings("sqlite+aiosqlite:////x/c.db", s))
    assert clean == "sqlite+aiosqlite:////x/c.db" and back == s
    assert dbsettings.with_settings("sqlite:////x/c.db", dbsettings.DEFAULTS) == "sqlite:////x/c.db"
    for bad in ("?cc_synchronous=OFF", "?cc_lock_timeout=0", "?cc_nope=1", "?cc_min_free_mb=-1"):
        with pytest.raises(ValueError):
            dbsettings.split("sqlite:////x/c.db" + bad)


async def hold_lock(tmp_path: Path, seconds: float) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLDER, str(tmp_path / "cell.db-wlock"),
                                                str(seconds), stdout=PIPE)
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 10)).strip() == b"held"
    return proc


async def test_a_writer_lock_held_elsewhere_fails_the_write_after_lock_timeout(tmp_path: Path) -> None:
    db = Database(url(tmp_path, lock_timeout=0.5))
    try:
        await db.write(lambda conn: conn.execute(text("CREATE TABLE t (x INTEGER)")))
        holder = await hold_lock(tmp_path, 30)
        try:
            t = time.monotonic()
            with pytest.raises(errors.DBBusy) as busy:
                await db.write(lambda conn: conn.execute(text("INSERT INTO t VALUES (1)")))
            waited = time.monotonic() - t
            assert busy.value.http_status == 503 and "cell.db" in busy.value.message and "0.5 s" in busy.value.message
            assert 0.4 < waited < 10  # gave up after the timeout, not forever
        finally:
            holder.kill()
            await holder.wait()
        await db.write(lambda conn: conn.execute(text("INSERT INTO t VALUES (2)")))  # free again: writes go on
        assert await db.read(lambda conn: conn.execute(text("SELECT x FROM t")).scalars().all()) == [2]
    finally:
        await db.close()


async def test_a_write_waiting_within_lock_timeout_gets_the_lock_when_it_is_let_go(tmp_path: Path) -> None:
    db = Database(url(tmp_path, lock_timeout=20))
    try:
        await db.write(lambda conn: conn.execute(text("CREATE TABLE t (x INTEGER)")))
        holder = await hold_lock(tmp_path, 0.5)  # lets go by exiting
        await db.write(lambda conn: conn.execute(text("INSERT INTO t VALUES (1)")))
        await holder.wait()
        assert await db.read(lambda conn: conn.execute(text("SELECT count(*) FROM t")).scalar()) == 1
    finally:
        await db.close()


async def test_below_the_free_space_watermark_new_builds_are_refused(tmp_path: Path) -> None:
    roomy, tight = Database(url(tmp_path)), Database(url(tmp_path, min_free_mb=1 << 20))  # 1 TiB: never free here
    try:
        await roomy.check_free_space("new servers")
        with pytest.raises(errors.LowDiskSpace) as low:
            await tight.check_free_space("new servers")
        assert low.value.http_status == 507 and "at least 1048576 MiB must stay free" in low.value.message
    finally:
        await roomy.close()
        await tight.close()


def test_cluster_yaml_db_settings(tmp_path: Path) -> None:
    def settings(doc: dict[str, Any]) -> None:
        cell(doc)["db_settings"] = {"synchronous": "FULL", "lock_timeout": 5, "min_free_mb": 128}
        doc["api"]["db_settings"] = {"synchronous": "FULL"}
    cfg = clusterfile.load(write(tmp_path, variant(settings)))
    assert dbsettings.split(cfg.cells[0].db)[1] == dbsettings.DbSettings("FULL", 5.0, 128)
    assert dbsettings.split(cfg.api.db)[1] == dbsettings.DbSettings(synchronous="FULL")
    assert dbsettings.split(clusterfile.load(write(tmp_path, BASE)).cells[0].db)[1] == dbsettings.DEFAULTS
    for key, value, expected in (("synchronous", "OFF", "expected one of NORMAL, FULL"),
                                 ("lock_timeout", 0, "expected seconds between 0 and 3600"),
                                 ("min_free_mb", "lots", "expected MiB between 0 and 1048576"),
                                 ("nope", 1, "nope")):
        with pytest.raises(ClusterFileError, match=f"db_settings.*{expected}"):
            clusterfile.load(write(tmp_path, variant(lambda d, k=key, v=value: cell(d).__setitem__(  # type: ignore[misc]
                "db_settings", {k: v}))))
    with pytest.raises(ClusterFileError, match="SQLite databases only"):
        clusterfile.load(write(tmp_path, variant(lambda d: cell(d).update(
            db="postgresql://cc@db/cell1", db_settings={"synchronous": "FULL"}))))
