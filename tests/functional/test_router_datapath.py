"""Routers and floating IPs for real (issue 17), with the unmodified `openstack` CLI: a netns
cluster (tools/devcluster.running_netns_cluster) whose ctl host is the cell's network host and
whose external network `public` is wired to a namespace standing for the internet
(cc-NAME-outside, 203.0.113.1). The guest is a real QEMU guest (tiny-linux, TCG) on a compute
host; its user data starts busybox httpd on ports 8080 and 8081 and pings the outside.

Checked, one cluster for all of it (the suite's time budget): the guest reaches the outside
through the router's SNAT (the outside has no route to the project subnet, so only a translated
ping is answered); from the outside the floating IP answers ping and TCP 8080, which the server's
security group opens, and not 8081, which it does not; `server remove floating ip` and
`floating ip delete` take it away at once (the next probe, under 2 s later, gets nothing, and
a steady ping started before the removal gets no answer after the call returned); a
network controller killed after its NAT table and routing rule were removed by hand rebuilds
them when it starts again; removing the router leaves no router rule in `nft list ruleset`.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.test_real_guests import _unavailable
from tools.devcluster import RunningCluster, running_netns_cluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
TAG = uuid.uuid4().hex[:4]
NAME = f"rt{TAG}"
EXTERNAL = "203.0.113.0/24"
OUTSIDE = "203.0.113.1"
GUEST_SCRIPT = f"""#!/bin/sh
mkdir -p /tmp/www && echo CELLCLOUD-HTTP-{TAG} > /tmp/www/index.html
httpd -p 8080 -h /tmp/www; httpd -p 8081 -h /tmp/www
for i in 1 2 3 4 5 6 7 8 9 10; do ping -c 1 -W 1 {OUTSIDE} >/dev/null 2>&1 && {{ echo CELLCLOUD-SNAT-OK; break; }}
  [ $i = 10 ] && echo CELLCLOUD-SNAT-FAIL; done
"""


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "netns hosts need root"
    if shutil.which("ip") is None or shutil.which("nft") is None or shutil.which("dnsmasq") is None:
        return "routers need iproute2 (ip netns), nft and dnsmasq"
    if shutil.which("curl") is None:
        return "the outside namespace probes TCP with curl"
    return _unavailable()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    with running_netns_cluster(tmp_path_factory.mktemp("router"), NAME, ("n1",), external_cidr=EXTERNAL) as c:
        yield c


def outside(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", f"cc-{NAME}-outside", *argv], capture_output=True, text=True,
                          timeout=30, check=False)


def on_network_host(*argv: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", f"cc-{NAME}-ctl", *argv], capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout


def pings(address: str) -> bool:
    return outside("ping", "-c", "1", "-W", "1", address).returncode == 0


def http(address: str, port: int) -> str | None:
    """The page served on address:port as the outside sees it, None when nothing answers within 1 s."""
    done = outside("curl", "-sS", "-m", "1", f"http://{address}:{port}/")
    return done.stdout.strip() if done.returncode == 0 else None


def test_snat_floating_ip_security_group_and_restart(cluster: RunningCluster, tmp_path: Path) -> None:
    ok = cluster.ok
    # the project's own network, made on first use (the external network's subnet is listed too)
    (subnet,) = [s for s in ok("subnet", "list", "-f", "json") if s["Subnet"] != EXTERNAL]
    ok("router", "create", f"r-{TAG}")
    ok("router", "set", "--external-gateway", "public", f"r-{TAG}")
    ok("router", "add", "subnet", f"r-{TAG}", subnet["ID"])
    group = f"web-{TAG}"
    ok("security", "group", "create", group)
    ok("security", "group", "rule", "create", "--protocol", "icmp", group)
    ok("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "8080", group)
    script = tmp_path / "user-data"
    script.write_text(GUEST_SCRIPT)
    server = ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-linux", "--network", subnet["Network"],
                "--security-group", group, "--user-data", str(script), "--wait", "-f", "json", f"vm-{TAG}")
    assert server["status"] == "ACTIVE", server

    def console() -> str:
        return str(cluster.ok("console", "log", "show", f"vm-{TAG}"))
    out = wait_for("the guest's user data done", lambda: "CELLCLOUD-USERDATA-END" in (o := console()) and o, 150)
    assert "CELLCLOUD-SNAT-OK" in out, out[-3000:]  # the outside answered a ping it can only route to the router

    fip = ok("floating", "ip", "create", "public", "-f", "json")["floating_ip_address"]
    assert fip != OUTSIDE and not pings(fip)
    ok("server", "add", "floating", "ip", f"vm-{TAG}", fip)
    assert wait_for(f"{fip} answers", lambda: pings(fip), 10)
    assert http(fip, 8080) == f"CELLCLOUD-HTTP-{TAG}"  # the group opens 8080 ...
    assert http(fip, 8081) is None  # ... and not 8081, though the guest serves it: dropped at its port

    steady = subprocess.Popen(["ip", "netns", "exec", f"cc-{NAME}-outside", "ping", "-D", "-i", "0.2", "-w", "12",
                               fip], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(1.5)  # one ICMP flow, kept alive across the removal
    ok("server", "remove", "floating", "ip", f"vm-{TAG}", fip)
    removed, started = time.time(), time.monotonic()
    assert not pings(fip) and http(fip, 8080) is None
    assert time.monotonic() - started < 2.5  # the very next probes (1 s each) got nothing
    answered = [float(line[1:line.index("]")]) for line in steady.communicate(timeout=30)[0].splitlines()
                if "bytes from" in line]
    assert answered and min(answered) < removed - 1  # the steady ping was answered before ...
    assert max(answered) < removed  # ... and never once the call had returned: its flow was cut too

    # a restarted network controller rebuilds what was removed behind its back
    ok("server", "add", "floating", "ip", f"vm-{TAG}", fip)
    assert wait_for(f"{fip} answers again", lambda: http(fip, 8080), 10)
    subprocess.run(["ip", "netns", "exec", f"cc-{NAME}-ctl", "nft", "delete", "table", "ip", "cellcloud_l3"],
                   check=True, timeout=10)
    rules = [line.split(":")[1].strip() for line in on_network_host("ip", "-4", "rule").splitlines()
             if line.startswith("1100:")]
    assert rules, "a policy-routing rule per router subnet"
    for rule in rules:
        subprocess.run(["ip", "-n", f"cc-{NAME}-ctl", "rule", "del", "pref", "1100", *rule.split()], check=True,
                       timeout=10)
    assert http(fip, 8080) is None
    old = cluster.signal("cell1/network", signal.SIGKILL)
    wait_for("the network controller restarted", lambda: cluster.pid("cell1/network") != old, 60)
    assert wait_for(f"{fip} answers after the restart", lambda: http(fip, 8080), 60)

    ok("floating", "ip", "delete", fip)
    started = time.monotonic()
    assert not pings(fip) and time.monotonic() - started < 2.5

    ok("server", "delete", "--wait", f"vm-{TAG}")
    ok("router", "remove", "subnet", f"r-{TAG}", subnet["ID"])
    ok("router", "delete", f"r-{TAG}")
    ruleset = on_network_host("nft", "list", "ruleset")
    assert "snat to" not in ruleset and "dnat to" not in ruleset and "203.0.113" not in ruleset, ruleset
    assert "1100:" not in on_network_host("ip", "-4", "rule")
