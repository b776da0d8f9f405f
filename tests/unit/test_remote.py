"""`via: ssh` hosts without a network: cluster.yaml keys and refusals, the host's slice of the
state (its own keys only), the managed known_hosts, how ssh failures read, and the supervisor
that runs one host's services. The real ssh round trip is tests/functional/test_ssh_host.py."""
from __future__ import annotations

import copy
import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cells.config import ClusterConfig
from tools import clusterfile, health, remote
from tools.clusterfile_fields import ClusterFileError
from tools.supervisor import programs_for

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

DOC: dict[str, Any] = {
    "cluster": "demo",
    "api": {"host": "ctl", "listen": "127.0.0.1:8774"},
    "sites": [{"name": "site1", "cells": [{
        "name": "cell1",
        "services": {"router": "ctl:5601"},
        "hosts": ["node1", "far"],
    }]}],
    "hosts": {
        "ctl": {"address": "127.0.0.1", "via": "local"},
        "node1": {"address": "127.0.0.1", "via": "local", "rpc_port": 5610},
        "far": {"address": "192.0.2.7", "via": "ssh", "user": "cellcloud", "port": 2222,
                "identity_file": "keys/id_far", "host_key": HOST_KEY + " root@far",
                "remote_dir": "/opt/cellcloud/", "rpc_port": 5700},
    },
    "security": {"curve": False},
}


def load(tmp_path: Path, doc: dict[str, Any]) -> ClusterConfig:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return clusterfile.load(path)


def changed(**far: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    doc["hosts"]["far"].update(far)
    return doc


def test_an_ssh_host_resolves_with_its_options_and_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, DOC)
    far = next(h for h in cfg.hosts if h.name == "far")
    assert far.via == "ssh" and far.address == "192.0.2.7"
    assert far.ssh == {"port": 2222, "user": "cellcloud", "identity_file": str(tmp_path / "keys" / "id_far"),
                       "host_key": HOST_KEY, "remote_dir": "/opt/cellcloud"}  # comment dropped, path resolved
    assert cfg.service("cell1/compute/far").bind == "tcp://192.0.2.7:5700"
    assert ClusterConfig.from_dict(json.loads(cfg.to_json())) == cfg  # survives cluster.json
    host = remote.SshHost.of(cfg, far)
    assert host.remote_state == "/opt/cellcloud/var/ssh/demo/far"
    assert host.destination == "cellcloud@192.0.2.7" and host.known_hosts_name == "[192.0.2.7]:2222"
    # where cellctl tells the operator to look: on the host, as scp would name it
    assert str(health.log_path(cfg, "cell1/compute/far")) == "far:/opt/cellcloud/var/ssh/demo/far/log/cell1_compute_far.log"
    assert health.log_path(cfg, "cell1/compute/node1") == tmp_path / "var" / "log" / "cell1_compute_node1.log"
    minimal = copy.deepcopy(DOC)
    minimal["hosts"]["far"] = {"address": "far.example.org", "via": "ssh", "rpc_port": 5700}
    plain = remote.ssh_hosts(load(tmp_path, minimal))[0]
    assert (plain.port, plain.user, plain.identity_file, plain.host_key) == (22, None, None, None)
    assert plain.remote_dir == str(remote.PROJECT_ROOT) and plain.destination == "far.example.org"


@pytest.mark.parametrize(("doc", "message"), [
    (changed(port=0), "hosts.far.port: expected a port number 1-65535, got 0"),
    (changed(user="bad user"), "hosts.far.user: expected a user name of letters"),
    (changed(remote_dir="opt/cellcloud"), "hosts.far.remote_dir: expected an absolute path on the remote machine"),
    (changed(remote_state=""), "hosts.far.remote_state: expected an absolute path on the remote machine"),
    (changed(host_key="AAAAC3NzaC1lZDI1NTE5"), "hosts.far.host_key: expected a public host key 'TYPE BASE64'"),
    (changed(host_key="ssh-ed25519 not*base64"), "hosts.far.host_key: expected a public host key"),
    (changed(site_net="site1"), "hosts.far.site_net: only a host with via: netns sits on a site network"),
    (changed(password="x"), "hosts.far.password: unknown key (expected one of: address, via"),
])
def test_bad_ssh_keys_name_the_field(tmp_path: Path, doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ClusterFileError) as err:
        load(tmp_path, doc)
    assert message in str(err.value) and str(err.value).startswith(str(tmp_path / "cluster.yaml"))


def test_services_needing_this_machines_files_are_refused_on_an_ssh_host(tmp_path: Path) -> None:
    api_there = copy.deepcopy(DOC)
    api_there["api"] = {"host": "far", "listen": "192.0.2.7:8774"}
    with pytest.raises(ClusterFileError, match=r"api\.host: the API cannot run on ssh host 'far'"):
        load(tmp_path, api_there)
    conductor_there = copy.deepcopy(DOC)
    conductor_there["sites"][0]["cells"][0]["services"]["conductor"] = "far:5602"
    with pytest.raises(ClusterFileError, match=r"hosts\.far\.via: ssh host 'far' would run cell1/conductor, which "
                                               r"opens the database of cell cell1"):
        load(tmp_path, conductor_there)
    # a cell on postgresql may run its conductor there; a router needs no database at all
    conductor_there["sites"][0]["cells"][0]["db"] = "postgresql://cc@db.example.org/cell1"
    assert load(tmp_path, conductor_there).service("cell1/conductor").host == "far"
    router_there = copy.deepcopy(DOC)
    router_there["sites"][0]["cells"][0]["services"] = {"router": "far:5601", "conductor": "ctl:5602",
                                                        "scheduler": "ctl:5603", "network": "ctl:5604"}
    assert load(tmp_path, router_there).service("cell1/router").host == "far"


def test_the_host_gets_its_slice_and_only_its_own_keys(tmp_path: Path) -> None:
    """scp is the process boundary: a fake that copies into a directory standing in for the remote."""
    doc = copy.deepcopy(DOC)
    doc["security"] = {"curve": True}
    doc["hosts"]["far"]["remote_state"] = str(tmp_path / "remote")
    doc["hosts"]["far"]["roles"] = ["compute", "volume"]
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    cluster = clusterfile.resolve(tmp_path / "cluster.yaml")
    host = remote.ssh_hosts(cluster)[0]
    calls: list[list[str]] = []

    def runner(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        if argv[0] == remote.SCP:
            dest = Path(argv[-1].split(":", 1)[1])
            dest.mkdir(parents=True, exist_ok=True)
            sources = [a for a in argv[:-1] if a.startswith("/") and Path(a).is_file() and a != host.identity_file]
            for src in sources:
                shutil.copy2(src, dest)
        return subprocess.CompletedProcess(argv, 0, "", "")

    remote.Remote(host, runner).push(cluster)
    there = tmp_path / "remote"
    assert sorted(p.name for p in (there / "keys").iterdir()) == ["cell1_compute_far.secret",
                                                                 "cell1_volume_far.secret"]
    assert (there / "keys" / "cell1_compute_far.secret").read_bytes() == \
        (tmp_path / "var" / "keys" / "cell1_compute_far.secret").read_bytes()
    sliced = ClusterConfig.load(there / "cluster.json")
    assert stat.S_IMODE((there / "cluster.json").stat().st_mode) == 0o600
    assert sliced.state_dir == str(there)
    # only the image reader's: no admin, demo or service password
    assert sliced.secrets == {"image_reader_password": cluster.secrets["image_reader_password"]}
    assert [c.db for c in sliced.cells] == [""]  # it runs no DB service: no DB URL
    assert sliced.allowed_keys() == cluster.allowed_keys()  # it must accept the whole cluster's peers
    ssh_call = calls[0]
    assert ssh_call[0] == remote.SSH and "BatchMode=yes" in ssh_call and "StrictHostKeyChecking=yes" in ssh_call
    assert f"UserKnownHostsFile={tmp_path / 'var' / 'ssh' / 'known_hosts'}" in ssh_call
    assert ssh_call[ssh_call.index("-p") + 1] == "2222"


def test_pinned_host_keys_replace_only_their_own_line(tmp_path: Path) -> None:
    cluster = load(tmp_path, DOC)
    host = remote.ssh_hosts(cluster)[0]
    host.known_hosts.parent.mkdir(parents=True)
    host.known_hosts.write_text(f"10.0.0.9 {HOST_KEY}\n[192.0.2.7]:2222 ssh-rsa AAAAB3NzaC1yc2E=\n")
    remote.write_known_host(host)
    assert host.known_hosts.read_text().splitlines() == [f"10.0.0.9 {HOST_KEY}", f"[192.0.2.7]:2222 {HOST_KEY}"]
    assert stat.S_IMODE(host.known_hosts.stat().st_mode) == 0o600
    unpinned = remote.SshHost.of(cluster, next(h for h in cluster.hosts if h.name == "far"))
    unpinned = type(unpinned)(**{**unpinned.__dict__, "host_key": None})
    assert "StrictHostKeyChecking=accept-new" in unpinned.ssh_argv("true")  # trust on first use, then pinned


def test_ssh_failures_read_as_what_the_operator_must_fix(tmp_path: Path) -> None:
    host = remote.ssh_hosts(load(tmp_path, DOC))[0]

    def failing(code: int, stderr: str) -> remote.Remote:
        return remote.Remote(host, lambda argv, t: subprocess.CompletedProcess(argv, code, "", stderr))

    with pytest.raises(remote.RemoteError, match=r"far \(cellcloud@192.0.2.7 port 2222\): checking the host: the "
                                                 r"host key does not match the pinned hosts.far.host_key"):
        failing(255, "Host key verification failed.\r\n").check()
    with pytest.raises(remote.RemoteError, match="ssh login refused .* check user and identity_file"):
        failing(255, "cellcloud@192.0.2.7: Permission denied (publickey).").check()
    with pytest.raises(remote.RemoteError, match="install cellcloud there .* or set hosts.far.remote_dir"):
        failing(remote.NO_INSTALL, "no cellcloud at /opt/cellcloud on this host (no .venv/bin/python)").check()

    def timeout(argv: list[str], t: float) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(argv, t)

    with pytest.raises(remote.RemoteError, match="far: stopping its supervisor: no answer in"):
        remote.Remote(host, timeout).stop()


def test_the_agent_runs_from_the_remote_checkout(tmp_path: Path) -> None:
    host = remote.ssh_hosts(load(tmp_path, DOC))[0]
    out = subprocess.run(["sh", "-c", host.python("agent-check")], capture_output=True, text=True, timeout=30,
                         check=False)
    assert out.returncode == remote.NO_INSTALL and "no cellcloud at /opt/cellcloud" in out.stderr
    here = type(host)(**{**host.__dict__, "remote_dir": str(remote.PROJECT_ROOT)})
    out = subprocess.run(["sh", "-c", here.python("agent-check")], capture_output=True, text=True, timeout=30,
                         check=False)
    assert out.returncode == 0 and f"cellcloud at {remote.PROJECT_ROOT}" in out.stdout


def test_the_supervisor_of_an_ssh_host_runs_exactly_its_services(tmp_path: Path) -> None:
    path = tmp_path / "cluster.json"
    path.write_text(load(tmp_path, changed(roles=["compute", "volume"])).to_json())
    local = {p.id for p in programs_for(path)}
    assert "cell1/compute/far" not in local and "cell1/compute/node1" in local  # not run here
    there = {p.id: p for p in programs_for(path, host="far")}
    assert set(there) == {"cell1/compute/far", "cell1/volume/far"}
    assert there["cell1/compute/far"].argv == (sys.executable, "-m", "tools.serve", "--cluster", str(path),
                                               "cell1/compute/far")
