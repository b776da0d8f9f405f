"""Export targets: how a compute host reaches a volume's bytes.

    tgt    userspace iSCSI (a private tgtd per volume host), real TCP
    lio    kernel iSCSI through rtslib-fb (hosts with configfs only)
    nbd    NBD from one qemu-storage-daemon per volume host
    local  the file or block device itself, when volume and guest share a host

`export` is idempotent (a second call answers the same connection_info), so a
restarted worker re-establishes exports by calling it again. A connection_info
is {"driver_volume_type": "iscsi" | "nbd" | "local", "data": {..., "target": name}}:
the compute's driver (node/compute/volume_xml.py) turns it into a libvirt <disk>.
The network targets admit only the connector's address (`initiator_address`).
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any, Protocol

from cells import errors
from node.volume.backends import VolumeStorage

IQN_PREFIX = "iqn.2010-10.dev.cellcloud"


def iqn(volume_id: str) -> str:
    return f"{IQN_PREFIX}:volume-{volume_id}"


async def initiator_address(volume_id: str, connector: dict[str, Any]) -> str:
    """The compute host's IP address (a DNS name is resolved); never ALL."""
    given = str(connector.get("ip") or "")
    if not given or given.upper() == "ALL":  # never an export every address may log in to
        raise errors.VolumeExportFailed(volume_id=volume_id, reason="the connector names no compute host address "
                                                                    "to admit")
    try:
        return str(ipaddress.ip_address(given))
    except ValueError:
        try:
            return await asyncio.to_thread(socket.gethostbyname, given)
        except OSError as exc:
            raise errors.VolumeExportFailed(volume_id=volume_id, reason=f"cannot resolve {given}: {exc}") from None


class Target(Protocol):
    name: str
    formats: tuple[str, ...]  # the volume file formats it serves (a snapshotted file volume is a qcow2)

    def reaches(self, connector: dict[str, Any]) -> bool:
        """Whether a compute host described by `connector` ({"host": name}) can use this target."""

    async def start(self) -> None:
        """Start (or adopt) the daemon; VolumeBackendUnavailable when the host cannot run it."""

    async def export(self, storage: VolumeStorage, connector: dict[str, Any]) -> dict[str, Any]: ...

    async def unexport(self, volume_id: str) -> None:
        """Idempotent: an export that is not there is fine."""

    async def exported(self) -> set[str]:
        """Ids of the volumes exported now."""

    async def stop(self) -> None:
        """Tear down every export and the daemon this target started."""
