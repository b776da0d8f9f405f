"""The libvirt driver against real libvirt: the in-process test hypervisor by
default, real QEMU (qemu:///embed) in the slow variant where the host can."""
from __future__ import annotations

import asyncio
import grp
import os
import pwd
import shutil
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import libvirt  # type: ignore[import-untyped]
import pytest

from cells import errors
from cells.objects.instance import PowerState
from node.compute import diagnostics
from node.compute import driver as driver_mod
from node.compute.disks import grow_disk, root_disk_bytes, virtual_size
from node.compute.driver import LibvirtDriver, create_overlay, hardware_virt_usable, host_booted_at, resolve_virt_type


def instance(**over: Any) -> dict[str, Any]:
    inst: dict[str, Any] = {"uuid": str(uuidlib.uuid4()), "name": "vm", "project_id": "p", "user_id": "u",
                            "flavor": {"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 96, "disk": 1},
                            "image": {"id": "img", "disk_format": "raw", "properties": {}}}
    inst.update(over)
    return inst


@pytest.fixture
async def drv(tmp_path: Path) -> AsyncIterator[LibvirtDriver]:
    d = LibvirtDriver("test:///default", instances_dir=str(tmp_path / "instances"))
    await d.connect()
    yield d
    for uuid in await d.list_instance_uuids():  # test:///default is shared by the whole process
        await d.destroy(uuid)
    await d.close()


def raw_domain_names() -> list[str]:
    conn = libvirt.open("test:///default")
    try:
        return [d.name() for d in conn.listAllDomains()]
    finally:
        conn.close()


async def test_spawn_runs_and_lists_only_our_domains(drv: LibvirtDriver, tmp_path: Path) -> None:
    inst = instance(image={})
    await drv.spawn(inst, None)
    assert await drv.power_state(inst["uuid"]) == PowerState.RUNNING
    assert await drv.list_instance_uuids() == [inst["uuid"]]
    assert "test" in raw_domain_names()  # the foreign domain is there, and ignored
    assert (tmp_path / "instances" / inst["uuid"]).is_dir()


async def test_spawn_with_image_points_disk_at_cached_base(drv: LibvirtDriver, tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.write_bytes(b"\0" * 512)
    inst = instance()
    await drv.spawn(inst, str(base))
    xml = await asyncio.to_thread(lambda: drv.conn.lookupByUUIDString(inst["uuid"]).XMLDesc())
    source = ET.fromstring(xml).find("devices/disk/source")
    assert source is not None and source.get("file") == str(base)


async def test_destroy_is_idempotent(drv: LibvirtDriver) -> None:
    inst = instance(image={})
    await drv.spawn(inst, None)
    await drv.destroy(inst["uuid"])
    await drv.destroy(inst["uuid"])
    await drv.destroy(str(uuidlib.uuid4()))
    assert await drv.list_instance_uuids() == []
    with pytest.raises(errors.InstanceNotFound):
        await drv.power_state(inst["uuid"])


async def test_rejected_xml_leaves_nothing_behind(drv: LibvirtDriver, tmp_path: Path) -> None:
    inst = instance(image={}, flavor={"vcpus": 1, "ram": 0})  # the hypervisor refuses 0 MiB
    with pytest.raises(errors.SpawnFailed) as info:
        await drv.spawn(inst, None)
    assert inst["uuid"] in str(info.value)
    assert await drv.list_instance_uuids() == []
    assert not (tmp_path / "instances" / inst["uuid"]).exists()


async def test_start_failure_after_define_undefines(drv: LibvirtDriver, tmp_path: Path) -> None:
    inst = instance(image={})
    # a stale running domain with the same uuid: define succeeds, start fails ("already running")
    await drv.spawn(inst, None)
    with pytest.raises(errors.SpawnFailed, match="already running"):
        await drv.spawn(inst, None)
    assert await drv.list_instance_uuids() == []
    assert f"cc-{inst['uuid']}" not in raw_domain_names()
    assert not (tmp_path / "instances" / inst["uuid"]).exists()


async def test_missing_image_file_fails_cleanly(drv: LibvirtDriver, tmp_path: Path) -> None:
    inst = instance()
    with pytest.raises(errors.SpawnFailed, match="missing"):
        await drv.spawn(inst, str(tmp_path / "nope"))
    assert await drv.list_instance_uuids() == []
    assert not (tmp_path / "instances" / inst["uuid"]).exists()


async def test_power_states_follow_the_domain(drv: LibvirtDriver) -> None:
    inst = instance(image={})
    await drv.spawn(inst, None)
    await asyncio.to_thread(lambda: drv.conn.lookupByUUIDString(inst["uuid"]).suspend())
    assert await drv.power_states() == {inst["uuid"]: PowerState.PAUSED}
    await asyncio.to_thread(lambda: drv.conn.lookupByUUIDString(inst["uuid"]).destroy())
    assert await drv.power_state(inst["uuid"]) == PowerState.SHUTDOWN
    assert await drv.list_instance_uuids() == [inst["uuid"]]  # shut off but still defined


async def test_lifecycle_events_reach_the_loop(drv: LibvirtDriver) -> None:
    seen: asyncio.Queue[str] = asyncio.Queue()
    drv.on_lifecycle = seen.put_nowait
    inst = instance(image={})
    await drv.spawn(inst, None)
    assert await asyncio.wait_for(seen.get(), 5) == inst["uuid"]


async def test_host_resources(drv: LibvirtDriver) -> None:
    """Capacity, and the host's boot time (Linux's /proc/stat btime) in the past."""
    res = await drv.host_resources()
    assert set(res) == {"vcpus", "memory_mb", "local_gb", "booted_at"}
    assert res["vcpus"] > 0 and res["memory_mb"] > 0 and res["local_gb"] > 0
    assert 0 < res["booted_at"] <= time.time()


def test_host_booted_at_reads_btime_and_says_none_without_it(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n")
    assert host_booted_at(str(stat)) == 1700000000
    stat.write_text("cpu  1 2 3\n")
    assert host_booted_at(str(stat)) is None
    assert host_booted_at(str(tmp_path / "missing")) is None


async def test_calls_before_connect_fail_clearly(tmp_path: Path) -> None:
    d = LibvirtDriver("test:///default", instances_dir=str(tmp_path))
    with pytest.raises(errors.HypervisorUnavailable, match="not connected"):
        await d.list_instance_uuids()
    await d.close()


async def test_unreachable_uri_is_a_clear_error(tmp_path: Path) -> None:
    d = LibvirtDriver("qemu+unix:///system?socket=/nonexistent/sock", virt_type="qemu",
                      instances_dir=str(tmp_path))
    with pytest.raises(errors.HypervisorUnavailable, match="qemu"):
        await d.connect()
    await d.close()


def test_virt_type_auto(tmp_path: Path) -> None:
    kvm, cpuinfo = tmp_path / "kvm", tmp_path / "cpuinfo"
    kvm.touch()
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 lm\n")
    assert not hardware_virt_usable(str(kvm), str(cpuinfo))  # /dev/kvm without vmx/svm: nested software virt
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vmx lm\n")
    assert hardware_virt_usable(str(kvm), str(cpuinfo))
    assert not hardware_virt_usable(str(tmp_path / "no-kvm"), str(cpuinfo))
    assert resolve_virt_type("test:///default", "auto") == "test"
    assert resolve_virt_type("qemu:///system", "qemu") == "qemu"
    assert resolve_virt_type("qemu:///system", "auto") in ("kvm", "qemu")
    with pytest.raises(errors.Invalid):
        resolve_virt_type("qemu:///system", "xen")


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")
async def test_overlay_is_backed_by_base(tmp_path: Path) -> None:
    base, overlay = tmp_path / "base.raw", tmp_path / "disk"
    base.write_bytes(b"\0" * 1024 * 1024)
    await create_overlay(str(base), "raw", str(overlay))
    proc = await asyncio.create_subprocess_exec("qemu-img", "info", "--output=json", str(overlay),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert b'"backing-filename-format": "raw"' in out and str(base).encode() in out
    with pytest.raises(RuntimeError, match="qemu-img create failed"):
        await create_overlay(str(tmp_path / "missing"), "raw", str(tmp_path / "disk2"))


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")
async def test_root_disk_has_the_flavors_size_and_grows_never_shrinks(tmp_path: Path) -> None:
    base, overlay = tmp_path / "base.raw", tmp_path / "disk"
    base.write_bytes(b"\0" * 1024 * 1024)
    await create_overlay(str(base), "raw", str(overlay), root_disk_bytes({"disk": 1}))
    assert await virtual_size(str(overlay), "qcow2") == 1 << 30
    assert await grow_disk(str(overlay), root_disk_bytes({"disk": 20}))
    assert await virtual_size(str(overlay), "qcow2") == 20 << 30
    assert not await grow_disk(str(overlay), root_disk_bytes({"disk": 1}))  # a smaller flavor keeps the disk
    assert not await grow_disk(str(overlay), root_disk_bytes({"disk": 0}))
    assert await virtual_size(str(overlay), "qcow2") == 20 << 30
    await create_overlay(str(base), "raw", str(tmp_path / "disk0"))  # disk 0: as big as the image
    assert await virtual_size(str(tmp_path / "disk0"), "qcow2") == 1024 * 1024


async def test_embed_root_is_prepared_or_refused_with_the_fix(tmp_path: Path, embed_root: str) -> None:
    root = Path(embed_root)
    d = LibvirtDriver(f"qemu:///embed?root={root}", virt_type="qemu", instances_dir=str(tmp_path / "inst"))
    try:
        await d.connect()
    except errors.HypervisorUnavailable as exc:
        # only acceptable failure here: the host lacks the libvirt-qemu account, and the error says how to add it
        assert "libvirt-qemu" in str(exc) and "useradd" in str(exc)
        assert not (root / "etc" / "qemu.conf").exists()
    else:
        conf = (root / "etc" / "qemu.conf").read_text()
        assert 'user = "root"' in conf and "remember_owner = 0" in conf
    finally:
        await d.close()


def embed_unavailable_reason() -> str | None:
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed"
    try:
        pwd.getpwnam(driver_mod.EMBED_USER)
        grp.getgrnam(driver_mod.EMBED_USER)
    except KeyError:
        return (f"qemu:///embed needs the user and group {driver_mod.EMBED_USER!r}, which this host lacks "
                "(see HOST_NOTES.md)")
    return None


@pytest.mark.slow
@pytest.mark.skipif(embed_unavailable_reason() is not None, reason=str(embed_unavailable_reason()))
async def test_real_qemu_guest_spawns_on_an_overlay(tmp_path: Path, embed_root: str) -> None:
    root = embed_root
    d = LibvirtDriver(f"qemu:///embed?root={root}", instances_dir=str(tmp_path / "instances"), call_timeout=60)
    await d.connect()
    try:
        base = tmp_path / "base.raw"
        base.write_bytes(b"\0" * 1024 * 1024)  # no bootable code: SeaBIOS keeps the guest running
        inst = instance()
        await d.spawn(inst, str(base))
        assert await d.power_state(inst["uuid"]) == PowerState.RUNNING
        assert os.path.exists(tmp_path / "instances" / inst["uuid"] / "disk")
        await d.destroy(inst["uuid"])
        await d.remove_files(inst["uuid"])
        assert await d.list_instance_uuids() == []
    finally:
        for uuid in await d.list_instance_uuids():
            await d.destroy(uuid)
        await d.close()


@pytest.mark.parametrize("virt_type", ["test", "qemu", "kvm"])
def test_domain_xml_passes_libvirts_schema(virt_type: str) -> None:
    # the test hypervisor accepts nearly anything; libvirt's RNG schema is what real QEMU domains must pass
    from node.compute.domain_xml import DomainPaths, build_domain_xml
    paths = [DomainPaths(console_log="/i/console.log", disk="/i/disk", disk_format="qcow2"),
             DomainPaths(console_log="/i/console.log", disk="/i/disk", disk_format="qcow2", backing="/c/base",
                         backing_format="raw"),
             DomainPaths(console_log="/i/console.log", kernel="/k/vmlinuz", initrd="/k/initrd", cmdline="quiet")]
    inst = instance(name="two\nlines", created_at="2026-11-21T12:00:00.000000Z",
                    image={"id": "i", "properties": {"hw_disk_bus": "sata", "hw_machine_type": "pc"}})
    conn = libvirt.open("test:///default")
    try:
        for p in paths:
            dom = conn.defineXMLFlags(build_domain_xml(inst, virt_type, p), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
            assert dom.name() == f"cc-{inst['uuid']}"
            dom.undefine()
    finally:
        conn.close()


@pytest.mark.parametrize("breakage", [
    ("<title>vm</title>", "<title>two\nlines</title>"),  # libvirt's schema wants one-line titles
    ("<vcpu>", "<bogus /><vcpu>"),  # an element the schema lacks
    ('type="qemu"', 'type="nosuch"'),  # a value outside an enumeration
])
def test_compiled_schema_refuses_what_libvirt_refuses(breakage: tuple[str, str]) -> None:
    # domain_schema.define checks with the schema compiled once; libvirt's own flag recompiles it per
    # define. Both must give the same verdict and message, and neither may leave a domain behind.
    from node.compute import domain_schema
    from node.compute.domain_xml import DomainPaths, build_domain_xml
    if domain_schema.schema() is None:
        pytest.skip("libvirt's domain.rng or libxml2 is missing here: define() uses libvirt's flag")
    inst = instance()
    good = build_domain_xml(inst, "qemu", DomainPaths(console_log="/i/console.log", disk="/i/disk"))
    bad = good.replace(*breakage)
    assert bad != good
    conn = libvirt.open("test:///default")
    try:
        domain_schema.define(conn, good).undefine()
        with pytest.raises(libvirt.libvirtError) as theirs:
            conn.defineXMLFlags(bad, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        with pytest.raises(domain_schema.DomainXMLInvalid) as ours:
            domain_schema.define(conn, bad)
        assert str(ours.value) == theirs.value.get_error_message()
        assert f"cc-{inst['uuid']}" not in conn.listDefinedDomains()
    finally:
        conn.close()


def test_without_the_schema_file_libvirt_validates_itself() -> None:
    from node.compute import domain_schema
    assert domain_schema.load(("/nonexistent",)) is None


async def test_diagnostics_of_a_running_guest(drv: LibvirtDriver) -> None:
    """Nova's standard diagnostics read from the domain: state, one vCPU, the flavor's memory."""
    inst = instance()
    await drv.spawn(inst, None)
    found = await drv.diagnostics(inst["uuid"])
    assert (found["state"], found["driver"], found["hypervisor"], found["hypervisor_os"]) == \
        ("running", "libvirt", "test", "linux")
    assert found["num_cpus"] == 1 and [c["id"] for c in found["cpu_details"]] == [0]
    assert found["memory_details"]["maximum"] == 96
    # the test hypervisor's guest of an image-less instance has neither disk nor NIC
    assert (found["num_disks"], found["disk_details"], found["num_nics"], found["nic_details"]) == (0, [], 0, [])
    with pytest.raises(errors.InstanceNotFound):
        await drv.diagnostics(str(uuidlib.uuid4()))


class CountingDomain:
    """A domain as libvirt answers for one disk and one NIC (the interface counters not served)."""

    def info(self) -> list[int]:
        return [libvirt.VIR_DOMAIN_PAUSED, 262144, 131072, 2, 0]

    def vcpus(self) -> tuple[list[tuple[int, int, int, int]], list[Any]]:
        return [(0, 1, 500, 0), (1, 1, 700, 1)], []

    def XMLDesc(self, flags: int) -> str:
        return ("<domain><devices><disk device='disk'><target dev='vda'/></disk>"
                "<disk device='cdrom'><target dev='hdc'/></disk>"
                "<interface type='ethernet'><mac address='fa:16:3e:00:00:01'/><target dev='tap1'/></interface>"
                "</devices></domain>")

    def blockStats(self, dev: str) -> tuple[int, int, int, int, int]:
        return (3, 4096, 5, 8192, -1)

    def interfaceStats(self, dev: str) -> tuple[int, ...]:
        raise libvirt.libvirtError("not supported")


def test_diagnostics_read_counts_disks_and_nics() -> None:
    """Disks (not CD-ROMs) with their block counters, NICs with zeros where libvirt has no counters."""
    found = diagnostics.read(CountingDomain())
    assert (found["state"], found["num_cpus"], found["memory_details"]) == ("paused", 2, {"maximum": 256, "used": 128})
    assert found["cpu_details"] == [{"id": 0, "time": 500, "utilisation": None}, {"id": 1, "time": 700, "utilisation": None}]
    assert found["disk_details"] == [{"name": "vda", "read_bytes": 4096, "read_requests": 3, "write_bytes": 8192,
                                      "write_requests": 5, "errors_count": 0}]
    assert found["nic_details"] == [{"name": "tap1", "mac_address": "fa:16:3e:00:00:01", "rx_octets": 0,
                                     "rx_errors": 0, "rx_drop": 0, "rx_packets": 0, "rx_rate": None, "tx_octets": 0,
                                     "tx_errors": 0, "tx_drop": 0, "tx_packets": 0, "tx_rate": None}]
    assert (found["num_disks"], found["num_nics"]) == (1, 1)
