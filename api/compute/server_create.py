"""POST /servers, step by step: validate -> resolve -> map -> build.

Everything the request names (flavor, image, key, zone, groups) is checked
before anything is written, so an invalid request creates nothing. The
instance mappings are written before the conductor call (a server must be
findable the moment the cell has it) and removed again if that call fails.
"""
from __future__ import annotations

import contextlib
import logging
import secrets
import string
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web
from sqlalchemy import Connection

from api import quota
from api.compute import keypairs, placement, server_groups
from api.compute.flavors import flavor_dict, flavor_of
from api.compute.schemas import SERVER_CREATE
from api.compute.views import DEFAULT_AZ, server_created
from api.http import context, id_from_href, is_uuid, json_body
from api.image import images as image_db
from api.keys import DB, ENGINE, ROUTER, public_url
from api.network import boot as network_boot
from api.validation import validate
from cells import errors
from cells.context import RequestContext
from cells.db.fast import AnyRow
from cells.objects.instance import PowerState, TaskState, VmState, utcnow_iso

LOG = logging.getLogger(__name__)
MAX_PER_REQUEST = 100  # one request's bound; the instances quota (api/quota.py) is the real limit
_PASSWORD_CHARS = string.ascii_letters + string.digits


@dataclass(frozen=True)
class BuildSpec:
    """A validated boot request: everything needed to make the instance records."""
    name: str
    count: int
    flavor: dict[str, Any]
    image: dict[str, Any]
    metadata: dict[str, str]
    key_name: str | None
    key_data: str | None  # the key pair's public key, kept with the instance (the metadata service serves it)
    availability_zone: str
    user_data: str | None
    access_ipv4: str | None
    access_ipv6: str | None
    hints: dict[str, Any]
    min_count: int = 1  # `count` is max_count; quota may cut it down to no less than this
    networking: dict[str, Any] = field(default_factory=dict)  # requested_networks, security_groups
    limits: dict[str, int] = field(default_factory=dict)  # the project's quotas as validation read them
    group: server_groups.ServerGroup | None = None  # the `group` hint's server group


def _count(value: Any, default: int) -> int:
    return default if value is None else int(value)


def _image_id(server: dict[str, Any]) -> str:
    """imageRef is an image id or a link ending in one; without it, a local image BDM at boot index 0."""
    ref = server.get("imageRef") or ""
    if ref:
        candidate = id_from_href(ref)
        if not is_uuid(candidate):
            raise errors.Invalid("Invalid imageRef provided.")
        return candidate
    for bdm in server.get("block_device_mapping_v2") or []:
        if str(bdm.get("boot_index")) == "0" and bdm.get("source_type") == "image" and bdm.get("uuid"):
            if bdm.get("destination_type", "local") != "local":
                break
            return str(bdm["uuid"])
    raise errors.Invalid("Booting from a volume is not supported by this cloud: give an imageRef.")


def _check_bdms(server: dict[str, Any]) -> None:
    if server.get("block_device_mapping"):
        raise errors.Invalid("Block device mappings (v1) are not supported by this cloud.")
    for bdm in server.get("block_device_mapping_v2") or []:
        if bdm.get("destination_type") == "volume" or bdm.get("source_type") in ("volume", "snapshot"):
            raise errors.Invalid("Volumes are not supported by this cloud yet.")


def _lookups(conn: Connection, ctx: RequestContext,
             server: dict[str, Any]) -> tuple[dict[str, int], AnyRow, AnyRow, dict[str, Any]]:
    """(quota limits, flavor, image, the image's boot snapshot) of a boot, with the checks between
    them in their order."""
    limits = quota.limits_of(conn, str(ctx.project))
    quota.check_metadata(limits, len(server.get("metadata") or {}))
    quota.check_injected_files(limits, server.get("personality") or [])
    _check_bdms(server)
    image_id = _image_id(server)
    try:
        flavor = flavor_of(conn, ctx, id_from_href(str(server["flavorRef"])))
    except errors.FlavorNotFound:
        raise errors.Invalid("Invalid flavorRef provided.") from None
    if flavor.disabled:
        raise errors.Invalid(f"Flavor {flavor.id} is disabled.")
    try:
        image = image_db.get_of(conn, ctx, image_id)
        boot_image = image_db.boot_snapshot_of(conn, ctx, image)  # its kernel_id/ramdisk_id as ctx sees them
    except errors.ImageNotFound as exc:
        raise errors.Invalid(exc.message) from None
    return limits, flavor, image, boot_image


async def resolve(request: web.Request, ctx: RequestContext, body: dict[str, Any]) -> BuildSpec:
    server: dict[str, Any] = body["server"]
    min_count = _count(server.get("min_count"), 1)
    max_count = _count(server.get("max_count"), min_count)
    if min_count > max_count:
        raise errors.Invalid("min_count must be <= max_count")
    if max_count > MAX_PER_REQUEST:
        raise errors.QuotaExceeded(resource="instances", requested=max_count, limit=MAX_PER_REQUEST)
    hints = dict(body.get("os:scheduler_hints") or body.get("OS-SCH-HNT:scheduler_hints") or {})
    group = None
    if hints.get("group") is not None:  # the first check that can fail, as before: the limits read cannot
        async with request.config_dict[ENGINE].connect() as conn:
            group = await server_groups.for_boot(conn, ctx, hints)
    # the rest in one unit of work: one thread hop instead of ~20 through the AsyncEngine
    limits, flavor, image, boot_image = await request.config_dict[DB].read(lambda conn: _lookups(conn, ctx, server))
    if image.status != "active":
        raise errors.Invalid(f"Image {image.id} is not active.")
    if image.min_ram and image.min_ram > flavor.ram:
        raise errors.Invalid("Flavor's memory is too small for requested image.")
    # the inspected virtual_size too: a small qcow2 may unfold into a disk far bigger than its file
    biggest = max(image.size or 0, image.virtual_size or 0)
    if flavor.disk and ((image.min_disk or 0) > flavor.disk or biggest > flavor.disk * (1 << 30)):
        raise errors.Invalid("Flavor's disk is too small for requested image.")
    key_data = None
    if server.get("key_name") is not None:
        try:
            pair = await keypairs.get(request.config_dict[ENGINE], str(ctx.user), server["key_name"])
            key_data = pair.public_key.strip()  # the key line (an imported file's newline is not part of it)
        except keypairs.KeypairNotFound:
            raise errors.Invalid("Invalid key_name provided.") from None
    az = server.get("availability_zone") or DEFAULT_AZ
    if az != DEFAULT_AZ and not request.config_dict[ROUTER].zone_exists(az):  # a site or cell is a zone
        raise errors.Invalid(f"The requested availability zone is not available: {az}")
    networking = await network_boot.resolve(request.config_dict[ROUTER], ctx, server)  # networks, ports, security groups: 400 if unknown
    return BuildSpec(name=server["name"], count=max_count, flavor=flavor_dict(flavor),
                     image=boot_image, metadata=dict(server.get("metadata") or {}),
                     key_name=server.get("key_name"), key_data=key_data, availability_zone=az,
                     user_data=server.get("user_data"),
                     access_ipv4=server.get("accessIPv4"), access_ipv6=server.get("accessIPv6"), hints=hints,
                     min_count=min_count, networking=networking, limits=limits, group=group)


def instance_records(spec: BuildSpec, ctx: RequestContext, cell_path: str) -> list[dict[str, Any]]:
    now = utcnow_iso()
    records = []
    for i in range(spec.count):
        # Nova's multi_instance_display_name_template: "name-1", "name-2", ... when booting several
        name = spec.name if spec.count == 1 else f"{spec.name}-{i + 1}"
        records.append({
            "uuid": str(uuid.uuid4()), "name": name, "project_id": ctx.project, "user_id": ctx.user,
            "host": None, "flavor": dict(spec.flavor), "image": dict(spec.image),
            "vm_state": VmState.BUILDING, "task_state": TaskState.SCHEDULING, "power_state": PowerState.NOSTATE,
            "created_at": now, "updated_at": now, "launched_at": None, "terminated_at": None, "deleted": False,
            "metadata": dict(spec.metadata), "key_name": spec.key_name, "key_data": spec.key_data,
            "availability_zone": spec.availability_zone, "user_data": spec.user_data,
            "access_ipv4": spec.access_ipv4, "access_ipv6": spec.access_ipv6, "progress": 0, "fault": None,
            "addresses": {}, "cell": cell_path,
        })
    return records


def request_spec(spec: BuildSpec, ctx: RequestContext, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"num_instances": spec.count, "instance_uuids": [r["uuid"] for r in records],
            "flavor": spec.flavor, "image": spec.image, "project_id": ctx.project, "user_id": ctx.user,
            "availability_zone": spec.availability_zone, "scheduler_hints": spec.hints, **spec.networking,
            "port_quota": spec.limits.get("port", -1),  # the ports the boot makes count (checked in their write)
            **server_groups.spec_part(spec.group)}


async def create(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await json_body(request)
    uuids = await create_servers(request, ctx, body)
    admin_pass = server_admin_pass(body["server"])
    base = public_url(request)
    return web.json_response(server_created(base, uuids[0], admin_pass, body["server"].get("security_groups")),
                             status=202,
                             headers={"Location": f"{base}/compute/v2.1/servers/{uuids[0]}"})


async def create_servers(request: web.Request, ctx: RequestContext, body: Any) -> list[str]:
    """Validate a Nova create body and boot it; the new servers' ids (EC2's RunInstances boots through here)."""
    validate(SERVER_CREATE, body)
    spec = await resolve(request, ctx, body)
    router, engine, db = request.config_dict[ROUTER], request.config_dict[ENGINE], request.config_dict[DB]
    await db.check_free_space("new servers")  # the API DB's watermark (cells/db/settings.py): 507 before a write
    # the instance quota is counted where the mappings are written, in the same API DB write unit
    # (api/quota.py admit_boot): no lock held across the conductor round trip, whatever the workers.
    # A server group's member quota and policy still take the project's (in-process) lock.
    admission = quota.Admission(spec.limits, quota.per_server(spec.flavor), spec.min_count) \
        if quota.counted(spec.limits) else None
    async with quota.project_lock(str(ctx.project)) if spec.group else contextlib.nullcontext():
        choice = await server_groups.admit(engine, spec.group, spec.count, spec.limits, spec.hints)

        def records_for(path: str) -> list[dict[str, Any]]:
            return instance_records(spec, ctx, path)

        def spec_for(recs: list[dict[str, Any]]) -> dict[str, Any]:  # the admitted count, when quota cut it
            return request_spec(replace(spec, count=len(recs)), ctx, recs)
        _, records = await placement.build(  # best cell first, the next when one refuses
            router, db, ctx, spec.flavor, spec.availability_zone, choice, records_for, spec_for, admission)
        uuids = [r["uuid"] for r in records]
        await server_groups.add_members(engine, spec.group, uuids)
    return uuids


def server_admin_pass(server: dict[str, Any]) -> str:
    return str(server.get("adminPass") or "".join(secrets.choice(_PASSWORD_CHARS) for _ in range(12)))
