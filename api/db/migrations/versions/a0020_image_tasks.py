"""image_tasks: Glance's tasks of an image (an interoperable import: who asked, with which request,
what it became), listed by GET /v2/images/{id}/tasks; they go with their image.

Revision ID: a0020_image_tasks
Revises: a0019_group_types
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0020_image_tasks"
down_revision: str | None = "a0019_group_types"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "image_tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_image_tasks_image", "image_tasks", ["image_id"])


def downgrade() -> None:
    op.drop_index("ix_image_tasks_image", table_name="image_tasks")
    op.drop_table("image_tasks")
