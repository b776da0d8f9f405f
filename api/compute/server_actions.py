"""POST /compute/v2.1/servers/{server_id}/action: Nova's server actions.

    {"os-stop": null}  {"os-start": null}  {"reboot": {"type": "SOFT" | "HARD"}}
    {"pause": null}  {"unpause": null}  {"suspend": null}  {"resume": null}
    {"rebuild": {"imageRef": ..., "name"?, "metadata"?, "adminPass"?}}      202 + the server
    {"os-getConsoleOutput": {"length": N}}                                   200 {"output": ...}
    {"os-getSerialConsole": {"type": "serial"}}  200 {"console": {"type", "url"}}  api/compute/remote_consoles.py
    {"addSecurityGroup": {"name": G}}  {"removeSecurityGroup": {"name": G}}  api/compute/security_groups.py
    {"lock": null | {"locked_reason": R}}  {"unlock": null}                  202; the reason from 2.73
    {"os-resetState": {"state": "active" | "error"}}  202 (admin)
    {"createImage": {"name": N, "metadata"?}}   202, Location: the image (2.45: {"image_id"} instead)
    {"createBackup": {"name", "backup_type", "rotation", "metadata"?}}   api/compute/server_backups.py
    {"rescue": ...}  {"unrescue": null}          api/compute/rescue.py
    {"restore": null}  {"forceDelete": null}     api/compute/deferred_delete.py (soft delete: reclaim_instance_interval)
    {"shelve": null}  {"shelveOffload": null}  {"unshelve": ...}   api/compute/shelve.py
    {"injectNetworkInfo": null}  {"resetNetwork": null}   api/compute/admin_actions.py (admin)
    {"addFloatingIp": {"address"}}  {"removeFloatingIp": {"address"}}   api/compute/floating_ips.py (to 2.43)

The power actions answer 202 at once: the server shows its task state
(REBOOT, HARD_REBOOT, REBUILD, or ACTIVE/SHUTOFF with a task) until the compute
host has done it. An action that does not fit the server's state is a 409 with
Nova's message ("Cannot 'stop' instance <id> while it is in vm_state stopped").
"""
from __future__ import annotations

import copy
import functools
from typing import Any

from aiohttp import web

from api import quota
from api.compute import (
    admin_actions,
    deferred_delete,
    floating_ips,
    keypairs,
    mappings,
    move_actions,
    remote_consoles,
    rescue,
    security_groups,
    server_backups,
    server_snapshots,
    service,
    shelve,
)
from api.compute.microversions import Microversion
from api.compute.schemas import DESCRIPTION, NAME, SERVER_CREATE, hostname_schema
from api.compute.server_create import server_admin_pass
from api.compute.views import server_updated
from api.http import allowed, authorize, context, id_from_href, is_uuid, json_body
from api.image import images as image_db
from api.keys import public_url
from api.validation import validate
from cells import errors
from cells.context import RequestContext
from cells.objects.records import shown

_NULL_OR_EMPTY = {"type": ["null", "object"], "properties": {}, "additionalProperties": False}
# body key -> Cellcloud action (cells/lifecycle.py USER_ACTIONS) for the actions without arguments
SIMPLE = {"os-stop": "stop", "os-start": "start", "pause": "pause", "unpause": "unpause", "suspend": "suspend",
          "resume": "resume"}
REBOOT = {"type": "object", "required": ["type"], "additionalProperties": False,
          "properties": {"type": {"type": "string",
                                  "enum": ["HARD", "Hard", "hard", "SOFT", "Soft", "soft"]}}}
# Nova validates the lock body only from 2.73, where locked_reason came (before it, the body is ignored)
LOCK = {"type": ["object", "null"], "additionalProperties": False,
        "properties": {"locked_reason": {"type": "string", "minLength": 1, "maxLength": 255}}}
LOCK_REASON_VERSION = (2, 73)
RESET_STATE = {"type": "object", "required": ["state"], "additionalProperties": False,
               "properties": {"state": {"type": "string", "enum": ["active", "error"]}}}
CONSOLE = {"type": ["object", "null"], "additionalProperties": False,
           "properties": {"length": {"type": ["integer", "string", "null"]}}}
_SERVER = SERVER_CREATE["properties"]["server"]["properties"]
CREATE_IMAGE = {"type": "object", "required": ["name"], "additionalProperties": False,
                "properties": {"name": NAME, "metadata": _SERVER["metadata"]}}
IMAGE_ID_BODY_VERSION = (2, 45)  # createImage answers {"image_id"} and no Location header from 2.45
# Nova 2.1's rebuild: metadata and personality as at create (keys 1-255, values up to 255: 400; more
# items or files than the project's quota: 403)
REBUILD = {"type": "object", "required": ["imageRef"], "additionalProperties": False,
           "properties": {"imageRef": {"type": "string", "minLength": 1}, "name": NAME,
                          "metadata": _SERVER["metadata"], "personality": _SERVER["personality"],
                          "adminPass": {"type": "string"}, "accessIPv4": _SERVER["accessIPv4"],
                          "accessIPv6": _SERVER["accessIPv6"], "OS-DCF:diskConfig": _SERVER["OS-DCF:diskConfig"],
                          "preserve_ephemeral": {"type": "boolean"}}}


@functools.cache
def rebuild_schema(version: Microversion) -> dict[str, Any]:
    """Nova's rebuild body at `version`: 2.19 description, 2.54 key_name (null: none), 2.57 user_data
    (null: none) and no personality, 2.90 hostname."""
    schema: dict[str, Any] = copy.deepcopy(REBUILD)
    props: dict[str, Any] = schema["properties"]
    if version >= (2, 19):
        props["description"] = DESCRIPTION
    if version >= (2, 54):
        props["key_name"] = {"oneOf": [NAME, {"type": "null"}]}
    if version >= (2, 57):
        del props["personality"]
        props["user_data"] = {"oneOf": [_SERVER["user_data"], {"type": "null"}]}
    if version >= (2, 90):
        props["hostname"] = hostname_schema(version)
    return schema


def _one_action(body: Any) -> tuple[str, Any]:
    if not isinstance(body, dict) or len(body) != 1:
        raise errors.Invalid("The action body must name exactly one action.")
    return next(iter(body.items()))


def console_length(value: Any) -> int | None:
    """Nova's length: an integer or a string of one (-1 or absent: the whole log)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("-").isdigit():
            raise errors.Invalid(f"Invalid input for field/attribute length. Value: {value}. "
                                 f"'{value}' does not match '^-?[0-9]+$'")
        value = int(text)
    if value < -1:
        raise errors.Invalid(f"Invalid input for field/attribute length. Value: {value}. "
                             f"{value} is less than the minimum of -1")
    return None if value == -1 else int(value)


async def _rebuild_args(cc: service.ComputeContext, ctx: RequestContext, project: str,
                        spec: dict[str, Any]) -> dict[str, Any]:
    ref = id_from_href(spec["imageRef"])
    if not is_uuid(ref):
        raise errors.Invalid("Invalid imageRef provided.")
    async with cc.engine.connect() as conn:
        limits = await quota.limits_in(conn, project)
        quota.check_metadata(limits, len(spec.get("metadata") or {}))
        quota.check_injected_files(limits, spec.get("personality") or [])
        try:
            image = await image_db.get(conn, ctx, ref)
            if image.status != "active":
                raise errors.Invalid(f"Image {image.id} is not active.")
            boot_image = await conn.run_sync(image_db.boot_snapshot_of, ctx, image)
        except errors.ImageNotFound as exc:
            raise errors.Invalid(exc.message) from None
    args: dict[str, Any] = {"image": boot_image}
    if "name" in spec:
        args["name"] = spec["name"]
    if "metadata" in spec:
        args["metadata"] = dict(spec["metadata"])
    if "key_name" in spec:  # 2.54: the caller's key pair (400 for one it does not have), or none
        args["key_name"] = args["key_data"] = None
        if spec["key_name"] is not None:
            try:
                pair = await keypairs.get(cc.engine, str(ctx.user), spec["key_name"])
            except keypairs.KeypairNotFound:
                raise errors.Invalid("Invalid key_name provided.") from None
            args["key_name"], args["key_data"] = pair.name, pair.public_key.strip()
    if "user_data" in spec:  # 2.57
        args["user_data"] = spec["user_data"]
    return args


async def server_action(request: web.Request) -> web.Response:
    ctx = context(request)
    server_id = request.match_info["server_id"]
    name, spec = _one_action(await json_body(request))
    cc = service.ComputeContext.of(request)
    if name in SIMPLE:
        validate(_NULL_OR_EMPTY, spec, name)
        await service.act(cc, ctx, server_id, SIMPLE[name])
        return web.Response(status=202)
    if name == "reboot":
        validate(REBOOT, spec, "reboot")
        await service.act(cc, ctx, server_id, "reboot_hard" if spec["type"].upper() == "HARD" else "reboot")
        return web.Response(status=202)
    if name == "lock":
        reason = None
        if cc.at_least(*LOCK_REASON_VERSION):
            validate(LOCK, spec, name)
            reason = (spec or {}).get("locked_reason")
        await service.lock(cc, ctx, server_id, reason)
        return web.Response(status=202)
    if name == "unlock":
        await service.unlock(cc, ctx, server_id)
        return web.Response(status=202)
    if name == "os-resetState":
        authorize(request, "os_compute_api:os-admin-actions:reset_state")  # before the body, as Nova
        validate(RESET_STATE, spec, name)
        await service.reset_state(cc, ctx, server_id, spec["state"])
        return web.Response(status=202)
    if name == "createImage":
        validate(CREATE_IMAGE, spec, name)
        image_id = await service.create_image(cc, ctx, request.config_dict[server_snapshots.SNAPSHOTS], server_id,
                                              spec["name"], dict(spec.get("metadata") or {}))
        if cc.at_least(*IMAGE_ID_BODY_VERSION):
            return web.json_response({"image_id": image_id}, status=202)
        return web.Response(status=202, headers={"Location": f"{public_url(request)}/image/v2/images/{image_id}"})
    if name == "os-getConsoleOutput":
        validate(CONSOLE, spec, name)
        length = console_length((spec or {}).get("length"))
        return web.json_response({"output": await service.console_output(cc, ctx, server_id, length)})
    if name == "rebuild":
        validate(rebuild_schema(cc.version), spec, "rebuild")
        mapping = await mappings.get(cc.db, ctx, server_id)  # the owner's quota bounds the new metadata
        args = await _rebuild_args(cc, ctx, str(mapping.project_id), spec)
        record = await service.act(cc, ctx, server_id, "rebuild", args)
        if "description" in spec:  # 2.19
            await mappings.set_attributes(cc.db, record["uuid"], {"description": spec["description"]})
        if "hostname" in spec:  # 2.90
            await mappings.set_attributes(cc.db, record["uuid"], {"hostname": spec["hostname"]})
        viewed = shown(record)
        await service.for_views(cc, ctx, [viewed], show=True)
        body = server_updated(public_url(request), viewed, allowed(request, "os_compute_api:os-extended-server-attributes"),
                              cc.version, rebuilt=True)
        body["adminPass"] = server_admin_pass(spec)
        return web.json_response({"server": body}, status=202)
    if name in move_actions.ACTIONS:  # resize, confirm/revert, migrate, evacuate (issue 8)
        return await move_actions.move_action(cc, ctx, server_id, name, spec)
    if name in server_backups.ACTIONS:  # createBackup (issue 16)
        return await server_backups.backup_action(request, ctx, server_id, spec)
    if name in rescue.ACTIONS:  # rescue, unrescue (issue 16)
        return await rescue.rescue_action(request, ctx, server_id, name, spec)
    if name in shelve.ACTIONS:  # shelve, shelveOffload, unshelve (issue 16)
        return await shelve.action(request, cc, ctx, server_id, name, spec)
    if name in deferred_delete.ACTIONS:  # restore, forceDelete (issue 16)
        return await deferred_delete.deferred_action(request, ctx, server_id, name, spec)
    if name in remote_consoles.ACTIONS:  # the legacy console actions (issue 16)
        return await remote_consoles.action(request, server_id, name, spec)
    if name in admin_actions.ACTIONS:  # injectNetworkInfo, resetNetwork (issue 16)
        return await admin_actions.admin_action(request, ctx, server_id, name, spec)
    if name in floating_ips.ACTIONS:  # addFloatingIp, removeFloatingIp (Nova's proxy of Neutron's, to 2.43)
        return await floating_ips.action(request, ctx, server_id, name, spec)
    if name in security_groups.ACTIONS:  # addSecurityGroup, removeSecurityGroup (issue 5)
        await service.change_security_group(cc, ctx, server_id, security_groups.group_name(spec),
                                            add=name == "addSecurityGroup")
        return web.Response(status=202)
    raise errors.Invalid(f"There is no such action: {name}")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v2.1/servers/{server_id}/action", server_action)
