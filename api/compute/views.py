"""Nova v2.1 views of servers, built from instance records (cells/objects/records.py), at the
microversion the request negotiated (the `version` every view takes: the ComputeContext's).

Exactly the schema's keys at that version (Nova's api-microversion-history, what Tempest's response
schemas check). The admin-only OS-EXT-SRV-ATTR:* keys and host_status appear for admins.
  2.3   OS-EXT-SRV-ATTR: reservation_id, launch_index, hostname, kernel_id, ramdisk_id, root_device_name,
        user_data (admins); delete_on_termination in volumes_attached
  2.9   locked                   2.16 host_status (admins)      2.19 description
  (2.38: an unknown status filter is a 400: api/compute/servers.py)
  2.26  tags                     2.47 the flavor itself (original_name, sizes, extra_specs)
  2.63  trusted_image_certificates (null: none verified here)
  2.71  server_groups (show, update, rebuild)                   2.73 locked_reason
  2.75  update and rebuild answer the whole server view          2.90 OS-EXT-SRV-ATTR:hostname for everyone
  2.96  pinned_availability_zone
Records carry the API-side attributes (api/compute/mappings.py ATTRIBUTES) and host_status when the
service layer added them (service.for_views); absent ones show as Nova shows an unset value.

The status comes from cells.lifecycle.status (Nova's status_from_state).
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from api.compute.microversions import Microversion
from api.timeutil import iso_naive_micro, iso_seconds
from cells.lifecycle import status
from cells.objects.records import Fault, InstanceRecord, ShownInstance

DEFAULT_AZ = "nova"

# API status -> the vm_states that can show it (for the list filter; the exact
# status is re-checked on each record, since some statuses depend on task_state)
_VM_STATES_OF: dict[str, tuple[str, ...]] = {
    "ACTIVE": ("active",), "BUILD": ("building",), "SHUTOFF": ("stopped",), "ERROR": ("error",),
    "DELETED": ("deleted",), "PAUSED": ("paused",), "SUSPENDED": ("suspended",), "RESCUE": ("rescued",),
    "VERIFY_RESIZE": ("resized",), "REVERT_RESIZE": ("resized",), "SOFT_DELETED": ("soft-delete",),
    "SHELVED": ("shelved",), "SHELVED_OFFLOADED": ("shelved_offloaded",),
    "REBOOT": ("active",), "HARD_REBOOT": ("active",), "PASSWORD": ("active",),
    "MIGRATING": ("active", "paused"), "RESIZE": ("active", "stopped"), "REBUILD": ("active", "stopped", "error"),
}
_PROGRESS_STATUSES = {"ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING"}
_FAULT_STATUSES = {"ERROR", "DELETED"}


def vm_states_for(statuses: list[str]) -> list[str]:
    """The vm_states that can show one of `statuses` (for the list filter)."""
    return sorted({vm for s in statuses for vm in _VM_STATES_OF.get(s.upper(), ())})


def record_status(record: InstanceRecord) -> str:
    if record.get("deleted"):
        return "DELETED"
    return status(record.get("vm_state") or "", record.get("task_state"))


def links(base: str, collection: str, ident: str) -> list[dict[str, str]]:
    return [{"rel": "self", "href": f"{base}/compute/v2.1/{collection}/{ident}"},
            {"rel": "bookmark", "href": f"{base}/compute/{collection}/{ident}"}]


def _bookmark(base: str, collection: str, ident: str) -> list[dict[str, str]]:
    return [{"rel": "bookmark", "href": f"{base}/compute/{collection}/{ident}"}]


def host_id(project_id: str | None, host: str | None) -> str:
    """Nova's hostId: stable per (project, host), and reveals no host name."""
    if not host:
        return ""
    return hashlib.sha224((str(project_id) + host).encode("utf-8")).hexdigest()


def server_brief(base: str, record: InstanceRecord) -> dict[str, Any]:
    return {"id": record["uuid"], "name": record.get("name") or "", "links": links(base, "servers", record["uuid"])}


def _fault(fault: Fault | None, is_admin: bool) -> dict[str, Any] | None:
    if not fault:
        return None
    out = {"code": fault.get("code", 500), "created": iso_seconds(fault.get("created")),
           "message": fault.get("message", "")}
    # Nova hides the details of internal (500) faults from non-admins
    if fault.get("details") and (is_admin or out["code"] != 500):
        out["details"] = fault["details"]
    return out


ROOT_DEVICE_NAME = "/dev/vda"  # the libvirt driver's root disk (node/compute domain XML: virtio)


def hostname_of(record: ShownInstance) -> str:
    """The server's hostname: as set (2.90), else Nova's sanitized display name."""
    if record.get("hostname"):
        return str(record["hostname"])
    name = str(record.get("name") or "").lower().replace(" ", "-").replace("_", "-")
    name = "".join(c for c in name if c.isascii() and (c.isalnum() or c in ".-"))
    name = name.strip(".-")[:63].rstrip(".-")
    return name or f"server-{record.get('uuid', '')}"


def flavor_view(base: str, flavor: Mapping[str, Any], version: Microversion) -> dict[str, Any]:
    """The server's flavor: a link to it before 2.47, the flavor as the server was given it from 2.47."""
    if version < (2, 47):
        return {"id": str(flavor.get("id", "")), "links": _bookmark(base, "flavors", str(flavor.get("id", "")))}
    return {"original_name": str(flavor.get("name") or flavor.get("id") or ""),
            "vcpus": int(flavor.get("vcpus") or 0), "ram": int(flavor.get("ram") or 0),
            "disk": int(flavor.get("disk") or 0), "ephemeral": int(flavor.get("ephemeral") or 0),
            "swap": int(flavor.get("swap") or 0),
            "extra_specs": {str(k): str(v) for k, v in (flavor.get("extra_specs") or {}).items()}}


def _versioned(view: dict[str, Any], record: ShownInstance, is_admin: bool, version: Microversion) -> None:
    """The keys later microversions added to every server view (detail, show, update, rebuild)."""
    if version >= (2, 9):
        view["locked"] = bool(record.get("locked_by") or record.get("locked"))
    if version >= (2, 19):
        view["description"] = record.get("description")
    if version >= (2, 26):
        view["tags"] = list(record.get("tags") or [])
    if version >= (2, 63):
        view["trusted_image_certificates"] = None
    if version >= (2, 73):
        view["locked_reason"] = record.get("locked_reason")
    if version >= (2, 96):
        view["pinned_availability_zone"] = record.get("pinned_availability_zone")


def _extended_attributes(view: dict[str, Any], record: ShownInstance, is_admin: bool,
                         version: Microversion) -> None:
    if is_admin:
        view["OS-EXT-SRV-ATTR:host"] = record.get("host")
        view["OS-EXT-SRV-ATTR:hypervisor_hostname"] = record.get("host")
        view["OS-EXT-SRV-ATTR:instance_name"] = record.get("instance_name") or f"instance-{record['uuid']}"
    if is_admin and version >= (2, 3):
        props = (record.get("image") or {}).get("properties") or {}
        view.update({
            "OS-EXT-SRV-ATTR:reservation_id": record.get("reservation_id") or "",
            "OS-EXT-SRV-ATTR:launch_index": int(record.get("launch_index") or 0),
            "OS-EXT-SRV-ATTR:kernel_id": props.get("kernel_id") or "",
            "OS-EXT-SRV-ATTR:ramdisk_id": props.get("ramdisk_id") or "",
            "OS-EXT-SRV-ATTR:root_device_name": ROOT_DEVICE_NAME,
            "OS-EXT-SRV-ATTR:user_data": record.get("user_data")})
    if (is_admin and version >= (2, 3)) or version >= (2, 90):
        view["OS-EXT-SRV-ATTR:hostname"] = hostname_of(record)
    if is_admin and version >= (2, 16):
        view["host_status"] = record.get("host_status") or ""


def _deleted_with_it(image: Any, volume_id: str) -> bool:
    """Only a volume the server booted with, with delete_on_termination, goes with it (attached ones stay)."""
    if not isinstance(image, dict):
        return False
    if image.get("root_volume_id") == volume_id:
        return bool(image.get("delete_on_termination"))
    return any(isinstance(e, dict) and e.get("id") == volume_id and bool(e.get("delete_on_termination"))
               for e in image.get("extra_volumes") or ())


def server_detail(base: str, record: ShownInstance, is_admin: bool, version: Microversion) -> dict[str, Any]:
    st = record_status(record)
    image = record.get("image") or {}
    flavor = record.get("flavor") or {}
    view: dict[str, Any] = {
        "id": record["uuid"],
        "name": record.get("name") or "",
        "status": st,
        "tenant_id": record.get("project_id") or "",
        "user_id": record.get("user_id") or "",
        "metadata": dict(record.get("metadata") or {}),
        "hostId": host_id(record.get("project_id"), record.get("host")),
        "image": {"id": image["id"], "links": _bookmark(base, "images", image["id"])} if image.get("id") else "",
        "flavor": flavor_view(base, flavor, version),
        "created": iso_seconds(record.get("created_at")),
        "updated": iso_seconds(record.get("updated_at") or record.get("created_at")),
        "addresses": dict(record.get("addresses") or {}),
        "accessIPv4": record.get("access_ipv4") or "",
        "accessIPv6": record.get("access_ipv6") or "",
        "links": links(base, "servers", record["uuid"]),
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": record.get("availability_zone") or DEFAULT_AZ,
        "config_drive": "",
        "key_name": record.get("key_name"),
        "OS-SRV-USG:launched_at": iso_naive_micro(record.get("launched_at")),
        "OS-SRV-USG:terminated_at": iso_naive_micro(record.get("terminated_at")),
        "OS-EXT-STS:task_state": record.get("task_state"),
        "OS-EXT-STS:vm_state": record.get("vm_state"),
        "OS-EXT-STS:power_state": int(record.get("power_state") or 0),
        "os-extended-volumes:volumes_attached": [
            {"id": v, "delete_on_termination": _deleted_with_it(image, v)} if version >= (2, 3) else {"id": v}
            for v in record.get("volumes_attached") or ()],
    }
    if record.get("security_groups"):  # as Nova: only a server whose ports have groups shows the key
        view["security_groups"] = [{"name": n} for n in record["security_groups"]]
    if st in _PROGRESS_STATUSES:
        view["progress"] = int(record.get("progress") or 0)
    if st in _FAULT_STATUSES:
        fault = _fault(record.get("fault"), is_admin)
        if fault is not None:
            view["fault"] = fault
    _extended_attributes(view, record, is_admin, version)
    _versioned(view, record, is_admin, version)
    return view


def server_show(base: str, record: ShownInstance, is_admin: bool, version: Microversion) -> dict[str, Any]:
    """GET /servers/{id}: the detail view, and from 2.71 the server's group (not in listings)."""
    view = server_detail(base, record, is_admin, version)
    if version >= (2, 71):
        view["server_groups"] = list(record.get("server_groups") or [])
    return view


# Nova's update and rebuild responses before 2.75: the server view without the extensions' keys (no AZ,
# config drive, extended attributes or status, key name, usage times, groups or volumes), basic addresses
_UPDATE_KEYS = ("id", "name", "status", "tenant_id", "user_id", "metadata", "hostId", "image", "flavor", "created",
                "updated", "accessIPv4", "accessIPv6", "links", "OS-DCF:diskConfig", "progress", "fault",
                "locked", "description", "tags", "trusted_image_certificates", "locked_reason",
                "pinned_availability_zone")


def basic_addresses(record: InstanceRecord) -> dict[str, list[dict[str, Any]]]:
    """Nova's basic address view: each address as version and addr only (the server view adds type and MAC)."""
    return {net: [{"version": ip.get("version"), "addr": ip.get("addr")} for ip in ips or ()]
            for net, ips in (record.get("addresses") or {}).items()}


def server_updated(base: str, record: ShownInstance, is_admin: bool, version: Microversion,
                   rebuilt: bool = False) -> dict[str, Any]:
    """PUT /servers/{id} and rebuild's server: the update keys before 2.75 (rebuild: with its key name
    from 2.54 and user data from 2.57), the whole server view from 2.75; 2.71's server_groups in both."""
    if version >= (2, 75):
        view = server_show(base, record, is_admin, version)
        if rebuilt:  # Nova answers user_data for everyone, not only the admin's extended attribute
            view.pop("OS-EXT-SRV-ATTR:user_data", None)
    else:
        detail = server_detail(base, record, is_admin, version)
        view = {k: detail[k] for k in _UPDATE_KEYS if k in detail}
        view["addresses"] = basic_addresses(record)
        if version >= (2, 71):
            view["server_groups"] = list(record.get("server_groups") or [])
        if rebuilt and version >= (2, 54):
            view["key_name"] = record.get("key_name")
    if rebuilt and version >= (2, 57):
        view["user_data"] = record.get("user_data")
    return view


def server_created(base: str, uuid: str, admin_pass: str, groups: Any = None) -> dict[str, Any]:
    """Nova answers the groups the request named (the default group when it named none)."""
    return {"server": {"id": uuid, "links": links(base, "servers", uuid), "OS-DCF:diskConfig": "MANUAL",
                       "adminPass": admin_pass, "security_groups": groups or [{"name": "default"}]}}
