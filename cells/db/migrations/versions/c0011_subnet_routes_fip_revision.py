"""subnets.host_routes (Neutron's host_routes, served to guests as DHCP option 121) and
floatingips.revision_number (Neutron's revision_number: an update may say which revision it saw,
If-Match, so of two concurrent moves of one floating IP the second gets 412).

Revision ID: c0011_subnet_routes_fip_revision
Revises: c0010_volume_image_metadata
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0011_subnet_routes_fip_revision"
down_revision: str | None = "c0010_volume_image_metadata"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    # a DB whose controller made the network tables from the code's has the columns already
    if "host_routes" not in {c["name"] for c in inspector.get_columns("subnets")}:
        with op.batch_alter_table("subnets") as batch:
            batch.add_column(sa.Column("host_routes", sa.JSON(), nullable=True))
    if "revision_number" not in {c["name"] for c in inspector.get_columns("floatingips")}:
        with op.batch_alter_table("floatingips") as batch:
            batch.add_column(sa.Column("revision_number", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("floatingips") as batch:
        batch.drop_column("revision_number")
    with op.batch_alter_table("subnets") as batch:
        batch.drop_column("host_routes")
