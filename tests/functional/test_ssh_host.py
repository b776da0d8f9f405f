"""A `via: ssh` compute host for real: a network namespace made with tools/netns.py runs its own
sshd (a host key and an authorized key this test generates); `cellctl up` reaches it with the
OpenSSH client, copies its slice of the state and its own CURVE keys, starts its supervisor
there; a server boots on it and is deleted through the API; `cellctl down` stops it over ssh;
nothing is left (sshd, namespace, processes). Also: a host key that does not match is refused."""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from cells.config import ClusterConfig
from tools import remote
from tools.devcluster import RunningCluster, free_port, wait_for
from tools.netns import NetnsHost, Topology, namespaces, unused_range
from tools.supervisor import pid_alive, read_pid

# real guests or netns hosts: the module's cluster comes up inside its first test's timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"

_missing = [what for what, ok in (("root", os.geteuid() == 0), ("iproute2 (ip)", shutil.which("ip") is not None),
                                  (f"openssh-server ({SSHD})", os.path.exists(SSHD)),
                                  ("openssh-client (ssh, scp)", bool(shutil.which("ssh") and shutil.which("scp"))))
            if not ok]
if _missing:
    pytest.skip(f"an ssh host in a netns needs {', '.join(_missing)} (make deps installs the packages)",
                allow_module_level=True)


@dataclass
class Box:
    topology: Topology
    address: str  # the box's address on its site network, where sshd listens
    here: str  # the root namespace's end of the link into the topology: the box reaches it
    sshd: subprocess.Popen[bytes]
    dir: Path
    host_key: str  # its public host key, "ssh-ed25519 AAAA..."
    identity: Path  # the client key authorized there

    @property
    def namespace(self) -> str:
        return self.topology.namespace("box")


def keygen(path: Path, comment: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True,
                   timeout=30)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    """A namespace host on its own site network, running sshd -D with this test's config."""
    d = tmp_path_factory.mktemp("sshbox")
    network = ipaddress.IPv4Network(unused_range())  # beside any other run of this test on the machine
    address, here = str(network.network_address + 256 + 20), str(network.network_address + 1)
    name = f"ssh{os.getpid()}"
    topology = Topology(name, network, ("lab",), (NetnsHost("box", f"cc-{name}-box", address, "lab"),))
    host_key = keygen(d / "host_key", "box")
    client_key = keygen(d / "id_box", "cellctl")
    (d / "authorized_keys").write_text(client_key + "\n")
    (d / "sshd_config").write_text("\n".join([
        f"ListenAddress {address}:22", f"HostKey {d / 'host_key'}", f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}", "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "StrictModes no", "UseDNS no", f"Subsystem sftp {SFTP_SERVER}", ""]))
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    topology.create()
    log = open(d / "sshd.log", "wb")  # noqa: SIM115 - closed below
    sshd = subprocess.Popen([*topology.exec_prefix("box"), SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("sshd in the box to listen", lambda: answers(address, 22) or sshd.poll() is not None, timeout=15)
        assert sshd.poll() is None, (d / "sshd.log").read_text()
        yield Box(topology, address, here, sshd, d, host_key, d / "id_box")
    finally:
        sshd.terminate()
        try:
            sshd.wait(10)
        except subprocess.TimeoutExpired:
            sshd.kill()
            sshd.wait()
        log.close()
        topology.destroy()
    assert topology.namespace("box") not in namespaces() and topology.wan not in namespaces()


@pytest.fixture(scope="module")
def cluster(box: Box, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    """The API and the cell's services here (on the link address the box can reach), the only
    compute host the box, reached via ssh."""
    root = tmp_path_factory.mktemp("sshcluster")
    doc = {
        "cluster": "sshtest", "state_dir": "var", "heartbeat_interval": 1.0,
        "api": {"host": "ctl", "listen": f"{box.here}:{free_port()}"},
        "sites": [{"name": "lab", "cells": [{
            "name": "cell1",
            "services": {"router": f"ctl:{free_port()}", "conductor": f"ctl:{free_port()}",
                         "scheduler": f"ctl:{free_port()}", "network": f"ctl:{free_port()}"},
            "hosts": ["box"],
        }]}],
        "hosts": {
            "ctl": {"address": box.here, "via": "local"},
            "box": {"address": box.address, "via": "ssh", "user": "root", "port": 22, "identity_file": str(box.identity),
                    "host_key": box.host_key, "remote_state": str(box.dir / "remote"), "rpc_port": 5700},
        },
    }
    (root / "cluster.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    c = RunningCluster(root, root / "cluster.yaml")
    up = c.cellctl("up", str(c.cluster_file), "--timeout", "90", check=False, timeout=180)
    try:
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}\n{remote_logs(box)}"
        assert f"ssh host box (root@{box.address}): started the supervisor" in up.stdout
        yield c
    finally:  # test_down_leaves_nothing_running took it down already unless a test failed first
        c.cellctl("down", str(c.cluster_file), check=False, timeout=180)


def remote_logs(box: Box) -> str:
    logs = sorted((box.dir / "remote" / "log").glob("*.log")) if (box.dir / "remote" / "log").exists() else []
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs) + \
        f"\n--- sshd.log\n{(box.dir / 'sshd.log').read_text()[-2000:]}"


token = RunningCluster.token  # token(cluster, who="demo")


def netns_of(pid: int) -> str:
    return subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True, text=True, timeout=10,
                          check=True).stdout.strip()


def test_the_ssh_host_runs_its_own_services_with_only_its_own_secrets(cluster: RunningCluster, box: Box) -> None:
    there = box.dir / "remote"
    compute = read_pid(there / "run" / "cell1_compute_box.pid")
    supervisor = read_pid(there / "run" / "supervisor.pid")
    assert compute is not None and pid_alive(compute, "tools.serve") and netns_of(compute) == box.namespace
    assert supervisor is not None and pid_alive(supervisor, "tools.supervisor") and netns_of(supervisor) == box.namespace
    assert not (cluster.state / "run" / "cell1_compute_box.pid").exists()  # the local supervisor does not run it
    assert [p.name for p in (there / "keys").iterdir()] == ["cell1_compute_box.secret"]
    sliced = json.loads((there / "cluster.json").read_text())
    assert sliced["state_dir"] == str(there) and set(sliced["secrets"]) == {"image_reader_password"}
    known = (cluster.state / "ssh" / "known_hosts").read_text()
    assert known == f"{box.address} {box.host_key}\n"  # pinned by the tool, nothing else
    status = cluster.cellctl("status", str(cluster.cluster_file), "--hosts", check=False)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"host box ({box.address}, via ssh)" in status.stdout
    line = next(x for x in status.stdout.splitlines() if "cell1/compute/box" in x)
    assert f"tcp://{box.address}:5700" in line and "alive" in line


def test_a_server_boots_on_the_ssh_host_and_is_deleted(cluster: RunningCluster, box: Box) -> None:
    demo, admin = token(cluster, "demo"), token(cluster, "admin")
    compute = f"{cluster.endpoint}/compute/v2.1"
    image = requests.get(f"{cluster.endpoint}/image/v2/images?name=tiny-raw", headers={"X-Auth-Token": demo},
                         timeout=10).json()["images"][0]["id"]
    made = requests.post(f"{compute}/servers", headers={"X-Auth-Token": demo}, timeout=30,
                         json={"server": {"name": "far1", "flavorRef": "1", "imageRef": image}})
    assert made.status_code == 202, made.text
    server_id = made.json()["server"]["id"]

    def server() -> dict[str, Any]:
        resp = requests.get(f"{compute}/servers/{server_id}", headers={"X-Auth-Token": admin}, timeout=10)
        assert resp.status_code == 200, resp.text
        return dict(resp.json()["server"])

    active = wait_for("the server ACTIVE", lambda: (s := server())["status"] in ("ACTIVE", "ERROR") and s)
    assert active["status"] == "ACTIVE", active
    assert active["OS-EXT-SRV-ATTR:host"] == "box"
    # the image went to the box's own cache, under its remote state dir, fetched through the API
    assert any((box.dir / "remote" / "hosts" / "box" / "images").iterdir())
    gone = requests.delete(f"{compute}/servers/{server_id}", headers={"X-Auth-Token": demo}, timeout=10)
    assert gone.status_code == 204, gone.text
    wait_for("the server gone", lambda: requests.get(f"{compute}/servers/{server_id}", timeout=10,
                                                     headers={"X-Auth-Token": demo}).status_code == 404)
    assert server_id in (box.dir / "remote" / "log" / "cell1_compute_box.log").read_text()


def test_a_wrong_host_key_key_or_port_is_refused_clearly(cluster: RunningCluster, box: Box) -> None:
    host = remote.ssh_hosts(ClusterConfig.load(cluster.state / "cluster.json"))[0]
    other = keygen(box.dir / "not_the_box", "impostor")
    wrong = dataclasses.replace(host, host_key=other, known_hosts=box.dir / "other" / "known_hosts")
    with pytest.raises(remote.RemoteError, match="the host key does not match the pinned hosts.box.host_key"):
        remote.Remote(wrong).check()
    right = dataclasses.replace(wrong, host_key=box.host_key)
    remote.Remote(right).check()  # the right key passes
    stranger = dataclasses.replace(right, identity_file=str(box.dir / "not_the_box"))
    with pytest.raises(remote.RemoteError, match=r"ssh login refused .*check user and identity_file"):
        remote.Remote(stranger).check()
    with pytest.raises(remote.RemoteError, match=rf"box \(root@{re.escape(box.address)} port 2200\): checking the "
                                                 r"host: ssh failed: .*Connection refused"):
        remote.Remote(dataclasses.replace(right, port=2200)).check()


def test_down_leaves_nothing_running(box: Box, cluster: RunningCluster) -> None:
    """Runs last (file order): take the cluster down here, then check the box is empty."""
    there = box.dir / "remote"
    pids = [read_pid(there / "run" / "supervisor.pid"), read_pid(there / "run" / "cell1_compute_box.pid")]
    down = cluster.cellctl("down", str(cluster.cluster_file), check=False, timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "ssh host box: stopped the supervisor" in down.stdout
    assert all(p is not None and not pid_alive(p) for p in pids)
    assert not list((there / "run").glob("*.pid"))
    strays = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, str(there))]
    assert strays == []


def _cmdline_has(proc: Path, needle: str) -> bool:
    try:
        return needle in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
