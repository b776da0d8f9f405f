"""Key pairs, quotas and limits, instance actions, rename and server metadata on
/compute/v2.1, against a real API DB and a fake cell over real ZeroMQ."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from api.compute.keypairs import fingerprint
from tests.unit.test_api_servers import Cloud, cloud

__all__ = ["cloud"]
KP = "/compute/v2.1/os-keypairs"


async def _json(resp: Any, status: int) -> Any:
    assert resp.status == status, await resp.text()
    assert resp.headers["X-OpenStack-Nova-API-Version"] == "2.1"
    return await resp.json() if resp.content_length != 0 else None


def ssh_keygen_md5(path: Path) -> str:
    return subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", str(path)], check=True, capture_output=True,
                          text=True).stdout


def ssh_public_key(tmp: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "k")], check=True)
    return (tmp / "k.pub").read_text().strip()


async def test_keypair_generate_import_list_show_delete(cloud: Cloud, tmp_path: Path) -> None:
    c = cloud.client
    made = (await _json(await c.post(KP, json={"keypair": {"name": "gen"}}, headers=cloud.demo), 200))["keypair"]
    assert set(made) == {"fingerprint", "name", "public_key", "user_id", "private_key"}
    assert made["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert made["public_key"].startswith("ssh-rsa ") and made["fingerprint"] == fingerprint(made["public_key"])

    pub = ssh_public_key(tmp_path)
    imported = (await _json(await c.post(KP, json={"keypair": {"name": "mine", "public_key": pub}},
                                          headers=cloud.demo), 200))["keypair"]
    assert "private_key" not in imported and imported["public_key"] == pub
    # the same fingerprint ssh-keygen prints
    out = ssh_keygen_md5(tmp_path / "k.pub")
    assert f"MD5:{imported['fingerprint']}" in out

    listed = (await _json(await c.get(KP, headers=cloud.demo), 200))["keypairs"]
    assert [k["keypair"]["name"] for k in listed] == ["gen", "mine"]
    assert set(listed[0]["keypair"]) == {"name", "public_key", "fingerprint"}
    shown = (await _json(await c.get(f"{KP}/mine", headers=cloud.demo), 200))["keypair"]
    assert set(shown) == {"public_key", "name", "fingerprint", "user_id", "deleted", "created_at", "updated_at",
                          "deleted_at", "id"} and shown["deleted"] is False
    # key pairs are per user: the admin sees none of demo's
    assert (await _json(await c.get(KP, headers=cloud.admin), 200))["keypairs"] == []
    await _json(await c.get(f"{KP}/mine", headers=cloud.admin), 404)

    dup = await _json(await c.post(KP, json={"keypair": {"name": "mine", "public_key": pub}}, headers=cloud.demo), 409)
    assert dup == {"conflictingRequest": {"code": 409, "message": "Key pair 'mine' already exists."}}
    assert (await c.delete(f"{KP}/mine", headers=cloud.demo)).status == 202
    gone = await _json(await c.delete(f"{KP}/mine", headers=cloud.demo), 404)
    assert gone["itemNotFound"]["message"].startswith("Keypair mine not found for user ")


@pytest.mark.parametrize("body,needle", [
    ({"keypair": {"name": "bad/name"}}, "Keypair name contains unsafe characters"),
    ({"keypair": {"name": "ok", "public_key": "ssh-rsa notbase64"}}, "failed to generate fingerprint"),
    ({"keypair": {"name": "ok", "public_key": "hello"}}, "failed to generate fingerprint"),
    ({"keypair": {"name": ""}}, "name"),
    ({"keypair": {"name": "ok", "type": "x509"}}, "Additional properties are not allowed"),
    ({"keypair": {}}, "'name' is a required property"),
    ({"nokeypair": {}}, "'keypair' is a required property"),
])
async def test_invalid_keypairs_are_400_and_make_nothing(cloud: Cloud, body: Any, needle: str) -> None:
    fault = (await _json(await cloud.client.post(KP, json=body, headers=cloud.demo), 400))["badRequest"]
    assert needle in fault["message"]
    assert (await _json(await cloud.client.get(KP, headers=cloud.demo), 200))["keypairs"] == []


async def test_boot_with_key_name(cloud: Cloud) -> None:
    await _json(await cloud.client.post(KP, json={"keypair": {"name": "k1"}}, headers=cloud.demo), 200)
    sid = (await cloud.boot(cloud.demo, key_name="k1"))["id"]
    assert cloud.cell.conductor.records[sid]["key_name"] == "k1"
    shown = (await _json(await cloud.client.get(f"/compute/v2.1/servers/{sid}", headers=cloud.demo), 200))
    assert shown["server"]["key_name"] == "k1"
    # another user's key is not ours to use
    body = {"server": {"name": "x", "flavorRef": "1", "imageRef": cloud.image_id, "key_name": "k1"}}
    fault = await _json(await cloud.client.post("/compute/v2.1/servers", json=body, headers=cloud.admin), 400)
    assert fault["badRequest"]["message"] == "Invalid key_name provided."


async def test_quota_set_limits_and_boot_enforcement(cloud: Cloud) -> None:
    c = cloud.client
    project = cloud.cell.conductor  # noqa: F841 - the fake cell counts usage from its records
    demo_project = (await _json(await c.get("/compute/v2.1/limits", headers=cloud.demo), 200))
    absolute = demo_project["limits"]["absolute"]
    assert demo_project["limits"]["rate"] == []
    assert (absolute["maxTotalInstances"], absolute["maxTotalCores"], absolute["maxTotalRAMSize"],
            absolute["totalInstancesUsed"], absolute["maxTotalKeypairs"]) == (10, 20, 51200, 0, 100)

    await cloud.boot(cloud.demo, name="a")
    token_info = await (await c.get("/compute/v2.1/servers/detail", headers=cloud.demo)).json()
    pid = token_info["servers"][0]["tenant_id"]
    shown = (await _json(await c.get(f"/compute/v2.1/os-quota-sets/{pid}", headers=cloud.demo), 200))["quota_set"]
    assert shown["id"] == pid and shown["instances"] == 10 and "key_pairs" in shown and len(shown) == 15
    detail = (await _json(await c.get(f"/compute/v2.1/os-quota-sets/{pid}/detail", headers=cloud.demo), 200))
    assert detail["quota_set"]["instances"] == {"in_use": 1, "limit": 10, "reserved": 0}
    assert detail["quota_set"]["ram"]["in_use"] == 512

    # only admins change quotas; tenants cannot read other projects'
    await _json(await c.put(f"/compute/v2.1/os-quota-sets/{pid}", json={"quota_set": {"instances": 2}},
                            headers=cloud.demo), 403)
    await _json(await c.get("/compute/v2.1/os-quota-sets/someone-else", headers=cloud.demo), 403)
    for bad in ({"quota_set": {"instances": -2}}, {"quota_set": {"instances": "x"}}, {"quota_set": {"nope": 1}}):
        await _json(await c.put(f"/compute/v2.1/os-quota-sets/{pid}", json=bad, headers=cloud.admin), 400)
    updated = await _json(await c.put(f"/compute/v2.1/os-quota-sets/{pid}",
                                      json={"quota_set": {"instances": 2, "cores": "-1"}}, headers=cloud.admin), 200)
    assert updated["quota_set"]["instances"] == 2 and updated["quota_set"]["cores"] == -1

    await cloud.boot(cloud.demo, name="b")  # the second of two
    body = {"server": {"name": "c", "flavorRef": "1", "imageRef": cloud.image_id}}
    fault = await _json(await c.post("/compute/v2.1/servers", json=body, headers=cloud.demo), 403)
    assert fault == {"forbidden": {"code": 403, "message": "Quota exceeded for instances: Requested 1, but already "
                                                           "used 2 of 2 instances"}}
    assert len(cloud.cell.conductor.records) == 2 and await cloud.mappings() == 2
    limits = (await _json(await c.get("/compute/v2.1/limits", headers=cloud.demo), 200))["limits"]["absolute"]
    assert (limits["maxTotalInstances"], limits["totalInstancesUsed"], limits["totalCoresUsed"]) == (2, 2, 2)

    assert (await c.delete(f"/compute/v2.1/os-quota-sets/{pid}", headers=cloud.admin)).status == 202
    defaults = (await _json(await c.get(f"/compute/v2.1/os-quota-sets/{pid}/defaults", headers=cloud.demo), 200))
    assert defaults["quota_set"]["instances"] == 10


async def test_multi_create_is_cut_to_what_fits_but_not_below_min_count(cloud: Cloud) -> None:
    pid = (await (await cloud.client.get("/identity/v3/auth/tokens", headers={
        **cloud.demo, "X-Subject-Token": cloud.demo["X-Auth-Token"]})).json())["token"]["project"]["id"]
    await cloud.client.put(f"/compute/v2.1/os-quota-sets/{pid}", json={"quota_set": {"instances": 3}},
                           headers=cloud.admin)
    await cloud.boot(cloud.demo, name="many", min_count=1, max_count=5)
    assert len(cloud.cell.conductor.records) == 3
    body = {"server": {"name": "more", "flavorRef": "1", "imageRef": cloud.image_id, "min_count": 1}}
    assert (await cloud.client.post("/compute/v2.1/servers", json=body, headers=cloud.demo)).status == 403


async def test_keypair_quota(cloud: Cloud) -> None:
    pid = (await (await cloud.client.get("/identity/v3/auth/tokens", headers={
        **cloud.demo, "X-Subject-Token": cloud.demo["X-Auth-Token"]})).json())["token"]["project"]["id"]
    await cloud.client.put(f"/compute/v2.1/os-quota-sets/{pid}", json={"quota_set": {"key_pairs": 1}},
                           headers=cloud.admin)
    await _json(await cloud.client.post(KP, json={"keypair": {"name": "one"}}, headers=cloud.demo), 200)
    fault = await _json(await cloud.client.post(KP, json={"keypair": {"name": "two"}}, headers=cloud.demo), 403)
    assert fault["forbidden"]["message"] == "Quota exceeded, too many key pairs."


async def test_rename_metadata_and_instance_actions(cloud: Cloud) -> None:
    c = cloud.client
    sid = (await cloud.boot(cloud.demo, name="old", metadata={"a": "1"}))["id"]
    base = f"/compute/v2.1/servers/{sid}"
    # metadata changes wait for the server to settle (Nova's check_instance_state)
    fault = await _json(await c.post(f"{base}/metadata", json={"metadata": {"b": "2"}}, headers=cloud.demo), 409)
    assert "building" in fault["conflictingRequest"]["message"]
    cloud.cell.conductor.activate(sid)

    renamed = (await _json(await c.put(base, json={"server": {"name": "new"}}, headers=cloud.demo), 200))["server"]
    assert renamed["name"] == "new" and renamed["id"] == sid
    await _json(await c.put(base, json={"server": {"name": " bad"}}, headers=cloud.demo), 400)
    await _json(await c.put(base, json={"server": {"flavorRef": "2"}}, headers=cloud.demo), 400)

    merged = await _json(await c.post(f"{base}/metadata", json={"metadata": {"b": "2"}}, headers=cloud.demo), 200)
    assert merged == {"metadata": {"a": "1", "b": "2"}}
    item = await _json(await c.put(f"{base}/metadata/c", json={"meta": {"c": "3"}}, headers=cloud.demo), 200)
    assert item == {"meta": {"c": "3"}}
    await _json(await c.put(f"{base}/metadata/c", json={"meta": {"d": "3"}}, headers=cloud.demo), 400)
    assert await _json(await c.get(f"{base}/metadata/c", headers=cloud.demo), 200) == {"meta": {"c": "3"}}
    assert (await c.delete(f"{base}/metadata/a", headers=cloud.demo)).status == 204
    await _json(await c.delete(f"{base}/metadata/a", headers=cloud.demo), 404)
    replaced = await _json(await c.put(f"{base}/metadata", json={"metadata": {"only": "x"}}, headers=cloud.demo), 200)
    assert replaced == {"metadata": {"only": "x"}}
    assert (await _json(await c.get(base, headers=cloud.demo), 200))["server"]["metadata"] == {"only": "x"}
    too_many = {"metadata": {f"k{i}": "v" for i in range(129)}}
    assert (await c.put(f"{base}/metadata", json=too_many, headers=cloud.demo)).status == 403
    await _json(await c.get(f"{base}/metadata", headers=cloud.admin), 200)  # admins see any server

    acts = (await _json(await c.get(f"{base}/os-instance-actions", headers=cloud.demo), 200))["instanceActions"]
    assert [a["action"] for a in acts] == ["create"]
    assert set(acts[0]) == {"action", "instance_uuid", "message", "project_id", "request_id", "start_time",
                            "user_id"}
    rid = acts[0]["request_id"]
    mine = (await _json(await c.get(f"{base}/os-instance-actions/{rid}", headers=cloud.demo), 200))
    assert "events" not in mine["instanceAction"]  # events are admin-only at 2.1
    theirs = (await _json(await c.get(f"{base}/os-instance-actions/{rid}", headers=cloud.admin), 200))
    assert [e["event"] for e in theirs["instanceAction"]["events"]] == ["conductor_schedule_and_build_instances"]
    await _json(await c.get(f"{base}/os-instance-actions/req-nope", headers=cloud.demo), 404)

    other = (await cloud.boot(cloud.admin, name="admins"))["id"]
    for path in (f"/compute/v2.1/servers/{other}/os-instance-actions", f"/compute/v2.1/servers/{other}/metadata"):
        await _json(await c.get(path, headers=cloud.demo), 404)


async def test_a_deleted_servers_actions_are_readable_from_2_21(cloud: Cloud) -> None:
    """Nova 2.21: once a read saw the server deleted its mapping is gone, and its cell, asked with the
    others, still answers its actions; before 2.21, and for another project's deleted server, a 404."""
    c = cloud.client
    mine, theirs = (await cloud.boot(cloud.demo, name="gone"))["id"], (await cloud.boot(cloud.admin, name="x"))["id"]
    for sid in (mine, theirs):
        cloud.cell.conductor.destroy(sid)
        await _json(await c.get(f"/compute/v2.1/servers/{sid}", headers=cloud.admin), 404)
    assert await cloud.mappings() == 0

    async def get(path: str, version: str, status: int) -> Any:
        resp = await c.get(path, headers={**cloud.demo, "OpenStack-API-Version": f"compute {version}"})
        assert resp.status == status, await resp.text()
        return await resp.json()

    base = f"/compute/v2.1/servers/{mine}/os-instance-actions"
    await get(base, "2.20", 404)
    acts = (await get(base, "2.21", 200))["instanceActions"]
    assert [(a["action"], a["instance_uuid"]) for a in acts] == [("create", mine)]
    one = await get(f"{base}/{acts[0]['request_id']}", "2.21", 200)
    assert one["instanceAction"]["request_id"] == acts[0]["request_id"]
    await get(f"/compute/v2.1/servers/{theirs}/os-instance-actions", "2.21", 404)
    await get("/compute/v2.1/servers/not-a-uuid/os-instance-actions", "2.21", 404)
