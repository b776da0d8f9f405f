"""host_marks.disabled, disabled_reason and deleted: a compute service's os-services state (issue 16).

Revision ID: c0007_service_marks
Revises: c0006_routers_floatingips

A DB from before Alembic got host_marks from the code's table, so only what is missing is added.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0007_service_marks"
down_revision: str | None = "c0006_routers_floatingips"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    # a DB from before Alembic had host_marks made from the code's table (with these columns): add what is
    # missing, with plain ADD COLUMN (a batch of three new columns trips Alembic's column ordering)
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("host_marks")}
    for column in (sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
                   sa.Column("disabled_reason", sa.String(length=255), nullable=True),
                   sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false())):
        if column.name not in have:
            op.add_column("host_marks", column)


def downgrade() -> None:
    with op.batch_alter_table("host_marks") as batch:
        batch.drop_column("deleted")
        batch.drop_column("disabled_reason")
        batch.drop_column("disabled")
