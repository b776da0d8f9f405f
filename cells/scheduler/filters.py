"""Host filters: pure functions over HostState (no I/O).

A filter answers "can this host take this request?". Liveness comes in as a
predicate (the caller looks it up in its DirectoryView), so filters stay pure.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

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


def filter_hosts(hosts: Iterable[HostState], req: Resources, alive: Alive,
                 exclude: Iterable[str] = ()) -> list[HostState]:
    excluded = set(exclude)
    checks = (compute_alive_filter(alive), *RESOURCE_FILTERS)
    return [h for h in hosts if h.host not in excluded and all(f(h, req) for f in checks)]
