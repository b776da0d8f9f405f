"""Cinder's user messages (3.3) and capability specs through the volume API with test_api_volumes' cell: a
volume type asking for a vendor or protocol no volume host offers ends its volumes in error, each with one
message for its project (Cinder's event id and text, not the internal reason); the project lists, shows and
deletes it, another project sees none of it (404), an admin sees every project's; an expired message is gone;
a type whose capabilities a host offers makes its volumes there."""
from __future__ import annotations

from typing import Any

from sqlalchemy import update

from cells.db.volumes import messages
from tests.unit.api_support import SECRETS
from tests.unit.test_api_volume_types import make_type
from tests.unit.test_api_volumes import Cloud, cloud

__all__ = ["cloud"]
V33 = {"OpenStack-API-Version": "volume 3.3"}


async def test_a_failed_create_leaves_one_message_its_project_reads_and_deletes(cloud: Cloud) -> None:
    await cloud.login("alt_demo", SECRETS["alt_demo_password"])

    async def req(method: str, user: str, path: str) -> tuple[int, Any]:
        return await cloud.req(method, user, "/messages" + path, headers=V33)

    bogus = await make_type(cloud, "bogus", storage_protocol="carrier-pigeon", vendor_name="Nobody")
    good = await make_type(cloud, "good", storage_protocol="LOCAL", vendor_name="Cellcloud")  # its local target
    vid = (await cloud.create(volume_type=bogus["id"]))["id"]
    failed = await cloud.wait_status("demo", vid, "error")
    assert failed["volume_type"] == "bogus"
    await cloud.wait_status("demo", (await cloud.create(volume_type=good["id"]))["id"], "available")

    assert (await cloud.req("GET", "demo", "/messages"))[0] == 404  # 3.0: no such resource
    status, body = await req("GET", "demo", "")
    assert status == 200, body
    [message] = body["messages"]
    assert (message["resource_uuid"], message["resource_type"], message["event_id"], message["message_level"]) == (
        vid, "VOLUME", "VOLUME_VOLUME_001_003", "ERROR")
    assert message["user_message"] == "schedule allocate volume:Could not find any available weighted backend."
    assert message["guaranteed_until"] > message["created_at"] and message["request_id"]
    assert await req("GET", "demo", f"/{message['id']}") == (200, {"message": message})
    assert (await req("GET", "alt_demo", ""))[1] == {"messages": []}
    assert (await req("GET", "alt_demo", f"/{message['id']}"))[0] == 404
    assert (await req("DELETE", "alt_demo", f"/{message['id']}"))[0] == 404
    assert [m["id"] for m in (await req("GET", "admin", ""))[1]["messages"]] == [message["id"]]
    assert (await req("GET", "demo", "/not-a-uuid"))[0] == 404
    assert (await req("DELETE", "demo", f"/{message['id']}"))[0] == 204
    assert (await req("GET", "demo", f"/{message['id']}"))[0] == 404
    assert (await req("GET", "demo", ""))[1] == {"messages": []}

    vid = (await cloud.create(volume_type=bogus["id"]))["id"]
    await cloud.wait_status("demo", vid, "error")
    [message] = (await req("GET", "demo", ""))[1]["messages"]
    await cloud.cell.env.db.write(lambda conn: conn.execute(  # its 30 days are over
        update(messages).where(messages.c.id == message["id"]).values(expires_at="2000-01-01T00:00:00.000000Z")))
    assert (await req("GET", "demo", f"/{message['id']}"))[0] == 404
    assert (await req("GET", "demo", ""))[1] == {"messages": []}
    assert await cloud.cell.env.db.read(lambda conn: conn.execute(messages.select()).all()) == []  # deleted
