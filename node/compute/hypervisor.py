"""What the libvirt driver's collaborators (power.py GuestPower, disks.py GuestDisks, hotplug.py
VolumeHotplug) need of it: the connection, its bounded pool of blocking calls, and where the
instances' files live. LibvirtDriver (driver.py) is the one implementation."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import libvirt  # type: ignore[import-untyped]

T = TypeVar("T")


class Hypervisor(Protocol):
    is_test: bool  # libvirt's test hypervisor (test:///): no guest runs, nothing hot-plugs
    call_timeout: float
    instances_dir: str

    @property
    def conn(self) -> libvirt.virConnect: ...

    def _run(self, func: Callable[..., T], *args: Any, timeout: float | None = None) -> Awaitable[T]:
        """Run a blocking call in the driver's bounded pool, with a timeout."""

    def instance_dir(self, uuid: str) -> str: ...

    def domain(self, uuid: str) -> Any:
        """The instance's libvirt domain (blocking: call it in the pool); InstanceNotFound when none."""
