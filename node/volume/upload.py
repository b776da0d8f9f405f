"""A volume's bytes to the image API (upload to image, issue 18): one streamed PUT of the file, read in
chunks off the loop; the image API answers 204 when it stored and activated the image."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp

from cells import errors

CHUNK = 4 * 1024 * 1024
TIMEOUT = aiohttp.ClientTimeout(total=3600, sock_connect=10)


async def _chunks(path: str) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(f.close)


async def upload_file(path: str, url: str, token: str, volume_id: str) -> None:
    headers = {"X-Auth-Token": token, "Content-Type": "application/octet-stream"}
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http, \
                http.put(url, data=_chunks(path), headers=headers) as resp:
            if resp.status != 204:
                body = (await resp.text())[:300]
                raise errors.VolumeUploadFailed(volume_id=volume_id, reason=f"the image API answered {resp.status}: "
                                                                            f"{body}")
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise errors.VolumeUploadFailed(volume_id=volume_id, reason=f"the image API could not be reached: {exc!r}") \
            from exc
