"""Who is calling: the principal behind each CURVE key, and what each may do.

Every key of the cluster's key table (cluster.json: one per service, plus the
operator's) belongs to one principal: `api`, `router@cell`, `conductor@cell`,
`scheduler@cell`, `network@cell`, `compute@host`, `volume@host`, `operator`. The
ZAP handler (cells/rpc/security.py) maps the key of each connection to its
principal; the server reads it from each message (zmq's User-Id), never from
the envelope, and checks it against the method's declared callers
(`Method.callers`, cells/rpc/wire.py).

Plaintext dev mode (`security: {curve: false}`) has no keys and so no
principal: the server then trusts every peer and says so loudly at start.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cells import errors

if TYPE_CHECKING:
    from cells.config import ClusterConfig
    from cells.context import RequestContext

API, OPERATOR = "api", "operator"
ROUTER, CONDUCTOR, SCHEDULER, NETWORK = "router", "conductor", "scheduler", "network"
COMPUTE, VOLUME = "compute", "volume"
KINDS = frozenset({API, OPERATOR, ROUTER, CONDUCTOR, SCHEDULER, NETWORK, COMPUTE, VOLUME})
# a host's workers speak for their own host only (compute@host, volume@host)
HOST_KINDS = frozenset({COMPUTE, VOLUME})
# who may assert a user's request context (project, user, roles): the API, which authenticated the
# user, and the operator; a cell's control services forward only the context the API gave them (the
# router relays it hop by hop) and own their cell's DB, so a role they forge gains them nothing.
# A host's workers assert only that they are a service (see `effective_context`).
CARRIES_USER_CONTEXT = frozenset({API, OPERATOR, ROUTER, CONDUCTOR, SCHEDULER, NETWORK})


@dataclass(frozen=True)
class Principal:
    kind: str
    id: str  # its service id in cluster.json ("cell1/compute/node1", "api", "operator")
    host: str = ""
    cell: str | None = None

    @property
    def name(self) -> str:
        """How logs and errors name it: compute@node1, conductor@cell1, api, operator."""
        if self.kind in HOST_KINDS:
            return f"{self.kind}@{self.host}"
        return f"{self.kind}@{self.cell}" if self.cell else self.kind


def principals_of(cluster: ClusterConfig) -> dict[str, Principal]:
    """public key (z85) -> principal, for every key of the cluster's key table."""
    table = {s.public_key: Principal(s.kind, s.id, s.host, s.cell) for s in cluster.services if s.public_key}
    if cluster.operator_key:
        table[cluster.operator_key] = Principal(OPERATOR, OPERATOR)
    return table


def callers(*kinds: str) -> frozenset[str]:
    """A method's allowed principal kinds. The operator may call every method; one that only the
    operator calls (cellctl) declares OPERATOR alone."""
    unknown = set(kinds) - KINDS
    if unknown:
        raise ValueError(f"unknown principal kind(s) {sorted(unknown)}")
    return frozenset(kinds)


def _adjacent(a: str, b: str) -> bool:
    """One cell is the parent of the other (a router relays down, heartbeats up)."""
    return a.rpartition("!")[0] == b or b.rpartition("!")[0] == a


def may_call(principal: Principal, allowed: Iterable[str], server_cell: str | None) -> bool:
    """`principal` may call a method declared for `allowed` on a server of `server_cell`.

    A cell's principals call only their own cell's servers (a router also its parent's and
    children's). A router calls nothing of its own beyond the directories: anything else it
    sends is a relay of what the API (or a parent router) asked it (cells/router_service.py), so
    it may call what the API may."""
    if principal.kind == OPERATOR:
        return True
    if (server_cell is not None and principal.cell is not None and principal.cell != server_cell
            and not (principal.kind == ROUTER and _adjacent(principal.cell, server_cell))):
        return False
    kinds = frozenset(allowed)
    return principal.kind in kinds or (principal.kind == ROUTER and API in kinds)


def effective_context(ctx: RequestContext, principal: Principal | None) -> RequestContext:
    """The context a handler sees: the principal stamped on it; from a host's worker, no user,
    project or roles beyond `service` (whatever its envelope claimed)."""
    if principal is None or principal.kind in CARRIES_USER_CONTEXT:
        return dataclasses.replace(ctx, principal=principal)
    return dataclasses.replace(ctx, project=None, user=principal.name, roles=("service",), principal=principal)


def require_host(ctx: RequestContext, host: object, what: str) -> None:
    """A host's worker speaks for its own host only: refuse `what` about another host."""
    p = ctx.principal
    if p is not None and p.kind in HOST_KINDS and p.host != host:
        raise errors.RpcForbidden(principal=p.name, method=what, reason=f"not for host {host!r}")


def host_worker(ctx: RequestContext) -> Principal | None:
    """The calling host worker (compute@host, volume@host), None for any other caller."""
    p = ctx.principal
    return p if p is not None and p.kind in HOST_KINDS else None
