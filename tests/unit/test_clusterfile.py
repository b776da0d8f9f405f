"""cluster.yaml -> ClusterConfig: the default file, every kind of mistake, ports, secrets."""
from __future__ import annotations

import copy
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cells.config import ClusterConfig
from tools import clusterfile
from tools.clusterfile_fields import ClusterFileError

ROOT = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "cluster": "demo",
    "state_dir": "var",
    "api": {"host": "ctl", "listen": "127.0.0.1:8774"},
    "sites": [{"name": "site1", "cells": [{
        "name": "cell1",
        "services": {"router": "ctl:5601", "conductor": "ctl", "scheduler": "ctl"},
        "hosts": ["node1"],
    }]}],
    "hosts": {
        "ctl": {"address": "127.0.0.1", "via": "local"},
        "node1": {"address": "127.0.0.1", "via": "local", "roles": ["compute"],
                  "virt": {"uri": "test:///default", "type": "auto"}, "rpc_port": 5610},
    },
    "security": {"curve": False},
}


def write(tmp_path: Path, doc: Any, name: str = "cluster.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def variant(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    change(doc)
    return doc


def cell(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["sites"][0]["cells"][0]  # type: ignore[no-any-return]


def test_repo_default_cluster_file_resolves() -> None:
    cfg = clusterfile.load(ROOT / "cluster.yaml")
    assert cfg.name == "demo"
    assert cfg.state_dir == str(ROOT / "var")
    assert [c.path for c in cfg.cells] == ["cell1"]
    assert cfg.cells[0].db == f"sqlite+aiosqlite:///{ROOT}/var/cells/cell1.db"
    assert cfg.cells[0].router == "tcp://127.0.0.1:5601"
    binds = {s.id: s.bind for s in cfg.services}
    assert binds == {
        "cell1/router": "tcp://127.0.0.1:5601",
        "cell1/conductor": "tcp://127.0.0.1:5602",  # router + 1
        "cell1/scheduler": "tcp://127.0.0.1:5603",  # router + 2
        "cell1/network": "tcp://127.0.0.1:5604",  # router + 3
        "cell1/compute/node1": "tcp://127.0.0.1:5610",
        "cell1/volume/node1": "tcp://127.0.0.1:5801",  # 5800 + node1's index in hosts
        "api": "127.0.0.1:8774",
    }
    compute = cfg.service("cell1/compute/node1")
    assert (compute.kind, compute.host, compute.cell) == ("compute", "node1", "cell1")
    assert compute.options == {"virt_uri": "test:///default", "virt_type": "auto"}
    assert cfg.api.public_url == "http://127.0.0.1:8774"
    assert cfg.api.db == f"sqlite+aiosqlite:///{ROOT}/var/api.db"
    assert cfg.api.image_dir == f"{ROOT}/var/images"
    assert cfg.api.half_made_boot_grace == 60.0  # api/compute/boot_sweep.py
    assert cfg.curve is True and cfg.heartbeat_interval == 1.0  # CURVE is on by default
    assert [h.name for h in cfg.hosts] == ["ctl", "node1"]


def test_deleted_servers_are_kept_only_when_a_reclaim_interval_is_given(tmp_path: Path) -> None:
    assert clusterfile.load(write(tmp_path, BASE)).reclaim_instance_interval == 0
    kept = clusterfile.load(write(tmp_path, {**BASE, "reclaim_instance_interval": 3600}, "kept.yaml"))
    assert ClusterConfig.from_dict(json.loads(kept.to_json())).reclaim_instance_interval == 3600


def test_curve_is_the_default_and_plaintext_must_be_asked_for(tmp_path: Path) -> None:
    assert clusterfile.load(write(tmp_path, variant(lambda d: d.pop("security")))).curve is True
    assert clusterfile.load(write(tmp_path, variant(lambda d: d["security"].pop("curve")))).curve is True
    assert clusterfile.load(write(tmp_path, BASE)).curve is False  # BASE says curve: false explicitly


def test_the_shortest_boot_grace_outlasts_any_boot_in_flight() -> None:
    """A boot's last build call may be sent up to RESTART_BOUND after its mapping was written, and is
    answered or dropped BUILD_BOUND later: the sweep must not ask its cell before that."""
    from api.compute import cell_boot

    assert clusterfile.MIN_BOOT_GRACE >= cell_boot.RESTART_BOUND + cell_boot.BUILD_BOUND + cell_boot.CELL_POLL


def test_defaults_nested_cells_and_db_urls(tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        del doc["state_dir"], doc["security"], doc["api"]["listen"]
        doc["hosts"]["node2"] = {"address": "127.0.0.2"}  # roles default to [compute]
        cell(doc)["db"] = "sqlite:///data/c1.db"  # relative to the file's directory
        cell(doc)["services"] = {"router": "ctl:6000", "scheduler": "node1:7000"}
        cell(doc)["cells"] = [{"name": "edge", "services": {"router": "ctl:6100"}, "hosts": ["node2"],
                               "db": "postgresql://cc@db.example/edge"},
                              {"name": "far", "services": {"router": "ctl:6200"},
                               "db": "postgresql+asyncpg://cc:pw@db.example:5433/far"}]

    cfg = clusterfile.load(write(tmp_path, variant(change)))
    assert cfg.state_dir == str(tmp_path / "var")
    assert cfg.api.listen == "127.0.0.1:8774"
    assert [(c.path, c.parent) for c in cfg.cells] == [("cell1", None), ("cell1!edge", "cell1"), ("cell1!far", "cell1")]
    assert cfg.cell("cell1").db == f"sqlite+aiosqlite:///{tmp_path}/data/c1.db"
    assert cfg.cell("cell1!edge").db == "postgresql+psycopg://cc@db.example/edge"  # psycopg serves every PostgreSQL URL
    assert cfg.cell("cell1!far").db == "postgresql+psycopg://cc:pw@db.example:5433/far"
    assert cfg.service("cell1/conductor").bind == "tcp://127.0.0.1:6001"  # defaults to the router's host
    assert cfg.service("cell1/scheduler").bind == "tcp://127.0.0.1:7000"
    assert cfg.service("cell1!edge/conductor").bind == "tcp://127.0.0.1:6101"
    node2 = cfg.service("cell1!edge/compute/node2")
    assert node2.bind == "tcp://127.0.0.2:5702"  # 5700 + index of node2 in hosts
    assert node2.options == {"virt_uri": "test:///default", "virt_type": "auto"}


def test_managed_postgresql_for_the_api_and_a_cell_beside_a_sqlite_cell(tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["api"]["db"] = {"engine": "postgresql", "managed": True}
        cell(doc)["db"] = {"engine": "postgresql", "managed": True, "port": 5499}
        doc["sites"][0]["cells"].append({"name": "cell2", "services": {"router": "ctl:5621"}})

    cfg = clusterfile.load(write(tmp_path, variant(change)))
    pg = tmp_path / "var" / "postgres"
    assert cfg.managed_postgres == {"dir": str(pg), "port": 5499, "databases": ["cell_cell1", "api"]}
    assert cfg.cell("cell1").db == f"postgresql+psycopg://cc@/cell_cell1?host={pg}&port=5499"
    assert cfg.api.db == f"postgresql+psycopg://cc@/api?host={pg}&port=5499"
    assert cfg.cell("cell2").db == f"sqlite+aiosqlite:///{tmp_path}/var/cells/cell2.db"
    assert ClusterConfig.from_dict(json.loads(cfg.to_json())).managed_postgres == cfg.managed_postgres


def test_default_db_of_a_nested_cell_lives_under_its_parent(tmp_path: Path) -> None:
    doc = variant(lambda d: cell(d).update(cells=[{"name": "edge", "services": {"router": "ctl:6100"}}]))
    cfg = clusterfile.load(write(tmp_path, doc), state_dir=tmp_path / "st")
    assert cfg.cell("cell1!edge").db == f"sqlite+aiosqlite:///{tmp_path}/st/cells/cell1/edge.db"


def test_sites_netns_hosts_and_relay_only_parent_cells(tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["hosts"] = {
            "ctl": {"address": "10.250.1.10", "via": "netns", "site_net": "east"},
            "n1": {"address": "10.250.1.21", "via": "netns", "site_net": "east", "rpc_port": 5701},
            "n2": {"address": "10.250.2.21", "via": "netns", "site_net": "west", "rpc_port": 5701},
            "wctl": {"address": "10.250.2.10", "via": "netns", "site_net": "west"},
        }
        doc["api"] = {"host": "ctl", "list_bound": 0.5, "half_made_boot_grace": 30}
        doc["sites"] = [
            {"name": "east", "cells": [{"name": "e", "services": {"router": "ctl:5600"}, "cells": [
                {"name": "e1", "services": {"router": "ctl:5610"}, "hosts": ["n1"]}]}]},
            {"name": "west", "cells": [{"name": "w1", "services": {"router": "wctl:5610"}, "hosts": ["n2"]}]},
        ]

    cfg = clusterfile.load(write(tmp_path, variant(change)))
    assert [(c.path, c.site) for c in cfg.cells] == [("e", "east"), ("e!e1", "east"), ("w1", "west")]
    assert cfg.sites == ("east", "west") and cfg.netns_range == "10.250.0.0/16" and cfg.list_bound == 0.5
    assert cfg.api.half_made_boot_grace == 30.0
    # "e" holds child cells and no hosts: only its router runs (it relays); e!e1 has every service
    assert sorted(s.id for s in cfg.services if s.cell == "e") == ["e/router"]
    assert {s.id for s in cfg.services if s.cell == "e!e1"} >= {"e!e1/router", "e!e1/conductor", "e!e1/scheduler"}
    assert {h.name: (h.via, h.site_net) for h in cfg.hosts}["n2"] == ("netns", "west")
    # every netns host has its own address: the same port on two hosts is fine
    assert cfg.service("e!e1/compute/n1").bind == "tcp://10.250.1.21:5701"
    assert cfg.service("w1/compute/n2").bind == "tcp://10.250.2.21:5701"


def _set_cell(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: cell(d).__setitem__(key, value)


def _two_managed_ports(doc: dict[str, Any]) -> None:
    cell(doc)["db"] = {"engine": "postgresql", "managed": True, "port": 5440}
    doc["api"]["db"] = {"engine": "postgresql", "managed": True, "port": 5441}


def _set_host(host: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["hosts"][host].__setitem__(key, value)


MISTAKES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("router without port", _set_cell("services", {"router": "ctl"}),
     "sites[0].cells[0].services.router: expected HOST:PORT, got 'ctl'"),
    ("router port not a number", _set_cell("services", {"router": "ctl:http"}),
     "sites[0].cells[0].services.router: expected HOST:PORT, got 'ctl:http'"),
    ("unknown top-level key", lambda d: d.__setitem__("colour", "blue"), "colour: unknown key (expected one of"),
    ("unknown cell key", _set_cell("size", 3), "sites[0].cells[0].size: unknown key"),
    ("missing required key", lambda d: d["api"].pop("host"), "api.host: required key is missing"),
    ("missing sites", lambda d: d.pop("sites"), "sites: required key is missing"),
    ("unknown host in a cell", _set_cell("hosts", ["node9"]),
     "sites[0].cells[0].hosts[0]: unknown host 'node9' (hosts defined: ctl, node1)"),
    ("unknown host for a service", _set_cell("services", {"router": "ctl:5601", "conductor": "db1"}),
     "sites[0].cells[0].services.conductor: unknown host 'db1'"),
    ("unknown API host", lambda d: d["api"].__setitem__("host", "web"), "api.host: unknown host 'web'"),
    ("via not a known transport", _set_host("node1", "via", "telnet"),
     "hosts.node1.via: expected one of local, netns, ssh, got 'telnet'"),
    ("ssh keys on a local host", _set_host("node1", "user", "cellcloud"),
     "hosts.node1.user: only a host with via: ssh takes user (via is local)"),
    ("netns host without its site", _set_host("node1", "via", "netns"),
     "hosts.node1.site_net: required key is missing"),
    ("netns host on an unknown site", lambda d: d["hosts"]["node1"].update(via="netns", site_net="site9"),
     "hosts.node1.site_net: unknown site 'site9' (sites: site1)"),
    ("netns host outside its site network", lambda d: d["hosts"]["node1"].update(via="netns", site_net="site1"),
     "hosts.node1.address: expected an address in 10.250.1.0/24 (site site1's network"),
    ("netns host on the gateway", lambda d: d["hosts"]["node1"].update(via="netns", site_net="site1",
                                                                      address="10.250.1.1"),
     "hosts.node1.address: expected an address in 10.250.1.0/24"),
    ("site_net on a local host", _set_host("node1", "site_net", "site1"),
     "hosts.node1.site_net: only a host with via: netns sits on a site network"),
    ("netns range not private", lambda d: d.__setitem__("netns", {"range": "8.8.0.0/16"}),
     "netns.range: expected a private IPv4 network of /16 or wider, got '8.8.0.0/16'"),
    ("list bound zero", lambda d: d["api"].__setitem__("list_bound", 0),
     "api.list_bound: expected seconds between 0 and 30, got 0"),
    ("boot grace shorter than a boot in flight", lambda d: d["api"].__setitem__("half_made_boot_grace", 5),
     "api.half_made_boot_grace: expected seconds between 25 and 86400, got 5"),
    ("boot grace as text", lambda d: d["api"].__setitem__("half_made_boot_grace", "60s"),
     "api.half_made_boot_grace: expected seconds between 25 and 86400, got '60s'"),
    ("port out of range", _set_host("node1", "rpc_port", 70000),
     "hosts.node1.rpc_port: expected a port number 1-65535, got 70000"),
    ("port as text", _set_host("node1", "rpc_port", "5610"),
     "hosts.node1.rpc_port: expected a port number 1-65535, got '5610'"),
    ("bad address", _set_host("node1", "address", "not an address"),
     "hosts.node1.address: expected an IP address or DNS name, got 'not an address'"),
    ("unsupported role", _set_host("node1", "roles", ["compute", "network"]),
     "hosts.node1.roles[1]: role 'network' is not supported yet"),
    ("unknown role", _set_host("node1", "roles", ["gpu"]), "hosts.node1.roles[0]: expected one of compute, volume"),
    ("virt type", _set_host("node1", "virt", {"type": "xen"}), "hosts.node1.virt.type: expected one of auto, kvm"),
    ("virt uri", _set_host("node1", "virt", {"uri": "default"}),
     "hosts.node1.virt.uri: expected a libvirt URI like test:///default, got 'default'"),
    ("bad db scheme", _set_cell("db", "mysql://x/y"),
     ("sites[0].cells[0].db: expected sqlite:///PATH, postgresql://USER@HOST/DB (+psycopg or +asyncpg) or "
     "{engine: postgresql, managed: true}, got 'mysql://x/y'")),
    ("managed db of another engine", _set_cell("db", {"engine": "mysql", "managed": True}),
     "sites[0].cells[0].db.engine: expected postgresql, got 'mysql'"),
    ("managed db not managed", _set_cell("db", {"engine": "postgresql"}),
     "sites[0].cells[0].db.managed: expected true"),
    ("managed db with an unknown key", _set_cell("db", {"engine": "postgresql", "managed": True, "user": "x"}),
     "sites[0].cells[0].db.user: unknown key (expected one of: engine, managed, port)"),
    ("two managed ports", _two_managed_ports,
     "api.db.port: the cluster's one private PostgreSQL already has port 5440 (sites[0].cells[0].db.port)"),
    ("in-memory sqlite", _set_cell("db", "sqlite:///:memory:"), "sites[0].cells[0].db: expected sqlite:///PATH"),
    ("sites not a list", lambda d: d.__setitem__("sites", {"site1": {}}),
     "sites: expected a non-empty list of sites, got a mapping"),
    ("no cells", lambda d: d["sites"][0].__setitem__("cells", []), "sites[0].cells: expected a non-empty list"),
    ("bad name", _set_cell("name", "cell 1"), "sites[0].cells[0].name: expected a name of letters, digits"),
    ("cell name twice", lambda d: d["sites"].append({"name": "site2", "cells": [
        {"name": "cell1", "services": {"router": "ctl:5701"}}]}),
     "sites[1].cells[0].name: cell 'cell1' is already defined at sites[0].cells[0]"),
    ("site name twice", lambda d: d["sites"].append(copy.deepcopy(d["sites"][0])),
     "sites[1].name: site 'site1' is defined twice"),
    ("host in two cells", lambda d: d["sites"][0]["cells"].append(
        {"name": "cell2", "services": {"router": "ctl:5621"}, "hosts": ["node1"]}),
     "sites[0].cells[1].hosts[0]: host 'node1' is already in a cell at sites[0].cells[0].hosts[0]"),
    ("host without role in a cell", _set_host("node1", "roles", []),
     "sites[0].cells[0].hosts[0]: host 'node1' has no role to run in a cell"),
    ("heartbeat", lambda d: d.__setitem__("heartbeat_interval", 0),
     "heartbeat_interval: expected seconds between 0 and 60, got 0"),
    ("reclaim interval", lambda d: d.__setitem__("reclaim_instance_interval", -1),
     "reclaim_instance_interval: expected seconds from 0 (off) to 31536000, got -1"),
    ("curve not a bool", lambda d: d["security"].__setitem__("curve", "yes please"),
     "security.curve: expected true or false, got 'yes please'"),
    ("nested cell mistake", _set_cell("cells", [{"name": "edge", "services": {"router": "ctl"}}]),
     "sites[0].cells[0].cells[0].services.router: expected HOST:PORT, got 'ctl'"),
    ("api listen", lambda d: d["api"].__setitem__("listen", 8774),
     "api.listen: expected ADDRESS:PORT (e.g. 127.0.0.1:8774), got 8774"),
    ("same db twice", lambda d: d["sites"][0]["cells"].extend([
        {"name": "cell2", "services": {"router": "ctl:5621"}, "db": "sqlite:///x.db"},
        {"name": "cell3", "services": {"router": "ctl:5631"}, "db": "sqlite:///./x.db"}]),
     "sites[0].cells[2].db: database sqlite+aiosqlite:///"),
]


@pytest.mark.parametrize("change, expected", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_each_mistake_names_file_field_and_expectation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       change: Callable[[dict[str, Any]], None],
                                                       expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, variant(change))
    with pytest.raises(ClusterFileError) as info:
        clusterfile.load("cluster.yaml")
    assert str(info.value).startswith(f"cluster.yaml: {expected}"), str(info.value)
    assert not (tmp_path / "var").exists()  # validation writes nothing


@pytest.mark.parametrize("text, expected", [
    ("cluster: demo\n  bad: indent\n", "cluster.yaml: line 2, column 6: invalid YAML"),
    ("cluster: a\ncluster: b\n", "cluster.yaml: line 2, column 1: invalid YAML: duplicate key 'cluster'"),
    ("- just\n- a list\n", "cluster.yaml: expected a mapping with keys cluster, api, sites, hosts"),
])
def test_yaml_level_mistakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, text)
    with pytest.raises(ClusterFileError, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        clusterfile.load("cluster.yaml")


def test_missing_file_is_a_cluster_file_error(tmp_path: Path) -> None:
    with pytest.raises(ClusterFileError, match=r"nope\.yaml: cannot read: No such file"):
        clusterfile.load(tmp_path / "nope.yaml")


@pytest.mark.parametrize("change, expected", [
    (_set_cell("services", {"router": "ctl:5601", "conductor": "node1:5610"}),
     ("sites[0].cells[0].hosts[0]: port 127.0.0.1:5610 of cell1/compute/node1 (sites[0].cells[0].hosts[0]) "
      "is already used by cell1/conductor (sites[0].cells[0].services.conductor)")),
    (_set_cell("services", {"router": "ctl:8773"}),  # the default scheduler port router+2 = 8775, conductor 8774
     ("sites[0].cells[0].services.conductor: port 127.0.0.1:8774 of cell1/conductor "
      "(sites[0].cells[0].services.conductor (default port: router + 1)) is already used by api (api.listen)")),
    (lambda d: d["api"].__setitem__("listen", "0.0.0.0:5601"),  # a wildcard bind takes the port on every address
     "sites[0].cells[0].services.router: port 127.0.0.1:5601 of cell1/router"),
])
def test_port_collisions_are_reported(tmp_path: Path, change: Callable[[dict[str, Any]], None],
                                      expected: str) -> None:
    path = write(tmp_path, variant(change))
    with pytest.raises(ClusterFileError) as info:
        clusterfile.load(path)
    assert str(info.value).startswith(f"{path}: {expected}"), str(info.value)


def test_same_port_on_different_addresses_is_fine(tmp_path: Path) -> None:
    doc = variant(lambda d: d["hosts"]["node1"].update(address="127.0.0.2", rpc_port=5601))
    cfg = clusterfile.load(write(tmp_path, doc))
    assert cfg.service("cell1/compute/node1").bind == "tcp://127.0.0.2:5601"


def test_secrets_are_made_once_and_kept(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    first = clusterfile.prepare(path)
    state = tmp_path / "var"
    assert set(first.secrets) == {"admin_password", "demo_password", "service_password", "image_reader_password",
                                  "ec2_credential_key", "alt_demo_password"}
    assert len(set(first.secrets.values())) == len(first.secrets) and all(len(v) >= 20 for v in first.secrets.values())
    for name in ("secrets.json", "cluster.json"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    second = clusterfile.prepare(path)
    assert second.secrets == first.secrets
    on_disk = ClusterConfig.load(state / "cluster.json")
    assert on_disk == second  # what services read is exactly what was resolved
    assert json.loads((state / "secrets.json").read_text()) == first.secrets


def test_a_lost_secret_is_remade_and_the_others_kept(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    first = clusterfile.prepare(path, state_dir=tmp_path / "s")
    stored = json.loads((tmp_path / "s" / "secrets.json").read_text())
    del stored["service_password"]
    (tmp_path / "s" / "secrets.json").write_text(json.dumps(stored))
    again = clusterfile.prepare(path, state_dir=tmp_path / "s")
    assert again.secrets["admin_password"] == first.secrets["admin_password"]
    assert again.secrets["service_password"] and again.secrets["service_password"] != first.secrets["service_password"]


def test_curve_gives_every_service_and_the_operator_a_stable_key(tmp_path: Path) -> None:
    path = write(tmp_path, variant(lambda d: d["security"].update(curve=True)))
    first = clusterfile.prepare(path)
    assert first.curve
    keys = {s.id: s.public_key for s in first.services}
    assert all(len(k) == 40 for k in keys.values()) and len(set(keys.values())) == len(keys)
    assert first.operator_key and first.operator_key not in keys.values()
    assert first.router_key("cell1") == keys["cell1/router"].encode()
    assert clusterfile.prepare(path).services == first.services


def test_image_upload_bounds_default_and_parse_with_suffixes(tmp_path: Path) -> None:
    api = clusterfile.load(write(tmp_path, BASE)).api
    assert (api.image_size_cap, api.image_size_total, api.image_store_min_free) == (8 << 30, 32 << 30, 1 << 30)

    def bounds(doc: dict[str, Any]) -> None:
        doc["api"].update(image_size_cap="2G", image_size_total=5 << 30, image_store_min_free="512MiB")
    api = clusterfile.load(write(tmp_path, variant(bounds))).api
    assert (api.image_size_cap, api.image_size_total, api.image_store_min_free) == (2 << 30, 5 << 30, 512 << 20)
    for bad in ("lots", 0, -1, True, "0G", "2X"):
        def bad_cap(doc: dict[str, Any], value: object = bad) -> None:
            doc["api"].update(image_size_cap=value)
        with pytest.raises(ClusterFileError) as caught:
            clusterfile.load(write(tmp_path, variant(bad_cap)))
        assert "api.image_size_cap" in str(caught.value) and "K/M/G/T suffix" in str(caught.value), bad
