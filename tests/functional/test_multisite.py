"""examples/multisite.yaml for real: 3 sites x 2 leaf cells x 2 compute hosts, every host a
network namespace, ~40 processes, CURVE on. Boots 54 servers through the API, checks they
spread over every cell and site, pages across cells against the full sorted listing, freezes
a whole cell (partial listing with UNKNOWN entries within the bound, boots elsewhere, status
DOWN, then restart with nothing lost), cuts a site's network and restores it, and checks that
a ZeroMQ peer without the cluster's keys gets no answer.

Where PostgreSQL is installed, the cell frozen above (west!west-b) keeps its DB on the cluster's managed
PostgreSQL, beside the other cells' SQLite files (issue 15): every test here runs over both kinds.

The example is copied with its own cluster name (ms<pid>) and an address range no route of this
machine uses yet (tools/netns.unused_range), so the example, or another run of this test, running
on this machine at the same time is not disturbed."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text

from cells import errors
from cells.config import ClusterConfig
from cells.context import RequestContext
from cells.rpc import security
from cells.rpc.client import RpcClient
from tools import pgserver
from tools.devcluster import RunningCluster, wait_for
from tools.netns import Topology, unused_range

# real guests or netns hosts: the module's cluster comes up inside its first test's timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]
BOOTS = 54
LEAVES = {f"{site}!{site}-{x}" for site in ("east", "central", "west") for x in "ab"}
PG_CELL = "west!west-b"  # on the managed PostgreSQL where it is installed
PG_MISSING = pgserver.missing_reason()

if os.geteuid() != 0 or shutil.which("ip") is None:
    pytest.skip("netns hosts need root and iproute2 (ip netns)", allow_module_level=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RunningCluster]:
    # not under pytest's temp dir: that is closed to other users, and a managed PostgreSQL runs as postgres
    root = Path(tempfile.mkdtemp(prefix="cc-ms-"))
    os.chmod(root, 0o711)  # traverse only: the state dir below it opens its postgres dir to that group alone
    doc = (ROOT / "examples" / "multisite.yaml").read_text()
    prefix = unused_range().removesuffix("0.0/16")  # "10.N."
    doc = doc.replace("cluster: multisite", f"cluster: ms{os.getpid()}").replace("10.250.", prefix)
    doc = doc.replace("state_dir: var-multisite", "state_dir: var")
    if PG_MISSING is None:
        west_b = "          - name: west-b\n"
        assert doc.count(west_b) == 1
        doc = doc.replace(west_b, west_b + "            db: {engine: postgresql, managed: true}\n")
    (root / "cluster.yaml").write_text(doc)
    c = RunningCluster(root, root / "cluster.yaml")
    up = c.cellctl("up", str(c.cluster_file), "--timeout", "150", check=False, timeout=240)
    try:
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"
        yield c
    finally:
        c.cellctl("down", str(c.cluster_file), check=False, timeout=180)
        pgserver.PrivateServer(root / "var" / "postgres").stop()  # a failed up may leave it running
        shutil.rmtree(root, ignore_errors=True)


def config(c: RunningCluster) -> ClusterConfig:
    return ClusterConfig.load(c.state / "cluster.json")


token = RunningCluster.token  # token(cluster, who="demo")


def api(c: RunningCluster, method: str, path: str, tok: str, **kw: Any) -> requests.Response:
    return requests.request(method, f"{c.endpoint}/compute/v2.1{path}", headers={"X-Auth-Token": tok},
                            timeout=30, **kw)


def mappings(c: RunningCluster) -> dict[str, str]:
    with sqlite3.connect(c.state / "api.db") as db:
        return dict(db.execute("SELECT instance_uuid, cell_path FROM instance_mappings").fetchall())


def listing(c: RunningCluster, tok: str, query: str = "") -> list[dict[str, Any]]:
    resp = api(c, "GET", f"/servers/detail?limit=1000{query}", tok)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["servers"])


def cell_pids(c: RunningCluster, cell: str) -> list[int]:
    return [c.pid(s.id) for s in config(c).services if s.cell == cell]


@pytest.fixture(scope="module")
def booted(cluster: RunningCluster) -> dict[str, Any]:
    admin, demo = token(cluster, "admin"), token(cluster, "demo")
    project = requests.get(f"{cluster.endpoint}/identity/v3/auth/tokens", timeout=10,
                           headers={"X-Auth-Token": admin, "X-Subject-Token": demo}).json()["token"]["project"]["id"]
    lifted = api(cluster, "PUT", f"/os-quota-sets/{project}", admin,
                 json={"quota_set": {"instances": -1, "cores": -1, "ram": -1}})
    assert lifted.status_code == 200, lifted.text
    image = requests.get(f"{cluster.endpoint}/image/v2/images?name=tiny-raw", headers={"X-Auth-Token": demo},
                         timeout=10).json()["images"][0]["id"]
    ids = []
    for i in range(BOOTS):
        resp = api(cluster, "POST", "/servers", demo,
                   json={"server": {"name": f"vm{i:02d}", "flavorRef": "1", "imageRef": image}})
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["server"]["id"])
    wait_for(f"{BOOTS} servers ACTIVE",
             lambda: sum(s["status"] == "ACTIVE" for s in listing(cluster, demo)) == BOOTS, timeout=120)
    return {"demo": demo, "admin": admin, "image": image, "ids": ids}


def test_status_shows_the_tree_with_capacity(cluster: RunningCluster) -> None:
    """`cellctl status` shows the cluster healthy and every leaf cell with its capacity, once each
    cell's heartbeats have reported it (on a loaded machine that can take a few beats after up)."""
    last: dict[str, Any] = {}

    def every_capacity() -> bool:
        last["text"] = cluster.cellctl("status", str(cluster.cluster_file), check=False).stdout
        status = json.loads(cluster.cellctl("status", str(cluster.cluster_file), "--json", check=False).stdout)
        last["with_capacity"] = {c["path"] for c in status["cells"] if c["capacity"]}
        return ("NOT HEALTHY" not in last["text"] and last["text"].count("free: ") == len(LEAVES)
                and last["with_capacity"] == LEAVES)

    deadline = time.monotonic() + 60
    while not every_capacity():
        assert time.monotonic() < deadline, f"cells with capacity: {sorted(last['with_capacity'])}\n{last['text']}"
        time.sleep(1)


def test_a_peer_without_the_cluster_keys_gets_no_answer(cluster: RunningCluster) -> None:
    cfg = config(cluster)
    router = cfg.cell("west").router

    async def ask(keys: Any, server_key: bytes | None) -> Any:
        client = RpcClient(keys)
        try:
            return await client.call_address(router, "table", {}, RequestContext(), 1.0, server_key, "directory")
        finally:
            client.close()

    known = asyncio.run(ask(security.load_keys(cfg.state_dir, security.OPERATOR), cfg.router_key("west")))
    assert "members" in known  # the operator's key is on the allowlist: the router does answer
    with pytest.raises(errors.RpcTimeout):  # a well-formed CURVE client whose key is foreign
        asyncio.run(ask(security.throwaway_keys(), cfg.router_key("west")))
    with pytest.raises(errors.RpcTimeout):  # plaintext
        asyncio.run(ask(None, None))


def test_boots_spread_over_every_cell_and_site(cluster: RunningCluster, booted: dict[str, Any]) -> None:
    cells = [mappings(cluster)[i] for i in booted["ids"]]
    assert set(cells) == LEAVES
    assert {p.split("!")[0] for p in cells} == {"east", "central", "west"}
    per_cell = {p: cells.count(p) for p in LEAVES}
    assert max(per_cell.values()) - min(per_cell.values()) <= 4, per_cell  # spread, not piled up
    west = api(cluster, "POST", "/servers", booted["demo"], json={"server": {
        "name": "zoned", "flavorRef": "1", "imageRef": booted["image"], "availability_zone": "west"}})
    assert west.status_code == 202
    assert mappings(cluster)[west.json()["server"]["id"]].startswith("west!")
    zoned = west.json()["server"]["id"]
    assert api(cluster, "DELETE", f"/servers/{zoned}", booted["demo"]).status_code == 204
    wait_for("the zoned server gone", lambda: api(cluster, "GET", f"/servers/{zoned}", booted["demo"])
             .status_code == 404, timeout=30)


def test_the_postgresql_cell_holds_its_servers_beside_sqlite_cells(cluster: RunningCluster,
                                                                  booted: dict[str, Any]) -> None:
    """west!west-b's DB is a database of the managed PostgreSQL, every other leaf's a SQLite file; the
    servers the API mapped to west!west-b are exactly the live rows of that PostgreSQL database."""
    if PG_MISSING is not None:
        pytest.skip(PG_MISSING)
    dbs = {cell.path: cell.db for cell in config(cluster).cells if cell.path in LEAVES}
    assert dbs.pop(PG_CELL).startswith("postgresql+psycopg://cc@/cell_west_west-b?host=")
    assert all(url.startswith("sqlite+aiosqlite:///") for url in dbs.values()), dbs
    engine = create_engine(config(cluster).cell(PG_CELL).db)
    try:
        with engine.connect() as conn:
            rows = set(conn.execute(text("SELECT uuid FROM instances WHERE NOT deleted")).scalars())
    finally:
        engine.dispose()
    mapped = {i for i in booted["ids"] if mappings(cluster)[i] == PG_CELL}
    assert mapped and rows == mapped


def test_paging_across_cells_matches_the_sorted_union(cluster: RunningCluster, booted: dict[str, Any]) -> None:
    demo = booted["demo"]
    for query, key in (("", None), ("&sort_key=display_name&sort_dir=asc", "name")):
        full = [s["id"] for s in listing(cluster, demo, query)]
        paged: list[str] = []
        marker = ""
        while True:
            resp = api(cluster, "GET", f"/servers?limit=7{query}{marker}", demo)
            page = resp.json()["servers"]
            paged += [s["id"] for s in page]
            if "servers_links" not in resp.json():
                break
            marker = f"&marker={page[-1]['id']}"
        assert paged == full and set(full) >= set(booted["ids"])
        if key == "name":
            names = [s["name"] for s in listing(cluster, demo, query)]
            assert names == sorted(names)
        else:
            created = [s["created"] for s in listing(cluster, demo)]
            assert created == sorted(created, reverse=True)  # default: newest first, across every cell
    since = listing(cluster, demo, "&changes-since=2000-01-01T00:00:00Z")
    assert {s["id"] for s in since} >= set(booted["ids"])


def test_a_frozen_cell_lists_as_unknown_and_comes_back_whole(cluster: RunningCluster,
                                                             booted: dict[str, Any]) -> None:
    demo, cell = booted["demo"], PG_CELL  # on PostgreSQL where installed: its clients die with the cell
    theirs = {i for i, p in mappings(cluster).items() if p == cell}
    records = {s["id"]: (s["name"], s["created"], s["flavor"]) for s in listing(cluster, demo) if s["id"] in theirs}
    before = {s["id"] for s in listing(cluster, demo)}
    pids = cell_pids(cluster, cell)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # every process of the cell: silent, as a dead cell
    try:
        started = time.monotonic()
        servers = listing(cluster, demo)
        elapsed = time.monotonic() - started
        assert elapsed < config(cluster).list_bound + 1.0, elapsed
        unknown = {s["id"] for s in servers if s["status"] == "UNKNOWN"}
        assert unknown == theirs and {s["id"] for s in servers} == before
        assert all(set(s) == {"id", "name", "status", "links", "tenant_id", "user_id", "created"}
                   for s in servers if s["status"] == "UNKNOWN")
        for i in range(3):  # boots go to the other cells
            resp = api(cluster, "POST", "/servers", demo,
                       json={"server": {"name": f"during{i}", "flavorRef": "1", "imageRef": booted["image"]}})
            assert resp.status_code == 202, resp.text
            assert mappings(cluster)[resp.json()["server"]["id"]] != cell
        status = cluster.cellctl("status", str(cluster.cluster_file), check=False)
        assert status.returncode == 1
        assert "DOWN" in next(line for line in status.stdout.splitlines() if f"cell {cell} " in line)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)  # a stopped process dies of SIGKILL too; the supervisor restarts the cell
    back = wait_for("the cell back", lambda: not any(
        s["status"] == "UNKNOWN" for s in listing(cluster, demo)) and listing(cluster, demo), timeout=90)
    ids = {s["id"] for s in back}
    assert before <= ids and theirs <= ids
    assert {s["id"]: (s["name"], s["created"], s["flavor"]) for s in back if s["id"] in theirs} == records
    # test:///default guests live inside the compute process: the restarted computes find them gone and
    # mark them stopped (start-up reconciliation), ACTIVE until then; real QEMU guests outlive the worker
    assert all(s["status"] in ("ACTIVE", "SHUTOFF") for s in back if s["id"] in theirs)


def test_a_cut_site_is_down_until_its_link_returns(cluster: RunningCluster, booted: dict[str, Any]) -> None:
    demo = booted["demo"]
    central = {i for i, p in mappings(cluster).items() if p.startswith("central!")}
    topology = Topology.from_cluster(config(cluster))
    topology.set_site_link("central", up=False)
    try:
        wait_for("central listed as UNKNOWN", lambda: {
            s["id"] for s in listing(cluster, demo) if s["status"] == "UNKNOWN"} == central, timeout=30)
        started = time.monotonic()
        listing(cluster, demo)
        assert time.monotonic() - started < config(cluster).list_bound + 1.0
    finally:
        topology.set_site_link("central", up=True)
    wait_for("central back", lambda: all(
        s["status"] == "ACTIVE" for s in listing(cluster, demo) if s["id"] in central), timeout=60)
