"""examples/prometheus.yml and examples/grafana-dashboard.json name only metrics the code exports
(cells/metrics.py), so a renamed metric cannot leave the dashboard silently empty."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import cells.metrics  # noqa: F401  # registers the metrics

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")  # "": a gauge is its bare name


def exported_samples() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith("cellcloud_"):
            names.update(family.name + s for s in SUFFIXES)
    return names


def test_dashboard_queries_name_only_exported_metrics() -> None:
    dash = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bcellcloud_[a-z_]+", e)}
    assert len(exprs) >= 6 and used
    assert used <= exported_samples(), used - exported_samples()
    families = {re.sub(r"_(total|bucket|count|sum)$", "", m) for m in used}
    # every exported family has a panel
    assert families == {f.name for f in REGISTRY.collect() if f.name.startswith("cellcloud_")}


def test_prometheus_config_scrapes_the_metrics_path() -> None:
    config = yaml.safe_load((EXAMPLES / "prometheus.yml").read_text())
    assert [job["job_name"] for job in config["scrape_configs"]] == ["cellcloud-api", "cellcloud-services"]
    for job in config["scrape_configs"]:
        assert job["metrics_path"] == "/metrics"
        assert all(re.fullmatch(r"[\w.-]+:\d+", t) for t in job["static_configs"][0]["targets"])
