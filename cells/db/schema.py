"""Cell DB schema as SQLAlchemy Core tables (Core, not ORM: the ORM measured
~1.2k inserts/s here, too slow for the 100 boots/s target).

Times are stored as the wire's ISO 8601 UTC strings with microseconds and a
trailing Z (`cells.objects.instance.utcnow_iso()`): fixed width, so string order
is time order on every backend, and no conversion on the hot path.

`create_schema(url)` is idempotent and safe when several processes call it at
once: it runs in one write transaction (BEGIN IMMEDIATE on SQLite, an advisory
lock on PostgreSQL). A fresh DB gets the current tables and is stamped at the
Alembic head; a DB from before Alembic runs the steps of `MIGRATIONS` from its
version up and is stamped at the baseline (cells/db/versioning.py). A DB behind
the head is refused: `cellctl db upgrade` migrates it (cells/db/migrate.py).

Changing a table from now on: edit it here and add an Alembic revision in
cells/db/migrations/versions (its ops, down_revision the previous head), then
move ALEMBIC_HEAD and ALEMBIC_REVISIONS; tests/unit/test_db_migrations.py
checks that the migrations build exactly these tables. MIGRATIONS is frozen.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)

from cells import errors
from cells.db import versioning
from cells.db.engine import Database
from cells.db.hosts import metadata as hosts_metadata
from cells.db.volumes import metadata as volume_metadata
from cells.network.schema import metadata as network_metadata
from cells.objects.instance import utcnow_iso

SCHEMA_VERSION = 5  # the hand-written runner's last version (frozen: Alembic revisions come after it)
# cells/db/migrations/versions, oldest first
ALEMBIC_REVISIONS = ("c0001_baseline", "c0002_snapshots", "c0003_instance_lock", "c0004_volume_backend_names",
                     "c0005_volume_images", "c0006_routers_floatingips", "c0007_service_marks",
                     "c0008_instance_password", "c0009_snapshot_progress", "c0010_volume_image_metadata",
                     "c0011_subnet_routes_fip_revision", "c0012_volume_service_state",
                     "c0013_volume_messages")
ALEMBIC_BASELINE = ALEMBIC_REVISIONS[0]  # = SCHEMA_VERSION 5
ALEMBIC_HEAD = ALEMBIC_REVISIONS[-1]
TIME = String(32)  # "2026-11-21T12:00:00.123456Z"

metadata = MetaData()

schema_version = Table(
    "schema_version", metadata,
    Column("id", Integer, primary_key=True),  # always 1: a single row
    Column("version", Integer, nullable=False),
    Column("updated_at", TIME, nullable=False),
)

instances = Table(
    "instances", metadata,
    Column("uuid", String(36), primary_key=True),
    Column("name", String(255), nullable=False, index=True),
    Column("project_id", String(255), nullable=False, index=True),
    Column("user_id", String(255), nullable=True),
    Column("host", String(255), nullable=True, index=True),
    Column("flavor", JSON, nullable=False),
    Column("image", JSON, nullable=True),
    Column("vm_state", String(32), nullable=False, index=True),
    Column("task_state", String(32), nullable=True, index=True),
    Column("power_state", Integer, nullable=False, default=0),
    Column("created_at", TIME, nullable=False, index=True),
    Column("updated_at", TIME, nullable=False, index=True),
    Column("launched_at", TIME, nullable=True),
    Column("terminated_at", TIME, nullable=True),
    Column("deleted", Boolean, nullable=False, default=False, index=True),
    Column("metadata", JSON, nullable=False),
    Column("key_name", String(255), nullable=True),
    Column("availability_zone", String(255), nullable=True),
    Column("user_data", Text, nullable=True),
    Column("access_ipv4", String(64), nullable=True),
    Column("access_ipv6", String(64), nullable=True),
    Column("progress", Integer, nullable=False, default=0),
    Column("fault", JSON, nullable=True),
    Column("addresses", JSON, nullable=False),
    Column("old_flavor", JSON, nullable=True),  # v2: the flavor before a resize awaiting confirm (Nova's)
    Column("key_data", Text, nullable=True),  # v3: the public key of key_name at boot (Nova keeps it too)
    # c0003: who locked the server ("owner" | "admin", Nova's locked_by; None: unlocked) and why
    Column("locked_by", String(16), nullable=True),
    Column("locked_reason", Text, nullable=True),
    # cell-internal bookkeeping, never on the wire:
    # c0008: the password the guest posted to the metadata service, encrypted by it with the server's key
    # (Nova's os-server-password; None: none yet). Read and cleared through os-server-password only.
    Column("password", Text, nullable=True),
    Column("conductor_id", String(255), nullable=True),  # conductor running the build flow or the pending delete
    Column("request_spec", JSON, nullable=True),  # kept for reschedules
    Column("retry_hosts", JSON, nullable=False),  # hosts a build was tried on, in order
    # the usual tenant listing: WHERE project_id=? AND deleted=? ORDER BY created_at
    Index("ix_instances_project_deleted_created", "project_id", "deleted", "created_at"),
)

instance_actions = Table(
    "instance_actions", metadata,
    Column("uuid", String(36), primary_key=True),
    Column("instance_uuid", String(36), ForeignKey("instances.uuid"), nullable=False),
    Column("action", String(255), nullable=False),
    Column("request_id", String(255), nullable=True),
    Column("user_id", String(255), nullable=True),
    Column("project_id", String(255), nullable=True),
    Column("start_time", TIME, nullable=False),
    Column("finish_time", TIME, nullable=True),
    Column("message", Text, nullable=True),
    Index("ix_instance_actions_instance_request", "instance_uuid", "request_id"),
)

instance_action_events = Table(
    "instance_action_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("action_id", String(36), ForeignKey("instance_actions.uuid", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("event", String(255), nullable=False),
    Column("start_time", TIME, nullable=False),
    Column("finish_time", TIME, nullable=True),
    Column("result", String(255), nullable=True),  # "Success" | "Error", as Nova
    Column("details", Text, nullable=True),
    Column("host", String(255), nullable=True),
)

instance_faults = Table(
    "instance_faults", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("instance_uuid", String(36), ForeignKey("instances.uuid"), nullable=False, index=True),
    Column("code", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Column("details", Text, nullable=True),
    Column("host", String(255), nullable=True),
    Column("created_at", TIME, nullable=False),
)

compute_nodes = Table(
    "compute_nodes", metadata,
    Column("host", String(255), primary_key=True),
    Column("vcpus", Integer, nullable=False),
    Column("memory_mb", Integer, nullable=False),
    Column("local_gb", Integer, nullable=False),
    Column("vcpus_used", Integer, nullable=False, default=0),
    Column("memory_mb_used", Integer, nullable=False, default=0),
    Column("local_gb_used", Integer, nullable=False, default=0),
    Column("cpu_allocation_ratio", Float, nullable=False),
    Column("ram_allocation_ratio", Float, nullable=False),
    Column("disk_allocation_ratio", Float, nullable=False),
    Column("stats", JSON, nullable=False),  # the rest of what the node reported (hypervisor type, ...)
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
)

claims = Table(
    "claims", metadata,
    Column("instance_uuid", String(36), primary_key=True),
    Column("host", String(255), ForeignKey("compute_nodes.host"), nullable=False, index=True),
    Column("vcpus", Integer, nullable=False),
    Column("memory_mb", Integer, nullable=False),
    Column("local_gb", Integer, nullable=False),
    Column("created_at", TIME, nullable=False),
    # v4: the server group the claim was made for (cells/db/groups.py checks its policy in the claim's transaction)
    Column("group_uuid", String(36), nullable=True, index=True),
)

# v4: the server groups claims were made for; the row is the lock claims of one group take
# (cells/db/groups.py), and keeps the policy for moves of the group's members
server_groups = Table(
    "server_groups", metadata,
    Column("uuid", String(36), primary_key=True),
    Column("policy", String(32), nullable=False),
    Column("created_at", TIME, nullable=False),
)

# Moves (resize, cold migration, evacuation; issue 8): one row per move, owned by one
# conductor at a time (conductor_id) so another adopts it when the owner dies. While a
# move is in flight the destination's resources are claimed under the migration's uuid
# (claims.instance_uuid holds a consumer id), the source's stay under the instance's.
migrations = Table(
    "migrations", metadata,
    Column("uuid", String(36), primary_key=True),
    Column("instance_uuid", String(36), ForeignKey("instances.uuid"), nullable=False, index=True),
    Column("migration_type", String(32), nullable=False),  # resize | migration | evacuation
    Column("status", String(32), nullable=False, index=True),  # Nova's: pre-migrating .. finished, confirmed, ...
    Column("source_host", String(255), nullable=True),
    Column("dest_host", String(255), nullable=True),
    Column("old_flavor", JSON, nullable=False),
    Column("new_flavor", JSON, nullable=False),
    Column("old_vm_state", String(32), nullable=False),  # vm_state to return to (active or stopped)
    Column("conductor_id", String(255), nullable=True),  # the conductor running the move
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
)


def _v2(conn: Connection) -> None:
    """v2 (issue 8): instances.old_flavor and the migrations table."""
    if "old_flavor" not in {c["name"] for c in inspect(conn).get_columns("instances")}:
        conn.execute(text("ALTER TABLE instances ADD COLUMN old_flavor JSON"))
    migrations.create(conn, checkfirst=True)


def _v3(conn: Connection) -> None:
    """v3 (issue 7): instances.key_data for the metadata service's public-keys."""
    if "key_data" not in {c["name"] for c in inspect(conn).get_columns("instances")}:
        conn.execute(text("ALTER TABLE instances ADD COLUMN key_data TEXT"))


def _v4(conn: Connection) -> None:
    """v4: server groups (claims.group_uuid, server_groups)."""
    if "group_uuid" not in {c["name"] for c in inspect(conn).get_columns("claims")}:
        conn.execute(text("ALTER TABLE claims ADD COLUMN group_uuid VARCHAR(36)"))
        conn.execute(text("CREATE INDEX IF NOT EXISTS ix_claims_group_uuid ON claims (group_uuid)"))
    server_groups.create(conn, checkfirst=True)


def _v5(conn: Connection) -> None:
    """v5 (issue 14): volumes.conductor_id, the owner of a volume's flow in progress."""
    if "conductor_id" not in {c["name"] for c in inspect(conn).get_columns("volumes")}:
        conn.execute(text("ALTER TABLE volumes ADD COLUMN conductor_id VARCHAR(255)"))


# version -> steps that bring a DB at version-1 to version (run in one transaction).
# Version 1 is the initial schema above, made by create_all on a fresh DB.
Migration = Callable[[Connection], None]
MIGRATIONS: dict[int, list[Migration]] = {1: [], 2: [_v2], 3: [_v3], 4: [_v4], 5: [_v5]}

_PG_LOCK_KEY = 0x63656C6C  # "cell": advisory lock serializing schema changes on PostgreSQL


def all_metadata() -> list[MetaData]:
    """Every table of a cell DB: these, the network's, the volumes' and the hosts' (what Alembic compares)."""
    return [metadata, network_metadata, volume_metadata, hosts_metadata]


def legacy_upgrade(conn: Connection) -> None:
    """The hand-written runner: a DB from before Alembic to SCHEMA_VERSION (or a fresh one to it)."""
    current = 0
    if inspect(conn).has_table("schema_version"):
        current = conn.execute(select(schema_version.c.version)).scalar() or 0
    if current > SCHEMA_VERSION:
        raise errors.DBSchemaTooNew(found=current, supported=SCHEMA_VERSION)
    network_metadata.create_all(conn)  # own MetaData: only the missing network tables are created
    volume_metadata.create_all(conn)  # likewise the volume tables (issue 6)
    hosts_metadata.create_all(conn)  # and the operator's marks and fences of hosts (cells/db/hosts.py)
    if current == SCHEMA_VERSION:
        return
    if current == 0:
        metadata.create_all(conn)
    else:
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for step in MIGRATIONS.get(version, []):
                step(conn)
    conn.execute(schema_version.delete())
    conn.execute(schema_version.insert().values(id=1, version=SCHEMA_VERSION, updated_at=utcnow_iso()))


def _ensure(conn: Connection, sqlite: bool) -> str:
    if not sqlite:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    revision = versioning.revision_of(conn)
    if revision is None:
        fresh = not inspect(conn).get_table_names()
        legacy_upgrade(conn)  # a fresh DB: create_all, which is the head's schema (the migration test says so)
        revision = ALEMBIC_HEAD if fresh else ALEMBIC_BASELINE
        versioning.stamp(conn, revision)
    versioning.check_current(conn, revision, ALEMBIC_HEAD, ALEMBIC_REVISIONS, "cell DB")
    return revision


async def ensure_schema(db: Database) -> str:
    """Create the schema of a fresh `db` (or bring one from before Alembic to the baseline) in one write
    transaction; returns its Alembic revision. Raises DBSchemaBehind when `cellctl db upgrade` is due."""
    return await db.write(lambda conn: _ensure(conn, db.sqlite))


async def create_schema(url: str) -> None:
    """Idempotent; safe when several processes call it at once."""
    db = Database(url)
    try:
        await ensure_schema(db)
    finally:
        await db.close()
