"""A cell's server listing orders and pages the same on SQLite and PostgreSQL (NULLs first ascending, last
descending, ties broken by uuid), and on PostgreSQL the tenant listing's default order (created_at) comes
from an index, not from a sort of every row."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, event, insert

from cells.db.engine import Database
from cells.db.instances import list_rows
from cells.db.schema import create_schema, instances

BASE = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)


def _servers(count: int) -> list[dict[str, Any]]:
    """`count` servers of project p1: created_at in groups of 3 equal times (ties), every other one never
    launched (launched_at NULL)."""
    return [{"uuid": str(uuid.UUID(int=(i * 7919) % 100_003 + 1)), "name": f"vm{i:04d}", "project_id": "p1",
             "flavor": {"id": "1"}, "vm_state": "active", "created_at": BASE + timedelta(seconds=i // 3),
             "updated_at": BASE, "launched_at": None if i % 2 else BASE + timedelta(seconds=count - i),
             "metadata": {}, "addresses": {}, "retry_hosts": []} for i in range(count)]


async def _filled(url: str, count: int) -> Database:
    await create_schema(url)
    db = Database(url)
    servers = _servers(count)
    await db.write(lambda conn: conn.execute(insert(instances), servers))
    return db


def _expected(servers: list[dict[str, Any]], key: str, direction: str) -> list[str]:
    """The listing's order, by hand: `key`, created_at, uuid, all in `direction` (Nova's default keys come
    last); NULLs first ascending, last descending."""
    def sort_key(s: dict[str, Any]) -> tuple[bool, Any, datetime, str]:
        return (s[key] is not None, s[key] or BASE, s["created_at"], s["uuid"])
    return [s["uuid"] for s in sorted(servers, key=sort_key, reverse=direction == "desc")]


@pytest.mark.parametrize(("key", "direction"), [("created_at", "desc"), ("created_at", "asc"),
                                                ("launched_at", "asc"), ("launched_at", "desc")])
async def test_pages_follow_the_same_total_order_on_every_backend(db_url: str, key: str, direction: str) -> None:
    """Pages of 7 walked with markers give every server once, in the order sorted by hand (created_at is NOT
    NULL and has ties; launched_at has NULLs)."""
    db = await _filled(db_url, 40)
    try:
        walked: list[str] = []
        marker: str | None = None
        while True:
            def page_after(conn: Connection, after: str | None = marker) -> list[Any]:
                return list_rows(conn, {"project_id": "p1"}, [key], [direction], 7, after)
            page = await db.read(page_after)
            if not page:
                break
            walked += [r.uuid for r in page]
            marker = page[-1].uuid
        assert walked == _expected(_servers(40), key, direction)
    finally:
        await db.close()


async def test_postgresql_serves_the_default_order_from_an_index(db_url: str) -> None:
    """EXPLAIN of a tenant's first page (created_at desc, uuid desc) over 3000 analyzed rows: an index scan,
    no sequential scan and no full sort (an explicit NULLS LAST on the NOT NULL column used to force both)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL plan: SQLite's default NULL order already matches its indexes")
    db = await _filled(db_url, 3000)
    try:
        await db.write(lambda conn: conn.exec_driver_sql("ANALYZE instances"))

        def plan(conn: Connection) -> str:  # EXPLAIN the very statement list_rows runs
            ran: list[tuple[str, Any]] = []
            listen = (conn, "before_cursor_execute", lambda *a: ran.append((a[2], a[3])))
            event.listen(*listen)
            try:
                list_rows(conn, {"project_id": "p1"}, None, None, 1000, None)
            finally:
                event.remove(*listen)
            [(sql, params)] = ran
            return "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql, params))
        got = await db.read(plan)
        assert "Index Scan Backward" in got, got
        assert "Seq Scan" not in got and "Sort Key: created_at DESC, uuid DESC" in got, got
        assert "Presorted Key: created_at" in got, got  # only ties in created_at are sorted (by uuid)
    finally:
        await db.close()
