"""createImage on a real guest (slow): a netns host on qemu:///embed (tools/netns.py, as
tests/functional/test_guest_network.py) boots the tiny guest, whose user data writes a marker at the start
of its root disk; a snapshot of the running guest becomes an image, and a new server booted from that image
shows the marker on its console (the tiny guest prints the first bytes of each disk it sees), without any
user data of its own: what the guest wrote is in the snapshot."""
from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.functional.test_guest_network import Api, _missing
from tools.devcluster import RunningCluster, running_netns_cluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
TAG = uuid.uuid4().hex[:4]
NAME = f"sn{TAG}"
MARKER = f"SNAPMARK{TAG}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    with running_netns_cluster(tmp_path_factory.mktemp("snapguest"), NAME, ("n1",)) as c:
        yield c


def _boot(api: Api, name: str, image: str, network: str, user_data: str | None = None) -> str:
    body: dict[str, Any] = {"server": {"name": name, "flavorRef": "1", "imageRef": image,
                                       "networks": [{"uuid": network}]}}
    if user_data is not None:
        body["server"]["user_data"] = base64.b64encode(user_data.encode()).decode()
    resp = api("POST", "/compute/v2.1/servers", json=body)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["server"]["id"])


def test_a_snapshot_of_a_running_guest_boots_with_what_the_guest_wrote(cluster: RunningCluster) -> None:
    demo = Api(cluster, "demo")
    network = demo("GET", "/network/v2.0/networks").json()["networks"][0]["id"]
    base = demo("GET", "/image/v2/images?name=tiny-linux").json()["images"][0]["id"]
    script = (f"#!/bin/sh\nprintf '{MARKER}' | dd of=/dev/vda bs=32 count=1 conv=notrunc 2>/dev/null\n"
              "sync\necho CELLCLOUD-MARKED\n")
    source = _boot(demo, "snapsrc", base, network, script)
    demo.active(source)
    demo.console_until(source, "CELLCLOUD-MARKED")

    made = demo("POST", f"/compute/v2.1/servers/{source}/action", json={"createImage": {"name": f"snap{TAG}"}})
    assert made.status_code == 202, made.text
    image_id = made.headers["Location"].rsplit("/", 1)[-1]
    image = wait_for("the snapshot active", lambda: (i := demo("GET", f"/image/v2/images/{image_id}").json())
                     ["status"] == "active" and i, 300)
    assert (image["disk_format"], image["image_type"], image["instance_uuid"]) == ("qcow2", "snapshot", source)
    assert image["kernel_id"] and image["ramdisk_id"]  # the AMI's kernel and ramdisk: it boots the same way
    assert demo.server(source)["status"] == "ACTIVE"  # the guest paused for the copy runs again
    wait_for("the source's task ended", lambda: demo.server(source)["OS-EXT-STS:task_state"] is None, 60)

    copy = _boot(demo, "fromsnap", image_id, network)
    demo.active(copy)
    out = demo.console_until(copy, "CELLCLOUD-DISK added vda")
    assert f"head=[{MARKER}" in out, out[-2000:]
    assert "CELLCLOUD-MARKED" not in out  # no user data of its own: the marker came with the disk
    for server in (copy, source):
        demo.delete(server)
    assert demo("DELETE", f"/image/v2/images/{image_id}").status_code == 204
