"""Which cell gets a new server: pure ranking over the cells' capacity summaries.

Each cell's conductor reports a summary on its heartbeat (cells/conductor/capacity.py)
and the routers pass them up the tree (cells/router_service.py). The API:

1. keeps the cells in the requested availability zone: a site name, a cell name
   or a cell path (any segment of it) is a zone; "nova" (the default) is all;
2. keeps the cells a `target_cell` scheduler hint names (a path, or a name on it),
   and drops those a `different_cell` hint names;
3. orders the cells where the flavor fits a single host by free RAM (then free
   vCPUs), most first, after deducting what this API sent there since the
   cell's last report (`Pending`), so a burst of boots spreads instead of piling
   on one cell; then the cells that have not reported (just started); then
   those that look full (a summary is up to a beat old: the cell decides).

The chosen cell's own scheduler picks the host; a cell that refuses (NoValidHost)
is skipped and the next one tried (api/compute/cell_boot.py). Unreachable
cells are left out before ranking (api/cell_router.py).
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cells.config import CellSpec

DEFAULT_ZONE = "nova"
PENDING_TTL = 3.0  # seconds a boot sent to a cell counts against its summary (its next reports include it)


def in_zone(cell: CellSpec, zone: str | None) -> bool:
    if not zone or zone == DEFAULT_ZONE:
        return True
    return zone in (cell.site, cell.name, cell.path) or zone in cell.path.split("!")


def named(cell: CellSpec, names: Iterable[str]) -> bool:
    return any(n in (cell.path, cell.name) or cell.path.startswith(n + "!") for n in names)


def names(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


@dataclass
class Pending:
    """What this API placed in each cell lately: (time, ram MB, vcpus) per boot."""
    ttl: float = PENDING_TTL
    items: dict[str, list[tuple[float, int, int]]] = field(default_factory=dict)

    def add(self, path: str, ram: int, vcpus: int, count: int = 1, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.items.setdefault(path, []).extend([(now, ram, vcpus)] * count)

    def used(self, path: str, now: float | None = None) -> tuple[int, int]:
        now = time.monotonic() if now is None else now
        live = [i for i in self.items.get(path, []) if now - i[0] < self.ttl]
        self.items[path] = live
        return sum(i[1] for i in live), sum(i[2] for i in live)


def rank(cells: Iterable[CellSpec], summaries: Mapping[str, Mapping[str, Any]], flavor: Mapping[str, Any],
         zone: str | None, hints: Mapping[str, Any], pending: Pending | None = None,
         now: float | None = None) -> list[str]:
    """Paths of the cells to try, best first."""
    ram, vcpus = int(flavor.get("ram") or 0), int(flavor.get("vcpus") or 0)
    disk = int(flavor.get("disk") or 0) + int(flavor.get("ephemeral") or 0)
    targets, avoid = names(hints.get("target_cell")), names(hints.get("different_cell"))
    scored: list[tuple[int, int, int, str]] = []
    for cell in cells:
        if not in_zone(cell, zone) or (targets and not named(cell, targets)) or (avoid and named(cell, avoid)):
            continue
        s = summaries.get(cell.path)
        if s is None:
            scored.append((1, 0, 0, cell.path))  # not reported yet
            continue
        used_ram, used_vcpus = pending.used(cell.path, now) if pending else (0, 0)
        free_ram, free_vcpus = int(s.get("memory_mb_free", 0)) - used_ram, int(s.get("vcpus_free", 0)) - used_vcpus
        full = int(s.get("hosts_alive", 0)) == 0 or int(s.get("max_local_gb_free", 0)) < disk \
            or int(s.get("max_memory_mb_free", 0)) < ram or int(s.get("max_vcpus_free", 0)) < vcpus \
            or free_ram < ram or free_vcpus < vcpus
        scored.append((2 if full else 0, -free_ram, -free_vcpus, cell.path))
    return [path for *_, path in sorted(scored)]
