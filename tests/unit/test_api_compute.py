"""Nova v2.1 on /compute: version documents, microversion headers and 406,
flavors, and the error shapes, against a real SQLite API DB."""
from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.api_support import PUBLIC_URL, admin_headers, client, cluster, demo_headers

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name

def assert_nova_headers(resp: Any, version: str = "2.1") -> None:
    """The headers name the version that answered (the negotiated one; 2.1 when none was asked)."""
    assert resp.headers["OpenStack-API-Version"] == f"compute {version}"
    assert resp.headers["X-OpenStack-Nova-API-Version"] == version
    assert "OpenStack-API-Version" in resp.headers["Vary"]
    assert resp.headers["X-OpenStack-Request-ID"].startswith("req-")


async def test_version_documents_are_public(client: TestClient[Any, Any]) -> None:
    for path in ("/compute", "/compute/"):
        resp = await client.get(path)
        assert resp.status == 200
        assert_nova_headers(resp)
        v20, v21 = (await resp.json())["versions"]  # v2.0 first, as Nova lists them
        assert (v20["id"], v20["status"], v20["version"], v20["min_version"]) == ("v2.0", "SUPPORTED", "", "")
        assert v20["links"] == [{"rel": "self", "href": f"{PUBLIC_URL}/compute/v2/"}]
        assert (v21["id"], v21["status"], v21["version"], v21["min_version"]) == ("v2.1", "CURRENT", "2.96", "2.1")
        assert v21["links"] == [{"rel": "self", "href": f"{PUBLIC_URL}/compute/v2.1/"}]
    doc = (await (await client.get("/compute/v2.1")).json())["version"]
    assert doc["id"] == "v2.1" and doc["version"] == "2.96" and doc["min_version"] == "2.1"
    assert doc["media-types"][0]["base"] == "application/json"
    resp = await client.get("/compute/v2/")
    assert resp.status == 200 and (await resp.json())["version"]["id"] == "v2.0"


async def test_errors_carry_microversion_headers(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    resp = await client.get("/compute/v2.1/servers")
    assert resp.status == 401
    assert_nova_headers(resp)
    assert (await resp.json()) == {"unauthorized": {"code": 401,
                                                    "message": "The request you have made requires authentication."}}
    resp = await client.get("/compute/v2.1/no-such-thing", headers=demo_headers)
    assert resp.status == 404 and "itemNotFound" in await resp.json()
    assert_nova_headers(resp)


async def test_microversion_negotiation(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    ok = [({"OpenStack-API-Version": "compute 2.1"}, "2.1"), ({"X-OpenStack-Nova-API-Version": "2.1"}, "2.1"),
          ({"OpenStack-API-Version": "compute 2.2"}, "2.2"), ({"X-OpenStack-Nova-API-Version": "2.2"}, "2.2"),
          ({"OpenStack-API-Version": "compute 2.96"}, "2.96"), ({"X-OpenStack-Nova-API-Version": "2.53"}, "2.53"),
          ({"OpenStack-API-Version": "compute latest"}, "2.96"), ({"OpenStack-API-Version": "volume 3.5"}, "2.1"),
          ({"OpenStack-API-Version": "volume 3.5, compute 2.2"}, "2.2")]
    for extra, answered in ok:
        resp = await client.get("/compute/v2.1/flavors", headers={**demo_headers, **extra})
        assert resp.status == 200, extra
        assert_nova_headers(resp, answered)
    for extra in ({"OpenStack-API-Version": "compute 2.97"}, {"X-OpenStack-Nova-API-Version": "2.0"},
                  {"OpenStack-API-Version": "compute 3.0"}):
        resp = await client.get("/compute/v2.1/flavors", headers={**demo_headers, **extra})
        assert resp.status == 406, extra
        body = await resp.json()
        assert body["computeFault"]["code"] == 406 and "Minimum is 2.1 and maximum is 2.96" in \
            body["computeFault"]["message"]
        assert_nova_headers(resp)
    resp = await client.get("/compute/v2.1/flavors", headers={**demo_headers, "OpenStack-API-Version": "compute x.y"})
    assert resp.status == 400 and "invalid format" in (await resp.json())["badRequest"]["message"]


async def test_flavor_list_and_detail(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    brief = (await (await client.get("/compute/v2.1/flavors", headers=demo_headers)).json())["flavors"]
    assert [(f["id"], f["name"]) for f in brief] == [("1", "m1.tiny"), ("2", "m1.small"), ("3", "m1.medium")]
    assert set(brief[0]) == {"id", "name", "links"}
    assert brief[0]["links"] == [{"rel": "self", "href": f"{PUBLIC_URL}/compute/v2.1/flavors/1"},
                                 {"rel": "bookmark", "href": f"{PUBLIC_URL}/compute/flavors/1"}]
    detail = (await (await client.get("/compute/v2.1/flavors/detail", headers=demo_headers)).json())["flavors"]
    tiny = detail[0]
    assert tiny == {"id": "1", "name": "m1.tiny", "ram": 512, "disk": 1, "vcpus": 1,
                    "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": False,
                    "os-flavor-access:is_public": True, "swap": "", "rxtx_factor": 1.0, "links": brief[0]["links"]}
    shown = await (await client.get("/compute/v2.1/flavors/2", headers=demo_headers)).json()
    assert shown["flavor"]["name"] == "m1.small" and shown["flavor"]["ram"] == 2048


async def test_flavor_filters_and_paging(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    async def ids(query: str) -> list[str]:
        resp = await client.get(f"/compute/v2.1/flavors/detail?{query}", headers=demo_headers)
        assert resp.status == 200, await resp.text()
        return [f["id"] for f in (await resp.json())["flavors"]]

    assert await ids("minRam=2048") == ["2", "3"]
    assert await ids("minDisk=30") == ["3"]
    assert await ids("limit=1") == ["1"]
    assert await ids("limit=1&marker=1") == ["2"]
    assert await ids("is_public=true&unknown=1") == ["1", "2", "3"]
    resp = await client.get("/compute/v2.1/flavors?limit=2", headers=demo_headers)
    assert (await resp.json())["flavors_links"][0]["rel"] == "next"
    for bad in ("minRam=abc", "marker=99", "limit=-1"):
        resp = await client.get(f"/compute/v2.1/flavors?{bad}", headers=demo_headers)
        assert resp.status == 400 and "badRequest" in await resp.json(), bad


async def test_flavor_by_name_is_404(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    resp = await client.get("/compute/v2.1/flavors/m1.tiny", headers=demo_headers)
    assert resp.status == 404
    assert await resp.json() == {"itemNotFound": {"code": 404, "message": "Flavor m1.tiny could not be found."}}


async def test_method_not_allowed_is_json(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    resp = await client.put("/compute/v2.1/flavors", headers=demo_headers)
    assert resp.status == 405 and (await resp.json())["badMethod"]["code"] == 405
    assert_nova_headers(resp)
