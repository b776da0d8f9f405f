"""The typed records (cells/objects/records.py) are what the DB layer really builds and what the
versioned objects carry: a column added to a table, or a key to a record builder, without its
declaration (or the reverse) fails here, not in a view at run time."""
from __future__ import annotations

from typing import Any, get_type_hints

import pytest

from cells.db import migration_records
from cells.db import volumes as vdb
from cells.db.instances import to_record
from cells.db.schema import instances, migrations
from cells.network.resources import port_record
from cells.network.schema import ports
from cells.objects import versions
from cells.objects.base import VersionedObject
from cells.objects.instance import FIELDS
from cells.objects.records import (
    AttachmentRecord,
    InstanceRecord,
    MigrationRecord,
    PortRecord,
    VolumeRecord,
    wire_kinds,
)

CELL_ONLY = {"conductor_id", "request_spec", "retry_hosts", "password"}  # instance columns that never leave the cell


def _row(table: Any) -> dict[str, Any]:
    """A row of `table` with a distinct value in every column."""
    return {column.name: f"v-{column.name}" for column in table.columns}


def test_an_instance_row_becomes_exactly_an_instance_record() -> None:
    record = to_record(_row(instances), "cell1")
    assert set(record) == set(get_type_hints(InstanceRecord))
    assert record["cell"] == "cell1" and record["deleted"] is True  # "v-deleted" read as a flag
    assert set(instances.c.keys()) == set(FIELDS) - {"cell"} | CELL_ONLY


def test_an_instance_row_of_either_kind_makes_the_same_record_as_its_mapping() -> None:
    """to_record reads a row by position when it has every field (SQLAlchemy's Row, our FastRow): the
    record must be the one the row's mapping gives, for a row of the whole table and for one missing a
    field (a row built before a column existed: that field is None)."""
    from sqlalchemy import create_engine, insert, select

    from cells.db.fast import Fast
    from cells.db.schema import metadata
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    values: dict[str, Any] = {c.name: f"v-{c.name}" if str(c.type).startswith("VARCHAR") else None
                              for c in instances.c}
    values.update(flavor={"id": "1"}, metadata={"k": "v"}, addresses={}, retry_hosts=[], power_state=1,
                  deleted=False, progress=0)
    with engine.begin() as conn:
        conn.execute(insert(instances).values(values))
        whole = conn.execute(select(instances)).one()
        fast = Fast(select(instances)).rows(conn)[0]
        partial = conn.execute(select(*[c for c in instances.c if c.name != "old_flavor"])).one()
    expected = to_record(dict(whole._mapping), "cell1")
    assert to_record(whole, "cell1") == expected
    assert to_record(fast, "cell1") == expected
    assert to_record(partial, "cell1") == {**expected, "old_flavor": None}


def test_a_migration_row_becomes_exactly_a_migration_record() -> None:
    record = migration_records.record(_row(migrations))
    assert set(record) == set(get_type_hints(MigrationRecord)) == set(migrations.c.keys()) - {"conductor_id"}


def test_a_volume_row_and_its_attachment_become_exactly_their_records() -> None:
    attachment = _row(vdb.volume_attachments)
    record = vdb.volume_record(_row(vdb.volumes), [attachment], cell="cell1")
    assert set(record) == set(get_type_hints(VolumeRecord))
    assert set(record["attachments"][0]) == set(get_type_hints(AttachmentRecord))


def test_a_port_row_becomes_exactly_a_neutron_port_record() -> None:
    record = port_record(_row(ports), [{"subnet_id": "s1", "ip_address": "10.0.0.5"}])
    assert set(record) == set(get_type_hints(PortRecord))


@pytest.mark.parametrize(("obj", "record"), [(versions.Instance, InstanceRecord),
                                             (versions.Migration, MigrationRecord)])
def test_the_versioned_objects_carry_the_declared_fields(obj: type[VersionedObject],
                                                         record: type) -> None:
    """The wire's field kinds come from the declarations (nullable where the type admits None)."""
    assert obj.fields == wire_kinds(record)
    assert list(obj.fields) == list(get_type_hints(record))


def test_field_kinds_follow_the_declared_types() -> None:
    kinds = wire_kinds(InstanceRecord)
    assert (kinds["uuid"], kinds["host"], kinds["flavor"], kinds["image"], kinds["power_state"],
            kinds["deleted"]) == ("str", "str?", "dict", "dict?", "int", "bool")
