"""The cell network controller's RPC surface (topic `network`).

Records are Neutron v2.0 shaped dicts (what /network/v2.0 answers), so the API
passes them through. The compute's host agent asks for its bindings and its
host configuration here: nodes never open the cell DB.
"""
from __future__ import annotations

from typing import Any

from cells.context import RequestContext
from cells.rpc.principal import API, COMPUTE, CONDUCTOR, callers
from cells.rpc.wire import FAST, NORMAL, Method, surface
from cells.rpcapi import Caller, list_reply, map_reply

TOPIC = "network"
AGENT_REFRESH_VERSION = "1.2"  # host_changed here, refresh_network on the compute
GROUP_NAMES_VERSION = "1.3"
INTERFACE_VERSION = "1.5"  # interface_attach/detach (issue 16)  # security_group_names: what server views show, in one call
L3_VERSION = "1.4"  # routers and floating IPs (issue 17)
L2_UPDATE_VERSION = "1.6"  # network_update, subnet_update (issue 17: Tempest's tempest.api.network)
_API = callers(API)
SURFACE = surface(
    # the Neutron API (/network/v2.0): <resource>_list / _get / _create / _update / _delete
    Method("network_list", FAST, retry_safe=True, callers=_API),
    Method("network_get", FAST, retry_safe=True, callers=_API),
    Method("network_create", NORMAL, callers=_API),
    Method("network_update", NORMAL, version=L2_UPDATE_VERSION, callers=_API),
    Method("network_delete", NORMAL, callers=_API),
    Method("subnet_list", FAST, retry_safe=True, callers=_API),
    Method("subnet_get", FAST, retry_safe=True, callers=_API),
    Method("subnet_create", NORMAL, callers=_API),
    Method("subnet_update", NORMAL, version=L2_UPDATE_VERSION, callers=_API),
    Method("subnet_delete", NORMAL, callers=_API),
    Method("port_list", FAST, retry_safe=True, callers=_API),
    Method("port_get", FAST, retry_safe=True, callers=_API),
    Method("port_create", NORMAL, callers=_API),
    Method("port_update", NORMAL, callers=_API),
    Method("port_delete", NORMAL, callers=_API),
    Method("security_group_list", FAST, retry_safe=True, callers=_API),
    Method("security_group_get", FAST, retry_safe=True, callers=_API),
    Method("security_group_create", NORMAL, callers=_API),
    Method("security_group_update", NORMAL, callers=_API),
    Method("security_group_delete", NORMAL, callers=_API),
    Method("security_group_rule_list", FAST, retry_safe=True, callers=_API),
    Method("security_group_rule_get", FAST, retry_safe=True, callers=_API),
    Method("security_group_rule_create", NORMAL, callers=_API),
    Method("security_group_rule_delete", NORMAL, callers=_API),
    # Neutron's L3 (issue 17): routers, their interfaces, floating IPs
    Method("router_list", FAST, retry_safe=True, version=L3_VERSION, callers=_API),
    Method("router_get", FAST, retry_safe=True, version=L3_VERSION, callers=_API),
    Method("router_create", NORMAL, version=L3_VERSION, callers=_API),
    Method("router_update", NORMAL, version=L3_VERSION, callers=_API),
    Method("router_delete", NORMAL, version=L3_VERSION, callers=_API),
    Method("router_add_interface", NORMAL, version=L3_VERSION, callers=_API),
    Method("router_remove_interface", NORMAL, version=L3_VERSION, callers=_API),
    Method("floatingip_list", FAST, retry_safe=True, version=L3_VERSION, callers=_API),
    Method("floatingip_get", FAST, retry_safe=True, version=L3_VERSION, callers=_API),
    Method("floatingip_create", NORMAL, version=L3_VERSION, callers=_API),
    Method("floatingip_update", NORMAL, version=L3_VERSION, callers=_API),
    Method("floatingip_delete", NORMAL, version=L3_VERSION, callers=_API),
    # the boot flow and Nova's server actions
    Method("allocate_for_instance", NORMAL, retry_safe=True, callers=callers(CONDUCTOR)),
    # os-interface (issue 16): the conductor attaches or detaches a port of a server
    Method("interface_attach", NORMAL, version=INTERFACE_VERSION, callers=callers(CONDUCTOR)),
    Method("interface_detach", NORMAL, retry_safe=True, version=INTERFACE_VERSION, callers=callers(CONDUCTOR)),
    Method("instance_security_groups", FAST, retry_safe=True, callers=_API),
    Method("security_group_names", FAST, retry_safe=True, version=GROUP_NAMES_VERSION, callers=_API),
    Method("add_security_group", NORMAL, retry_safe=True, callers=_API),
    Method("remove_security_group", NORMAL, callers=_API),
    # host agents (in each compute worker): each for its own host only
    Method("agent_report", FAST, retry_safe=True, callers=callers(COMPUTE)),
    Method("bind_instance", NORMAL, retry_safe=True, callers=callers(COMPUTE)),
    Method("host_config", FAST, retry_safe=True, callers=callers(COMPUTE)),
    Method("host_changed", FAST, cast=True, version=AGENT_REFRESH_VERSION, callers=callers(COMPUTE)),
)
M = SURFACE


class NetworkAPI:
    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def index(self, ctx: RequestContext, resource: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return list_reply(await self.caller.call(TOPIC, M[f"{resource}_list"], {"filters": filters}, ctx))

    async def show(self, ctx: RequestContext, resource: str, id: str) -> dict[str, Any]:
        return map_reply(await self.caller.call(TOPIC, M[f"{resource}_get"], {"id": id}, ctx))

    async def create(self, ctx: RequestContext, resource: str, body: dict[str, Any],
                     quota: dict[str, Any] | None = None) -> dict[str, Any]:
        """`quota`: {"project", "limit"} of the resource for the owner (the API's limits), checked in
        the creating write."""
        args: dict[str, Any] = {"body": body} if quota is None else {"body": body, "quota": quota}
        return map_reply(await self.caller.call(TOPIC, M[f"{resource}_create"], args, ctx))

    async def update(self, ctx: RequestContext, resource: str, id: str, body: dict[str, Any],
                     if_match: int | None = None) -> dict[str, Any]:
        """`if_match`: the revision_number the caller saw (a floating IP's only); another is 412."""
        args: dict[str, Any] = {"id": id, "body": body}
        if if_match is not None:
            args["if_match"] = if_match
        return map_reply(await self.caller.call(TOPIC, M[f"{resource}_update"], args, ctx))

    async def delete(self, ctx: RequestContext, resource: str, id: str) -> None:
        await self.caller.call(TOPIC, M[f"{resource}_delete"], {"id": id}, ctx)

    async def router_interface(self, ctx: RequestContext, action: str, id: str,
                               body: dict[str, Any]) -> dict[str, Any]:
        """`action`: add or remove; body {subnet_id} or {port_id}; Neutron's interface info back."""
        return map_reply(await self.caller.call(TOPIC, M[f"router_{action}_interface"], {"id": id, "body": body},
                                                ctx))

    async def interface_attach(self, ctx: RequestContext, instance_uuid: str, project_id: str, host: str,
                               port_id: str | None, net_id: str | None, port_quota: int | None) -> dict[str, Any]:
        """A port (the project's `port_id`, or a new one on `net_id`) joins the instance, bound to `host`;
        its VIF."""
        return map_reply(await self.caller.call(TOPIC, M["interface_attach"], {
            "instance_uuid": instance_uuid, "project_id": project_id, "host": host, "port_id": port_id,
            "net_id": net_id, "port_quota": port_quota}, ctx))

    async def interface_detach(self, ctx: RequestContext, instance_uuid: str, port_id: str) -> None:
        await self.caller.call(TOPIC, M["interface_detach"], {"instance_uuid": instance_uuid, "port_id": port_id},
                               ctx)

    async def allocate_for_instance(self, ctx: RequestContext, instance_uuid: str, project_id: str,
                                    requested: list[dict[str, str]] | None,
                                    security_groups: list[str] | None, port_quota: Any = None) -> dict[str, Any]:
        """Ports + fixed IPs for the instance (idempotent); returns its Nova `addresses`. `port_quota`:
        the project's port limit (-1 unlimited), checked in the write that makes the ports."""
        args: dict[str, Any] = {"instance_uuid": instance_uuid, "project_id": project_id, "requested": requested,
                                "security_groups": security_groups}
        if port_quota is not None:  # absent for callers without one (and controllers from before it)
            args["port_quota"] = port_quota
        return map_reply(await self.caller.call(TOPIC, M["allocate_for_instance"], args, ctx))

    async def instance_security_groups(self, ctx: RequestContext, instance_uuid: str) -> list[dict[str, Any]]:
        return list_reply(await self.caller.call(TOPIC, M["instance_security_groups"], {"instance_uuid": instance_uuid}, ctx))

    async def security_group_names(self, ctx: RequestContext, instance_uuids: list[str]) -> dict[str, list[str]]:
        """{instance uuid: names of its ports' security groups, each once, first port first}."""
        return map_reply(await self.caller.call(TOPIC, M["security_group_names"], {"instance_uuids": instance_uuids}, ctx))

    async def add_security_group(self, ctx: RequestContext, instance_uuid: str, group: str) -> None:
        await self.caller.call(TOPIC, M["add_security_group"], {"instance_uuid": instance_uuid, "group": group}, ctx)

    async def remove_security_group(self, ctx: RequestContext, instance_uuid: str, group: str) -> None:
        await self.caller.call(TOPIC, M["remove_security_group"], {"instance_uuid": instance_uuid, "group": group},
                               ctx)

    async def agent_report(self, ctx: RequestContext, host: str, tunnel_ip: str, vlan_supported: bool) -> None:
        await self.caller.call(TOPIC, M["agent_report"],
                               {"host": host, "tunnel_ip": tunnel_ip, "vlan_supported": vlan_supported}, ctx)

    async def bind_instance(self, ctx: RequestContext, instance_uuid: str, host: str) -> list[dict[str, Any]]:
        """Bind the instance's ports to `host`; returns the VIFs to plug."""
        return list_reply(await self.caller.call(TOPIC, M["bind_instance"], {"instance_uuid": instance_uuid, "host": host}, ctx))

    async def host_config(self, ctx: RequestContext, host: str) -> dict[str, Any]:
        return map_reply(await self.caller.call(TOPIC, M["host_config"], {"host": host}, ctx))

    async def host_changed(self, ctx: RequestContext, host: str, network_ids: list[str]) -> None:
        """The agent of `host` bound or dropped ports on these networks (the others on them re-sync)."""
        await self.caller.cast(TOPIC, M["host_changed"], {"host": host, "network_ids": network_ids}, ctx)
