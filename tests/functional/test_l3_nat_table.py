"""The routers' NAT table (node/network/l3.py) changed for real by nft, in network namespaces this test
makes: an associate or disassociate sends only that floating IP's three elements (no rule rewritten,
however many floating IPs there are), and leaves exactly the table a whole render of the same state
loads; the first sync of a process, a change of anything but floating IPs, a change the table
refuses (deleted behind the process's back) and a sync that changes nothing (the periodic re-sync,
which restores an element removed by hand) render it whole; a router gone leaves no NAT rule."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pyroute2 import NetNS  # type: ignore[import-untyped]

from node.network.l3 import L3_TABLE, NatApplied, render_l3_nftables, sync_l3
from node.network.linux import _run

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
                                reason="needs root, nft and iproute2 (network namespaces)")

TAG = uuid.uuid4().hex[:4]
HOST, WITNESS = f"ccnat-{TAG}-h", f"ccnat-{TAG}-w"
EXT = {"id": "e1", "bridge": "brqe1", "cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1", "table": 11000}
SUBNET = {"cidr": "10.0.0.0/16", "bridge": "brq0123456789a"}


def l3_with(fips: int, snat: bool = True) -> dict[str, Any]:
    """One router on `public` with `fips` floating IPs associated (203.0.113.10+i -> 10.0.0.10+i)."""
    floating = [{"address": f"203.0.113.{10 + i}", "fixed_ip": f"10.0.{i // 200}.{10 + i % 200}"} for i in range(fips)]
    router = {"id": "r1", "external_network_id": "e1", "address": "203.0.113.2", "snat": snat,
              "subnets": [SUBNET], "floating_ips": floating}
    return {"external_networks": [EXT], "routers": [router]}


def nft(ns: str, *argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(["ip", "netns", "exec", ns, "nft", *argv], input=stdin, capture_output=True, text=True,
                          timeout=10, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def namespaces() -> Iterator[None]:
    for ns in (HOST, WITNESS):
        subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        yield
    finally:
        for ns in (HOST, WITNESS):
            subprocess.run(["ip", "netns", "del", ns], check=False, timeout=10)


def sync(l3: dict[str, Any], applied: NatApplied | None) -> NatApplied:
    ipr = NetNS(HOST)
    try:
        return sync_l3(ipr, l3, _run, lambda argv: ["ip", "netns", "exec", HOST, *argv], applied)
    finally:
        ipr.close()


def as_rendered_whole(l3: dict[str, Any]) -> str:
    """The table a whole render of `l3` loads (in a namespace of its own)."""
    nft(WITNESS, "-f", "-", stdin=render_l3_nftables(l3))
    return nft(WITNESS, "list", "table", "ip", L3_TABLE)


def nat_rules(table: str) -> int:
    return sum(1 for line in table.splitlines() if "snat to" in line or "dnat to" in line)


def test_floating_ip_changes_are_element_changes_and_leave_the_whole_render(namespaces: None) -> None:
    applied = sync(l3_with(1), None)
    assert applied.full  # the first sync of a process: the reconcile, whole
    assert nft(HOST, "list", "table", "ip", L3_TABLE) == as_rendered_whole(l3_with(1))

    for before, after in ((1, 2), (2, 10), (10, 9), (9, 100), (100, 1)):
        applied = sync(l3_with(after), applied)
        table = nft(HOST, "list", "table", "ip", L3_TABLE)
        assert not applied.full
        assert applied.statements == 3 * abs(after - before)  # three elements per floating IP changed, no rule
        assert table == as_rendered_whole(l3_with(after))
        assert nat_rules(table) == 3  # DNAT map, SNAT map, the subnet's SNAT: whatever the floating IPs

    moved = l3_with(1)
    moved["routers"][0]["floating_ips"][0]["fixed_ip"] = "10.0.0.99"  # re-associated to another port
    applied = sync(moved, applied)
    assert (applied.full, applied.statements) == (False, 6)  # its old elements out, its new ones in
    assert nft(HOST, "list", "table", "ip", L3_TABLE) == as_rendered_whole(moved)

    nft(HOST, "delete", "element", "ip", L3_TABLE, "fip_dnat", "{ 203.0.113.10 }")  # behind its back
    applied = sync(moved, applied)  # nothing changed (the periodic re-sync): whole, which restores it
    assert applied.full and nft(HOST, "list", "table", "ip", L3_TABLE) == as_rendered_whole(moved)


def test_other_changes_and_a_table_changed_behind_its_back_are_rendered_whole(namespaces: None) -> None:
    applied = sync(l3_with(2), None)
    applied = sync(l3_with(2, snat=False), applied)  # a rule changes: whole
    assert applied.full and nft(HOST, "list", "table", "ip", L3_TABLE) == as_rendered_whole(l3_with(2, snat=False))

    nft(HOST, "delete", "table", "ip", L3_TABLE)
    applied = sync(l3_with(3, snat=False), applied)  # the element change is refused: reconciled whole
    assert applied.full and nft(HOST, "list", "table", "ip", L3_TABLE) == as_rendered_whole(l3_with(3, snat=False))

    sync({"external_networks": [EXT], "routers": []}, applied)  # the router deleted
    ruleset = nft(HOST, "list", "ruleset")
    assert "snat to" not in ruleset and "dnat to" not in ruleset and "203.0.113" not in ruleset, ruleset
