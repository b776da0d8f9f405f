"""Down means down: `cellctl down` of a cluster of netns hosts stops every process the cluster
started on this machine, not only the services: the network's dnsmasq, the volume worker's tgtd
and qemu-storage-daemon, and the QEMU guest, all of which outlive their service on purpose.

A netns cluster (controller + one compute and volume host, qemu:///embed) boots a guest on its
project's network and attaches a volume to it. Before `down`, the scan (tools/leftovers.py) must
see each of those helpers, so an empty scan afterwards means something; after `down`, no process
is tied to the cluster by its command line, working directory, open files or network namespace
(the namespaces' identities are taken before down: their names go with it)."""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest

from node.volume.targets import nbd, tgt
from tests.functional.test_guest_network import Api
from tests.functional.test_real_guests import _unavailable, sdk
from tools import leftovers
from tools.devcluster import RunningCluster, running_netns_cluster
from tools.openstack_cli import WAIT_POLL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
NAME = f"dn{uuid.uuid4().hex[:4]}"
HELPERS = ("dnsmasq", "tgtd", "qemu-storage-daemon", "qemu-system")


def _missing() -> str | None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "netns hosts need root and iproute2 (ip netns)"
    for tool in ("dnsmasq", "nft"):
        if shutil.which(tool) is None:
            return f"guest networking needs {tool}"
    return tgt.unavailable_reason() or nbd.unavailable_reason() or _unavailable()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    with running_netns_cluster(tmp_path_factory.mktemp("downall"), NAME, ("n1",), volume_host="n1") as c:
        yield c


def namespaces() -> list[str]:
    return [f"cc-{NAME}-n1", f"cc-{NAME}-ctl", f"cc-{NAME}-wan"]


def test_down_stops_dnsmasq_tgtd_qemu_storage_daemon_and_guests(cluster: RunningCluster) -> None:
    demo = Api(cluster, "demo")
    (net,) = demo("GET", "/network/v2.0/networks").json()["networks"]
    sid = demo.boot("downvm", net["id"], "#!/bin/sh\necho hi\n")
    demo.active(sid)
    conn = sdk(cluster)
    vol = conn.block_storage.create_volume(size=1, name="downvol")
    conn.block_storage.wait_for_status(vol, "available", wait=60, interval=WAIT_POLL)
    conn.compute.create_volume_attachment(sid, volume=vol.id)
    conn.block_storage.wait_for_status(vol, "in-use", wait=60, interval=WAIT_POLL)

    ns_ids = leftovers.namespace_ids(namespaces())
    assert len(ns_ids) == 3
    before = leftovers.find(cluster.state, namespaces())
    for helper in HELPERS:  # the scan sees what down must stop: an empty scan afterwards means something
        assert any(helper in p.command for p in before), f"no {helper} among:\n" + "\n".join(map(str, before))

    down = cluster.cellctl("down", str(cluster.cluster_file), check=False, timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr

    left = leftovers.find(cluster.state, anything=True, ns_ids=ns_ids)
    assert left == [], "left running after cellctl down:\n" + "\n".join(map(str, left))
    assert not [ns for ns in namespaces() if os.path.exists(f"/run/netns/{ns}")]
