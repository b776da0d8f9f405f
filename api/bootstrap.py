"""The API DB's initial content, made idempotently from the cluster config.

`ensure(cluster)` may run on every `cellctl up`: it creates what is missing,
re-hashes a password that changed in cluster.secrets, re-stores the default
image's bits if the image directory lost them, and brings the cell mappings
in line with cluster.cells. It never touches what an operator added.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.engine import make_engine
from api.db.schema import (
    cell_mappings,
    create_schema,
    domains,
    flavors,
    images,
    projects,
    role_assignments,
    roles,
    users,
)
from api.identity.passwords import hash_password, verify_password
from api.identity.tokens import new_id
from api.image import default as default_image
from api.image.store import HASH_ALGO, ImageStore
from api.timeutil import utcnow
from cells.config import ClusterConfig
from cells.context import IMAGE_READER

LOG = logging.getLogger(__name__)
DEFAULT_DOMAIN = ("default", "Default")
ROLES = ("admin", "member", "reader")
PROJECTS = ("admin", "demo", "service", "alt_demo")  # alt_demo: a second tenant (Tempest's alt credentials)
IMAGE_READER_USER = "cellcloud-image-reader"


@dataclass(frozen=True)
class UserSpec:
    name: str
    secret: str  # key in cluster.secrets
    grants: tuple[tuple[str, str], ...]  # (project, role)


USERS = (
    UserSpec("admin", "admin_password", (("admin", "admin"),)),
    UserSpec("demo", "demo_password", (("demo", "member"),)),
    UserSpec("alt_demo", "alt_demo_password", (("alt_demo", "member"),)),
    UserSpec("cellcloud-service", "service_password", (("service", "admin"), ("service", "service"))),
    # what compute hosts fetch images with: it may show and download images, nothing else
    UserSpec(IMAGE_READER_USER, "image_reader_password", (("service", IMAGE_READER),)),
)
# Nova's classic flavors: (id, name, vcpus, ram MiB, disk GiB)
FLAVORS = (("1", "m1.tiny", 1, 512, 1), ("2", "m1.small", 1, 2048, 20), ("3", "m1.medium", 2, 4096, 40))


async def ensure(cluster: ClusterConfig) -> None:
    missing = [u.secret for u in USERS if not cluster.secrets.get(u.secret)]
    if missing:
        raise ValueError(f"cluster secrets lack {', '.join(missing)}: the bootstrap tool makes them")
    await create_schema(cluster.api.db)
    engine = make_engine(cluster.api.db)
    try:
        async with engine.begin() as conn:
            await _identity(conn, cluster)
            await _flavors(conn)
            await _cells(conn, cluster)
        await _default_image(engine, cluster)
    finally:
        await engine.dispose()


async def _id_by(conn: AsyncConnection, table: Any, **where: Any) -> str | None:
    clause = and_(*(table.c[k] == v for k, v in where.items()))
    return (await conn.execute(select(table.c.id).where(clause))).scalar()


async def ensure_users(cluster: ClusterConfig, users: Sequence[UserSpec], passwords: Mapping[str, str]) -> None:
    """Add `users` (their projects made as needed, each password from `passwords` by the spec's secret)
    to a bootstrapped API DB: the test accounts of a Tempest run (tools/tempest.py). Idempotent."""
    engine = make_engine(cluster.api.db)
    try:
        async with engine.begin() as conn:
            projects = tuple(dict.fromkeys(p for spec in users for p, _ in spec.grants))
            await _identity(conn, cluster, projects, users, passwords)
    finally:
        await engine.dispose()


async def _identity(conn: AsyncConnection, cluster: ClusterConfig, project_names: Sequence[str] = PROJECTS,
                    user_specs: Sequence[UserSpec] = USERS, passwords: Mapping[str, str] | None = None) -> None:
    passwords = cluster.secrets if passwords is None else passwords
    domain_id, domain_name = DEFAULT_DOMAIN
    if await _id_by(conn, domains, id=domain_id) is None:
        await conn.execute(insert(domains).values(id=domain_id, name=domain_name, enabled=True,
                                                  description="The default domain"))
    role_ids: dict[str, str] = {}
    for name in ROLES + ("service", IMAGE_READER):
        role_ids[name] = await _id_by(conn, roles, name=name) or await _insert_id(conn, roles, name=name)
    project_ids: dict[str, str] = {}
    for name in project_names:
        project_ids[name] = (await _id_by(conn, projects, name=name, domain_id=domain_id)
                             or await _insert_id(conn, projects, name=name, domain_id=domain_id, enabled=True,
                                                 description=f"Bootstrap project {name}"))
    for spec in user_specs:
        password = passwords[spec.secret]
        row = (await conn.execute(select(users.c.id, users.c.password_hash)
                                  .where(and_(users.c.name == spec.name, users.c.domain_id == domain_id)))).first()
        if row is None:
            user_id = await _insert_id(conn, users, name=spec.name, domain_id=domain_id, enabled=True,
                                       password_hash=await hash_password(password),
                                       default_project_id=project_ids[spec.grants[0][0]], created_at=utcnow())
        else:
            user_id = row.id
            if not await verify_password(password, row.password_hash):
                LOG.info("password of %s changed in the cluster secrets: updating its hash", spec.name)
                await conn.execute(update(users).where(users.c.id == user_id)
                                   .values(password_hash=await hash_password(password)))
        for project, role in spec.grants:
            grant = {"user_id": user_id, "project_id": project_ids[project], "role_id": role_ids[role]}
            exists = (await conn.execute(select(role_assignments.c.user_id).where(
                and_(*(role_assignments.c[k] == v for k, v in grant.items()))))).first()
            if exists is None:
                await conn.execute(insert(role_assignments).values(**grant))


async def _insert_id(conn: AsyncConnection, table: Any, **values: Any) -> str:
    new = new_id()
    await conn.execute(insert(table).values(id=new, **values))
    return new


async def _flavors(conn: AsyncConnection) -> None:
    for flavor_id, name, vcpus, ram, disk in FLAVORS:
        if await _id_by(conn, flavors, id=flavor_id) is None and await _id_by(conn, flavors, name=name) is None:
            await conn.execute(insert(flavors).values(
                id=flavor_id, name=name, vcpus=vcpus, ram=ram, disk=disk, ephemeral=0, swap=0, rxtx_factor=1.0,
                is_public=True, disabled=False, extra_specs={}, created_at=utcnow()))


def _router_key(cluster: ClusterConfig, path: str) -> str | None:
    try:
        spec = cluster.service(f"{path}/router")
    except KeyError:
        return None
    return str(getattr(spec, "public_key", "") or "") or None


async def _cells(conn: AsyncConnection, cluster: ClusterConfig) -> None:
    now = utcnow()
    for cell in cluster.cells:
        values = {"name": cell.name, "router": cell.router, "parent": cell.parent,
                  "public_key": _router_key(cluster, cell.path)}
        row = (await conn.execute(select(cell_mappings).where(cell_mappings.c.path == cell.path))).first()
        if row is None:
            await conn.execute(insert(cell_mappings).values(path=cell.path, created_at=now, updated_at=now, **values))
        elif any(getattr(row, k) != v for k, v in values.items()):
            await conn.execute(update(cell_mappings).where(cell_mappings.c.path == cell.path)
                               .values(updated_at=now, **values))


async def _default_image(engine: Any, cluster: ClusterConfig) -> None:
    store = ImageStore(cluster.api.image_dir)
    async with engine.connect() as conn:
        row = (await conn.execute(select(images).where(and_(images.c.name == default_image.NAME,
                                                            images.c.visibility == "public")))).first()
    if row is not None and row.content_address and await store.exists(row.content_address):
        return
    blob = await store.put_bytes(default_image.tiny_raw())  # same bits, same address: safe to redo
    now = utcnow()
    async with engine.begin() as conn:
        if row is not None:
            await conn.execute(update(images).where(images.c.id == row.id).values(
                content_address=blob.address, checksum=blob.md5, os_hash_algo=HASH_ALGO,
                os_hash_value=blob.sha512, size=blob.size, status="active", updated_at=now))
            return
        admin_project = await _id_by(conn, projects, name="admin", domain_id=DEFAULT_DOMAIN[0])
        await conn.execute(insert(images).values(
            id=str(uuid.uuid4()), name=default_image.NAME, status="active", visibility="public", owner=admin_project,
            checksum=blob.md5, os_hash_algo=HASH_ALGO, os_hash_value=blob.sha512, size=blob.size,
            virtual_size=blob.size, disk_format="raw", container_format="bare", min_disk=0, min_ram=0,
            protected=False, os_hidden=False, properties={}, tags=[], content_address=blob.address,
            created_at=now, updated_at=now))
