"""The instance record as it crosses RPC (a plain dict with these keys).

Times are ISO 8601 UTC strings with microseconds and a trailing Z
("2026-11-21T12:00:00.123456Z"); `utcnow_iso()` makes them.
"""
from __future__ import annotations

from datetime import UTC, datetime

FIELDS = (
    "uuid", "name", "project_id", "user_id",
    "host",  # compute host name, None until scheduled
    "flavor",  # {"id", "name", "vcpus", "ram", "disk", "ephemeral", "swap", "extra_specs"}
    "image",  # {"id", "name", "checksum", "os_hash_algo", "os_hash_value", "size", "disk_format",
              #  "container_format", "properties"} as it was at boot time
    "vm_state", "task_state", "power_state",
    "created_at", "updated_at", "launched_at", "terminated_at", "deleted",
    "metadata",  # {str: str}
    "key_name", "availability_zone", "user_data",  # user_data: base64 text or None
    "access_ipv4", "access_ipv6", "progress",
    "fault",  # None or {"code": int, "message": str, "details": str, "created": iso}
    "addresses",  # {"net-name": [{"addr", "version", "OS-EXT-IPS:type", "OS-EXT-IPS-MAC:mac_addr"}]}
    "cell",  # routing path of the owning cell
    "old_flavor",  # the flavor before a resize that awaits confirm, else None (Instance 1.1)
    "key_data",  # the OpenSSH public key of key_name as it was at boot, for the metadata service (Instance 1.2)
    "locked_by",  # None, or who locked the server: "owner" | "admin" (Nova's; Instance 1.3)
    "locked_reason",  # why, as the locker said (Nova 2.73), or None (Instance 1.3)
)


class VmState:
    BUILDING = "building"
    ACTIVE = "active"
    STOPPED = "stopped"
    PAUSED = "paused"
    SUSPENDED = "suspended"
    ERROR = "error"
    DELETED = "deleted"


class TaskState:
    """Every task state, named once (Nova's nova/compute/task_states.py spellings)."""
    SCHEDULING = "scheduling"
    BLOCK_DEVICE_MAPPING = "block_device_mapping"
    NETWORKING = "networking"
    SPAWNING = "spawning"
    DELETING = "deleting"
    POWERING_OFF, POWERING_ON = "powering-off", "powering-on"
    PAUSING, UNPAUSING, SUSPENDING, RESUMING = "pausing", "unpausing", "suspending", "resuming"
    REBOOTING, REBOOT_PENDING, REBOOT_STARTED = "rebooting", "reboot_pending", "reboot_started"
    REBOOTING_HARD, REBOOT_PENDING_HARD, REBOOT_STARTED_HARD = (
        "rebooting_hard", "reboot_pending_hard", "reboot_started_hard")
    REBUILDING, REBUILD_BLOCK_DEVICE_MAPPING, REBUILD_SPAWNING = (
        "rebuilding", "rebuild_block_device_mapping", "rebuild_spawning")
    RESIZE_PREP, RESIZE_MIGRATING, RESIZE_MIGRATED, RESIZE_FINISH = (
        "resize_prep", "resize_migrating", "resize_migrated", "resize_finish")
    RESIZE_REVERTING, RESIZE_CONFIRMING = "resize_reverting", "resize_confirming"
    UPDATING_PASSWORD, MIGRATING = "updating_password", "migrating"
    IMAGE_SNAPSHOT, IMAGE_PENDING_UPLOAD, IMAGE_UPLOADING = "image_snapshot", "image_pending_upload", "image_uploading"


class PowerState:  # Nova's numbers, shown as OS-EXT-STS:power_state
    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


def utcnow_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
