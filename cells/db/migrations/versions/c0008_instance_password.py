"""instances.password: what the guest posted to the metadata service (Nova's os-server-password).

Revision ID: c0008_instance_password
Revises: c0007_service_marks
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0008_instance_password"
down_revision: str | None = "c0007_service_marks"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("password", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("password")
