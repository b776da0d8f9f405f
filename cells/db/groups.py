"""Server-group policies, enforced inside the claim transaction (cells/db/claims.py).

A claim made for a member of a group carries the group's uuid (claims.group_uuid).
Before it is made, in the same transaction, the claim takes the group's row in
`server_groups` (SELECT .. FOR UPDATE: claims of one group queue behind each
other on PostgreSQL; SQLite's BEGIN IMMEDIATE serializes every claim anyway),
then reads the hosts the group's other claims are on and refuses a host the
policy forbids. Two schedulers placing members of one group at once therefore
never both see "no peer here" (Nova checks late, on the compute, and
reschedules instead).

Soft policies (Nova 2.15) never refuse a host: the scheduler prefers (cells/scheduler/manager.py
`Grouping.preference`). An anti-affinity group may allow up to `max_per_host` members per host (2.64's
max_server_per_host rule; a move's group, read back from its claim, allows 1).

Consumers: a boot claims under the instance's uuid; a move claims the
destination under the migration's uuid while the instance keeps its source
claim. Both of a member's own claims are left out of its peers.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from cells import errors
from cells.db.schema import claims, server_groups
from cells.objects.instance import utcnow_iso

AFFINITY, ANTI_AFFINITY = "affinity", "anti-affinity"
SOFT_AFFINITY, SOFT_ANTI_AFFINITY = "soft-affinity", "soft-anti-affinity"  # Nova 2.15's
POLICIES = (AFFINITY, ANTI_AFFINITY, SOFT_AFFINITY, SOFT_ANTI_AFFINITY)


@dataclass(frozen=True)
class GroupClaim:
    """The group a claim is made for. `member`: the instance when the consumer is not the
    instance itself (a move's migration); its own claims are not its peers."""
    uuid: str
    policy: str
    member: str | None = None
    max_per_host: int = 1  # anti-affinity: members one host may hold

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise errors.Invalid(reason=f"server group policy must be one of {list(POLICIES)}, not {self.policy!r}")
        if self.max_per_host < 1:
            raise errors.Invalid(reason=f"max_server_per_host must be at least 1, not {self.max_per_host}")

    def own(self, consumers: Iterable[str]) -> set[str]:
        return {*consumers, *([self.member] if self.member else [])}


def allows(policy: str, peer_hosts: Iterable[str], host: str, max_per_host: int = 1) -> bool:
    """Pure: may a member of a group with `policy` go to `host`, its peers being on `peer_hosts` (one
    entry per peer)? A soft policy never refuses."""
    peers = Counter(peer_hosts)
    if policy == ANTI_AFFINITY:
        return peers[host] < max_per_host
    if policy == AFFINITY:
        return not peers or set(peers) == {host}
    return True


_c, _g = claims.c, server_groups.c
_LOCK = select(_g.policy).where(_g.uuid == bindparam("b_group")).with_for_update()
_PEERS = select(_c.instance_uuid, _c.host).where(_c.group_uuid == bindparam("b_group"))
_GROUP_OF = (select(_g.uuid, _g.policy).join(server_groups, _g.uuid == _c.group_uuid)
             .where(_c.instance_uuid == bindparam("b_uuid")))


def lock(conn: Connection, group: GroupClaim) -> str:
    """Take the group's row (made on its first claim); returns the policy on record.

    The peers are read by a later statement, not joined here: on PostgreSQL (READ
    COMMITTED) a statement that waited for the lock still reads other rows as of its
    start, so it would miss the claim the lock's previous holder just committed."""
    row = conn.execute(_LOCK, {"b_group": group.uuid}).first()
    if row is not None:
        return str(row.policy)
    try:
        with conn.begin_nested():  # another scheduler may make the same group's row at once (PostgreSQL)
            conn.execute(insert(server_groups), {"uuid": group.uuid, "policy": group.policy,
                                                 "created_at": utcnow_iso()})
    except IntegrityError:
        return str(conn.execute(_LOCK, {"b_group": group.uuid}).one().policy)
    return group.policy


def peer_hosts(conn: Connection, group: GroupClaim, consumers: Iterable[str]) -> Counter[str]:
    """The hosts the group's claims other than the member's own (or `consumers`') are on, with how many."""
    own = group.own(consumers)
    return Counter(str(r.host) for r in conn.execute(_PEERS, {"b_group": group.uuid}) if r.instance_uuid not in own)


def admits(conn: Connection, group: GroupClaim, host: str, consumer: str) -> bool:
    """In the claim's transaction, before it is made: lock the group, then check its policy."""
    policy = lock(conn, group)
    return allows(policy, peer_hosts(conn, group, [consumer]).elements(), host, group.max_per_host)


def group_of(conn: Connection, instance_uuid: str) -> GroupClaim | None:
    """The group an instance's claim was made for (a move keeps it), as a claim for that member."""
    row = conn.execute(_GROUP_OF, {"b_uuid": instance_uuid}).first()
    return None if row is None else GroupClaim(str(row.uuid), str(row.policy), member=instance_uuid)
