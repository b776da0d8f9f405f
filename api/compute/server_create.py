"""A boot, step by step: validate -> resolve -> map -> build (api/compute/service.py `create`
runs it for POST /servers and EC2's RunInstances).

A `BootRequest` is what either API asks for, typed and checked. Everything it
names (flavor, image, key, zone, networks, groups) is checked before anything is
written, so an invalid request creates nothing. The instance mappings are written
before the conductor call (a server must be findable the moment the cell has it)
and removed again if that call fails.
"""
from __future__ import annotations

import logging
import secrets
import string
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from api import cell_choice, quota
from api.compute import aggregates, boot_volumes, keypairs, mappings, schemas, server_groups, volume_backed_images
from api.compute.boot_volumes import BAD_SEQUENCE, BOOT_PROPERTIES
from api.compute.flavors import flavor_dict, flavor_of
from api.compute.microversions import MIN_VERSION, Microversion
from api.compute.schemas import SERVER_CREATE, canonical_ip
from api.compute.views import DEFAULT_AZ
from api.http import id_from_href, is_uuid, parse_bool
from api.image import images as image_db
from api.network import boot_networks
from api.validation import validate
from api.volume import cells as volume_cells
from cells import errors
from cells.conductor.flows.boot_volume import DELETE_ON_TERMINATION
from cells.context import RequestContext
from cells.db.fast import AnyRow
from cells.objects.instance import PowerState, TaskState, VmState, utcnow_iso

if TYPE_CHECKING:
    from api.compute.service import ComputeContext

LOG = logging.getLogger(__name__)
MAX_PER_REQUEST = 100  # one request's bound; the instances quota (api/quota.py) is the real limit
_PASSWORD_CHARS = string.ascii_letters + string.digits
_SERVER = SERVER_CREATE["properties"]["server"]["properties"]
# the fields either API fills from its own input, checked as Nova's schema checks them
_CHECKED = {"name": "name", "key_name": "key_name", "availability_zone": "availability_zone",
            "user_data": "user_data", "access_ipv4": "accessIPv4", "access_ipv6": "accessIPv6"}


def reservation_id() -> str:
    """Nova's reservation id: one per boot request, shared by the servers it made (2.3's view,
    return_reservation_id's answer)."""
    return "r-" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


@dataclass(frozen=True)
class BootRequest:
    """What a boot asks for, whichever API it came through (Nova's create body, EC2's RunInstances).
    Built only valid: the text fields pass Nova's schema for them (a 400 otherwise)."""
    name: str
    flavor_ref: str
    image_ref: str | None = None  # an image id or a link ending in one; None: a local image BDM at index 0
    min_count: int = 1
    max_count: int | None = None  # None: min_count
    key_name: str | None = None
    user_data: str | None = None  # base64
    availability_zone: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    personality: list[dict[str, Any]] = field(default_factory=list)
    networks: list[dict[str, Any]] | str | None = None  # Nova's `networks`
    security_groups: list[str] = field(default_factory=list)  # group names
    access_ipv4: str | None = None
    access_ipv6: str | None = None
    block_device_mapping: list[dict[str, Any]] = field(default_factory=list)
    block_device_mapping_v2: list[dict[str, Any]] = field(default_factory=list)
    hints: dict[str, Any] = field(default_factory=dict)
    description: str | None = None  # 2.19
    hostname: str | None = None  # 2.90 (None: from the name)
    trusted_image_certificates: list[str] | None = None  # 2.63: this cloud verifies no image signatures
    tags: tuple[str, ...] = ()  # 2.52: the servers' tags (api/compute/server_tags.py)
    reservation_id: str = field(default_factory=reservation_id)

    def __post_init__(self) -> None:
        for name, schema_field in _CHECKED.items():
            value = getattr(self, name)
            if value is not None:
                validate(_SERVER[schema_field], value, schema_field)
        if self.min_count < 1 or (self.max_count is not None and self.max_count < 1):
            raise errors.Invalid("min_count and max_count must be at least 1")

    @classmethod
    def from_nova(cls, body: Any, version: Microversion = MIN_VERSION) -> BootRequest:
        """A Nova create body, checked against its schema at `version` first."""
        validate(schemas.server_create(version), body)
        server: dict[str, Any] = body["server"]
        return cls(name=server["name"], flavor_ref=str(server["flavorRef"]), image_ref=server.get("imageRef"),
                   min_count=_count(server.get("min_count"), 1),
                   max_count=None if server.get("max_count") is None else int(server["max_count"]),
                   key_name=server.get("key_name"), user_data=server.get("user_data"),
                   availability_zone=server.get("availability_zone"),
                   metadata=dict(server.get("metadata") or {}), personality=list(server.get("personality") or []),
                   networks=server.get("networks"),
                   security_groups=[str(g.get("name")) for g in server.get("security_groups") or []],
                   access_ipv4=canonical_ip(server.get("accessIPv4")),
                   access_ipv6=canonical_ip(server.get("accessIPv6")),
                   block_device_mapping=list(server.get("block_device_mapping") or []),
                   block_device_mapping_v2=list(server.get("block_device_mapping_v2") or []),
                   hints=dict(body.get("os:scheduler_hints") or body.get("OS-SCH-HNT:scheduler_hints") or {}),
                   description=server.get("description"), hostname=server.get("hostname"),
                   trusted_image_certificates=server.get("trusted_image_certificates"),
                   tags=tuple(dict.fromkeys(server.get("tags") or [])))  # 2.52; Nova keeps each tag once



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
    attributes: mappings.ServerAttributes = mappings.NO_ATTRIBUTES  # what the views show (2.3 ...)
    placement: aggregates.Placement | None = None  # hosts its aggregates allow (zone, extra specs); None: any


def _count(value: Any, default: int) -> int:
    return default if value is None else int(value)


def _image_id(boot: BootRequest) -> str | None:
    """imageRef is an image id or a link ending in one; without it, a local image BDM at boot index 0,
    or None: a boot from a volume (`root_bdm`)."""
    ref = boot.image_ref or ""
    if boot_volumes.image_root_bdm(boot.block_device_mapping_v2) is not None:
        return None  # the root disk is a volume made from the mapping's image (imageRef, if any, names it too)
    if ref:
        candidate = id_from_href(ref)
        if not is_uuid(candidate):
            raise errors.Invalid("Invalid imageRef provided.")
        return candidate
    if root_bdm(boot) is not None or boot_volumes.snapshot_root_bdm(boot.block_device_mapping_v2) is not None:
        return None
    for bdm in boot.block_device_mapping_v2:
        if str(bdm.get("boot_index")) == "0" and bdm.get("source_type") == "image" and bdm.get("uuid"):
            if bdm.get("destination_type", "local") != "local":
                break
            return str(bdm["uuid"])
    raise errors.Invalid(BAD_SEQUENCE)


def root_bdm(boot: BootRequest) -> dict[str, Any] | None:
    """The boot-index-0 volume -> volume mapping of a boot from an existing volume, None otherwise."""
    for bdm in boot.block_device_mapping_v2:
        if str(bdm.get("boot_index")) == "0" and bdm.get("source_type") == "volume" \
                and bdm.get("destination_type") == "volume":
            return bdm
    return None


def _check_bdms(boot: BootRequest) -> None:
    if boot.block_device_mapping:
        raise errors.Invalid("Block device mappings (v1) are not supported by this cloud.")
    root = root_bdm(boot)
    image_root = boot_volumes.image_root_bdm(boot.block_device_mapping_v2)
    snapshot_root = boot_volumes.snapshot_root_bdm(boot.block_device_mapping_v2)
    extras = boot_volumes.extra_mappings(boot.block_device_mapping_v2)
    for bdm in boot.block_device_mapping_v2:
        if bdm is root or bdm is image_root or bdm is snapshot_root or any(bdm is e for e in extras):
            continue  # extras: boot_volumes
        if bdm.get("destination_type") == "volume" or bdm.get("source_type") in ("volume", "snapshot"):
            raise errors.Invalid("Volumes other than the root volume and blank, snapshot or volume ones beside "
                                 "it are not supported at boot by this cloud yet.")
    if snapshot_root is not None and (boot.image_ref or image_root is not None or root is not None):
        raise errors.Invalid(BAD_SEQUENCE)  # two root disks
    if root is None:
        return
    if boot.image_ref or image_root is not None:  # Nova: an image and a boot volume name two root disks
        raise errors.Invalid(BAD_SEQUENCE)
    if not is_uuid(str(root.get("uuid") or "").lower()):
        raise errors.Invalid("Block Device Mapping is Invalid: a volume mapping needs the volume's uuid.")
    if _count(boot.max_count, boot.min_count) > 1:
        raise errors.Invalid("Cannot attach one or more volumes to multiple instances")


async def _root_volume_image(cc: ComputeContext, ctx: RequestContext, boot: BootRequest,
                             hints: dict[str, Any]) -> dict[str, Any]:
    """What a boot from a volume records as its `image`: the volume (no image id: the views show ""),
    checked as Nova checks it before anything is written. The cell reserves it with the server, so the
    server is built in the volume's cell (`hints` gets its target_cell: _pin_to_volume_cell)."""
    root = root_bdm(boot)
    assert root is not None
    volume_id = str(root["uuid"]).lower()
    try:
        _, volume = await volume_cells.find(cc.router, ctx, volume_id)
    except errors.VolumeNotFound:
        raise errors.Invalid(f"Block Device Mapping is Invalid: failed to get volume {volume_id}.") from None
    if not volume.get("bootable"):
        raise errors.Invalid(f"Block Device Mapping is Invalid: Volume {volume_id} is not bootable.")
    if volume.get("status") != "available":
        raise errors.Invalid(f"Invalid volume: volume {volume_id} status must be 'available', "
                             f"but it is {volume.get('status')}.")
    # what a volume made from an image boots with: an AMI's kernel, ramdisk and command line (their
    # records as the volume's creator resolved them; the compute fetches and verifies them)
    made_from: dict[str, Any] = volume.get("image") or {}
    props = {k: v for k, v in (made_from.get("properties") or {}).items() if k in BOOT_PROPERTIES}
    image: dict[str, Any] = {"root_volume_id": volume_id, "properties": props,
                             DELETE_ON_TERMINATION: bool(parse_bool(str(root.get("delete_on_termination", False))))}
    image.update({k: made_from[k] for k in ("kernel", "ramdisk") if isinstance(made_from.get(k), dict)})
    _pin_to_volume_cell(cc, boot, hints, volume_id, str(volume.get("cell") or ""))
    return image


def _pin_to_volume_cell(cc: ComputeContext, boot: BootRequest, hints: dict[str, Any], volume_id: str,
                        volume_cell: str) -> None:
    """A server boots in the cell holding its root volume: the volume's rows, attachment and export are that
    cell's, and no cell opens another's volumes. This is Nova with [cinder] cross_az_attach = False (a cell
    or site is a zone here): no zone asked, the server goes to the volume's; a zone (or a target_cell or
    different_cell hint) that leaves the volume's cell out is Nova's 400 MismatchVolumeAZException."""
    cell = next((c.cell for c in cc.router.cells.values() if volume_cell in (c.cell.path, c.cell.name)), None)
    if cell is None:
        raise errors.Invalid(f"Block Device Mapping is Invalid: failed to get volume {volume_id}.")
    zone = boot.availability_zone
    targets, avoid = cell_choice.names(hints.get("target_cell")), cell_choice.names(hints.get("different_cell"))
    if (zone and not cell_choice.in_zone(cell, zone)) or (targets and not cell_choice.named(cell, targets)) \
            or (avoid and cell_choice.named(cell, avoid)):
        asked = zone or f"the cells the scheduler hints allow ({', '.join(targets) or 'all but ' + ', '.join(avoid)})"
        raise errors.Invalid(f"Server and volumes are not in the same availability zone. Server is in: {asked}. "
                             f"Volumes are in: {cell.path} (site {cell.site}). A server boots in its root "
                             f"volume's cell.")
    hints["target_cell"] = cell.path


def _with_image_mappings(conn: Connection, ctx: RequestContext, boot: BootRequest) -> BootRequest:
    """A boot from an image that defines block device mappings (a volume-backed server's snapshot) is a boot
    from those mappings merged with the request's (api/compute/volume_backed_images.py); any other, as asked."""
    ref = id_from_href(boot.image_ref or "")
    if not is_uuid(ref):
        return boot
    try:
        row = image_db.get_of(conn, ctx, ref.lower())
    except errors.ImageNotFound:
        return boot  # the lookup proper says so
    defined = volume_backed_images.image_mappings(str(row.id), row.properties or {})
    if defined is None:
        return boot
    return replace(boot, image_ref=None, block_device_mapping_v2=volume_backed_images.merged(
        defined, boot.block_device_mapping_v2))


def _lookups(conn: Connection, ctx: RequestContext,
             boot: BootRequest) -> tuple[BootRequest, dict[str, int], AnyRow, AnyRow | None, dict[str, Any]]:
    """(the boot with its image's mappings, quota limits, flavor, image, the image's boot snapshot) of a boot,
    with the checks between them in their order (no image for a boot from a volume)."""
    limits = quota.limits_of(conn, str(ctx.project))
    quota.check_metadata(limits, len(boot.metadata))
    quota.check_injected_files(limits, boot.personality)
    boot = _with_image_mappings(conn, ctx, boot)
    _check_bdms(boot)
    image_id = _image_id(boot)
    try:
        flavor = flavor_of(conn, ctx, id_from_href(boot.flavor_ref))
    except errors.FlavorNotFound:
        raise errors.Invalid("Invalid flavorRef provided.") from None
    if flavor.disabled:
        raise errors.Invalid(f"Flavor {flavor.id} is disabled.")
    if image_id is None:
        image_root = boot_volumes.image_root_bdm(boot.block_device_mapping_v2)
        if image_root is None:  # a boot from an existing volume (_root_volume_image)
            return boot, limits, flavor, None, {}
        return boot, limits, flavor, None, boot_volumes.new_root_image(
            conn, ctx, image_root, boot.image_ref, _count(boot.max_count, boot.min_count), flavor)
    try:
        image = image_db.get_of(conn, ctx, image_id)
        boot_image = image_db.boot_snapshot_of(conn, ctx, image)  # its kernel_id/ramdisk_id as ctx sees them
    except errors.ImageNotFound as exc:
        raise errors.Invalid(exc.message) from None
    return boot, limits, flavor, image, boot_image


async def resolve(cc: ComputeContext, ctx: RequestContext, boot: BootRequest) -> BuildSpec:
    min_count = boot.min_count
    max_count = _count(boot.max_count, min_count)
    if min_count > max_count:
        raise errors.Invalid("min_count must be <= max_count")
    if max_count > MAX_PER_REQUEST:
        raise errors.QuotaExceeded(resource="instances", requested=max_count, limit=MAX_PER_REQUEST)
    if boot.trusted_image_certificates:  # Nova without verify_glance_signatures
        raise errors.Invalid("Image certificate validation is not enabled.")
    if boot.hostname is not None and max_count > 1:  # Nova: one hostname cannot name several servers
        raise errors.Invalid("Cannot specify hostname when booting multiple instances.")
    hints = dict(boot.hints)
    group = None
    if hints.get("group") is not None:  # the first check that can fail, as before: the limits read cannot
        async with cc.engine.connect() as conn:
            group = await server_groups.for_boot(conn, ctx, hints)
    # the rest in one unit of work: one thread hop instead of ~20 through the AsyncEngine
    asked = boot
    boot, limits, flavor, image, boot_image = await cc.db.read(lambda conn: _lookups(conn, ctx, asked))
    if image is not None:
        _check_image(image, flavor)
    elif (snapshot_root := boot_volumes.snapshot_root_bdm(boot.block_device_mapping_v2)) is not None:
        boot_image, snapshot_cell = await boot_volumes.snapshot_root_image(cc, ctx, snapshot_root)
        _pin_to_volume_cell(cc, boot, hints, str(boot_image["root_volume_id"]), snapshot_cell)
    elif not boot_image:  # a boot from an existing volume (one made from an image: checked in _lookups)
        boot_image = await _root_volume_image(cc, ctx, boot, hints)
    snapshots = await boot_volumes.snapshot_sizes(cc, ctx, boot.block_device_mapping_v2) if max_count == 1 else {}
    boot_image = boot_volumes.with_blank_volumes(boot_image, boot_volumes.extra_volumes(
        boot.block_device_mapping_v2, max_count, snapshots))
    key_data = None
    if boot.key_name is not None:
        try:
            pair = await keypairs.get(cc.engine, str(ctx.user), boot.key_name)
            key_data = pair.public_key.strip()  # the key line (an imported file's newline is not part of it)
        except keypairs.KeypairNotFound:
            raise errors.Invalid("Invalid key_name provided.") from None
    az = boot.availability_zone or DEFAULT_AZ
    # a site, a cell or an aggregate's availability_zone is a zone (400 otherwise)
    placed = await aggregates.placement(cc.engine, cc.cluster, az, DEFAULT_AZ, flavor.extra_specs or {},
                                        cc.router.zone_exists)
    # networks, ports, security groups: 400 if unknown
    networking = await boot_networks.resolve(cc.router, ctx, boot.networks, boot.security_groups)
    return BuildSpec(name=boot.name, count=max_count, flavor=flavor_dict(flavor),
                     image=boot_image, metadata=dict(boot.metadata),
                     key_name=boot.key_name, key_data=key_data, availability_zone=az,
                     user_data=boot.user_data,
                     access_ipv4=boot.access_ipv4, access_ipv6=boot.access_ipv6, hints=hints,
                     min_count=min_count, networking=networking, limits=limits, group=group, placement=placed,
                     attributes=mappings.ServerAttributes(boot.reservation_id, boot.description, boot.hostname,
                                                          boot.availability_zone, boot.tags))


def _check_image(image: AnyRow, flavor: AnyRow) -> None:
    if image.status != "active":
        raise errors.Invalid(f"Image {image.id} is not active.")
    if image.min_ram and image.min_ram > flavor.ram:
        raise errors.Invalid("Flavor's memory is too small for requested image.")
    # the inspected virtual_size too: a small qcow2 may unfold into a disk far bigger than its file
    biggest = max(image.size or 0, image.virtual_size or 0)
    if flavor.disk and ((image.min_disk or 0) > flavor.disk or biggest > flavor.disk * (1 << 30)):
        raise errors.Invalid("Flavor's disk is too small for requested image.")


def instance_records(spec: BuildSpec, ctx: RequestContext, cell_path: str) -> list[dict[str, Any]]:
    now = utcnow_iso()
    records = []
    for i in range(spec.count):
        # Nova's multi_instance_display_name_template: "name-1", "name-2", ... when booting several
        name = spec.name if spec.count == 1 else f"{spec.name}-{i + 1}"
        records.append({
            "uuid": str(uuid.uuid4()), "name": name, "project_id": ctx.project, "user_id": ctx.user,
            "host": None, "flavor": dict(spec.flavor), "image": boot_volumes.for_instance(spec.image, i),
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
            **(spec.placement.spec_part() if spec.placement else {}),
            **server_groups.spec_part(spec.group)}


def server_admin_pass(server: dict[str, Any]) -> str:
    return str(server.get("adminPass") or "".join(secrets.choice(_PASSWORD_CHARS) for _ in range(12)))
