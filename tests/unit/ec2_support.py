"""One EC2 client for the tests: real boto3 (in a thread: it blocks) against the API's /ec2 under an
aiohttp test client, and the OS-EC2 credentials that sign its requests."""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import boto3
import botocore.exceptions
import pytest
from aiohttp.test_utils import TestClient
from botocore.config import Config

HttpClient = TestClient[Any, Any]


class Ec2Client:
    def __init__(self, http: HttpClient, access: str, secret: str) -> None:
        self.endpoint = str(http.make_url("/ec2"))
        self.access, self.secret = access, secret
        self.client = boto3.client("ec2", endpoint_url=self.endpoint, region_name="RegionOne",
                                   aws_access_key_id=access, aws_secret_access_key=secret,
                                   config=Config(retries={"max_attempts": 0}))

    async def __call__(self, method: str, **kwargs: Any) -> Any:
        call: Callable[[], Any] = functools.partial(getattr(self.client, method), **kwargs)
        return await asyncio.get_running_loop().run_in_executor(None, call)

    async def error_detail(self, method: str, **kwargs: Any) -> tuple[str, str]:
        """(code, message) of the EC2 error the call must raise."""
        with pytest.raises(botocore.exceptions.ClientError) as info:
            await self(method, **kwargs)
        return str(info.value.response["Error"]["Code"]), str(info.value.response["Error"]["Message"])

    async def error(self, method: str, **kwargs: Any) -> str:
        """The code of the EC2 error the call must raise."""
        return (await self.error_detail(method, **kwargs))[0]


async def ec2_credentials(http: HttpClient, headers: dict[str, str],
                          project: str | None = None) -> dict[str, Any]:
    """A new OS-EC2 credential of the token's user on `project` (default: the token's project)."""
    me = await (await http.get("/identity/v3/auth/tokens",
                               headers={**headers, "X-Subject-Token": headers["X-Auth-Token"]})).json()
    user = me["token"]["user"]["id"]
    resp = await http.post(f"/identity/v3/users/{user}/credentials/OS-EC2",
                           json={"tenant_id": project or me["token"]["project"]["id"]}, headers=headers)
    assert resp.status == 201, await resp.text()
    return dict((await resp.json())["credential"])
