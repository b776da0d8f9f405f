"""`cellctl db upgrade|status` and the check `cellctl up` makes before starting services: every API and
cell DB of a cluster at the code's Alembic head (cells/db/migrate.py).

A cluster's managed PostgreSQL (tools/pgserver.py) is started for the command when it is not running
(the cluster is down) and stopped again after it; a running one is left as it is (an online upgrade).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cells.config import ClusterConfig

Printer = Callable[[str], None]


@contextmanager
def managed_postgres_running(cluster: ClusterConfig) -> Iterator[None]:
    """The cluster's private PostgreSQL runs inside the block (started for it if it was not)."""
    if not cluster.managed_postgres:
        yield
        return
    from tools import pgserver

    server = pgserver.PrivateServer(Path(cluster.managed_postgres["dir"]), int(cluster.managed_postgres["port"]))
    was_running = server.running()
    server.start()
    for name in cluster.managed_postgres["databases"]:
        server.create_database(name)
    try:
        yield
    finally:
        if not was_running:
            server.stop()


def status(cluster: ClusterConfig, out: Printer, as_json: bool = False) -> int:
    """Each DB's revision and state; 1 when one is not current (behind, from before Alembic, newer)."""
    from cells.db import migrate

    rows: list[dict[str, Any]] = []
    with managed_postgres_running(cluster):
        for label, kind, url in migrate.cluster_databases(cluster):
            st = migrate.read_state(url, kind)
            rows.append({"db": label, "kind": kind, "url": migrate.describe(url), "revision": st.revision,
                         "head": st.head, "state": st.state, "schema_version": st.legacy_version})
    if as_json:
        out(json.dumps(rows, indent=2))
    else:
        width = max(len(r["db"]) for r in rows)
        for r in rows:
            revision = r["revision"] or (f"none (schema v{r['schema_version']})" if r["schema_version"] else "none")
            out(f"{r['db']:<{width}}  {r['state']:<8} revision {revision} (head {r['head']})  {r['url']}")
    return 0 if all(r["state"] in ("current", "empty") for r in rows) else 1


def upgrade(cluster: ClusterConfig, out: Printer, err: Printer) -> int:
    """Migrate every DB to head, online (each in one write transaction); 1 if one failed."""
    from cells.db import migrate

    failed = 0
    with managed_postgres_running(cluster):
        for label, kind, url in migrate.cluster_databases(cluster):
            try:
                before, after = migrate.upgrade(url, kind)
            except Exception as exc:  # noqa: BLE001 - report it and go on with the other DBs
                err(f"{label}: upgrade failed: {type(exc).__name__}: {exc}")
                failed += 1
                continue
            if before.state == "current":
                out(f"{label}: already at {after.revision}")
            else:
                was = before.revision or ("empty" if before.empty else f"schema v{before.legacy_version}")
                out(f"{label}: {was} -> {after.revision}")
    return 1 if failed else 0


def not_current(cluster: ClusterConfig, file: str) -> list[str]:
    """What `cellctl up` must refuse to start services against: DBs behind the code (or newer)."""
    from cells.db import migrate

    problems = []
    for label, kind, url in migrate.cluster_databases(cluster):
        st = migrate.read_state(url, kind)
        if st.state in ("behind", "legacy"):
            at = st.revision or f"schema v{st.legacy_version}, from before Alembic"
            problems.append(f"the {label} DB is at {at}, behind this code's {st.head}: "
                            f"run `cellctl db upgrade {file}` first")
        elif st.state == "newer":
            problems.append(f"the {label} DB is at {st.revision}, which this code does not know (newer code "
                            f"made it): run the newer code")
    return problems
