"""Every authorization rule of the API, in one place, named as each OpenStack service names it.

The defaults follow the services' current ("secure RBAC") defaults: reader roles list and
show, member roles change what their project owns, admin does the rest. One difference,
on purpose: `context_is_admin` (cloud administrator) needs the admin role *from the admin
project or a system-scoped token*; the admin role on any other project does not make a
cloud administrator (Keystone's admin_project setting; Nova's old "admin anywhere" bug).

An operator overrides any rule in `<state>/policy.yaml` (`rule: "expression"`); `cellctl
policy list` prints the effective set. Handlers ask by name (api/policy/enforce.py); no
handler tests a role itself.
"""
from __future__ import annotations

BASE = {
    # the cloud administrator: admin on the admin project, or admin with system scope
    "context_is_admin": "role:admin and (is_admin_project:True or system_scope:all)",
    "admin_api": "rule:context_is_admin",
    "service_api": "role:service",
    "project_reader_api": "role:reader and project_id:%(project_id)s",
    "project_member_api": "role:member and project_id:%(project_id)s",
    "project_reader_or_admin": "rule:project_reader_api or rule:context_is_admin",
    "project_member_or_admin": "rule:project_member_api or rule:context_is_admin",
    # Keystone's names for the same ideas
    "admin_required": "rule:context_is_admin",
    # Keystone's SYSTEM_READER: a reader role on a system-scoped token (system roles are the admin
    # project's here) reads every identity resource; it changes none
    "system_reader_api": "role:reader and system_scope:all",
    "service_or_admin": "rule:admin_required or rule:service_api",
    "owner": "user_id:%(user_id)s",
    "token_subject": "user_id:%(target.token.user_id)s",
    "service_admin_or_token_subject": "rule:service_or_admin or rule:token_subject",
}

# Keystone's defaults for a domain-scoped token (domain_id is its domain): a domain's admin manages
# the domain's projects, users and the grants among them; its readers read them. Keystone's role-domain
# clause (a domain role of the token's domain, or a global one) is left out: a domain-specific role is
# granted only within its own domain whoever asks (api/identity/role_scope.py), so it always holds.
_DOMAIN_GRANT = ("(domain_id:%(target.user.domain_id)s and domain_id:%(target.project.domain_id)s) or "
                 "(domain_id:%(target.user.domain_id)s and domain_id:%(target.domain.id)s) or "
                 "(domain_id:%(target.group.domain_id)s and domain_id:%(target.project.domain_id)s) or "
                 "(domain_id:%(target.group.domain_id)s and domain_id:%(target.domain.id)s)")
_PROJECT_DOMAIN_ADMIN = "rule:admin_required or (role:admin and domain_id:%(target.project.domain_id)s)"
_USER_DOMAIN_ADMIN = "rule:admin_required or (role:admin and token.domain.id:%(target.user.domain_id)s)"
_PROJECT_TAG_READER = ("rule:admin_required or (role:reader and domain_id:%(target.project.domain_id)s) or "
                       "(role:reader and project_id:%(target.project.id)s)")
_PROJECT_TAG_ADMIN = ("rule:admin_required or (role:admin and domain_id:%(target.project.domain_id)s) or "
                      "(role:admin and project_id:%(target.project.id)s)")
_DOMAIN_READER = "rule:admin_required or (role:reader and domain_id:%(target.domain_id)s)"

KEYSTONE = {
    "identity:get_project": ("rule:admin_required or (role:reader and domain_id:%(target.project.domain_id)s) "
                             "or project_id:%(target.project.id)s"),
    "identity:list_projects": _DOMAIN_READER,
    "identity:create_project": _PROJECT_DOMAIN_ADMIN,
    "identity:update_project": _PROJECT_DOMAIN_ADMIN,
    "identity:delete_project": _PROJECT_DOMAIN_ADMIN,
    "identity:list_user_projects": "rule:admin_required or user_id:%(target.user.id)s",
    "identity:get_user": ("rule:admin_required or (role:reader and token.domain.id:%(target.user.domain_id)s) "
                          "or user_id:%(target.user.id)s"),
    "identity:list_users": _DOMAIN_READER,
    "identity:create_user": _USER_DOMAIN_ADMIN,
    "identity:update_user": _USER_DOMAIN_ADMIN,
    "identity:delete_user": _USER_DOMAIN_ADMIN,
    # the user, or a cloud admin (who may set it outright with update_user), always with the original password
    # (Keystone serves this route with no rule at all: the original password is the proof)
    "identity:change_password": "user_id:%(target.user.id)s or rule:admin_required",
    "identity:get_role": "rule:admin_required",
    "identity:list_roles": "rule:admin_required",
    "identity:create_role": "rule:admin_required",
    "identity:update_role": "rule:admin_required",
    "identity:delete_role": "rule:admin_required",
    "identity:get_domain_role": "rule:admin_required",
    "identity:list_domain_roles": "rule:admin_required",
    "identity:create_domain_role": "rule:admin_required",
    "identity:update_domain_role": "rule:admin_required",
    "identity:delete_domain_role": "rule:admin_required",
    "identity:create_implied_role": "rule:admin_required",
    "identity:get_implied_role": "rule:admin_required",
    "identity:check_implied_role": "rule:admin_required",
    "identity:list_implied_roles": "rule:admin_required",
    "identity:list_role_inference_rules": "rule:admin_required",
    "identity:delete_implied_role": "rule:admin_required",
    "identity:get_domain": ("rule:admin_required or project_domain_id:%(target.domain.id)s "
                            "or token.domain.id:%(target.domain.id)s"),
    "identity:list_domains": "rule:admin_required",
    "identity:create_domain": "rule:admin_required",
    "identity:update_domain": "rule:admin_required",
    "identity:delete_domain": "rule:admin_required",
    "identity:get_group": "rule:admin_required",
    "identity:list_groups": "rule:admin_required",
    "identity:list_groups_for_user": "rule:admin_required or user_id:%(target.user.id)s",
    "identity:create_group": "rule:admin_required",
    "identity:update_group": "rule:admin_required",
    "identity:delete_group": "rule:admin_required",
    "identity:list_users_in_group": "rule:admin_required",
    "identity:add_user_to_group": "rule:admin_required",
    "identity:check_user_in_group": "rule:admin_required",
    "identity:remove_user_from_group": "rule:admin_required",
    "identity:check_grant": f"rule:admin_required or (role:reader and ({_DOMAIN_GRANT}))",
    "identity:list_grants": f"rule:admin_required or (role:reader and ({_DOMAIN_GRANT}))",
    "identity:create_grant": f"rule:admin_required or (role:admin and ({_DOMAIN_GRANT}))",
    "identity:revoke_grant": f"rule:admin_required or (role:admin and ({_DOMAIN_GRANT}))",
    "identity:list_role_assignments": "rule:admin_required",
    "identity:create_system_grant_for_user": "rule:admin_required",
    "identity:check_system_grant_for_user": "rule:admin_required",
    "identity:revoke_system_grant_for_user": "rule:admin_required",
    "identity:list_system_grants_for_user": "rule:admin_required",
    "identity:create_system_grant_for_group": "rule:admin_required",
    "identity:check_system_grant_for_group": "rule:admin_required",
    "identity:revoke_system_grant_for_group": "rule:admin_required",
    "identity:list_system_grants_for_group": "rule:admin_required",
    # Keystone's project tag defaults: readers of the project read them; its admins (the project's, the
    # domain's or the cloud's) change them
    "identity:list_project_tags": _PROJECT_TAG_READER,
    "identity:get_project_tag": _PROJECT_TAG_READER,
    "identity:update_project_tags": _PROJECT_TAG_ADMIN,
    "identity:create_project_tag": _PROJECT_TAG_ADMIN,
    "identity:delete_project_tags": _PROJECT_TAG_ADMIN,
    "identity:delete_project_tag": _PROJECT_TAG_ADMIN,
    "identity:get_service": "rule:admin_required",
    "identity:list_services": "rule:admin_required",
    "identity:get_endpoint": "rule:admin_required",
    "identity:list_endpoints": "rule:admin_required",
    "identity:get_region": "@",
    "identity:list_regions": "@",
    "identity:validate_token": "rule:service_admin_or_token_subject",
    "identity:revoke_token": "rule:service_admin_or_token_subject",
    "identity:get_auth_catalog": "@",
    "identity:get_auth_projects": "@",
    "identity:get_auth_domains": "@",
    "identity:get_auth_system": "@",
    "identity:get_application_credential": "rule:admin_required or rule:owner",
    "identity:list_application_credentials": "rule:admin_required or rule:owner",
    "identity:create_application_credential": "rule:owner",
    "identity:delete_application_credential": "rule:admin_required or rule:owner",
    "identity:ec2_get_credential": "rule:admin_required or user_id:%(target.credential.user_id)s",
    "identity:ec2_list_credentials": "rule:admin_required or rule:owner",
    "identity:ec2_create_credential": "rule:admin_required or rule:owner",
    "identity:ec2_delete_credential": "rule:admin_required or user_id:%(target.credential.user_id)s",
}

# Keystone's defaults let a system reader do every identity read (SYSTEM_READER in keystone/common/policies:
# "admin or system reader or ..."); Tempest's identity admin tests read as one (`[identity] use_system_token`)
SYSTEM_READS = frozenset({
    "get_project", "list_projects", "list_user_projects", "get_user", "list_users",
    "get_role", "list_roles", "get_domain_role", "list_domain_roles",
    "get_implied_role", "check_implied_role", "list_implied_roles", "list_role_inference_rules",
    "get_domain", "list_domains", "get_group", "list_groups", "list_groups_for_user", "list_users_in_group",
    "check_user_in_group", "check_grant", "list_grants", "list_role_assignments",
    "check_system_grant_for_user", "list_system_grants_for_user",
    "check_system_grant_for_group", "list_system_grants_for_group",
    "list_project_tags", "get_project_tag", "get_service", "list_services", "get_endpoint", "list_endpoints",
    "get_application_credential", "list_application_credentials", "ec2_get_credential", "ec2_list_credentials",
})
for _read in SYSTEM_READS:
    KEYSTONE[f"identity:{_read}"] = f"rule:system_reader_api or {KEYSTONE[f'identity:{_read}']}"


GLANCE = {
    "get_images": "rule:context_is_admin or role:reader",
    "get_image": ("rule:context_is_admin or (role:reader and (project_id:%(owner)s or project_id:%(member_id)s"
                  " or 'community':%(visibility)s or 'public':%(visibility)s))"),
    "add_image": "rule:context_is_admin or (role:member and project_id:%(owner)s)",
    "modify_image": "rule:context_is_admin or (role:member and project_id:%(owner)s)",
    "delete_image": "rule:context_is_admin or (role:member and project_id:%(owner)s)",
    "upload_image": "rule:context_is_admin or (role:member and project_id:%(owner)s)",
    "download_image": ("rule:context_is_admin or (role:reader and (project_id:%(owner)s or "
                       "project_id:%(member_id)s or 'community':%(visibility)s or 'public':%(visibility)s))"),
    "publicize_image": "rule:context_is_admin",
    "communitize_image": "rule:context_is_admin or (role:member and project_id:%(owner)s)",
    "deactivate": "rule:context_is_admin or (role:member and project_id:%(owner)s)",
    "reactivate": "rule:context_is_admin or (role:member and project_id:%(owner)s)",
    "add_member": "rule:context_is_admin or (role:member and project_id:%(owner)s)",
    "stores_info_detail": "rule:context_is_admin",
    "delete_member": "rule:context_is_admin or (role:member and project_id:%(owner)s)",
    "get_member": "rule:context_is_admin or (role:reader and (project_id:%(owner)s or project_id:%(member_id)s))",
    "get_members": "rule:context_is_admin or (role:reader and (project_id:%(owner)s or project_id:%(member_id)s))",
    "modify_member": "rule:context_is_admin or (role:member and project_id:%(member_id)s)",
}


NOVA = {
    "os_compute_api:servers:show": "rule:project_reader_or_admin",
    "os_compute_api:servers:index:get_all_tenants": "rule:admin_api",
    "os_compute_api:servers:detail:get_all_tenants": "rule:admin_api",
    "os_compute_api:servers:allow_all_filters": "rule:admin_api",
    "os_compute_api:os-extended-server-attributes": "rule:admin_api",
    "os_compute_api:servers:show:host_status": "rule:admin_api",
    "os_compute_api:os-quota-sets:show": "rule:project_reader_or_admin",
    "os_compute_api:os-quota-sets:detail": "rule:project_reader_or_admin",
    "os_compute_api:os-quota-sets:defaults": "@",
    "os_compute_api:os-quota-sets:update": "rule:admin_api",
    "os_compute_api:os-quota-sets:delete": "rule:admin_api",
    "os_compute_api:limits:other_project": "rule:admin_api",
    "os_compute_api:os-quota-class-sets:show": "rule:admin_api",
    "os_compute_api:os-quota-class-sets:update": "rule:admin_api",
    "os_compute_api:os-flavor-manage:create": "rule:admin_api",
    "os_compute_api:os-flavor-manage:update": "rule:admin_api",
    "os_compute_api:os-flavor-manage:delete": "rule:admin_api",
    "os_compute_api:os-flavor-extra-specs:create": "rule:admin_api",
    "os_compute_api:os-flavor-extra-specs:update": "rule:admin_api",
    "os_compute_api:os-flavor-extra-specs:delete": "rule:admin_api",
    "os_compute_api:os-flavor-access": "rule:admin_api",
    "os_compute_api:os-flavor-access:add_tenant_access": "rule:admin_api",
    "os_compute_api:os-flavor-access:remove_tenant_access": "rule:admin_api",
    "os_compute_api:os-migrate-server:migrate": "rule:admin_api",
    "os_compute_api:os-evacuate": "rule:admin_api",
    "os_compute_api:os-admin-actions:reset_state": "rule:admin_api",
    "os_compute_api:os-server-diagnostics": "rule:admin_api",
    "os_compute_api:os-admin-actions:inject_network_info": "rule:admin_api",
    "os_compute_api:os-admin-actions:reset_network": "rule:admin_api",
    "os_compute_api:os-remote-consoles": "rule:project_member_or_admin",
    "os_compute_api:os-availability-zone:detail": "rule:admin_api",
    "os_compute_api:os-hypervisors:list": "rule:admin_api",
    "os_compute_api:os-migrations:index": "rule:admin_api",
    **{f"os_compute_api:os-hosts:{name}": "rule:admin_api" for name in ("list", "show", "update", "start",
                                                                       "shutdown", "reboot")},
    "os_compute_api:os-services:list": "rule:admin_api",
    "os_compute_api:os-services:update": "rule:admin_api",
    "os_compute_api:os-services:delete": "rule:admin_api",
    "os_compute_api:os-aggregates:index": "rule:admin_api",
    "os_compute_api:os-aggregates:create": "rule:admin_api",
    "os_compute_api:os-aggregates:show": "rule:admin_api",
    "os_compute_api:os-aggregates:update": "rule:admin_api",
    "os_compute_api:os-aggregates:delete": "rule:admin_api",
    "os_compute_api:os-aggregates:add_host": "rule:admin_api",
    "os_compute_api:os-aggregates:remove_host": "rule:admin_api",
    "os_compute_api:os-aggregates:set_metadata": "rule:admin_api",
    "os_compute_api:os-simple-tenant-usage:list": "rule:admin_api",
    "os_compute_api:os-simple-tenant-usage:show": "rule:project_reader_or_admin",
    "os_compute_api:servers:migrations:index": "rule:admin_api",
    "os_compute_api:os-hypervisors:list-detail": "rule:admin_api",
    "os_compute_api:os-hypervisors:show": "rule:admin_api",
    "os_compute_api:os-hypervisors:statistics": "rule:admin_api",
    "os_compute_api:os-hypervisors:search": "rule:admin_api",
    "os_compute_api:os-hypervisors:uptime": "rule:admin_api",
    "os_compute_api:os-hypervisors:servers": "rule:admin_api",
    "os_compute_api:os-instance-actions:events": "rule:admin_api",
    "os_compute_api:os-keypairs:index": "rule:admin_api or user_id:%(user_id)s",
    "os_compute_api:os-keypairs:show": "rule:admin_api or user_id:%(user_id)s",
    "os_compute_api:os-keypairs:create": "rule:admin_api or user_id:%(user_id)s",
    "os_compute_api:os-keypairs:delete": "rule:admin_api or user_id:%(user_id)s",
    "os_compute_api:os-server-groups:show": "rule:project_reader_or_admin",
    "os_compute_api:os-server-groups:index:all_projects": "rule:admin_api",
    # what a route is enforced under (api/policy/routes.py): Nova's names, its reader / member / admin defaults
    **{f"os_compute_api:{name}": "rule:project_reader_or_admin" for name in (
        "servers:index", "servers:detail", "ips:index", "ips:show", "os-volumes-attachments:index",
        "os-volumes-attachments:show", "os-flavor-extra-specs:index", "os-flavor-extra-specs:show",
        "os-instance-actions:list", "os-instance-actions:show", "server-metadata:index", "server-metadata:show",
        "os-server-groups:index", "os-server-tags:index", "os-server-tags:show", "os-floating-ips:list",
        "os-floating-ips:show", "os-attach-interfaces:list", "os-attach-interfaces:show",
        "os-security-groups:get", "os-security-groups:show", "os-security-groups:list", "os-networks:list",
        "os-networks:view", "os-tenant-networks:list", "os-tenant-networks:show",
        *(f"os-volumes:{p}{verb}" for p in ("", "snapshots:") for verb in ("list", "detail", "show")))},
    **{f"os_compute_api:{name}": "rule:project_member_or_admin" for name in (
        "servers:create", "servers:update", "servers:delete", "servers:start", "servers:stop", "servers:reboot",
        "os-attach-interfaces:create", "os-attach-interfaces:delete",
        "servers:rebuild", "servers:create_image", "os-create-backup", "servers:resize", "servers:confirm_resize",
        "servers:revert_resize", "os-pause-server:pause", "os-pause-server:unpause", "os-suspend-server:suspend",
        "os-suspend-server:resume", "os-lock-server:lock", "os-lock-server:unlock", "os-console-output",
        "os-volumes-attachments:create", "os-volumes-attachments:delete", "server-metadata:create",
        "server-metadata:update_all", "server-metadata:update", "server-metadata:delete",
        "os-server-groups:delete", "os-server-tags:update_all", "os-server-tags:delete_all",
        "os-server-tags:update", "os-server-tags:delete", "os-security-groups:add", "os-security-groups:remove",
        "os-deferred-delete:force", "os-deferred-delete:restore", "os-rescue", "os-unrescue",
        "os-security-groups:create", "os-security-groups:update", "os-security-groups:delete",
        "os-security-groups:rule_create", "os-security-groups:rule_delete", "os-floating-ips:create",
        "os-floating-ips:delete", "os-floating-ips:add", "os-floating-ips:remove",
        *(f"os-volumes:{p}{verb}" for p in ("", "snapshots:") for verb in ("create", "delete")))},
    # os-shelve (Nova's defaults): a member shelves and unshelves; offloading and naming a host are an admin's
    "os_compute_api:os-server-password:show": "rule:project_reader_or_admin",  # Nova's defaults
    "os_compute_api:os-server-password:clear": "rule:project_member_or_admin",
    "os_compute_api:os-shelve:shelve": "rule:project_member_or_admin",
    "os_compute_api:os-shelve:unshelve": "rule:project_member_or_admin",
    "os_compute_api:os-shelve:shelve_offload": "rule:admin_api",
    "os_compute_api:os-shelve:unshelve_to_host": "rule:admin_api",
    "os_compute_api:os-server-groups:create": "rule:project_member_api",  # Nova: no admin override
    "os_compute_api:limits": "@",
    "os_compute_api:extensions": "@",  # Nova's default: anyone with a token
    "os_compute_api:os-availability-zone:list": "@",
    "os_compute_api:os-floating-ip-pools:list": "@",  # Nova's default: anyone with a token
    "os_compute_api:os-instance-usage-audit-log:list": "rule:admin_api",  # Nova's defaults
    "os_compute_api:os-instance-usage-audit-log:show": "rule:admin_api",
}

CINDER = {
    "volume_extension:availability_zone_list": "@",  # Cinder's default: anyone with a token
    "volume_extension:quotas:show": "rule:project_reader_or_admin",
    "volume_extension:quotas:update": "rule:admin_api",
    "volume_extension:quotas:delete": "rule:admin_api",
    "volume_extension:quota_classes": "rule:admin_api",
    "volume_extension:quota_classes:update": "rule:admin_api",
    "limits_extension:used_limits": "rule:project_reader_or_admin",
    "volume_extension:types_manage": "rule:admin_api",
    "volume_extension:types_extra_specs:create": "rule:admin_api",
    "volume_extension:types_extra_specs:update": "rule:admin_api",
    "volume_extension:types_extra_specs:delete": "rule:admin_api",
    "volume_extension:volume_type_access": "rule:admin_api",  # private types: seen by admins
    "volume_extension:volume_host_attribute": "rule:admin_api",  # os-vol-host-attr:host and the like in views
    "volume:get_all_tenants": "rule:admin_api",  # all_tenants on volume and snapshot lists
    **{name: "rule:admin_api" for name in (
        "volume_extension:services:index", "volume_extension:services:update",
        "scheduler_extension:scheduler_stats:get_pools",
        "volume_extension:capabilities", "volume_extension:hosts",
        "volume_extension:volume_type_access:addProjectAccess",
        "volume_extension:volume_type_access:removeProjectAccess",
        *(f"volume_extension:qos_specs_manage:{v}" for v in ("create", "get", "get_all", "update", "delete")),
        *(f"volume_extension:volume_type_encryption:{v}" for v in ("create", "get", "update", "delete")))},
    **{name: "rule:project_reader_or_admin" for name in (
        "volume:get_all", "volume:get", "volume:get_all_snapshots", "volume:get_snapshot",
        "volume:get_volume_metadata", "volume:get_snapshot_metadata", "volume:get_all_transfers",
        "volume:get_transfer", "volume_extension:volume_image_metadata:show", "message:get_all", "message:get",
        "volume_extension:types_extra_specs:index", "volume_extension:types_extra_specs:show")},
    **{name: "rule:project_member_or_admin" for name in (
        "volume:create", "volume:update", "volume:delete", "volume:extend", "volume:create_snapshot",
        "volume:update_snapshot", "volume:delete_snapshot", "volume_extension:volume_actions:upload_image",
        "volume:retype", "snapshot_extension:snapshot_actions:update_snapshot_status",
        "volume:create_transfer", "volume:delete_transfer", "volume:accept_transfer",
        "volume:create_volume_metadata", "volume:update_volume_metadata",
        "volume:delete_volume_metadata", "volume:update_snapshot_metadata", "volume:delete_snapshot_metadata",
        "volume_extension:volume_image_metadata:set", "volume_extension:volume_image_metadata:remove",
        "message:delete",
        *(f"volume_extension:volume_actions:{a}" for a in (
            "reserve", "unreserve", "attach", "detach", "begin_detaching", "roll_detaching",
            "update_readonly_flag")))},
    **{f"volume_extension:{name}": "rule:admin_api" for name in (
        "volume_admin_actions:reset_status", "volume_admin_actions:force_delete",
        "volume_admin_actions:force_detach", "snapshot_admin_actions:reset_status",
        "snapshot_admin_actions:force_delete")},
    # group types (api/volume/group_types.py): admins make and change them and see their specs
    **{f"group:group_types:{v}": "rule:admin_api" for v in ("create", "update", "delete")},
    **{f"group:group_types_specs:{v}": "rule:admin_api" for v in ("get", "get_all", "create", "update", "delete")},
    "group:access_group_types_specs": "rule:admin_api",
    # volume groups (api/volume/groups.py), Cinder's defaults
    **{f"group:{v}": "rule:project_reader_or_admin" for v in ("get", "get_all", "get_all_group_snapshots",
                                                                "get_group_snapshot")},
    **{f"group:{v}": "rule:project_member_or_admin" for v in ("create", "update", "delete", "create_group_snapshot",
                                                                "delete_group_snapshot")},
    **{f"group:{v}": "rule:admin_api" for v in ("reset_status", "reset_group_snapshot_status")},
    "volume_extension:type_get_all": "@",
    "volume_extension:type_get": "@",
    "volume_extension:type_create": "rule:admin_api",
    "volume_extension:type_update": "rule:admin_api",
    "volume_extension:type_delete": "rule:admin_api",
}

_NEUTRON_RESOURCES = ("network", "subnet", "port", "security_group", "security_group_rule", "router", "floatingip")

NEUTRON = {
    "admin_only": "rule:context_is_admin",
    "get_quota": "rule:admin_only or (role:reader and project_id:%(project_id)s)",
    "update_quota": "rule:admin_only",
    "delete_quota": "rule:admin_only",
    # the collections (api/policy/routes.py NETWORK_RESOURCES): a project reads and changes its own;
    # what another project shares (a shared or external network) is decided by the controller's query
    **{f"get_{r}": "rule:admin_only or (role:reader and project_id:%(project_id)s)" for r in _NEUTRON_RESOURCES},
    **{f"{verb}_{r}": "rule:admin_only or (role:member and project_id:%(project_id)s)"
       for verb in ("create", "update", "delete") for r in _NEUTRON_RESOURCES},
    "add_router_interface": "rule:admin_only or (role:member and project_id:%(project_id)s)",
    "remove_router_interface": "rule:admin_only or (role:member and project_id:%(project_id)s)",
}

# Cellcloud's own: the operator's dashboard (api/dashboard/), every project's servers and every host
DASHBOARD = {
    "dashboard:stream": "rule:admin_api",
}


def defaults() -> dict[str, str]:
    """Every rule with its default, base rules first."""
    return {**BASE, **KEYSTONE, **GLANCE, **NOVA, **CINDER, **NEUTRON, **DASHBOARD}
