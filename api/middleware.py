"""Middlewares shared by the APIs: request ids and the token check.

The token check turns X-Auth-Token into the caller's RequestContext (project,
user, roles) for every /compute and /image request except the public version
documents. A missing, unknown, revoked or expired token is a 401; an unscoped
token a 403 (these APIs act on a project). A token with only the image_reader role (the compute
hosts' credential) may show and download images and nothing else: 403. A request that changes
something (any method but GET and HEAD) needs the policy rule `project_member_or_admin` on the
token's project, the services' default for every write: a reader lists and shows, and changes nothing.
Then `route_policy` enforces the route's own rule, by its service's name (api/policy/routes.py).
"""
from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware

from api.keys import CONTEXT, POLICY, REQUEST_ID, TOKENS
from api.policy import routes
from cells import errors, logtrail
from cells.context import new_request_id
from cells.metrics import API_LATENCY, API_REQUESTS, UNMATCHED, method_label


@web.middleware
async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request gets an id that travels in its RPC context and comes back in a header; its
    route, status and latency are counted (cells/metrics.py)."""
    rid = new_request_id()
    request[REQUEST_ID] = rid
    bound = logtrail.bind_request(rid)  # a keep-alive connection serves its requests in one task: unbound after
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        logtrail.unbind(bound)
        _count(request, status, time.perf_counter() - started)
    response.headers["X-OpenStack-Request-ID"] = rid
    return response


def _count(request: web.Request, status: int, seconds: float) -> None:
    """By route template (the matched resource's canonical path, sub-app prefix included): never a raw id."""
    route = UNMATCHED
    if request.match_info.http_exception is None:
        resource = request.match_info.route.resource
        if resource is not None:
            route = resource.canonical
    method = method_label(request.method)
    API_REQUESTS.labels(method, route, str(status)).inc()
    API_LATENCY.labels(method, route).observe(seconds)


# a console URL's token (api/compute/remote_consoles.py) opens a console; noVNC's page has it in its `path`
SECRET_QUERY_KEYS = frozenset({"token", "path"})


def logged_path(request: web.BaseRequest) -> str:
    """The request's path and query as logged: a secret query value never reaches the log."""
    if SECRET_QUERY_KEYS.isdisjoint(request.query):
        return request.path_qs
    return request.path + "?" + urlencode([(k, "***" if k in SECRET_QUERY_KEYS else v) for k, v in request.query.items()])


class AccessLogger(AbstractAccessLogger):
    """One line per request, tagged with its request id: aiohttp writes it after the middlewares returned,
    outside the request's log context, so the id comes from the response header."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        rid = response.headers.get("X-OpenStack-Request-ID", logtrail.NO_REQUEST)
        self.logger.info("%s %s %s status: %d len: %s time: %.4f", request.remote, request.method, logged_path(request),
                         response.status, response.body_length, time, extra={"request_id": rid})

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


_READS = ("GET", "HEAD", "OPTIONS")
WRITE_RULE = "project_member_or_admin"  # api/policy/rules.py: what every write of these APIs needs at least


_IMAGE_READ = re.compile(r"^/image/v2/images/[^/]+(/file)?$")


def _reads_an_image(request: web.Request) -> bool:
    return request.method in ("GET", "HEAD") and _IMAGE_READ.match(request.path) is not None


def token_auth(is_public: Callable[[web.Request], bool]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_public(request):
            token_id = request.headers.get("X-Auth-Token")
            if not token_id:
                raise errors.Unauthorized()
            token = await request.config_dict[TOKENS].validate(token_id)
            if token.project is None:
                raise errors.Forbidden("This action requires a project-scoped token.")
            ctx = replace(token.context(request.get(REQUEST_ID) or new_request_id()), policy=request.config_dict[POLICY])
            if ctx.is_image_reader_only and not _reads_an_image(request):
                raise errors.Forbidden("The image_reader role may only show and download images.")
            if request.method not in _READS and not request.config_dict[POLICY].check(WRITE_RULE, ctx):
                raise errors.Forbidden(f"Policy doesn't allow {WRITE_RULE} to be performed: a reader role "
                                       "lists and shows, and changes nothing.")
            request[CONTEXT] = ctx
        return await handler(request)

    return middleware


def route_policy(prefix: str, table: Mapping[tuple[str, str], str]) -> Middleware:
    """Enforce each route's rule (api/policy/routes.py) on the caller's project before its handler runs,
    as Nova and Cinder enforce a collection's or an action's rule. Runs after token_auth; a route
    the table marks PUBLIC or ANY_TOKEN, or an action this API does not serve (its handler's 400), asks
    nothing more here."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = request.get(CONTEXT)
        resource = request.match_info.route.resource if request.match_info.http_exception is None else None
        if ctx is not None and resource is not None:
            template = resource.canonical.removeprefix(prefix)
            body = None
            if template.endswith("/action") and request.method == "POST" and request.can_read_body:
                try:
                    body = json.loads(await request.read())  # the handler reads the same cached bytes
                except (ValueError, UnicodeDecodeError, web.HTTPRequestEntityTooLarge):
                    body = None  # the handler answers for a malformed body
            rule = routes.resolve(table, request.method, template, request.match_info, body)
            if rule is not None and rule not in (routes.PUBLIC, routes.ANY_TOKEN):
                every = (request.method, template) in routes.EVERY_PROJECT
                request.config_dict[POLICY].authorize(rule, ctx, {"project_id": None} if every else None)
        return await handler(request)

    return middleware
