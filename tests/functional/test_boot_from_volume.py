"""Boot from volume (issue 18) on real QEMU guests (qemu:///embed, TCG here) with the unmodified
`openstack` CLI: a bootable volume made from tiny-linux, `server create --volume` boots it (the tiny
guest's banner on the console, the QEMU process opening the volume's file as its disk, no image disk
in the instance's directory), the server shows no image and lists the volume, the volume is in-use at
/dev/vda, and the server's delete gives the volume back available with its bytes. A non-bootable
volume is refused with Nova's 400 and reserves nothing. Skipped with the reason where QEMU is missing."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_real_guests import BANNER, _unavailable, host_dir, qemu_pid, sdk, wait_console
from tools.devcluster import RunningCluster, running_cluster, wait_for
from tools.tinyimage import ROOT_MARKER

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    reason = _unavailable()
    if reason is not None:
        pytest.skip(reason)
    with running_cluster(tmp_path_factory.mktemp("bfv"), virt_uri="qemu:///embed", volumes=True, name="bfv18") as c:
        yield c


def volume_status(cluster: RunningCluster, name: str, status: str, timeout: float = 120) -> dict[str, Any]:
    return dict(wait_for(f"volume {name} {status}", lambda: (
        v := cluster.ok("volume", "show", name, "-f", "json"))["status"] == status and v, timeout, 0.5))


def volume_file(cluster: RunningCluster, volume_id: str) -> Path:
    return host_dir(cluster) / "volumes" / f"volume-{volume_id}.raw"


def test_server_create_volume_boots_the_volume_with_the_cli(cluster: RunningCluster) -> None:
    cluster.ok("volume", "create", "--size", "1", "plain", "-f", "json")
    volume_status(cluster, "plain", "available")
    done = cluster.cli("server", "create", "--volume", "plain", "--flavor", "m1.tiny", "nope")
    assert done.returncode != 0 and "is not bootable" in done.stderr, done.stderr
    assert volume_status(cluster, "plain", "available")["attachments"] == []

    cluster.ok("volume", "create", "--image", "tiny-linux", "--size", "1", "--bootable", "bootvol", "-f", "json")
    vid = volume_status(cluster, "bootvol", "available")["id"]
    with volume_file(cluster, vid).open("rb") as f:
        assert f.read(len(ROOT_MARKER)) == ROOT_MARKER
    server = cluster.ok("server", "create", "--volume", "bootvol", "--flavor", "m1.tiny",
                        "--wait", "vm1", "-f", "json")
    sid = server["id"]
    assert server["status"] == "ACTIVE"
    wait_console(sdk(cluster), sid, BANNER, timeout=120)
    pid = qemu_pid(cluster, sid)
    assert pid is not None
    assert str(volume_file(cluster, vid)) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    assert not (host_dir(cluster) / "instances" / sid / "disk").exists()  # no image disk beside it

    shown = cluster.ok("server", "show", "vm1", "-f", "json")
    assert shown["image"] in ("", "N/A (booted from volume)")
    assert [v["id"] for v in shown["volumes_attached"]] == [vid]
    vol = volume_status(cluster, "bootvol", "in-use")
    assert [(a["server_id"], a["device"]) for a in vol["attachments"]] == [(sid, "/dev/vda")]

    cluster.ok("server", "delete", "--wait", "vm1")
    assert volume_status(cluster, "bootvol", "available")["attachments"] == []
    with volume_file(cluster, vid).open("rb") as f:  # the volume outlives its server
        assert f.read(len(ROOT_MARKER)) == ROOT_MARKER
    for name in ("bootvol", "plain"):
        cluster.ok("volume", "delete", name)
    wait_for("volumes gone", lambda: not cluster.ok("volume", "list", "-f", "json"), 60, 0.5)


def test_boot_from_volume_n_makes_the_volume_and_the_guest_boots_from_it(cluster: RunningCluster) -> None:
    """server create --image tiny-linux --boot-from-volume 1 --delete-on-termination: the cell makes the
    volume from the image, the real guest boots from it (banner, QEMU opens the volume's file, no image
    disk) with the kernel and ramdisk of the image, and the server's delete removes the volume."""
    server = cluster.ok("server", "create", "--image", "tiny-linux", "--boot-from-volume", "1",
                        "--delete-on-termination", "--flavor", "m1.tiny", "--wait", "vm2", "-f", "json")
    sid = server["id"]
    assert server["status"] == "ACTIVE" and server["image"] in ("", "N/A (booted from volume)")
    [attached] = server["volumes_attached"]
    vid = attached["id"]
    wait_console(sdk(cluster), sid, BANNER, timeout=120)
    pid = qemu_pid(cluster, sid)
    assert pid is not None
    assert str(volume_file(cluster, vid)) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    assert not (host_dir(cluster) / "instances" / sid / "disk").exists()
    assert volume_status(cluster, vid, "in-use")["bootable"] in (True, "true")
    cluster.ok("server", "delete", "--wait", "vm2")
    wait_for("the root volume deleted with its server", lambda: vid not in {
        v["ID"] for v in cluster.ok("volume", "list", "-f", "json")}, 60, 0.5)
    assert not volume_file(cluster, vid).exists()
