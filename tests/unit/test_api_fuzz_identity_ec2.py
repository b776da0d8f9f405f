"""Fuzzing the endpoints added after test_api_fuzz.py: the Keystone v3 read API
(random ids and query parameters, as admin and as a member) and SIGNED EC2
requests with random parameters to every action, the volume calls included.
Never a 5xx, always the API's own error shape, and a rejected request leaves
no server and no volume behind. Inputs are drawn in a thread (hypothesis is
synchronous) and sent one by one, each named in its assertion."""
from __future__ import annotations

from urllib.parse import urlencode

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import strategies as st

from api.ec2.ebs_actions import ACTIONS as VOLUME_ACTIONS
from api.ec2.query_actions import ACTIONS
from tests.unit.test_api_ec2_volumes import ec2_for
from tests.unit.test_api_fuzz import SEGMENT, examples
from tests.unit.test_api_volumes import Cloud, cloud

__all__ = ["cloud"]

IDENTITY = ["/projects", "/projects/{x}", "/users", "/users/{x}", "/users/{x}/projects", "/roles", "/roles/{x}",
            "/domains", "/domains/{x}", "/role_assignments", "/auth/projects"]
IDENTITY_QUERY = st.dictionaries(st.sampled_from([
    "name", "enabled", "domain_id", "parent_id", "is_domain", "user.id", "role.id", "scope.project.id", "group.id",
    "scope.domain.id", "effective", "include_names", "include_subtree"]), st.text(max_size=12), max_size=3)
IDENTITY_CASES = st.tuples(st.sampled_from(IDENTITY), SEGMENT, IDENTITY_QUERY, st.sampled_from(["admin", "demo"]))


async def test_identity_read_api_never_500(cloud: Cloud) -> None:
    for path, segment, query, who in await examples(IDENTITY_CASES):
        case = f"{who} {path} {segment!r} {query!r}"
        resp = await cloud.client.get("/identity/v3" + path.replace("{x}", segment), params=query,
                                      headers=cloud.who[who][0])
        assert resp.status < 500, f"{case}: {await resp.text()}"
        if resp.status >= 400:
            error = (await resp.json())["error"]
            assert error["code"] == resp.status and error["message"] and error["title"], case


EC2_PARAMS = st.dictionaries(st.sampled_from([
    "Size", "AvailabilityZone", "ClientToken", "VolumeType", "SnapshotId", "Encrypted", "VolumeId", "VolumeId.1",
    "InstanceId", "InstanceId.1", "Device", "Force", "Filter.1.Name", "Filter.1.Value.1", "ImageId", "MinCount",
    "KeyName", "X.0"]), st.one_of(st.text(max_size=12), st.sampled_from(["vol-00000001", "i-00000001", "0", "-1",
                                                                         "99999999", "/dev/vdb", "nova", "true"])),
    max_size=5)
EC2_CASES = st.tuples(st.sampled_from(sorted({*ACTIONS, *VOLUME_ACTIONS})), EC2_PARAMS)


async def _made(cloud: Cloud) -> tuple[int, int]:
    _, volumes = await cloud.req("GET", "admin", "/volumes?all_tenants=1")
    return len(cloud.conductor.records), len(volumes["volumes"])


async def test_signed_ec2_requests_never_500_and_rejected_ones_make_nothing(cloud: Cloud) -> None:
    ec2 = await ec2_for(cloud)
    url = str(cloud.client.make_url("/ec2"))
    for action, params in await examples(EC2_CASES):
        case = f"{action} {params!r}"
        body = urlencode({"Action": action, "Version": "2016-11-15", **params}).encode()
        request = AWSRequest(method="POST", url=url, data=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        SigV4Auth(Credentials(ec2.access, ec2.secret), "ec2", "RegionOne").add_auth(request)
        before = await _made(cloud)
        resp = await cloud.client.post("/ec2", data=body, headers=dict(request.headers.items()))
        text = await resp.text()
        assert resp.status < 500, f"{case}: {text}"
        if resp.status >= 400:
            assert "<Response><Errors><Error><Code>" in text, case
            assert "SignatureDoesNotMatch" not in text and "AuthFailure" not in text, case  # reached the action
            await cloud.cell.settle()
            assert await _made(cloud) == before, case
        else:
            assert text.startswith("<?xml") and f"<{action}Response" in text, case
        await cloud.cell.settle()
