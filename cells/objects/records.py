"""The records that cross RPC, typed: Instance, Migration, Port and Volume at their wire versions.

Each record is declared here once, as a TypedDict: it stays the plain dict msgpack carries (no
conversion on the hot path), and mypy checks every key a reader or writer names. The DB layer
builds them from rows (cells/db/instances.py, migration_records.py, volumes.py, cells/network/
resources.py), the RPC stubs return them (cells/rpcapi), the API renders them (api/compute/views.py).

The versioned objects (cells/objects/versions.py) take their field lists and kinds from these
declarations (`wire_kinds`), so a field added here without a version bump fails the fingerprint
test (tests/unit/test_object_versions.py). Port and Volume are not versioned on the wire: a Port is
what Neutron's v2.0 API answers, a Volume what Cinder's v3 `volume` record holds plus the cell's
own columns.
"""
from __future__ import annotations

import types
from typing import Any, NotRequired, TypedDict, Union, cast, get_args, get_origin, get_type_hints, is_typeddict


class Flavor(TypedDict):
    id: str
    name: str
    vcpus: int
    ram: int  # MiB
    disk: int  # GiB
    ephemeral: int
    swap: int  # MiB
    extra_specs: dict[str, str]


class BootImage(TypedDict, total=False):
    """The image as it was at boot time (keys an image without them lacks are absent)."""
    id: str
    name: str
    checksum: str | None
    os_hash_algo: str | None
    os_hash_value: str | None
    size: int | None
    disk_format: str | None
    container_format: str | None
    properties: dict[str, Any]


class Fault(TypedDict):
    code: int
    message: str
    details: str
    created: str  # ISO 8601


# Nova's server address entry: {"addr", "version", "OS-EXT-IPS:type", "OS-EXT-IPS-MAC:mac_addr"}
Address = TypedDict("Address", {"addr": str, "version": int, "OS-EXT-IPS:type": str,
                                "OS-EXT-IPS-MAC:mac_addr": str})


class InstanceRecord(TypedDict):
    """Instance 1.3. Times are ISO 8601 UTC strings with microseconds and a trailing Z."""
    uuid: str
    name: str
    project_id: str
    user_id: str | None
    host: str | None  # compute host name, None until scheduled
    flavor: Flavor
    image: BootImage | None  # None: booted from a volume
    vm_state: str
    task_state: str | None
    power_state: int
    created_at: str
    updated_at: str
    launched_at: str | None
    terminated_at: str | None
    deleted: bool
    metadata: dict[str, str]
    key_name: str | None
    availability_zone: str | None
    user_data: str | None  # base64 text
    access_ipv4: str | None
    access_ipv6: str | None
    progress: int
    fault: Fault | None
    addresses: dict[str, list[Address]]  # network name -> its addresses
    cell: str | None  # routing path of the owning cell
    old_flavor: Flavor | None  # 1.1: the flavor before a resize that awaits confirm
    key_data: str | None  # 1.2: the OpenSSH public key of key_name as it was at boot (metadata service)
    locked_by: str | None  # 1.3: who locked the server, "owner" | "admin" (Nova's), or None
    locked_reason: str | None  # 1.3: why, as the locker said (Nova 2.73), or None


class ShownInstance(InstanceRecord):
    """The record a server view renders: the instance and what instance_show (or the API, for a
    listing) adds to it. Every added key may be absent, so any InstanceRecord is one (`shown`)."""
    volumes_attached: NotRequired[list[str]]  # volume ids, oldest attachment first
    security_groups: NotRequired[list[str]]  # its ports' group names, where the cell has a network controller
    # what the API adds from its instance mapping and directory (api/compute/service.py for_views)
    reservation_id: NotRequired[str | None]  # 2.3
    launch_index: NotRequired[int | None]  # 2.3
    description: NotRequired[str | None]  # 2.19
    hostname: NotRequired[str | None]  # 2.90
    pinned_availability_zone: NotRequired[str | None]  # 2.96
    host_status: NotRequired[str]  # 2.16, admins
    server_groups: NotRequired[list[str]]  # 2.71, one server's view
    tags: NotRequired[list[str]]  # 2.26


def shown(record: InstanceRecord) -> ShownInstance:
    """The record as a server view's input (nothing added yet: ShownInstance's extra keys are optional)."""
    return cast(ShownInstance, record)


class MigrationRecord(TypedDict):
    """Migration 1.0: one resize, cold migration or evacuation."""
    uuid: str
    instance_uuid: str
    migration_type: str  # resize | migration | evacuation
    status: str
    source_host: str | None
    dest_host: str | None
    old_flavor: Flavor
    new_flavor: Flavor
    old_vm_state: str
    created_at: str
    updated_at: str


class FixedIp(TypedDict):
    subnet_id: str
    ip_address: str


PortRecord = TypedDict("PortRecord", {
    "id": str, "name": str, "network_id": str, "tenant_id": str, "project_id": str, "mac_address": str,
    "fixed_ips": list[FixedIp], "device_id": str, "device_owner": str, "status": str, "admin_state_up": bool,
    "security_groups": list[str], "binding:host_id": str, "binding:vif_type": str, "binding:vnic_type": str,
    "binding:vif_details": dict[str, Any], "binding:profile": dict[str, Any],
    "allowed_address_pairs": list[Any], "extra_dhcp_opts": list[Any], "port_security_enabled": bool,
    "description": str, "tags": list[str], "revision_number": int, "created_at": str, "updated_at": str,
})
PortRecord.__doc__ = "A Neutron v2.0 port as the cell's network controller answers it."


class AttachmentRecord(TypedDict):
    id: str
    volume_id: str
    instance_uuid: str
    instance_host: str | None
    device: str | None  # /dev/vdb: a hint, guests name disks in discovery order
    status: str  # attaching | attached | detaching
    connection_info: dict[str, Any] | None  # what the volume host's export answered
    created_at: str
    updated_at: str


class VolumeRecord(TypedDict):
    """A volume of the cell DB with its attachments (Cinder's fields plus the cell's)."""
    id: str
    project_id: str
    user_id: str | None
    name: str | None
    description: str | None
    size: int  # GiB
    status: str
    host: str | None  # the volume host holding the data
    backend: str | None  # file | lvm
    disk_format: str | None  # raw | qcow2
    availability_zone: str
    volume_type: str | None
    metadata: dict[str, str]
    bootable: bool
    error: str | None
    created_at: str
    updated_at: str
    deleted: bool
    snapshot_id: str | None  # what it was made from (Cinder's snapshot_id / source_volid)
    source_volid: str | None
    volume_backend_name: str | None  # what its volume type asks for (None: any volume host)
    image: BootImage | None  # the image it was made from, as the creating project saw it
    image_metadata: dict[str, str] | None  # volume_image_metadata as a user changed it (None: from `image`)
    capabilities: dict[str, str] | None  # what its type asks of a volume host (vendor_name, storage_protocol)
    attachments: list[AttachmentRecord]
    cell: str | None


def _kind(hint: Any) -> str:
    """A declared type as a versioned object's field kind: str, int, bool, dict, list or any; "?" = nullable."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        rest = [a for a in get_args(hint) if a is not type(None)]
        inner = _kind(rest[0]) if len(rest) == 1 else "any"
        return inner if len(rest) == len(get_args(hint)) else f"{inner}?"
    if is_typeddict(hint) or origin is dict or hint is dict:
        return "dict"
    if origin is list or hint is list:
        return "list"
    if hint in (str, int, bool):
        return str(hint.__name__)
    return "any"


def wire_kinds(record: type) -> dict[str, str]:
    """Field name -> kind of a record, in declaration order (what VersionedObject.fields holds)."""
    return {name: _kind(hint) for name, hint in get_type_hints(record).items()}


def field_names(record: type) -> tuple[str, ...]:
    return tuple(get_type_hints(record))
