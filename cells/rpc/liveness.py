"""Three-state liveness of compute hosts: the pure core (no I/O, time passed in).

    alive    the host's compute is in the directory's routing table
    suspect  it missed beats (left the table) less than `grace` seconds ago: routing and
             scheduling avoid it, nothing is destroyed (it may be frozen, partitioned, or
             the directory may just have restarted)
    dead     absent for `grace` seconds, or an operator said so (`cellctl host down`):
             only now may its builds be rescheduled, its deletes completed locally, its
             volumes released and its servers evacuated
    fenced   declared dead once and back in the table: not used until its compute has
             reconciled against the cell DB (destroying guests whose servers were
             finished elsewhere) and said so (`host_rejoined`)

A host this process has not seen since it started counts as absent since the start
(a start-up grace): a restarted conductor, or one whose directory restarted, never
declares a host dead because its table was empty for a moment.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

ALIVE, SUSPECT, DEAD, FENCED = "alive", "suspect", "dead", "fenced"
DEFAULT_GRACE = 60.0  # seconds a host may be silent before it is dead (cluster.yaml dead_after)


@dataclass
class HostLiveness:
    grace: float
    started: float  # when this process began watching: the start-up grace counts from here
    present: set[str] = field(default_factory=set)  # hosts in the routing table now
    last_seen: dict[str, float] = field(default_factory=dict)
    forced_down: set[str] = field(default_factory=set)  # the operator's marks (persisted in the cell DB)
    fenced: set[str] = field(default_factory=set)  # declared dead, not rejoined yet (persisted too)
    declared: set[str] = field(default_factory=set)  # hosts whose death this process acted on

    def observe(self, present: Iterable[str], now: float) -> None:
        """The hosts in the directory's table now."""
        self.present = set(present)
        for host in self.present:
            self.last_seen[host] = now

    def marks(self, forced_down: Iterable[str], fenced: Iterable[str]) -> None:
        """The persisted operator marks and fences, as last read from the cell DB."""
        self.forced_down, self.fenced = set(forced_down), set(fenced)

    def absent_for(self, host: str, now: float) -> float:
        if host in self.present:
            return 0.0
        return max(0.0, now - max(self.last_seen.get(host, self.started), self.started))

    def state(self, host: str, now: float, present: bool | None = None) -> str:
        """`present`: whether the host is in the routing table, when the caller knows
        better than the last observe() (it reads the table itself)."""
        here = host in self.present if present is None else present
        if host in self.forced_down:
            return DEAD
        if here:
            return FENCED if host in self.fenced else ALIVE
        if host in self.fenced or self.absent_for(host, now) >= self.grace:
            return DEAD
        return SUSPECT

    def newly_dead(self, hosts: Iterable[str], now: float) -> list[str]:
        """Hosts dead now whose death was not acted on yet (each is returned once, until it
        is alive again). `hosts`: every host known (the cell DB's compute nodes)."""
        known = set(hosts) | self.present | set(self.last_seen) | self.forced_down
        out = []
        for host in sorted(known):
            state = self.state(host, now)
            if state == DEAD and host not in self.declared:
                self.declared.add(host)
                out.append(host)
            elif state == ALIVE:
                self.declared.discard(host)
        return out

    def states(self, hosts: Iterable[str], now: float) -> dict[str, str]:
        known = set(hosts) | self.present | set(self.last_seen) | self.forced_down | self.fenced
        return {host: self.state(host, now) for host in sorted(known)}
