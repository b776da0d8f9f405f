"""Nova's addSecurityGroup / removeSecurityGroup in the cell's network controller, on a
real SQLite cell DB: every port of the server changes in one unit of work with its
instance action, and Nova's errors (404 unknown group / no ports / not on the server,
400 already on it) leave ports and actions as they were."""
from __future__ import annotations

import dataclasses
import uuid as uuidlib
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Connection, event, insert, select, update

from cells import errors
from cells.conductor.env import FlowEnv
from cells.conductor.flows import server_views
from cells.conductor.flows.boot import validate_build
from cells.conductor.manager import ConductorManager
from cells.context import RequestContext
from cells.db import action_records
from cells.db import instances as idb
from cells.db.volumes import volume_attachments
from cells.network.controller import NetworkController
from cells.network.schema import ports
from cells.objects.instance import utcnow_iso
from tests.unit.test_network_ipam import ALT, DEMO, controllers

__all__ = ["controllers"]


@pytest.fixture
def controller(controllers: tuple[NetworkController, NetworkController]) -> NetworkController:
    return controllers[0]


async def _server(ctl: NetworkController, networks: int = 2, ctx: RequestContext = DEMO, first: int = 0) -> str:
    """A server of `ctx`'s project (demo) with a port on each of `networks` new networks (none: no ports),
    their subnets 10.7N.0.0/24 from N = `first` (a cell's subnets never overlap)."""
    uuid = str(uuidlib.uuid4())
    rows = validate_build([{"uuid": uuid, "name": "vm", "project_id": ctx.project, "flavor": {"vcpus": 1, "ram": 64}}],
                          {}, utcnow_iso(), "test")

    def insert(conn: Connection) -> None:
        conn.execute(idb.INSERT, rows)
    await ctl.db.write(insert)
    if networks:
        nets = []
        for i in range(networks):
            net = await ctl.network_create(ctx, {"name": f"n{i}"})
            await ctl.subnet_create(ctx, {"network_id": net["id"], "cidr": f"10.7{first + i}.0.0/24"})
            nets.append({"uuid": net["id"]})
        await ctl.allocate_for_instance(ctx, uuid, str(ctx.project), nets, None)
    return uuid


async def _port_groups(ctl: NetworkController, uuid: str) -> list[list[str]]:
    def read(conn: Connection) -> list[list[str]]:
        return [list(r[0]) for r in conn.execute(select(ports.c.security_groups).where(ports.c.device_id == uuid)
                                                 .order_by(ports.c.created_at))]
    return await ctl.db.read(read)


async def _actions(ctl: NetworkController, uuid: str) -> list[tuple[str, Any, list[tuple[str, str]]]]:
    acts = await ctl.db.read(lambda conn: action_records.actions_of(conn, uuid))
    return [(a["action"], a["request_id"], [(e["event"], e["result"]) for e in a["events"]]) for a in acts]


async def test_add_and_remove_change_every_port_and_record_the_action(controller: NetworkController) -> None:
    uuid = await _server(controller)
    web = await controller.security_group_create(DEMO, {"name": "web"})
    (default,) = [g["id"] for g in await controller.security_group_list(DEMO) if g["name"] == "default"]
    assert await _port_groups(controller, uuid) == [[default], [default]]

    add = dataclasses.replace(DEMO, request_id="req-add")
    await controller.add_security_group(add, uuid, "web")
    assert await _port_groups(controller, uuid) == [[default, web["id"]], [default, web["id"]]]
    assert [g["name"] for g in await controller.instance_security_groups(DEMO, uuid)] == ["default", "web"]
    await controller.add_security_group(add, uuid, "web")  # the same request resent: done already, no error
    with pytest.raises(errors.Invalid, match="already associated") as exc:  # a new request: Nova's 400
        await controller.add_security_group(DEMO, uuid, web["id"])
    assert exc.value.http_status == 400

    await controller.remove_security_group(DEMO, uuid, "default")
    assert await _port_groups(controller, uuid) == [[web["id"]], [web["id"]]]
    again = dataclasses.replace(DEMO, request_id="req-again")
    with pytest.raises(errors.SecurityGroupNotFound, match="not associated with the instance") as missing:
        await controller.remove_security_group(again, uuid, "default")
    assert missing.value.http_status == 404
    assert await _actions(controller, uuid) == [
        ("addSecurityGroup", "req-add", [("network_addSecurityGroup", "Success")]),
        ("removeSecurityGroup", DEMO.request_id, [("network_removeSecurityGroup", "Success")])]


async def test_nova_errors_change_nothing(controller: NetworkController) -> None:
    uuid = await _server(controller, networks=1)
    before = await _port_groups(controller, uuid)
    with pytest.raises(errors.SecurityGroupNotFound, match="is not found for project demo"):
        await controller.add_security_group(DEMO, uuid, "no-such-group")
    await controller.security_group_create(ALT, {"name": "theirs"})
    with pytest.raises(errors.SecurityGroupNotFound):  # another project's group is as good as absent
        await controller.add_security_group(DEMO, uuid, "theirs")
    with pytest.raises(errors.InstanceNotFound):  # and so is another project's server
        await controller.add_security_group(ALT, uuid, "default")
    await controller.security_group_create(DEMO, {"name": "twin"})
    await controller.security_group_create(DEMO, {"name": "twin"})
    with pytest.raises(errors.Conflict, match="Multiple security groups"):
        await controller.add_security_group(DEMO, uuid, "twin")
    portless = await _server(controller, networks=0)
    with pytest.raises(errors.SecurityGroupNotFound, match="could not be found as device id on any ports"):
        await controller.add_security_group(DEMO, portless, "default")
    assert await _port_groups(controller, uuid) == before
    assert await _actions(controller, uuid) == []


class _Direct:
    """NetworkAPI's index/show straight onto the controller (what the RPC would carry)."""

    def __init__(self, ctl: NetworkController) -> None:
        self.ctl = ctl

    async def index(self, ctx: Any, resource: str, filters: dict[str, Any]) -> Any:
        return await getattr(self.ctl, f"{resource}_list")(ctx, filters)

    async def show(self, ctx: Any, resource: str, id: str) -> Any:
        return await getattr(self.ctl, f"{resource}_get")(ctx, id)


async def test_group_names_in_one_call_match_ports_then_groups(controller: NetworkController) -> None:
    # server views ask for the names in one call; an older controller answers through its port and
    # group reads: both must give the same names, in port order, each once, only what the caller sees
    from api.compute.security_groups import _names_from_resources
    two, one, none = await _server(controller), await _server(controller, 0), await _server(controller, 0)
    net = (await controller.port_list(DEMO, {"device_id": two}))[0]["network_id"]
    await controller.allocate_for_instance(DEMO, one, "demo", [{"uuid": net}], None)
    web = await controller.security_group_create(DEMO, {"name": "web"})
    await controller.add_security_group(DEMO, two, web["id"])
    uuids = [two, one, none]
    names = await controller.security_group_names(DEMO, uuids)
    assert names == {two: ["default", "web"], one: ["default"]}
    assert names == await _names_from_resources(_Direct(controller), DEMO, uuids)  # type: ignore[arg-type]
    assert await controller.security_group_names(ALT, uuids) == {}
    with pytest.raises(errors.Invalid):
        await controller.security_group_names(DEMO, two)


def _conductor(controller: NetworkController) -> ConductorManager:
    """A conductor's reads, straight on the controller's cell DB."""
    conductor = ConductorManager.__new__(ConductorManager)
    conductor._env = FlowEnv(db=controller.db, service=None, cell="cell1", conductor_id="t",  # type: ignore[arg-type]
                             spawn=lambda coro: None)
    return conductor


async def _attach(controller: NetworkController, uuid: str, volumes: list[str], older: Sequence[str] = ()) -> None:
    """Attachment rows of `uuid`: `volumes` now, `older` ones made in 2000 (oldest first in views)."""
    now, then = utcnow_iso(), "2000-01-01T00:00:00.000000Z"
    await controller.db.write(lambda conn: conn.execute(insert(volume_attachments), [
        {"id": str(uuidlib.uuid4()), "volume_id": vid, "instance_uuid": uuid, "status": "attached",
         "created_at": at, "updated_at": at} for vid, at in [*((v, now) for v in volumes), *((v, then) for v in older)]]))


async def test_instance_show_is_instance_get_with_volumes_and_group_names(controller: NetworkController) -> None:
    # server views ask the conductor once (instance_show, RPC 1.2); a conductor of an older release is
    # asked instance_get, volume_attachments and the network controller's security_group_names: same view
    conductor = _conductor(controller)
    two, none = await _server(controller), await _server(controller, 0)
    await _attach(controller, two, ["v-new"], ["v-old"])
    shown = await conductor.instance_show(DEMO, two, groups=True)
    assert shown["instance"] == await conductor.instance_get(DEMO, two)
    assert shown["volumes_attached"] == ["v-old", "v-new"]  # oldest attachment first
    assert shown["security_groups"] == (await controller.security_group_names(DEMO, [two]))[two] == ["default"]
    assert (await conductor.instance_show(DEMO, none, groups=True))["security_groups"] == []
    assert (await conductor.instance_show(DEMO, none))["security_groups"] is None  # a cell without a controller
    with pytest.raises(errors.InstanceNotFound):  # another project's server is not there
        await conductor.instance_show(ALT, two, groups=True)


async def test_instance_list_views_give_each_record_what_instance_show_gives_and_only_the_callers(
        controller: NetworkController) -> None:
    """instance_list_views (RPC 1.8, a detail listing's records round) gives each of instance_list's records
    instance_show's volumes_attached and security_groups, from one read of four statements whatever the page's
    size; another project's member gets its own server only, with only its own volumes and group names, even
    where a port of its server names a group of demo's."""
    conductor = _conductor(controller)
    two, one, none = await _server(controller), await _server(controller, 1, first=2), await _server(controller, 0)
    web = await controller.security_group_create(DEMO, {"name": "web"})
    await controller.add_security_group(DEMO, two, web["id"])
    theirs = await _server(controller, 1, ALT, first=3)
    await controller.add_security_group(ALT, theirs, (await controller.security_group_create(ALT, {"name": "alt-only"}))["id"])
    [alt_groups] = await _port_groups(controller, theirs)
    await controller.db.write(lambda conn: conn.execute(  # a row no API lets a tenant make: demo's group on it
        update(ports).where(ports.c.device_id == theirs).values(security_groups=[*alt_groups, web["id"]])))
    await _attach(controller, two, ["v-new"], ["v-old"])
    await _attach(controller, none, ["v-none"])
    await _attach(controller, theirs, ["v-theirs"])
    order, everyone = (["created_at", "uuid"], ["desc", "desc"]), [two, one, none, theirs]

    listed = await conductor.instance_list_views(DEMO, {"uuid": everyone}, *order, 10, None, groups=True)
    plain = await conductor.instance_list(DEMO, {"uuid": everyone}, *order, 10, None)
    assert [r["uuid"] for r in listed] == [r["uuid"] for r in plain] and {r["uuid"] for r in plain} == {two, one, none}
    for record in listed:
        show = await conductor.instance_show(DEMO, record["uuid"], groups=True)
        views = {k: record.pop(k) for k in ("volumes_attached", "security_groups")}  # type: ignore[misc]
        assert views == {"volumes_attached": show["volumes_attached"], "security_groups": show["security_groups"]}
        assert record == show["instance"]
        assert views == {two: {"volumes_attached": ["v-old", "v-new"], "security_groups": ["default", "web"]},
                         one: {"volumes_attached": [], "security_groups": ["default"]},
                         none: {"volumes_attached": ["v-none"], "security_groups": []}}[record["uuid"]]
    [no_groups] = await conductor.instance_list_views(DEMO, {"uuid": [two]}, *order, 10, None)  # no controller
    assert no_groups["volumes_attached"] == ["v-old", "v-new"] and "security_groups" not in no_groups

    alt = await conductor.instance_list_views(ALT, {"uuid": everyone}, *order, 10, None, groups=True)
    assert [(r["uuid"], r["volumes_attached"], r.get("security_groups")) for r in alt] == \
        [(theirs, ["v-theirs"], ["default", "alt-only"])]
    with pytest.raises(errors.Invalid):
        await conductor.instance_list_views(DEMO, {}, *order, 10, None, groups="yes")  # type: ignore[arg-type]

    async def statements(uuids: list[str]) -> tuple[int, int]:
        """(rows, SQL statements) of one page_with_views read."""
        def read(conn: Connection) -> tuple[int, int]:
            ran: list[str] = []
            listen = (conn, "before_cursor_execute", lambda *a: ran.append(a[2]))
            event.listen(*listen)
            try:
                rows, _ = server_views.page_with_views(conn, DEMO, {"uuid": uuids}, *order, 10, None, (), True)
            finally:
                event.remove(*listen)
            return len(rows), len(ran)
        return await controller.db.read(read)
    assert await statements([two]) == (1, 4) and await statements([two, one, none]) == (3, 4)
