"""injectNetworkInfo and resetNetwork over HTTP with a fake cell on real ZeroMQ: an admin gets 202 for a
server that is there and the server is left as it was; a member gets 403; an unknown server 404; a body
other than null or {} 400."""
from __future__ import annotations

from pathlib import Path

from tests.unit.test_api_servers import open_cloud


async def test_network_admin_actions(tmp_path: Path) -> None:
    async with open_cloud(tmp_path) as cloud:
        sid = (await cloud.boot(cloud.demo))["id"]
        cloud.cell.conductor.activate(sid)
        before = dict(cloud.cell.conductor.records[sid])
        for action in ("injectNetworkInfo", "resetNetwork"):
            url = f"/compute/v2.1/servers/{sid}/action"
            bodies: tuple[dict[str, int] | None, ...] = (None, {})
            for body in bodies:
                resp = await cloud.client.post(url, json={action: body}, headers=cloud.admin)
                assert resp.status == 202, await resp.text()
            resp = await cloud.client.post(url, json={action: None}, headers=cloud.demo)
            assert resp.status == 403
            assert f"os-admin-actions:{'inject_network_info' if action.startswith('inject') else 'reset_network'}" \
                in (await resp.json())["forbidden"]["message"]
            assert (await cloud.client.post(url, json={action: {"x": 1}}, headers=cloud.admin)).status == 400
            resp = await cloud.client.post(f"/compute/v2.1/servers/{'0' * 8}-0000-0000-0000-{'0' * 12}/action",
                                           json={action: None}, headers=cloud.admin)
            assert resp.status == 404
        assert cloud.cell.conductor.records[sid] == before  # nothing changed on the server
