"""The spreading weigher: most free RAM first, ties by free vCPUs, then host name.

Spreading (Nova's default RAM weigher with a positive multiplier) keeps failure
domains small and leaves room for large flavors on every host.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from cells.db.claims import HostState


def spread_key(host: HostState) -> tuple[float, float, str]:
    return (-host.free_ram_mb, -host.free_vcpus, host.host)


def weigh(hosts: Iterable[HostState]) -> list[HostState]:
    """Best host first."""
    return sorted(hosts, key=spread_key)


def best_first(hosts: list[HostState], key: Callable[[HostState], Any] = spread_key) -> Iterator[HostState]:
    """The hosts best first, as weigh orders them, sorting only if the best is not taken: a claim
    nearly always wins on the first host, and a multi-create placed a sort of the whole cell per server."""
    if not hosts:
        return
    best = min(hosts, key=key)
    yield best
    yield from sorted((h for h in hosts if h is not best), key=key)
