"""The dashboard (/dashboard/) in headless Chromium, driven by Playwright's Python package with Debian's
chromium: an admin logs in with Keystone, sees the cell tree of a 2-cell cluster with both cells up, watches
a boot appear in the servers table and on its host's capacity bars, and sees a frozen cell (its router
SIGSTOPped) turn red within 5 s. Screenshots go to the test's tmp dir (docs/dashboard.png is the first one,
copied from a run by hand: a test run never writes into the checkout)."""
from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tools.devcluster import RunningCluster, running_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("dash"), hosts=2, sqlite_cell=True, name="dashtest") as c:
        yield c


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("Debian's chromium is not installed (make test installs it: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def test_dashboard_login_cell_tree_boot_and_a_frozen_cell(cluster: RunningCluster, browser_page: Any,
                                                          tmp_path: Path) -> None:
    page = browser_page
    creds = cluster.credentials("admin")
    page.goto(f"{cluster.endpoint}/dashboard")  # redirected to /dashboard/
    page.fill("input[name=user]", creds["username"])
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    page.wait_for_selector("#login-error:has-text('Wrong user')", timeout=10_000)
    page.fill("input[name=password]", creds["password"])
    page.fill("input[name=project]", creds["project_name"])
    page.click("button[type=submit]")

    # the cell tree: both cells of site1, each up with its compute host alive
    page.wait_for_selector(".cell.up[data-cell='cell1'] .host.alive[data-host='node1']", timeout=20_000)
    page.wait_for_selector(".cell.up[data-cell='cell2'] .host.alive[data-host='node2']", timeout=20_000)
    assert page.inner_text(".site > b") == "site1"
    assert not page.is_visible("#login")
    assert page.inner_text("#live") == "live"

    # a boot appears, ACTIVE, with its host's claimed vCPU on the bars
    headers = {"X-Auth-Token": cluster.token("demo")}
    image = requests.get(f"{cluster.endpoint}/image/v2/images?name=tiny-raw", headers=headers,
                         timeout=30).json()["images"][0]["id"]
    resp = requests.post(f"{cluster.endpoint}/compute/v2.1/servers", headers=headers, timeout=30,
                         json={"server": {"name": "watched", "flavorRef": "1", "imageRef": image}})
    assert resp.status_code == 202, resp.text
    server = resp.json()["server"]["id"]
    page.wait_for_selector(f"tr.ACTIVE[data-server='{server}']", timeout=30_000)
    host = page.inner_text(f"tr[data-server='{server}'] td:nth-child(3)")
    assert host in ("node1", "node2")
    page.wait_for_selector(f".bars[data-host='{host}'] .bar >> text=/vCPU [1-9]/", timeout=10_000)
    page.click(f"tr[data-server='{server}']")  # its event history
    page.wait_for_selector("#events >> text=create", timeout=10_000)
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    # cell2's router frozen: its cell turns red within 5 s, cell1 stays up
    pid = cluster.signal("cell2/router", signal.SIGSTOP)
    try:
        frozen = time.monotonic()
        page.wait_for_selector(".cell.down[data-cell='cell2']", timeout=5_000)
        took = time.monotonic() - frozen
        assert took <= 5.0, took
        assert page.is_visible(".cell.up[data-cell='cell1']")
        page.screenshot(path=str(tmp_path / "dashboard-frozen-cell.png"), full_page=True)
    finally:
        os.kill(pid, signal.SIGCONT)
    page.wait_for_selector(".cell.up[data-cell='cell2']", timeout=15_000)  # and back once it thaws
    requests.delete(f"{cluster.endpoint}/compute/v2.1/servers/{server}", headers=headers, timeout=30)


def test_the_stream_is_for_admins_only(cluster: RunningCluster) -> None:
    """A member's token gets 403 from the stream, no token 401; the static page is public and names no data."""
    url = f"{cluster.endpoint}/dashboard/stream"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"X-Auth-Token": cluster.token("demo")}, timeout=10).status_code == 403
    page = requests.get(f"{cluster.endpoint}/dashboard/", timeout=10)
    assert page.status_code == 200 and "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert requests.get(f"{cluster.endpoint}/dashboard/static/..%2fsnapshot.py", timeout=10).status_code == 404
