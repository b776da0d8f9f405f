"""Real guests on the network (slow): a cluster whose controller and two computes are
netns hosts (tools/netns.py, made by `cellctl up`), each compute on qemu:///embed
inside its namespace, so the network agents plumb for real (bridge, VXLAN between
the hosts, dnsmasq, nftables, the 169.254.169.254 metadata listener) without
touching the root namespace.

Checked through the API and the guests' own consoles: a guest leases exactly its
allocated fixed IP, reads its instance id and runs its user data from the metadata
service, and the gateway pings it; a guest of the same project on the other host
pings it over VXLAN; a guest of another project, on the same host, cannot reach it
(while it reaches its own gateway). Deleting servers removes their taps and DHCP
entries.

Routers and floating IPs (issue 17) on the same cluster: ctl, the host of the cell's network
controller, is the network host, and the external network `public` is wired to a namespace
standing for the internet (cc-NAME-outside, 203.0.113.1; tools/netns.py). A real guest's user
data starts busybox httpd on ports 8080 and 8081 and pings the outside: it reaches it through
the router's SNAT (the outside has no route to the project subnet, so only a translated ping is
answered); from the outside the floating IP answers ping and TCP 8080, which the server's
security group opens, and not 8081, which it does not; `server remove floating ip` and
`floating ip delete` take it away at once (the next probe, under 2 s later, gets nothing, and a
steady ping started before the removal gets no answer after the call returned); a network
controller killed after its NAT table and routing rules were removed by hand rebuilds them (the
same table, rule for rule, element for element) when it starts again; removing the router leaves no router rule in `nft list ruleset`.
"""
from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional.test_real_guests import _unavailable
from tools.devcluster import RunningCluster, running_netns_cluster, wait_for

# real guests or netns hosts: the module's cluster comes up inside its first test's timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
TAG = uuid.uuid4().hex[:4]
NAME = f"gn{TAG}"
HOSTS = ("n1", "n2")
EXTERNAL = "203.0.113.0/24"
OUTSIDE = "203.0.113.1"
GUEST_SCRIPT = f"""#!/bin/sh
mkdir -p /tmp/www && echo CELLCLOUD-HTTP-{TAG} > /tmp/www/index.html
httpd -p 8080 -h /tmp/www; httpd -p 8081 -h /tmp/www
for i in 1 2 3 4 5 6 7 8 9 10; do ping -c 1 -W 1 {OUTSIDE} >/dev/null 2>&1 && {{ echo CELLCLOUD-SNAT-OK; break; }}
  [ $i = 10 ] && echo CELLCLOUD-SNAT-FAIL; done
"""


def _missing() -> str | None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "netns hosts need root and iproute2 (ip netns)"
    for tool in ("dnsmasq", "nft", "curl"):  # curl: the outside's TCP probe
        if shutil.which(tool) is None:
            return f"guest networking needs {tool}"
    return _unavailable()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    with running_netns_cluster(tmp_path_factory.mktemp("guestnet"), NAME, HOSTS, external_cidr=EXTERNAL) as c:
        yield c


class Api:
    def __init__(self, c: RunningCluster, who: str) -> None:
        self.c = c
        self.h = {"X-Auth-Token": c.token(who)}

    def __call__(self, method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(method, f"{self.c.endpoint}{path}", headers=self.h, timeout=30, **kw)

    def boot(self, name: str, network: str, script: str, hints: dict[str, Any] | None = None,
             groups: tuple[str, ...] = ("default",), key_name: str | None = None) -> str:
        image = self("GET", "/image/v2/images?name=tiny-linux").json()["images"][0]["id"]
        body: dict[str, Any] = {"server": {
            "name": name, "flavorRef": "1", "imageRef": image, "networks": [{"uuid": network}],
            "security_groups": [{"name": g} for g in groups],
            "user_data": base64.b64encode(script.encode()).decode()}}
        if key_name:
            body["server"]["key_name"] = key_name
        if hints:
            body["os:scheduler_hints"] = hints
        resp = self("POST", "/compute/v2.1/servers", json=body)
        assert resp.status_code == 202, resp.text
        return str(resp.json()["server"]["id"])

    def own_networks(self) -> list[dict[str, Any]]:
        """The networks a guest may boot on (every project also sees the external network `public`)."""
        nets = self("GET", "/network/v2.0/networks").json()["networks"]
        return [n for n in nets if not n.get("router:external")]

    def server(self, sid: str) -> dict[str, Any]:
        return dict(self("GET", f"/compute/v2.1/servers/{sid}").json()["server"])

    def active(self, sid: str) -> dict[str, Any]:
        got = wait_for(f"{sid} ACTIVE", lambda: (s := self.server(sid))["status"] in ("ACTIVE", "ERROR") and s, 180)
        assert got["status"] == "ACTIVE", got.get("fault")
        return dict(got)

    def console_until(self, sid: str, marker: str, timeout: float = 150) -> str:
        def console() -> str:
            r = self("POST", f"/compute/v2.1/servers/{sid}/action", json={"os-getConsoleOutput": {}})
            return str(r.json()["output"]) if r.status_code == 200 else ""
        return str(wait_for(f"{marker} in the console of {sid}", lambda: marker in (o := console()) and o, timeout))

    def port_of(self, sid: str) -> dict[str, Any]:
        (port,) = self("GET", f"/network/v2.0/ports?device_id={sid}").json()["ports"]
        return dict(port)

    def delete(self, sid: str) -> None:
        assert self("DELETE", f"/compute/v2.1/servers/{sid}").status_code == 204
        wait_for(f"{sid} gone", lambda: self("GET", f"/compute/v2.1/servers/{sid}").status_code == 404, 60)


def namespace(host: str) -> str:
    return f"cc-{NAME}-{host}"


def in_host(host: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", namespace(host), *argv], capture_output=True, text=True,
                          timeout=30, check=False)


def host_with(device: str) -> str | None:
    found = [h for h in HOSTS if in_host(h, "ip", "link", "show", device).returncode == 0]
    assert len(found) <= 1, f"{device} exists on {found}"
    return found[0] if found else None


def pinger(target: str, first: str | None = None) -> str:
    """User data: report whether `target` (after `first`, when given) answers within ~10 tries."""
    def probe(ip: str, tag: str) -> str:
        return (f"for i in 1 2 3 4 5 6 7 8 9 10; do ping -c 1 -W 1 {ip} >/dev/null 2>&1 && "
                f"{{ echo CELLCLOUD-{tag}-OK {ip}; break; }}; [ $i = 10 ] && echo CELLCLOUD-{tag}-FAIL {ip}; done\n")
    return "#!/bin/sh\n" + (probe(first, "GW") if first else "") + probe(target, "PING")


def test_guest_leases_its_ip_runs_its_user_data_and_is_pinged_by_the_gateway(cluster: RunningCluster,
                                                                             tmp_path: Path) -> None:
    demo = Api(cluster, "demo")
    nets = demo.own_networks()
    assert nets, "the project's own network is made on first use"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"guest@{TAG}", "-f", str(tmp_path / "id")],
                   check=True, timeout=30)
    key = (tmp_path / "id.pub").read_text().strip()
    made = demo("POST", "/compute/v2.1/os-keypairs", json={"keypair": {"name": f"k{TAG}", "public_key": key}})
    assert made.status_code == 200, made.text
    script = ("#!/bin/sh\necho CELLCLOUD-SAYS-$((6*7))\n"
              "echo KEY=$(wget -q -O - http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key)\n")
    sid = demo.boot("netvm", nets[0]["id"], script, key_name=f"k{TAG}")
    (ip,) = [a["addr"] for addrs in demo.active(sid)["addresses"].values() for a in addrs]

    out = demo.console_until(sid, "CELLCLOUD-READY")
    assert f"CELLCLOUD-NET dhcp bound eth0 ip={ip}/" in out, out[-3000:]
    assert f"CELLCLOUD-METADATA instance-id={sid}" in out, out[-3000:]  # found by its source address
    assert "CELLCLOUD-USERDATA-BEGIN\nCELLCLOUD-SAYS-42\n" in out.replace("\r", ""), out[-3000:]
    assert f"KEY={key}" in out, out[-3000:]  # the key pair's public key, served to the guest

    gateway_ip = demo("GET", f"/network/v2.0/subnets?network_id={nets[0]['id']}").json()["subnets"][0]["gateway_ip"]
    (gateway,) = [h for h in HOSTS if f" {gateway_ip}/" in in_host(h, "ip", "-o", "-4", "addr").stdout]
    md = in_host(gateway, "curl", "-s", "-m", "5", "http://169.254.169.254/latest/meta-data/instance-id")
    # the host itself is no guest: the listeners hear only what arrives on a network's bridge
    assert md.returncode == 7 and md.stdout == "", (md.returncode, md.stdout + md.stderr)
    ping = in_host(gateway, "ping", "-c", "2", "-W", "3", ip)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    port = demo.port_of(sid)
    tap = "tap" + port["id"][:11]
    assert host_with(tap) is not None
    demo.delete(sid)
    wait_for("its tap gone", lambda: host_with(tap) is None, 30)
    hosts = list(Path(cluster.state, "hosts", gateway, "network", "dhcp").glob("*/hosts"))
    assert hosts  # the same sync rewrites the DHCP hosts file just after it removes the tap
    wait_for("its DHCP entry gone", lambda: all(port["mac_address"] not in h.read_text() for h in hosts), 30)


def test_guests_of_a_project_reach_each_other_across_hosts_and_another_project_cannot(
        cluster: RunningCluster) -> None:
    demo, admin = Api(cluster, "demo"), Api(cluster, "admin")
    net = demo.own_networks()[0]["id"]
    first = demo.boot("target", net, "#!/bin/sh\necho CELLCLOUD-TARGET\n")
    (target_ip,) = [a["addr"] for addrs in demo.active(first)["addresses"].values() for a in addrs]
    demo.console_until(first, "CELLCLOUD-READY")

    peer = demo.boot("peer", net, pinger(target_ip), {"different_host": first})
    demo.active(peer)

    other = admin("POST", "/network/v2.0/networks", json={"network": {"name": f"other-{TAG}"}}).json()["network"]
    subnet = admin("POST", "/network/v2.0/subnets", json={"subnet": {
        "network_id": other["id"], "cidr": "10.99.0.0/24", "ip_version": 4}})
    assert subnet.status_code == 201, subnet.text
    outsider = admin.boot("outsider", other["id"], pinger(target_ip, first=subnet.json()["subnet"]["gateway_ip"]),
                          {"same_host": first})
    admin.active(outsider)

    taps = {sid: "tap" + api.port_of(sid)["id"][:11] for api, sid in ((demo, first), (demo, peer),
                                                                       (admin, outsider))}
    placed = {sid: host_with(tap) for sid, tap in taps.items()}
    assert placed[peer] != placed[first] and placed[outsider] == placed[first], placed

    peer_out = demo.console_until(peer, "CELLCLOUD-READY")
    assert f"CELLCLOUD-PING-OK {target_ip}" in peer_out, peer_out[-3000:]  # over VXLAN between the hosts
    outsider_out = admin.console_until(outsider, "CELLCLOUD-READY")
    assert "CELLCLOUD-GW-OK" in outsider_out, outsider_out[-3000:]  # its own network works...
    assert f"CELLCLOUD-PING-FAIL {target_ip}" in outsider_out, outsider_out[-3000:]  # ...the other project's does not

    for api, sid in ((demo, first), (demo, peer), (admin, outsider)):
        api.delete(sid)
    wait_for("every tap gone", lambda: all(host_with(tap) is None for tap in taps.values()), 30)
    assert admin("DELETE", f"/network/v2.0/networks/{other['id']}").status_code == 204


def test_security_groups_admit_a_peer_only_once_the_server_joins_its_group(cluster: RunningCluster) -> None:
    """Default groups admit ingress from their own members only: a server in a group of its
    own is unreachable from the project's other guests until `server add security group`."""
    demo = Api(cluster, "demo")
    net = demo.own_networks()[0]["id"]
    quiet = demo("POST", "/network/v2.0/security-groups", json={"security_group": {"name": f"quiet-{TAG}"}})
    assert quiet.status_code == 201, quiet.text
    loner = demo.boot("loner", net, "#!/bin/sh\necho CELLCLOUD-LONER\n", groups=(f"quiet-{TAG}",))
    (loner_ip,) = [a["addr"] for addrs in demo.active(loner)["addresses"].values() for a in addrs]
    demo.console_until(loner, "CELLCLOUD-READY")
    # in the background, so the guest finishes booting: report the first failures, then the first success
    patient = (f"#!/bin/sh\n( n=0; while ! ping -c 1 -W 1 {loner_ip} >/dev/null 2>&1; do n=$((n+1));\n"
               f"  [ $n = 5 ] && echo CELLCLOUD-STILL-FAILING; [ $n -gt 600 ] && exit 1; done;\n"
               f"  echo CELLCLOUD-PING-OK {loner_ip} ) &\n")
    knocker = demo.boot("knocker", net, patient, {"different_host": loner})
    demo.active(knocker)
    demo.console_until(knocker, "CELLCLOUD-STILL-FAILING")  # dropped at the loner's tap

    added = demo("POST", f"/compute/v2.1/servers/{loner}/action", json={"addSecurityGroup": {"name": "default"}})
    assert added.status_code == 202, added.text
    names = {g["name"] for g in demo.server(loner)["security_groups"]}
    assert names == {"default", f"quiet-{TAG}"}
    demo.console_until(knocker, f"CELLCLOUD-PING-OK {loner_ip}", timeout=60)  # the loner's host re-synced

    for sid in (loner, knocker):
        demo.delete(sid)
    assert demo("DELETE", f"/network/v2.0/security-groups/{quiet.json()['security_group']['id']}").status_code == 204


# --- routers and floating IPs (issue 17) -------------------------------------------------------

def from_outside(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", f"cc-{NAME}-outside", *argv], capture_output=True, text=True,
                          timeout=30, check=False)


def on_network_host(*argv: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", f"cc-{NAME}-ctl", *argv], capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout


def outside_pings(address: str) -> bool:
    return from_outside("ping", "-c", "1", "-W", "1", address).returncode == 0


def http(address: str, port: int) -> str | None:
    """The page served on address:port as the outside sees it, None when nothing answers within 1 s."""
    done = from_outside("curl", "-sS", "-m", "1", f"http://{address}:{port}/")
    return done.stdout.strip() if done.returncode == 0 else None


def test_router_snat_floating_ip_security_group_and_restart(cluster: RunningCluster, tmp_path: Path) -> None:
    """Issue 17, with the unmodified CLI, last in this module (it moves the demo network's gateway to
    ctl, the network host): SNAT out, ping and TCP in through a floating IP, a port the group does not
    open refused, removal at once (a steady ping too), a killed controller restores its rules, and
    nothing of the router is left in `nft list ruleset` once it is gone."""
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
    assert fip != OUTSIDE and not outside_pings(fip)
    ok("server", "add", "floating", "ip", f"vm-{TAG}", fip)
    assert wait_for(f"{fip} answers", lambda: outside_pings(fip), 10)
    assert http(fip, 8080) == f"CELLCLOUD-HTTP-{TAG}"  # the group opens 8080 ...
    assert http(fip, 8081) is None  # ... and not 8081, though the guest serves it: dropped at its port

    steady = subprocess.Popen(["ip", "netns", "exec", f"cc-{NAME}-outside", "ping", "-D", "-i", "0.2", "-w", "12",
                               fip], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(1.5)  # one ICMP flow, kept alive across the removal
    ok("server", "remove", "floating", "ip", f"vm-{TAG}", fip)
    removed, started = time.time(), time.monotonic()
    assert not outside_pings(fip) and http(fip, 8080) is None
    assert time.monotonic() - started < 2.5  # the very next probes (1 s each) got nothing
    answered = [float(line[1:line.index("]")]) for line in steady.communicate(timeout=30)[0].splitlines()
                if "bytes from" in line]
    assert answered and min(answered) < removed - 1  # the steady ping was answered before ...
    assert max(answered) < removed  # ... and never once the call had returned: its flow was cut too

    # a restarted network controller rebuilds what was removed behind its back
    ok("server", "add", "floating", "ip", f"vm-{TAG}", fip)
    assert wait_for(f"{fip} answers again", lambda: http(fip, 8080), 10)
    before = sorted(on_network_host("nft", "list", "table", "ip", "cellcloud_l3").splitlines())
    assert any(fip in line for line in before)  # the re-associate's elements, added to the table in place
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
    # every NAT rule and floating-IP element back, as they were
    assert sorted(on_network_host("nft", "list", "table", "ip", "cellcloud_l3").splitlines()) == before

    ok("floating", "ip", "delete", fip)
    started = time.monotonic()
    assert not outside_pings(fip) and time.monotonic() - started < 2.5

    ok("server", "delete", "--wait", f"vm-{TAG}")
    ok("router", "remove", "subnet", f"r-{TAG}", subnet["ID"])
    ok("router", "delete", f"r-{TAG}")
    ruleset = on_network_host("nft", "list", "ruleset")
    assert "snat to" not in ruleset and "dnat to" not in ruleset and "203.0.113" not in ruleset, ruleset
    assert "1100:" not in on_network_host("ip", "-4", "rule")
