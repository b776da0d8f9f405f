"""The instance record's fields (declared in cells/objects/records.py InstanceRecord), states and times.

Times are ISO 8601 UTC strings with microseconds and a trailing Z
("2026-11-21T12:00:00.123456Z"); `utcnow_iso()` makes them.
"""
from __future__ import annotations

from datetime import UTC, datetime

from cells.objects.records import InstanceRecord, field_names

FIELDS = field_names(InstanceRecord)  # declared once, in cells/objects/records.py


class VmState:
    BUILDING = "building"
    ACTIVE = "active"
    STOPPED = "stopped"
    PAUSED = "paused"
    SUSPENDED = "suspended"
    ERROR = "error"
    DELETED = "deleted"
    RESCUED = "rescued"  # booted from a rescue image, its own disk attached second (issue 16)
    SOFT_DELETED = "soft-delete"  # deleted, kept until the reclaim interval passes (Nova's spelling)
    SHELVED = "shelved"  # stopped on its host, its disk kept as an image (issue 16)
    SHELVED_OFFLOADED = "shelved_offloaded"  # no host: only the shelve image holds its disk


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
    IMAGE_BACKUP = "image_backup"
    RESCUING, UNRESCUING = "rescuing", "unrescuing"
    SOFT_DELETING, RESTORING = "soft-deleting", "restoring"
    SHELVING, SHELVING_IMAGE_PENDING_UPLOAD, SHELVING_IMAGE_UPLOADING = (
        "shelving", "shelving_image_pending_upload", "shelving_image_uploading")
    SHELVING_OFFLOADING, UNSHELVING = "shelving_offloading", "unshelving"


class PowerState:  # Nova's numbers, shown as OS-EXT-STS:power_state
    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


def utcnow_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
