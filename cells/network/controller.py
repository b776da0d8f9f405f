"""The cell network controller (topic `network`, kind `network`): every method of
cells/rpcapi/network.py SURFACE, each one unit of work on the cell DB.

It owns networks, subnets, ports, fixed IPs and security groups (the seed's
network controller: allocate fixed IPs, a network per project, configure
hosts). Host agents never touch the DB: they ask `bind_instance` and
`host_config` here.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from sqlalchemy import Connection, select

from cells import errors
from cells.config import ClusterConfig, ServiceSpec
from cells.context import RequestContext, admin_context
from cells.db.engine import Database
from cells.db.migration_records import holds_copy
from cells.db.schema import ensure_schema
from cells.network import fanout, instance_ports, l2_updates, l3, l3_host, policy, resources, secgroups
from cells.network import quota as netquota
from cells.network.schema import ports
from cells.objects.records import PortRecord
from cells.rpc.principal import host_worker, require_host
from cells.rpcapi.compute import ComputeAPI

LOG = logging.getLogger(__name__)
T = TypeVar("T")
RESYNC_INTERVAL = 30.0  # the network host re-applies everything this often: a safety net, not the path
APPLY_TIMEOUT = 60.0
Created = TypeVar("Created", bound=Mapping[str, Any])  # a network, subnet or port record just made


def _filters(filters: Any) -> dict[str, Any]:
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise errors.Invalid(reason="filters must be a map")
    return filters


def _body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.Invalid(reason="the request body must be a map")
    return body


def _address_of(bind: str) -> str:
    """The host part of tcp://ADDR:PORT or ADDR:PORT."""
    return bind.removeprefix("tcp://").rsplit(":", 1)[0].strip("[]")


def subnet_policy(cluster: ClusterConfig | None, options: dict[str, Any]) -> policy.SubnetPolicy:
    """Tenant subnets keep off the cluster's own addresses: its netns range, every host's address
    and every service's bind address; `min_subnet_prefix` (option) bounds their size."""
    min_prefix = int(options.get("min_subnet_prefix") or policy.DEFAULT_MIN_PREFIX)
    if cluster is None:
        return policy.SubnetPolicy(min_prefix=min_prefix)
    addresses = [h.address for h in cluster.hosts] + [_address_of(s.bind) for s in cluster.services] + \
        [_address_of(cluster.api.listen)]
    return policy.SubnetPolicy(tuple(policy.reserved_ranges(cluster.netns_range, addresses)), min_prefix)


def _counted(conn: Connection, resource: str, limit: int | None, record: Created) -> Created:
    """The record just created, once its owner's count of `resource` is within `limit` (same unit)."""
    netquota.check_after_insert(conn, resource, str(record["project_id"]), limit)
    return record


class NetworkController:
    def __init__(self, cluster: ClusterConfig | None = None, spec: ServiceSpec | None = None, *,
                 db_url: str | None = None, plumbing: l3_host.NetworkHostPlumbing | None = None) -> None:
        if db_url is None:
            if cluster is None or spec is None or spec.cell is None:
                raise ValueError("a network controller needs its cell's DB")
            db_url = cluster.cell(spec.cell).db
        self.db_url = db_url
        options = spec.options if spec is not None else {}
        self.cidr_pool = str(options.get("default_cidr_pool") or resources.DEFAULT_CIDR_POOL)
        self.subnet_policy = subnet_policy(cluster, options)
        self.external_network: dict[str, Any] | None = options.get("external_network")  # cluster.yaml's
        self._db: Database | None = None
        self._compute: ComputeAPI | None = None
        self._refreshes: set[asyncio.Task[None]] = set()
        # this controller's host is the cell's network host (routers, floating IPs) when plumbing is given
        self.plumbing = plumbing
        self._apply_lock = asyncio.Lock()
        self._apply_asked = self._apply_done = 0  # numbered requests to rebuild it; the newest one covered

    @property
    def db(self) -> Database:
        if self._db is None:
            raise errors.CellcloudError("network controller is not started")
        return self._db

    async def start(self, service: Any = None) -> None:
        self._compute = ComputeAPI(service) if service is not None else None
        self._db = Database(self.db_url)
        await ensure_schema(self._db)  # creates the network tables a DB from before them lacks
        if self.external_network:
            wanted = self.external_network
            await self._write(lambda c: l3.ensure_external_network(c, str(wanted["name"]), str(wanted["cidr"]),
                                                                   self.subnet_policy))
        if self.plumbing is not None:
            await self._start_network_host(self.plumbing, service)

    async def _start_network_host(self, plumbing: l3_host.NetworkHostPlumbing, service: Any) -> None:
        """Announce this host's tunnel address (computes add it as a VXLAN peer of the router-attached
        networks), take the gateways of those networks, then build everything once."""
        await plumbing.start(service)
        host = plumbing.host

        def adopt(c: Connection) -> set[str]:
            instance_ports.report_agent(c, host, plumbing.tunnel_ip, False)
            moved = l3_host.adopt_router_networks(c, host)
            return moved | fanout.hosts_on_networks(c, self._router_networks(c))
        self._refresh(await self._write(adopt) - {host})
        await self._apply_network_host()

    @staticmethod
    def _router_networks(conn: Connection) -> set[str]:
        return {str(n) for n in conn.execute(select(ports.c.network_id).where(
            ports.c.device_owner == l3.INTERFACE_OWNER))}

    async def background(self) -> None:
        while self.plumbing is not None:
            await asyncio.sleep(RESYNC_INTERVAL)
            await self._apply_network_host()

    async def _apply_network_host(self) -> None:
        """Rebuild the network host from the DB, serialised. A request is covered by any rebuild that
        read the DB after it was made, so callers queued behind one rebuild share the next. Failures are
        logged: the next change or the periodic re-sync tries again (the API change is committed)."""
        plumbing = self.plumbing
        if plumbing is None:
            return
        self._apply_asked += 1
        mine = self._apply_asked
        async with self._apply_lock:
            if self._apply_done >= mine:
                return
            covers = self._apply_asked
            try:
                config = await self._read(lambda c: l3_host.network_host_config(c, plumbing.host))
                await asyncio.wait_for(plumbing.apply(config), APPLY_TIMEOUT)
            except Exception:  # a host that cannot be plumbed still serves the API
                LOG.exception("network host %s: applying routers and floating IPs failed", plumbing.host)
            self._apply_done = covers

    async def stop(self) -> None:
        if self.plumbing is not None:
            await self.plumbing.stop()
        if self._db is not None:
            await self._db.close()

    async def _write(self, fn: Callable[[Connection], T]) -> T:
        return await self.db.write(fn)

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        return await self.db.read(fn)

    def _refresh(self, hosts: set[str]) -> None:
        """Tell these hosts' agents to re-sync, in the background: a host that is down
        must not hold up the change (it syncs everything when it starts again)."""
        if self.plumbing is not None and self.plumbing.host in hosts:
            self._spawn(self._apply_network_host())
            hosts = hosts - {self.plumbing.host}
        if self._compute is None or not hosts:
            return
        self._spawn(self._cast_refreshes(sorted(hosts)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def _cast_refreshes(self, hosts: list[str]) -> None:
        assert self._compute is not None
        for host in hosts:
            try:
                await self._compute.refresh_network(admin_context(), host)  # outlives the request
            except errors.UnsupportedVersion:  # a compute of the previous release: its periodic sync catches up
                LOG.info("compute %s is too old for refresh_network", host)
            except errors.CellcloudError as exc:
                LOG.warning("could not ask %s to refresh its network: %s", host, exc)

    # --- networks ------------------------------------------------------------------

    async def network_list(self, ctx: RequestContext, filters: Any = None) -> list[dict[str, Any]]:
        f = _filters(filters)
        if ctx.project is not None and not resources.privileged(ctx):  # the project's own network on first use
            await self._write(lambda c: resources.ensure_default_network(
                c, str(ctx.project), self.cidr_pool, self.subnet_policy))
        return await self._read(lambda c: resources.list_networks(c, ctx, f))

    async def network_get(self, ctx: RequestContext, id: str) -> dict[str, Any]:
        return await self._read(lambda c: resources.get_network(c, ctx, str(id)))

    async def network_create(self, ctx: RequestContext, body: Any, quota: Any = None) -> dict[str, Any]:
        b, limit = _body(body), netquota.parse(quota)
        return await self._write(lambda c: _counted(c, "network", limit, resources.create_network(c, ctx, b)))

    async def network_update(self, ctx: RequestContext, id: str, body: Any) -> dict[str, Any]:
        b = _body(body)
        network, hosts = await self._write(lambda c: (l2_updates.update_network(c, ctx, str(id), b),
                                                      fanout.hosts_on_networks(c, [str(id)])))
        self._refresh(hosts)
        if "router:external" in b:  # the network host's external networks
            await self._l3_changed()
        return network

    async def network_delete(self, ctx: RequestContext, id: str) -> None:
        def delete(c: Connection) -> tuple[set[str], bool]:
            hosts = fanout.hosts_on_networks(c, [str(id)])  # its gateway host drops bridge, VXLAN and dnsmasq now
            external = l3.release_network_floating_ips(c, ctx, str(id))
            resources.delete_network(c, ctx, str(id))
            return hosts, external
        hosts, external = await self._write(delete)
        self._refresh(hosts)
        if external:  # the network host's external networks and floating IPs
            await self._l3_changed()

    # --- subnets ---------------------------------------------------------------------

    async def subnet_list(self, ctx: RequestContext, filters: Any = None) -> list[dict[str, Any]]:
        f = _filters(filters)
        if ctx.project is not None and not resources.privileged(ctx):
            await self._write(lambda c: resources.ensure_default_network(
                c, str(ctx.project), self.cidr_pool, self.subnet_policy))
        return await self._read(lambda c: resources.list_subnets(c, ctx, f))

    async def subnet_get(self, ctx: RequestContext, id: str) -> dict[str, Any]:
        return await self._read(lambda c: resources.get_subnet(c, ctx, str(id)))

    async def subnet_create(self, ctx: RequestContext, body: Any, quota: Any = None) -> dict[str, Any]:
        b, limit = _body(body), netquota.parse(quota)
        return await self._write(lambda c: _counted(c, "subnet", limit,
                                                    resources.create_subnet(c, ctx, b, self.subnet_policy)))

    async def subnet_update(self, ctx: RequestContext, id: str, body: Any) -> dict[str, Any]:
        b = _body(body)

        def write(c: Connection) -> tuple[dict[str, Any], set[str]]:
            subnet = l2_updates.update_subnet(c, ctx, str(id), b)
            return subnet, fanout.hosts_on_networks(c, [str(subnet["network_id"])])  # its dnsmasq's options
        subnet, hosts = await self._write(write)
        self._refresh(hosts)
        return subnet

    async def subnet_delete(self, ctx: RequestContext, id: str) -> None:
        await self._write(lambda c: resources.delete_subnet(c, ctx, str(id)))

    # --- ports -------------------------------------------------------------------------

    async def port_list(self, ctx: RequestContext, filters: Any = None) -> list[PortRecord]:
        f = _filters(filters)
        return await self._read(lambda c: resources.list_ports(c, ctx, f))

    async def port_get(self, ctx: RequestContext, id: str) -> PortRecord:
        return await self._read(lambda c: resources.get_port(c, ctx, str(id)))

    async def port_create(self, ctx: RequestContext, body: Any, quota: Any = None) -> PortRecord:
        b, limit = _body(body), netquota.parse(quota)
        return await self._write(lambda c: _counted(c, "port", limit, resources.create_port(c, ctx, b)))

    async def port_update(self, ctx: RequestContext, id: str, body: Any) -> PortRecord:
        b = _body(body)
        port, hosts = await self._write(lambda c: (
            resources.update_port(c, ctx, str(id), b), fanout.hosts_on_networks(c, fanout.port_network(c, str(id)))))
        self._refresh(hosts)
        return port

    async def port_delete(self, ctx: RequestContext, id: str) -> None:
        def delete(c: Connection) -> set[str]:
            hosts = fanout.hosts_on_networks(c, fanout.port_network(c, str(id)))
            resources.delete_port(c, ctx, str(id))
            return hosts
        self._refresh(await self._write(delete))

    # --- security groups -------------------------------------------------------------------

    async def security_group_list(self, ctx: RequestContext, filters: Any = None) -> list[dict[str, Any]]:
        f = _filters(filters)
        groups = await self._write(lambda c: secgroups.list_groups(c, ctx))  # may make the default group
        return [g for g in groups if resources.match(g, f)]

    async def security_group_get(self, ctx: RequestContext, id: str) -> dict[str, Any]:
        return await self._read(lambda c: secgroups.get_group(c, ctx, str(id)))

    async def security_group_create(self, ctx: RequestContext, body: Any, quota: Any = None) -> dict[str, Any]:
        b, limit = _body(body), netquota.parse(quota)
        return await self._write(lambda c: _counted(c, "security_group", limit, secgroups.create_group(c, ctx, b)))

    async def security_group_update(self, ctx: RequestContext, id: str, body: Any) -> dict[str, Any]:
        b = _body(body)
        return await self._write(lambda c: secgroups.update_group(c, ctx, str(id), b))

    async def security_group_delete(self, ctx: RequestContext, id: str) -> None:
        def delete(c: Connection) -> set[str]:
            # the groups whose rules name it lose those rules: their hosts re-sync (a group in use has none)
            hosts = {h for g in secgroups.groups_naming(c, str(id)) for h in fanout.hosts_of_group(c, g)}
            secgroups.delete_group(c, ctx, str(id))
            return hosts
        self._refresh(await self._write(delete))

    async def security_group_rule_list(self, ctx: RequestContext, filters: Any = None) -> list[dict[str, Any]]:
        f = _filters(filters)
        rules = await self._read(lambda c: secgroups.list_rules(c, ctx))
        return [r for r in rules if resources.match(r, f)]

    async def security_group_rule_get(self, ctx: RequestContext, id: str) -> dict[str, Any]:
        return await self._read(lambda c: secgroups.rule_record(secgroups.rule_row(c, ctx, str(id))))

    async def security_group_rule_create(self, ctx: RequestContext, body: Any, quota: Any = None) -> dict[str, Any]:
        b, limit = _body(body), netquota.parse(quota)

        def create(c: Connection) -> tuple[dict[str, Any], set[str]]:
            rule = _counted(c, "security_group_rule", limit, secgroups.create_rule(c, ctx, b))
            return rule, fanout.hosts_of_group(c, rule["security_group_id"])
        rule, hosts = await self._write(create)
        self._refresh(hosts)
        return rule

    async def security_group_rule_delete(self, ctx: RequestContext, id: str) -> None:
        def delete(c: Connection) -> set[str]:
            hosts = fanout.hosts_of_group(c, fanout.rule_group(c, str(id)))
            secgroups.delete_rule(c, ctx, str(id))
            return hosts
        self._refresh(await self._write(delete))

    # --- routers and floating IPs (issue 17) --------------------------------------------------

    async def router_list(self, ctx: RequestContext, filters: Any = None) -> list[dict[str, Any]]:
        f = _filters(filters)
        return await self._read(lambda c: l3.list_routers(c, ctx, f))

    async def router_get(self, ctx: RequestContext, id: str) -> dict[str, Any]:
        return await self._read(lambda c: l3.get_router(c, ctx, str(id)))

    async def router_create(self, ctx: RequestContext, body: Any, quota: Any = None) -> dict[str, Any]:
        b, limit = _body(body), netquota.parse(quota)
        router = await self._write(lambda c: _counted(c, "router", limit, l3.create_router(c, ctx, b)))
        await self._l3_changed()
        return router

    async def router_update(self, ctx: RequestContext, id: str, body: Any) -> dict[str, Any]:
        b = _body(body)
        router = await self._write(lambda c: l3.update_router(c, ctx, str(id), b))
        await self._l3_changed()
        return router

    async def router_delete(self, ctx: RequestContext, id: str) -> None:
        await self._write(lambda c: l3.delete_router(c, ctx, str(id)))
        await self._l3_changed()

    async def router_add_interface(self, ctx: RequestContext, id: str, body: Any) -> dict[str, Any]:
        b = _body(body)
        host = self.plumbing.host if self.plumbing is not None else None

        def add(c: Connection) -> tuple[dict[str, Any], set[str]]:
            info = l3.add_interface(c, ctx, str(id), b)
            if host is None:
                return info, set()
            moved = l3_host.adopt_router_networks(c, host)  # the network's gateway comes to the network host
            return info, (moved | fanout.hosts_on_networks(c, [str(info["network_id"])])) - {host}
        info, hosts = await self._write(add)
        self._refresh(hosts)
        await self._l3_changed()
        return info

    async def router_remove_interface(self, ctx: RequestContext, id: str, body: Any) -> dict[str, Any]:
        b = _body(body)
        info = await self._write(lambda c: l3.remove_interface(c, ctx, str(id), b))
        await self._l3_changed()
        return info

    async def floatingip_list(self, ctx: RequestContext, filters: Any = None) -> list[dict[str, Any]]:
        f = _filters(filters)
        return await self._read(lambda c: l3.list_floatingips(c, ctx, f))

    async def floatingip_get(self, ctx: RequestContext, id: str) -> dict[str, Any]:
        return await self._read(lambda c: l3.get_floatingip(c, ctx, str(id)))

    async def floatingip_create(self, ctx: RequestContext, body: Any, quota: Any = None) -> dict[str, Any]:
        b, limit = _body(body), netquota.parse(quota)
        fip = await self._write(lambda c: _counted(c, "floatingip", limit, l3.create_floatingip(c, ctx, b)))
        await self._l3_changed()
        return fip

    async def floatingip_update(self, ctx: RequestContext, id: str, body: Any, if_match: Any = None) -> dict[str, Any]:
        b = _body(body)
        if if_match is not None and (not isinstance(if_match, int) or isinstance(if_match, bool)):
            raise errors.Invalid(reason="if_match must be a revision number")
        fip = await self._write(lambda c: l3.update_floatingip(c, ctx, str(id), b, if_match))
        await self._l3_changed()
        return fip

    async def floatingip_delete(self, ctx: RequestContext, id: str) -> None:
        await self._write(lambda c: l3.delete_floatingip(c, ctx, str(id)))
        await self._l3_changed()

    async def _l3_changed(self) -> None:
        """A router or floating IP changed: the network host is rebuilt before the call returns, so a
        disassociated or deleted floating IP stops translating when the API answers."""
        await self._apply_network_host()

    # --- instances -------------------------------------------------------------------------

    async def allocate_for_instance(self, ctx: RequestContext, instance_uuid: str, project_id: str,
                                    requested: Any = None, security_groups: Any = None,
                                    port_quota: Any = None) -> dict[str, Any]:
        limit = None if port_quota is None else netquota.parse({"limit": port_quota})
        return await self._write(lambda c: instance_ports.allocate_for_instance(
            c, str(instance_uuid), str(project_id), requested, security_groups, self.cidr_pool, self.subnet_policy,
            limit))

    async def interface_attach(self, ctx: RequestContext, instance_uuid: str, project_id: str, host: str,
                               port_id: str | None = None, net_id: str | None = None,
                               port_quota: Any = None) -> dict[str, Any]:
        """os-interface (issue 16): a port joins the instance on its host; the hosts on its network re-sync."""
        limit = None if port_quota is None else netquota.parse({"limit": port_quota})

        def attach(c: Connection) -> tuple[dict[str, Any], set[str]]:
            vif = instance_ports.attach_port(c, str(instance_uuid), str(project_id), str(host),
                                             None if port_id is None else str(port_id),
                                             None if net_id is None else str(net_id), limit)
            return vif, fanout.hosts_on_networks(c, [str(vif["network_id"])])
        vif, hosts = await self._write(attach)
        self._refresh(hosts | {str(host)})
        return vif

    async def interface_detach(self, ctx: RequestContext, instance_uuid: str, port_id: str) -> None:
        """The port leaves the instance (deleted when it was made for it); the hosts on its network re-sync."""
        def detach(c: Connection) -> set[str]:
            net = instance_ports.detach_port(c, str(instance_uuid), str(port_id))
            return fanout.hosts_on_networks(c, [net])
        self._refresh(await self._write(detach))

    async def instance_security_groups(self, ctx: RequestContext, instance_uuid: str) -> list[dict[str, Any]]:
        return await self._read(lambda c: instance_ports.instance_groups(c, str(instance_uuid)))

    async def security_group_names(self, ctx: RequestContext, instance_uuids: Any) -> dict[str, list[str]]:
        if not isinstance(instance_uuids, list):
            raise errors.Invalid(reason="instance_uuids must be a list")
        uuids = [str(u) for u in instance_uuids]
        return await self._read(lambda c: instance_ports.group_names(c, ctx, uuids))

    async def add_security_group(self, ctx: RequestContext, instance_uuid: str, group: str) -> None:
        def add(c: Connection) -> set[str]:
            instance_ports.add_security_group(c, ctx, str(instance_uuid), str(group))
            return fanout.hosts_on_networks(c, fanout.instance_networks(c, str(instance_uuid)))
        self._refresh(await self._write(add))

    async def remove_security_group(self, ctx: RequestContext, instance_uuid: str, group: str) -> None:
        def remove(c: Connection) -> set[str]:
            instance_ports.remove_security_group(c, ctx, str(instance_uuid), str(group))
            return fanout.hosts_on_networks(c, fanout.instance_networks(c, str(instance_uuid)))
        self._refresh(await self._write(remove))

    # --- host agents ---------------------------------------------------------------------------

    async def agent_report(self, ctx: RequestContext, host: str, tunnel_ip: str, vlan_supported: bool) -> None:
        require_host(ctx, host, "agent_report")
        try:
            await self._write(lambda c: instance_ports.report_agent(c, str(host), str(tunnel_ip), bool(vlan_supported)))
        except ValueError:
            raise errors.Invalid(reason=f"tunnel_ip {tunnel_ip!r} is not an IP address") from None

    async def bind_instance(self, ctx: RequestContext, instance_uuid: str, host: str) -> list[dict[str, Any]]:
        require_host(ctx, host, "bind_instance")
        worker = host_worker(ctx)

        def bind(c: Connection) -> tuple[list[dict[str, Any]], set[str]]:
            if worker is not None and not holds_copy(c, str(instance_uuid), worker.host):
                raise errors.RpcForbidden(principal=worker.name, method="bind_instance",
                                          reason=f"instance {instance_uuid} is not on host {worker.host}")
            before = fanout.instance_hosts(c, str(instance_uuid))
            return instance_ports.bind_instance(c, str(instance_uuid), str(host)), before - {str(host)}
        vifs, moved_from = await self._write(bind)
        self._refresh(moved_from)  # a move took the ports away: that host drops its taps now
        return vifs

    async def host_config(self, ctx: RequestContext, host: str) -> dict[str, Any]:
        require_host(ctx, host, "host_config")
        plumbing = self.plumbing
        if plumbing is not None and getattr(plumbing, "shared_with_compute", False) and plumbing.host == host:
            # the compute's agent is this network host's one owner of its devices: routers included
            return await self._read(lambda c: l3_host.network_host_config(c, str(host)))
        return await self._read(lambda c: instance_ports.host_config(c, str(host)))

    async def host_changed(self, ctx: RequestContext, host: str, network_ids: Any) -> None:
        """An agent bound or dropped ports on these networks: the other hosts on them re-sync."""
        require_host(ctx, host, "host_changed")
        if not isinstance(network_ids, list) or not all(isinstance(n, str) for n in network_ids):
            raise errors.Invalid(reason="network_ids must be a list of network ids")
        hosts = await self._read(lambda c: fanout.hosts_on_networks(c, network_ids))
        self._refresh(hosts - {str(host)})
