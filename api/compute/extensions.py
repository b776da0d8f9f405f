"""The compute resources that were Nova's "extensions" (os-keypairs, os-quota-sets, limits,
os-instance-actions, server metadata and rename, os-server-groups), registered on the compute app in one place."""
from __future__ import annotations

from aiohttp import web

from api.compute import instance_actions, keypairs, quotas, server_groups, server_update


def add_routes(app: web.Application) -> None:
    keypairs.add_routes(app)
    quotas.add_routes(app)
    instance_actions.add_routes(app)
    server_update.add_routes(app)
    server_groups.add_routes(app)
