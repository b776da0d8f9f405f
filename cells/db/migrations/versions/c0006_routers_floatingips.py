"""Routers, floating IPs and external networks (issue 17): networks.router_external, and the
routers and floatingips tables.

A DB from before Alembic had its missing network tables made by the controller from the code's
tables, so this revision adds only what is missing.

Revision ID: c0006_routers_floatingips
Revises: c0005_volume_images
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0006_routers_floatingips"
down_revision: str | None = "c0005_volume_images"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "router_external" not in {c["name"] for c in inspector.get_columns("networks")}:
        with op.batch_alter_table('networks') as batch:
            batch.add_column(sa.Column('router_external', sa.Boolean(), nullable=False,
                                       server_default=sa.false()))
    tables = set(inspector.get_table_names())
    if "routers" not in tables:
        op.create_table('routers',
                        sa.Column('id', sa.String(length=36), nullable=False),
                        sa.Column('project_id', sa.String(length=255), nullable=False),
                        sa.Column('name', sa.String(length=255), nullable=False),
                        sa.Column('description', sa.String(length=255), nullable=False),
                        sa.Column('admin_state_up', sa.Boolean(), nullable=False),
                        sa.Column('gw_port_id', sa.String(length=36), nullable=True),
                        sa.Column('enable_snat', sa.Boolean(), nullable=False),
                        sa.Column('created_at', sa.String(length=32), nullable=False),
                        sa.Column('updated_at', sa.String(length=32), nullable=False),
                        sa.ForeignKeyConstraint(['gw_port_id'], ['ports.id'], ),
                        sa.PrimaryKeyConstraint('id'))
        op.create_index(op.f('ix_routers_project_id'), 'routers', ['project_id'], unique=False)
    if "floatingips" not in tables:
        op.create_table('floatingips',
                        sa.Column('id', sa.String(length=36), nullable=False),
                        sa.Column('project_id', sa.String(length=255), nullable=False),
                        sa.Column('floating_network_id', sa.String(length=36), nullable=False),
                        sa.Column('floating_port_id', sa.String(length=36), nullable=False),
                        sa.Column('floating_ip_address', sa.String(length=64), nullable=False),
                        sa.Column('port_id', sa.String(length=36), nullable=True),
                        sa.Column('fixed_ip_address', sa.String(length=64), nullable=True),
                        sa.Column('router_id', sa.String(length=36), nullable=True),
                        sa.Column('description', sa.String(length=255), nullable=False),
                        sa.Column('created_at', sa.String(length=32), nullable=False),
                        sa.Column('updated_at', sa.String(length=32), nullable=False),
                        sa.ForeignKeyConstraint(['floating_network_id'], ['networks.id'], ),
                        sa.ForeignKeyConstraint(['floating_port_id'], ['ports.id'], ),
                        sa.PrimaryKeyConstraint('id'),
                        sa.UniqueConstraint('port_id', 'fixed_ip_address', name='uq_floatingip_fixed'))
        for column in ('project_id', 'floating_network_id', 'port_id', 'router_id'):
            op.create_index(op.f(f'ix_floatingips_{column}'), 'floatingips', [column], unique=False)


def downgrade() -> None:
    op.drop_table('floatingips')
    op.drop_table('routers')
    with op.batch_alter_table('networks') as batch:
        batch.drop_column('router_external')
