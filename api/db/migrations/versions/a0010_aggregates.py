"""aggregates and aggregate_hosts: Nova's host aggregates (os-aggregates, issue 16).

Revision ID: a0010_aggregates
Revises: a0009_identity_groups
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0010_aggregates"
down_revision: str | None = "a0009_identity_groups"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table("aggregates",
                    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
                    sa.Column("uuid", sa.String(length=36), nullable=False),
                    sa.Column("name", sa.String(length=255), nullable=False),
                    sa.Column("metadata", sa.JSON(), nullable=False),
                    sa.Column("created_at", sa.DateTime(), nullable=False),
                    sa.Column("updated_at", sa.DateTime(), nullable=True),
                    sa.PrimaryKeyConstraint("id"),
                    sa.UniqueConstraint("name"),
                    sa.UniqueConstraint("uuid"))
    op.create_table("aggregate_hosts",
                    sa.Column("aggregate_id", sa.Integer(), nullable=False),
                    sa.Column("host", sa.String(length=255), nullable=False),
                    sa.ForeignKeyConstraint(["aggregate_id"], ["aggregates.id"], ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("aggregate_id", "host"))
    op.create_index("ix_aggregate_hosts_host", "aggregate_hosts", ["host"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_aggregate_hosts_host", table_name="aggregate_hosts")
    op.drop_table("aggregate_hosts")
    op.drop_table("aggregates")
