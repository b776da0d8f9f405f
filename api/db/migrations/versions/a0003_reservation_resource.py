"""Volume quota reservations say what they reserve (issue 18): `resource` volume | snapshot, so a
snapshot being created counts against snapshots and gigabytes, not volumes.

Revision ID: a0003_reservation_resource
Revises: a0002_server_attributes
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0003_reservation_resource"
down_revision: str | None = "a0002_server_attributes"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    # a DB from before Alembic got its volume_reservations from the code's table (api/db/schema.py _v7)
    if "resource" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("volume_reservations")}:
        return
    with op.batch_alter_table('volume_reservations') as batch:
        batch.add_column(sa.Column('resource', sa.String(length=16), server_default='volume', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('volume_reservations') as batch:
        batch.drop_column('resource')
