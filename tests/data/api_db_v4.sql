-- An API DB as the release before owners and quotas made it (schema v4; the schema code of commit dd1826b~1),
-- with a few rows: tests/unit/test_db_migrations.py upgrades it to the Alembic head.
BEGIN TRANSACTION;
CREATE TABLE cell_mappings (
	path VARCHAR(255) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	router VARCHAR(255) NOT NULL, 
	public_key VARCHAR(255), 
	parent VARCHAR(255), 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (path)
);
CREATE TABLE domains (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	enabled BOOLEAN NOT NULL, 
	description TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
CREATE TABLE ec2_client_tokens (
	project_id VARCHAR(64) NOT NULL, 
	action VARCHAR(64) NOT NULL, 
	client_token VARCHAR(64) NOT NULL, 
	result JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (project_id, action, client_token)
);
CREATE TABLE ec2_credentials (
	access VARCHAR(64) NOT NULL, 
	secret VARCHAR(64) NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (access)
);
CREATE TABLE ec2_ids (
	id INTEGER NOT NULL, 
	uuid VARCHAR(36) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (uuid)
);
CREATE TABLE flavors (
	id VARCHAR(255) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	vcpus INTEGER NOT NULL, 
	ram INTEGER NOT NULL, 
	disk INTEGER NOT NULL, 
	ephemeral INTEGER NOT NULL, 
	swap INTEGER NOT NULL, 
	rxtx_factor FLOAT NOT NULL, 
	is_public BOOLEAN NOT NULL, 
	disabled BOOLEAN NOT NULL, 
	extra_specs JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
CREATE TABLE images (
	id VARCHAR(36) NOT NULL, 
	name VARCHAR(255), 
	status VARCHAR(32) NOT NULL, 
	visibility VARCHAR(16) NOT NULL, 
	owner VARCHAR(64), 
	checksum VARCHAR(32), 
	os_hash_algo VARCHAR(64), 
	os_hash_value VARCHAR(128), 
	size INTEGER, 
	virtual_size INTEGER, 
	disk_format VARCHAR(32), 
	container_format VARCHAR(32), 
	min_disk INTEGER NOT NULL, 
	min_ram INTEGER NOT NULL, 
	protected BOOLEAN NOT NULL, 
	os_hidden BOOLEAN NOT NULL, 
	properties JSON NOT NULL, 
	tags JSON NOT NULL, 
	content_address VARCHAR(160), 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE instance_mappings (
	instance_uuid VARCHAR(36) NOT NULL, 
	cell_path VARCHAR(255) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (instance_uuid)
);
INSERT INTO "instance_mappings" VALUES('11111111-1111-1111-1111-111111111111','cell1','p1','u1','old-vm','2026-11-01 00:00:00.000000');
CREATE TABLE key_pairs (
	id INTEGER NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	fingerprint VARCHAR(255) NOT NULL, 
	public_key TEXT NOT NULL, 
	type VARCHAR(16) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_key_pairs_user_name UNIQUE (user_id, name)
);
CREATE TABLE projects (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	domain_id VARCHAR(64) NOT NULL, 
	enabled BOOLEAN NOT NULL, 
	description TEXT NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_projects_domain_name UNIQUE (domain_id, name), 
	FOREIGN KEY(domain_id) REFERENCES domains (id)
);
CREATE TABLE queued_deletes (
	instance_uuid VARCHAR(36) NOT NULL, 
	requested_at DATETIME NOT NULL, 
	PRIMARY KEY (instance_uuid)
);
CREATE TABLE quotas (
	project_id VARCHAR(64) NOT NULL, 
	resource VARCHAR(64) NOT NULL, 
	hard_limit INTEGER NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (project_id, resource)
);
CREATE TABLE role_assignments (
	user_id VARCHAR(64) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	role_id VARCHAR(64) NOT NULL, 
	PRIMARY KEY (user_id, project_id, role_id), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE, 
	FOREIGN KEY(project_id) REFERENCES projects (id) ON DELETE CASCADE, 
	FOREIGN KEY(role_id) REFERENCES roles (id) ON DELETE CASCADE
);
CREATE TABLE roles (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
CREATE TABLE schema_version (
	id INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "schema_version" VALUES(1,4);
CREATE TABLE server_group_members (
	instance_uuid VARCHAR(36) NOT NULL, 
	group_id VARCHAR(36) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (instance_uuid), 
	FOREIGN KEY(group_id) REFERENCES server_groups (id) ON DELETE CASCADE
);
CREATE TABLE server_groups (
	id VARCHAR(36) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	policy VARCHAR(32) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE tokens (
	id_hash VARCHAR(64) NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	project_id VARCHAR(64), 
	roles JSON NOT NULL, 
	methods JSON NOT NULL, 
	audit_id VARCHAR(32) NOT NULL, 
	issued_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	PRIMARY KEY (id_hash)
);
CREATE TABLE users (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	domain_id VARCHAR(64) NOT NULL, 
	password_hash VARCHAR(512) NOT NULL, 
	enabled BOOLEAN NOT NULL, 
	default_project_id VARCHAR(64), 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_users_domain_name UNIQUE (domain_id, name), 
	FOREIGN KEY(domain_id) REFERENCES domains (id)
);
CREATE INDEX ix_tokens_expires_at ON tokens (expires_at);
CREATE INDEX ix_tokens_user ON tokens (user_id);
CREATE INDEX ix_flavors_ram ON flavors (ram);
CREATE INDEX ix_flavors_is_public ON flavors (is_public);
CREATE INDEX ix_flavors_disk ON flavors (disk);
CREATE INDEX ix_instance_mappings_project_created ON instance_mappings (project_id, created_at);
CREATE INDEX ix_instance_mappings_cell ON instance_mappings (cell_path);
CREATE INDEX ix_images_visibility_owner ON images (visibility, owner);
CREATE INDEX ix_images_name ON images (name);
CREATE INDEX ix_images_created_at ON images (created_at);
CREATE INDEX ix_images_status ON images (status);
CREATE INDEX ix_role_assignments_project ON role_assignments (project_id);
CREATE INDEX ix_ec2_credentials_user_id ON ec2_credentials (user_id);
CREATE INDEX ix_server_groups_project_created ON server_groups (project_id, created_at);
CREATE INDEX ix_server_group_members_group ON server_group_members (group_id, created_at);
COMMIT;
