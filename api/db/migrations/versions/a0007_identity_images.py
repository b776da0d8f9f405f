"""Identity and images an operator administers (issue 19): application credentials, system-scoped and
application-credential tokens, image members.

Revision ID: a0007_identity_images
Revises: a0006_volume_types
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0007_identity_images"
down_revision: str | None = "a0006_volume_types"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.add_column("tokens", sa.Column("system", sa.Boolean(), nullable=False, server_default="0"))
    op.add_column("tokens", sa.Column("app_cred_id", sa.String(length=64), nullable=True))
    op.create_table(
        "application_credentials",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=512), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("unrestricted", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "name", name="uq_application_credentials_user_name"),
    )
    op.create_table(
        "image_members",
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "member_id"),
    )
    op.create_index("ix_image_members_member", "image_members", ["member_id"])


def downgrade() -> None:
    op.drop_index("ix_image_members_member", table_name="image_members")
    op.drop_table("image_members")
    op.drop_table("application_credentials")
    op.drop_column("tokens", "app_cred_id")
    op.drop_column("tokens", "system")
