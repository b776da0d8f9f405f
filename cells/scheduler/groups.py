"""The server group of a placement request, and the hosts its peers hold.

A boot's request spec names the group the API accepted the server into:
`"group": {"uuid": ..., "policy": "affinity" | "anti-affinity"}`. A move's
names the instance that moves (`"instance_uuid"`): its group is the one its
claim was made for (cells/db/groups.py). The scheduler reads the peers' hosts
once to filter candidates; the claim transaction checks the policy again
under the group's lock, which is what makes it race-free.
"""
from __future__ import annotations

import uuid as uuidlib
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.db import groups
from cells.db.groups import GroupClaim


def from_spec(request_spec: Mapping[str, Any]) -> GroupClaim | None:
    """The group a boot's request spec names, validated (Invalid when malformed)."""
    value = request_spec.get("group")
    if value is None:
        return None
    if not isinstance(value, Mapping) or not {"uuid", "policy"} <= set(value) <= {"uuid", "policy", "max_per_host"}:
        raise errors.Invalid(reason="request_spec group must be a map of uuid, policy and max_per_host")
    try:
        group_uuid = str(uuidlib.UUID(str(value["uuid"])))
    except ValueError:
        raise errors.Invalid(reason=f"server group uuid {value['uuid']!r} is not a UUID") from None
    max_per_host = value.get("max_per_host", 1)
    if not isinstance(max_per_host, int) or isinstance(max_per_host, bool):
        raise errors.Invalid(reason="server group max_per_host must be an integer")
    return GroupClaim(group_uuid, str(value["policy"]), max_per_host=max_per_host)


def resolve(conn: Connection, request_spec: Mapping[str, Any], group: GroupClaim | None,
            consumers: Iterable[str]) -> tuple[GroupClaim | None, Counter[str]]:
    """(the request's group, the hosts its members other than `consumers` hold claims on)."""
    moving = request_spec.get("instance_uuid")
    if group is None and isinstance(moving, str):
        group = groups.group_of(conn, moving)
    if group is None:
        return None, Counter()
    return group, groups.peer_hosts(conn, group, consumers)
