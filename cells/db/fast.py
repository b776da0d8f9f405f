"""Hot statements straight on the SQLite driver.

A statement built once with SQLAlchemy Core (bind parameters) is compiled once
per set of parameter keys into SQL text, the order of its parameters and the
type conversions of its binds and result columns; each execution is then one
call of the sqlite3 cursor in the caller's transaction. SQLAlchemy's per-execute
machinery (cache key, execution context, events, result object) cost ~0.1 ms a
statement here, 30-40% of a cell's CPU in a boot burst; this is a few
microseconds. Other backends run the statement through SQLAlchemy as usual.

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
        # (name, required, value when not given, conversion)
        self.binds: list[tuple[str, bool, Any, Processor]] = []
        for name in compiled.positiontup or ():
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
            self.binds.append((name, required, value, bind.type.bind_processor(conn.dialect)))
        columns = list(getattr(stmt, "exported_columns", ()) or getattr(stmt, "selected_columns", ()))
        self.row: type[FastRow] | None = None
        self.convert: list[tuple[int, Callable[[Any], Any]]] = []
        if columns:
            keys_out = tuple(str(c.key) for c in columns)
            self.row = type("Row", (FastRow,), {"__slots__": (), "_keys": keys_out,
                                                "_index": {k: i for i, k in enumerate(keys_out)}})
            for i, c in enumerate(columns):
                proc = c.type.result_processor(conn.dialect, None)
                if proc is not None:
                    self.convert.append((i, proc))

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, required, default, proc in self.binds:
            if name in params:
                value = params[name]
            elif required:
                raise KeyError(f"a value is required for bind parameter {name!r}")
            else:
                value = default
            out.append(value if proc is None else proc(value))
        return out

    def make_row(self, raw: tuple[Any, ...]) -> FastRow:
        assert self.row is not None
        if not self.convert:
            return self.row(raw)
        values = list(raw)
        for i, proc in self.convert:
            values[i] = proc(values[i])
        return self.row(values)


class Fast:
    """A Core statement run on the sqlite3 driver when the connection is SQLite."""

    def __init__(self, stmt: Executable) -> None:
        self.stmt = stmt
        self._compiled: dict[tuple[str, ...], _Compiled | None] = {}  # None: SQLAlchemy runs it

    def _for(self, conn: Connection, params: Mapping[str, Any]) -> tuple[_Compiled, sqlite3.Connection] | None:
        raw = conn.connection.driver_connection
        if not isinstance(raw, sqlite3.Connection):
            return None
        keys = tuple(params)
        try:
            compiled = self._compiled[keys]
        except KeyError:
            assert isinstance(self.stmt, ClauseElement)
            try:
                compiled = _Compiled(self.stmt, conn, keys)
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
        return [compiled.make_row(r) for r in raw.execute(compiled.sql, compiled.args(params))]

    def first(self, conn: Connection, params: Mapping[str, Any] | None = None) -> AnyRow | None:
        params = params or {}
        found = self._for(conn, params)
        if found is None:
            return conn.execute(self.stmt, dict(params)).first()
        compiled, raw = found
        r = raw.execute(compiled.sql, compiled.args(params)).fetchone()
        return None if r is None else compiled.make_row(r)

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
        raw.executemany(compiled.sql, [compiled.args(p) for p in params])
