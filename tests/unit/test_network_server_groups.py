"""Nova's addSecurityGroup / removeSecurityGroup in the cell's network controller, on a
real SQLite cell DB: every port of the server changes in one unit of work with its
instance action, and Nova's errors (404 unknown group / no ports / not on the server,
400 already on it) leave ports and actions as they were."""
from __future__ import annotations

import dataclasses
import uuid as uuidlib
from typing import Any

import pytest
from sqlalchemy import Connection, insert, select

from cells import errors
from cells.conductor.flows.boot import validate_build
from cells.db import action_records
from cells.db import instances as idb
from cells.network.controller import NetworkController
from cells.network.schema import ports
from cells.objects.instance import utcnow_iso
from tests.unit.test_network_ipam import ALT, DEMO, controllers

__all__ = ["controllers"]


@pytest.fixture
def controller(controllers: tuple[NetworkController, NetworkController]) -> NetworkController:
    return controllers[0]


async def _server(ctl: NetworkController, networks: int = 2) -> str:
    """A server of project demo with a port on each of `networks` networks (none: no ports)."""
    uuid = str(uuidlib.uuid4())
    rows = validate_build([{"uuid": uuid, "name": "vm", "project_id": "demo", "flavor": {"vcpus": 1, "ram": 64}}],
                          {}, utcnow_iso(), "test")

    def insert(conn: Connection) -> None:
        conn.execute(idb.INSERT, rows)
    await ctl.db.write(insert)
    if networks:
        nets = []
        for i in range(networks):
            net = await ctl.network_create(DEMO, {"name": f"n{i}"})
            await ctl.subnet_create(DEMO, {"network_id": net["id"], "cidr": f"10.7{i}.0.0/24"})
            nets.append({"uuid": net["id"]})
        await ctl.allocate_for_instance(DEMO, uuid, "demo", nets, None)
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


async def test_instance_show_is_instance_get_with_volumes_and_group_names(controller: NetworkController) -> None:
    # server views ask the conductor once (instance_show, RPC 1.2); a conductor of an older release is
    # asked instance_get, volume_attachments and the network controller's security_group_names: same view
    from cells.conductor.env import FlowEnv
    from cells.conductor.manager import ConductorManager
    from cells.db.volumes import volume_attachments
    conductor = ConductorManager.__new__(ConductorManager)  # its reads, straight on the same cell DB
    conductor._env = FlowEnv(db=controller.db, service=None, cell="cell1", conductor_id="t",  # type: ignore[arg-type]
                             spawn=lambda coro: None)
    two, none = await _server(controller), await _server(controller, 0)
    now = utcnow_iso()
    await controller.db.write(lambda conn: conn.execute(insert(volume_attachments), [
        {"id": str(uuidlib.uuid4()), "volume_id": vid, "instance_uuid": two, "status": "attached",
         "created_at": at, "updated_at": at} for vid, at in (("v-new", now), ("v-old", "2000-01-01T00:00:00.000000Z"))]))
    shown = await conductor.instance_show(DEMO, two, groups=True)
    assert shown["instance"] == await conductor.instance_get(DEMO, two)
    assert shown["volumes_attached"] == ["v-old", "v-new"]  # oldest attachment first
    assert shown["security_groups"] == (await controller.security_group_names(DEMO, [two]))[two] == ["default"]
    assert (await conductor.instance_show(DEMO, none, groups=True))["security_groups"] == []
    assert (await conductor.instance_show(DEMO, none))["security_groups"] is None  # a cell without a controller
    with pytest.raises(errors.InstanceNotFound):  # another project's server is not there
        await conductor.instance_show(ALT, two, groups=True)
