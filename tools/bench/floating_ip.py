"""Floating-IP benchmark (issue 17): the real network controller (SQLite cell DB) applying the network
host through the real Linux driver into namespaces this run makes (never the root namespace):

    ccb-<tag>-nh   the network host (router-attached bridge, external bridge with uplink ext0)
    ccb-<tag>-out  the "outside" on the external network (203.0.113.1)
    ccb-<tag>-g    a guest: a veth on the project network's bridge holding its port's fixed IP

Printed, in the same run: the probe's own cost (a ping of an associated floating IP), the p50 of
associate -> first answered ping and of disassociate -> no answer (which includes one unanswered
probe's 0.2 s wait), each as a ratio to the probe;
then, against the number of associated floating IPs: the NAT rules in the table (constant: the
floating IPs are map elements, three each, linear), the lines one associate sends nft (its three
elements) and those of a whole render (the reconcile of a restart), and the time in nft of each,
with the associate's as a ratio to the reconcile's at the same size.

    python -m tools.bench.floating_ip [--rounds 20] [--sizes 1,10,100]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from cells.context import RequestContext
from cells.db.schema import create_schema
from cells.network.controller import NetworkController
from node.network import validate
from node.network.l3 import L3_TABLE, UPLINK
from node.network.linux import LinuxNetworkDriver, detect_capabilities

DEMO = RequestContext(project="demo", roles=("member",))
ADMIN = RequestContext(project="admin", roles=("admin",))
TAG = uuid.uuid4().hex[:4]
NH, OUT, GUEST = f"ccb-{TAG}-nh", f"ccb-{TAG}-out", f"ccb-{TAG}-g"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done


class NamespacePlumbing:
    """The network host's plumbing (node/network/network_host.py) inside the bench's namespace."""

    host = "nh"
    tunnel_ip = "127.0.0.1"

    def __init__(self, state: Path) -> None:
        self.driver = LinuxNetworkDriver(str(state), netns=NH, capabilities=detect_capabilities())

    async def start(self, service: Any) -> None:
        pass

    async def apply(self, config: dict[str, Any]) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.driver.sync, validate.clean(config))

    async def stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.driver.stop_all_dhcp)


def answers(address: str) -> bool:
    return sh("ip", "netns", "exec", OUT, "ping", "-c", "1", "-W", "0.2", address, check=False).returncode == 0


async def until(want: bool, address: str, limit: float = 10.0) -> float:
    """Seconds until a ping of `address` from the outside is answered (want) or goes unanswered."""
    start = time.perf_counter()
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, answers, address) != want:
        if time.perf_counter() - start > limit:
            raise RuntimeError(f"{address} still {'silent' if want else 'answering'} after {limit} s")
    return time.perf_counter() - start


def make_namespaces() -> None:
    for ns in (NH, OUT, GUEST):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", UPLINK, "netns", NH, "type", "veth", "peer", "name", "eth0", "netns", OUT)
    sh("ip", "-n", OUT, "addr", "add", "203.0.113.1/24", "dev", "eth0")
    for ns, dev in ((OUT, "eth0"), (NH, UPLINK)):
        sh("ip", "-n", ns, "link", "set", dev, "up")


async def run(rounds: int, sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'cell.db'}"
        await create_schema(url)
        make_namespaces()
        plumbing = NamespacePlumbing(Path(tmp) / "nh")
        c = NetworkController(db_url=url, plumbing=plumbing)
        await c.start()
        try:
            await measure(c, plumbing, rounds, sizes)
        finally:
            await c.stop()
            for ns in (NH, OUT, GUEST):
                sh("ip", "netns", "del", ns, check=False)


async def measure(c: NetworkController, plumbing: NamespacePlumbing, rounds: int, sizes: list[int]) -> None:
    public = await c.network_create(ADMIN, {"name": "public", "router:external": True})
    await c.subnet_create(ADMIN, {"network_id": public["id"], "cidr": "203.0.113.0/24"})
    net = await c.network_create(DEMO, {"name": "inside"})
    subnet = await c.subnet_create(DEMO, {"network_id": net["id"], "cidr": "10.98.0.0/16"})
    router = await c.router_create(DEMO, {"name": "r", "external_gateway_info": {"network_id": public["id"]}})
    await c.router_add_interface(DEMO, router["id"], {"subnet_id": subnet["id"]})
    port = await c.port_create(DEMO, {"network_id": net["id"]})
    fixed = port["fixed_ips"][0]["ip_address"]
    sh("ip", "link", "add", "gst0", "netns", NH, "type", "veth", "peer", "name", "eth0", "netns", GUEST)
    sh("ip", "-n", NH, "link", "set", "gst0", "master", "brq" + net["id"][:11], "up")
    sh("ip", "-n", GUEST, "addr", "add", f"{fixed}/16", "dev", "eth0")
    sh("ip", "-n", GUEST, "link", "set", "eth0", "up")
    sh("ip", "-n", GUEST, "route", "add", "default", "via", str(subnet["gateway_ip"]))
    fip = await c.floatingip_create(DEMO, {"floating_network_id": public["id"]})
    address = str(fip["floating_ip_address"])

    probe, on, off = [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        await c.floatingip_update(DEMO, fip["id"], {"port_id": port["id"]})
        on.append(time.perf_counter() - start + await until(True, address))
        probe.append(await until(True, address))  # associated already: the probe's own round trip
        start = time.perf_counter()
        await c.floatingip_update(DEMO, fip["id"], {"port_id": None})
        off.append(time.perf_counter() - start + await until(False, address))
    base = statistics.median(probe)
    print(f"probe (ping of an associated floating IP) p50 {base * 1000:7.1f} ms   1.00x")
    for what, times in (("associate -> first answer", on), ("disassociate -> no answer", off)):
        p50 = statistics.median(times)
        print(f"{what:<25} p50 {p50 * 1000:7.1f} ms  {p50 / base:5.2f}x   (p90 {sorted(times)[int(len(times) * 0.9) - 1] * 1000:.1f} ms)")

    driver = plumbing.driver
    print("\nfloating IPs  NAT rules  elements  nft lines: associate / reconcile   nft ms: associate / reconcile")
    made = 0
    for size in sizes:
        while made < size:  # each one associated as a user does: one change applied by the host
            p = await c.port_create(DEMO, {"network_id": net["id"]})
            await c.floatingip_create(DEMO, {"floating_network_id": public["id"], "port_id": p["id"]})
            made += 1
        associate = driver.l3_applied  # the last of them: what one associate sent nft
        driver.l3_applied = None  # as after a restart: the next apply reconciles the table whole
        await c.router_update(DEMO, router["id"], {"name": f"r{size}"})
        reconcile = driver.l3_applied
        assert associate is not None and reconcile is not None and reconcile.full and not associate.full
        table = sh("ip", "netns", "exec", NH, "nft", "list", "table", "ip", L3_TABLE).stdout
        rules = sum(1 for line in table.splitlines() if "dnat to" in line or "snat to" in line)
        listed = json.loads(sh("ip", "netns", "exec", NH, "nft", "-j", "list", "table", "ip", L3_TABLE).stdout)
        elements = sum(len(item[kind].get("elem", [])) for item in listed["nftables"]
                       for kind in ("map", "set") if kind in item)
        ratio = associate.seconds / reconcile.seconds
        print(f"{size:>12}  {rules:>9}  {elements:>8}  {associate.statements:>14} / {reconcile.statements:<9}"
              f"   {associate.seconds * 1000:>11.1f} / {reconcile.seconds * 1000:.1f}  ({ratio:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--sizes", default="1,10,100")
    args = parser.parse_args()
    asyncio.run(run(args.rounds, [int(s) for s in args.sizes.split(",")]))


if __name__ == "__main__":
    main()
