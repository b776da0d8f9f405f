"""Baseline: the API DB (api/db/schema.py) as the hand-written runner left it at its
version 7, the last before Alembic. A DB made by that runner is stamped here (cells/db/versioning.py);
a fresh one is built by these steps or by create_all + stamp head (the same schema: the test compares them).

Revision ID: a0001_baseline
Revises: (none)
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0001_baseline"
down_revision: str | None = None
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table('cell_mappings',
    sa.Column('path', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('router', sa.String(length=255), nullable=False),
    sa.Column('public_key', sa.String(length=255), nullable=True),
    sa.Column('parent', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('path')
    )
    op.create_table('domains',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('ec2_client_tokens',
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('client_token', sa.String(length=64), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('project_id', 'action', 'client_token')
    )
    op.create_table('ec2_credentials',
    sa.Column('access', sa.String(length=64), nullable=False),
    sa.Column('secret', sa.Text(), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('access')
    )
    op.create_index(op.f('ix_ec2_credentials_user_id'), 'ec2_credentials', ['user_id'], unique=False)
    op.create_table('ec2_ids',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('uuid')
    )
    op.create_table('flavors',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('vcpus', sa.Integer(), nullable=False),
    sa.Column('ram', sa.Integer(), nullable=False),
    sa.Column('disk', sa.Integer(), nullable=False),
    sa.Column('ephemeral', sa.Integer(), nullable=False),
    sa.Column('swap', sa.Integer(), nullable=False),
    sa.Column('rxtx_factor', sa.Float(), nullable=False),
    sa.Column('is_public', sa.Boolean(), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('extra_specs', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_index('ix_flavors_disk', 'flavors', ['disk'], unique=False)
    op.create_index('ix_flavors_is_public', 'flavors', ['is_public'], unique=False)
    op.create_index('ix_flavors_ram', 'flavors', ['ram'], unique=False)
    op.create_table('images',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('visibility', sa.String(length=16), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=True),
    sa.Column('checksum', sa.String(length=32), nullable=True),
    sa.Column('os_hash_algo', sa.String(length=64), nullable=True),
    sa.Column('os_hash_value', sa.String(length=128), nullable=True),
    sa.Column('size', sa.Integer(), nullable=True),
    sa.Column('virtual_size', sa.Integer(), nullable=True),
    sa.Column('disk_format', sa.String(length=32), nullable=True),
    sa.Column('container_format', sa.String(length=32), nullable=True),
    sa.Column('min_disk', sa.Integer(), nullable=False),
    sa.Column('min_ram', sa.Integer(), nullable=False),
    sa.Column('protected', sa.Boolean(), nullable=False),
    sa.Column('os_hidden', sa.Boolean(), nullable=False),
    sa.Column('properties', sa.JSON(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('content_address', sa.String(length=160), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_images_created_at', 'images', ['created_at'], unique=False)
    op.create_index('ix_images_name', 'images', ['name'], unique=False)
    op.create_index('ix_images_status', 'images', ['status'], unique=False)
    op.create_index('ix_images_visibility_owner', 'images', ['visibility', 'owner'], unique=False)
    op.create_table('instance_mappings',
    sa.Column('instance_uuid', sa.String(length=36), nullable=False),
    sa.Column('cell_path', sa.String(length=255), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('vcpus', sa.Integer(), server_default='0', nullable=False),
    sa.Column('ram', sa.Integer(), server_default='0', nullable=False),
    sa.Column('built', sa.Boolean(), server_default='1', nullable=False),
    sa.PrimaryKeyConstraint('instance_uuid')
    )
    op.create_index('ix_instance_mappings_cell', 'instance_mappings', ['cell_path'], unique=False)
    op.create_index('ix_instance_mappings_project_created', 'instance_mappings', ['project_id', 'created_at'], unique=False)
    op.create_table('key_pairs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('fingerprint', sa.String(length=255), nullable=False),
    sa.Column('public_key', sa.Text(), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'name', name='uq_key_pairs_user_name')
    )
    op.create_table('queued_deletes',
    sa.Column('instance_uuid', sa.String(length=36), nullable=False),
    sa.Column('requested_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('instance_uuid')
    )
    op.create_table('quotas',
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('resource', sa.String(length=64), nullable=False),
    sa.Column('hard_limit', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('project_id', 'resource')
    )
    op.create_table('roles',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('schema_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('server_groups',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('policy', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_server_groups_project_created', 'server_groups', ['project_id', 'created_at'], unique=False)
    op.create_table('tokens',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=True),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('methods', sa.JSON(), nullable=False),
    sa.Column('audit_id', sa.String(length=32), nullable=False),
    sa.Column('issued_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id_hash')
    )
    op.create_index('ix_tokens_expires_at', 'tokens', ['expires_at'], unique=False)
    op.create_index('ix_tokens_user', 'tokens', ['user_id'], unique=False)
    op.create_table('volume_reservations',
    sa.Column('volume_id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('gigabytes', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('volume_id')
    )
    op.create_index(op.f('ix_volume_reservations_project_id'), 'volume_reservations', ['project_id'], unique=False)
    op.create_table('projects',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('domain_id', sa.String(length=64), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('domain_id', 'name', name='uq_projects_domain_name')
    )
    op.create_table('server_group_members',
    sa.Column('instance_uuid', sa.String(length=36), nullable=False),
    sa.Column('group_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['server_groups.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_uuid')
    )
    op.create_index('ix_server_group_members_group', 'server_group_members', ['group_id', 'created_at'], unique=False)
    op.create_table('users',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('domain_id', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=512), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('default_project_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('domain_id', 'name', name='uq_users_domain_name')
    )
    op.create_table('role_assignments',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('role_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['role_id'], ['roles.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'project_id', 'role_id')
    )
    op.create_index('ix_role_assignments_project', 'role_assignments', ['project_id'], unique=False)
    # the old runner's marker: a release from before Alembic that meets this DB sees its own last version
    op.bulk_insert(sa.table('schema_version', sa.column('id', sa.Integer()), sa.column('version', sa.Integer())),
                   [{'id': 1, 'version': 7}])


def downgrade() -> None:
    op.drop_index('ix_role_assignments_project', table_name='role_assignments')
    op.drop_table('role_assignments')
    op.drop_table('users')
    op.drop_index('ix_server_group_members_group', table_name='server_group_members')
    op.drop_table('server_group_members')
    op.drop_table('projects')
    op.drop_index(op.f('ix_volume_reservations_project_id'), table_name='volume_reservations')
    op.drop_table('volume_reservations')
    op.drop_index('ix_tokens_user', table_name='tokens')
    op.drop_index('ix_tokens_expires_at', table_name='tokens')
    op.drop_table('tokens')
    op.drop_index('ix_server_groups_project_created', table_name='server_groups')
    op.drop_table('server_groups')
    op.drop_table('schema_version')
    op.drop_table('roles')
    op.drop_table('quotas')
    op.drop_table('queued_deletes')
    op.drop_table('key_pairs')
    op.drop_index('ix_instance_mappings_project_created', table_name='instance_mappings')
    op.drop_index('ix_instance_mappings_cell', table_name='instance_mappings')
    op.drop_table('instance_mappings')
    op.drop_index('ix_images_visibility_owner', table_name='images')
    op.drop_index('ix_images_status', table_name='images')
    op.drop_index('ix_images_name', table_name='images')
    op.drop_index('ix_images_created_at', table_name='images')
    op.drop_table('images')
    op.drop_index('ix_flavors_ram', table_name='flavors')
    op.drop_index('ix_flavors_is_public', table_name='flavors')
    op.drop_index('ix_flavors_disk', table_name='flavors')
    op.drop_table('flavors')
    op.drop_table('ec2_ids')
    op.drop_index(op.f('ix_ec2_credentials_user_id'), table_name='ec2_credentials')
    op.drop_table('ec2_credentials')
    op.drop_table('ec2_client_tokens')
    op.drop_table('domains')
    op.drop_table('cell_mappings')
