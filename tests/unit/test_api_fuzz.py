"""Fuzzing: malformed bodies and parameters to every endpoint of this issue (and the
server create it feeds). Whatever comes in: never a 5xx, always the API's own
error shape, and nothing is created by a rejected request. Bounded example counts
keep it to seconds.

Hypothesis generates the inputs in a worker thread (its generation is synchronous
and would stall the event loop the API under test runs on); the test then sends
them one by one and names the failing input in its assertion."""
from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.unit.test_api_servers import Cloud, cloud

__all__ = ["cloud"]

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                max_size=4), max_leaves=12)
BODIES = st.one_of(JSON.map(json.dumps), st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
                   st.builds(lambda k, v: json.dumps({k: v}),
                             st.sampled_from(["keypair", "server", "quota_set", "metadata", "meta"]), JSON))
SURROGATES: tuple[Literal["Cs"]] = ("Cs",)  # unencodable in a URL
SEGMENT = st.text(alphabet=st.characters(exclude_categories=SURROGATES, exclude_characters="/?#"), min_size=1,
                  max_size=12)
COMPUTE = [("POST", "/compute/v2.1/os-keypairs"), ("GET", "/compute/v2.1/os-keypairs/{x}"),
           ("DELETE", "/compute/v2.1/os-keypairs/{x}"), ("GET", "/compute/v2.1/limits"),
           ("GET", "/compute/v2.1/os-quota-sets/{x}"), ("PUT", "/compute/v2.1/os-quota-sets/{x}"),
           ("GET", "/compute/v2.1/os-quota-sets/{x}/detail"), ("POST", "/compute/v2.1/servers"),
           ("PUT", "/compute/v2.1/servers/{x}"), ("POST", "/compute/v2.1/servers/{x}/metadata"),
           ("PUT", "/compute/v2.1/servers/{x}/metadata/{x}"), ("GET", "/compute/v2.1/servers/{x}/os-instance-actions"),
           ("GET", "/compute/v2.1/servers/{x}/os-instance-actions/{x}"), ("GET", "/compute/v2.1/servers/detail")]
EXAMPLES = 60


def _draw(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    out: list[Any] = []

    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        out.append(value)

    collect()
    return out


async def examples(strategy: st.SearchStrategy[Any], n: int = EXAMPLES) -> list[Any]:
    return await asyncio.get_running_loop().run_in_executor(None, _draw, strategy, n)


async def _counts(cloud: Cloud) -> tuple[int, int, int]:
    keys = await (await cloud.client.get("/compute/v2.1/os-keypairs", headers=cloud.admin)).json()
    mine = await (await cloud.client.get("/compute/v2.1/os-keypairs", headers=cloud.demo)).json()
    return len(cloud.cell.conductor.records), len(keys["keypairs"]), len(mine["keypairs"])


COMPUTE_CASES = st.tuples(st.sampled_from(COMPUTE), SEGMENT, BODIES, st.dictionaries(
    st.sampled_from(["limit", "marker", "sort_key", "sort_dir", "name", "status", "changes-since", "all_tenants",
                     "flavor", "image", "tenant_id"]), st.text(max_size=12), max_size=3))


async def test_compute_endpoints_never_500_and_make_nothing(cloud: Cloud) -> None:
    for (method, path), segment, body, query in await examples(COMPUTE_CASES):
        case = f"{method} {path} {segment!r} {query!r} {body!r}"
        before = await _counts(cloud)
        resp = await cloud.client.request(method, path.replace("{x}", segment), params=query, data=body.encode(),
                                          headers={**cloud.demo, "Content-Type": "application/json"})
        assert resp.status < 500, f"{case}: {await resp.text()}"
        assert resp.headers["X-OpenStack-Nova-API-Version"] == "2.1", case
        if resp.status >= 400:
            doc = await resp.json()
            [(_, detail)] = doc.items()
            assert detail["code"] == resp.status and isinstance(detail["message"], str), case
            assert await _counts(cloud) == before, case


EC2_PARAMS = st.dictionaries(
    st.sampled_from(["Action", "Version", "ImageId", "MinCount", "MaxCount", "InstanceId.1", "KeyName",
                     "Filter.1.Name", "Filter.1.Value.1", "UserData", "ClientToken", "InstanceId", "X.0", "a..b"]),
    st.text(max_size=16), max_size=6)


EC2_CASES = st.tuples(EC2_PARAMS, st.binary(max_size=48), st.booleans(), st.sampled_from([
    "", "garbage", "AWS4-HMAC-SHA256 Credential=AK/20200101/r/ec2/aws4_request, SignedHeaders=host, Signature=00"]))


async def test_ec2_endpoint_answers_ec2_errors_and_makes_nothing(cloud: Cloud) -> None:
    for params, raw, use_raw, auth in await examples(EC2_CASES):
        case = f"{params!r} {raw!r} {use_raw} {auth!r}"
        before = await _counts(cloud)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if auth:
            headers["Authorization"] = auth
        data: Any = raw if use_raw else params
        resp = await cloud.client.post("/ec2", data=data, headers=headers)
        text = await resp.text()
        assert 400 <= resp.status < 500, f"{case}: {text}"  # nothing unsigned or malformed succeeds, no 5xx
        assert "<Response><Errors><Error><Code>" in text, case
        assert await _counts(cloud) == before, case
