"""group_types: Cinder's group types and their group specs (api/volume/group_types.py).

Revision ID: a0019_group_types
Revises: a0018_identity_tags_domain_roles
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0019_group_types"
down_revision: str | None = "a0018_identity_tags_domain_roles"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table("group_types",
                    sa.Column("id", sa.String(length=36), nullable=False),
                    sa.Column("name", sa.String(length=255), nullable=False),
                    sa.Column("description", sa.Text(), nullable=True),
                    sa.Column("is_public", sa.Boolean(), nullable=False),
                    sa.Column("group_specs", sa.JSON(), nullable=False),
                    sa.Column("created_at", sa.DateTime(), nullable=False),
                    sa.Column("updated_at", sa.DateTime(), nullable=False),
                    sa.PrimaryKeyConstraint("id"),
                    sa.UniqueConstraint("name"))


def downgrade() -> None:
    op.drop_table("group_types")
