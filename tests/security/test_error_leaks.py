"""Nothing internal reaches a non-admin: a server-side failure (here: what a conductor raised,
carried back over RPC as `internal` with its 'TypeName: text') is answered with the request
id only; the API log has the details under that id. EC2 clients get fixed texts too."""
from __future__ import annotations

import logging
from typing import Any, cast

import pytest

from api.compute.views import _fault
from api.ec2.errors import from_cellcloud
from cells import errors
from cells.objects.records import Fault
from node.compute.guest_actions import fault_of
from tests.unit.test_api_servers import Cloud, cloud

__all__ = ["cloud"]  # fixture used by name

LEAK = "OperationalError: (sqlite3.OperationalError) disk I/O error [SQL: SELECT uuid FROM instances] on ctl-node-17"


def _failing(exc: Exception) -> Any:
    async def instance_get(*args: Any, **kwargs: Any) -> Any:
        raise exc
    return instance_get


async def _metadata_url(cloud: Cloud) -> str:
    """A route that reads the server from its cell (a listing takes a failing cell for a down one)."""
    return f"/compute/v2.1/servers/{(await cloud.boot(cloud.demo))['id']}/metadata"


async def test_internal_rpc_error_shows_only_the_request_id(cloud: Cloud, caplog: pytest.LogCaptureFixture) -> None:
    url = await _metadata_url(cloud)
    cloud.cell.conductor.instance_get = _failing(RuntimeError(LEAK))  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING):
        resp = await cloud.client.get(url, headers=cloud.demo)
    assert resp.status == 500
    rid = resp.headers["X-OpenStack-Request-ID"]
    assert await resp.json() == {"computeFault": {"code": 500, "message": f"Unexpected error, request id {rid}"}}
    text = await resp.text()
    for secret in ("SELECT", "sqlite3", "ctl-node-17", "RuntimeError", "OperationalError"):
        assert secret not in text
    logged = [r.getMessage() for r in caplog.records if rid in r.getMessage()]
    assert any("ctl-node-17" in line for line in logged), logged  # the operator finds it by the id

    resp = await cloud.client.get(url, headers=cloud.admin)  # an admin reads the cause
    assert resp.status == 500 and "ctl-node-17" in (await resp.json())["computeFault"]["message"]


async def test_unavailable_cell_does_not_name_its_address(cloud: Cloud) -> None:
    url = await _metadata_url(cloud)
    cloud.cell.conductor.instance_get = _failing(  # type: ignore[method-assign]
        errors.RpcError(reason="tcp://10.20.30.40:5601 did not answer"))
    resp = await cloud.client.get(url, headers=cloud.demo)
    assert resp.status == 503
    rid = resp.headers["X-OpenStack-Request-ID"]
    body = await resp.json()
    assert body == {"serviceUnavailable": {"code": 503, "message": f"Service Unavailable, request id {rid}"}}


@pytest.mark.parametrize("exc", [errors.RpcError(reason="tcp://10.20.30.40:5601 did not answer"),
                                 errors.NoValidHost(reason="ctl-node-17 has 0 MB free"),
                                 errors.CellcloudError(LEAK)])
def test_ec2_server_side_errors_have_fixed_texts(exc: errors.CellcloudError) -> None:
    ec2 = from_cellcloud(exc)
    assert "10.20.30.40" not in ec2.message and "ctl-node-17" not in ec2.message and "SQL" not in ec2.message


def test_a_surprise_on_the_compute_becomes_a_fault_tenants_read_by_class_only() -> None:
    """Nova's exception_to_dict: an exception outside the error tree (libvirt's, the OS's) is recorded
    with its class as the message and its text as details, which the server view shows admins only."""
    fault = fault_of(OSError(28, "No space left on device: '/var/lib/cellcloud/hosts/ctl-node-17/disk'"))
    assert fault["message"] == "OSError" and "ctl-node-17" in fault["details"]
    recorded = cast(Fault, dict(fault, created="2026-01-01T00:00:00.000000Z"))  # as the conductor stores it
    assert _fault(recorded, is_admin=False) == {"code": 500, "created": "2026-01-01T00:00:00Z", "message": "OSError"}
    assert "ctl-node-17" in str(_fault(recorded, is_admin=True))
    known = fault_of(errors.ImageNotFound(image_id="img-1"))  # the tree's messages are written for users
    assert "img-1" in known["message"]
