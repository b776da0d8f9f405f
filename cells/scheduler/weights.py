"""The spreading weigher: most free RAM first, ties by free vCPUs, then host name.

Spreading (Nova's default RAM weigher with a positive multiplier) keeps failure
domains small and leaves room for large flavors on every host.
"""
from __future__ import annotations

from collections.abc import Iterable

from cells.db.claims import HostState


def spread_key(host: HostState) -> tuple[float, float, str]:
    return (-host.free_ram_mb, -host.free_vcpus, host.host)


def weigh(hosts: Iterable[HostState]) -> list[HostState]:
    """Best host first."""
    return sorted(hosts, key=spread_key)
