"""Versioned wire objects: fingerprints pin each object's fields to its version; a newer
service downgrades for an older peer; an older one refuses what it cannot read."""
from __future__ import annotations

from typing import Any

import pytest

from cells import errors
from cells.objects import versions
from cells.objects.base import is_primitive
from cells.objects.versions import OBJECTS, Instance, Migration
from cells.rpcapi.compute import SURFACE as COMPUTE
from cells.rpcapi.conductor import SURFACE as CONDUCTOR

# A field added, removed or retyped changes the fingerprint: bump the object's VERSION, add the
# field to its `history` (so older peers get it dropped), then record the new pair here.
EXPECTED = {
    "Instance": ("1.3", "bc34f85add5db128"),
    "Migration": ("1.0", "7d60432668c49433"),
}


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_fields_change_only_with_a_version_bump(name: str) -> None:
    obj = OBJECTS[name]
    assert (obj.VERSION, obj.fingerprint()) == EXPECTED[name], (
        f"{name}'s fields changed: bump {name}.VERSION, record the added fields in its history, "
        f"and update EXPECTED[{name!r}] in this test to ({obj.VERSION!r}, {obj.fingerprint()!r})")


def record(**extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = dict.fromkeys(Instance.fields)
    rec.update(uuid="u1", name="vm", flavor={"id": "2"}, old_flavor={"id": "1"}, **extra)
    return rec


def test_downgrade_for_an_older_peer_drops_newer_fields() -> None:
    wrapped = Instance.to_primitive(record(), "1.0")
    assert is_primitive(wrapped) and wrapped["cc.version"] == "1.0"
    assert "old_flavor" not in wrapped["cc.data"] and wrapped["cc.data"]["flavor"] == {"id": "2"}
    plain = Instance.to_primitive(record(), None)  # a peer from before versioning: the plain 1.0 dict
    assert not is_primitive(plain) and "old_flavor" not in plain


def test_newer_reader_fills_what_an_older_sender_did_not_know() -> None:
    old = Instance.to_primitive(record(), "1.0")
    assert Instance.from_primitive(old)["old_flavor"] is None
    assert Instance.from_primitive(Instance.make_compatible(record(), "1.0"))["old_flavor"] is None  # plain dict


def test_older_reader_refuses_what_it_cannot_read() -> None:
    with pytest.raises(errors.UnsupportedVersion):
        Instance.from_primitive(Instance.to_primitive(record(), "1.1"), speaks="1.0")
    with pytest.raises(errors.Invalid, match="old_flavor"):  # a newer field sent without a downgrade
        Instance.from_primitive(record(), speaks="1.0")


def test_key_data_is_dropped_for_a_peer_before_1_2() -> None:
    rec = record(key_data="ssh-ed25519 AAAAC3 me@host")
    assert "key_data" not in Instance.to_primitive(rec, "1.1")["cc.data"]
    assert Instance.from_primitive(Instance.to_primitive(rec, "1.2"))["key_data"] == rec["key_data"]
    assert Instance.from_primitive(Instance.to_primitive(rec, "1.1"))["key_data"] is None  # an older sender's


def test_lock_fields_are_dropped_for_a_peer_before_1_3() -> None:
    rec = record(locked_by="admin", locked_reason="maintenance")
    assert not {"locked_by", "locked_reason"} & set(Instance.to_primitive(rec, "1.2")["cc.data"])
    assert Instance.from_primitive(Instance.to_primitive(rec, "1.3"))["locked_reason"] == "maintenance"
    assert Instance.from_primitive(Instance.to_primitive(rec, "1.2"))["locked_by"] is None  # an older sender's


def test_build_instances_records_stay_plain_dicts_made_compatible() -> None:
    """The API's build_instances predates versioning: its records are never wrapped (an older conductor
    reads plain dicts), only stripped of what the cell's pin does not know."""
    rec = record(key_data="ssh-ed25519 AAAAC3 me@host")
    args = {"instances": [rec], "request_spec": {"num_instances": 1}}
    old = versions.encode_args(CONDUCTOR["build_instances"], args, {"Instance": "1.1"})["instances"][0]
    assert not is_primitive(old) and "key_data" not in old and old["old_flavor"] == {"id": "1"}
    oldest = versions.encode_args(CONDUCTOR["build_instances"], args, None)["instances"][0]
    assert "key_data" not in oldest and "old_flavor" not in oldest
    assert versions.encode_args(CONDUCTOR["build_instances"], args, {"Instance": "1.3"})["instances"] == [rec]
    assert versions.decode_args(CONDUCTOR["build_instances"], {"instances": [old]}) == {"instances": [old]}


def test_cell_pins_the_lowest_version_any_member_speaks() -> None:
    new = {"versions": {"rpc": "1.1", "objects": {"Instance": "1.1", "Migration": "1.0"}}}
    older = {"versions": {"rpc": "1.0", "objects": {"Instance": "1.0", "Migration": "1.0"}}}
    assert versions.pinned_rpc([new, older]) == "1.0" and versions.pinned_rpc([new]) == "1.1"
    assert versions.pinned_objects([new, older])["Instance"] == "1.0"
    assert versions.pinned_objects([new, {}])["Instance"] is None  # a member from before versioning


def test_declared_arguments_and_results_cross_as_objects() -> None:
    sent = versions.encode_args(COMPUTE["build_and_run_instance"], {"instance": record()}, {"Instance": "1.0"})
    assert sent["instance"]["cc.version"] == "1.0"
    got = versions.decode_args(COMPUTE["build_and_run_instance"], sent)
    assert got["instance"]["old_flavor"] is None and got["instance"]["uuid"] == "u1"
    listed = versions.encode_result(CONDUCTOR["instances_on_host"], [record()], None)
    assert listed == [Instance.make_compatible(record(), "1.0")]
    assert versions.decode_result(CONDUCTOR["instance_get"], versions.encode_result(CONDUCTOR["instance_get"], record(),
                                                                          {"Instance": "1.1"}))["old_flavor"] == {
        "id": "1"}


def test_a_pinned_release_serves_only_its_methods() -> None:
    from cells.rpc.wire import Method
    try:
        versions.pin_release("1")
        assert not versions.versioned() and versions.advertised({}) is None
        assert versions.serves(Method("old")) and not versions.serves(Method("new", version="1.1"))
        assert versions.surface_version({"a": Method("a"), "b": Method("b", version="1.1")}) == "1.0"
    finally:
        versions.pin_release(versions.RELEASE)
    assert versions.serves(Method("new", version="1.1"))


def test_migration_object_round_trip() -> None:
    mig = {f: "x" for f in Migration.fields}
    assert Migration.from_primitive(Migration.to_primitive(mig, "1.0")) == mig
