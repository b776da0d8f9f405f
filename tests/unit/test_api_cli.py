"""The unmodified `openstack` CLI against the API on a real port, with a fake
cell (real ZeroMQ) that takes builds to ACTIVE and deletes to gone.

This is the compatibility contract: version discovery, token and catalog,
microversion negotiation, name -> id lookups (404 then ?name=), the views the
CLI prints. Each CLI run is a subprocess awaited without blocking the loop.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from api import bootstrap
from api.app import make_app
from tests.conftest import free_port
from tests.unit.api_fake_cell import fake_cell
from tests.unit.api_support import SECRETS, make_cluster
from tools import openstack_cli
from tools.devcluster import cli_env
from tools.openstack_cli import OPENSTACK, password_env

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not OPENSTACK.exists(), reason="python-openstackclient is not installed")]


async def _cli(home: Path, url: str, *args: str, user: str = "demo") -> Any:
    env = cli_env(home, **password_env(f"{url}/identity/v3", user, SECRETS[f"{user}_password"], user))
    done = await openstack_cli.run_async(list(args), env)
    assert done.returncode == 0, f"openstack {' '.join(args)} failed:\n{done.stderr}"
    return json.loads(done.stdout) if "-f" in args else done.stdout


async def test_openstack_cli_boot_list_show_delete(tmp_path: Path) -> None:
    async with fake_cell() as cell:
        cell.conductor.auto_after = 0.3
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cluster = make_cluster(tmp_path, router=cell.router)
        cluster = replace(cluster, api=replace(cluster.api, listen=f"127.0.0.1:{port}", public_url=url))
        await bootstrap.ensure(cluster)
        server = TestServer(make_app(cluster), host="127.0.0.1", port=port)
        await server.start_server()
        try:
            flavors = await _cli(tmp_path, url, "flavor", "list", "-f", "json")
            assert [f["Name"] for f in flavors] == ["m1.tiny", "m1.small", "m1.medium"]
            images = await _cli(tmp_path, url, "image", "list", "-f", "json")
            assert [(i["Name"], i["Status"]) for i in images] == [("tiny-raw", "active")]
            created = await _cli(tmp_path, url, "server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait",
                                 "demo1", "-f", "json")
            assert created["status"] == "ACTIVE" and created["name"] == "demo1"
            listed = await _cli(tmp_path, url, "server", "list", "-f", "json")
            assert [(s["Name"], s["Status"], s["Image"], s["Flavor"]) for s in listed] == \
                [("demo1", "ACTIVE", "tiny-raw", "m1.tiny")]
            shown = await _cli(tmp_path, url, "server", "show", "demo1", "-f", "json")
            assert shown["id"] == created["id"] and shown["OS-EXT-STS:vm_state"] == "active"
            await _cli(tmp_path, url, "server", "delete", "--wait", "demo1")
            assert await _cli(tmp_path, url, "server", "list", "-f", "json") == []
        finally:
            await server.close()


async def test_openstack_cli_flavor_show_create_delete(tmp_path: Path) -> None:
    """flavor show (the CLI reads os-extra_specs), an admin's flavor create with properties and delete; and
    the CLI's microversion negotiation reaching 2.2 for key pairs (their type shown, 204 on delete)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cluster = make_cluster(tmp_path)
    cluster = replace(cluster, api=replace(cluster.api, listen=f"127.0.0.1:{port}", public_url=url))
    await bootstrap.ensure(cluster)
    server = TestServer(make_app(cluster), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        tiny = await _cli(tmp_path, url, "flavor", "show", "m1.tiny", "-f", "json")
        assert (tiny["id"], tiny["ram"], tiny["properties"]) == ("1", 512, {})
        made = await _cli(tmp_path, url, "flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1",
                          "--property", "hw:cpu_policy=shared", "--private", "m9.test", "-f", "json", user="admin")
        assert made["name"] == "m9.test" and made["os-flavor-access:is_public"] is False
        shown = await _cli(tmp_path, url, "flavor", "show", "m9.test", "-f", "json", user="admin")
        assert shown["properties"] == {"hw:cpu_policy": "shared"} and shown["access_project_ids"] == []
        await _cli(tmp_path, url, "flavor", "delete", "m9.test", user="admin")
        names = [f["Name"] for f in await _cli(tmp_path, url, "flavor", "list", "--all", "-f", "json", user="admin")]
        assert names == ["m1.tiny", "m1.small", "m1.medium"]
        await _cli(tmp_path, url, "keypair", "create", "--private-key", str(tmp_path / "k.pem"), "key1")
        shown = await _cli(tmp_path, url, "keypair", "show", "key1", "-f", "json")
        assert shown["type"] == "ssh" and (tmp_path / "k.pem").read_text().startswith("-----BEGIN")
        listed = await _cli(tmp_path, url, "keypair", "list", "-f", "json")
        assert [(k["Name"], k["Type"]) for k in listed] == [("key1", "ssh")]  # the CLI shows Type from 2.2
        await _cli(tmp_path, url, "keypair", "delete", "key1")
        assert await _cli(tmp_path, url, "keypair", "list", "-f", "json") == []
    finally:
        await server.close()
