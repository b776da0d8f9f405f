"""The compute host's console tokens (node/compute/remote_consoles.py, console_tokens.py): a token opens only
its own server's console, for its own project and console type, until it expires; a host without consoles or
a guest that is not running gives none; the token never reaches the API's access log. (The stream itself, on
a real QEMU guest: tests/functional/test_real_guests.py; the VNC sessions: tests/unit/test_vnc_console.py.)"""
from __future__ import annotations

import uuid as uuidlib

import libvirt  # type: ignore[import-untyped]
import pytest
from aiohttp.test_utils import make_mocked_request

from api.middleware import logged_path
from cells import errors
from node.compute import console_tokens
from node.compute.remote_consoles import RemoteConsoles
from tests.unit.test_vnc_console import Host

PROJECT = "p1"


def _test_host() -> Host:
    """libvirt's test hypervisor: it runs no guest."""
    host = Host()
    host.is_test = True
    return host


def _guest(host: Host, state: int = libvirt.VIR_DOMAIN_RUNNING) -> str:
    return host.add("<domain><devices/></domain>", state)


async def test_a_token_opens_nothing_but_its_own_servers_console_in_its_own_project() -> None:
    host = Host()
    consoles = RemoteConsoles(host)
    mine, other = _guest(host), _guest(host)
    secret = await consoles.authorize(mine, PROJECT)
    refused = [(other, PROJECT, secret, "serial"), (mine, "p2", secret, "serial"),
               (mine, PROJECT, secret[:-1] + "x", "serial"), (mine, PROJECT, None, "serial"), (mine, PROJECT, "", "serial"),
               (mine, PROJECT, secret, "novnc"), (mine, PROJECT, secret, None)]  # a serial token opens no display
    for uuid, project, guess, kind in refused:
        with pytest.raises(errors.Unauthorized):
            await consoles.open(uuid, project, guess, kind)
    with pytest.raises(errors.Invalid):  # never a path or anything else but an instance uuid
        await consoles.open("../../etc", PROJECT, secret)


async def test_an_expired_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host()
    consoles = RemoteConsoles(host)
    uuid = _guest(host)
    monkeypatch.setattr(console_tokens, "TOKEN_TTL", -1.0)
    secret = await consoles.authorize(uuid, PROJECT)
    with pytest.raises(errors.Unauthorized):
        await consoles.open(uuid, PROJECT, secret)


async def test_no_token_without_a_console_or_a_running_guest() -> None:
    with pytest.raises(errors.ConsoleTypeUnavailable, match="Unavailable console type serial."):
        await RemoteConsoles(_test_host()).authorize(str(uuidlib.uuid4()), PROJECT)
    with pytest.raises(errors.ConsoleTypeUnavailable, match="Unavailable console type novnc."):
        await RemoteConsoles(_test_host()).authorize(str(uuidlib.uuid4()), PROJECT, "novnc")
    host = Host()
    consoles = RemoteConsoles(host)
    with pytest.raises(errors.ConsoleTypeInvalid):
        await consoles.authorize(_guest(host), PROJECT, "xvpvnc")
    for uuid in (_guest(host, libvirt.VIR_DOMAIN_SHUTOFF), str(uuidlib.uuid4())):  # stopped; not on this host
        with pytest.raises(errors.InstanceNotReady):
            await consoles.authorize(uuid, PROJECT)


async def test_the_tokens_kept_are_bounded_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host()
    consoles = RemoteConsoles(host)
    uuid = _guest(host)
    monkeypatch.setattr(console_tokens, "MAX_TOKENS", 3)
    first = await consoles.authorize(uuid, PROJECT)
    for _ in range(3):
        await consoles.authorize(uuid, PROJECT)
    with pytest.raises(errors.Unauthorized):  # pushed out by newer ones
        await consoles.open(uuid, PROJECT, first)


async def test_reading_or_writing_a_session_that_is_not_open_is_gone() -> None:
    host = Host()
    consoles = RemoteConsoles(host)
    uuid = _guest(host)
    with pytest.raises(errors.ConsoleSessionGone):
        await consoles.read(uuid, "no-such-session", 0.0)
    with pytest.raises(errors.ConsoleSessionGone):
        await consoles.write(uuid, "no-such-session", b"ls\n")
    await consoles.close(uuid, "no-such-session")  # idempotent


def test_the_console_token_never_reaches_the_access_log() -> None:
    url = "/compute/serial-console?token=3f1c2a54-7d7e-4a51-9b4e-0c1d2e3f4a5b.s3cret-value&x=1"
    logged = logged_path(make_mocked_request("GET", url))
    assert "s3cret" not in logged and logged == "/compute/serial-console?token=%2A%2A%2A&x=1"
    assert logged_path(make_mocked_request("GET", "/compute/v2.1/servers?limit=2")) == "/compute/v2.1/servers?limit=2"
