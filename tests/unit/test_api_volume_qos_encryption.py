"""QoS specs, volume type encryption and type access lists through the volume API (api/volume/qos.py,
encryption.py, type_access.py); QoS and encryption stored
and shown as Cinder's, with test_api_volumes' cell: admins only; a type carries its QoS spec's id; a spec in
use is deleted only with force; a type with an encryption makes no volume (this cloud encrypts nothing)."""
from __future__ import annotations

from tests.unit.test_api_volume_types import make_type
from tests.unit.test_api_volumes import Cloud, cloud

__all__ = ["cloud"]


async def test_qos_specs_crud_and_type_association(cloud: Cloud) -> None:
    body = {"qos_specs": {"name": "slow", "consumer": "front-end", "read_iops_sec": "100"}}
    assert (await cloud.req("POST", "demo", "/qos-specs", body))[0] == 403
    status, made = await cloud.req("POST", "admin", "/qos-specs", body)
    assert status == 200 and made["qos_specs"]["specs"] == {"read_iops_sec": "100"}, made
    qid = made["qos_specs"]["id"]
    assert made["links"][0]["href"].endswith(f"/qos-specs/{qid}")
    assert (await cloud.req("POST", "admin", "/qos-specs", body))[0] == 409
    assert (await cloud.req("POST", "admin", "/qos-specs", {"qos_specs": {"name": "x", "consumer": "side"}}))[0] == 400
    status, body2 = await cloud.req("PUT", "admin", f"/qos-specs/{qid}", {"qos_specs": {"write_iops_sec": "50"}})
    assert status == 200 and body2 == {"qos_specs": {"write_iops_sec": "50"}}
    assert (await cloud.req("PUT", "admin", f"/qos-specs/{qid}/delete_keys", {"keys": ["read_iops_sec"]}))[0] == 202
    assert (await cloud.req("PUT", "admin", f"/qos-specs/{qid}/delete_keys", {"keys": ["nope"]}))[0] == 404
    _, shown = await cloud.req("GET", "admin", f"/qos-specs/{qid}")
    assert shown["qos_specs"] == {"id": qid, "name": "slow", "consumer": "front-end", "specs": {"write_iops_sec": "50"}}
    assert [q["id"] for q in (await cloud.req("GET", "admin", "/qos-specs"))[1]["qos_specs"]] == [qid]

    vtype = await make_type(cloud, "throttled")
    other = await cloud.req("POST", "admin", "/qos-specs", {"qos_specs": {"name": "fast"}})
    assert (await cloud.req("GET", "admin", f"/qos-specs/{qid}/associate?vol_type_id={vtype['id']}"))[0] == 202
    oid = other[1]["qos_specs"]["id"]
    assert (await cloud.req("GET", "admin", f"/qos-specs/{oid}/associate?vol_type_id={vtype['id']}"))[0] == 400
    _, assoc = await cloud.req("GET", "admin", f"/qos-specs/{qid}/associations")
    assert assoc == {"qos_associations": [{"association_type": "volume_type", "id": vtype["id"], "name": "throttled"}]}
    assert (await cloud.req("GET", "demo", f"/types/{vtype['id']}"))[1]["volume_type"]["qos_specs_id"] == qid
    assert (await cloud.req("DELETE", "admin", f"/qos-specs/{qid}"))[0] == 400  # in use
    assert (await cloud.req("GET", "admin", f"/qos-specs/{qid}/disassociate?vol_type_id={vtype['id']}"))[0] == 202
    assert (await cloud.req("GET", "admin", f"/qos-specs/{qid}/associations"))[1] == {"qos_associations": []}
    assert (await cloud.req("GET", "admin", f"/qos-specs/{qid}/associate?vol_type_id={vtype['id']}"))[0] == 202
    assert (await cloud.req("GET", "admin", f"/qos-specs/{qid}/disassociate_all"))[0] == 202
    assert (await cloud.req("GET", "admin", f"/types/{vtype['id']}"))[1]["volume_type"]["qos_specs_id"] is None
    assert (await cloud.req("GET", "admin", f"/qos-specs/{qid}/associate?vol_type_id={vtype['id']}"))[0] == 202
    assert (await cloud.req("DELETE", "admin", f"/qos-specs/{qid}?force=true"))[0] == 202
    assert (await cloud.req("GET", "admin", f"/qos-specs/{qid}"))[0] == 404
    assert (await cloud.req("GET", "admin", f"/types/{vtype['id']}"))[1]["volume_type"]["qos_specs_id"] is None


async def test_encryption_types_are_stored_and_their_volumes_refused(cloud: Cloud) -> None:
    vtype = await make_type(cloud, "secret")
    base = f"/types/{vtype['id']}/encryption"
    assert (await cloud.req("GET", "admin", base))[1] == {}
    spec = {"provider": "luks", "cipher": "aes-xts-plain64", "key_size": 256, "control_location": "front-end"}
    assert (await cloud.req("POST", "demo", base, {"encryption": spec}))[0] == 403
    assert (await cloud.req("POST", "admin", base, {"encryption": {**spec, "key_size": -1}}))[0] == 400
    status, made = await cloud.req("POST", "admin", base, {"encryption": spec})
    assert status == 200 and {k: made["encryption"][k] for k in spec} == spec, made
    eid = made["encryption"]["encryption_id"]
    assert (await cloud.req("POST", "admin", base, {"encryption": spec}))[0] == 400  # one per type
    status, body = await cloud.req("POST", "demo", "/volumes", {"volume": {"size": 1, "volume_type": "secret"}})
    assert status == 400 and "encryption" in str(body)
    assert (await cloud.req("GET", "demo", "/volumes"))[1]["volumes"] == []  # nothing made
    update = {"provider": "other", "key_size": 128, "control_location": "back-end"}
    assert (await cloud.req("PUT", "admin", f"{base}/{eid}", {"encryption": update}))[1] == {"encryption": update}
    _, shown = await cloud.req("GET", "admin", base)
    assert (shown["provider"], shown["key_size"], shown["cipher"]) == ("other", 128, "aes-xts-plain64")
    assert (await cloud.req("GET", "admin", f"{base}/cipher"))[1] == {"cipher": "aes-xts-plain64"}
    assert (await cloud.req("DELETE", "admin", f"{base}/{'0' * 8}-0000-0000-0000-{'0' * 12}"))[0] == 404
    assert (await cloud.req("DELETE", "admin", f"{base}/{eid}"))[0] == 202
    assert (await cloud.req("GET", "admin", base))[1] == {}
    assert (await cloud.req("POST", "demo", "/volumes", {"volume": {"size": 1, "volume_type": "secret"}}))[0] == 202


async def test_private_type_access_lists(cloud: Cloud) -> None:
    """A private type is invisible to a project (404 on create) until an admin shares it; then the project
    lists it and makes volumes of it; a public type has no list; duplicates 409, absent ones 404."""
    status, body = await cloud.req("POST", "admin", "/types", {"volume_type": {"name": "hidden",
                                                                             "os-volume-type-access:is_public": False}})
    assert status == 200, body
    tid, project = body["volume_type"]["id"], cloud.who["demo"][1]
    assert (await cloud.req("POST", "demo", "/volumes", {"volume": {"size": 1, "volume_type": tid}}))[0] == 404
    share = {"addProjectAccess": {"project": project}}
    assert (await cloud.req("POST", "demo", f"/types/{tid}/action", share))[0] == 403
    assert (await cloud.req("POST", "admin", f"/types/{tid}/action", share))[0] == 202
    assert (await cloud.req("POST", "admin", f"/types/{tid}/action", share))[0] == 409
    _, listed = await cloud.req("GET", "admin", f"/types/{tid}/os-volume-type-access")
    assert listed == {"volume_type_access": [{"volume_type_id": tid, "project_id": project}]}
    assert "hidden" in [t["name"] for t in (await cloud.req("GET", "demo", "/types"))[1]["volume_types"]]
    made = await cloud.create(volume_type=tid)
    assert made["volume_type"] == "hidden"
    assert (await cloud.req("POST", "admin", f"/types/{tid}/action",
                            {"removeProjectAccess": {"project": project}}))[0] == 202
    assert (await cloud.req("POST", "admin", f"/types/{tid}/action",
                            {"removeProjectAccess": {"project": project}}))[0] == 404
    assert (await cloud.req("POST", "demo", "/volumes", {"volume": {"size": 1, "volume_type": tid}}))[0] == 404
    assert "hidden" not in [t["name"] for t in (await cloud.req("GET", "demo", "/types"))[1]["volume_types"]]
    public = await make_type(cloud, "open")
    assert (await cloud.req("GET", "admin", f"/types/{public['id']}/os-volume-type-access"))[0] == 404
