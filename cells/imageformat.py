"""What an image really is, from its bytes (Glance's format_inspector idea, our own small version).

A tenant names a disk_format; QEMU would believe the bytes instead. So every image is
inspected where it enters (the API's upload) and again where it becomes a host action (the
compute, before a cached base backs a guest's disk):

    inspector = StreamInspector()          # feed() it the upload's chunks as they pass
    ...
    found = inspector.result()             # Inspection(format, virtual_size, unsafe)
    check(declared_disk_format, found)     # ImageFormatRefused unless it is what it says and safe

Pure: only the first HEAD_BYTES and the last TAIL_BYTES of the data are kept and read. Unsafe
means what would make QEMU open another file or misread this one: a qcow2 backing file, an
external data file, incompatible feature bits we do not know, a corrupt qcow2; a vmdk whose
descriptor names other files, is not monolithicSparse/streamOptimized, or keeps its grain
directory in a footer; a header too short to check.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from cells import errors

HEAD_BYTES = 1 << 20  # header, qcow2 header extensions, a vmdk's embedded descriptor, an ISO's volume descriptor
TAIL_BYTES = 512  # a fixed VHD keeps its only header (the footer) in the last sector
SECTOR = 512

QCOW2_MAGIC = b"QFI\xfb"
QCOW2_V2_HEADER = 72
QCOW2_V3_MIN_HEADER = 104
QCOW2_DIRTY, QCOW2_CORRUPT, QCOW2_DATA_FILE, QCOW2_COMPRESSION, QCOW2_EXTENDED_L2 = (1 << b for b in range(5))
QCOW2_KNOWN_INCOMPATIBLE = QCOW2_DIRTY | QCOW2_CORRUPT | QCOW2_DATA_FILE | QCOW2_COMPRESSION | QCOW2_EXTENDED_L2
QCOW2_EXT_DATA_FILE = 0x44415441  # header extension: the external data file's name
VMDK_SPARSE_MAGIC, VMDK3_MAGIC = b"KDMV", b"COWD"
VMDK_DESCRIPTOR_TEXT = b"# Disk DescriptorFile"
VMDK_GD_AT_END = 0xFFFFFFFFFFFFFFFF
VMDK_SAFE_TYPES = frozenset({"monolithicSparse", "streamOptimized"})
VMDK_EXTENT = re.compile(r'^\s*(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\S+)(?:\s+"([^"]*)")?', re.MULTILINE)
VMDK_CREATE_TYPE = re.compile(r'^\s*createType\s*=\s*"([^"]*)"', re.MULTILINE)
VDI_SIGNATURE = 0xBEDA107F
ISO_OFFSETS = (0x8001, 0x8801, 0x9001)

# disk_format -> formats its bytes may have: the formats we can check and accept. An AMI is a raw disk,
# an AKI a kernel, an ARI an initramfs: none may look like a container format QEMU would interpret.
ACCEPTED: dict[str, frozenset[str]] = {
    "raw": frozenset({"raw", "iso"}), "ami": frozenset({"raw", "iso"}), "qcow2": frozenset({"qcow2"}),
    "aki": frozenset({"raw"}), "ari": frozenset({"raw"}),
}


@dataclass(frozen=True)
class Inspection:
    format: str  # raw | qcow2 | vmdk | vhd | vhdx | vdi | qed | luks | iso
    virtual_size: int  # what a guest would see, in bytes (the data's size for raw)
    unsafe: str | None = None  # why QEMU must not open it, None when it is safe


@errors._register
class ImageFormatRefused(errors.Invalid):
    code, msg = "image_format_refused", "Image data refused: {reason}"


def _u32be(data: bytes, at: int) -> int:
    return int(struct.unpack_from(">I", data, at)[0])


def _u64be(data: bytes, at: int) -> int:
    return int(struct.unpack_from(">Q", data, at)[0])


def _u64le(data: bytes, at: int) -> int:
    return int(struct.unpack_from("<Q", data, at)[0])


def inspect(head: bytes, tail: bytes, size: int, *, overlay: bool = False) -> Inspection:
    """The format of data of `size` bytes whose first bytes are `head` and last bytes `tail`.
    `overlay`: a guest's own qcow2 overlay, whose backing file the compute names itself
    (`qemu-img rebase -u`, the domain XML's <backingStore>): its header's backing name is let pass."""
    if head[:4] == QCOW2_MAGIC:
        return _qcow2(head, overlay)
    if head[:4] in (VMDK_SPARSE_MAGIC, VMDK3_MAGIC) or VMDK_DESCRIPTOR_TEXT in head[:1024]:
        return _vmdk(head)
    if head[:8] == b"vhdxfile":
        return Inspection("vhdx", 0)
    if head[:8] == b"conectix" or (size >= SECTOR and tail[-SECTOR:-SECTOR + 8] == b"conectix"):
        return Inspection("vhd", 0)
    if len(head) >= 0x44 and struct.unpack_from("<I", head, 0x40)[0] == VDI_SIGNATURE:
        return Inspection("vdi", 0)
    if head[:4] == b"QED\x00":
        return Inspection("qed", 0)
    if head[:6] == b"LUKS\xba\xbe":
        return Inspection("luks", 0)
    if any(head[at:at + 5] == b"CD001" for at in ISO_OFFSETS):
        return Inspection("iso", size)
    return Inspection("raw", size)


def _qcow2(head: bytes, overlay: bool = False) -> Inspection:
    if len(head) < QCOW2_V2_HEADER:
        return Inspection("qcow2", 0, "the qcow2 header is truncated")
    version = _u32be(head, 4)
    if version not in (2, 3):
        return Inspection("qcow2", 0, f"qcow2 version {version} is not supported")
    virtual = _u64be(head, 24)
    if (_u64be(head, 8) or _u32be(head, 16)) and not overlay:
        return Inspection("qcow2", virtual, "the qcow2 image names a backing file")
    cluster_bits = _u32be(head, 20)
    if not 9 <= cluster_bits <= 21:
        return Inspection("qcow2", virtual, f"qcow2 cluster_bits {cluster_bits} is out of range")
    header_length = QCOW2_V2_HEADER
    if version == 3:
        if len(head) < QCOW2_V3_MIN_HEADER:
            return Inspection("qcow2", virtual, "the qcow2 header is truncated")
        incompatible = _u64be(head, 72)
        if incompatible & QCOW2_DATA_FILE:
            return Inspection("qcow2", virtual, "the qcow2 image keeps its data in an external data file")
        if incompatible & QCOW2_CORRUPT:
            return Inspection("qcow2", virtual, "the qcow2 image is marked corrupt")
        if incompatible & ~QCOW2_KNOWN_INCOMPATIBLE:
            unknown = incompatible & ~QCOW2_KNOWN_INCOMPATIBLE
            return Inspection("qcow2", virtual, f"the qcow2 image has unknown incompatible features {unknown:#x}")
        header_length = _u32be(head, 100)
        if header_length < QCOW2_V3_MIN_HEADER or header_length > len(head):
            return Inspection("qcow2", virtual, f"qcow2 header_length {header_length} is invalid")
    return Inspection("qcow2", virtual, _qcow2_extensions(head, header_length))


def _qcow2_extensions(head: bytes, at: int) -> str | None:
    """The header extensions after the header: a data-file name is refused even without its feature bit."""
    limit = min(len(head), 1 << (_u32be(head, 20)))  # extensions live in the first cluster
    while at + 8 <= limit:
        kind, length = _u32be(head, at), _u32be(head, at + 4)
        if kind == 0:
            return None
        if kind == QCOW2_EXT_DATA_FILE:
            return "the qcow2 image names an external data file"
        at += 8 + (length + 7) // 8 * 8
    return "the qcow2 header extensions are not terminated within the first cluster"


def _vmdk(head: bytes) -> Inspection:
    if head[:4] == VMDK3_MAGIC:
        return Inspection("vmdk", 0, "vmdk version 3 (COWD) images are not supported")
    if head[:4] != VMDK_SPARSE_MAGIC:  # a descriptor-only file: its data lives in the files it names
        return Inspection("vmdk", 0, "a vmdk descriptor file keeps its data in other files")
    if len(head) < 64:
        return Inspection("vmdk", 0, "the vmdk header is truncated")
    virtual = _u64le(head, 12) * SECTOR
    desc_at, desc_len = _u64le(head, 28) * SECTOR, _u64le(head, 36) * SECTOR
    if _u64le(head, 56) == VMDK_GD_AT_END:
        return Inspection("vmdk", virtual, "the vmdk keeps its grain directory in a footer")
    if not desc_at or not desc_len or desc_at + desc_len > len(head):
        return Inspection("vmdk", virtual, "the vmdk's embedded descriptor is missing or out of reach")
    descriptor = head[desc_at:desc_at + desc_len].split(b"\0", 1)[0].decode("ascii", "replace")
    kind = VMDK_CREATE_TYPE.search(descriptor)
    if kind is None or kind.group(1) not in VMDK_SAFE_TYPES:
        found = kind.group(1) if kind else "none"
        return Inspection("vmdk", virtual, f"vmdk createType {found!r} is not monolithicSparse or streamOptimized")
    extents = VMDK_EXTENT.findall(descriptor)
    if len(extents) != 1:
        return Inspection("vmdk", virtual, f"the vmdk names {len(extents)} extents, not its own one")
    _, _, extent_type, name = extents[0]
    if extent_type != "SPARSE" or "/" in name or "\\" in name:
        return Inspection("vmdk", virtual, f"the vmdk names an extent outside itself: {extent_type} {name!r}")
    return Inspection("vmdk", virtual)


def check(disk_format: str, found: Inspection) -> None:
    """Refuse data that is not what `disk_format` says, or that QEMU must not open."""
    if found.unsafe:
        raise ImageFormatRefused(reason=f"{found.unsafe}.")
    allowed = ACCEPTED.get(disk_format)
    if allowed is None:
        raise ImageFormatRefused(reason=f"disk_format {disk_format!r} cannot be checked; "
                                        f"accepted: {', '.join(sorted(ACCEPTED))}.")
    if found.format not in allowed:
        raise ImageFormatRefused(reason=f"the data is {found.format}, not {disk_format} as the image says.")


class StreamInspector:
    """inspect() over data that passes in chunks, keeping only its head and tail."""

    def __init__(self) -> None:
        self._head = bytearray()
        self._tail = b""
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        if len(self._head) < HEAD_BYTES:
            self._head += chunk[:HEAD_BYTES - len(self._head)]
        self._tail = chunk[-TAIL_BYTES:] if len(chunk) >= TAIL_BYTES else (self._tail + chunk)[-TAIL_BYTES:]
        self.size += len(chunk)

    def result(self) -> Inspection:
        return inspect(bytes(self._head), self._tail, self.size)


def inspect_file(path: str, *, overlay: bool = False) -> Inspection:
    """inspect() of a file on disk (blocking: reads its head and tail only)."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        size = f.seek(0, 2)
        f.seek(max(0, size - TAIL_BYTES))
        return inspect(head, f.read(TAIL_BYTES), size, overlay=overlay)
