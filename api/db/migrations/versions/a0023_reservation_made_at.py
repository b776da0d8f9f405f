"""A volume quota reservation says since when its volume is known to exist in its cell (`made_at`: its create
returned, or a listing showed it), so once a listing begun after that no longer shows the volume (deleted) it
stops counting at once. Before, it counted on until RESERVATION_TTL: a project that deleted a volume could not
use that room for up to a minute.

Revision ID: a0023_reservation_made_at
Revises: a0022_group_snapshots
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0023_reservation_made_at"
down_revision: str | None = "a0022_group_snapshots"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    # a DB from before Alembic got its volume_reservations from the code's table (api/db/schema.py _v7)
    if "made_at" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("volume_reservations")}:
        return
    with op.batch_alter_table('volume_reservations') as batch:
        batch.add_column(sa.Column('made_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('volume_reservations') as batch:
        batch.drop_column('made_at')
