"""Per-project limits of network resources, checked in the write that creates one.

The API holds the limits (API DB, Neutron's defaults below) and sends the one that
applies with each create: {"project", "limit"}. The controller inserts the record and
then counts the owner's rows of that kind in the same unit of work; over the limit,
the unit fails and rolls back, so no interleaving of concurrent creates can pass the
limit (the cell DB's writers are serialized; each unit sees the ones before it).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, select

from cells import errors
from cells.db.fast import Fast
from cells.network.schema import (
    floatingips,
    networks,
    ports,
    routers,
    security_group_rules,
    security_groups,
    subnets,
)

# Neutron's default quotas (neutron/conf/quota.py)
DEFAULTS: dict[str, int] = {"network": 100, "subnet": 100, "port": 500, "security_group": 10,
                            "security_group_rule": 100, "router": 10, "floatingip": 50}
TABLES: dict[str, Table] = {"network": networks, "subnet": subnets, "port": ports,
                            "security_group": security_groups, "security_group_rule": security_group_rules,
                            "router": routers, "floatingip": floatingips}


def parse(quota: Any) -> int | None:
    """The limit the API sent, None when none applies (-1: unlimited)."""
    if quota is None:
        return None
    if not isinstance(quota, dict) or isinstance(quota.get("limit"), bool) or not isinstance(quota.get("limit"), int):
        raise errors.Invalid(reason="quota must be {project, limit}")
    limit = int(quota["limit"])
    return None if limit < 0 else limit


# built once per kind: a boot counts its project's ports on every allocation
_COUNTS = {kind: Fast(select(func.count()).select_from(table).where(table.c.project_id == bindparam("b_project")))
           for kind, table in TABLES.items()}


def used(conn: Connection, resource: str, project: str) -> int:
    return int(_COUNTS[resource].scalar(conn, {"b_project": project}) or 0)


def check_after_insert(conn: Connection, resource: str, project: str, limit: int | None) -> None:
    """Inside the creating unit of work, after the insert: OverQuota (the unit rolls back) when the
    owner now holds more than `limit`."""
    if limit is not None and used(conn, resource, project) > limit:
        raise errors.OverQuota(resource=resource)
