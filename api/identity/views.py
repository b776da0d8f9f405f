"""Keystone v3 documents: version discovery, the service catalog, the token body."""
from __future__ import annotations

import uuid
from typing import Any

from api.identity.named import Named
from api.identity.tokens import Token
from api.timeutil import iso_micro
from cells.config import ApiSpec

V3_ID = "v3.14"
V3_UPDATED = "2020-04-07T00:00:00Z"
INTERFACES = ("public", "internal", "admin")
# (type, name, path under the public URL): one port, a path per service; {project_id} is the token's
SERVICES = (("identity", "keystone", "/identity"),
            ("compute", "nova", "/compute/v2.1"),
            ("ec2", "ec2", "/ec2"),
            ("image", "glance", "/image"),
            ("network", "neutron", "/network"),
            ("block-storage", "cinder", "/volume/v3/{project_id}"),
            ("volumev3", "cinderv3", "/volume/v3/{project_id}"))
_NS = uuid.UUID("9b0f5c4e-1c2d-4f7a-9a51-2b7c3d6e8f10")  # stable ids: the same catalog on every restart


def v3_version(base: str) -> dict[str, Any]:
    return {"id": V3_ID, "status": "stable", "updated": V3_UPDATED,
            "links": [{"rel": "self", "href": f"{base}/identity/v3/"}],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]}


def catalog(api: ApiSpec, project_id: str = "") -> list[dict[str, Any]]:
    base = api.public_url.rstrip("/")
    entries = []
    for kind, name, path in SERVICES:
        url = base + path.replace("{project_id}", project_id)
        endpoints = [{"id": uuid.uuid5(_NS, f"{kind}/{iface}").hex, "interface": iface, "region": api.region,
                      "region_id": api.region, "url": url} for iface in INTERFACES]
        entries.append({"id": uuid.uuid5(_NS, kind).hex, "type": kind, "name": name, "endpoints": endpoints})
    return entries


def _named(n: Named) -> dict[str, Any]:
    return {"id": n.id, "name": n.name, "domain": {"id": n.domain_id, "name": n.domain_name}}


def token_body(token: Token, api: ApiSpec | None) -> dict[str, Any]:
    """The token document; `api` None leaves the catalog out (?nocatalog)."""
    body: dict[str, Any] = {
        "methods": list(token.methods),
        "user": dict(_named(token.user), password_expires_at=None),
        "audit_ids": [token.audit_id],
        "issued_at": iso_micro(token.issued_at),
        "expires_at": iso_micro(token.expires_at),
    }
    if token.project is not None:
        body["project"] = _named(token.project)
        body["is_domain"] = False
    elif token.system:
        body["system"] = {"all": True}
    elif token.domain is not None:
        body["domain"] = {"id": token.domain.id, "name": token.domain.name}
    if token.project is not None or token.system or token.domain is not None:
        body["roles"] = [{"id": i, "name": n} for i, n in token.roles]
        if api is not None:
            body["catalog"] = catalog(api, token.project.id if token.project else "")
    if token.app_cred_id is not None:
        body["application_credential"] = {"id": token.app_cred_id, "restricted": True}
    return {"token": body}
