"""The policy rule every API route is enforced under, by the name its OpenStack service gives it.

One table for the whole API: (method, path template under the service's prefix) -> rule. The
compute, block-storage and network apps enforce these in `route_policy` (before the handler, with
the caller's project as the target, as Nova and Cinder enforce a collection's rule); identity and
image handlers enforce theirs themselves, after finding the target (a Keystone user, a Glance
image's owner and visibility), and the table names the rule they ask. A handler may ask more
(an admin-only filter, another project's quota): those rules are in api/policy/rules.py too.

Markers instead of a rule: PUBLIC (no token: version documents, token issue, EC2's own signed
requests) and ANY_TOKEN (any valid token: what the service itself leaves unprotected, as Nova's
flavor list). `tests/unit/test_policy_walk.py` walks every route the app serves against this table.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

PUBLIC: Final = "<public>"
ANY_TOKEN: Final = "<any token>"

_N = "os_compute_api:"
_S = "/v2.1/servers/{server_id}"
_F = "/v2.1/flavors/{flavor_id}"

COMPUTE: dict[tuple[str, str], str] = {
    **{("GET", p): PUBLIC for p in ("", "/", "/v2", "/v2/", "/v2.1", "/v2.1/")},
    ("GET", "/v2.1/extensions"): _N + "extensions",
    ("GET", "/v2.1/extensions/{alias}"): _N + "extensions",
    ("GET", "/v2.1/flavors"): ANY_TOKEN,
    ("GET", "/v2.1/flavors/detail"): ANY_TOKEN,
    ("GET", _F): ANY_TOKEN,
    ("POST", "/v2.1/flavors"): _N + "os-flavor-manage:create",
    ("PUT", _F): _N + "os-flavor-manage:update",
    ("DELETE", _F): _N + "os-flavor-manage:delete",
    ("GET", _F + "/os-extra_specs"): _N + "os-flavor-extra-specs:index",
    ("POST", _F + "/os-extra_specs"): _N + "os-flavor-extra-specs:create",
    ("GET", _F + "/os-extra_specs/{key}"): _N + "os-flavor-extra-specs:show",
    ("PUT", _F + "/os-extra_specs/{key}"): _N + "os-flavor-extra-specs:update",
    ("DELETE", _F + "/os-extra_specs/{key}"): _N + "os-flavor-extra-specs:delete",
    ("GET", _F + "/os-flavor-access"): _N + "os-flavor-access",
    ("POST", _F + "/action"): _N + "flavors:action",  # the action's own rule: FLAVOR_ACTIONS
    ("GET", "/v2.1/servers"): _N + "servers:index",
    ("POST", "/v2.1/servers"): _N + "servers:create",
    ("GET", "/v2.1/servers/detail"): _N + "servers:detail",
    ("GET", _S): _N + "servers:show",
    ("PUT", _S): _N + "servers:update",
    ("DELETE", _S): _N + "servers:delete",
    ("GET", _S + "/ips"): _N + "ips:index",
    ("GET", _S + "/ips/{network}"): _N + "ips:show",
    ("POST", _S + "/action"): _N + "servers:action",  # the action's own rule: COMPUTE_ACTIONS
    ("GET", _S + "/os-volume_attachments"): _N + "os-volumes-attachments:index",
    ("POST", _S + "/os-volume_attachments"): _N + "os-volumes-attachments:create",
    ("GET", _S + "/os-volume_attachments/{volume_id}"): _N + "os-volumes-attachments:show",
    ("DELETE", _S + "/os-volume_attachments/{volume_id}"): _N + "os-volumes-attachments:delete",
    ("GET", "/v2.1/os-keypairs"): _N + "os-keypairs:index",
    ("POST", "/v2.1/os-keypairs"): _N + "os-keypairs:create",
    ("GET", "/v2.1/os-keypairs/{name}"): _N + "os-keypairs:show",
    ("DELETE", "/v2.1/os-keypairs/{name}"): _N + "os-keypairs:delete",
    ("GET", "/v2.1/limits"): _N + "limits",
    ("GET", "/v2.1/os-quota-sets/{project_id}"): _N + "os-quota-sets:show",
    ("PUT", "/v2.1/os-quota-sets/{project_id}"): _N + "os-quota-sets:update",
    ("DELETE", "/v2.1/os-quota-sets/{project_id}"): _N + "os-quota-sets:delete",
    ("GET", "/v2.1/os-quota-sets/{project_id}/detail"): _N + "os-quota-sets:detail",
    ("GET", "/v2.1/os-quota-sets/{project_id}/defaults"): _N + "os-quota-sets:defaults",
    ("GET", "/v2.1/os-quota-class-sets/{class_name}"): _N + "os-quota-class-sets:show",
    ("PUT", "/v2.1/os-quota-class-sets/{class_name}"): _N + "os-quota-class-sets:update",
    ("GET", _S + "/os-instance-actions"): _N + "os-instance-actions:list",
    ("GET", _S + "/os-instance-actions/{request_id}"): _N + "os-instance-actions:show",
    ("GET", _S + "/metadata"): _N + "server-metadata:index",
    ("POST", _S + "/metadata"): _N + "server-metadata:create",
    ("PUT", _S + "/metadata"): _N + "server-metadata:update_all",
    ("GET", _S + "/metadata/{key}"): _N + "server-metadata:show",
    ("PUT", _S + "/metadata/{key}"): _N + "server-metadata:update",
    ("DELETE", _S + "/metadata/{key}"): _N + "server-metadata:delete",
    ("GET", "/v2.1/os-server-groups"): _N + "os-server-groups:index",
    ("POST", "/v2.1/os-server-groups"): _N + "os-server-groups:create",
    ("GET", "/v2.1/os-server-groups/{group_id}"): _N + "os-server-groups:show",
    ("DELETE", "/v2.1/os-server-groups/{group_id}"): _N + "os-server-groups:delete",
    ("GET", "/v2.1/os-availability-zone"): _N + "os-availability-zone:list",
    ("GET", "/v2.1/os-availability-zone/detail"): _N + "os-availability-zone:detail",
    ("GET", _S + "/tags"): _N + "os-server-tags:index",
    ("GET", _S + "/os-server-password"): _N + "os-server-password:show",
    ("DELETE", _S + "/os-server-password"): _N + "os-server-password:clear",
    ("PUT", _S + "/tags"): _N + "os-server-tags:update_all",
    ("DELETE", _S + "/tags"): _N + "os-server-tags:delete_all",
    ("GET", _S + "/tags/{tag}"): _N + "os-server-tags:show",
    ("PUT", _S + "/tags/{tag}"): _N + "os-server-tags:update",
    ("DELETE", _S + "/tags/{tag}"): _N + "os-server-tags:delete",
    ("GET", "/v2.1/os-hypervisors"): _N + "os-hypervisors:list",
    ("GET", "/v2.1/os-hypervisors/detail"): _N + "os-hypervisors:list-detail",
    ("GET", "/v2.1/os-hypervisors/statistics"): _N + "os-hypervisors:statistics",
    ("GET", "/v2.1/os-hypervisors/{hypervisor_id}"): _N + "os-hypervisors:show",
    ("GET", "/v2.1/os-hypervisors/{pattern}/search"): _N + "os-hypervisors:search",
    ("GET", "/v2.1/os-hypervisors/{hypervisor_id}/uptime"): _N + "os-hypervisors:uptime",
    ("GET", "/v2.1/os-hypervisors/{pattern}/servers"): _N + "os-hypervisors:servers",
    ("GET", "/v2.1/os-hosts"): _N + "os-hosts:list",
    ("GET", "/v2.1/os-hosts/{host_name}"): _N + "os-hosts:show",
    ("PUT", "/v2.1/os-hosts/{host_name}"): _N + "os-hosts:update",
    ("GET", "/v2.1/os-hosts/{host_name}/startup"): _N + "os-hosts:start",
    ("GET", "/v2.1/os-hosts/{host_name}/shutdown"): _N + "os-hosts:shutdown",
    ("GET", "/v2.1/os-hosts/{host_name}/reboot"): _N + "os-hosts:reboot",
    ("GET", "/v2.1/os-migrations"): _N + "os-migrations:index",
    ("GET", _S + "/migrations"): _N + "servers:migrations:index",
    ("POST", _S + "/remote-consoles"): _N + "os-remote-consoles",
    ("GET", "/serial-console"): PUBLIC,  # the websocket carries its own console token (api/compute/remote_consoles.py)
    ("GET", "/vnc-console"): PUBLIC,  # the same for a VNC display
    # noVNC's page and scripts (api/compute/novnc.py): files of Debian's novnc package, no data
    **{("GET", p): PUBLIC for p in ("/vnc_lite.html", "/core/{name}", "/vendor/{name}")},
    ("GET", "/v2.1/os-services"): _N + "os-services:list",
    ("PUT", "/v2.1/os-services/{service_id}"): _N + "os-services:update",
    ("DELETE", "/v2.1/os-services/{service_id}"): _N + "os-services:delete",
    ("GET", "/v2.1/os-aggregates"): _N + "os-aggregates:index",
    ("POST", "/v2.1/os-aggregates"): _N + "os-aggregates:create",
    ("GET", "/v2.1/os-aggregates/{aggregate_id}"): _N + "os-aggregates:show",
    ("PUT", "/v2.1/os-aggregates/{aggregate_id}"): _N + "os-aggregates:update",
    ("DELETE", "/v2.1/os-aggregates/{aggregate_id}"): _N + "os-aggregates:delete",
    ("POST", "/v2.1/os-aggregates/{aggregate_id}/action"): _N + "os-aggregates:action",  # AGGREGATE_ACTIONS
    ("GET", "/v2.1/os-simple-tenant-usage"): _N + "os-simple-tenant-usage:list",
    ("GET", "/v2.1/os-simple-tenant-usage/{project_id}"): _N + "os-simple-tenant-usage:show",
    ("GET", _S + "/os-interface"): _N + "os-attach-interfaces:list",
    ("GET", _S + "/os-interface/{port_id}"): _N + "os-attach-interfaces:show",
    ("POST", _S + "/os-interface"): _N + "os-attach-interfaces:create",
    ("DELETE", _S + "/os-interface/{port_id}"): _N + "os-attach-interfaces:delete",
    ("GET", "/v2.1/os-volumes"): _N + "os-volumes:list",
    ("GET", "/v2.1/os-volumes/detail"): _N + "os-volumes:detail",
    ("POST", "/v2.1/os-volumes"): _N + "os-volumes:create",
    ("GET", "/v2.1/os-volumes/{volume_id}"): _N + "os-volumes:show",
    ("DELETE", "/v2.1/os-volumes/{volume_id}"): _N + "os-volumes:delete",
    ("GET", "/v2.1/os-snapshots"): _N + "os-volumes:snapshots:list",
    ("GET", "/v2.1/os-snapshots/detail"): _N + "os-volumes:snapshots:detail",
    ("POST", "/v2.1/os-snapshots"): _N + "os-volumes:snapshots:create",
    ("GET", "/v2.1/os-snapshots/{snapshot_id}"): _N + "os-volumes:snapshots:show",
    ("DELETE", "/v2.1/os-snapshots/{snapshot_id}"): _N + "os-volumes:snapshots:delete",
    # the images proxy: no Nova policy (the image service's rules decide, in the handlers)
    **{(m, "/v2.1/images" + p): ANY_TOKEN for m, p in (
        ("GET", ""), ("GET", "/detail"), ("GET", "/{image_id}"), ("DELETE", "/{image_id}"),
        ("GET", "/{image_id}/metadata"), ("POST", "/{image_id}/metadata"), ("PUT", "/{image_id}/metadata"),
        ("GET", "/{image_id}/metadata/{key}"), ("PUT", "/{image_id}/metadata/{key}"),
        ("DELETE", "/{image_id}/metadata/{key}"))},
    ("GET", _S + "/diagnostics"): _N + "os-server-diagnostics",
    ("GET", "/v2.1/os-networks"): _N + "os-networks:list",
    ("GET", "/v2.1/os-networks/{network_id}"): _N + "os-networks:view",
    ("GET", "/v2.1/os-tenant-networks"): _N + "os-tenant-networks:list",
    ("GET", "/v2.1/os-tenant-networks/{network_id}"): _N + "os-tenant-networks:show",
    ("GET", "/v2.1/os-security-groups"): _N + "os-security-groups:get",
    ("POST", "/v2.1/os-security-groups"): _N + "os-security-groups:create",
    ("GET", "/v2.1/os-security-groups/{group_id}"): _N + "os-security-groups:show",
    ("PUT", "/v2.1/os-security-groups/{group_id}"): _N + "os-security-groups:update",
    ("DELETE", "/v2.1/os-security-groups/{group_id}"): _N + "os-security-groups:delete",
    ("POST", "/v2.1/os-security-group-rules"): _N + "os-security-groups:rule_create",
    ("DELETE", "/v2.1/os-security-group-rules/{rule_id}"): _N + "os-security-groups:rule_delete",
    ("GET", _S + "/os-security-groups"): _N + "os-security-groups:list",
    ("GET", "/v2.1/os-floating-ips"): _N + "os-floating-ips:list",
    ("GET", "/v2.1/os-floating-ips/{id}"): _N + "os-floating-ips:show",
    ("POST", "/v2.1/os-floating-ips"): _N + "os-floating-ips:create",
    ("DELETE", "/v2.1/os-floating-ips/{id}"): _N + "os-floating-ips:delete",
    ("GET", "/v2.1/os-floating-ip-pools"): _N + "os-floating-ip-pools:list",
    ("GET", "/v2.1/os-instance_usage_audit_log"): _N + "os-instance-usage-audit-log:list",
    ("GET", "/v2.1/os-instance_usage_audit_log/{before}"): _N + "os-instance-usage-audit-log:show",
}

# POST /servers/{id}/action: the body's one key -> Nova's rule for that action
COMPUTE_ACTIONS: dict[str, str] = {
    "os-start": _N + "servers:start", "os-stop": _N + "servers:stop", "reboot": _N + "servers:reboot",
    "pause": _N + "os-pause-server:pause", "unpause": _N + "os-pause-server:unpause",
    "suspend": _N + "os-suspend-server:suspend", "resume": _N + "os-suspend-server:resume",
    "lock": _N + "os-lock-server:lock", "unlock": _N + "os-lock-server:unlock",
    "rebuild": _N + "servers:rebuild", "createImage": _N + "servers:create_image",
    "createBackup": _N + "os-create-backup",
    "os-getConsoleOutput": _N + "os-console-output", "resize": _N + "servers:resize",
    "confirmResize": _N + "servers:confirm_resize", "revertResize": _N + "servers:revert_resize",
    "migrate": _N + "os-migrate-server:migrate", "evacuate": _N + "os-evacuate",
    "os-resetState": _N + "os-admin-actions:reset_state",
    "injectNetworkInfo": _N + "os-admin-actions:inject_network_info",
    "resetNetwork": _N + "os-admin-actions:reset_network",
    "addSecurityGroup": _N + "os-security-groups:add", "removeSecurityGroup": _N + "os-security-groups:remove",
    "addFloatingIp": _N + "os-floating-ips:add", "removeFloatingIp": _N + "os-floating-ips:remove",
    "forceDelete": _N + "os-deferred-delete:force", "restore": _N + "os-deferred-delete:restore",
    "rescue": _N + "os-rescue", "unrescue": _N + "os-unrescue",
    **{name: _N + "os-remote-consoles" for name in ("os-getSerialConsole", "os-getVNCConsole", "os-getSPICEConsole",
                                                    "os-getRDPConsole")},
}

# POST /flavors/{id}/action: the body's one key -> Nova's rule for that action
FLAVOR_ACTIONS: dict[str, str] = {"addTenantAccess": _N + "os-flavor-access:add_tenant_access",
                                  "removeTenantAccess": _N + "os-flavor-access:remove_tenant_access"}

# POST /os-aggregates/{id}/action: the body's one key -> Nova's rule for that action
AGGREGATE_ACTIONS: dict[str, str] = {a: _N + f"os-aggregates:{a}" for a in ("add_host", "remove_host",
                                                                            "set_metadata")}

_V = "/v3/{project_id}"
VOLUME: dict[tuple[str, str], str] = {
    **{("GET", p): PUBLIC for p in ("", "/", "/v3", "/v3/")},
    ("GET", _V + "/os-availability-zone"): "volume_extension:availability_zone_list",
    ("GET", _V + "/volumes"): "volume:get_all",
    ("POST", _V + "/volumes"): "volume:create",
    ("GET", _V + "/volumes/detail"): "volume:get_all",
    ("GET", _V + "/volumes/{volume_id}"): "volume:get",
    ("PUT", _V + "/volumes/{volume_id}"): "volume:update",
    ("DELETE", _V + "/volumes/{volume_id}"): "volume:delete",
    ("POST", _V + "/volumes/{volume_id}/action"): "volume:action",  # the action's own rule: VOLUME_ACTIONS
    ("GET", _V + "/snapshots"): "volume:get_all_snapshots",
    ("POST", _V + "/snapshots"): "volume:create_snapshot",
    ("GET", _V + "/snapshots/detail"): "volume:get_all_snapshots",
    ("GET", _V + "/snapshots/{snapshot_id}"): "volume:get_snapshot",
    ("PUT", _V + "/snapshots/{snapshot_id}"): "volume:update_snapshot",
    ("DELETE", _V + "/snapshots/{snapshot_id}"): "volume:delete_snapshot",
    ("POST", _V + "/snapshots/{snapshot_id}/action"): "volume:snapshot_action",  # SNAPSHOT_ACTIONS
    # Cinder's metadata rules: a snapshot's POST is an update (it has no create_snapshot_metadata)
    **{(m, _V + f"/{kind}s/{{{kind}_id}}/metadata{item}"): f"volume:{verb}_{kind}_metadata"
       for kind in ("volume", "snapshot")
       for m, item, verb in (("GET", "", "get"), ("POST", "", "create" if kind == "volume" else "update"),
                             ("PUT", "", "update"), ("GET", "/{key}", "get"), ("PUT", "/{key}", "update"),
                             ("DELETE", "/{key}", "delete"))},
    ("GET", _V + "/types"): "volume_extension:type_get_all",
    ("POST", _V + "/types"): "volume_extension:type_create",
    ("GET", _V + "/types/{type_id}"): "volume_extension:type_get",
    ("PUT", _V + "/types/{type_id}"): "volume_extension:type_update",
    ("DELETE", _V + "/types/{type_id}"): "volume_extension:type_delete",
    ("GET", _V + "/types/{type_id}/extra_specs"): "volume_extension:types_extra_specs:index",
    ("POST", _V + "/types/{type_id}/extra_specs"): "volume_extension:types_extra_specs:create",
    ("GET", _V + "/types/{type_id}/extra_specs/{key}"): "volume_extension:types_extra_specs:show",
    ("PUT", _V + "/types/{type_id}/extra_specs/{key}"): "volume_extension:types_extra_specs:update",
    ("DELETE", _V + "/types/{type_id}/extra_specs/{key}"): "volume_extension:types_extra_specs:delete",
    ("GET", _V + "/os-services"): "volume_extension:services:index",
    ("PUT", _V + "/os-services/{action}"): "volume_extension:services:update",
    ("GET", _V + "/messages"): "message:get_all",
    ("GET", _V + "/messages/{message_id}"): "message:get",
    ("DELETE", _V + "/messages/{message_id}"): "message:delete",
    ("GET", _V + "/scheduler-stats/get_pools"): "scheduler_extension:scheduler_stats:get_pools",
    ("GET", _V + "/capabilities/{host}"): "volume_extension:capabilities",
    ("GET", _V + "/os-hosts"): "volume_extension:hosts",
    ("GET", _V + "/os-hosts/{host}"): "volume_extension:hosts",
    ("GET", _V + "/volumes/summary"): "volume:get_all",
    ("GET", _V + "/extensions"): ANY_TOKEN,
    **{(m, _V + f"/{path}{tail}"): rule for path in ("os-volume-transfer", "volume-transfers")
       for m, tail, rule in (("POST", "", "volume:create_transfer"), ("GET", "", "volume:get_all_transfers"),
                             ("GET", "/detail", "volume:get_all_transfers"),
                             ("GET", "/{transfer_id}", "volume:get_transfer"),
                             ("DELETE", "/{transfer_id}", "volume:delete_transfer"),
                             ("POST", "/{transfer_id}/accept", "volume:accept_transfer"))},
    **{(m, _V + f"/qos-specs{tail}"): f"volume_extension:qos_specs_manage:{verb}"
       for m, tail, verb in (("POST", "", "create"), ("GET", "", "get_all"), ("GET", "/{qos_id}", "get"),
                             ("PUT", "/{qos_id}", "update"), ("PUT", "/{qos_id}/delete_keys", "delete"),
                             ("DELETE", "/{qos_id}", "delete"), ("GET", "/{qos_id}/associations", "get_all"),
                             ("GET", "/{qos_id}/associate", "update"), ("GET", "/{qos_id}/disassociate", "update"),
                             ("GET", "/{qos_id}/disassociate_all", "update"))},
    **{(m, _V + f"/types/{{type_id}}/encryption{tail}"): f"volume_extension:volume_type_encryption:{verb}"
       for m, tail, verb in (("GET", "", "get"), ("POST", "", "create"), ("GET", "/{key}", "get"),
                             ("PUT", "/{encryption_id}", "update"), ("DELETE", "/{encryption_id}", "delete"))},
    ("GET", _V + "/types/{type_id}/os-volume-type-access"): "volume_extension:volume_type_access",
    ("POST", _V + "/types/{type_id}/action"): "volume:type_action",  # TYPE_ACTIONS
    **{(m, _V + f"/group_types{tail}"): rule
       for m, tail, rule in (("GET", "", ANY_TOKEN), ("POST", "", "group:group_types:create"),  # Cinder: no rule
                             ("GET", "/{group_type_id}", ANY_TOKEN),
                             ("PUT", "/{group_type_id}", "group:group_types:update"),
                             ("DELETE", "/{group_type_id}", "group:group_types:delete"),
                             ("GET", "/{group_type_id}/group_specs", "group:group_types_specs:get_all"),
                             ("POST", "/{group_type_id}/group_specs", "group:group_types_specs:create"),
                             ("GET", "/{group_type_id}/group_specs/{key}", "group:group_types_specs:get"),
                             ("PUT", "/{group_type_id}/group_specs/{key}", "group:group_types_specs:update"),
                             ("DELETE", "/{group_type_id}/group_specs/{key}", "group:group_types_specs:delete"))},
    ("GET", _V + "/groups"): "group:get_all",
    ("GET", _V + "/groups/detail"): "group:get_all",
    ("POST", _V + "/groups"): "group:create",
    ("GET", _V + "/groups/{group_id}"): "group:get",
    ("PUT", _V + "/groups/{group_id}"): "group:update",
    ("POST", _V + "/groups/{group_id}/action"): "volume:group_action",  # the action's own rule: GROUP_ACTIONS
    ("POST", _V + "/groups/action"): "group:create",  # create-from-src: Cinder checks group:create
    ("GET", _V + "/group_snapshots"): "group:get_all_group_snapshots",
    ("GET", _V + "/group_snapshots/detail"): "group:get_all_group_snapshots",
    ("POST", _V + "/group_snapshots"): "group:create_group_snapshot",
    ("GET", _V + "/group_snapshots/{group_snapshot_id}"): "group:get_group_snapshot",
    ("DELETE", _V + "/group_snapshots/{group_snapshot_id}"): "group:delete_group_snapshot",
    ("POST", _V + "/group_snapshots/{group_snapshot_id}/action"): "group:reset_group_snapshot_status",
    ("GET", _V + "/limits"): "limits_extension:used_limits",
    ("GET", _V + "/os-quota-sets/{target}"): "volume_extension:quotas:show",
    ("PUT", _V + "/os-quota-sets/{target}"): "volume_extension:quotas:update",
    ("DELETE", _V + "/os-quota-sets/{target}"): "volume_extension:quotas:delete",
    ("GET", _V + "/os-quota-sets/{target}/defaults"): "volume_extension:quotas:show",
    ("GET", _V + "/os-quota-class-sets/{class_name}"): "volume_extension:quota_classes",
    ("PUT", _V + "/os-quota-class-sets/{class_name}"): "volume_extension:quota_classes:update",
}

VOLUME_ACTIONS: dict[str, str] = {
    "os-extend": "volume:extend",
    "os-set_bootable": "volume:update",  # Cinder updates the volume's bootable flag under volume:update
    "os-volume_upload_image": "volume_extension:volume_actions:upload_image",
    "os-reset_status": "volume_extension:volume_admin_actions:reset_status",
    "os-force_delete": "volume_extension:volume_admin_actions:force_delete",
    "os-force_detach": "volume_extension:volume_admin_actions:force_detach",
    "os-reserve": "volume_extension:volume_actions:reserve",
    "os-unreserve": "volume_extension:volume_actions:unreserve",
    "os-attach": "volume_extension:volume_actions:attach",
    "os-detach": "volume_extension:volume_actions:detach",
    "os-begin_detaching": "volume_extension:volume_actions:begin_detaching",
    "os-roll_detaching": "volume_extension:volume_actions:roll_detaching",
    "os-update_readonly_flag": "volume_extension:volume_actions:update_readonly_flag",
    "os-retype": "volume:retype",
    "os-set_image_metadata": "volume_extension:volume_image_metadata:set",
    "os-unset_image_metadata": "volume_extension:volume_image_metadata:remove",
    "os-show_image_metadata": "volume_extension:volume_image_metadata:show",
}
SNAPSHOT_ACTIONS: dict[str, str] = {
    "os-reset_status": "volume_extension:snapshot_admin_actions:reset_status",
    "os-force_delete": "volume_extension:snapshot_admin_actions:force_delete",
    "os-update_snapshot_status": "snapshot_extension:snapshot_actions:update_snapshot_status",
}
GROUP_ACTIONS: dict[str, str] = {"delete": "group:delete", "reset_status": "group:reset_status"}
TYPE_ACTIONS: dict[str, str] = {
    "addProjectAccess": "volume_extension:volume_type_access:addProjectAccess",
    "removeProjectAccess": "volume_extension:volume_type_access:removeProjectAccess",
}

# Neutron: {verb}_{resource} for each collection (get_network, create_port, ...); `{collection}` routes
# resolve through NETWORK_RESOURCES
NETWORK: dict[tuple[str, str], str] = {
    **{("GET", p): PUBLIC for p in ("", "/", "/v2.0", "/v2.0/")},
    ("GET", "/v2.0/extensions"): ANY_TOKEN,
    ("GET", "/v2.0/extensions/{alias}"): ANY_TOKEN,
    ("GET", "/v2.0/quotas"): "get_quota",
    ("GET", "/v2.0/quotas/{project_id}"): "get_quota",
    ("GET", "/v2.0/quotas/{project_id}/default"): "get_quota",
    ("GET", "/v2.0/quotas/{project_id}/details"): "get_quota",
    ("PUT", "/v2.0/quotas/{project_id}"): "update_quota",
    ("DELETE", "/v2.0/quotas/{project_id}"): "delete_quota",
    ("GET", "/v2.0/{collection}"): "get_{resource}",
    ("POST", "/v2.0/{collection}"): "create_{resource}",
    ("GET", "/v2.0/{collection}/{id}"): "get_{resource}",
    ("PUT", "/v2.0/{collection}/{id}"): "update_{resource}",
    ("DELETE", "/v2.0/{collection}/{id}"): "delete_{resource}",
    ("PUT", "/v2.0/routers/{id}/{action}"): "{action}",  # add_router_interface, remove_router_interface
}
# routes whose rule is asked about every project (the target names none), not the caller's own
EVERY_PROJECT: frozenset[tuple[str, str]] = frozenset({("GET", "/v2.0/quotas")})
NETWORK_RESOURCES = {"networks": "network", "subnets": "subnet", "ports": "port",
                     "security-groups": "security_group", "security-group-rules": "security_group_rule",
                     "routers": "router", "floatingips": "floatingip"}
ROUTER_ACTIONS = ("add_router_interface", "remove_router_interface")

_K = "identity:"
_U = "/v3/users/{user_id}"
_P = "/v3/projects/{project_id}"
IDENTITY: dict[tuple[str, str], str] = {
    **{("GET", p): PUBLIC for p in ("", "/", "/v3", "/v3/")},
    ("POST", "/v3/auth/tokens"): PUBLIC,
    ("GET", "/v3/auth/tokens"): _K + "validate_token",
    ("DELETE", "/v3/auth/tokens"): _K + "revoke_token",
    ("POST", _U + "/credentials/OS-EC2"): _K + "ec2_create_credential",
    ("GET", _U + "/credentials/OS-EC2"): _K + "ec2_list_credentials",
    ("GET", _U + "/credentials/OS-EC2/{access}"): _K + "ec2_get_credential",
    ("DELETE", _U + "/credentials/OS-EC2/{access}"): _K + "ec2_delete_credential",
    ("GET", "/v3/credentials"): ANY_TOKEN,  # identity:ec2_list_credentials narrows it to one's own
    ("GET", "/v3/projects"): _K + "list_projects",
    ("GET", _P): _K + "get_project",
    ("GET", "/v3/auth/projects"): _K + "get_auth_projects",
    ("GET", "/v3/auth/domains"): _K + "get_auth_domains",
    ("GET", "/v3/users"): _K + "list_users",
    ("GET", _U): _K + "get_user",
    ("GET", _U + "/projects"): _K + "list_user_projects",
    ("GET", "/v3/roles"): _K + "list_roles",
    ("GET", "/v3/roles/{role_id}"): _K + "get_role",
    ("POST", "/v3/roles"): _K + "create_role",
    ("PATCH", "/v3/roles/{role_id}"): _K + "update_role",
    ("DELETE", "/v3/roles/{role_id}"): _K + "delete_role",
    ("PUT", "/v3/roles/{prior_role_id}/implies/{implied_role_id}"): _K + "create_implied_role",
    ("GET", "/v3/roles/{prior_role_id}/implies/{implied_role_id}"): _K + "get_implied_role",  # HEAD: check
    ("DELETE", "/v3/roles/{prior_role_id}/implies/{implied_role_id}"): _K + "delete_implied_role",
    ("GET", "/v3/roles/{prior_role_id}/implies"): _K + "list_implied_roles",
    ("GET", "/v3/role_inferences"): _K + "list_role_inference_rules",
    **{(method, f"/v3/domains/{{domain_id}}/{actor}/roles/{{role_id}}"): _K + rule
       for actor in ("users/{user_id}", "groups/{group_id}")
       for method, rule in (("PUT", "create_grant"), ("GET", "check_grant"), ("DELETE", "revoke_grant"))},
    ("GET", "/v3/domains/{domain_id}/users/{user_id}/roles"): _K + "list_grants",
    ("GET", "/v3/domains/{domain_id}/groups/{group_id}/roles"): _K + "list_grants",
    ("GET", "/v3/domains"): _K + "list_domains",
    ("GET", "/v3/domains/{domain_id}"): _K + "get_domain",
    ("POST", "/v3/projects"): _K + "create_project",
    ("PATCH", _P): _K + "update_project",
    ("DELETE", _P): _K + "delete_project",
    ("POST", "/v3/users"): _K + "create_user",
    ("PATCH", _U): _K + "update_user",
    ("DELETE", _U): _K + "delete_user",
    ("POST", _U + "/password"): _K + "change_password",
    ("PUT", _P + "/users/{user_id}/roles/{role_id}"): _K + "create_grant",
    ("GET", _P + "/users/{user_id}/roles/{role_id}"): _K + "check_grant",
    ("DELETE", _P + "/users/{user_id}/roles/{role_id}"): _K + "revoke_grant",
    ("GET", _P + "/users/{user_id}/roles"): _K + "list_grants",
    ("POST", "/v3/domains"): _K + "create_domain",
    ("PATCH", "/v3/domains/{domain_id}"): _K + "update_domain",
    ("DELETE", "/v3/domains/{domain_id}"): _K + "delete_domain",
    ("POST", "/v3/groups"): _K + "create_group",
    ("GET", "/v3/groups"): _K + "list_groups",
    ("GET", "/v3/groups/{group_id}"): _K + "get_group",
    ("PATCH", "/v3/groups/{group_id}"): _K + "update_group",
    ("DELETE", "/v3/groups/{group_id}"): _K + "delete_group",
    ("GET", "/v3/groups/{group_id}/users"): _K + "list_users_in_group",
    ("PUT", "/v3/groups/{group_id}/users/{user_id}"): _K + "add_user_to_group",
    ("GET", "/v3/groups/{group_id}/users/{user_id}"): _K + "check_user_in_group",
    ("DELETE", "/v3/groups/{group_id}/users/{user_id}"): _K + "remove_user_from_group",
    ("GET", _U + "/groups"): _K + "list_groups_for_user",
    ("PUT", _P + "/groups/{group_id}/roles/{role_id}"): _K + "create_grant",
    ("GET", _P + "/groups/{group_id}/roles/{role_id}"): _K + "check_grant",
    ("DELETE", _P + "/groups/{group_id}/roles/{role_id}"): _K + "revoke_grant",
    ("GET", _P + "/groups/{group_id}/roles"): _K + "list_grants",
    ("GET", "/v3/role_assignments"): _K + "list_role_assignments",
    ("PUT", "/v3/system/users/{user_id}/roles/{role_id}"): _K + "create_system_grant_for_user",
    ("GET", "/v3/system/users/{user_id}/roles/{role_id}"): _K + "check_system_grant_for_user",
    ("DELETE", "/v3/system/users/{user_id}/roles/{role_id}"): _K + "revoke_system_grant_for_user",
    ("GET", "/v3/system/users/{user_id}/roles"): _K + "list_system_grants_for_user",
    ("PUT", "/v3/system/groups/{group_id}/roles/{role_id}"): _K + "create_system_grant_for_group",
    ("GET", "/v3/system/groups/{group_id}/roles/{role_id}"): _K + "check_system_grant_for_group",
    ("DELETE", "/v3/system/groups/{group_id}/roles/{role_id}"): _K + "revoke_system_grant_for_group",
    ("GET", "/v3/system/groups/{group_id}/roles"): _K + "list_system_grants_for_group",
    ("GET", _P + "/tags"): _K + "list_project_tags",
    ("PUT", _P + "/tags"): _K + "update_project_tags",
    ("DELETE", _P + "/tags"): _K + "delete_project_tags",
    ("GET", _P + "/tags/{tag}"): _K + "get_project_tag",
    ("PUT", _P + "/tags/{tag}"): _K + "create_project_tag",
    ("DELETE", _P + "/tags/{tag}"): _K + "delete_project_tag",
    ("GET", "/v3/auth/catalog"): _K + "get_auth_catalog",
    ("GET", "/v3/auth/system"): _K + "get_auth_system",
    ("GET", "/v3/services"): _K + "list_services",
    ("GET", "/v3/services/{service_id}"): _K + "get_service",
    ("GET", "/v3/endpoints"): _K + "list_endpoints",
    ("GET", "/v3/endpoints/{endpoint_id}"): _K + "get_endpoint",
    ("GET", "/v3/regions"): _K + "list_regions",
    ("GET", "/v3/regions/{region_id}"): _K + "get_region",
    ("POST", _U + "/application_credentials"): _K + "create_application_credential",
    ("GET", _U + "/application_credentials"): _K + "list_application_credentials",
    ("GET", _U + "/application_credentials/{cred_id}"): _K + "get_application_credential",
    ("DELETE", _U + "/application_credentials/{cred_id}"): _K + "delete_application_credential",
}

_I = "/v2/images/{image_id}"
IMAGE: dict[tuple[str, str], str] = {
    **{("GET", p): PUBLIC for p in ("", "/", "/versions")},
    ("GET", "/v2/schemas/image"): ANY_TOKEN,
    ("GET", "/v2/schemas/images"): ANY_TOKEN,
    ("GET", "/v2/schemas/member"): ANY_TOKEN,
    ("GET", "/v2/schemas/members"): ANY_TOKEN,
    ("GET", "/v2/images"): "get_images",
    ("POST", "/v2/images"): "add_image",
    ("GET", _I): "get_image",
    ("GET", _I + "/tasks"): "get_image",  # Glance 2.12's image tasks: what may see the image
    ("PUT", _I + "/stage"): "modify_image",  # Glance's stage and import have no rule of their own
    ("POST", _I + "/import"): "modify_image",
    ("GET", "/v2/info/import"): ANY_TOKEN,
    ("GET", "/v2/info/stores"): ANY_TOKEN,
    ("GET", "/v2/info/stores/detail"): "stores_info_detail",
    ("PATCH", _I): "modify_image",
    ("DELETE", _I): "delete_image",
    ("GET", _I + "/file"): "download_image",
    ("PUT", _I + "/file"): "upload_image",
    ("PUT", _I + "/tags/{tag}"): "modify_image",
    ("DELETE", _I + "/tags/{tag}"): "modify_image",
    ("POST", _I + "/actions/deactivate"): "deactivate",
    ("POST", _I + "/actions/reactivate"): "reactivate",
    ("POST", _I + "/members"): "add_member",
    ("GET", _I + "/members"): "get_members",
    ("GET", _I + "/members/{member_id}"): "get_member",
    ("PUT", _I + "/members/{member_id}"): "modify_member",
    ("DELETE", _I + "/members/{member_id}"): "delete_member",
}

EC2: dict[tuple[str, str], str] = {("POST", ""): PUBLIC, ("POST", "/"): PUBLIC}  # SigV4: its own signature

# the page and its files hold no data: only the stream does (api/dashboard/)
DASHBOARD: dict[tuple[str, str], str] = {
    **{("GET", p): PUBLIC for p in ("", "/", "/static/{name}")},
    ("GET", "/stream"): "dashboard:stream",
}

# the API's path prefix of each service -> its routes
SERVICES: dict[str, dict[tuple[str, str], str]] = {
    "/identity": IDENTITY, "/compute": COMPUTE, "/image": IMAGE, "/volume": VOLUME, "/network": NETWORK, "/ec2": EC2,
    "/dashboard": DASHBOARD}


def resolve(table: Mapping[tuple[str, str], str], method: str, template: str, match: Mapping[str, str],
            body: Any = None) -> str | None:
    """The rule for a request matched to `template` (None: the table has no such route, or the action
    named by the body or path is not one this API serves, which its handler refuses)."""
    rule = table.get(("GET" if method == "HEAD" else method, template))
    if rule is None:
        return None
    if rule == _N + "servers:action":
        return COMPUTE_ACTIONS.get(_action_name(body) or "")
    if rule == "volume:action":
        return VOLUME_ACTIONS.get(_action_name(body) or "")
    if rule == "volume:snapshot_action":
        return SNAPSHOT_ACTIONS.get(_action_name(body) or "")
    if rule == "volume:group_action":
        return GROUP_ACTIONS.get(_action_name(body) or "")
    if rule == "volume:type_action":
        return TYPE_ACTIONS.get(_action_name(body) or "")
    if rule == _N + "os-aggregates:action":
        return AGGREGATE_ACTIONS.get(_action_name(body) or "")
    if rule == _N + "flavors:action":
        return FLAVOR_ACTIONS.get(_action_name(body) or "")
    if "{resource}" in rule:
        resource = NETWORK_RESOURCES.get(match.get("collection", ""))
        return None if resource is None else rule.replace("{resource}", resource)
    if rule == "{action}":
        action = match.get("action", "")
        return action if action in ROUTER_ACTIONS else None
    return rule


def _action_name(body: Any) -> str | None:
    return next(iter(body)) if isinstance(body, dict) and len(body) == 1 else None
