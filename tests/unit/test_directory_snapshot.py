"""The directory's replies (cells/rpc/directory.py): a heartbeat after a change gets the whole table,
built once per version (issue 21: converting every member for every beat made the router's CPU grow
with the square of the cell); `table` (cellctl status) adds each member's age."""
from __future__ import annotations

import asyncio

from cells.context import RequestContext
from cells.rpc.directory import Directory, Member


def _member(i: int, **meta: str) -> Member:
    return Member(id=f"cell1/compute/h{i}", address=f"tcp://127.0.0.1:{20000 + i}", topics=(f"compute.h{i}",),
                  host=f"h{i}", service="compute", meta=dict(meta))


def test_beats_share_the_versions_member_list_and_see_every_change() -> None:
    async def main() -> None:
        d, ctx = Directory(1.0), RequestContext()
        for i in range(3):
            await d.heartbeat(ctx, _member(i).to_wire(), -1)
        first = await d.heartbeat(ctx, _member(0).to_wire(), -1)
        second = await d.heartbeat(ctx, _member(1).to_wire(), -1)
        assert first["members"] is second["members"]  # one list for the version, not one per beat
        assert sorted(m["id"] for m in first["members"]) == [f"cell1/compute/h{i}" for i in range(3)]
        assert all("age" not in m for m in first["members"])
        assert await d.heartbeat(ctx, _member(1).to_wire(), first["version"]) == {"version": first["version"]}
        changed = await d.heartbeat(ctx, _member(2, health="stuck").to_wire(), first["version"])
        assert changed["version"] != first["version"]
        assert {m["id"]: m["meta"] for m in changed["members"]}["cell1/compute/h2"] == {"health": "stuck"}
        table = await d.table(ctx)
        assert all(isinstance(m["age"], float) for m in table["members"])
        assert all("age" not in m for m in changed["members"])  # the cached list is not written into
    asyncio.run(main())
