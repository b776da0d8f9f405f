"""`cellctl db status|upgrade` and `cellctl up` against DBs behind the code (tools/dbctl.py): DBs the
previous release made (tests/data/*_db_v4.sql) are refused by up, naming the command; db upgrade
migrates them with their rows; then status says current and up would go on."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from api.db.schema import ALEMBIC_HEAD as API_HEAD
from cells.db.schema import ALEMBIC_HEAD as CELL_HEAD
from tests.conftest import free_port
from tests.unit.test_supervisor_cellctl import cluster_file
from tools import cellctl

DATA = Path(__file__).resolve().parents[1] / "data"


def _previous_release_dbs(state: Path) -> None:
    (state / "cells").mkdir(parents=True)
    for kind, path in (("api", state / "api.db"), ("cell", state / "cells" / "cell1.db")):
        with sqlite3.connect(path) as conn:
            conn.executescript((DATA / f"{kind}_db_v4.sql").read_text())


def test_up_refuses_dbs_behind_the_code_until_db_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(cluster_file(tmp_path, free_port(), free_port()))
    state = tmp_path / "var"
    _previous_release_dbs(state)

    assert cellctl.main(["up", path]) == 1
    err = capsys.readouterr().err
    assert f"the api DB is at schema v4, from before Alembic, behind this code's {API_HEAD}: " \
           f"run `cellctl db upgrade {path}` first" in err
    assert "the cell cell1 DB is at schema v4" in err
    assert not (state / "run" / "supervisor.pid").exists()

    assert cellctl.main(["db", "status", path, "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert [(r["db"], r["state"], r["revision"], r["schema_version"]) for r in rows] == \
        [("api", "legacy", None, 4), ("cell cell1", "legacy", None, 4)]

    assert cellctl.main(["db", "upgrade", path]) == 0
    out = capsys.readouterr().out
    assert f"api: schema v4 -> {API_HEAD}" in out and f"cell cell1: schema v4 -> {CELL_HEAD}" in out
    with sqlite3.connect(state / "cells" / "cell1.db") as conn:
        assert conn.execute("SELECT name FROM instances").fetchall() == [("old-vm",)]

    assert cellctl.main(["db", "status", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("api ") and f" current  revision {API_HEAD} (head {API_HEAD})" in lines[0]
    assert f" current  revision {CELL_HEAD} (head {CELL_HEAD})" in lines[1]

    assert cellctl.main(["db", "upgrade", path]) == 0  # nothing left to do
    assert f"cell cell1: already at {CELL_HEAD}" in capsys.readouterr().out
