"""The image format inspector (cells/imageformat.py) over images made by the real qemu-img:
what each one is, which are unsafe and why, which declared disk_formats they may carry,
and that feeding the bytes in chunks gives the same answer as reading the file."""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from cells import imageformat
from cells.imageformat import ImageFormatRefused, Inspection, StreamInspector, check, inspect, inspect_file

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                reason="qemu-img (qemu-utils) is not installed")
MIB = 1 << 20


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def make(tmp_path: Path, name: str, fmt: str, *options: str, size: str = "1M") -> Path:
    path = tmp_path / name
    qemu_img("create", "-q", "-f", fmt, *options, str(path), size)
    return path


def streamed(path: Path, chunk: int) -> Inspection:
    inspector = StreamInspector()
    data = path.read_bytes()
    for at in range(0, len(data), chunk):
        inspector.feed(data[at:at + chunk])
    return inspector.result()


def refused(disk_format: str, found: Inspection) -> str:
    with pytest.raises(ImageFormatRefused) as caught:
        check(disk_format, found)
    assert caught.value.http_status == 400
    return caught.value.message


def test_plain_qcow2_and_raw_are_what_they_say(tmp_path: Path) -> None:
    qcow2 = make(tmp_path, "plain.qcow2", "qcow2", size="3M")
    raw = tmp_path / "plain.raw"
    raw.write_bytes(b"\x55" * MIB)
    assert inspect_file(str(qcow2)) == Inspection("qcow2", 3 * MIB)
    assert inspect_file(str(raw)) == Inspection("raw", MIB)
    check("qcow2", inspect_file(str(qcow2)))
    for declared in ("raw", "ami", "aki", "ari"):
        check(declared, inspect_file(str(raw)))


def test_stream_inspection_matches_the_file_for_any_chunk_size(tmp_path: Path) -> None:
    images = [make(tmp_path, "a.qcow2", "qcow2"), make(tmp_path, "b.qcow2", "qcow2", "-F", "raw", "-b", "/etc/passwd"),
              make(tmp_path, "c.vmdk", "vmdk"), make(tmp_path, "d.vhd", "vpc", "-o", "subformat=fixed")]
    for path in images:
        whole = inspect_file(str(path))
        for chunk in (1, 511, 4096, MIB):
            assert streamed(path, chunk) == whole, (path.name, chunk)


def test_qcow2_with_a_backing_file_is_refused(tmp_path: Path) -> None:
    path = make(tmp_path, "backed.qcow2", "qcow2", "-F", "raw", "-b", "/etc/passwd")
    found = inspect_file(str(path))
    assert found.format == "qcow2" and found.unsafe == "the qcow2 image names a backing file"
    assert refused("qcow2", found) == "Image data refused: the qcow2 image names a backing file."


def test_qcow2_with_an_external_data_file_is_refused(tmp_path: Path) -> None:
    path = make(tmp_path, "data.qcow2", "qcow2", "-o", f"data_file={tmp_path / 'data.raw'}")
    found = inspect_file(str(path))
    assert found.unsafe == "the qcow2 image keeps its data in an external data file"
    # the data-file name alone (its feature bit cleared) is still refused
    head = bytearray(path.read_bytes())
    struct.pack_into(">Q", head, 72, struct.unpack_from(">Q", head, 72)[0] & ~imageformat.QCOW2_DATA_FILE)
    alone = inspect(bytes(head), b"", len(head))
    assert alone.unsafe == "the qcow2 image names an external data file"
    refused("qcow2", alone)


def test_qcow2_with_unknown_incompatible_features_is_refused(tmp_path: Path) -> None:
    head = bytearray(make(tmp_path, "f.qcow2", "qcow2").read_bytes())
    struct.pack_into(">Q", head, 72, 1 << 40)
    found = inspect(bytes(head), b"", len(head))
    assert found.unsafe == "the qcow2 image has unknown incompatible features 0x10000000000"
    refused("qcow2", found)
    struct.pack_into(">Q", head, 72, imageformat.QCOW2_CORRUPT)
    assert inspect(bytes(head), b"", len(head)).unsafe == "the qcow2 image is marked corrupt"


def test_truncated_headers_are_refused(tmp_path: Path) -> None:
    data = make(tmp_path, "t.qcow2", "qcow2").read_bytes()
    for cut in (4, 40, 71, 90):
        found = inspect(data[:cut], data[:cut][-512:], cut)
        assert found.format == "qcow2" and found.unsafe == "the qcow2 header is truncated", cut
        refused("qcow2", found)
        refused("raw", found)  # a truncated qcow2 declared raw is not raw either
    vmdk = make(tmp_path, "t.vmdk", "vmdk").read_bytes()
    assert inspect(vmdk[:32], b"", 32).unsafe == "the vmdk header is truncated"
    # a sparse vmdk cut before its embedded descriptor
    assert inspect(vmdk[:512], b"", 512).unsafe == "the vmdk's embedded descriptor is missing or out of reach"


def test_format_mismatches_are_refused(tmp_path: Path) -> None:
    raw = tmp_path / "r.raw"
    raw.write_bytes(bytes(MIB))
    qcow2 = inspect_file(str(make(tmp_path, "q.qcow2", "qcow2")))
    vmdk = inspect_file(str(make(tmp_path, "v.vmdk", "vmdk")))
    assert refused("qcow2", inspect_file(str(raw))) == \
        "Image data refused: the data is raw, not qcow2 as the image says."
    assert refused("raw", qcow2) == "Image data refused: the data is qcow2, not raw as the image says."
    assert refused("aki", qcow2) == "Image data refused: the data is qcow2, not aki as the image says."
    assert vmdk == Inspection("vmdk", MIB)  # a safe monolithicSparse vmdk: still not a qcow2
    assert refused("qcow2", vmdk) == "Image data refused: the data is vmdk, not qcow2 as the image says."
    assert "cannot be checked" in refused("vmdk", vmdk)


@pytest.mark.parametrize("subformat", ["monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"])
def test_vmdk_descriptor_files_naming_extents_are_refused(tmp_path: Path, subformat: str) -> None:
    path = make(tmp_path, "x.vmdk", "vmdk", "-o", f"subformat={subformat}")
    found = inspect_file(str(path))
    assert found.format == "vmdk" and found.unsafe == "a vmdk descriptor file keeps its data in other files"
    for declared in ("raw", "qcow2", "ami"):
        refused(declared, found)


def test_hostile_vmdk_descriptors_inside_a_sparse_vmdk_are_refused(tmp_path: Path) -> None:
    data = make(tmp_path, "s.vmdk", "vmdk").read_bytes()
    at, length = struct.unpack_from("<Q", data, 28)[0] * 512, struct.unpack_from("<Q", data, 36)[0] * 512
    descriptor = data[at:at + length].split(b"\0", 1)[0].decode()
    assert 'createType="monolithicSparse"' in descriptor

    def patched(text: str) -> Inspection:
        blob = text.encode().ljust(length, b"\0")
        new = data[:at] + blob + data[at + length:]
        return inspect(new, new[-512:], len(new))

    extent = next(line for line in descriptor.splitlines() if line.startswith("RW "))
    assert patched(descriptor).unsafe is None
    assert patched(descriptor.replace(extent, 'RW 2048 FLAT "/etc/passwd" 0')).unsafe == \
        "the vmdk names an extent outside itself: FLAT '/etc/passwd'"
    assert patched(descriptor.replace(extent, 'RW 2048 SPARSE "../../etc/shadow"')).unsafe == \
        "the vmdk names an extent outside itself: SPARSE '../../etc/shadow'"
    assert patched(descriptor.replace(extent, f'{extent}\nRW 2048 SPARSE "other.vmdk"')).unsafe == \
        "the vmdk names 2 extents, not its own one"
    assert patched(descriptor.replace("monolithicSparse", "vmfs")).unsafe == \
        "vmdk createType 'vmfs' is not monolithicSparse or streamOptimized"
    footer = bytearray(data)
    struct.pack_into("<Q", footer, 56, imageformat.VMDK_GD_AT_END)
    assert inspect(bytes(footer), b"", len(footer)).unsafe == "the vmdk keeps its grain directory in a footer"


def test_stream_optimized_vmdk_is_recognised_as_vmdk(tmp_path: Path) -> None:
    found = inspect_file(str(make(tmp_path, "so.vmdk", "vmdk", "-o", "subformat=streamOptimized")))
    assert found == Inspection("vmdk", MIB)


@pytest.mark.parametrize(("fmt", "options", "expected"), [
    ("vpc", ("-o", "subformat=fixed"), "vhd"), ("vpc", ("-o", "subformat=dynamic"), "vhd"),
    ("vhdx", (), "vhdx"), ("vdi", (), "vdi"), ("qed", (), "qed")])
def test_other_container_formats_are_recognised_and_never_pass_as_raw(tmp_path: Path, fmt: str,
                                                                     options: tuple[str, ...], expected: str) -> None:
    found = inspect_file(str(make(tmp_path, f"x.{fmt}", fmt, *options)))
    assert found.format == expected
    assert refused("raw", found) == f"Image data refused: the data is {expected}, not raw as the image says."


def test_an_overlay_may_name_a_backing_file_but_nothing_else(tmp_path: Path) -> None:
    """A guest's own overlay (the compute names its base itself): the backing name passes, the rest is checked."""
    backed = make(tmp_path, "o.qcow2", "qcow2", "-u", "-F", "raw", "-b", "/cache/base")
    assert inspect_file(str(backed), overlay=True) == Inspection("qcow2", MIB)
    assert inspect_file(str(backed)).unsafe == "the qcow2 image names a backing file"
    both = make(tmp_path, "d.qcow2", "qcow2", "-u", "-F", "raw", "-b", "/cache/base", "-o",
                f"data_file={tmp_path / 'd.raw'}")
    assert inspect_file(str(both), overlay=True).unsafe == "the qcow2 image keeps its data in an external data file"
