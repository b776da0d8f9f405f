"""instance_mappings: the attributes of a server the API keeps for its views (Nova's microversions 2.3,
2.19, 2.90, 2.96): reservation_id and launch_index (one boot request, the server's place in it),
description, hostname (None: derived from the name), pinned_availability_zone (the zone the boot asked for).

Revision ID: a0002_server_attributes
Revises: a0001_baseline
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0002_server_attributes"
down_revision: str | None = "a0001_baseline"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instance_mappings") as batch:
        batch.add_column(sa.Column("reservation_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("launch_index", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("description", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("hostname", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("pinned_availability_zone", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance_mappings") as batch:
        for column in ("pinned_availability_zone", "hostname", "description", "launch_index", "reservation_id"):
            batch.drop_column(column)
