"""Baseline: the cell DB (cells/db/schema.py, cells/network/schema.py, cells/db/volumes.py,
cells/db/hosts.py) as the hand-written runner left it at its
version 5, the last before Alembic. A DB made by that runner is stamped here (cells/db/versioning.py);
a fresh one is built by these steps or by create_all + stamp head (the same schema: the test compares them).

Revision ID: c0001_baseline
Revises: (none)
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0001_baseline"
down_revision: str | None = None
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table('compute_nodes',
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('vcpus', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('local_gb', sa.Integer(), nullable=False),
    sa.Column('vcpus_used', sa.Integer(), nullable=False),
    sa.Column('memory_mb_used', sa.Integer(), nullable=False),
    sa.Column('local_gb_used', sa.Integer(), nullable=False),
    sa.Column('cpu_allocation_ratio', sa.Float(), nullable=False),
    sa.Column('ram_allocation_ratio', sa.Float(), nullable=False),
    sa.Column('disk_allocation_ratio', sa.Float(), nullable=False),
    sa.Column('stats', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('host')
    )
    op.create_table('instances',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('project_id', sa.String(length=255), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=True),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('flavor', sa.JSON(), nullable=False),
    sa.Column('image', sa.JSON(), nullable=True),
    sa.Column('vm_state', sa.String(length=32), nullable=False),
    sa.Column('task_state', sa.String(length=32), nullable=True),
    sa.Column('power_state', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.Column('launched_at', sa.String(length=32), nullable=True),
    sa.Column('terminated_at', sa.String(length=32), nullable=True),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('key_name', sa.String(length=255), nullable=True),
    sa.Column('availability_zone', sa.String(length=255), nullable=True),
    sa.Column('user_data', sa.Text(), nullable=True),
    sa.Column('access_ipv4', sa.String(length=64), nullable=True),
    sa.Column('access_ipv6', sa.String(length=64), nullable=True),
    sa.Column('progress', sa.Integer(), nullable=False),
    sa.Column('fault', sa.JSON(), nullable=True),
    sa.Column('addresses', sa.JSON(), nullable=False),
    sa.Column('old_flavor', sa.JSON(), nullable=True),
    sa.Column('key_data', sa.Text(), nullable=True),
    sa.Column('conductor_id', sa.String(length=255), nullable=True),
    sa.Column('request_spec', sa.JSON(), nullable=True),
    sa.Column('retry_hosts', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('uuid')
    )
    op.create_index(op.f('ix_instances_created_at'), 'instances', ['created_at'], unique=False)
    op.create_index(op.f('ix_instances_deleted'), 'instances', ['deleted'], unique=False)
    op.create_index(op.f('ix_instances_host'), 'instances', ['host'], unique=False)
    op.create_index(op.f('ix_instances_name'), 'instances', ['name'], unique=False)
    op.create_index('ix_instances_project_deleted_created', 'instances', ['project_id', 'deleted', 'created_at'], unique=False)
    op.create_index(op.f('ix_instances_project_id'), 'instances', ['project_id'], unique=False)
    op.create_index(op.f('ix_instances_task_state'), 'instances', ['task_state'], unique=False)
    op.create_index(op.f('ix_instances_updated_at'), 'instances', ['updated_at'], unique=False)
    op.create_index(op.f('ix_instances_vm_state'), 'instances', ['vm_state'], unique=False)
    op.create_table('schema_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('server_groups',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('policy', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('uuid')
    )
    op.create_table('claims',
    sa.Column('instance_uuid', sa.String(length=36), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('vcpus', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('local_gb', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('group_uuid', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['host'], ['compute_nodes.host'], ),
    sa.PrimaryKeyConstraint('instance_uuid')
    )
    op.create_index(op.f('ix_claims_group_uuid'), 'claims', ['group_uuid'], unique=False)
    op.create_index(op.f('ix_claims_host'), 'claims', ['host'], unique=False)
    op.create_table('instance_actions',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('instance_uuid', sa.String(length=36), nullable=False),
    sa.Column('action', sa.String(length=255), nullable=False),
    sa.Column('request_id', sa.String(length=255), nullable=True),
    sa.Column('user_id', sa.String(length=255), nullable=True),
    sa.Column('project_id', sa.String(length=255), nullable=True),
    sa.Column('start_time', sa.String(length=32), nullable=False),
    sa.Column('finish_time', sa.String(length=32), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['instance_uuid'], ['instances.uuid'], ),
    sa.PrimaryKeyConstraint('uuid')
    )
    op.create_index('ix_instance_actions_instance_request', 'instance_actions', ['instance_uuid', 'request_id'], unique=False)
    op.create_table('instance_faults',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('instance_uuid', sa.String(length=36), nullable=False),
    sa.Column('code', sa.Integer(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('details', sa.Text(), nullable=True),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['instance_uuid'], ['instances.uuid'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_instance_faults_instance_uuid'), 'instance_faults', ['instance_uuid'], unique=False)
    op.create_table('migrations',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('instance_uuid', sa.String(length=36), nullable=False),
    sa.Column('migration_type', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('source_host', sa.String(length=255), nullable=True),
    sa.Column('dest_host', sa.String(length=255), nullable=True),
    sa.Column('old_flavor', sa.JSON(), nullable=False),
    sa.Column('new_flavor', sa.JSON(), nullable=False),
    sa.Column('old_vm_state', sa.String(length=32), nullable=False),
    sa.Column('conductor_id', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['instance_uuid'], ['instances.uuid'], ),
    sa.PrimaryKeyConstraint('uuid')
    )
    op.create_index(op.f('ix_migrations_instance_uuid'), 'migrations', ['instance_uuid'], unique=False)
    op.create_index(op.f('ix_migrations_status'), 'migrations', ['status'], unique=False)
    op.create_table('instance_action_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('action_id', sa.String(length=36), nullable=False),
    sa.Column('event', sa.String(length=255), nullable=False),
    sa.Column('start_time', sa.String(length=32), nullable=False),
    sa.Column('finish_time', sa.String(length=32), nullable=True),
    sa.Column('result', sa.String(length=255), nullable=True),
    sa.Column('details', sa.Text(), nullable=True),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['action_id'], ['instance_actions.uuid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_instance_action_events_action_id'), 'instance_action_events', ['action_id'], unique=False)
    op.create_table('network_agents',
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('tunnel_ip', sa.String(length=64), nullable=False),
    sa.Column('vlan_supported', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('host')
    )
    op.create_table('networks',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('project_id', sa.String(length=255), nullable=False),
    sa.Column('shared', sa.Boolean(), nullable=False),
    sa.Column('admin_state_up', sa.Boolean(), nullable=False),
    sa.Column('network_type', sa.String(length=16), nullable=False),
    sa.Column('segmentation_id', sa.Integer(), nullable=False),
    sa.Column('mtu', sa.Integer(), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('gateway_host', sa.String(length=255), nullable=True),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('segmentation_id')
    )
    op.create_index(op.f('ix_networks_name'), 'networks', ['name'], unique=False)
    op.create_index(op.f('ix_networks_project_id'), 'networks', ['project_id'], unique=False)
    op.create_table('security_groups',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_security_groups_project_id'), 'security_groups', ['project_id'], unique=False)
    op.create_table('ports',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('network_id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('mac_address', sa.String(length=17), nullable=False),
    sa.Column('device_id', sa.String(length=255), nullable=False),
    sa.Column('device_owner', sa.String(length=255), nullable=False),
    sa.Column('binding_host', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('admin_state_up', sa.Boolean(), nullable=False),
    sa.Column('security_groups', sa.JSON(), nullable=False),
    sa.Column('auto_delete', sa.Boolean(), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['network_id'], ['networks.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mac_address')
    )
    op.create_index(op.f('ix_ports_binding_host'), 'ports', ['binding_host'], unique=False)
    op.create_index(op.f('ix_ports_device_id'), 'ports', ['device_id'], unique=False)
    op.create_index('ix_ports_device_network', 'ports', ['device_id', 'network_id'], unique=False)
    op.create_index(op.f('ix_ports_network_id'), 'ports', ['network_id'], unique=False)
    op.create_index(op.f('ix_ports_project_id'), 'ports', ['project_id'], unique=False)
    op.create_table('security_group_rules',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('security_group_id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.String(length=255), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('ethertype', sa.String(length=8), nullable=False),
    sa.Column('protocol', sa.String(length=16), nullable=True),
    sa.Column('port_range_min', sa.Integer(), nullable=True),
    sa.Column('port_range_max', sa.Integer(), nullable=True),
    sa.Column('remote_ip_prefix', sa.String(length=64), nullable=True),
    sa.Column('remote_group_id', sa.String(length=36), nullable=True),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['security_group_id'], ['security_groups.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('security_group_id', 'direction', 'ethertype', 'protocol', 'port_range_min', 'port_range_max', 'remote_ip_prefix', 'remote_group_id', name='uq_security_group_rule')
    )
    op.create_index(op.f('ix_security_group_rules_security_group_id'), 'security_group_rules', ['security_group_id'], unique=False)
    op.create_table('subnets',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('network_id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('ip_version', sa.Integer(), nullable=False),
    sa.Column('cidr', sa.String(length=64), nullable=False),
    sa.Column('gateway_ip', sa.String(length=64), nullable=True),
    sa.Column('allocation_pools', sa.JSON(), nullable=False),
    sa.Column('enable_dhcp', sa.Boolean(), nullable=False),
    sa.Column('dns_nameservers', sa.JSON(), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['network_id'], ['networks.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_subnets_network_id'), 'subnets', ['network_id'], unique=False)
    op.create_index(op.f('ix_subnets_project_id'), 'subnets', ['project_id'], unique=False)
    op.create_table('ip_allocations',
    sa.Column('subnet_id', sa.String(length=36), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('port_id', sa.String(length=36), nullable=False),
    sa.Column('network_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['port_id'], ['ports.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subnet_id'], ['subnets.id'], ),
    sa.PrimaryKeyConstraint('subnet_id', 'address')
    )
    op.create_index(op.f('ix_ip_allocations_network_id'), 'ip_allocations', ['network_id'], unique=False)
    op.create_index(op.f('ix_ip_allocations_port_id'), 'ip_allocations', ['port_id'], unique=False)
    op.create_table('ip_cursors',
    sa.Column('subnet_id', sa.String(length=36), nullable=False),
    sa.Column('next_address', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['subnet_id'], ['subnets.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('subnet_id')
    )
    op.create_table('volume_attachments',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('volume_id', sa.String(length=36), nullable=False),
    sa.Column('instance_uuid', sa.String(length=36), nullable=False),
    sa.Column('instance_host', sa.String(length=255), nullable=True),
    sa.Column('device', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('connection_info', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('volume_id')
    )
    op.create_index(op.f('ix_volume_attachments_instance_uuid'), 'volume_attachments', ['instance_uuid'], unique=False)
    op.create_table('volume_nodes',
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('capacity_gb', sa.Integer(), nullable=False),
    sa.Column('allocated_gb', sa.Integer(), nullable=False),
    sa.Column('backend', sa.String(length=32), nullable=False),
    sa.Column('targets', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('host')
    )
    op.create_table('volumes',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.String(length=255), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('backend', sa.String(length=32), nullable=True),
    sa.Column('disk_format', sa.String(length=16), nullable=True),
    sa.Column('availability_zone', sa.String(length=255), nullable=False),
    sa.Column('volume_type', sa.String(length=255), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('bootable', sa.Boolean(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('deleted_at', sa.String(length=32), nullable=True),
    sa.Column('conductor_id', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_volumes_host'), 'volumes', ['host'], unique=False)
    op.create_index('ix_volumes_project_deleted_created', 'volumes', ['project_id', 'deleted', 'created_at'], unique=False)
    op.create_index(op.f('ix_volumes_status'), 'volumes', ['status'], unique=False)
    op.create_table('host_marks',
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('forced_down', sa.Boolean(), nullable=False),
    sa.Column('fenced', sa.Boolean(), nullable=False),
    sa.Column('declared_dead_at', sa.String(length=32), nullable=True),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('host')
    )
    # the old runner's marker: a release from before Alembic that meets this DB sees its own last version
    op.bulk_insert(sa.table('schema_version', sa.column('id', sa.Integer()), sa.column('version', sa.Integer()),
                            sa.column('updated_at', sa.String())),
                   [{'id': 1, 'version': 5, 'updated_at': '1970-01-01T00:00:00.000000Z'}])


def downgrade() -> None:
    op.drop_table('host_marks')
    op.drop_index(op.f('ix_volumes_status'), table_name='volumes')
    op.drop_index('ix_volumes_project_deleted_created', table_name='volumes')
    op.drop_index(op.f('ix_volumes_host'), table_name='volumes')
    op.drop_table('volumes')
    op.drop_table('volume_nodes')
    op.drop_index(op.f('ix_volume_attachments_instance_uuid'), table_name='volume_attachments')
    op.drop_table('volume_attachments')
    op.drop_table('ip_cursors')
    op.drop_index(op.f('ix_ip_allocations_port_id'), table_name='ip_allocations')
    op.drop_index(op.f('ix_ip_allocations_network_id'), table_name='ip_allocations')
    op.drop_table('ip_allocations')
    op.drop_index(op.f('ix_subnets_project_id'), table_name='subnets')
    op.drop_index(op.f('ix_subnets_network_id'), table_name='subnets')
    op.drop_table('subnets')
    op.drop_index(op.f('ix_security_group_rules_security_group_id'), table_name='security_group_rules')
    op.drop_table('security_group_rules')
    op.drop_index(op.f('ix_ports_project_id'), table_name='ports')
    op.drop_index(op.f('ix_ports_network_id'), table_name='ports')
    op.drop_index('ix_ports_device_network', table_name='ports')
    op.drop_index(op.f('ix_ports_device_id'), table_name='ports')
    op.drop_index(op.f('ix_ports_binding_host'), table_name='ports')
    op.drop_table('ports')
    op.drop_index(op.f('ix_security_groups_project_id'), table_name='security_groups')
    op.drop_table('security_groups')
    op.drop_index(op.f('ix_networks_project_id'), table_name='networks')
    op.drop_index(op.f('ix_networks_name'), table_name='networks')
    op.drop_table('networks')
    op.drop_table('network_agents')
    op.drop_index(op.f('ix_instance_action_events_action_id'), table_name='instance_action_events')
    op.drop_table('instance_action_events')
    op.drop_index(op.f('ix_migrations_status'), table_name='migrations')
    op.drop_index(op.f('ix_migrations_instance_uuid'), table_name='migrations')
    op.drop_table('migrations')
    op.drop_index(op.f('ix_instance_faults_instance_uuid'), table_name='instance_faults')
    op.drop_table('instance_faults')
    op.drop_index('ix_instance_actions_instance_request', table_name='instance_actions')
    op.drop_table('instance_actions')
    op.drop_index(op.f('ix_claims_host'), table_name='claims')
    op.drop_index(op.f('ix_claims_group_uuid'), table_name='claims')
    op.drop_table('claims')
    op.drop_table('server_groups')
    op.drop_table('schema_version')
    op.drop_index(op.f('ix_instances_vm_state'), table_name='instances')
    op.drop_index(op.f('ix_instances_updated_at'), table_name='instances')
    op.drop_index(op.f('ix_instances_task_state'), table_name='instances')
    op.drop_index(op.f('ix_instances_project_id'), table_name='instances')
    op.drop_index('ix_instances_project_deleted_created', table_name='instances')
    op.drop_index(op.f('ix_instances_name'), table_name='instances')
    op.drop_index(op.f('ix_instances_host'), table_name='instances')
    op.drop_index(op.f('ix_instances_deleted'), table_name='instances')
    op.drop_index(op.f('ix_instances_created_at'), table_name='instances')
    op.drop_table('instances')
    op.drop_table('compute_nodes')
