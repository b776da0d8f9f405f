"""The block device mappings an image defines (a volume-backed server's snapshot, api/compute/volume_backed_images.py):
an image's properties are anyone's who may update the image, so each mapping is checked before a boot uses it,
and they merge with the request's as Nova merges them."""
from __future__ import annotations

import json
from typing import Any

import pytest

from api.compute.volume_backed_images import image_fields, image_mappings, merged
from cells import errors

IMG = "0b7d6a52-8f41-4e0e-9f55-6a3c1e1f2a10"
SNAP = "5a3b9f0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
SNAP2 = "6b4c0a1f-2d3e-4f50-9b0c-1d2e3f4a5b6c"


def root(snapshot_id: str = SNAP, **extra: Any) -> dict[str, Any]:
    return {"source_type": "snapshot", "destination_type": "volume", "snapshot_id": snapshot_id, "boot_index": 0,
            "volume_size": 1, "delete_on_termination": False, "device_name": "/dev/vda", "volume_id": None, **extra}


def test_the_mappings_an_image_field_records_read_back_as_request_mappings() -> None:
    fields = image_fields([root(), root(SNAP2, boot_index=None, device_name="/dev/vdb")], {"owner_note": "x"})
    assert fields["status"] == "active" and fields["size"] == 0 and fields["disk_format"] == "raw"
    props = fields["properties"]
    assert props["bdm_v2"] == "True" and props["root_device_name"] == "/dev/vda" and props["owner_note"] == "x"
    assert image_mappings(IMG, props) == [
        {"source_type": "snapshot", "destination_type": "volume", "uuid": SNAP, "volume_size": 1, "boot_index": 0,
         "delete_on_termination": False, "device_name": "/dev/vda"},
        {"source_type": "snapshot", "destination_type": "volume", "uuid": SNAP2, "volume_size": 1,
         "delete_on_termination": False, "device_name": "/dev/vdb"}]
    assert image_mappings(IMG, {"os_distro": "busybox"}) is None  # an ordinary image defines none


@pytest.mark.parametrize(("props", "why"), [
    ({"block_device_mapping": json.dumps([root()])}, "legacy"),
    ({"block_device_mapping": "[not json", "bdm_v2": "True"}, "not a JSON list"),
    ({"block_device_mapping": json.dumps({"a": 1}), "bdm_v2": "True"}, "a list of at most"),
    ({"block_device_mapping": json.dumps([root()] * 18), "bdm_v2": "True"}, "a list of at most"),
    ({"block_device_mapping": json.dumps(["x"]), "bdm_v2": "True"}, "must be an object"),
    ({"block_device_mapping": json.dumps([root(source_type="file")]), "bdm_v2": "True"}, "is not served"),
    ({"block_device_mapping": json.dumps([root(snapshot_id="../etc")]), "bdm_v2": "True"}, "needs the snapshot's"),
    ({"block_device_mapping": json.dumps([root(volume_size="1; rm")]), "bdm_v2": "True"}, "volume_size"),
    ({"block_device_mapping": json.dumps([root(boot_index=True)]), "bdm_v2": "True"}, "boot_index"),
    ({"block_device_mapping": json.dumps([root(device_name="x" * 300)]), "bdm_v2": "True"}, "device_name"),
])
def test_a_bad_image_mapping_is_a_400_naming_the_image(props: dict[str, Any], why: str) -> None:
    with pytest.raises(errors.Invalid, match=why) as refused:
        image_mappings(IMG, props)
    assert refused.value.http_status == 400 and IMG in refused.value.message


def test_the_image_root_replaces_the_clients_image_root_and_a_request_device_overrides_the_image() -> None:
    image_root = {"source_type": "snapshot", "destination_type": "volume", "uuid": SNAP, "boot_index": 0,
                  "device_name": "/dev/vda"}
    image_data = {"source_type": "snapshot", "destination_type": "volume", "uuid": SNAP2, "device_name": "/dev/vdb"}
    client_root = {"source_type": "image", "destination_type": "local", "uuid": IMG, "boot_index": 0}
    blank_vdb = {"source_type": "blank", "destination_type": "volume", "volume_size": 2, "device_name": "/dev/vdb"}
    assert merged([image_root, image_data], [client_root, blank_vdb]) == [image_root, blank_vdb]
    assert merged([image_data], [client_root]) == [image_data, client_root]  # no root in the image: the client's
