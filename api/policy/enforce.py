"""The policy engine the handlers ask: rules by name (api/policy/rules.py), overridden by the
operator's `<state>/policy.yaml`, evaluated against the caller's credentials and the target.

The override file is read at start and again when it changes (its mtime is looked at no more
than once a second), so an operator's edit takes effect without a restart. A file that does not
parse, or a rule that names a rule that does not exist, is refused with the reason logged and the
previous rules kept: a typo never opens the cloud (nor shuts it).
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from api.policy import rules as default_rules
from api.policy.engine import PolicyError, evaluate, parse, referenced_rules
from cells import errors
from cells.context import RequestContext

LOG = logging.getLogger(__name__)
POLICY_FILE = "policy.yaml"
RECHECK_EVERY = 1.0  # seconds between looks at the override file's mtime


def load_overrides(path: Path) -> dict[str, str]:
    """The operator's rules from `path` ({} when there is no file); PolicyError when malformed."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path} is not YAML: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise PolicyError(f"{path} must map rule names to rule strings")
    return dict(data)


def merged(overrides: Mapping[str, str]) -> dict[str, str]:
    """Defaults with `overrides` applied, every rule parsed and every rule:NAME resolvable."""
    effective = {**default_rules.defaults(), **overrides}
    for name, text in effective.items():
        parse(text)
        missing = referenced_rules(text) - set(effective)
        if missing:
            raise PolicyError(f"rule {name} refers to undefined rule(s) {', '.join(sorted(missing))}")
    return effective


def credentials(ctx: RequestContext) -> dict[str, Any]:
    return {"roles": ctx.roles, "project_id": ctx.project, "user_id": ctx.user,
            "is_admin_project": ctx.is_admin_project, "system_scope": "all" if ctx.system_scope else None}


def denied_message(rule: str) -> str:
    """Each service's words for a policy refusal."""
    if rule.startswith("identity:"):
        return f"You are not authorized to perform the requested action: {rule}."
    if rule.startswith(("os_compute_api:", "volume", "compute_extension:")) or ":" in rule:
        return f"Policy doesn't allow {rule} to be performed."
    return f"You are not authorized to complete {rule} action."


def require(ctx: RequestContext, rule: str) -> None:
    """authorize() for code that holds the caller's context and no request (the compute service layer):
    the context's own policy engine, its project and user as the target; 403 in the service's words."""
    if not ctx.allows(rule, {}):
        raise errors.Forbidden(denied_message(rule))


class Policy:
    def __init__(self, state_dir: str | os.PathLike[str] | None) -> None:
        self.path = Path(state_dir) / POLICY_FILE if state_dir else None
        self._rules = default_rules.defaults()
        self._mtime: float | None = None
        self._checked = 0.0
        self.reload()

    @property
    def rules(self) -> dict[str, str]:
        return dict(self._rules)

    def reload(self) -> None:
        """Read the override file again if it changed since the last read."""
        self._checked = time.monotonic()
        if self.path is None:
            return
        try:
            mtime: float | None = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return
        try:
            self._rules = merged(load_overrides(self.path))
            self._mtime = mtime
            if mtime is not None:
                LOG.info("policy overrides loaded from %s", self.path)
        except PolicyError as exc:
            LOG.error("policy file refused, previous rules kept: %s", exc)
            self._mtime = mtime  # not re-read until it changes again

    def allowed(self, rule: str, creds: Mapping[str, Any], target: Mapping[str, Any] | None = None) -> bool:
        if time.monotonic() - self._checked > RECHECK_EVERY:
            self.reload()
        text = self._rules.get(rule)
        if text is None:
            raise PolicyError(f"no policy rule named {rule}")  # a handler's bug: fail closed and loudly
        return evaluate(parse(text), creds, target or {}, self._rules)

    def enforce(self, rule: str, creds: Mapping[str, Any], target: Mapping[str, Any] | None = None) -> None:
        """Forbidden (403, in the service's words) unless `rule` allows the caller on `target`."""
        if not self.allowed(rule, creds, target):
            raise errors.Forbidden(denied_message(rule))

    def check(self, rule: str, ctx: RequestContext, target: Mapping[str, Any] | None = None) -> bool:
        """allowed() for a request context, with the context's project as the default target."""
        return self.allowed(rule, credentials(ctx), {"project_id": ctx.project, "user_id": ctx.user,
                                                     **(target or {})})

    def authorize(self, rule: str, ctx: RequestContext, target: Mapping[str, Any] | None = None) -> None:
        if not self.check(rule, ctx, target):
            raise errors.Forbidden(denied_message(rule))
