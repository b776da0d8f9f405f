"""The API's worker processes (cluster.yaml api.workers: "api", "api-2", ... "api-N", all on one port) and
where each serves its own Prometheus /metrics (api.metrics: worker api-N on that port + N - 1)."""
from __future__ import annotations

from cells.config import ClusterConfig


def worker_index(service_id: str) -> int:
    """0 for "api", N - 1 for worker "api-N": its metrics port's offset."""
    _, _, n = service_id.rpartition("-")
    return int(n) - 1 if service_id.startswith("api-") and n.isdigit() else 0


def host_port(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def worker_count(cluster: ClusterConfig) -> int:
    return max(1, sum(1 for s in cluster.services if s.kind == "api"))


def metrics_urls(cluster: ClusterConfig) -> list[str]:
    """Each worker's /metrics URL, by worker index; empty when the API serves no metrics (api.metrics unset)."""
    if not cluster.api.metrics_listen:
        return []
    host, port = host_port(cluster.api.metrics_listen)
    host = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host  # a wildcard: ask loopback
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return [f"http://{host}:{port + n}/metrics" for n in range(worker_count(cluster))]
