"""The domain XML builder is pure: check the document it makes."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from node.compute import domain_schema
from node.compute.domain_xml import METADATA_NS, DomainPaths, build_domain_xml, domain_name, uuid_from_name, with_flavor

UUID = "6f1e9c1a-3b7e-4d43-9a55-0c2f3e6b7a10"
NS = {"cc": METADATA_NS}


def instance(**over: Any) -> dict[str, Any]:
    inst: dict[str, Any] = {
        "uuid": UUID, "name": "web <1> & co", "project_id": "p-1", "user_id": "u-1",
        "created_at": "2026-11-21T12:00:00.000000Z",
        "flavor": {"id": "1", "name": "m1.tiny", "vcpus": 2, "ram": 128, "disk": 1, "ephemeral": 0, "swap": 0},
        "image": {"id": "img-1", "disk_format": "qcow2", "properties": {}},
    }
    inst.update(over)
    return inst


def parse(xml: str) -> ET.Element:
    return ET.fromstring(xml)


def test_names_memory_vcpus_and_type() -> None:
    root = parse(build_domain_xml(instance(), "qemu", DomainPaths(console_log="/i/console.log", disk="/i/disk")))
    assert root.get("type") == "qemu"
    assert root.findtext("name") == f"cc-{UUID}" == domain_name(UUID)
    assert root.findtext("uuid") == UUID
    assert root.findtext("title") == "web <1> & co"  # escaped on the way out, intact on the way back
    mem = root.find("memory")
    assert mem is not None and mem.text == "128" and mem.get("unit") == "MiB"
    assert root.findtext("vcpu") == "2"
    os_type = root.find("os/type")
    assert os_type is not None and os_type.text == "hvm" and os_type.get("arch") == "x86_64"
    boot = root.find("os/boot")
    assert boot is not None and boot.get("dev") == "hd"


def test_disk_points_at_given_path_with_format_and_bus() -> None:
    paths = DomainPaths(console_log="/i/console.log", disk="/i/disk", disk_format="raw")
    root = parse(build_domain_xml(instance(image={"id": "x", "properties": {"hw_disk_bus": "ide"}}), "kvm", paths))
    disks = root.findall("devices/disk")
    assert len(disks) == 1
    driver, source, target = disks[0].find("driver"), disks[0].find("source"), disks[0].find("target")
    assert driver is not None and driver.get("type") == "raw"
    assert source is not None and source.get("file") == "/i/disk"
    assert target is not None and target.get("bus") == "ide" and target.get("dev") == "hda"


def test_no_disk_without_image_and_unknown_format_is_raw() -> None:
    root = parse(build_domain_xml(instance(image={}), "test", DomainPaths(console_log="/c.log")))
    assert root.findall("devices/disk") == []
    root = parse(build_domain_xml(instance(), "test", DomainPaths(console_log="/c.log", disk="/d", disk_format="iso")))
    driver = root.find("devices/disk/driver")
    assert driver is not None and driver.get("type") == "raw"


def test_serial_console_on_pty_logs_to_file() -> None:
    root = parse(build_domain_xml(instance(), "qemu", DomainPaths(console_log="/i/console.log")))
    serial = root.find("devices/serial")
    assert serial is not None and serial.get("type") == "pty"
    log = serial.find("log")
    assert log is not None and log.get("file") == "/i/console.log"
    console = root.find("devices/console/target")
    assert console is not None and console.get("type") == "serial"


def test_a_real_guest_has_novas_vnc_display_on_loopback_and_the_test_hypervisors_has_none() -> None:
    """qemu/kvm: Nova's <graphics type='vnc' listen='127.0.0.1' autoport='yes'/>, a virtio video card and a USB
    tablet, and libvirt's own schema takes the document; test:/// guests run nothing and get no display."""
    xml = build_domain_xml(instance(), "qemu", DomainPaths(console_log="/i/console.log", disk="/i/disk"))
    devices = parse(xml).find("devices")
    assert devices is not None
    graphics = devices.findall("graphics")
    assert [g.attrib for g in graphics] == [{"type": "vnc", "autoport": "yes", "listen": "127.0.0.1"}]
    assert [m.get("type") for m in devices.findall("video/model")] == ["virtio"]
    assert [i.attrib for i in devices.findall("input")] == [{"type": "tablet", "bus": "usb"}]
    checker = domain_schema.schema()
    if checker is not None:  # where libvirt's domain.rng is installed (make deps: libvirt-daemon)
        checker.check(xml)
    test_devices = parse(build_domain_xml(instance(), "test", DomainPaths(console_log="/c.log"))).find("devices")
    assert test_devices is not None
    assert test_devices.find("graphics") is None and test_devices.find("video") is None


def test_metadata_names_owner_flavor_and_image() -> None:
    root = parse(build_domain_xml(instance(), "qemu", DomainPaths(console_log="/c.log")))
    meta = root.find("metadata/cc:instance", NS)
    assert meta is not None
    assert meta.findtext("cc:name", namespaces=NS) == "web <1> & co"
    assert meta.findtext("cc:creationTime", namespaces=NS) == "2026-11-21T12:00:00.000000Z"
    flavor = meta.find("cc:flavor", NS)
    assert flavor is not None and flavor.get("name") == "m1.tiny"
    assert flavor.findtext("cc:memory", namespaces=NS) == "128"
    assert flavor.findtext("cc:vcpus", namespaces=NS) == "2"
    project = meta.find("cc:owner/cc:project", NS)
    assert project is not None and project.get("uuid") == "p-1"
    rootdisk = meta.find("cc:root", NS)
    assert rootdisk is not None and rootdisk.get("uuid") == "img-1"


def test_direct_kernel_boot() -> None:
    paths = DomainPaths(console_log="/c.log", kernel="/k/vmlinuz", initrd="/k/initrd", cmdline="console=ttyS0 quiet")
    root = parse(build_domain_xml(instance(), "qemu", paths))
    assert root.findtext("os/kernel") == "/k/vmlinuz"
    assert root.findtext("os/initrd") == "/k/initrd"
    assert root.findtext("os/cmdline") == "console=ttyS0 quiet"
    assert root.find("os/boot") is None


def test_image_properties_choose_arch_and_machine() -> None:
    image = {"id": "i", "properties": {"architecture": "aarch64", "hw_machine_type": "virt"}}
    root = parse(build_domain_xml(instance(image=image), "qemu", DomainPaths(console_log="/c.log")))
    os_type = root.find("os/type")
    assert os_type is not None and os_type.get("arch") == "aarch64" and os_type.get("machine") == "virt"


@pytest.mark.parametrize("over, virt_type", [
    ({"flavor": {"vcpus": "2", "ram": 64}}, "qemu"),
    ({"flavor": {"vcpus": 1, "ram": True}}, "qemu"),
    ({"image": {"id": "i", "properties": {"hw_disk_bus": "floppy"}}}, "qemu"),
    ({}, "xen"),
])
def test_rejects_bad_input(over: dict[str, Any], virt_type: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        build_domain_xml(instance(**over), virt_type, DomainPaths(console_log="/c.log", disk="/d"))


def test_uuid_from_name_ignores_foreign_domains() -> None:
    assert uuid_from_name(f"cc-{UUID}") == UUID
    assert uuid_from_name("test") is None


def test_title_is_one_line() -> None:
    root = parse(build_domain_xml(instance(name="a\nb\tc  "), "qemu", DomainPaths(console_log="/c.log")))
    assert root.findtext("title") == "a b c"


def test_with_flavor_changes_vcpus_memory_and_recorded_flavor_only() -> None:
    paths = DomainPaths(console_log="/i/console.log", disk="/i/disk")
    before = build_domain_xml(instance(), "qemu", paths)
    # libvirt's own rendering adds currentMemory in KiB: both follow the new flavor
    live = before.replace('<memory unit="MiB">128</memory>',
                          "<memory unit='KiB'>131072</memory><currentMemory unit='KiB'>131072</currentMemory>")
    small = {"id": "2", "name": "m1.small", "vcpus": 4, "ram": 2048, "disk": 20, "ephemeral": 0, "swap": 0}
    root = parse(with_flavor(live, small))
    assert [(e.tag, e.text, e.get("unit")) for e in (root.find("memory"), root.find("currentMemory")) if e is not None
            ] == [("memory", "2097152", "KiB"), ("currentMemory", "2097152", "KiB")]
    assert root.findtext("vcpu") == "4"
    flavor = root.find("metadata/cc:instance/cc:flavor", NS)
    assert flavor is not None and (flavor.get("id"), flavor.get("name")) == ("2", "m1.small")
    assert flavor.findtext("cc:memory", namespaces=NS) == "2048" and flavor.findtext("cc:disk", namespaces=NS) == "20"
    old = parse(before)
    for path in ("devices/disk/source", "devices/serial/log", "os/boot"):  # the guest's files stay its own
        assert ET.tostring(root.find(path)) == ET.tostring(old.find(path))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        with_flavor(before, {**small, "ram": "lots"})


def test_a_root_volume_is_the_only_disk_and_is_vda() -> None:
    """Booted from a volume: its export is vda (the volume's serial), no image disk beside it."""
    from node.compute.volume_xml import disk_xml, serial
    vid = "0b9e2a52-7c1d-4a8e-b1c4-6a2f0e9d3c11"
    root_disk = disk_xml({"driver_volume_type": "local", "data": {"path": "/vols/v.raw", "format": "raw"}}, "vda", vid)
    xml = build_domain_xml(instance(image={"root_volume_id": vid, "properties": {}}), "qemu",
                           DomainPaths(console_log="/i/console.log", root_volume=root_disk))
    disks = parse(xml).findall("devices/disk")
    assert len(disks) == 1
    source, target = disks[0].find("source"), disks[0].find("target")
    assert source is not None and source.get("file") == "/vols/v.raw"
    assert target is not None and target.get("dev") == "vda"
    assert disks[0].findtext("serial") == serial(vid)
    boot = parse(xml).find("os/boot")
    assert boot is not None and boot.get("dev") == "hd"
