"""EC2's short ids (i-0000000a, ami-00000001, vol-0000000c, snap-0000000d, eipalloc-0000000e for a
floating IP, whose association reads eipassoc-0000000e) <-> Cellcloud uuids.
An image's id also reads as aki-/ari- (Nova named kernels and ramdisks so): same number, same image.

Each uuid gets a row in ec2_ids the first time EC2 shows it; the row's integer
is the id's hex part, as Nova's EC2 API did. The prefix names the kind, and a
lookup of an id of the wrong kind is not found.
"""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import and_, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from api.db.schema import ec2_ids
from api.ec2.errors import Ec2Error
from cells import errors
from cells.context import RequestContext

PREFIX = {"instance": "i", "image": "ami", "volume": "vol", "snapshot": "snap", "floatingip": "eipalloc",
          "security_group": "sg", "subnet": "subnet"}
# the prefixes an id of each kind may have: Nova's EC2 API named kernels aki- and ramdisks ari-
ACCEPTED = {"instance": ("i",), "image": ("ami", "aki", "ari"), "volume": ("vol",), "snapshot": ("snap",),
            "floatingip": ("eipalloc", "eipassoc"), "security_group": ("sg",), "subnet": ("subnet",)}  # an address's association id shares its number
_ID = re.compile(r"^(i|ami|aki|ari|vol|snap|eipalloc|eipassoc|sg|subnet)-([0-9a-f]{8,16})$")


def fmt(kind: str, number: int) -> str:
    return f"{PREFIX[kind]}-{number:08x}"


async def ec2_ids_for(engine: AsyncEngine, kind: str, uuids: list[str]) -> dict[str, str]:
    """uuid -> EC2 id, making the missing mappings (one transaction)."""
    if not uuids:
        return {}
    query = select(ec2_ids.c.uuid, ec2_ids.c.id).where(ec2_ids.c.uuid.in_(uuids))
    async with engine.connect() as conn:
        known = {r.uuid: int(r.id) for r in await conn.execute(query)}
    missing = [u for u in dict.fromkeys(uuids) if u not in known]
    if missing:
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(ec2_ids), [{"uuid": u, "kind": kind} for u in missing])
        except IntegrityError:
            pass  # a concurrent request mapped them first: read theirs
        async with engine.connect() as conn:
            known = {r.uuid: int(r.id) for r in await conn.execute(query)}
    return {u: fmt(kind, known[u]) for u in uuids}


async def ec2_id(engine: AsyncEngine, kind: str, uuid: str) -> str:
    return (await ec2_ids_for(engine, kind, [uuid]))[uuid]


async def uuid_of(engine: AsyncEngine, kind: str, ec2_id: str) -> str | None:
    """The uuid behind an EC2 id of this kind; None for malformed, unknown or other-kind ids."""
    m = _ID.match(ec2_id.strip().lower())
    if m is None or m.group(1) not in ACCEPTED[kind]:
        return None
    async with engine.connect() as conn:
        row = (await conn.execute(select(ec2_ids.c.uuid).where(
            and_(ec2_ids.c.id == int(m.group(2), 16), ec2_ids.c.kind == kind)))).first()
    return None if row is None else str(row.uuid)


async def caller_owned(engine: AsyncEngine, ctx: RequestContext, kind: str, ec2_id: str,
                       find: Callable[[str], Awaitable[tuple[Any, dict[str, Any]]]],
                       missing: type[errors.NotFound], not_found: str) -> dict[str, Any]:
    """The caller's record behind an EC2 id of `kind`, found by `find(uuid)` -> (cell, record), which raises
    `missing`; EC2's `not_found` code for any other id, another project's included (no leak of which)."""
    uuid = await uuid_of(engine, kind, ec2_id)
    if uuid is not None:
        try:
            _, record = await find(uuid)
            if record.get("project_id") == ctx.project:
                return record
        except missing:
            pass
    raise Ec2Error(not_found, f"The {kind} '{ec2_id}' does not exist.")
