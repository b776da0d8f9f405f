"""os-services writes, os-aggregates and os-simple-tenant-usage (issue 16) end to end with the unmodified
openstack CLI on a two-host cluster (libvirt test:///default, real processes): the cell scheduler honours a
disabled or forced-down compute service and an aggregate's availability zone and extra specs."""
from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tools.devcluster import RunningCluster, running_cluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("svcagg"), hosts=2, name="svcagg") as c:
        yield c


def refused(cluster: RunningCluster, *args: str, who: str = "demo") -> str:
    done = cluster.cli(*args, who=who)
    assert done.returncode != 0, f"openstack {' '.join(args)} succeeded: {done.stdout}"
    return done.stderr


def boot(cluster: RunningCluster, name: str, *extra: str) -> str:
    return str(cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", *extra,
                          "-f", "json", name)["id"])


def shown(cluster: RunningCluster, sid: str) -> Any:
    return cluster.ok("server", "show", "-f", "json", sid, who="admin")


def service(cluster: RunningCluster, host: str) -> Any:
    [found] = cluster.ok("compute", "service", "list", "--host", host, "--service", "nova-compute", "--long",
                         "-f", "json", who="admin")
    return found


def test_a_disabled_or_forced_down_compute_gets_nothing_new_and_forced_down_evacuates_at_once(
        cluster: RunningCluster) -> None:
    cluster.ok("compute", "service", "set", "--disable", "--disable-reason", "disk swap", "node1", "nova-compute",
               who="admin")
    # State is liveness (heartbeats), which disabling leaves alone: a beat missed under load shows "down"
    # for a moment, so it is waited for; Status and the reason must hold at once
    node1 = service(cluster, "node1")
    assert (node1["Status"], node1["Disabled Reason"]) == ("disabled", "disk swap"), node1
    wait_for("node1 up while disabled", lambda: service(cluster, "node1")["State"] == "up", timeout=30, interval=1)
    admin = {"X-Auth-Token": cluster.token("admin")}
    hypervisors = requests.get(f"{cluster.endpoint}/compute/v2.1/os-hypervisors", headers=admin, timeout=30).json()
    assert {h["hypervisor_hostname"]: h["status"] for h in hypervisors["hypervisors"]} == \
        {"node1": "disabled", "node2": "enabled"}, hypervisors
    err = refused(cluster, "compute", "service", "set", "--enable", "node1", "nova-compute")
    assert "os-services" in err and "403" in err, err
    sids = [boot(cluster, f"svc{i}") for i in range(3)]
    assert {shown(cluster, s)["OS-EXT-SRV-ATTR:host"] for s in sids} == {"node2"}
    cluster.ok("compute", "service", "set", "--enable", "node1", "nova-compute", who="admin")
    node1 = service(cluster, "node1")
    assert (node1["Status"], node1["Disabled Reason"]) == ("enabled", None), node1

    # forced down: the operator's word that node2 is dead; its servers may be evacuated at once
    cluster.ok("compute", "service", "set", "--down", "node2", "nova-compute", who="admin")
    node2 = service(cluster, "node2")
    assert (node2["State"], node2["Forced Down"]) == ("down", True), node2
    # (no --wait: this CLI's evacuate waits for "ACTIVE" where osc-lib compares lower case, so never ends)
    cluster.ok("server", "evacuate", sids[0], who="admin")
    wait_for("the evacuation", lambda: (shown(cluster, sids[0])["OS-EXT-SRV-ATTR:host"],
                                        shown(cluster, sids[0])["status"]) == ("node1", "ACTIVE"),
             timeout=60, interval=1)
    after = boot(cluster, "svc-after")
    assert shown(cluster, after)["OS-EXT-SRV-ATTR:host"] == "node1"
    cluster.ok("compute", "service", "set", "--up", "node2", "nova-compute", who="admin")
    assert service(cluster, "node2")["Forced Down"] is False
    wait_for("node2 up again", lambda: service(cluster, "node2")["State"] == "up", timeout=60, interval=1)

    # 2.53's PUT by id: a nova-conductor is not updatable; an unknown id is 404; delete refuses a busy host
    headers = {"X-Auth-Token": cluster.token("admin"), "OpenStack-API-Version": "compute 2.53"}
    listed = requests.get(f"{cluster.endpoint}/compute/v2.1/os-services", headers=headers, timeout=30).json()
    by_binary = {(s["binary"], s["host"]): s for s in listed["services"]}
    conductor = next(s for (b, _), s in by_binary.items() if b == "nova-conductor")
    r = requests.put(f"{cluster.endpoint}/compute/v2.1/os-services/{conductor['id']}", json={"status": "disabled"},
                     headers=headers, timeout=30)
    assert r.status_code == 400 and "Only nova-compute services can be updated" in r.text, r.text
    r = requests.put(f"{cluster.endpoint}/compute/v2.1/os-services/{'0' * 8}-0000-4000-8000-{'0' * 12}",
                     json={"status": "disabled"}, headers=headers, timeout=30)
    assert r.status_code == 404, r.text
    node1_id = by_binary[("nova-compute", "node1")]["id"]
    r = requests.put(f"{cluster.endpoint}/compute/v2.1/os-services/{node1_id}",
                     json={"status": "enabled", "disabled_reason": "x"}, headers=headers, timeout=30)
    assert r.status_code == 400 and "disabled_reason" in r.text, r.text
    r = requests.delete(f"{cluster.endpoint}/compute/v2.1/os-services/{node1_id}", headers=headers, timeout=30)
    assert r.status_code == 409, r.text
    for sid in [*sids, after]:
        cluster.ok("server", "delete", "--wait", sid)


def test_an_aggregates_zone_and_extra_specs_place_servers_on_its_hosts(cluster: RunningCluster) -> None:
    agg = cluster.ok("aggregate", "create", "--zone", "fast", "-f", "json", "fastagg", who="admin")
    assert agg["availability_zone"] == "fast"
    cluster.ok("aggregate", "add", "host", "fastagg", "node2", who="admin")
    cluster.ok("aggregate", "set", "--property", "ssd=true", "fastagg", who="admin")
    got = cluster.ok("aggregate", "show", "-f", "json", "fastagg", who="admin")
    assert got["hosts"] == ["node2"] and got["properties"] == {"ssd": "true"}, got
    zones = {z["Zone Name"] for z in cluster.ok("availability", "zone", "list", "-f", "json")}
    assert {"fast", "site1"} <= zones, zones
    detail = cluster.ok("availability", "zone", "list", "--long", "-f", "json", who="admin")
    assert {(z["Zone Name"], z["Host Name"]) for z in detail if z["Host Name"]} >= {("fast", "node2"),
                                                                                    ("site1", "node1")}
    assert ("site1", "node2") not in {(z["Zone Name"], z["Host Name"]) for z in detail}
    err = refused(cluster, "aggregate", "create", "nope")
    assert "os-aggregates:create" in err and "403" in err, err
    err = refused(cluster, "aggregate", "create", "--zone", "site1", "clash", who="admin")
    assert "400" in err, err
    cluster.ok("aggregate", "create", "--zone", "slow", "slowagg", who="admin")
    err = refused(cluster, "aggregate", "add", "host", "slowagg", "node2", who="admin")
    assert "409" in err, err

    zoned = [boot(cluster, f"fast{i}", "--availability-zone", "fast") for i in range(2)]
    for sid in zoned:
        server = shown(cluster, sid)
        assert (server["OS-EXT-SRV-ATTR:host"], server["OS-EXT-AZ:availability_zone"]) == ("node2", "fast")
    err = refused(cluster, "server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw",
                  "--availability-zone", "nowhere", "x")
    assert "availability zone is not available" in err, err
    cluster.ok("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "--property",
               "aggregate_instance_extra_specs:ssd=true", "ssd.tiny", who="admin")
    ssd = [str(cluster.ok("server", "create", "--flavor", "ssd.tiny", "--image", "tiny-raw", "--wait", "-f",
                          "json", f"ssd{i}")["id"]) for i in range(2)]
    assert {shown(cluster, s)["OS-EXT-SRV-ATTR:host"] for s in ssd} == {"node2"}

    # a move keeps to the aggregates too: node2 is the only host of zone "fast" and of ssd=true, so a
    # migration of a server pinned to "fast" or of an ssd.tiny one finds no host and leaves it where it is
    def settled(sid: str) -> bool:
        return shown(cluster, sid)["OS-EXT-STS:task_state"] is None
    for sid in (zoned[0], ssd[0]):
        cluster.ok("server", "migrate", sid, who="admin")
        wait_for("the migration to end", functools.partial(settled, sid), timeout=60, interval=0.5)
        after = shown(cluster, sid)
        assert (after["OS-EXT-SRV-ATTR:host"], after["status"]) == ("node2", "ACTIVE"), after
        actions = cluster.ok("server", "event", "list", "-f", "json", sid, who="admin")
        [migrate] = [a for a in actions if a["Action"] == "migrate"]
        detail = cluster.ok("server", "event", "show", "-f", "json", sid, migrate["Request ID"], who="admin")
        assert any("No valid host" in str(e.get("traceback") or e.get("details") or "")
                   or e.get("result") == "Error" for e in detail["events"]), detail

    err = refused(cluster, "aggregate", "delete", "fastagg", who="admin")
    assert "400" in err or "has hosts" in err, err
    cluster.ok("aggregate", "remove", "host", "fastagg", "node2", who="admin")
    cluster.ok("aggregate", "delete", "fastagg", "slowagg", who="admin")
    assert cluster.ok("aggregate", "list", "-f", "json", who="admin") == []
    for sid in [*zoned, *ssd]:
        cluster.ok("server", "delete", "--wait", sid)
    cluster.ok("flavor", "delete", "ssd.tiny", who="admin")


def test_usage_lists_every_project_for_admins_and_a_members_own(cluster: RunningCluster) -> None:
    sid = boot(cluster, "usage1")
    project = cluster.ok("server", "show", "-f", "json", sid)["project_id"]
    listed = cluster.ok("usage", "list", "-f", "json", who="admin")
    mine = [u for u in listed if u["Project"] in (project, "demo")]
    assert mine and sid in {s["instance_id"] for s in mine[0]["Servers"]}, listed  # the CLI asks detailed=1
    own = cluster.ok("usage", "show", "-f", "json")
    assert sid in {s["instance_id"] for s in own["Servers"]} and float(own["RAM MB-Hours"]) >= 0, own
    err = refused(cluster, "usage", "list")
    assert "403" in err, err
    # 2.40 paging: one server per page, the link names the next
    headers = {"X-Auth-Token": cluster.token("admin"), "OpenStack-API-Version": "compute 2.40"}
    second = boot(cluster, "usage2")
    url = f"{cluster.endpoint}/compute/v2.1/os-simple-tenant-usage"
    window = {"start": "2000-01-01T00:00:00", "end": "2100-01-01T00:00:00", "detailed": "1", "limit": "1"}
    page = requests.get(url, params=window, headers=headers, timeout=30).json()
    assert len(page["tenant_usages"][0]["server_usages"]) == 1 and page["tenant_usages_links"], page
    nxt = requests.get(page["tenant_usages_links"][0]["href"], headers=headers, timeout=30).json()
    first_id = page["tenant_usages"][0]["server_usages"][0]["instance_id"]
    assert nxt["tenant_usages"][0]["server_usages"][0]["instance_id"] > first_id, nxt
    bad = requests.get(url, params={"start": "2100-01-01T00:00:00", "end": "2000-01-01T00:00:00"},
                       headers=headers, timeout=30)
    assert bad.status_code == 400, bad.text
    for server in (sid, second):
        cluster.ok("server", "delete", "--wait", server)


def test_a_servers_interfaces_are_its_ports(cluster: RunningCluster) -> None:
    cluster.ok("network", "create", "ifnet", "-f", "json")
    cluster.ok("subnet", "create", "--network", "ifnet", "--subnet-range", "172.31.9.0/24", "ifsub", "-f", "json")
    sid = boot(cluster, "if1", "--network", "ifnet")
    [port] = cluster.ok("port", "list", "--server", sid, "-f", "json")
    url = f"{cluster.endpoint}/compute/v2.1/servers/{sid}/os-interface"
    headers = {"X-Auth-Token": cluster.token("demo"), "OpenStack-API-Version": "compute 2.70"}
    listed = requests.get(url, headers=headers, timeout=30).json()["interfaceAttachments"]
    assert [(i["port_id"], i["mac_addr"], i["tag"]) for i in listed] == [(port["ID"], port["MAC Address"], None)]
    assert listed[0]["fixed_ips"][0]["ip_address"] == port["Fixed IP Addresses"][0]["ip_address"]
    one = requests.get(f"{url}/{port['ID']}", headers=headers, timeout=30)
    assert one.status_code == 200 and one.json()["interfaceAttachment"]["net_id"] == listed[0]["net_id"], one.text
    missing = requests.get(f"{url}/{'0' * 8}-0000-4000-8000-{'0' * 12}", headers=headers, timeout=30)
    assert missing.status_code == 404, missing.text

    # attach the project's own port, then a new one on the network; detach both
    given = cluster.ok("port", "create", "--network", "ifnet", "-f", "json", "given")
    cluster.ok("server", "add", "port", sid, "given")
    ports = {p["ID"] for p in cluster.ok("port", "list", "--server", sid, "-f", "json")}
    assert ports == {port["ID"], given["id"]}, ports
    addresses = cluster.ok("server", "show", "-f", "json", sid)["addresses"]["ifnet"]
    assert given["fixed_ips"][0]["ip_address"] in addresses, addresses
    again = requests.post(url, json={"interfaceAttachment": {"port_id": given["id"]}}, headers=headers, timeout=30)
    assert again.status_code == 409 and "in use" in again.text, again.text
    made = requests.post(url, json={"interfaceAttachment": {"net_id": given["network_id"]}}, headers=headers,
                         timeout=30)
    assert made.status_code == 200, made.text
    made_id = made.json()["interfaceAttachment"]["port_id"]
    assert len(requests.get(url, headers=headers, timeout=30).json()["interfaceAttachments"]) == 3
    host = shown(cluster, sid)["OS-EXT-SRV-ATTR:host"]
    assert f"port {given['id']} attached to {sid}" in cluster.log(f"cell1/compute/{host}")  # in its domain
    actions = [a["Action"] for a in cluster.ok("server", "event", "list", "-f", "json", sid)]
    assert actions.count("attach_interface") == 2, actions
    cluster.ok("server", "remove", "port", sid, "given")
    kept = cluster.ok("port", "show", "-f", "json", "given")
    assert (kept["device_id"], kept["status"]) == ("", "DOWN"), kept
    gone = requests.delete(f"{url}/{made_id}", headers=headers, timeout=30)
    assert gone.status_code == 202, gone.text
    assert made_id not in {p["ID"] for p in cluster.ok("port", "list", "--network", "ifnet", "-f", "json")}
    assert f"port {made_id} detached from {sid}" in cluster.log(f"cell1/compute/{host}")
    assert [p["ID"] for p in cluster.ok("port", "list", "--server", sid, "-f", "json")] == [port["ID"]]
    both = requests.post(url, json={"interfaceAttachment": {"port_id": given["id"], "net_id": given["network_id"]}},
                         headers=headers, timeout=30)
    assert both.status_code == 400, both.text
    cluster.ok("port", "delete", "given")
    cluster.ok("server", "delete", "--wait", sid)
    cluster.ok("network", "delete", "ifnet")


def test_nova_floating_ip_proxy_moves_addresses_between_real_servers(cluster: RunningCluster) -> None:
    """Nova's os-floating-ips writes (2.35) and addFloatingIp / removeFloatingIp (2.43) on booted servers,
    through the Neutron API: a second address on one fixed IP is a 400, an address already on another server
    moves, removing it from a server it is not on is a 409, an unknown address 404, another project's server
    404, and from 2.44 the actions are gone (404)."""
    admin = {"X-Auth-Token": cluster.token("admin")}
    demo = {"X-Auth-Token": cluster.token("demo")}
    net = f"{cluster.endpoint}/network/v2.0"
    pool = requests.post(f"{net}/networks", headers=admin, timeout=30,
                         json={"network": {"name": "fippool", "router:external": True}}).json()["network"]
    made = requests.post(f"{net}/subnets", headers=admin, timeout=30, json={
        "subnet": {"network_id": pool["id"], "cidr": "198.51.100.0/24", "ip_version": 4}})
    assert made.status_code == 201, made.text
    sids = [boot(cluster, f"fip{i}") for i in range(2)]
    [private] = requests.get(f"{net}/networks?name=private", headers=demo, timeout=30).json()["networks"]
    router = requests.post(f"{net}/routers", headers=demo, timeout=30, json={"router": {
        "name": "fip-router", "external_gateway_info": {"network_id": pool["id"]}}}).json()["router"]
    joined = requests.put(f"{net}/routers/{router['id']}/add_router_interface", headers=demo, timeout=30,
                          json={"subnet_id": private["subnets"][0]})
    assert joined.status_code == 200, joined.text

    compute = f"{cluster.endpoint}/compute/v2.1"
    v235, v243 = {**demo, "OpenStack-API-Version": "compute 2.35"}, {**demo, "OpenStack-API-Version": "compute 2.43"}

    def act(sid: str, body: dict[str, Any], headers: dict[str, str] = v243) -> requests.Response:
        return requests.post(f"{compute}/servers/{sid}/action", json=body, headers=headers, timeout=30)

    def fip_of(fid: str) -> Any:
        return requests.get(f"{compute}/os-floating-ips/{fid}", headers=v235, timeout=30).json()["floating_ip"]
    first, second = (requests.post(f"{compute}/os-floating-ips", json={"pool": "fippool"}, headers=v235,
                                   timeout=30).json()["floating_ip"] for _ in range(2))
    fixed = {sid: shown(cluster, sid)["addresses"]["private"][0] for sid in sids}
    assert act(sids[0], {"addFloatingIp": {"address": first["ip"]}}).status_code == 202
    assert (fip_of(first["id"])["instance_id"], fip_of(first["id"])["fixed_ip"]) == (sids[0], fixed[sids[0]])
    on_port = requests.get(f"{net}/floatingips/{first['id']}", headers=demo, timeout=30).json()["floatingip"]
    assert on_port["fixed_ip_address"] == fixed[sids[0]] and on_port["router_id"] == router["id"], on_port
    again = act(sids[0], {"addFloatingIp": {"address": second["ip"]}})
    assert again.status_code == 400, again.text
    alt = {"X-Auth-Token": cluster.token("alt_demo"), "OpenStack-API-Version": "compute 2.43"}
    assert act(sids[0], {"removeFloatingIp": {"address": first["ip"]}}, alt).status_code == 404
    assert act(sids[1], {"addFloatingIp": {"address": first["ip"]}}).status_code == 202  # moves
    assert fip_of(first["id"])["instance_id"] == sids[1]
    assert act(sids[0], {"removeFloatingIp": {"address": first["ip"]}}).status_code == 409
    assert act(sids[0], {"addFloatingIp": {"address": "0.0.0.0"}}).status_code == 404
    assert act(sids[0], {"addFloatingIp": {"address": ""}}).status_code == 400
    gone = {**demo, "OpenStack-API-Version": "compute 2.44"}
    assert act(sids[1], {"removeFloatingIp": {"address": first["ip"]}}, gone).status_code == 404
    assert act(sids[1], {"removeFloatingIp": {"address": first["ip"]}}).status_code == 202
    assert fip_of(first["id"])["instance_id"] is None
    for fip in (first, second):
        assert requests.delete(f"{compute}/os-floating-ips/{fip['id']}", headers=v235, timeout=30).status_code == 202
    for sid in sids:
        cluster.ok("server", "delete", "--wait", sid)
    requests.put(f"{net}/routers/{router['id']}/remove_router_interface", headers=demo, timeout=30,
                 json={"subnet_id": private["subnets"][0]}).raise_for_status()
    requests.delete(f"{net}/routers/{router['id']}", headers=demo, timeout=30).raise_for_status()


def test_usage_audit_log_lists_every_compute_host_as_not_run(cluster: RunningCluster) -> None:
    """os-instance_usage_audit_log (admins): Nova's monthly period before now or a given time, and both compute
    hosts not run (no compute here runs the usage audit); a member's 403, a bad timestamp's 400."""
    url = f"{cluster.endpoint}/compute/v2.1/os-instance_usage_audit_log"
    admin = {"X-Auth-Token": cluster.token("admin")}
    logs = requests.get(url, headers=admin, timeout=30).json()["instance_usage_audit_logs"]
    assert (sorted(logs["hosts_not_run"]), logs["num_hosts"], logs["num_hosts_done"], logs["log"]) == \
        (["node1", "node2"], 2, 0, {}), logs
    assert logs["overall_status"] == "0 of 2 hosts done. 0 errors."
    one = requests.get(f"{url}/2012-07-05 10:00:00.5", headers=admin, timeout=30).json()["instance_usage_audit_log"]
    assert (one["period_beginning"], one["period_ending"]) == ("2012-06-01 00:00:00", "2012-07-01 00:00:00")
    assert requests.get(f"{url}/yesterday", headers=admin, timeout=30).status_code == 400
    demo = {"X-Auth-Token": cluster.token("demo")}
    assert requests.get(url, headers=demo, timeout=30).status_code == 403
