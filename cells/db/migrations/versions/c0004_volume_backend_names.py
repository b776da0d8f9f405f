"""Volume types steer to volume hosts (issue 18): volumes.volume_backend_name (what the volume's type asks
for) and volume_nodes.backend_name (what the host answers to).

A DB from before Alembic had its missing volume tables made by the old runner from the code's tables
(cells/db/schema.py legacy_upgrade), so this revision adds only what is missing.

Revision ID: c0004_volume_backend_names
Revises: c0003_instance_lock
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0004_volume_backend_names"
down_revision: str | None = "c0003_instance_lock"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None
COLUMNS = (("volumes", "volume_backend_name"), ("volume_nodes", "backend_name"))


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table, column in COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            with op.batch_alter_table(table) as batch:
                batch.add_column(sa.Column(column, sa.String(length=255), nullable=True))


def downgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
