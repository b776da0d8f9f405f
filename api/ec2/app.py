"""/ec2: the EC2 Query API (form-encoded POST, SigV4-signed with OS-EC2 credentials, XML answers).

validate (form, Action, Version) -> authenticate (SigV4 against the stored
secret; the credential's user and project, with that user's current roles on
the project) -> dispatch to api/ec2/query_actions.py (volumes: api/ec2/ebs_actions.py, snapshots: api/ec2/snapshot_actions.py). Every failure is EC2's error
XML; an unexpected one is logged and answered InternalError, never a traceback.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy import select

from api.db.schema import projects
from api.ec2 import (
    address_actions,
    ebs_actions,
    security_group_actions,
    sigv4,
    snapshot_actions,
    subnet_actions,
    xml,
)
from api.ec2.errors import Ec2Error, from_cellcloud
from api.ec2.query_actions import ACTIONS
from api.identity import ec2creds
from api.identity.tokens import ADMIN_PROJECT, TokenService
from api.keys import CONTEXT, ENGINE, POLICY, REQUEST_ID
from cells import errors
from cells.context import RequestContext, new_request_id

LOG = logging.getLogger(__name__)
MAX_BODY = 1 << 20


async def _form(request: web.Request) -> tuple[bytes, list[tuple[str, str]]]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Ec2Error("InvalidParameterValue", "The request body is too large")
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise Ec2Error("InvalidParameterValue", "The request body is too large")
    if request.content_type not in ("application/x-www-form-urlencoded", "application/octet-stream", ""):
        raise Ec2Error("InvalidParameterValue", "The body must be application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise Ec2Error("InvalidParameterValue", "The body is not a valid form") from None
    return body, pairs


async def _authenticate(request: web.Request, body: bytes) -> RequestContext:
    try:
        auth = sigv4.parse_authorization(request.headers.get("Authorization"))
        cred = await ec2creds.lookup(request, auth.access_key)
        if cred is None:
            raise sigv4.SignatureError("AuthFailure", "AWS was not able to validate the provided access credentials")
        sigv4.verify(auth, cred.secret, request.method, request.rel_url.raw_path, request.rel_url.raw_query_string,
                     request.headers, body)
    except sigv4.SignatureError as exc:
        raise Ec2Error(exc.code, exc.message) from None
    async with request.config_dict[ENGINE].connect() as conn:
        enabled = await TokenService.enabled(conn, cred.user_id, cred.project_id)
        roles = await TokenService._roles(conn, cred.user_id, cred.project_id)
        if not enabled:
            raise Ec2Error("AuthFailure", "AWS was not able to validate the provided access credentials")
        if not roles:
            raise Ec2Error("AuthFailure", "The credential's user has no role on its project any more")
        project = (await conn.execute(select(projects.c.name, projects.c.domain_id)
                                      .where(projects.c.id == cred.project_id))).first()
    # as a token scoped to it: the admin role makes a cloud admin only on the admin project
    admin_project = project is not None and (project.name, project.domain_id) == ADMIN_PROJECT
    return RequestContext(request_id=request.get(REQUEST_ID) or new_request_id(), project=cred.project_id,
                          user=cred.user_id, roles=tuple(name for _, name in roles), is_admin_project=admin_project,
                          policy=request.config_dict[POLICY])


async def endpoint(request: web.Request) -> web.Response:
    body, pairs = await _form(request)
    try:
        params = xml.parse_params(pairs)
    except xml.ParamError as exc:
        raise Ec2Error("InvalidParameterValue", str(exc)) from None
    action = params.pop("Action", None)
    params.pop("Version", None)
    if not isinstance(action, str) or not action:
        raise Ec2Error("MissingAction", "The request must contain the parameter Action")
    handler = ACTIONS.get(action) or ebs_actions.ACTIONS.get(action) or snapshot_actions.ACTIONS.get(action) or \
        address_actions.ACTIONS.get(action) or security_group_actions.ACTIONS.get(action) or \
        subnet_actions.ACTIONS.get(action)
    if handler is None:
        raise Ec2Error("InvalidAction", f"The action {action} is not valid for this web service.")
    ctx = await _authenticate(request, body)
    request[CONTEXT] = ctx  # the compute code RunInstances reuses reads it
    if params.pop("DryRun", "false") == "true":
        raise Ec2Error("DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
    values = await handler(request, ctx, params)
    return web.Response(text=xml.response(action, ctx.request_id, values), content_type="text/xml")


@web.middleware
async def ec2_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Ec2Error as exc:
        err = exc
    except errors.CellcloudError as exc:
        err = from_cellcloud(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        err = Ec2Error("InvalidAction" if exc.status in (404, 405) else "InvalidParameterValue",
                       "Use POST on the EC2 endpoint" if exc.status in (404, 405) else exc.reason)
    except Exception:  # the one place that turns surprises into InternalError
        LOG.exception("unexpected error in EC2 %s (%s)", request.path, request.get(REQUEST_ID))
        err = Ec2Error("InternalError", "An internal error occurred")
    rid = request.get(REQUEST_ID) or new_request_id()
    return web.Response(text=xml.error(err.code, err.message, rid), status=err.status, content_type="text/xml")


def make_ec2_app() -> web.Application:
    app = web.Application(middlewares=[ec2_errors])

    async def model(app: web.Application) -> AsyncIterator[None]:
        await xml.load_model()  # botocore's EC2 shapes, read once off the loop
        yield

    app.cleanup_ctx.append(model)
    app.router.add_post("", endpoint)
    app.router.add_post("/", endpoint)
    return app
