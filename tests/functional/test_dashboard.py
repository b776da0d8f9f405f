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
import yaml

from api.dashboard.snapshot import accepted_in
from tools.devcluster import RunningCluster, running_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MORE_BOOTS = 11  # servers booted in all: more than a page of 10


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    # two API workers, each with its own /metrics: the boot count the page shows must be both workers'
    with running_cluster(tmp_path_factory.mktemp("dash"), hosts=2, sqlite_cell=True, name="dashtest",
                         api_workers=2, api_metrics=True) as c:
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

    # more boots, each on a new connection, until both API workers have accepted some (the kernel spreads
    # connections over the workers' shared port): the page counts every worker's, not only its own's
    metrics = _worker_metrics(cluster)
    admin = {"X-Auth-Token": cluster.token("admin")}
    boots = 1
    while boots < MORE_BOOTS or min(accepted_in(requests.get(u, timeout=10).text) for u in metrics) == 0:
        assert boots < 2 * MORE_BOOTS - 2, "every boot went to one API worker"
        # admin's project first, then demo's: 10 instances each (the default quota)
        resp = requests.post(f"{cluster.endpoint}/compute/v2.1/servers", headers=admin if boots <= 10 else headers,
                             timeout=30, json={"server": {"name": f"paged-{boots}", "flavorRef": "1",
                                                          "imageRef": image}})
        assert resp.status_code == 202, resp.text
        boots += 1
    per_worker = [accepted_in(requests.get(u, timeout=10).text) for u in metrics]
    assert sum(per_worker) == boots and min(per_worker) > 0, per_worker
    page.wait_for_selector(f"#boots:has-text('{boots} boots accepted, counted over 2 of 2 API workers')",
                           timeout=25_000)  # the next sample (every 10 s) reads both

    # every server is reachable: pages of 10 through Nova's marker, newest first, and filters the API applies
    page.select_option("#page-size", "10")
    _wait_rows(page, 10)
    assert page.inner_text("#page-info") == "servers 1-10"
    assert not page.is_visible(f"tr[data-server='{server}']")  # the oldest: on the last page
    last = (boots - 1) // 10 * 10  # servers before the last page
    for start in range(10, last + 1, 10):
        page.click("#page-next")
        page.wait_for_selector(f"#page-info:has-text('servers {start + 1}-')", timeout=10_000)
    assert page.inner_text("#page-info") == f"servers {last + 1}-{boots}"
    page.wait_for_selector(f"tr[data-server='{server}']", timeout=10_000)
    assert page.is_disabled("#page-next")
    page.click("#page-prev")
    page.wait_for_selector(f"#page-info:has-text('servers {last - 9}-{last}')", timeout=10_000)
    page.fill("#filter-name", "watched")
    _wait_rows(page, 1)
    assert page.is_visible(f"tr[data-server='{server}']") and page.inner_text("#page-info") == "servers 1-1"
    page.fill("#filter-name", "")
    page.select_option("#page-size", "50")
    _wait_rows(page, boots)

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


def _wait_rows(page: Any, count: int, timeout: float = 10.0) -> None:
    """Until the servers table has `count` rows (polled: the page's CSP forbids wait_for_function's eval)."""
    deadline = time.monotonic() + timeout
    while (shown := page.locator("#servers tr").count()) != count:
        assert time.monotonic() < deadline, f"{shown} server rows, not {count}"
        time.sleep(0.2)


def _worker_metrics(cluster: RunningCluster) -> list[str]:
    """Each API worker's /metrics URL (api.metrics: worker N on that port + N - 1)."""
    doc = yaml.safe_load(cluster.cluster_file.read_text())
    host, _, port = doc["api"]["metrics"].rpartition(":")
    return [f"http://{host}:{int(port) + n}/metrics" for n in range(doc["api"]["workers"])]


def test_the_stream_is_for_admins_only(cluster: RunningCluster) -> None:
    """A member's token gets 403 from the stream, no token 401, a page the API cannot list 400; the static
    page is public and names no data."""
    url = f"{cluster.endpoint}/dashboard/stream"
    assert requests.get(url, timeout=10).status_code == 401
    admin = {"X-Auth-Token": cluster.token("admin")}
    for bad in ("limit=0", "limit=500", "marker=..%2f", "status=nonsense"):
        assert requests.get(f"{url}?{bad}", headers=admin, timeout=10).status_code == 400, bad
    assert requests.get(url, headers={"X-Auth-Token": cluster.token("demo")}, timeout=10).status_code == 403
    page = requests.get(f"{cluster.endpoint}/dashboard/", timeout=10)
    assert page.status_code == 200 and "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert requests.get(f"{cluster.endpoint}/dashboard/static/..%2fsnapshot.py", timeout=10).status_code == 404
