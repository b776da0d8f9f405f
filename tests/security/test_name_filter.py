"""The server list's name filter (a regular expression, as Nova) cannot stall anything.

Python's re needs exponential time for `(a+)+$` against "aaa...a!"; the filter runs on
cells.linear_regex instead, whose work is counted here: it grows linearly with the
name whatever the pattern. Patterns outside the linear-time subset are a 400. Through
the API and through a real conductor and cell DB, a pathological filter gets its
answer while other requests are served (the autouse watchdog in tests/conftest.py
also fails any test whose event loop was held by a callback)."""
from __future__ import annotations

import asyncio
import random
import re

import pytest

from cells import errors, linear_regex
from cells.context import admin_context
from cells.linear_regex import LinearRegex, PatternError
from cells.objects.instance import VmState
from tests.unit.test_api_servers import Cloud, cloud
from tests.unit.test_conductor import Cell, cell

__all__ = ["cell", "cloud"]  # fixtures used by name

PATHOLOGICAL = [r"(a+)+$", r"(a|aa)*b", r"(a*)*$", r"a*a*a*a*a*a*a*a*a*a*b", r"(\w+\s?)*$", r"^(a|a?)+$",
                r"(.*a){12}"]
EVIL_NAME = "a" * 250 + "!"


def test_matcher_agrees_with_python_re() -> None:
    """On a fixed corpus, search() answers as re.search for every supported construct."""
    patterns = ["a", "^a", "a$", "^$", "", "a|b", "(a|b)*c", r"^vm-\d+$", "web.*", "[a-c]+x", "[^a]b", "a{2,3}",
                "a{2}", "a{,2}b", "a{2,}", "(ab)?c", r"\w+-\d", r"\s", r"[\d_]+", "a.c", r"\.", "[]a]", "[a-]",
                "(?:ab|cd)+$", "(?P<n>a)b", "ab*?c", r"\Aab\Z", "a{", "a{1,x}", "{a", r"[\]]", "(|a)b", "()",
                "(a*)*$", "$a", "a^", r"\x41", *PATHOLOGICAL]
    rng = random.Random(7)
    texts = [""] + ["".join(rng.choice("abcx-_1 .]{A") for _ in range(rng.randint(1, 9))) for _ in range(500)]
    for pattern in patterns:
        ours, theirs = LinearRegex(pattern), re.compile(pattern)
        wrong = [t for t in texts if ours.search(t) != (theirs.search(t) is not None)]
        assert wrong == [], f"{pattern!r} disagrees with re on {wrong[:5]}"


@pytest.mark.parametrize("pattern", PATHOLOGICAL)
def test_matcher_work_is_linear_in_the_text(pattern: str) -> None:
    """Steps per character stay under one pass over the program; doubling the text at most doubles the work."""
    steps = {}
    for n in (1000, 2000, 4000):
        matcher = LinearRegex(pattern)  # a fresh cache: building the DFA is counted too
        _, steps[n] = matcher.search_counting("a" * n + "!")
        assert steps[n] <= (n + 2) * (2 * len(matcher.prog) + 2), (n, steps[n], len(matcher.prog))
    assert steps[4000] <= 2.2 * steps[2000] and steps[2000] <= 2.2 * steps[1000], steps


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=a)b", "(?<!a)b", "(?i)a", "a++", r"\bword", "*a", "a**",
                                     "(a", "a)", "[a", "a{3,2}", "(a{100}){100}", "x" * 256])
def test_patterns_outside_the_linear_subset_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        LinearRegex(pattern)


async def test_api_answers_a_pathological_filter_while_serving_others(cloud: Cloud) -> None:
    """GET /servers?name=(a+)+$ against a server named aaa...a! comes back (empty), and a
    request sent alongside it is answered too."""
    evil = await cloud.boot(cloud.demo, name=EVIL_NAME)
    other = await cloud.boot(cloud.demo, name="web-1")

    async def names(query: str) -> list[str]:
        resp = await cloud.client.get(f"/compute/v2.1/servers/detail?{query}", headers=cloud.demo)
        assert resp.status == 200, await resp.text()
        return [s["name"] for s in (await resp.json())["servers"]]

    shown = cloud.client.get(f"/compute/v2.1/servers/{other['id']}", headers=cloud.demo)
    filtered, show = await asyncio.gather(names("name=%28a%2B%29%2B%24"), shown)
    assert filtered == []
    assert show.status == 200 and (await show.json())["server"]["name"] == "web-1"
    assert await names("name=%28a%2B%29%2B%21%24") == [EVIL_NAME]  # (a+)+!$ does match
    assert await names("name=%5Eweb-%5Cd") == ["web-1"]  # ^web-\d
    assert evil["id"]


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=a)", "x" * 300, "(a{100}){100}", "(a"])
async def test_api_refuses_unsupported_name_filters(cloud: Cloud, pattern: str) -> None:
    resp = await cloud.client.get("/compute/v2.1/servers", params={"name": pattern}, headers=cloud.demo)
    assert resp.status == 400
    body = await resp.json()
    assert body["badRequest"]["code"] == 400
    assert body["badRequest"]["message"].startswith("Invalid regular expression for name filter")


async def test_cell_db_filters_with_the_linear_matcher(cell: Cell) -> None:
    """A real conductor over a real cell DB (SQLite and PostgreSQL): the pathological filter answers,
    and a listing asked at the same time is served; an unsupported pattern is refused."""
    for name in (EVIL_NAME, "web-1"):
        rec = await cell.boot(name)
        await cell.wait_state(rec["uuid"], VmState.ACTIVE)
    admin = admin_context()

    async def names(filters: dict[str, str]) -> list[str]:
        return [r["name"] for r in await cell.conductor.instance_list(admin, filters, ["name"], ["asc"], None, None)]

    evil, plain = await asyncio.gather(names({"name": "(a+)+$"}), names({}))
    assert evil == [] and plain == [EVIL_NAME, "web-1"]
    assert await names({"name": "(a|aa)*!$"}) == [EVIL_NAME]
    # the page is cut after the filter (PostgreSQL filters the rows in the conductor, SQLite in its query)
    first = await cell.conductor.instance_list(admin, {"name": "^(web|a)"}, ["name"], ["asc"], 1, None)
    assert [r["name"] for r in first] == [EVIL_NAME]
    assert await cell.conductor.instance_list(admin, {"name": "^(web|a)"}, ["name"], ["asc"], 0, None) == []
    with pytest.raises(errors.Invalid):
        await names({"name": "(a)\\1"})
    assert linear_regex.search("(a+)+$", None) is False  # a NULL name never matches
