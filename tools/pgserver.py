"""A private PostgreSQL server: initdb into a directory, listen only on a unix socket there (own
port number, no TCP), start and stop with pg_ctl. No system service is touched.

`cellctl up` runs one for a cluster whose cluster.yaml asks for `db: {engine: postgresql, managed:
true}` (state dir `<state>/postgres`), and the tests run one per session (tests/conftest.py).
PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user (Debian's
package makes it), and the directory it lives in is made reachable by that user's group only.
"""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "cc"
SOCKET_PATH_MAX = 107  # sun_path, less its terminating NUL
START_TIMEOUT = 60


class PostgresError(Exception):
    """The private server cannot be made, started or stopped; the message says why."""


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian: /usr/lib/postgresql/N/bin), None if none."""
    found = sorted((p for p in PG_ROOT.glob("*/bin") if (p / "pg_ctl").exists()),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def missing_reason() -> str | None:
    """Why no private server can run here (None: it can)."""
    if bin_dir() is None:
        return f"PostgreSQL binaries not installed (no {PG_ROOT}/*/bin/pg_ctl; Debian package `postgresql`)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the server as"
    return None


def url(socket_dir: str | Path, port: int, database: str) -> str:
    """The SQLAlchemy URL of `database` on a server listening in `socket_dir` (psycopg 3)."""
    return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={quote(str(socket_dir), safe='/')}&port={port}"


@dataclass(frozen=True)
class PrivateServer:
    """One server: data in `<directory>/data`, its socket `<directory>/.s.PGSQL.<port>`, log in `<directory>/log`."""
    directory: Path
    port: int = 5432  # names the socket file only: the server listens on no TCP address

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str) -> str:
        return url(self.directory, self.port, database)

    def running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        return self._pg_ctl("status", check=False).returncode == 0

    def start(self) -> None:
        """initdb on first use, then start unless running (idempotent)."""
        reason = missing_reason()
        if reason is not None:
            raise PostgresError(reason)
        sock = self.directory / f".s.PGSQL.{self.port}"
        if len(str(sock)) > SOCKET_PATH_MAX:
            raise PostgresError(f"the socket path {sock} is longer than {SOCKET_PATH_MAX} bytes: use a shorter "
                                f"state dir")
        self._prepare_directory()
        if not (self.data / "PG_VERSION").exists():
            if self.data.exists():
                shutil.rmtree(self.data)  # a half-made initdb
            self._run([self._bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8",
                       "--no-instructions"])
        if self.running():
            return
        # synchronous_commit=off: a COMMIT does not wait for its WAL flush, the durability SQLite's cells
        # run with (WAL + synchronous=NORMAL): a crash may lose the last moments' commits, never consistency
        # (fsync stays on). Measured in the boot bench: with a flush per commit, writes serialized on the
        # cell's write lock spent most of their time waiting for the disk.
        options = (f"-p {self.port} -k {self.directory} -c listen_addresses='' -c fsync=on "
                   f"-c synchronous_commit=off")
        self._pg_ctl("start", "-o", options, "-l", str(self.directory / "log"), "-t", str(START_TIMEOUT))

    def stop(self) -> None:
        """Stop the server if it runs (fast shutdown: sessions are ended, nothing is lost)."""
        if self.running():
            self._pg_ctl("stop", "-m", "fast", "-t", str(START_TIMEOUT))

    def create_database(self, name: str) -> None:
        """CREATE DATABASE unless it exists."""
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{_literal(name)}'")
        if exists.strip() != "1":
            self._psql(f'CREATE DATABASE "{_identifier(name)}"')

    def drop_database(self, name: str) -> None:
        self._psql(f'DROP DATABASE IF EXISTS "{_identifier(name)}" WITH (FORCE)')

    # --- helpers ------------------------------------------------------------------

    def _bin(self, name: str) -> str:
        found = bin_dir()
        assert found is not None
        return str(found / name)

    def _prepare_directory(self) -> None:
        """The directory, owned by the server's user; as root, its parent is opened to that user's group
        (traverse only) and every ancestor must already let others traverse."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        user = pwd.getpwnam("postgres")
        for ancestor in self.directory.parent.parents:
            if not os.stat(ancestor).st_mode & 0o001:
                raise PostgresError(f"{ancestor} does not let other users traverse it (mode o+x): the postgres "
                                    f"user could not reach {self.directory}")
        parent = self.directory.parent
        parent_stat = os.stat(parent)
        if not parent_stat.st_mode & 0o001:
            os.chown(parent, -1, grp.getgrgid(user.pw_gid).gr_gid)
            os.chmod(parent, (parent_stat.st_mode & 0o7700) | 0o010)
        for path in (self.directory, *self.directory.rglob("*")):
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
        os.chmod(self.directory, 0o700)

    def _as_server_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self._as_server_user(argv), check=False, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL,
                              timeout=START_TIMEOUT + 30, cwd="/")
        if check and proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            log = self.directory / "log"
            raise PostgresError(f"{Path(argv[0]).name} failed ({proc.returncode}): {' | '.join(tail)}"
                                + (f"; see {log}" if log.exists() else ""))
        return proc

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([self._bin("pg_ctl"), "-D", str(self.data), "-w", *args], check=check)

    def _psql(self, sql: str) -> str:
        return self._run([self._bin("psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h",
                          str(self.directory), "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres",
                          "-c", sql]).stdout


def _identifier(name: str) -> str:
    if not name or '"' in name or "\x00" in name:
        raise PostgresError(f"bad database name {name!r}")
    return name


def _literal(name: str) -> str:
    return _identifier(name).replace("'", "''")
