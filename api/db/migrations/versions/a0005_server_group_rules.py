"""server_groups.rules: a group's rules (Nova 2.64: max_server_per_host of an anti-affinity group).

Revision ID: a0005_server_group_rules
Revises: a0004_flavor_description
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0005_server_group_rules"
down_revision: str | None = "a0004_flavor_description"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("server_groups") as batch:
        batch.add_column(sa.Column("rules", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("server_groups") as batch:
        batch.drop_column("rules")
