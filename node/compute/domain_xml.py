"""Build a libvirt domain XML document from an instance record. Pure: no I/O.

The domain is named `cc-<uuid>` so the driver can tell our domains from
foreign ones on a shared hypervisor. Nova-like metadata (name, owner,
flavor, image) is embedded so an operator running `virsh dumpxml` sees whose
guest it is.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

DOMAIN_PREFIX = "cc-"
METADATA_NS = "http://cellcloud.dev/xmlns/libvirt/instance/1"
ET.register_namespace("cellcloud", METADATA_NS)

# the disk formats a guest's disk or its base may have (what cells/imageformat.py lets in); anything
# else is handed over as raw. The format is always named, so QEMU never probes one from the bytes.
DISK_FORMATS = frozenset({"raw", "qcow2"})
DISK_BUSES = frozenset({"virtio", "ide", "sata", "scsi", "usb"})
BUS_DEV_PREFIX = {"virtio": "vd", "ide": "hd", "sata": "sd", "scsi": "sd", "usb": "sd"}
VIRT_TYPES = frozenset({"kvm", "qemu", "test"})
VNC_LISTEN = "127.0.0.1"  # Nova's [vnc] server_listen default: the display is reachable from this host only
# flavor key -> element of the flavor recorded in the domain's metadata
FLAVOR_FIELDS = (("ram", "memory"), ("disk", "disk"), ("swap", "swap"), ("ephemeral", "ephemeral"), ("vcpus", "vcpus"))


@dataclass(frozen=True)
class DomainPaths:
    """Where the domain's files live on the host (decided by the driver)."""
    console_log: str
    disk: str | None = None  # None: no image, no disk
    disk_format: str = "qcow2"
    backing: str | None = None  # the base image a qcow2 overlay `disk` rests on; None: the disk has none
    backing_format: str = "raw"
    kernel: str | None = None  # direct kernel boot (later: images with kernel_id/ramdisk_id)
    initrd: str | None = None
    cmdline: str | None = None
    root_volume: str | None = None  # a boot-from-volume guest's root <disk> (node/compute/volume_xml.py), vda



def domain_name(uuid: str) -> str:
    return DOMAIN_PREFIX + uuid


def uuid_from_name(name: str) -> str | None:
    """The instance uuid of one of our domains, None for a foreign domain."""
    return name[len(DOMAIN_PREFIX):] if name.startswith(DOMAIN_PREFIX) else None


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _positive_int(value: Any, what: str) -> int:
    # bool is an int subclass; a flavor with ram=True is a bug upstream, not 1 MiB
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    return value


def build_domain_xml(instance: dict[str, Any], virt_type: str, paths: DomainPaths, *,
                     created_at: str | None = None) -> str:
    """The <domain> document for `instance` (a record as in cells/objects/instance.py)."""
    if virt_type not in VIRT_TYPES:
        raise ValueError(f"unknown virt_type {virt_type!r}")
    flavor: dict[str, Any] = instance.get("flavor") or {}
    image: dict[str, Any] = instance.get("image") or {}
    props: dict[str, Any] = image.get("properties") or {}
    uuid = str(instance["uuid"])
    vcpus = _positive_int(flavor.get("vcpus", 1), "flavor vcpus")
    ram_mib = _positive_int(flavor.get("ram", 0), "flavor ram")

    dom = ET.Element("domain", type=virt_type)
    _sub(dom, "name", domain_name(uuid))
    _sub(dom, "uuid", uuid)
    # libvirt refuses a multi-line title; names are user input
    _sub(dom, "title", " ".join(str(instance.get("name") or uuid).split()) or uuid)
    _metadata(dom, instance, flavor, image, created_at)
    _sub(dom, "memory", str(ram_mib), unit="MiB")
    _sub(dom, "vcpu", str(vcpus))

    os_el = _sub(dom, "os")
    type_attrs = {"arch": str(props.get("architecture") or "x86_64")}
    if props.get("hw_machine_type"):
        type_attrs["machine"] = str(props["hw_machine_type"])
    _sub(os_el, "type", "hvm", **type_attrs)
    if paths.kernel:
        _sub(os_el, "kernel", paths.kernel)
        if paths.initrd:
            _sub(os_el, "initrd", paths.initrd)
        _sub(os_el, "cmdline", paths.cmdline or "console=ttyS0")
    else:
        _sub(os_el, "boot", dev="hd")

    features = _sub(dom, "features")
    _sub(features, "acpi")
    # a guest that powers off stays defined but shut off: the power sync reports it as stopped
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")

    devices = _sub(dom, "devices")
    if paths.root_volume is not None:  # booted from a volume: its export is the root disk, no image disk
        devices.append(ET.fromstring(paths.root_volume))
    elif paths.disk is not None:
        _disk(devices, paths, props)
    for vif in instance.get("vifs") or []:  # taps the network agent made (node/network/agent.py)
        _interface(devices, vif)
    # a pty serial so virDomainOpenConsole works, copied to a log file for console output
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=paths.console_log, append="on")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    if virt_type != "test":  # a real guest gets a display, as Nova's libvirt driver gives it with [vnc] enabled
        _display(devices)
    _sub(devices, "memballoon", model="none")
    return ET.tostring(dom, encoding="unicode")


def with_flavor(xml: str, flavor: dict[str, Any]) -> str:
    """The same domain (libvirt's inactive XML: disks, NICs, console untouched) with the
    vCPUs, memory and recorded flavor of `flavor`: a resize that stays on its host."""
    vcpus = _positive_int(flavor.get("vcpus", 1), "flavor vcpus")
    ram_kib = str(_positive_int(flavor.get("ram", 0), "flavor ram") * 1024)
    dom = ET.fromstring(xml)
    for tag in ("memory", "currentMemory"):
        el = dom.find(tag)
        if el is None and tag == "memory":
            el = _sub(dom, tag)
        if el is not None:
            el.text, el.attrib["unit"] = ram_kib, "KiB"
    vcpu = dom.find("vcpu")
    (vcpu if vcpu is not None else _sub(dom, "vcpu")).text = str(vcpus)
    fl = dom.find(f"metadata/{{{METADATA_NS}}}instance/{{{METADATA_NS}}}flavor")
    if fl is not None:  # what `virsh dumpxml` shows as the guest's flavor
        fl.attrib.update(name=str(flavor.get("name") or ""), id=str(flavor.get("id") or ""))
        for key, tag in FLAVOR_FIELDS:
            el = fl.find(f"{{{METADATA_NS}}}{tag}")
            (el if el is not None else _sub(fl, f"{{{METADATA_NS}}}{tag}")).text = str(flavor.get(key) or 0)
    return ET.tostring(dom, encoding="unicode")


def _disk(devices: ET.Element, paths: DomainPaths, props: dict[str, Any]) -> None:
    bus = str(props.get("hw_disk_bus") or "virtio")
    if bus not in DISK_BUSES:
        raise ValueError(f"unsupported hw_disk_bus {bus!r}")
    fmt = paths.disk_format if paths.disk_format in DISK_FORMATS else "raw"
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type=fmt)
    _sub(disk, "source", file=str(paths.disk))
    _backing_chain(disk, paths)
    _sub(disk, "target", dev=BUS_DEV_PREFIX[bus] + "a", bus=bus)


def _backing_chain(disk: ET.Element, paths: DomainPaths) -> None:
    """The disk's whole backing chain, each file with its format, ended by an empty <backingStore/>:
    libvirt and QEMU open these files and no other, whatever a header says."""
    if paths.backing is None:
        _sub(disk, "backingStore")
        return
    store = _sub(disk, "backingStore", type="file")
    _sub(store, "format", type=paths.backing_format if paths.backing_format in DISK_FORMATS else "raw")
    _sub(store, "source", file=paths.backing)
    _sub(store, "backingStore")


def _display(devices: ET.Element) -> None:
    """Nova's VNC display: QEMU's VNC server on loopback only, at a port libvirt picks (the API's noVNC
    proxy, relayed by the compute, is the only way in: node/compute/vnc_console.py), a USB tablet so the
    pointer follows the viewer's (Nova's pointer_model usbtablet), and a virtio video card (Nova's x86
    default: VGA-compatible for a guest without the virtio-gpu driver)."""
    _sub(devices, "input", type="tablet", bus="usb")
    _sub(devices, "graphics", type="vnc", autoport="yes", listen=VNC_LISTEN)
    video = _sub(devices, "video")
    _sub(video, "model", type="virtio")


def _interface(devices: ET.Element, vif: dict[str, Any]) -> None:
    """An existing tap on the network's bridge: libvirt opens it and leaves it to us (managed='no')."""
    iface = _sub(devices, "interface", type="ethernet")
    _sub(iface, "mac", address=str(vif["mac"]))
    _sub(iface, "target", dev=str(vif["tap"]), managed="no")
    _sub(iface, "model", type="virtio")
    if vif.get("mtu"):
        _sub(iface, "mtu", size=str(vif["mtu"]))


def _metadata(dom: ET.Element, instance: dict[str, Any], flavor: dict[str, Any], image: dict[str, Any],
              created_at: str | None) -> None:
    def q(tag: str) -> str:
        return f"{{{METADATA_NS}}}{tag}"

    meta = _sub(dom, "metadata")
    inst = _sub(meta, q("instance"))
    _sub(inst, q("name"), str(instance.get("name") or ""))
    if created_at or instance.get("created_at"):
        _sub(inst, q("creationTime"), str(created_at or instance.get("created_at")))
    fl = _sub(inst, q("flavor"), name=str(flavor.get("name") or ""), id=str(flavor.get("id") or ""))
    for key, tag in FLAVOR_FIELDS:
        _sub(fl, q(tag), str(flavor.get(key) or 0))
    owner = _sub(inst, q("owner"))
    _sub(owner, q("user"), uuid=str(instance.get("user_id") or ""))
    _sub(owner, q("project"), uuid=str(instance.get("project_id") or ""))
    if image.get("id"):
        _sub(inst, q("root"), type="image", uuid=str(image["id"]))
