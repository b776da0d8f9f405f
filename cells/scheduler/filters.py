"""Host filters: pure functions over HostState (no I/O).

A filter answers "can this host take this request?". Liveness comes in as a
predicate (the caller looks it up in its DirectoryView), so filters stay pure.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cells import errors
from cells.db.claims import HostState, Resources

Alive = Callable[[str], bool]
HostFilter = Callable[[HostState, Resources], bool]


def ram_filter(host: HostState, req: Resources) -> bool:
    return host.free_ram_mb >= req.memory_mb


def disk_filter(host: HostState, req: Resources) -> bool:
    return host.free_disk_gb >= req.local_gb


def vcpu_filter(host: HostState, req: Resources) -> bool:
    return host.free_vcpus >= req.vcpus


RESOURCE_FILTERS: tuple[HostFilter, ...] = (ram_filter, disk_filter, vcpu_filter)


def compute_alive_filter(alive: Alive) -> HostFilter:
    """Passes hosts whose compute service has a live member of topic compute.<host>."""
    def _filter(host: HostState, req: Resources) -> bool:
        return alive(host.host)
    return _filter


def hinted_instances(hints: Mapping[str, Any] | None, name: str) -> list[str]:
    """The instance ids a same_host / different_host hint names (a single id or a list)."""
    value = (hints or {}).get(name)
    if value is None:
        return []
    ids = [value] if isinstance(value, str) else value
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise errors.Invalid(reason=f"scheduler hint {name} must be an instance id or a list of them")
    return ids


def filter_hosts(hosts: Iterable[HostState], req: Resources, alive: Alive,
                 exclude: Iterable[str] = (), only: set[str] | None = None) -> list[HostState]:
    """`only` (a same_host hint's hosts) narrows the choice; `exclude` removes hosts from it."""
    excluded = set(exclude)
    ram, disk, vcpus = RESOURCE_FILTERS
    # the filters called one by one, not through a generator per host: this runs over the whole cell per server
    return [h for h in hosts if h.host not in excluded and (only is None or h.host in only)
            and ram(h, req) and disk(h, req) and vcpus(h, req) and alive(h.host)]
