"""Server moves through POST /compute/v2.1/servers/{id}/action (Nova's bodies):

    {"resize": {"flavorRef": "2"}}   202; the server goes RESIZE, then VERIFY_RESIZE
    {"confirmResize": null}          204; ACTIVE (or SHUTOFF) on the new flavor and host
    {"revertResize": null}           202; back to the old flavor and host
    {"migrate": null}                202 (admin); another host of the cell, then VERIFY_RESIZE
    {"evacuate": {...}}              200 (admin) {"adminPass"?}; only when the server's host is dead (silent past dead_after, or cellctl host down)

A resize counts the new flavor against the project's cores and ram quota at once (403 when
the increase does not fit; api/quota.py admit_resize). Bad flavors are 400 (same flavor, smaller disk, unknown), a state that does not fit 409
(confirm/revert with no resize pending, a busy server), a compute host not down for
evacuate 400, a non-admin migrate or evacuate 403. Each step shows in `server event list`.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.compute import service
from api.compute.flavors import flavor_dict, get_flavor
from api.http import id_from_href
from api.policy.enforce import require
from api.validation import validate
from cells import errors
from cells.context import RequestContext

ACTIONS = ("resize", "confirmResize", "revertResize", "migrate", "evacuate")
_NULL_OR_EMPTY = {"type": ["null", "object"], "additionalProperties": True}
RESIZE = {"type": "object", "required": ["flavorRef"], "additionalProperties": True,
          "properties": {"flavorRef": {"type": ["string", "integer"], "minLength": 1},
                         "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]}}}
EVACUATE = {"type": ["object", "null"], "additionalProperties": False,
            "properties": {"host": {"type": "string"}, "adminPass": {"type": "string"},
                           "onSharedStorage": {"type": ["boolean", "string"]}}}


async def move_action(cc: service.ComputeContext, ctx: RequestContext, server_id: str, name: str,
                      spec: Any) -> web.Response:
    """One of ACTIONS on the server, its body checked; the response Nova gives."""
    if name == "resize":
        validate(RESIZE, spec, "resize")
        try:
            flavor = await get_flavor(cc.engine, ctx, id_from_href(str(spec["flavorRef"])))
        except errors.FlavorNotFound:
            raise errors.Invalid("Invalid flavorRef provided.") from None
        await service.resize(cc, ctx, server_id, flavor_dict(flavor))
        return web.Response(status=202)
    if name in ("confirmResize", "revertResize"):
        validate(_NULL_OR_EMPTY, spec, name)
        if name == "confirmResize":
            await service.confirm_resize(cc, ctx, server_id)
            return web.Response(status=204)
        await service.revert_resize(cc, ctx, server_id)
        return web.Response(status=202)
    if name == "migrate":
        validate(_NULL_OR_EMPTY, spec, name)
        require(ctx, "os_compute_api:os-migrate-server:migrate")
        if isinstance(spec, dict) and spec.get("host"):
            raise errors.Invalid("Choosing the destination host of a migration is not supported; "
                                 "the scheduler picks one.")
        await service.migrate(cc, ctx, server_id)
        return web.Response(status=202)
    validate(EVACUATE, spec, name)
    require(ctx, "os_compute_api:os-evacuate")
    if isinstance(spec, dict) and spec.get("host"):
        raise errors.Invalid("Choosing the destination host of an evacuation is not supported; "
                             "the scheduler picks one.")
    await service.evacuate(cc, ctx, server_id)
    body = {"adminPass": spec["adminPass"]} if isinstance(spec, dict) and spec.get("adminPass") else {}
    return web.json_response(body, status=200)
