"""One error tree for every service. The wire carries `code` and `kwargs`;
the receiving side rebuilds the same class with `from_wire`."""
from __future__ import annotations

from typing import Any


class CellcloudError(Exception):
    code = "internal"
    http_status = 500
    msg = "An internal error occurred"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.msg.format(**kwargs)
            except (KeyError, IndexError):
                message = self.msg
        self.message = message
        super().__init__(message)

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "kwargs": _plain(self.kwargs)}


def _plain(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in kwargs.items()}


_BY_CODE: dict[str, type[CellcloudError]] = {}


def _register(cls: type[CellcloudError]) -> type[CellcloudError]:
    _BY_CODE[cls.code] = cls
    return cls


def from_wire(err: dict[str, Any]) -> CellcloudError:
    cls = _BY_CODE.get(str(err.get("code")), CellcloudError)
    exc = cls(str(err.get("message", "")), **dict(err.get("kwargs") or {}))
    if cls is CellcloudError:
        exc.code = str(err.get("code", "internal"))
    return exc


@_register
class Invalid(CellcloudError):
    code, http_status, msg = "invalid", 400, "Invalid input: {reason}"


@_register
class NotFound(CellcloudError):
    code, http_status, msg = "not_found", 404, "Resource not found"


@_register
class Conflict(CellcloudError):
    code, http_status, msg = "conflict", 409, "Conflict: {reason}"


@_register
class Forbidden(CellcloudError):
    code, http_status, msg = "forbidden", 403, "Policy does not allow this action"


@_register
class Unauthorized(CellcloudError):
    code, http_status, msg = "unauthorized", 401, "The request you have made requires authentication."


@_register
class QuotaExceeded(CellcloudError):
    code, http_status, msg = "quota_exceeded", 403, "Quota exceeded for {resource}: requested {requested}, limit {limit}"


@_register
class InstanceNotFound(NotFound):
    code, msg = "instance_not_found", "Instance {instance_id} could not be found."


@_register
class FlavorNotFound(NotFound):
    code, msg = "flavor_not_found", "Flavor {flavor_id} could not be found."


@_register
class ImageNotFound(NotFound):
    code, msg = "image_not_found", "Image {image_id} could not be found."


@_register
class InstanceInvalidState(Conflict):
    code, msg = "instance_invalid_state", "Cannot '{action}' instance {instance_id} while it is in {attr} {state}"


@_register
class InstanceIsLocked(Conflict):
    code, msg = "instance_is_locked", "Instance {instance_uuid} is locked"


@_register
class NoValidHost(CellcloudError):
    code, http_status, msg = "no_valid_host", 500, "No valid host was found. {reason}"


@_register
class ImageChecksumMismatch(CellcloudError):
    code, msg = "image_checksum_mismatch", "Image {image_id} failed checksum verification: expected {expected}, got {actual}"


@_register
class SpawnFailed(CellcloudError):
    code, msg = "spawn_failed", "Failed to spawn instance {instance_id}: {reason}"


@_register
class DiskCopyFailed(CellcloudError):
    code, msg = "disk_copy_failed", "Could not copy the disks of instance {instance_id}: {reason}"


# --- messaging -----------------------------------------------------------

@_register
class RpcError(CellcloudError):
    code, http_status, msg = "rpc_error", 503, "Messaging failure: {reason}"


@_register
class RpcTimeout(RpcError):
    code, msg = "rpc_timeout", "No reply to {method} from {topic} within {timeout}s"


@_register
class NoLiveMember(RpcError):
    code, msg = "no_live_member", "No live member serves topic {topic}"


@_register
class DeadlineExpired(RpcError):
    code, msg = "deadline_expired", "Deadline of {method} passed before it could run"


@_register
class UnknownMethod(RpcError):
    code, http_status, msg = "unknown_method", 500, "Method {method} is not part of this service's RPC surface"


# --- compute node ---------------------------------------------------------

@_register
class HypervisorUnavailable(CellcloudError):
    code, http_status, msg = "hypervisor_unavailable", 503, "Hypervisor {uri} cannot be used on this host: {reason}"


@_register
class ImageDownloadFailed(CellcloudError):
    code, http_status, msg = "image_download_failed", 502, "Could not download image {image_id}: {reason}"



# --- cell services (conductor, scheduler, cell DB) -------------------------

@_register
class MarkerNotFound(Invalid):
    code, msg = "marker_not_found", "Marker {marker} could not be found."


@_register
class UnexpectedTaskState(Conflict):
    code = "unexpected_task_state"
    msg = "Unexpected task state for instance {instance_id}: expecting {expected} but the actual state is {actual}"


@_register
class UnexpectedDeletingTaskState(UnexpectedTaskState):
    code = "unexpected_deleting_task_state"


@_register
class MaxRetriesExceeded(NoValidHost):
    code, msg = "max_retries_exceeded", "Exceeded maximum number of retries. {reason}"


@_register
class DBFull(CellcloudError):
    """A write hit a full disk: the request fails (507, as WebDAV's Insufficient Storage), the service goes on."""
    code, http_status = "db_full", 507
    msg = "The database {db} is out of disk space; the request was not carried out ({reason})"


@_register
class LowDiskSpace(CellcloudError):
    """Below the free-space watermark (cluster.yaml db_settings.min_free_mb): new builds are refused first."""
    code, http_status = "low_disk_space", 507
    msg = ("Not enough free disk space for {what}: {free} MiB free in {where}, at least {needed} MiB must stay "
           "free. New servers are refused until space is freed.")


@_register
class DBBusy(CellcloudError):
    code, http_status = "db_busy", 503
    msg = "The database {db} stayed locked by another writer for {seconds} s; try again"


@_register
class DBSchemaTooNew(CellcloudError):
    code, msg = "db_schema_too_new", "Cell DB schema version {found} is newer than this code supports ({supported})"


@_register
class DBSchemaBehind(CellcloudError):
    code = "db_schema_behind"
    msg = "The {what} is at schema revision {found}, behind this code's {head}: run `cellctl db upgrade` first"


# --- networks (cells/network, node/network) ----------------------------------

@_register
class NetworkNotFound(NotFound):
    code, msg = "network_not_found", "Network {net_id} could not be found."


@_register
class SubnetNotFound(NotFound):
    code, msg = "subnet_not_found", "Subnet {subnet_id} could not be found."


@_register
class PortNotFound(NotFound):
    code, msg = "port_not_found", "Port {port_id} could not be found."


@_register
class SecurityGroupNotFound(NotFound):
    code, msg = "security_group_not_found", "Security group {id} does not exist"


@_register
class SecurityGroupRuleNotFound(NotFound):
    code, msg = "security_group_rule_not_found", "Security group rule {id} does not exist"


@_register
class IpAddressExhausted(Conflict):
    code, msg = "ip_address_exhausted", "No more IP addresses available on network {net_id}."


@_register
class NetworkInUse(Conflict):
    code, msg = "network_in_use", "Unable to complete operation on network {net_id}. There are one or more ports still in use on the network."


@_register
class RouterNotFound(NotFound):
    code, msg = "router_not_found", "Router {router_id} could not be found"


@_register
class FloatingIPNotFound(NotFound):
    code, msg = "floatingip_not_found", "Floating IP {floatingip_id} could not be found"


@_register
class RouterInUse(Conflict):
    code, msg = "router_in_use", "Router {router_id} {reason}"


@_register
class RevisionNumberConstraintFailed(CellcloudError):
    """Neutron's If-Match: revision_number=N on an update of a resource another update moved on."""
    code, http_status, msg = "revision_number_constraint_failed", 412, \
        "Constrained to {expected}, but current revision is {current}"


@_register
class OverQuota(Conflict):
    """Neutron's 409 OverQuota."""
    code, msg = "over_quota", "Quota exceeded for resources: ['{resource}']."


@_register
class ComputeHostDead(CellcloudError):
    """A step on a compute host given up because the host was declared dead (or fenced)."""
    code, http_status, msg = "compute_host_dead", 503, "Compute host {host} is {state}: {what} was given up"


@_register
class HostNetworkUnavailable(CellcloudError):
    code, http_status, msg = "host_network_unavailable", 503, "Host networking cannot be used here: {reason}"


# --- volumes (issue 6) ------------------------------------------------------

@_register
class VolumeNotFound(NotFound):
    code, msg = "volume_not_found", "Volume {volume_id} could not be found."


@_register
class VolumeInvalidState(Invalid):
    """Cinder answers a wrong volume status with 400 (InvalidVolume)."""
    code, msg = "volume_invalid_state", "Invalid volume: {reason}"


@_register
class SnapshotNotFound(NotFound):
    code, msg = "snapshot_not_found", "Snapshot {snapshot_id} could not be found."


@_register
class SnapshotInvalidState(Invalid):
    """Cinder's InvalidSnapshot (400)."""
    code, msg = "snapshot_invalid_state", "Invalid snapshot: {reason}"


@_register
class MetadataItemNotFound(NotFound):
    """Cinder's VolumeMetadataNotFound / SnapshotMetadataNotFound (404)."""
    code, msg = "metadata_item_not_found", "{what} {id} has no metadata with key {key}."


@_register
class VolumeAttachmentNotFound(NotFound):
    """Cinder's VolumeAttachmentNotFound (404): an attachment the volume does not have."""
    code, msg = "volume_attachment_not_found", "Volume attachment could not be found: {reason}"


@_register
class SnapshotIsBusy(Invalid):
    """Cinder's SnapshotIsBusy (400): a volume made from the snapshot still reads through it."""
    code, msg = "snapshot_is_busy", "deleting snapshot {snapshot_name} that has dependent volumes"


@_register
class VolumeAttachConflict(Conflict):
    code, msg = "volume_attach_conflict", "Volume {volume_id} cannot be attached: {reason}"


@_register
class VolumeBackendUnavailable(CellcloudError):
    """A storage backend or export target this host cannot run (no device-mapper, no configfs...)."""
    code, http_status, msg = "volume_backend_unavailable", 503, "Volume {kind} {name} cannot be used on this host: {reason}"


@_register
class VolumeExportFailed(CellcloudError):
    code, http_status, msg = "volume_export_failed", 500, "Could not export volume {volume_id}: {reason}"


@_register
class VolumeUploadFailed(CellcloudError):
    code, http_status, msg = "volume_upload_failed", 500, "Could not upload volume {volume_id} to an image: {reason}"


@_register
class VolumeAttachFailed(CellcloudError):
    code, http_status, msg = "volume_attach_failed", 500, "Could not attach volume {volume_id} to {instance_id}: {reason}"


# --- scale-out, versions and moves (issue 8) --------------------------------

@_register
class MemberGone(RpcError):
    code, msg = "member_gone", "{member} left the directory before answering {method}"


@_register
class CellsUnreachable(RpcError):
    """No cell refused a boot: each was unreachable (a conductor restarting). 503: retry later."""
    code, msg = "cells_unreachable", "No cell could take the server now: {reason}"


@_register
class UnsupportedVersion(RpcError):
    code, http_status = "unsupported_version", 409
    msg = "{peer} speaks {what} {have}; {need} is needed (upgrade it first)"


# --- RPC authorization (issue 13) -----------------------------------------------

@_register
class RpcForbidden(Forbidden):
    """The calling principal (from its CURVE key) may not call this method, or not for this target."""
    code, msg = "rpc_forbidden", "{principal} may not call {method}: {reason}"


@_register
class ServiceBusy(RpcError):
    code, msg = "service_busy", "{service} is busy ({waiting} requests waiting): try again later"


# --- remote consoles (issue 16) ---------------------------------------------------

@_register
class ConsoleTypeUnavailable(Invalid):
    """Nova's 400 for a console this server's hypervisor does not give (libvirt's test driver has none)."""
    code, msg = "console_type_unavailable", "Unavailable console type {console_type}."


@_register
class ConsoleTypeInvalid(Invalid):
    code, msg = "console_type_invalid", "Invalid console type {console_type}"


@_register
class InstanceNotReady(Conflict):
    """Nova's 409 for a console of a server that is not running."""
    code, msg = "instance_not_ready", "Instance {instance_id} is not ready"


@_register
class ConsoleSessionGone(NotFound):
    """The console session ended: the guest stopped, another session took the console, or it sat idle."""
    code, msg = "console_session_gone", "Console session {session} of instance {instance_id} has ended"
