"""Instance rows: Core queries, the wire record, and list filtering + keyset paging.

Records cross the wire as plain dicts with exactly the fields of cells/objects/records.py InstanceRecord;
the cell-internal columns (conductor_id, request_spec, retry_hosts) never leave.
"""
from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    false,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import Boolean

from cells import errors, linear_regex
from cells.db.fast import AnyRow, Fast, FastRow
from cells.db.schema import instances
from cells.objects.instance import FIELDS
from cells.objects.records import InstanceRecord

WIRE_COLUMNS = [instances.c[f] for f in FIELDS if f != "cell"]
SORT_KEYS = frozenset({"uuid", "name", "project_id", "user_id", "host", "vm_state", "task_state", "power_state",
                       "created_at", "updated_at", "launched_at", "terminated_at", "key_name", "availability_zone",
                       "progress", "deleted"})
FILTER_KEYS = frozenset({"project_id", "user_id", "name", "vm_state", "task_state", "host", "uuid", "deleted",
                         "changes_since", "flavor_id", "image_id", "ip", "ip6"})
_LIST_FILTERS = ("project_id", "user_id", "vm_state", "task_state", "host", "uuid")  # exact match, str or list
DEFAULT_SORT = ("created_at", "uuid")
DEFAULT_DIR = "desc"


class name_search(GenericFunction[bool]):
    """name_search(pattern, name): Nova's name filter, an unanchored regular-expression search, in
    cells.linear_regex (registered on every SQLite connection, cells/db/engine.py): linear in the name
    whatever the pattern, where SQLite's REGEXP (Python's re) backtracks exponentially. Other
    databases cannot call it: list_rows applies the same matcher to the rows there."""
    type = Boolean()
    name = "cc_name_search"
    inherit_cache = True


def check_name_pattern(pattern: str) -> None:
    """Refuse a name filter outside the linear-time subset (a 400 at the API)."""
    try:
        linear_regex.compile_pattern(pattern)
    except linear_regex.PatternError as exc:
        raise errors.Invalid(reason=f"name filter is not a supported regular expression: {exc}") from None


def fixed_ip_matcher(filters: Mapping[str, Any]) -> Callable[[Mapping[str, Any] | None], bool] | None:
    """Nova's ip / ip6 filters: a regular expression matched (anchored at the start, as re.match) against
    each fixed IPv4 / IPv6 address of a server, linear in the address (cells/linear_regex.py).
    None when neither filter is given; Invalid for a pattern outside the linear-time subset."""
    patterns: dict[int, linear_regex.LinearRegex] = {}
    for version, key in ((4, "ip"), (6, "ip6")):
        if filters.get(key) is not None:
            try:
                patterns[version] = linear_regex.compile_pattern(f"^(?:{filters[key]})")
            except linear_regex.PatternError as exc:
                raise errors.Invalid(reason=f"{key} filter is not a supported regular expression: {exc}") from None
    if not patterns:
        return None

    def matches(addresses: Mapping[str, Any] | None) -> bool:
        for ips in (addresses or {}).values():
            for ip in ips or ():
                pattern = patterns.get(int(ip.get("version") or 4))
                if pattern is not None and ip.get("OS-EXT-IPS:type", "fixed") == "fixed" \
                        and pattern.search(str(ip.get("addr") or "")):
                    return True
        return False
    return matches


_ROW_FIELDS = tuple(f for f in FIELDS if f != "cell")
_PICKERS: dict[tuple[str, ...], Callable[[Any], tuple[Any, ...]] | None] = {}


def _picker(columns: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]] | None:
    """The record's fields by position from rows of these columns (None: a field is missing)."""
    if columns not in _PICKERS:
        _PICKERS[columns] = operator.itemgetter(*(columns.index(f) for f in _ROW_FIELDS)) \
            if set(_ROW_FIELDS) <= set(columns) else None
    return _PICKERS[columns]


def to_record(row: AnyRow | Mapping[str, Any], cell: str | None) -> InstanceRecord:
    # by position where the row has every field: SQLAlchemy's RowMapping.get per field made it 16.9 us a
    # record, 5.5 us this way, and a listing converts thousands of rows a page
    pick = _picker(row._fields) if isinstance(row, Row) else _picker(row._keys) if isinstance(row, FastRow) else None
    if pick is not None:
        rec = dict(zip(_ROW_FIELDS, pick(row)))
    else:
        m = row if isinstance(row, Mapping) else row._mapping
        rec = {f: m.get(f) for f in _ROW_FIELDS}  # a row built before v2 columns has no old_flavor
    rec["deleted"] = bool(rec["deleted"])
    rec["cell"] = cell
    return cast(InstanceRecord, rec)  # the columns are the record's fields (tests/unit/test_records.py)


_c = instances.c
_SELECT_ONE = Fast(select(instances).where(_c.uuid == bindparam("b_uuid")))
_SELECT_ONE_LOCKED = Fast(select(instances).where(_c.uuid == bindparam("b_uuid")).with_for_update())
_SELECT_MANY = select(instances).where(_c.uuid.in_(bindparam("b_uuids", expanding=True)))
# no .values(): the SET clause comes from the parameter keys, so one statement serves every update
_UPDATE_ONE = Fast(update(instances).where(_c.uuid == bindparam("b_uuid")))
INSERT = insert(instances)
_INSERT = Fast(INSERT)


def get_row(conn: Connection, uuid: str, lock: bool = False) -> AnyRow | None:
    """The full row (deleted ones too). `lock` takes a row lock where the backend has them;
    on SQLite the write transaction's BEGIN IMMEDIATE already serializes writers."""
    return (_SELECT_ONE_LOCKED if lock else _SELECT_ONE).first(conn, {"b_uuid": uuid})


def reported_row(conn: Connection, uuid: str, host: str) -> AnyRow:
    """The live row a compute host reports on, locked: InstanceNotFound when it is gone, Conflict when
    the server is another host's (a compute speaks for its own host only)."""
    row = get_row(conn, uuid, lock=True)
    if row is None or row.deleted:
        raise errors.InstanceNotFound(instance_id=uuid)
    if row.host != host:
        raise errors.Conflict(reason=f"instance {uuid} is on host {row.host}, not {host}")
    return row


def get_rows(conn: Connection, uuids: Sequence[str]) -> dict[str, AnyRow]:
    if len(uuids) == 1:  # a single boot: the statement the fast path runs
        row = get_row(conn, uuids[0])
        return {} if row is None else {row.uuid: row}
    return {r.uuid: r for r in conn.execute(_SELECT_MANY, {"b_uuids": list(uuids)})}


def insert_rows(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    _INSERT.run_many(conn, rows)


def update_row(conn: Connection, uuid: str, values: Mapping[str, Any]) -> None:
    _UPDATE_ONE.run(conn, {**values, "b_uuid": uuid})


def rows_where(conn: Connection, *conds: ColumnElement[bool]) -> list[Row[Any]]:
    return list(conn.execute(select(instances).where(*conds)))


# --- listing -------------------------------------------------------------------

def normalize_time(value: Any, what: str) -> str:
    """Any ISO 8601 time -> the stored form (UTC, microseconds, Z) so string comparison is time comparison."""
    try:
        dt = datetime.fromisoformat(str(value).strip())  # 3.11+ reads "Z"
    except ValueError:
        raise errors.Invalid(reason=f"{what} is not an ISO 8601 time: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _as_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise errors.Invalid(reason=f"{what} must be a boolean, not {value!r}")


def filter_conditions(filters: Mapping[str, Any], name_in_sql: bool = True) -> list[ColumnElement[bool]]:
    """WHERE clauses for instance_list. Unknown filter keys are refused (they would
    otherwise be silently ignored and widen a listing). `name_in_sql`: False where the
    database cannot run the name matcher (the caller filters the rows)."""
    unknown = set(filters) - FILTER_KEYS
    if unknown:
        raise errors.Invalid(reason=f"unknown instance filter(s) {sorted(unknown)}; allowed: {sorted(FILTER_KEYS)}")
    c = instances.c
    conds: list[ColumnElement[bool]] = []
    for key in _LIST_FILTERS:
        if filters.get(key) is None:
            continue
        value = filters[key]
        values = [value] if isinstance(value, (str, int)) else list(value)
        conds.append(c[key].in_(values) if len(values) != 1 else c[key] == values[0])
    # the flavor and image a server was built from live in its JSON columns: matched by their id
    # (no index of their own: they narrow a listing the project/deleted index already bounds)
    for key, column in (("flavor_id", c.flavor), ("image_id", c.image)):
        if filters.get(key) is not None:
            conds.append(column["id"].as_string() == str(filters[key]))
    name = filters.get("name")
    if name:
        check_name_pattern(str(name))  # Nova treats the name filter as a regular expression (unanchored search)
        if name_in_sql:
            conds.append(name_search(str(name), c.name))
    if filters.get("changes_since") is not None:
        conds.append(c.updated_at >= normalize_time(filters["changes_since"], "changes_since"))
    if filters.get("deleted") is not None:
        conds.append(c.deleted == _as_bool(filters["deleted"], "deleted"))
    elif filters.get("changes_since") is None:
        conds.append(c.deleted == false())  # default: live instances; changes_since shows deletions too
    return conds


def sort_params(sort_keys: Sequence[str] | None, sort_dirs: Sequence[str] | None) -> list[tuple[str, str]]:
    """Nova's process_sort_params: directions default to the first one given (else desc);
    created_at and uuid are appended so the order is total (stable paging)."""
    keys, dirs = list(sort_keys or ()), [d.lower() for d in (sort_dirs or ())]
    if len(dirs) > len(keys) and keys:
        raise errors.Invalid(reason="there are more sort directions than sort keys")
    default_dir = dirs[0] if dirs else DEFAULT_DIR
    for d in dirs:
        if d not in ("asc", "desc"):
            raise errors.Invalid(reason=f"sort direction must be asc or desc, not {d!r}")
    for k in keys:
        if k not in SORT_KEYS:
            raise errors.Invalid(reason=f"cannot sort instances by {k!r}; allowed: {sorted(SORT_KEYS)}")
    dirs += [default_dir] * (len(keys) - len(dirs))
    pairs = list(dict(zip(keys, dirs)).items())  # a repeated key keeps its first direction
    for k in DEFAULT_SORT:
        if k not in keys:
            pairs.append((k, default_dir))
    return pairs


def _beyond(col: Column[Any], direction: str, value: Any) -> ColumnElement[bool]:
    """Rows strictly after `value` in this column's order. NULLs sort first ascending and
    last descending, on every backend (explicit NULLS FIRST/LAST below, `ordered`)."""
    if direction == "asc":
        return col.is_not(None) if value is None else col > value
    if not col.nullable:  # no NULL to follow: a plain range, which an index serves
        return and_(true(), col < value)
    return false() if value is None else or_(col < value, col.is_(None))


def ordered(col: Column[Any], direction: str) -> ColumnElement[Any]:
    """The ORDER BY term: NULLs first ascending and last descending (SQLite's own order) on every backend.
    A NOT NULL column gets the plain term: PostgreSQL's default puts NULLs the other way, so an explicit
    NULLS clause stops a b-tree index from serving the order (measured: a page of 1000 of 100,000 servers
    by created_at was a sequential scan and a sort, 130 ms, instead of a backward index scan)."""
    if not col.nullable:
        return col.asc() if direction == "asc" else col.desc()
    return col.asc().nulls_first() if direction == "asc" else col.desc().nulls_last()


def _equal(col: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
    return col.is_(None) if value is None else col == value


def keyset_after(order: Sequence[tuple[str, str]], marker: Mapping[Any, Any]) -> ColumnElement[bool]:
    clauses = []
    for i, (key, direction) in enumerate(order):
        prefix = [_equal(instances.c[k], marker[k]) for k, _ in order[:i]]
        clauses.append(and_(true(), *prefix, _beyond(instances.c[key], direction, marker[key])))
    return or_(false(), *clauses)


def list_rows(conn: Connection, filters: Mapping[str, Any], sort_keys: Sequence[str] | None,
                    sort_dirs: Sequence[str] | None, limit: int | None, marker: str | None,
                    extra: Iterable[ColumnElement[bool]] = ()) -> list[Row[Any]]:
    return _listing(conn, filters, sort_params(sort_keys, sort_dirs), limit, marker, None, extra, WIRE_COLUMNS)


def list_keys(conn: Connection, filters: Mapping[str, Any], sort_keys: Sequence[str] | None,
              sort_dirs: Sequence[str] | None, limit: int, marker: str | None, after: Any = None,
              extra: Iterable[ColumnElement[bool]] = ()) -> list[list[Any]]:
    """list_rows' listing as each row's sort-key values only, in sort_params order (the keys given, then
    created_at and uuid): what a merge across cells needs to choose a page before it fetches the winners'
    records. Only those columns are read (plus name/addresses where a matcher runs here, not in SQL).
    `after`: {sort key: value} of a pivot that may live in another cell: the rows after it, by a keyset
    seek. `limit` is required (at most MAX_KEYS)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_KEYS:
        raise errors.Invalid(reason=f"limit must be an integer from 0 to {MAX_KEYS}, not {limit!r}")
    order = sort_params(sort_keys, sort_dirs)
    names = [k for k, _ in order]
    pivot = None if after is None else _pivot(names, after)
    if pivot is not None and marker is not None:
        raise errors.Invalid(reason="give a marker or an after pivot, not both")
    # the columns the row matchers read where they run here, not in SQL (list_rows' name and ip filters)
    matched = [k for k, wanted in (("name", filters.get("name")), ("addresses", filters.get("ip") or filters.get("ip6")))
               if wanted and k not in names]
    rows = _listing(conn, filters, order, limit, marker, pivot, extra,
                    [instances.c[k] for k in names] + [instances.c[k] for k in matched])
    width = len(names)
    return [list(r[:width]) for r in rows]


MAX_KEYS = 10_000  # keys one instance_keys call returns at most (a page is at most 1000 servers)
_SCALARS = (str, int, float, bool, type(None))


def _pivot(names: Sequence[str], after: Any) -> dict[str, Any]:
    if not isinstance(after, dict) or set(after) != set(names) \
            or not all(isinstance(v, _SCALARS) for v in after.values()):
        raise errors.Invalid(reason=f"after must map exactly the sort keys {names} to plain values")
    return after


def _listing(conn: Connection, filters: Mapping[str, Any], order: Sequence[tuple[str, str]], limit: int | None,
             marker: str | None, pivot: Mapping[Any, Any] | None, extra: Iterable[ColumnElement[bool]],
             columns: Sequence[Column[Any]]) -> list[Row[Any]]:
    """The listing's rows (these columns), filtered, after `marker` (a uuid of this cell) or `pivot`
    (sort values), in `order`, up to `limit`."""
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise errors.Invalid(reason=f"limit must be a non-negative integer, not {limit!r}")
    # SQLite runs the name matcher itself; elsewhere it runs here, over the rows in order, up to the limit
    name = str(filters.get("name") or "") if conn.dialect.name != "sqlite" else ""
    ip_ok = fixed_ip_matcher(filters)  # addresses are JSON: matched here, over the rows in order
    stmt: Select[Any] = select(*columns).where(*filter_conditions(filters, name_in_sql=not name), *extra)
    if marker is not None:
        # the marker may be any instance of this cell, deleted ones too (as Nova)
        mrow = conn.execute(select(*[instances.c[k] for k, _ in order]).where(instances.c.uuid == marker)).first()
        if mrow is None:
            raise errors.MarkerNotFound(marker=marker)
        pivot = mrow._mapping
    if pivot is not None:
        stmt = stmt.where(keyset_after(order, pivot))
    for key, direction in order:
        stmt = stmt.order_by(ordered(instances.c[key], direction))
    if name or ip_ok is not None:
        if limit == 0:
            return []
        matcher = linear_regex.compile_pattern(name) if name else None
        out = []
        for row in conn.execute(stmt):
            if (matcher is None or matcher.search(row.name or "")) and (ip_ok is None or ip_ok(row.addresses)):
                out.append(row)
                if limit is not None and len(out) >= limit:
                    break
        return out
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(conn.execute(stmt))
