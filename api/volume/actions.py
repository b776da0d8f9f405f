"""POST /volume/v3/{project_id}/volumes/{id}/action and /snapshots/{id}/action: Cinder's state actions.

Volume: os-reset_status, os-force_delete, os-force_detach (admin); os-reserve, os-unreserve, os-attach,
os-detach, os-begin_detaching, os-roll_detaching (what Nova calls around its own plug: records only, no
hot-plug; a server's volume is plugged through the compute API's os-volume_attachments);
os-update_readonly_flag; os-retype (to a type whose backend the volume's host has: this cloud never
migrates a volume, so a retype that would need one is a 400 whatever the migration_policy). Snapshot:
os-reset_status, os-force_delete (admin); os-update_snapshot_status (status and progress of a creating or
deleting snapshot, as a compute reports an assisted snapshot). Each answers 202 as Cinder's; the cell's conductor checks and
changes the state in one write unit (cells/conductor/flows/volume_states.py). The policy rule of each is
api/policy/routes.py VOLUME_ACTIONS / SNAPSHOT_ACTIONS, Cinder's names.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from api import quota
from api.http import is_uuid, parse_bool
from api.keys import DB, ROUTER
from api.volume import cells, types
from cells import errors
from cells.context import RequestContext
from cells.rpcapi.volume import VolumeConductorAPI

# Cinder action -> (the conductor's action, the keys its body may carry)
VOLUME_STATE_ACTIONS: dict[str, tuple[str, frozenset[str]]] = {
    "os-reset_status": ("reset_status", frozenset({"status", "attach_status", "migration_status"})),
    "os-force_delete": ("force_delete", frozenset()),
    "os-force_detach": ("force_detach", frozenset({"attachment_id", "connector"})),
    "os-reserve": ("reserve", frozenset()),
    "os-unreserve": ("unreserve", frozenset()),
    "os-attach": ("attach", frozenset({"instance_uuid", "mountpoint", "mode", "host_name"})),
    "os-detach": ("detach", frozenset({"attachment_id"})),
    "os-begin_detaching": ("begin_detaching", frozenset()),
    "os-roll_detaching": ("roll_detaching", frozenset()),
    "os-update_readonly_flag": ("update_readonly_flag", frozenset({"readonly"})),
    "os-retype": ("retype", frozenset({"new_type", "migration_policy"})),
}
SNAPSHOT_STATE_ACTIONS = {"os-reset_status": "reset_status", "os-force_delete": "force_delete",
                          "os-update_snapshot_status": "update_status"}
SNAPSHOT_ACTION_KEYS = {"os-reset_status": frozenset({"status"}), "os-force_delete": frozenset(),
                        "os-update_snapshot_status": frozenset({"status", "progress"})}
MIGRATION_POLICIES = ("never", "on-demand")


def _args(name: str, raw: Any, allowed_keys: frozenset[str]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise errors.Invalid(f"Invalid input received: {name} takes a map")
    unknown = sorted(set(raw) - allowed_keys)
    if unknown:
        raise errors.Invalid(f"Invalid input for {name}: unexpected attribute(s) {', '.join(map(str, unknown))}")
    return dict(raw)


def _boolean(value: Any, field: str) -> bool:
    parsed = value if isinstance(value, bool) else parse_bool(value) if isinstance(value, str) else None
    if parsed is None:
        raise errors.Invalid(f"Invalid value for '{field}': {value!r} (true or false)")
    return parsed


def _attachment_id(args: dict[str, Any]) -> None:
    value = args.get("attachment_id")
    if value is not None and not (isinstance(value, str) and is_uuid(value)):
        raise errors.Invalid(f"Invalid input received: attachment_id {value!r} is not a UUID")


async def _retype_args(request: web.Request, ctx: RequestContext, record: dict[str, Any],
                       args: dict[str, Any]) -> dict[str, Any]:
    """The new type resolved (404 unknown), the migration policy checked, the type's quotas checked (413)."""
    policy = args.get("migration_policy", "never")
    if policy not in MIGRATION_POLICIES:
        raise errors.Invalid(f"Invalid migration_policy {policy!r}: never or on-demand")
    if not isinstance(args.get("new_type"), str):
        raise errors.Invalid("Invalid input received: os-retype needs new_type")
    vtype = await types.resolve(request, ctx, args["new_type"])
    stored = None if vtype["id"] == types.DEFAULT_TYPE_ID else str(vtype["name"])
    if stored:  # the volume now counts against the new type's own quotas
        project = str(record["project_id"])
        listed, listed_ids, since = await cells.project_usage(request.config_dict[ROUTER], ctx, project)
        size = int(record["size"])
        await request.config_dict[DB].write(lambda conn: quota.check_type_move(
            conn, project, stored, size, listed, listed_ids, since))
    return {"volume_type": stored, "volume_backend_name": (vtype.get("extra_specs") or {}).get(types.BACKEND_KEY)}


async def volume_action(request: web.Request, ctx: RequestContext, api: VolumeConductorAPI,
                        record: dict[str, Any], name: str, raw: Any) -> web.Response:
    """One of VOLUME_STATE_ACTIONS on the volume found: 202."""
    action, keys = VOLUME_STATE_ACTIONS[name]
    args = _args(name, raw, keys)
    if name == "os-update_readonly_flag":
        args = {"readonly": _boolean(args.get("readonly"), "readonly")}
    elif name in ("os-detach", "os-force_detach"):
        _attachment_id(args)
        args.pop("connector", None)
    elif name == "os-retype":
        args = await _retype_args(request, ctx, record, args)
    elif name == "os-reset_status":
        args.pop("migration_status", None)  # no volume migrates here: nothing to reset
    await api.volume_action(ctx, record["id"], action, args)
    return web.Response(status=202)


async def snapshot_action(request: web.Request, ctx: RequestContext, api: VolumeConductorAPI,
                          record: dict[str, Any], body: Any) -> web.Response:
    if not isinstance(body, Mapping) or len(body) != 1:
        raise errors.Invalid("Invalid input received: one snapshot action per request")
    name, raw = next(iter(body.items()))
    if name not in SNAPSHOT_STATE_ACTIONS:
        raise errors.Invalid(f"Invalid input received: snapshot action {name!r} is not supported by this cloud")
    args = _args(name, raw, SNAPSHOT_ACTION_KEYS[name])
    await api.snapshot_action(ctx, record["id"], SNAPSHOT_STATE_ACTIONS[name], args)
    return web.Response(status=202)
