-- A cell DB as the release before owners and quotas made it (schema v4; the schema code of commit dd1826b~1),
-- with a few rows: tests/unit/test_db_migrations.py upgrades it to the Alembic head.
BEGIN TRANSACTION;
CREATE TABLE claims (
	instance_uuid VARCHAR(36) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	vcpus INTEGER NOT NULL, 
	memory_mb INTEGER NOT NULL, 
	local_gb INTEGER NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	group_uuid VARCHAR(36), 
	PRIMARY KEY (instance_uuid), 
	FOREIGN KEY(host) REFERENCES compute_nodes (host)
);
INSERT INTO "claims" VALUES('11111111-1111-1111-1111-111111111111','node1',1,512,1,'2026-11-01T00:00:00.000000Z',NULL);
CREATE TABLE compute_nodes (
	host VARCHAR(255) NOT NULL, 
	vcpus INTEGER NOT NULL, 
	memory_mb INTEGER NOT NULL, 
	local_gb INTEGER NOT NULL, 
	vcpus_used INTEGER NOT NULL, 
	memory_mb_used INTEGER NOT NULL, 
	local_gb_used INTEGER NOT NULL, 
	cpu_allocation_ratio FLOAT NOT NULL, 
	ram_allocation_ratio FLOAT NOT NULL, 
	disk_allocation_ratio FLOAT NOT NULL, 
	stats JSON NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	updated_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (host)
);
INSERT INTO "compute_nodes" VALUES('node1',8,8192,100,1,512,1,4.0,1.0,1.0,'{}','2026-11-01T00:00:00.000000Z','2026-11-01T00:00:00.000000Z');
CREATE TABLE instance_action_events (
	id INTEGER NOT NULL, 
	action_id VARCHAR(36) NOT NULL, 
	event VARCHAR(255) NOT NULL, 
	start_time VARCHAR(32) NOT NULL, 
	finish_time VARCHAR(32), 
	result VARCHAR(255), 
	details TEXT, 
	host VARCHAR(255), 
	PRIMARY KEY (id), 
	FOREIGN KEY(action_id) REFERENCES instance_actions (uuid) ON DELETE CASCADE
);
CREATE TABLE instance_actions (
	uuid VARCHAR(36) NOT NULL, 
	instance_uuid VARCHAR(36) NOT NULL, 
	action VARCHAR(255) NOT NULL, 
	request_id VARCHAR(255), 
	user_id VARCHAR(255), 
	project_id VARCHAR(255), 
	start_time VARCHAR(32) NOT NULL, 
	finish_time VARCHAR(32), 
	message TEXT, 
	PRIMARY KEY (uuid), 
	FOREIGN KEY(instance_uuid) REFERENCES instances (uuid)
);
CREATE TABLE instance_faults (
	id INTEGER NOT NULL, 
	instance_uuid VARCHAR(36) NOT NULL, 
	code INTEGER NOT NULL, 
	message TEXT NOT NULL, 
	details TEXT, 
	host VARCHAR(255), 
	created_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(instance_uuid) REFERENCES instances (uuid)
);
CREATE TABLE instances (
	uuid VARCHAR(36) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	project_id VARCHAR(255) NOT NULL, 
	user_id VARCHAR(255), 
	host VARCHAR(255), 
	flavor JSON NOT NULL, 
	image JSON, 
	vm_state VARCHAR(32) NOT NULL, 
	task_state VARCHAR(32), 
	power_state INTEGER NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	updated_at VARCHAR(32) NOT NULL, 
	launched_at VARCHAR(32), 
	terminated_at VARCHAR(32), 
	deleted BOOLEAN NOT NULL, 
	metadata JSON NOT NULL, 
	key_name VARCHAR(255), 
	availability_zone VARCHAR(255), 
	user_data TEXT, 
	access_ipv4 VARCHAR(64), 
	access_ipv6 VARCHAR(64), 
	progress INTEGER NOT NULL, 
	fault JSON, 
	addresses JSON NOT NULL, 
	old_flavor JSON, 
	key_data TEXT, 
	conductor_id VARCHAR(255), 
	request_spec JSON, 
	retry_hosts JSON NOT NULL, 
	PRIMARY KEY (uuid)
);
INSERT INTO "instances" VALUES('11111111-1111-1111-1111-111111111111','old-vm','p1',NULL,'node1','{"id": "1", "ram": 512}',NULL,'active',NULL,1,'2026-11-01T00:00:00.000000Z','2026-11-01T00:00:00.000000Z',NULL,NULL,0,'{}',NULL,NULL,NULL,NULL,NULL,0,NULL,'{}',NULL,NULL,NULL,NULL,'[]');
CREATE TABLE ip_allocations (
	subnet_id VARCHAR(36) NOT NULL, 
	address VARCHAR(64) NOT NULL, 
	port_id VARCHAR(36) NOT NULL, 
	network_id VARCHAR(36) NOT NULL, 
	PRIMARY KEY (subnet_id, address), 
	FOREIGN KEY(subnet_id) REFERENCES subnets (id), 
	FOREIGN KEY(port_id) REFERENCES ports (id) ON DELETE CASCADE
);
CREATE TABLE ip_cursors (
	subnet_id VARCHAR(36) NOT NULL, 
	next_address VARCHAR(64) NOT NULL, 
	PRIMARY KEY (subnet_id), 
	FOREIGN KEY(subnet_id) REFERENCES subnets (id) ON DELETE CASCADE
);
CREATE TABLE migrations (
	uuid VARCHAR(36) NOT NULL, 
	instance_uuid VARCHAR(36) NOT NULL, 
	migration_type VARCHAR(32) NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	source_host VARCHAR(255), 
	dest_host VARCHAR(255), 
	old_flavor JSON NOT NULL, 
	new_flavor JSON NOT NULL, 
	old_vm_state VARCHAR(32) NOT NULL, 
	conductor_id VARCHAR(255), 
	created_at VARCHAR(32) NOT NULL, 
	updated_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (uuid), 
	FOREIGN KEY(instance_uuid) REFERENCES instances (uuid)
);
CREATE TABLE network_agents (
	host VARCHAR(255) NOT NULL, 
	tunnel_ip VARCHAR(64) NOT NULL, 
	vlan_supported BOOLEAN NOT NULL, 
	updated_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (host)
);
CREATE TABLE networks (
	id VARCHAR(36) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	project_id VARCHAR(255) NOT NULL, 
	shared BOOLEAN NOT NULL, 
	admin_state_up BOOLEAN NOT NULL, 
	network_type VARCHAR(16) NOT NULL, 
	segmentation_id INTEGER NOT NULL, 
	mtu INTEGER NOT NULL, 
	is_default BOOLEAN NOT NULL, 
	gateway_host VARCHAR(255), 
	description VARCHAR(255) NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	updated_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (segmentation_id)
);
CREATE TABLE ports (
	id VARCHAR(36) NOT NULL, 
	network_id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(255) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	mac_address VARCHAR(17) NOT NULL, 
	device_id VARCHAR(255) NOT NULL, 
	device_owner VARCHAR(255) NOT NULL, 
	binding_host VARCHAR(255), 
	status VARCHAR(16) NOT NULL, 
	admin_state_up BOOLEAN NOT NULL, 
	security_groups JSON NOT NULL, 
	auto_delete BOOLEAN NOT NULL, 
	description VARCHAR(255) NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	updated_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(network_id) REFERENCES networks (id), 
	UNIQUE (mac_address)
);
CREATE TABLE schema_version (
	id INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	updated_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "schema_version" VALUES(1,4,'2026-12-06T16:47:27.550021Z');
CREATE TABLE security_group_rules (
	id VARCHAR(36) NOT NULL, 
	security_group_id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(255) NOT NULL, 
	direction VARCHAR(8) NOT NULL, 
	ethertype VARCHAR(8) NOT NULL, 
	protocol VARCHAR(16), 
	port_range_min INTEGER, 
	port_range_max INTEGER, 
	remote_ip_prefix VARCHAR(64), 
	remote_group_id VARCHAR(36), 
	description VARCHAR(255) NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_security_group_rule UNIQUE (security_group_id, direction, ethertype, protocol, port_range_min, port_range_max, remote_ip_prefix, remote_group_id), 
	FOREIGN KEY(security_group_id) REFERENCES security_groups (id) ON DELETE CASCADE
);
CREATE TABLE security_groups (
	id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(255) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	description VARCHAR(255) NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	updated_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE server_groups (
	uuid VARCHAR(36) NOT NULL, 
	policy VARCHAR(32) NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (uuid)
);
CREATE TABLE subnets (
	id VARCHAR(36) NOT NULL, 
	network_id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(255) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	ip_version INTEGER NOT NULL, 
	cidr VARCHAR(64) NOT NULL, 
	gateway_ip VARCHAR(64), 
	allocation_pools JSON NOT NULL, 
	enable_dhcp BOOLEAN NOT NULL, 
	dns_nameservers JSON NOT NULL, 
	description VARCHAR(255) NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	updated_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(network_id) REFERENCES networks (id)
);
CREATE TABLE volume_attachments (
	id VARCHAR(36) NOT NULL, 
	volume_id VARCHAR(36) NOT NULL, 
	instance_uuid VARCHAR(36) NOT NULL, 
	instance_host VARCHAR(255), 
	device VARCHAR(64), 
	status VARCHAR(32) NOT NULL, 
	connection_info JSON, 
	created_at VARCHAR(32) NOT NULL, 
	updated_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (volume_id)
);
CREATE TABLE volume_nodes (
	host VARCHAR(255) NOT NULL, 
	capacity_gb INTEGER NOT NULL, 
	allocated_gb INTEGER NOT NULL, 
	backend VARCHAR(32) NOT NULL, 
	targets JSON NOT NULL, 
	updated_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (host)
);
CREATE TABLE volumes (
	id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(255) NOT NULL, 
	user_id VARCHAR(255), 
	name VARCHAR(255), 
	description TEXT, 
	size INTEGER NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	host VARCHAR(255), 
	backend VARCHAR(32), 
	disk_format VARCHAR(16), 
	availability_zone VARCHAR(255) NOT NULL, 
	volume_type VARCHAR(255), 
	metadata JSON NOT NULL, 
	bootable BOOLEAN NOT NULL, 
	error TEXT, 
	created_at VARCHAR(32) NOT NULL, 
	updated_at VARCHAR(32) NOT NULL, 
	deleted BOOLEAN NOT NULL, 
	deleted_at VARCHAR(32), 
	PRIMARY KEY (id)
);
CREATE INDEX ix_networks_name ON networks (name);
CREATE INDEX ix_networks_project_id ON networks (project_id);
CREATE INDEX ix_security_groups_project_id ON security_groups (project_id);
CREATE INDEX ix_subnets_network_id ON subnets (network_id);
CREATE INDEX ix_subnets_project_id ON subnets (project_id);
CREATE INDEX ix_ports_device_network ON ports (device_id, network_id);
CREATE INDEX ix_ports_project_id ON ports (project_id);
CREATE INDEX ix_ports_binding_host ON ports (binding_host);
CREATE INDEX ix_ports_device_id ON ports (device_id);
CREATE INDEX ix_ports_network_id ON ports (network_id);
CREATE INDEX ix_security_group_rules_security_group_id ON security_group_rules (security_group_id);
CREATE INDEX ix_ip_allocations_network_id ON ip_allocations (network_id);
CREATE INDEX ix_ip_allocations_port_id ON ip_allocations (port_id);
CREATE INDEX ix_volumes_host ON volumes (host);
CREATE INDEX ix_volumes_status ON volumes (status);
CREATE INDEX ix_volumes_project_deleted_created ON volumes (project_id, deleted, created_at);
CREATE INDEX ix_volume_attachments_instance_uuid ON volume_attachments (instance_uuid);
CREATE INDEX ix_instances_updated_at ON instances (updated_at);
CREATE INDEX ix_instances_project_id ON instances (project_id);
CREATE INDEX ix_instances_task_state ON instances (task_state);
CREATE INDEX ix_instances_host ON instances (host);
CREATE INDEX ix_instances_deleted ON instances (deleted);
CREATE INDEX ix_instances_name ON instances (name);
CREATE INDEX ix_instances_vm_state ON instances (vm_state);
CREATE INDEX ix_instances_created_at ON instances (created_at);
CREATE INDEX ix_instances_project_deleted_created ON instances (project_id, deleted, created_at);
CREATE INDEX ix_instance_actions_instance_request ON instance_actions (instance_uuid, request_id);
CREATE INDEX ix_instance_faults_instance_uuid ON instance_faults (instance_uuid);
CREATE INDEX ix_claims_host ON claims (host);
CREATE INDEX ix_claims_group_uuid ON claims (group_uuid);
CREATE INDEX ix_migrations_instance_uuid ON migrations (instance_uuid);
CREATE INDEX ix_migrations_status ON migrations (status);
CREATE INDEX ix_instance_action_events_action_id ON instance_action_events (action_id);
COMMIT;
