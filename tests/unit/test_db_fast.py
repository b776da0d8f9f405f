"""cells/db/fast.py: a statement run on the sqlite3 driver, or on psycopg against PostgreSQL, gives what
SQLAlchemy gives."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import create_async_engine

from cells.db.engine import driver_url
from cells.db.fast import Fast, FastRow

meta = MetaData()
things = Table(
    "things", meta,
    Column("id", String(36), primary_key=True),
    Column("size", Integer, nullable=False, default=7),
    Column("on", Boolean, nullable=False, default=False),
    Column("doc", JSON, nullable=True),
    Column("ratio", Float, nullable=False, default=1.5),
)
SELECT_ONE = select(things).where(things.c.id == bindparam("b_id"))
SELECT_MANY = select(things).where(things.c.id.in_(bindparam("b_ids", expanding=True))).order_by(things.c.id)
UPDATE_ONE = update(things).where(things.c.id == bindparam("b_id"))
DELETE_ONE = delete(things).where(things.c.id == bindparam("b_id")).returning(things.c.size, things.c.doc)


@pytest.fixture
def conn(db_url: str) -> Iterator[Connection]:
    """A transaction on the sync driver the DB threads use: sqlite3, or psycopg on PostgreSQL."""
    engine = create_engine(driver_url(db_url.replace("sqlite+aiosqlite:", "sqlite:")))
    meta.create_all(engine)
    with engine.begin() as c:
        yield c
    engine.dispose()


def _stored(conn: Connection) -> list[tuple[Any, ...]]:
    """The raw column values, as the database holds them (booleans as 0/1, JSON as its text)."""
    cast = "::int" if conn.dialect.name == "postgresql" else ""
    doc = "::text" if conn.dialect.name == "postgresql" else ""
    return [tuple(r) for r in conn.execute(text(f"SELECT id, size, \"on\"{cast}, doc{doc} FROM things ORDER BY id"))]


def test_insert_fills_column_defaults_and_stores_what_sqlalchemy_stores(conn: Connection) -> None:
    conn.execute(insert(things), [{"id": "a", "doc": {"k": [1, 2]}}, {"id": "b", "doc": None}])
    slow = _stored(conn)
    conn.execute(delete(things))
    Fast(insert(things)).run_many(conn, [{"id": "a", "doc": {"k": [1, 2]}}, {"id": "b", "doc": None}])
    assert _stored(conn) == slow
    assert slow[0][1:3] == (7, 0)  # the scalar defaults were applied


def test_rows_read_like_sqlalchemy_rows(conn: Connection) -> None:
    conn.execute(insert(things), [{"id": "a", "size": 3, "on": True, "doc": {"x": "y"}}])
    slow = conn.execute(SELECT_ONE, {"b_id": "a"}).first()
    fast = Fast(SELECT_ONE).first(conn, {"b_id": "a"})
    assert slow is not None and fast is not None
    assert tuple(fast) == tuple(slow) == ("a", 3, True, {"x": "y"}, 1.5)
    assert (fast.id, fast.size, fast.on, fast.doc) == (slow.id, slow.size, slow.on, slow.doc)
    assert fast._mapping == dict(slow._mapping)
    assert fast.on is True  # Boolean converted back, JSON parsed
    assert isinstance(fast, FastRow)  # the driver ran it, not SQLAlchemy
    with pytest.raises(AttributeError):
        _ = fast.nope
    assert Fast(SELECT_ONE).first(conn, {"b_id": "missing"}) is None
    assert Fast(select(things.c.size).where(things.c.id == "a")).scalar(conn) == 3


def test_update_set_clause_follows_the_parameter_keys(conn: Connection) -> None:
    conn.execute(insert(things), [{"id": "a"}, {"id": "b"}])
    fast = Fast(UPDATE_ONE)
    assert fast.run(conn, {"b_id": "a", "size": 1}) == 1
    assert fast.run(conn, {"b_id": "b", "on": True, "doc": {"n": 1}}) == 1
    assert fast.run(conn, {"b_id": "nobody", "size": 5}) == 0
    assert _stored(conn) == [("a", 1, 0, None), ("b", 7, 1, '{"n": 1}')]


def test_delete_returning_and_expanding_in(conn: Connection) -> None:
    conn.execute(insert(things), [{"id": "a", "size": 1}, {"id": "b", "size": 2}, {"id": "c", "size": 3}])
    many = Fast(SELECT_MANY).rows(conn, {"b_ids": ["c", "a"]})  # an expanding IN: SQLAlchemy runs it
    assert [r.id for r in many] == ["a", "c"]
    gone = Fast(DELETE_ONE).first(conn, {"b_id": "b"})
    assert gone is not None and (gone.size, gone.doc) == (2, None)
    assert Fast(DELETE_ONE).first(conn, {"b_id": "b"}) is None
    assert [r[0] for r in _stored(conn)] == ["a", "c"]


def test_a_missing_parameter_is_an_error_not_a_null(conn: Connection) -> None:
    with pytest.raises(KeyError, match="b_id"):
        Fast(UPDATE_ONE).run(conn, {"size": 1})


async def test_other_drivers_go_through_sqlalchemy(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'async.db'}")
    async with engine.begin() as c:
        await c.run_sync(meta.create_all)

        def work(conn: Connection) -> tuple[Any, int]:
            Fast(insert(things)).run(conn, {"id": "a", "doc": [1]})
            changed = Fast(UPDATE_ONE).run(conn, {"b_id": "a", "size": 9})
            return Fast(SELECT_ONE).first(conn, {"b_id": "a"}), changed
        row, changed = await c.run_sync(work)
    await engine.dispose()
    assert changed == 1
    assert row is not None and type(row).__module__.startswith("sqlalchemy")
    assert (row.id, row.size, row.on, row.doc) == ("a", 9, False, [1])


def test_numbers_and_aggregates_convert_as_sqlalchemy_converts(conn: Connection) -> None:
    """A float column, a SUM and a COALESCE of SUMs (PostgreSQL sends numeric for a bigint SUM) come back
    with SQLAlchemy's values and Python types; on PostgreSQL their conversion depends on the type the
    server sent, which the driver path reads from the result."""
    conn.execute(insert(things), [{"id": "a", "size": 2, "ratio": 0.25}, {"id": "b", "size": 5, "ratio": 1.5}])
    stmt = select(func.sum(things.c.ratio), func.coalesce(func.sum(things.c.size), 0), func.count(),
                  func.max(things.c.ratio)).where(things.c.id != bindparam("b_not"))
    slow = conn.execute(stmt, {"b_not": "x"}).one()
    fast = Fast(stmt).first(conn, {"b_not": "x"})
    assert fast is not None and isinstance(fast, FastRow)
    assert tuple(fast) == tuple(slow) == (1.75, 7, 2, 1.5)
    assert [type(v) for v in fast] == [type(v) for v in slow]
    none = Fast(stmt).first(conn, {"b_not": "x"})  # the conversions made at the first result serve the next
    assert none is not None and tuple(none) == tuple(slow)
