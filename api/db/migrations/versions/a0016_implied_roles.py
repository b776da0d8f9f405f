"""implied_roles: a role that brings another with it, added by an admin (Keystone's implied roles;
its bootstrap's admin -> member -> reader stay in code, api/identity/tokens.py IMPLIED_ROLES).

Revision ID: a0016_implied_roles
Revises: a0015_qos_encryption
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0016_implied_roles"
down_revision: str | None = "a0015_qos_encryption"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "implied_roles",
        sa.Column("prior_role_id", sa.String(length=64), nullable=False),
        sa.Column("implied_role_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["prior_role_id"], ["roles.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["implied_role_id"], ["roles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("prior_role_id", "implied_role_id"),
    )


def downgrade() -> None:
    op.drop_table("implied_roles")
