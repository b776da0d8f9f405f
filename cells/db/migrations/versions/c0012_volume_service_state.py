"""volume_nodes.disabled, disabled_reason, frozen: a volume host's os-services state (Cinder's disable,
disable-log-reason, freeze; api/volume/services.py).

Revision ID: c0012_volume_service_state
Revises: c0011_subnet_routes_fip_revision
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0012_volume_service_state"
down_revision: str | None = "c0011_subnet_routes_fip_revision"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    # a cell DB whose conductor made the volume tables from the code's (cells/db/volumes.py) has them already
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("volume_nodes")}
    for column in (sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
                   sa.Column("disabled_reason", sa.String(length=255), nullable=True),
                   sa.Column("frozen", sa.Boolean(), nullable=False, server_default=sa.false())):
        if column.name not in have:
            op.add_column("volume_nodes", column)


def downgrade() -> None:
    with op.batch_alter_table("volume_nodes") as batch:
        batch.drop_column("frozen")
        batch.drop_column("disabled_reason")
        batch.drop_column("disabled")
