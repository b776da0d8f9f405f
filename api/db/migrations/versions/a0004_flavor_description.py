"""flavors.description: a flavor's free-text description (Nova's microversion 2.55).

Revision ID: a0004_flavor_description
Revises: a0003_reservation_resource
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0004_flavor_description"
down_revision: str | None = "a0003_reservation_resource"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("flavors") as batch:
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("flavors") as batch:
        batch.drop_column("description")
