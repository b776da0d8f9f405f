"""Hot statements straight on the driver: sqlite3, or psycopg 3 on PostgreSQL.

A statement built once with SQLAlchemy Core (bind parameters) is compiled once
per set of parameter keys into SQL text, the order (sqlite3) or names (psycopg)
of its parameters and the type conversions of its binds and result columns; each
execution is then one call of the driver in the caller's transaction.
SQLAlchemy's per-execute machinery (cache key, execution context, events, result
object) cost ~0.1 ms a statement here, 30-40% of a cell's CPU in a boot burst;
this is a few microseconds. On PostgreSQL that time was also spent holding the
cell's write lock (cells/db/engine.py). psycopg prepares a statement on the
server once it has run a few times on a connection (its prepare_threshold), so
the same text each time also saves the server's parsing and planning. Other
drivers run the statement through SQLAlchemy as usual.

Rows are tuples with attribute access and `_mapping`, as SQLAlchemy's Row.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from sqlalchemy import ColumnDefault, Connection
from sqlalchemy.engine import Row
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from cells.db.group_commit import psycopg_connection_type

Processor = Callable[[Any], Any] | None


class FastRow(tuple[Any, ...]):
    """A result row: by position, by attribute, or as a mapping (`row._mapping`)."""
    __slots__ = ()
    _keys: ClassVar[tuple[str, ...]] = ()
    _index: ClassVar[dict[str, int]] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._index[name]]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._keys, self))


AnyRow = FastRow | Row[Any]  # what a Fast statement returns: SQLAlchemy's Row off SQLite


def as_mapping(row: AnyRow | Mapping[str, Any]) -> Mapping[Any, Any]:
    """A row of either kind, or a mapping already, as a mapping of its columns (by name)."""
    return row if isinstance(row, Mapping) else row._mapping


class _Unsupported(Exception):
    """The statement needs SQLAlchemy's execution (an expanding IN, a Python-side default)."""


class _Compiled:
    def __init__(self, stmt: ClauseElement, conn: Connection, keys: Sequence[str]) -> None:
        compiled = stmt.compile(dialect=conn.dialect, column_keys=list(keys))
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        prefetch = {c.key: c for c in (*compiled.insert_prefetch, *compiled.update_prefetch)}
        # positional (sqlite3's qmark) or named in the SQL text (psycopg's pyformat)
        self.named = compiled.positiontup is None
        escaped: Mapping[str, str] = compiled.escaped_bind_names or {}
        order = list(compiled.binds) if self.named else list(compiled.positiontup or ())
        self.names = [escaped.get(name, name) for name in order] if self.named else []
        # (name, required, value when not given, conversion)
        self.binds: list[tuple[str, bool, Any, Processor]] = []
        for name in order:
            bind = compiled.binds[name]
            if bind.expanding:
                raise _Unsupported(name)
            if name in prefetch:  # a column default SQLAlchemy fills in before executing
                default = prefetch[name].default
                if not isinstance(default, ColumnDefault) or not default.is_scalar:
                    raise _Unsupported(name)
                required, value = False, default.arg
            else:
                required, value = bind.required, None if bind.required else bind.effective_value
            self.binds.append((name, required, value, bind.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)))
        self._columns = list(getattr(stmt, "exported_columns", ()) or getattr(stmt, "selected_columns", ()))
        self._dialect = conn.dialect
        self.row: type[FastRow] | None = None
        # the result columns' conversions: made at the first result, from its description (a PostgreSQL
        # numeric column's conversion depends on the type the server sent, sqlite3 sends none)
        self.convert: list[tuple[int, Callable[[Any], Any]]] | None = None
        if self._columns:
            keys_out = tuple(str(c.key) for c in self._columns)
            self.row = type("Row", (FastRow,), {"__slots__": (), "_keys": keys_out,
                                                "_index": {k: i for i, k in enumerate(keys_out)}})

    def converters(self, description: Sequence[Any] | None) -> list[tuple[int, Callable[[Any], Any]]]:
        if self.convert is None:  # the same list whichever DB thread makes it first
            convert = []
            for i, c in enumerate(self._columns):
                type_code = description[i][1] if description else None
                proc = c.type.dialect_impl(self._dialect).result_processor(self._dialect, type_code)
                if proc is not None:
                    convert.append((i, proc))
            self.convert = convert
        return self.convert

    def args(self, params: Mapping[str, Any]) -> list[Any] | dict[str, Any]:
        out = []
        for name, required, default, proc in self.binds:
            if name in params:
                value = params[name]
            elif required:
                raise KeyError(f"a value is required for bind parameter {name!r}")
            else:
                value = default
            out.append(value if proc is None else proc(value))
        return dict(zip(self.names, out)) if self.named else out

    def make_row(self, raw: tuple[Any, ...], convert: list[tuple[int, Callable[[Any], Any]]]) -> FastRow:
        assert self.row is not None
        if not convert:
            return self.row(raw)
        values = list(raw)
        for i, proc in convert:
            values[i] = proc(values[i])
        return self.row(values)


class Fast:
    """A Core statement run on the sqlite3 or psycopg driver; through SQLAlchemy on others."""

    def __init__(self, stmt: Executable) -> None:
        self.stmt = stmt
        # by dialect and parameter keys; None: SQLAlchemy runs it
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled | None] = {}

    def _for(self, conn: Connection, params: Mapping[str, Any]) -> tuple[_Compiled, Any] | None:
        raw = conn.connection.driver_connection
        if not isinstance(raw, (sqlite3.Connection, psycopg_connection_type())):
            return None
        keys = (conn.dialect.name, tuple(params))
        try:
            compiled = self._compiled[keys]
        except KeyError:
            assert isinstance(self.stmt, ClauseElement)
            try:
                compiled = _Compiled(self.stmt, conn, keys[1])
            except _Unsupported:
                compiled = None
            self._compiled[keys] = compiled
        return None if compiled is None else (compiled, raw)

    def rows(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[AnyRow]:
        params = params or {}
        found = self._for(conn, params)
        if found is None:
            return list(conn.execute(self.stmt, dict(params)))
        compiled, raw = found
        cur = raw.execute(compiled.sql, compiled.args(params))
        convert = compiled.converters(cur.description)
        return [compiled.make_row(r, convert) for r in cur]

    def first(self, conn: Connection, params: Mapping[str, Any] | None = None) -> AnyRow | None:
        params = params or {}
        found = self._for(conn, params)
        if found is None:
            return conn.execute(self.stmt, dict(params)).first()
        compiled, raw = found
        cur = raw.execute(compiled.sql, compiled.args(params))
        r = cur.fetchone()
        return None if r is None else compiled.make_row(r, compiled.converters(cur.description))

    def scalar(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row (None without rows)."""
        row = self.first(conn, params)
        return None if row is None else row[0]

    def run(self, conn: Connection, params: Mapping[str, Any] | None = None) -> int:
        """Execute; the number of rows it changed."""
        params = params or {}
        found = self._for(conn, params)
        if found is None:
            return int(conn.execute(self.stmt, dict(params)).rowcount)
        compiled, raw = found
        return int(raw.execute(compiled.sql, compiled.args(params)).rowcount)

    def run_many(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per parameter set (all with the keys of the first)."""
        if not params:
            return
        found = self._for(conn, params[0])
        if found is None:
            conn.execute(self.stmt, [dict(p) for p in params])
            return
        compiled, raw = found
        if isinstance(raw, sqlite3.Connection):
            raw.executemany(compiled.sql, [compiled.args(p) for p in params])
            return
        with raw.cursor() as cur:  # psycopg: one pipeline of the whole batch
            cur.executemany(compiled.sql, [compiled.args(p) for p in params])

