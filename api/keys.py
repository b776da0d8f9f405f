"""Typed keys of the objects the API app shares with its handlers.

Handlers read them with `request.config_dict[KEY]`, which also looks in the
parent app, so the /identity, /compute and /image sub-apps see the root's.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from cells.config import ClusterConfig
from cells.context import RequestContext
from cells.db.engine import Database

if TYPE_CHECKING:
    from api.cell_router import CellRouter
    from api.identity.tokens import TokenService
    from api.image.store import ImageStore
    from api.policy.enforce import Policy

CLUSTER = web.AppKey("cluster", ClusterConfig)
ENGINE = web.AppKey("engine", AsyncEngine)
DB = web.AppKey("db", Database)  # the same API DB, one thread hop per unit of work (api/db/engine.py)
TOKENS: web.AppKey[TokenService] = web.AppKey("tokens")
ROUTER: web.AppKey[CellRouter] = web.AppKey("cell_router")
STORE: web.AppKey[ImageStore] = web.AppKey("image_store")
POLICY: web.AppKey[Policy] = web.AppKey("policy")  # the rules, with <state>/policy.yaml's overrides (api/policy)

REQUEST_ID = web.RequestKey("request_id", str)  # "req-<uuid>"
CONTEXT = web.RequestKey("context", RequestContext)  # the caller's, set by the token middleware


def public_url(request: web.Request) -> str:
    return request.config_dict[CLUSTER].api.public_url.rstrip("/")
