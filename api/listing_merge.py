"""Keys-first merge of a server listing across cells (issue 21), for api/cell_router.py list_instances.

Round 1 asks every cell for the sort-key values of up to a page of its servers (conductor
instance_keys: a few short columns per row, no record built or packed); the router merges them
with the full records of cells that cannot answer keys (an older conductor: today's batches, or a
down cell's mappings) and cuts the page. Round 2 (`records_of`) fetches the records of the page's
keyed servers, one instance_list per cell filtered by their uuids, and puts them in the merged order.
For a detail listing (`views`) that call is instance_list_views (RPC 1.8): each record comes with its
server view's volumes and security group names, so the API asks no other service for them; a conductor
older than that answers instance_list's plain records, which the API completes as before.
A server deleted (or no longer matching) between the rounds drops out of the page: it is not
looked for again. A cell that answered the keys but not the records shows those servers from its
mappings (`down_records`) when the caller gives them, else leaves them out (and logs it).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from api.scatter import Down, scatter
from cells import errors
from cells.context import RequestContext
from cells.db.instances import MAX_KEYS, sort_params
from cells.objects.records import InstanceRecord

if TYPE_CHECKING:
    from api.cell_router import Cell, DownRecords, Listed

LOG = logging.getLogger(__name__)
__all__ = ["MAX_KEYS", "KeyRow", "Keys", "ViewsOf", "key_names", "key_rows", "pivot_of", "records_of"]
# a detail listing's: for a cell's path, whether its records carry security group names (a network controller)
ViewsOf = Callable[[str], bool]


@dataclass(frozen=True)
class Keys:
    """A cell's round-1 answer: its rows' sort values, in key_names order."""
    rows: list[list[Any]]


class KeyRow(dict[str, Any]):
    """A server known by its sort values and cell only, until round 2 fetches its record."""
    __slots__ = ()


def key_names(sort_keys: list[str], sort_dirs: list[str]) -> list[str]:
    """The columns of an instance_keys row: the cell DB's full order (uuid is always among them)."""
    return [k for k, _ in sort_params(sort_keys, sort_dirs)]


def pivot_of(marker: Mapping[str, Any] | None, names: list[str]) -> dict[str, Any] | None:
    """The marker's sort values: every cell seeks past them in SQL, whether it holds the marker or not."""
    return None if marker is None else {k: marker.get(k) for k in names}


def key_rows(rows: list[list[Any]], names: list[str], path: str) -> Iterator[KeyRow]:
    """A cell's key rows as mappings sort_key reads, made lazily: the merge pops only a page of them."""
    for row in rows:
        entry = KeyRow(zip(names, row))
        entry["cell"] = path
        yield entry


async def records_of(cells: Mapping[str, Cell], page: Sequence[Mapping[str, Any]], ctx: RequestContext,
                     bound: float, filters: dict[str, Any], sort_keys: list[str], sort_dirs: list[str],
                     down_records: DownRecords | None, views: ViewsOf | None = None) -> list[Listed]:
    """The page with each KeyRow replaced by its server's record (one call per cell, all at once, each
    within `bound` and `ctx`'s own deadline), in the page's order; with `views`, records that carry their
    server views' volumes (and, where `views(path)`, security group names) from conductors that can."""
    wanted: dict[str, list[str]] = {}
    for entry in page:
        if isinstance(entry, KeyRow):
            wanted.setdefault(str(entry["cell"]), []).append(str(entry["uuid"]))
    if not wanted:
        return cast("list[Listed]", list(page))

    async def fetch(cell: Cell, bounded: RequestContext) -> Sequence[InstanceRecord]:
        uuids = wanted[cell.path]
        # the listing's own filters again: a server that stopped matching since round 1 drops out
        by_uuid = {**filters, "uuid": uuids}
        if views is not None:
            try:
                return await cell.conductor.instance_list_views(bounded, by_uuid, sort_keys, sort_dirs, len(uuids),
                                                                None, views(cell.path))
            except (errors.UnsupportedVersion, errors.UnknownMethod):  # an older conductor: plain records
                pass
        return await cell.conductor.instance_list(bounded, by_uuid, sort_keys, sort_dirs, len(uuids), None)
    found: dict[tuple[str, str], Listed] = {}
    lost: list[str] = []
    for cell, result in await scatter([cells[p] for p in wanted], ctx, bound, fetch):
        if isinstance(result, Down):
            LOG.warning("cell %s is down for a listing's records: %s", cell.path, result.reason)
            lost.append(cell.path)
            continue
        asked = set(wanted[cell.path])  # a cell answers for the servers it was asked about only
        found.update(((cell.path, r["uuid"]), r) for r in result if r.get("uuid") in asked)
    if lost and down_records is not None:
        found.update(((r["cell"], r["uuid"]), r) for r in await down_records(lost))
    out: list[Listed] = []
    for entry in page:
        if not isinstance(entry, KeyRow):
            out.append(cast("Listed", entry))
        elif (record := found.get((str(entry["cell"]), str(entry["uuid"])))) is not None:
            out.append(record)
    return out
