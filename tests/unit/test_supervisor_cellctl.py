"""cellctl without a whole cluster: a bad file starts nothing, credentials files, and
liveness read from a real cell directory (router) on loopback."""
from __future__ import annotations

import asyncio
import json
import socket
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from cells.rpc.client import RpcClient
from cells.rpc.directory import SURFACE, Directory, DirectoryView, Member
from cells.service_process import Service
from tests.conftest import free_port
from tools import cellctl, clusterfile, health


def cluster_file(tmp_path: Path, router: int, api: int) -> Path:
    doc = {
        "cluster": "t", "heartbeat_interval": 0.2,
        "api": {"host": "ctl", "listen": f"127.0.0.1:{api}"},
        "sites": [{"name": "s", "cells": [{"name": "cell1", "hosts": ["node1"], "services": {
            "router": f"ctl:{router}", "conductor": f"ctl:{free_port()}", "scheduler": f"ctl:{free_port()}"}}]}],
        "hosts": {"ctl": {"address": "127.0.0.1"}, "node1": {"address": "127.0.0.1", "rpc_port": free_port()}},
        "security": {"curve": False},  # these tests talk plaintext to an in-process directory
    }
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_up_with_a_bad_file_exits_2_and_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = cluster_file(tmp_path, free_port(), free_port())
    doc = yaml.safe_load(path.read_text())
    doc["sites"][0]["cells"][0]["services"]["router"] = "ctl"
    path.write_text(yaml.safe_dump(doc))
    assert cellctl.main(["up"]) == 2
    err = capsys.readouterr().err
    assert "cluster.yaml: sites[0].cells[0].services.router: expected HOST:PORT, got 'ctl'" in err
    assert not (tmp_path / "var").exists()


def test_up_refuses_a_taken_port_before_starting_anything(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    router = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", router))
        taken.listen()
        assert cellctl.main(["up", str(cluster_file(tmp_path, router, free_port()))]) == 1
    err = capsys.readouterr().err
    assert f"cell1/router: cannot bind tcp://127.0.0.1:{router}: Address already in use" in err
    assert not (tmp_path / "var" / "run").exists() and not (tmp_path / "var" / "cluster.json").exists()


def test_down_with_nothing_running_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cellctl.main(["down", str(cluster_file(tmp_path, free_port(), free_port()))]) == 0
    assert "no supervisor running" in capsys.readouterr().out


def test_status_of_a_stopped_cluster_is_all_down_and_exit_1(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert cellctl.main(["status", str(cluster_file(tmp_path, free_port(), free_port())), "--json"]) == 1
    status = json.loads(capsys.readouterr().out)
    assert status["healthy"] is False and status["supervisor"]["running"] is False
    assert status["api"]["alive"] is False
    [cell] = status["cells"]
    assert cell["alive"] is False and "No reply" in cell["error"]
    services = [s for h in cell["hosts"] for s in h["services"]]
    assert {s["id"] for s in services} == {"cell1/router", "cell1/conductor", "cell1/scheduler", "cell1/network",
                                           "cell1/compute/node1"}
    assert not any(s["alive"] for s in services)


def test_credentials_files_source_cleanly_and_are_private(tmp_path: Path) -> None:
    cluster = clusterfile.resolve(cluster_file(tmp_path, 5601, 8774))
    files = cellctl.write_credentials(cluster)
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    env = subprocess.run(["bash", "-c", f"source {files['openrc']} && env"], capture_output=True, text=True,
                         check=True, env={"OS_CLOUD": "leftover"}).stdout.splitlines()
    got = dict(line.split("=", 1) for line in env if line.startswith("OS_"))
    assert got == {
        "OS_AUTH_URL": "http://127.0.0.1:8774/identity/v3", "OS_USERNAME": "demo",
        "OS_PASSWORD": cluster.secrets["demo_password"], "OS_PROJECT_NAME": "demo",
        "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3",
        "OS_REGION_NAME": "RegionOne", "OS_AUTH_TYPE": "password", "OS_INTERFACE": "public",
    }
    assert "OS_USERNAME=admin" in files["openrc.admin"].read_text()
    clouds = yaml.safe_load(files["clouds.yaml"].read_text())["clouds"]
    assert clouds["cellcloud"]["auth"]["password"] == cluster.secrets["demo_password"]
    assert clouds["cellcloud-admin"]["auth"]["username"] == "admin"
    assert clouds["cellcloud-admin"]["auth"]["auth_url"] == "http://127.0.0.1:8774/identity/v3"


async def test_liveness_comes_from_the_cell_directory(tmp_path: Path) -> None:
    cluster = clusterfile.load(cluster_file(tmp_path, free_port(), free_port()))
    router = Service(cluster, cluster.service("cell1/router"), Directory(cluster.heartbeat_interval), SURFACE,
                     ("router",))
    stop = asyncio.Event()
    serving = asyncio.ensure_future(router.run(stop))
    # a conductor that only heartbeats: enough for the directory to list it
    client = RpcClient()
    spec = cluster.service("cell1/conductor")
    view = DirectoryView(client, cluster.cell("cell1").router,
                         Member(id=spec.id, address=spec.bind, topics=("conductor",)), cluster.heartbeat_interval)
    beating = asyncio.ensure_future(view.run())
    try:
        prober = health.Prober(cluster)
        try:
            for _ in range(50):
                found = await prober.probe(timeout=0.5)
                if {"cell1/router", "cell1/conductor"} <= set(found.cells["cell1"].members):
                    break
                await asyncio.sleep(0.1)
        finally:
            prober.close()
        alive = {s.id: found.alive(s) for s in cluster.services}
        assert alive == {"cell1/router": True, "cell1/conductor": True, "cell1/scheduler": False, "cell1/network": False,
                         "cell1/compute/node1": False, "api": False}
        status = health.report(cluster, found, supervisor_pid=None)
        assert status["cells"][0]["alive"] is True and status["healthy"] is False
        text = health.render(status)
        assert "cell1/conductor" in text and "NOT HEALTHY" in text
        assert [line.split()[-1] for line in text.splitlines() if "cell1/scheduler" in line] == ["DOWN"]
    finally:
        beating.cancel()
        client.close()
        stop.set()
        await serving


async def test_status_shows_the_conductors_host_verdicts_and_unhealthy_computes(tmp_path: Path) -> None:
    """Host states ride on the conductor's heartbeat, a compute's health on its own: status shows both."""
    cluster = clusterfile.load(cluster_file(tmp_path, free_port(), free_port()))
    router = Service(cluster, cluster.service("cell1/router"), Directory(cluster.heartbeat_interval), SURFACE,
                     ("router",))
    stop = asyncio.Event()
    serving = asyncio.ensure_future(router.run(stop))
    client = RpcClient()
    conductor, compute = cluster.service("cell1/conductor"), cluster.service("cell1/compute/node1")
    members = [Member(id=conductor.id, address=conductor.bind, topics=("conductor",),
                      meta={"hosts": {"node1": "suspect"}}),
               Member(id=compute.id, address=compute.bind, topics=("compute.node1",),
                      meta={"health": "libvirt call spawn stuck for 42 s (timeout 30 s)"})]
    views = [DirectoryView(client, cluster.cell("cell1").router, m, cluster.heartbeat_interval) for m in members]
    beating = [asyncio.ensure_future(v.run()) for v in views]
    try:
        prober = health.Prober(cluster)
        try:
            for _ in range(50):
                found = await prober.probe(timeout=0.5)
                if {conductor.id, compute.id} <= set(found.cells["cell1"].members):
                    break
                await asyncio.sleep(0.1)
        finally:
            prober.close()
        status = health.report(cluster, found, supervisor_pid=None)
        [node1] = [h for h in status["cells"][0]["hosts"] if h["name"] == "node1"]
        assert node1["state"] == "suspect"
        [svc] = [s for s in node1["services"] if s["id"] == compute.id]
        assert svc["unhealthy"] == "libvirt call spawn stuck for 42 s (timeout 30 s)"
        text = health.render(status)
        assert "host node1 (127.0.0.1)  SUSPECT" in text
        assert "UNHEALTHY: libvirt call spawn stuck for 42 s (timeout 30 s)" in text
    finally:
        for task in beating:
            task.cancel()
        client.close()
        stop.set()
        await serving
