"""The API DB: global data only (identity, flavors, images, cell and instance
mappings). SQLAlchemy Core tables; every list filter has an index.

`create_schema(url)` is idempotent: a DB not under Alembic yet (fresh, or from
before it) gets the hand-written steps of MIGRATIONS in order, each in its own
transaction, and is stamped at the Alembic baseline (cells/db/versioning.py); a
DB under Alembic must be at its head (`cellctl db upgrade` migrates it,
cells/db/migrate.py). A change to a table is now an Alembic revision in
api/db/migrations/versions plus the matching edit of its Table below; MIGRATIONS
is frozen.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    inspect,
    select,
    text,
    update,
)

from api.db.engine import make_engine
from cells.db import versioning

LOG = logging.getLogger(__name__)
metadata = MetaData()

schema_version = Table(
    "schema_version", metadata,
    Column("id", Integer, primary_key=True),  # always 1: a single row
    Column("version", Integer, nullable=False),
)

# --- identity ---------------------------------------------------------------

domains = Table(
    "domains", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("description", Text, nullable=False, default=""),
)

projects = Table(
    "projects", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("domain_id", String(64), ForeignKey("domains.id"), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("description", Text, nullable=False, default=""),
    # the parent project (a0013); None: a top-level project, whose parent is its domain. No FK on purpose:
    # SQLite cannot add one to a table; api/identity/hierarchy.py keeps it pointing at a live project
    Column("parent_id", String(64), nullable=True),
    UniqueConstraint("domain_id", "name", name="uq_projects_domain_name"),
    Index("ix_projects_parent", "parent_id"),
)

users = Table(
    "users", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("domain_id", String(64), ForeignKey("domains.id"), nullable=False),
    Column("password_hash", String(512), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("default_project_id", String(64), nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("extra", JSON, nullable=True),  # Keystone's extra attributes (description, email, ...) (a0013)
    UniqueConstraint("domain_id", "name", name="uq_users_domain_name"),
)

roles = Table(
    "roles", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("description", Text, nullable=True),  # a0013: roles an admin creates
    # a0018: the domain of a domain-specific role (None: global). Names stay unique across the cloud, so a
    # role name in a policy rule ("role:admin") names one role; no FK (see projects.parent_id)
    Column("domain_id", String(64), nullable=True),
    Index("ix_roles_domain", "domain_id"),
)

role_assignments = Table(
    "role_assignments", metadata,
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("project_id", String(64), ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", String(64), ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_role_assignments_project", "project_id"),
)

groups = Table(
    "groups", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("domain_id", String(64), ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    Column("description", Text, nullable=False, default=""),
    UniqueConstraint("domain_id", "name", name="uq_groups_domain_name"),
)

group_members = Table(
    "group_members", metadata,
    Column("group_id", String(64), ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_group_members_user", "user_id"),
)

# Keystone's project tags (a0018): what `?tags=`, `tags-any`, `not-tags` and `not-tags-any` filter on
project_tags = Table(
    "project_tags", metadata,
    Column("project_id", String(64), ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Index("ix_project_tags_name", "name"),
)

# a role a group holds on a project: every member of the group has it there
group_role_assignments = Table(
    "group_role_assignments", metadata,
    Column("group_id", String(64), ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("project_id", String(64), ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", String(64), ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_group_role_assignments_project", "project_id"),
)

# a role that brings another with it (a0016), added by an admin: `implied role create`. Keystone's own
# (admin -> member -> reader) are api/identity/tokens.py IMPLIED_ROLES, always in force
implied_roles = Table(
    "implied_roles", metadata,
    Column("prior_role_id", String(64), ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Column("implied_role_id", String(64), ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
)

# a role a user or a group holds on a domain (a0013): a domain-scoped token carries it
domain_role_assignments = Table(
    "domain_role_assignments", metadata,
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("domain_id", String(64), ForeignKey("domains.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", String(64), ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_domain_role_assignments_domain", "domain_id"),
)

group_domain_role_assignments = Table(
    "group_domain_role_assignments", metadata,
    Column("group_id", String(64), ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("domain_id", String(64), ForeignKey("domains.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", String(64), ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_group_domain_role_assignments_domain", "domain_id"),
)

tokens = Table(
    "tokens", metadata,
    Column("id_hash", String(64), primary_key=True),  # sha256 of the token id: a DB leak leaks no token
    Column("user_id", String(64), nullable=False),
    Column("project_id", String(64), nullable=True),  # None: unscoped
    Column("roles", JSON, nullable=False),  # [{"id", "name"}] as issued
    Column("methods", JSON, nullable=False),
    Column("audit_id", String(32), nullable=False),
    Column("issued_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("system", Boolean, nullable=False, server_default="0"),  # system scope (project_id None)
    Column("app_cred_id", String(64), nullable=True),  # issued to an application credential: dies with it
    Column("domain_id", String(64), nullable=True),  # domain scope (a0013; project_id None)
    Index("ix_tokens_expires_at", "expires_at"),
    Index("ix_tokens_user", "user_id"),
)

application_credentials = Table(
    "application_credentials", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("project_id", String(64), ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("secret_hash", String(512), nullable=False),  # scrypt, as passwords (api/identity/passwords.py)
    Column("description", Text, nullable=True),
    Column("roles", JSON, nullable=False),  # [{"id", "name"}]: a subset of the user's roles on the project
    Column("unrestricted", Boolean, nullable=False),
    Column("expires_at", DateTime, nullable=True),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("user_id", "name", name="uq_application_credentials_user_name"),
)

# --- compute ----------------------------------------------------------------

flavors = Table(
    "flavors", metadata,
    Column("id", String(255), primary_key=True),  # Nova's flavorid ("1")
    Column("name", String(255), nullable=False, unique=True),
    Column("vcpus", Integer, nullable=False),
    Column("ram", Integer, nullable=False),  # MiB
    Column("disk", Integer, nullable=False),  # GiB root disk
    Column("ephemeral", Integer, nullable=False, default=0),
    Column("swap", Integer, nullable=False, default=0),  # MiB
    Column("rxtx_factor", Float, nullable=False, default=1.0),
    Column("is_public", Boolean, nullable=False, default=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("extra_specs", JSON, nullable=False, default=dict),
    Column("created_at", DateTime, nullable=False),
    Column("description", Text, nullable=True),  # a0004: Nova 2.55's flavor description
    Index("ix_flavors_ram", "ram"),
    Index("ix_flavors_disk", "disk"),
    Index("ix_flavors_is_public", "is_public"),
)

flavor_projects = Table(
    "flavor_projects", metadata,  # a0011: the projects a private flavor is shared with (os-flavor-access)
    Column("flavor_id", String(255), ForeignKey("flavors.id", ondelete="CASCADE"), primary_key=True),
    Column("project_id", String(64), primary_key=True),
    Index("ix_flavor_projects_project_id", "project_id"),
)

quota_classes = Table(
    "quota_classes", metadata,  # a0011: os-quota-class-sets; the "default" class is every project's default
    Column("class_name", String(255), primary_key=True),
    Column("resource", String(64), primary_key=True),
    Column("hard_limit", Integer, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

cell_mappings = Table(
    "cell_mappings", metadata,
    Column("path", String(255), primary_key=True),  # routing path from the top ("cell1", "site1!cell-a")
    Column("name", String(255), nullable=False),
    Column("router", String(255), nullable=False),  # tcp address of the cell's directory
    Column("public_key", String(255), nullable=True),  # CURVE public key (z85) when curve is on
    Column("parent", String(255), nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

instance_mappings = Table(
    "instance_mappings", metadata,
    Column("instance_uuid", String(36), primary_key=True),
    Column("cell_path", String(255), nullable=False),
    Column("project_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("created_at", DateTime, nullable=False),
    # v5 (issue 14): what the server counts against its project's quota (api/quota.py usage_of): the
    # flavor's vcpus and ram as last admitted (a resize counts the new flavor); and whether its cell
    # took the build (false until the API saw build_instances answer: the half-made-boot sweep,
    # api/compute/boot_sweep.py, asks the cell about a mapping still false after a grace)
    Column("vcpus", Integer, nullable=False, server_default="0"),
    Column("ram", Integer, nullable=False, server_default="0"),
    Column("built", Boolean, nullable=False, server_default="1"),
    # a0002: what the server views show from microversions 2.3, 2.19, 2.90 and 2.96 (api/compute/views.py),
    # kept here because only the API reads them: reservation_id and launch_index (the boot request, the
    # server's place in it), description, hostname (None: derived from the name), the zone the boot asked for
    Column("reservation_id", String(32), nullable=True),
    Column("launch_index", Integer, nullable=True),
    Column("description", String(255), nullable=True),
    Column("hostname", String(255), nullable=True),
    Column("pinned_availability_zone", String(255), nullable=True),
    Column("tags", JSON, nullable=True),  # a0008: the server's tags (2.26; None: none)
    # a0012: the image a shelved server's disk is in (api/compute/shelve.py; None: not shelved)
    Column("shelved_image_id", String(36), nullable=True),
    Index("ix_instance_mappings_project_created", "project_id", "created_at"),
    Index("ix_instance_mappings_cell", "cell_path"),
)

# A delete was asked for (Nova's instance_mappings.queued_for_delete): while the server's
# cell is down, a listing does not show it from its mapping (api/compute/down_cells.py).
queued_deletes = Table(
    "queued_deletes", metadata,
    Column("instance_uuid", String(36), primary_key=True),
    Column("requested_at", DateTime, nullable=False),
)

# Volumes being created (issue 14): what a create takes from its project's volume quota until its
# cell lists the volume (api/quota.py reserve_volume); a row outlives that by at most RESERVATION_TTL, and
# stops counting once a cell listed the volume and a later listing no longer does (deleted).
volume_reservations = Table(
    "volume_reservations", metadata,
    Column("volume_id", String(36), primary_key=True),
    Column("project_id", String(64), nullable=False, index=True),
    Column("gigabytes", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    # a0003 (issue 18): volume | snapshot (the id above is then the snapshot's)
    Column("resource", String(16), nullable=False, server_default="volume"),
    # a0006 (issue 18): the volume type's name (per-type quotas: gigabytes_<type>, ...); None: the default
    Column("volume_type", String(255), nullable=True),
    # a0023: since when the volume is known to exist in its cell (its create returned, or a listing showed it);
    # None: not yet. A listing begun after it that does not show the volume: deleted, the row no longer counts
    Column("made_at", DateTime, nullable=True),
)

# a0006 (issue 18): Cinder's volume types (global, made by admins; api/volume/types.py). Only the
# volume_backend_name extra spec means something to this cloud (the volume hosts a type's volumes go to).
volume_types = Table(
    "volume_types", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("description", Text, nullable=True),
    Column("is_public", Boolean, nullable=False),
    Column("extra_specs", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    # a0015: the QoS specs associated with the type (stored and shown, not enforced: api/volume/qos.py)
    Column("qos_specs_id", String(36), nullable=True),
    # a0015: Cinder's encryption type {encryption_id, provider, cipher, key_size, control_location, ...}:
    # stored and shown only; a volume of a type with one is refused (api/volume/encryption.py)
    Column("encryption", JSON, nullable=True),
)

# a0017: the projects a private volume type is shared with (os-volume-type-access, api/volume/type_access.py)
volume_type_projects = Table(
    "volume_type_projects", metadata,
    Column("volume_type_id", String(36), ForeignKey("volume_types.id", ondelete="CASCADE"), primary_key=True),
    Column("project_id", String(64), primary_key=True),
    Index("ix_volume_type_projects_project_id", "project_id"),
)

# a0019: Cinder's group types (3.11; api/volume/group_types.py): kept and shown, no spec acted on yet
group_types = Table(
    "group_types", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("description", Text, nullable=True),
    Column("is_public", Boolean, nullable=False),
    Column("group_specs", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# a0015: Cinder's QoS specs (api/volume/qos.py)
qos_specs = Table(
    "qos_specs", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("consumer", String(16), nullable=False),  # front-end | back-end | both
    Column("specs", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# a0014: Cinder's volume transfers (api/volume/transfers.py): a volume offered to whoever gives the auth key,
# kept as a salted SHA-256; one open transfer per volume
volume_transfers = Table(
    "volume_transfers", metadata,
    Column("id", String(36), primary_key=True),
    Column("volume_id", String(36), nullable=False, unique=True),
    Column("project_id", String(64), nullable=False, index=True),  # the giving project
    Column("name", String(255), nullable=True),
    Column("salt", String(64), nullable=False),
    Column("crypt_hash", String(64), nullable=False),
    Column("no_snapshots", Boolean, nullable=False),  # 3.55: the volume goes without its snapshots
    Column("created_at", DateTime, nullable=False),
)

# a0021: Cinder's generic volume groups (api/volume/groups.py). Volumes live in the cells: a group keeps its
# members' ids here (one group per volume), and a member whose volume is gone is simply not listed
volume_groups = Table(
    "volume_groups", metadata,
    Column("id", String(36), primary_key=True),
    Column("project_id", String(64), nullable=False, index=True),
    Column("user_id", String(64), nullable=True),
    Column("name", String(255), nullable=True),
    Column("description", Text, nullable=True),
    Column("group_type_id", String(36), nullable=False),
    Column("volume_types", JSON, nullable=False),  # the ids of the volume types its members may have
    Column("availability_zone", String(255), nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

volume_group_members = Table(
    "volume_group_members", metadata,
    Column("volume_id", String(36), primary_key=True),
    Column("group_id", String(36), ForeignKey("volume_groups.id", ondelete="CASCADE"), nullable=False, index=True),
)

# a0022: Cinder's group snapshots (api/volume/group_snapshots.py): a snapshot of each member of a group, taken
# together; its member snapshots (cell snapshots) are listed here
group_snapshots = Table(
    "group_snapshots", metadata,
    Column("id", String(36), primary_key=True),
    Column("group_id", String(36), nullable=False, index=True),
    Column("project_id", String(64), nullable=False, index=True),
    Column("user_id", String(64), nullable=True),
    Column("name", String(255), nullable=True),
    Column("description", Text, nullable=True),
    Column("group_type_id", String(36), nullable=False),
    Column("status", String(32), nullable=False),
    # a member's snapshot failed: the others are being deleted (each once it leaves `creating`)
    Column("removing", Boolean, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

group_snapshot_members = Table(
    "group_snapshot_members", metadata,
    Column("snapshot_id", String(36), primary_key=True),
    Column("group_snapshot_id", String(36), ForeignKey("group_snapshots.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("volume_id", String(36), nullable=False),
)

# --- image ------------------------------------------------------------------

images = Table(
    "images", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=True),
    Column("status", String(32), nullable=False),  # queued | saving | active | killed | deleted ...
    Column("visibility", String(16), nullable=False),  # public | private | shared | community
    Column("owner", String(64), nullable=True),
    Column("checksum", String(32), nullable=True),  # md5 hex, as Glance
    Column("os_hash_algo", String(64), nullable=True),
    Column("os_hash_value", String(128), nullable=True),
    Column("size", Integer, nullable=True),
    Column("virtual_size", Integer, nullable=True),
    Column("disk_format", String(32), nullable=True),
    Column("container_format", String(32), nullable=True),
    Column("min_disk", Integer, nullable=False, default=0),
    Column("min_ram", Integer, nullable=False, default=0),
    Column("protected", Boolean, nullable=False, default=False),
    Column("os_hidden", Boolean, nullable=False, default=False),
    Column("properties", JSON, nullable=False, default=dict),  # extra properties, shown flat
    Column("tags", JSON, nullable=False, default=list),
    Column("content_address", String(160), nullable=True),  # "sha512:<hex>" in the image store
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_images_name", "name"),
    Index("ix_images_status", "status"),
    Index("ix_images_visibility_owner", "visibility", "owner"),
    Index("ix_images_created_at", "created_at"),
)

# Glance's tasks of an image (a0020): each interoperable import, as GET /v2/images/{id}/tasks lists it
image_tasks = Table(
    "image_tasks", metadata,
    Column("id", String(36), primary_key=True),
    Column("image_id", String(36), ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("type", String(32), nullable=False),  # api_image_import
    Column("status", String(16), nullable=False),  # pending | processing | success | failure
    Column("input", JSON, nullable=False),  # {"image_id", "import_req", "backend"}
    Column("result", JSON, nullable=True),
    Column("message", Text, nullable=False),
    Column("owner", String(64), nullable=True),  # the project that asked
    Column("user_id", String(64), nullable=True),
    Column("request_id", String(64), nullable=True),  # the import request's X-OpenStack-Request-Id
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_image_tasks_image", "image_id"),
)
image_members = Table(
    "image_members", metadata,
    Column("image_id", String(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("member_id", String(64), primary_key=True),  # a project id
    Column("status", String(16), nullable=False),  # pending | accepted | rejected
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_image_members_member", "member_id"),
)


# --- keypairs, quotas, EC2 (issue 7) ---------------------------------------

key_pairs = Table(
    "key_pairs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(64), nullable=False),  # Nova: keypairs belong to a user, not a project
    Column("name", String(255), nullable=False),
    Column("fingerprint", String(255), nullable=False),
    Column("public_key", Text, nullable=False),
    Column("type", String(16), nullable=False, default="ssh"),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("user_id", "name", name="uq_key_pairs_user_name"),
)

quotas = Table(
    "quotas", metadata,  # per-project overrides of the defaults (api/quota.py); -1 is unlimited
    Column("project_id", String(64), primary_key=True),
    Column("resource", String(64), primary_key=True),
    Column("hard_limit", Integer, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

ec2_credentials = Table(
    "ec2_credentials", metadata,  # Keystone's OS-EC2 credentials: the SigV4 signing secrets of /ec2
    Column("access", String(64), primary_key=True),
    Column("secret", Text, nullable=False),  # sealed with the cluster's ec2_credential_key (api/identity/ec2creds.py)
    Column("user_id", String(64), nullable=False, index=True),
    Column("project_id", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

ec2_ids = Table(
    "ec2_ids", metadata,  # EC2's short ids (i-0000000a, ami-..., vol-...) <-> our uuids
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # instance | image | volume | snapshot
)

ec2_client_tokens = Table(
    "ec2_client_tokens", metadata,  # ClientToken idempotency of RunInstances / CreateVolume
    Column("project_id", String(64), primary_key=True),
    Column("action", String(64), primary_key=True),
    Column("client_token", String(64), primary_key=True),
    Column("result", JSON, nullable=False),  # the uuids the first request made
    Column("created_at", DateTime, nullable=False),
)


# --- server groups (os-server-groups) ----------------------------------------

server_groups = Table(
    "server_groups", metadata,  # Nova's instance groups: global, per project (api/compute/server_groups.py)
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("project_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("policy", String(32), nullable=False),  # one policy, as Nova 2.1 takes it (soft ones from 2.15)
    Column("created_at", DateTime, nullable=False),
    Column("rules", JSON, nullable=True),  # a0005: Nova 2.64's rules ({"max_server_per_host": N}); None: none
    Index("ix_server_groups_project_created", "project_id", "created_at"),
)

server_group_members = Table(
    "server_group_members", metadata,  # a server is in at most one group (one hint per boot)
    Column("instance_uuid", String(36), primary_key=True),
    Column("group_id", String(36), ForeignKey("server_groups.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_server_group_members_group", "group_id", "created_at"),
)

aggregates = Table(
    "aggregates", metadata,  # a0010: Nova's host aggregates, global as Nova's API DB keeps them
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("metadata", JSON, nullable=False),  # availability_zone among them, as Nova keeps it
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=True),
)

aggregate_hosts = Table(
    "aggregate_hosts", metadata,  # a0010: a compute host in an aggregate
    Column("aggregate_id", Integer, ForeignKey("aggregates.id", ondelete="CASCADE"), primary_key=True),
    Column("host", String(255), primary_key=True),
    Index("ix_aggregate_hosts_host", "host"),
)


# --- migrations -------------------------------------------------------------

def _v1(conn: Connection) -> None:
    """The first schema: every table above as first released."""
    metadata.create_all(conn, tables=[domains, projects, users, roles, role_assignments, tokens, flavors,
                                      cell_mappings, instance_mappings, images])


def _v2(conn: Connection) -> None:
    """Keypairs, quota overrides, EC2 credentials, EC2 ids and ClientTokens."""
    metadata.create_all(conn, tables=[key_pairs, quotas, ec2_credentials, ec2_ids, ec2_client_tokens])


def _v3(conn: Connection) -> None:
    """Deletes queued for servers (down-cell listings leave them out)."""
    metadata.create_all(conn, tables=[queued_deletes])


def _v4(conn: Connection) -> None:
    """Server groups and their members."""
    metadata.create_all(conn, tables=[server_groups, server_group_members])


def _v5(conn: Connection) -> None:
    """Quota counted in the API DB (instance_mappings.vcpus, ram) and half-made boots (built)."""
    have = {c["name"] for c in inspect(conn).get_columns("instance_mappings")}
    for ddl in ("vcpus INTEGER NOT NULL DEFAULT 0", "ram INTEGER NOT NULL DEFAULT 0",
                "built BOOLEAN NOT NULL DEFAULT 1" if conn.dialect.name == "sqlite" else
                "built BOOLEAN NOT NULL DEFAULT TRUE"):
        if ddl.split()[0] not in have:
            conn.execute(text(f"ALTER TABLE instance_mappings ADD COLUMN {ddl}"))


def _v6(conn: Connection) -> None:
    """EC2 secrets are stored sealed, longer than the 64 characters of a plaintext one (SQLite does not
    enforce a VARCHAR's length; the rows themselves are sealed by the API at start)."""
    if conn.dialect.name != "sqlite":
        conn.execute(text("ALTER TABLE ec2_credentials ALTER COLUMN secret TYPE TEXT"))


def _v7(conn: Connection) -> None:
    """Volume quota reservations (volumes being created, counted across API workers)."""
    metadata.create_all(conn, tables=[volume_reservations])


# frozen: Alembic revisions (below) come after version 7
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5, 6: _v6, 7: _v7}
LATEST = max(MIGRATIONS)
# Alembic (api/db/migrations/versions), oldest first; the baseline is LATEST's schema. A change to a table
# from now on is an Alembic revision plus the edit of its Table above (tests/unit/test_db_migrations.py).
ALEMBIC_REVISIONS = ("a0001_baseline", "a0002_server_attributes", "a0003_reservation_resource",
                     "a0004_flavor_description", "a0005_server_group_rules", "a0006_volume_types",
                     "a0007_identity_images", "a0008_server_tags", "a0009_identity_groups",
                     "a0010_aggregates", "a0011_flavor_access_quotas", "a0012_shelved_image",
                     "a0013_identity_domains_hierarchy", "a0014_volume_transfers",
                     "a0015_qos_encryption", "a0016_implied_roles",
                     "a0017_volume_type_access", "a0018_identity_tags_domain_roles", "a0019_group_types",
                     "a0020_image_tasks", "a0021_volume_groups", "a0022_group_snapshots",
                     "a0023_reservation_made_at")
ALEMBIC_BASELINE = ALEMBIC_REVISIONS[0]
ALEMBIC_HEAD = ALEMBIC_REVISIONS[-1]


def _current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_version"):
        schema_version.create(conn)
        conn.execute(insert(schema_version).values(id=1, version=0))
        return 0
    version = conn.execute(select(schema_version.c.version).where(schema_version.c.id == 1)).scalar()
    if version is None:
        conn.execute(insert(schema_version).values(id=1, version=0))
        return 0
    return int(version)


def _migrate_step(conn: Connection) -> int | None:
    """Apply the next missing step; None when up to date."""
    current = _current_version(conn)
    if current > LATEST:
        raise RuntimeError(f"API DB schema {current} is newer than this code ({LATEST}): upgrade the code")
    if current == LATEST:
        return None
    step = current + 1
    MIGRATIONS[step](conn)
    conn.execute(update(schema_version).where(schema_version.c.id == 1).values(version=step))
    return step


def legacy_upgrade(conn: Connection) -> None:
    """The hand-written runner, every missing step in the caller's transaction (cells/db/migrate.py)."""
    while _migrate_step(conn) is not None:
        pass


async def create_schema(url: str) -> None:
    """Create the API DB at `url` (the hand-written steps, then stamped at the Alembic baseline), or check
    it is at the Alembic head (idempotent). Raises DBSchemaBehind when `cellctl db upgrade` is due."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            revision = await conn.run_sync(versioning.revision_of)
        if revision is None:  # fresh, or from before Alembic
            async with engine.connect() as conn:
                fresh = not await conn.run_sync(lambda c: inspect(c).get_table_names())
            while True:
                async with engine.begin() as conn:
                    step = await conn.run_sync(_migrate_step)
                if step is None:
                    break
                LOG.info("API DB %s migrated to schema version %d", url, step)
            async with engine.begin() as conn:
                # fresh: the steps' create_all built the head's tables (the migration test says so), but for
                # the tables added after them (volume_types), made here
                if fresh:
                    await conn.run_sync(lambda c: metadata.create_all(c, tables=[volume_types]))
                revision = await conn.run_sync(_stamp, ALEMBIC_HEAD if fresh else ALEMBIC_BASELINE)
        async with engine.connect() as conn:
            await conn.run_sync(lambda c: versioning.check_current(c, revision, ALEMBIC_HEAD, ALEMBIC_REVISIONS,
                                                                   "API DB"))
    finally:
        await engine.dispose()


def _stamp(conn: Connection, revision: str) -> str:
    """Stamp a DB the hand-written runner just finished (at the baseline, or the head when it made the DB
    from nothing), unless another process did."""
    found = versioning.revision_of(conn)
    if found is not None:
        return found
    if revision == ALEMBIC_HEAD:
        metadata.create_all(conn)  # the tables revisions added since the steps were frozen
    versioning.stamp(conn, revision)
    return revision
