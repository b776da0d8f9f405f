"""The request context that travels with every RPC (and its deadline)."""
from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cells.rpc.principal import Principal

# the role of the credential compute hosts fetch images with (api/bootstrap.py cellcloud-image-reader):
# show and download any image, nothing else (api/middleware.py token_auth)
IMAGE_READER = "image_reader"


def new_request_id() -> str:
    return "req-" + str(uuid.uuid4())


class PolicyCheck(Protocol):
    """The API's policy engine (api/policy/enforce.py Policy), as a context asks it."""

    def check(self, rule: str, ctx: RequestContext, target: Mapping[str, Any] | None = None) -> bool: ...


@dataclass(frozen=True)
class RequestContext:
    request_id: str = field(default_factory=new_request_id)
    project: str | None = None
    user: str | None = None
    roles: tuple[str, ...] = ()
    deadline: float | None = None  # absolute time.time(); None = caller's timeout decides
    # the admin role makes a cloud administrator only from the admin project or system scope (api/policy):
    # a token scoped to any other project says False, so "admin" there is that project's admin only
    is_admin_project: bool = True
    system_scope: bool = False
    # who sent it, from its CURVE key (set by the RPC server, never from the wire): None in-process,
    # in plaintext dev mode, and for requests this process makes
    principal: Principal | None = field(default=None, compare=False)
    # the API's policy engine, set where the API turns a credential into this context (never on the wire)
    policy: PolicyCheck | None = field(default=None, compare=False, repr=False)

    @property
    def is_admin(self) -> bool:
        """A cloud administrator: the API's `context_is_admin` rule where the context carries the API's engine
        (an operator's policy.yaml may redefine it), else the default's meaning (the cells have no engine)."""
        if self.policy is not None:
            return self.policy.check("context_is_admin", self, {})
        return "admin" in self.roles and (self.is_admin_project or self.system_scope)

    def allows(self, rule: str, target: Mapping[str, Any]) -> bool:
        """Whether the policy rule named `rule` lets this caller act on `target` (api/policy/rules.py). A context
        without the API's engine (made in a cell, or by the API for itself) answers as the admin rules'
        default: a cloud administrator only."""
        if self.policy is None:
            return self.is_admin
        return self.policy.check(rule, self, target)

    @property
    def is_image_reader_only(self) -> bool:
        """The compute hosts' credential (IMAGE_READER): it reads any image and does nothing else."""
        return IMAGE_READER in self.roles and not self.is_admin

    def with_timeout(self, seconds: float) -> RequestContext:
        """Keep the tighter of the existing deadline and now+seconds."""
        new = time.time() + seconds
        if self.deadline is not None and self.deadline < new:
            return self
        return replace(self, deadline=new)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def to_wire(self) -> dict[str, Any]:
        # the cells judge admin without the API's engine (is_admin's default meaning): an API context sends the
        # engine's verdict as is_admin_project, so an override of context_is_admin (the legacy "role:admin")
        # holds in the cells' own checks too. The cells still ask for the admin role: an override granting
        # cloud admin to another role reaches the API's checks only
        admin_project = self.is_admin_project or (self.policy is not None and self.is_admin)
        return {"request_id": self.request_id, "project": self.project, "user": self.user,
                "roles": list(self.roles), "deadline": self.deadline, "is_admin_project": admin_project,
                "system_scope": self.system_scope}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> RequestContext:
        return cls(request_id=d.get("request_id") or new_request_id(), project=d.get("project"),
                   user=d.get("user"), roles=tuple(d.get("roles") or ()), deadline=d.get("deadline"),
                   # a peer from before these keys sent only admin-project admins as admins
                   is_admin_project=bool(d.get("is_admin_project", True)), system_scope=bool(d.get("system_scope")))


def admin_context() -> RequestContext:
    return RequestContext(project=None, user="cellcloud-service", roles=("admin", "service"))
