"""The deprecated /extensions list over HTTP (what Tempest's ExtensionsTest asks), and a snapshot image's
properties as Nova merges them: the request's metadata over the snapshot's own keys, never over its server."""
from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from api.compute.server_snapshots import image_values
from cells.context import RequestContext
from tests.unit.api_support import client, cluster, demo_headers

__all__ = ["client", "cluster", "demo_headers"]  # fixtures used by name


async def test_extensions_list_and_show(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    resp = await client.get("/compute/v2.1/extensions", headers=demo_headers)
    assert resp.status == 200
    extensions = (await resp.json())["extensions"]
    assert "Hosts" in [e["name"] for e in extensions]
    assert all(set(e) == {"name", "alias", "description", "namespace", "updated", "links"} for e in extensions)
    shown = await (await client.get("/compute/v2.1/extensions/os-consoles", headers=demo_headers)).json()
    assert shown["extension"]["alias"] == "os-consoles"
    assert (await client.get("/compute/v2.1/extensions/os-nope", headers=demo_headers)).status == 404
    assert (await client.get("/compute/v2.1/extensions")).status == 401


def test_snapshot_properties_take_the_requests_metadata_but_not_another_server() -> None:
    record = {"uuid": "u-1", "image": {"id": "base", "properties": {"os_distro": "debian"}}, "flavor": {"disk": 1}}
    ctx = RequestContext(project="p", user="me", roles=("member",))
    props = image_values(record, ctx, "snap", {"image_type": "test", "instance_uuid": "u-2"}, {})["properties"]
    assert (props["image_type"], props["instance_uuid"], props["os_distro"]) == ("test", "u-1", "debian")
    backup = image_values(record, ctx, "b", {"image_type": "test"},
                          {"image_type": "backup", "backup_type": "daily"})["properties"]
    assert (backup["image_type"], backup["backup_type"]) == ("backup", "daily")
