"""A claim or a release as its own unit of work, for tests of the claim statements
(cells/db/claims.py); the scheduler claims inside its placement's unit instead."""
from __future__ import annotations

from sqlalchemy import Connection

from cells.db import claims
from cells.db.claims import Resources
from cells.db.engine import Database
from cells.db.groups import GroupClaim


class _NoFit(Exception):
    """Raised inside the claim's transaction to roll it back."""


def _claim_or_roll_back(conn: Connection, host: str, instance_uuid: str, res: Resources,
                        group: GroupClaim | None) -> bool:
    if not claims.try_claim(conn, host, instance_uuid, res, group):
        raise _NoFit  # roll back the release of a previous claim too
    return True


async def claim(db: Database, host: str, instance_uuid: str, res: Resources,
                group: GroupClaim | None = None) -> bool:
    """`try_claim` as its own unit of work; a failed claim leaves the DB untouched."""
    try:
        return await db.write(lambda conn: _claim_or_roll_back(conn, host, instance_uuid, res, group))
    except _NoFit:
        return False


async def release(db: Database, instance_uuid: str) -> str | None:
    return await db.write(lambda conn: claims.release_claim(conn, instance_uuid))
