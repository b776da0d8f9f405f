"""GET /servers/{id}/diagnostics over HTTP with a fake cell on real ZeroMQ: Nova's standard format from 2.48,
the libvirt driver's older one before it, admins only (403), 404 for an unknown server."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from cells.context import RequestContext
from tests.unit.api_fake_cell import FakeConductor
from tests.unit.test_api_servers import open_cloud

FOUND: dict[str, Any] = {"state": "running", "driver": "libvirt", "hypervisor": "test", "hypervisor_os": "linux", "uptime": 42,
         "config_drive": False, "num_cpus": 1, "num_disks": 1, "num_nics": 1,
         "cpu_details": [{"id": 0, "time": 1500, "utilisation": None}],
         "disk_details": [{"name": "vda", "read_bytes": 10, "read_requests": 1, "write_bytes": 20, "write_requests": 2,
                           "errors_count": 0}],
         "nic_details": [{"name": "tap1", "mac_address": "fa:16:3e:00:00:01", "rx_octets": 3, "rx_errors": 0,
                          "rx_drop": 0, "rx_packets": 1, "rx_rate": None, "tx_octets": 4, "tx_errors": 0,
                          "tx_drop": 0, "tx_packets": 2, "tx_rate": None}],
         "memory_details": {"maximum": 512, "used": 256}}


class DiagnosticsConductor(FakeConductor):
    async def instance_diagnostics(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        await self.instance_get(ctx, uuid)
        return FOUND


async def test_server_diagnostics(tmp_path: Path) -> None:
    async with open_cloud(tmp_path, DiagnosticsConductor()) as cloud:
        sid = (await cloud.boot(cloud.demo))["id"]
        cloud.cell.conductor.activate(sid)
        url = f"/compute/v2.1/servers/{sid}/diagnostics"
        resp = await cloud.client.get(url, headers={**cloud.admin, "OpenStack-API-Version": "compute 2.48"})
        assert resp.status == 200, await resp.text()
        standard = await resp.json()
        assert standard["disk_details"] == [{k: v for k, v in FOUND["disk_details"][0].items() if k != "name"}]
        assert "name" not in standard["nic_details"][0] and standard["uptime"] == 42
        assert {k: standard[k] for k in ("state", "num_cpus", "memory_details")} == \
            {"state": "running", "num_cpus": 1, "memory_details": {"maximum": 512, "used": 256}}
        resp = await cloud.client.get(url, headers=cloud.admin)
        assert await resp.json() == {"cpu0_time": 1500, "vda_read": 10, "vda_read_req": 1, "vda_write": 20,
                                     "vda_write_req": 2, "vda_errors": 0, "tap1_rx": 3, "tap1_rx_packets": 1,
                                     "tap1_rx_errors": 0, "tap1_rx_drop": 0, "tap1_tx": 4, "tap1_tx_packets": 2,
                                     "tap1_tx_errors": 0, "tap1_tx_drop": 0, "memory": 512 * 1024}
        resp = await cloud.client.get(url, headers=cloud.demo)
        assert resp.status == 403 and "os-server-diagnostics" in (await resp.json())["forbidden"]["message"]
        missing = f"/compute/v2.1/servers/{'0' * 8}-0000-0000-0000-{'0' * 12}/diagnostics"
        assert (await cloud.client.get(missing, headers=cloud.admin)).status == 404
