"""What a service process imports only when it needs it: every cluster start pays each import once per
process (a test run starts ~40 clusters of 6 processes), so the drivers a process does not use stay out.
Each check runs in a fresh interpreter: this test process has imported everything already."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    script = f"import sys\n{code}\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                          timeout=120, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_sqlite_cell_service_and_the_api_never_import_psycopg(tmp_path: Path) -> None:
    """The conductor's and API's modules loaded, a cell DB made and written through the fast path (raw
    sqlite3) and the group writer: psycopg (PostgreSQL's driver) is not loaded."""
    code = f"""
import asyncio
import api.app, cells.conductor.manager, cells.scheduler.manager, cells.network.controller
from cells.db.engine import Database
from cells.db.fast import Fast
from cells.db.schema import ensure_schema, instances
from sqlalchemy import select

async def main():
    db = Database("sqlite+aiosqlite:///{tmp_path}/cell.db")
    await ensure_schema(db)
    rows = await db.write(lambda conn: Fast(select(instances.c.uuid)).rows(conn))
    assert rows == [], rows
    await db.close()
asyncio.run(main())
"""
    assert _loaded_after(code, ("psycopg", "cells.db.engine")) == ["cells.db.engine"]


def test_a_network_controller_that_does_not_plumb_never_imports_pyroute2() -> None:
    """A controller in the machine's root namespace (plumbing off): its modules and its NetworkHost decision
    loaded, pyroute2 (netlink, needed only to plumb) is not."""
    code = """
import cells.network.controller, tools.serve
from node.network import network_host
assert network_host.plumbing_decision("auto", False, False)[0] is False
"""
    assert _loaded_after(code, ("pyroute2", "node.network.network_host")) == ["node.network.network_host"]

