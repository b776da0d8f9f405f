"""/identity: Keystone v3 version discovery and the auth/tokens resource."""
from __future__ import annotations

from aiohttp import web

from api.errors import error_middleware, identity_body
from api.http import json_body
from api.identity import (
    appcreds,
    assignments,
    domain_grants,
    domains,
    ec2creds,
    groups,
    implied_roles,
    manage,
    project_tags,
    resources,
    roles,
    service_catalog,
    system_grants,
)
from api.identity.views import token_body, v3_version
from api.keys import CLUSTER, POLICY, TOKENS, public_url
from cells import errors


async def versions(request: web.Request) -> web.Response:
    # Keystone answers its root with 300 Multiple Choices, which keystoneauth expects
    return web.json_response({"versions": {"values": [v3_version(public_url(request))]}}, status=300)


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": v3_version(public_url(request))})


async def issue_token(request: web.Request) -> web.Response:
    body = await json_body(request)
    token_id, token = await request.config_dict[TOKENS].authenticate(body)
    api = None if "nocatalog" in request.query else request.config_dict[CLUSTER].api
    return web.json_response(token_body(token, api), status=201, headers={"X-Subject-Token": token_id})


def _subject(request: web.Request) -> str:
    subject = request.headers.get("X-Subject-Token")
    if not subject:
        raise errors.NotFound("Could not find token.")
    return subject


async def _caller_may_see(request: web.Request, subject: str, action: str) -> None:
    """A token may inspect or revoke itself (or another of its user's); admins and services any token."""
    caller_id = request.headers.get("X-Auth-Token")
    if not caller_id:
        raise errors.Unauthorized()
    caller = await request.config_dict[TOKENS].validate(caller_id)
    if caller_id == subject:
        return
    try:
        subject_user = (await request.config_dict[TOKENS].validate(subject)).user.id
    except errors.Unauthorized:
        # unknown, revoked or expired: 404 for anyone, as Keystone (nothing about its user is told)
        raise errors.NotFound("Could not find token.") from None
    request.config_dict[POLICY].enforce(f"identity:{action}", caller.credentials(),
                                        {"target.token.user_id": subject_user})


async def check_token(request: web.Request) -> web.Response:
    subject = _subject(request)
    await _caller_may_see(request, subject, "validate_token")
    tokens = request.config_dict[TOKENS]
    try:
        token = await tokens.validate(subject)
    except errors.Unauthorized:
        raise errors.NotFound("Could not find token.") from None
    if request.method == "HEAD":
        return web.Response(status=200, headers={"X-Subject-Token": subject})
    api = None if "nocatalog" in request.query else request.config_dict[CLUSTER].api
    return web.json_response(token_body(token, api), headers={"X-Subject-Token": subject})


async def revoke_token(request: web.Request) -> web.Response:
    subject = _subject(request)
    await _caller_may_see(request, subject, "revoke_token")
    await request.config_dict[TOKENS].revoke(subject)
    return web.Response(status=204)


def make_identity_app() -> web.Application:
    app = web.Application(middlewares=[error_middleware(identity_body)])
    app.router.add_get("", versions)
    app.router.add_get("/", versions)
    app.router.add_get("/v3", version)
    app.router.add_get("/v3/", version)
    app.router.add_post("/v3/auth/tokens", issue_token)
    app.router.add_get("/v3/auth/tokens", check_token)  # aiohttp adds HEAD for GET routes
    app.router.add_delete("/v3/auth/tokens", revoke_token)
    ec2creds.add_routes(app)
    resources.add_routes(app)  # projects, users, roles, domains: reads
    manage.add_routes(app)  # projects, users, grants: writes
    domains.add_routes(app)  # domains: writes
    domain_grants.add_routes(app)  # roles of users and groups on a domain
    roles.add_routes(app)  # roles: writes
    implied_roles.add_routes(app)  # roles that bring others with them
    groups.add_routes(app)  # groups, their members and grants
    assignments.add_routes(app)  # role assignments, as made or effective
    system_grants.add_routes(app)  # system roles: roles on the admin project
    service_catalog.add_routes(app)  # the catalog, services, endpoints, regions
    appcreds.add_routes(app)  # application credentials
    project_tags.add_routes(app)  # a project's tags
    return app
