"""Volume types through the volume API (issue 18), with the real volume flows, cell DB and volume worker
of test_api_volumes' cell (its one volume host, node1, answers to backend_name "file"): admins make types
and extra specs, a type's volume_backend_name steers its volumes to a matching volume host (or to error
with the reason when none matches), per-type quotas (gigabytes_<type>) are 413 past their limit while
other types are not, a type in use cannot be deleted."""
from __future__ import annotations

from typing import Any

from tests.unit.test_api_volumes import Cloud, cloud

__all__ = ["cloud"]


async def make_type(cloud: Cloud, name: str, **specs: str) -> dict[str, Any]:
    status, body = await cloud.req("POST", "admin", "/types", {"volume_type": {"name": name}})
    assert status == 200, body
    made = dict(body["volume_type"])
    if specs:
        status, body = await cloud.req("POST", "admin", f"/types/{made['id']}/extra_specs", {"extra_specs": specs})
        assert status == 200 and body["extra_specs"] == specs, body
    return made


async def test_types_steer_volumes_to_matching_hosts_and_have_their_own_quotas(cloud: Cloud) -> None:
    assert (await cloud.req("POST", "demo", "/types", {"volume_type": {"name": "mine"}}))[0] == 403
    plain = await make_type(cloud, "plain", volume_backend_name="file")
    await make_type(cloud, "fast", volume_backend_name="nvme")
    status, listed = await cloud.req("GET", "demo", "/types")
    assert status == 200 and [t["name"] for t in listed["volume_types"]] == ["__DEFAULT__", "fast", "plain"]
    status, shown = await cloud.req("GET", "demo", f"/types/{plain['id']}")
    assert shown["volume_type"]["extra_specs"] == {"volume_backend_name": "file"}
    assert (await cloud.req("POST", "admin", "/types", {"volume_type": {"name": "plain"}}))[0] == 409

    on_file = await cloud.create(volume_type="plain")
    assert (await cloud.wait_status("demo", on_file["id"], "available"))["volume_type"] == "plain"
    by_id = await cloud.create(volume_type=plain["id"])  # a type is named by name or id
    assert (await cloud.wait_status("demo", by_id["id"], "available"))["volume_type"] == "plain"
    nowhere = await cloud.create(volume_type="fast")
    await cloud.wait_status("demo", nowhere["id"], "error")
    reason = await cloud.cell.env.db.read(lambda conn: conn.exec_driver_sql(
        "SELECT error FROM volumes WHERE id = ?", (nowhere["id"],)).scalar())
    assert "volume_backend_name 'nvme'" in str(reason)
    status, body = await cloud.req("POST", "demo", "/volumes", {"volume": {"size": 1, "volume_type": "gold"}})
    assert status == 404 and "gold" in body["itemNotFound"]["message"]

    project = cloud.who["demo"][1]
    status, body = await cloud.req("PUT", "admin", f"/os-quota-sets/{project}", {"quota_set": {"gigabytes_plain": 2}})
    assert status == 200 and body["quota_set"]["gigabytes_plain"] == 2, body
    status, body = await cloud.req("POST", "demo", "/volumes", {"volume": {"size": 1, "volume_type": "plain"}})
    assert status == 413 and "gigabytes_plain" in str(body), body  # 2 GiB of plain used
    await cloud.create()  # the default type has no such limit
    status, body = await cloud.req("PUT", "admin", f"/os-quota-sets/{project}", {"quota_set": {"gigabytes_gold": 2}})
    assert status == 400  # no type gold

    status, body = await cloud.req("DELETE", "admin", f"/types/{plain['id']}")
    assert status == 400 and "in-use" in body["badRequest"]["message"]
    for vid in (on_file["id"], by_id["id"]):
        assert (await cloud.req("DELETE", "demo", f"/volumes/{vid}"))[0] == 202
    await cloud.cell.settle()
    assert (await cloud.req("DELETE", "admin", f"/types/{plain['id']}"))[0] == 202
    assert (await cloud.req("GET", "demo", f"/types/{plain['id']}"))[0] == 404


async def test_a_types_create_update_and_show_answers_carry_cinders_keys(cloud: Cloud) -> None:
    """As Cinder's (and Tempest's schemas): create answers without qos_specs_id, update without it and without
    os-volume-type-access:is_public, show and list with both."""
    base = {"id", "name", "description", "is_public", "extra_specs"}
    status, body = await cloud.req("POST", "admin", "/types", {"volume_type": {"name": "keys"}})
    assert status == 200 and set(body["volume_type"]) == base | {"os-volume-type-access:is_public"}, body
    type_id = body["volume_type"]["id"]
    status, body = await cloud.req("PUT", "admin", f"/types/{type_id}", {"volume_type": {"description": "d"}})
    assert status == 200 and set(body["volume_type"]) == base and body["volume_type"]["description"] == "d", body
    _, shown = await cloud.req("GET", "admin", f"/types/{type_id}")
    assert set(shown["volume_type"]) == base | {"os-volume-type-access:is_public", "qos_specs_id"}
    _, listed = await cloud.req("GET", "admin", "/types")
    assert all(set(t) == set(shown["volume_type"]) for t in listed["volume_types"])
