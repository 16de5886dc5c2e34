"""A throw-away PostgreSQL server for tests (pytest plugin, loaded from conftest.py).

The session fixture :func:`postgres_server` runs ``initdb`` into a temporary folder, starts the
cluster with ``pg_ctl`` on a free loopback port (its unix socket in the same folder), and stops
it and deletes everything at the end of the session. Binaries come from ``$PG_BIN``,
``/usr/lib/postgresql/<version>/bin`` (Debian) or ``PATH``.

``initdb`` refuses to run as root (CI runs as root), so as root every server command runs as
the ``postgres`` system user (``runuser -u postgres``), which Debian's package creates.

The superuser is ``aup`` with password :data:`PG_PASSWORD`; TCP connections need the password
(scram-sha-256), so tests can check what happens with a wrong one.

When the server cannot start, PostgreSQL tests are skipped with the reason, except under CI
(``CI`` set), where they fail: CI must run them.

Fixtures:
    postgres_server: the running :class:`PostgresServer` (session scope).
    pg_url: a fresh, empty database on it, as a SQLAlchemy URL (function scope).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_USER = "aup"
PG_PASSWORD = "aup-test-pw"


def _find_bin() -> Path | None:
    env = os.environ.get("PG_BIN")
    if env and (Path(env) / "initdb").exists():
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """A running throw-away PostgreSQL cluster.

    Attributes:
        host: ``127.0.0.1``.
        port: the TCP port.
        user: superuser name.
        password: its password.
        root: the temporary folder (data directory, socket, log).
    """

    host: str
    port: int
    user: str
    password: str
    root: Path
    bindir: Path
    run_as: str | None
    options: str = ""

    def pg_ctl(self, *args: str) -> None:
        """Run ``pg_ctl -D <data> ARGS`` (``stop -m fast``, ``start``...) and wait for it."""
        extra = ["-o", self.options, "-l", str(self.root / "log")] if "start" in args else []
        subprocess.run(_cmd(self.run_as, [str(self.bindir / "pg_ctl"), "-D",
                                          str(self.root / "data"), *extra, "-w", "-t", "60",
                                          *args]),
                       check=True, capture_output=True, text=True, timeout=90)

    def url(self, dbname: str = "postgres", password: str | None = None) -> str:
        """SQLAlchemy URL of database ``dbname`` (psycopg 3 driver)."""
        pw = self.password if password is None else password
        return f"postgresql+psycopg://{self.user}:{pw}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host=self.host, port=self.port, user=self.user,
                             password=self.password, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`create_database` (closing its connections)."""
        import psycopg

        name = url.rsplit("/", 1)[-1]
        with psycopg.connect(host=self.host, port=self.port, user=self.user,
                             password=self.password, dbname="postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _cmd(run_as: str | None, argv: list[str]) -> list[str]:
    return ["runuser", "-u", run_as, "--", *argv] if run_as else argv


def start_postgres() -> PostgresServer:
    """Create and start a cluster; raises RuntimeError with the reason when it cannot."""
    bindir = _find_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL binaries not found (install the postgresql package or set "
                           "PG_BIN)")
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root and there is no 'postgres' user for initdb"
                               ) from None
        if not shutil.which("runuser"):
            raise RuntimeError("running as root and runuser is missing")
        run_as = "postgres"
    # the server user must reach the folder: $TMPDIR may be private to root, /tmp is not
    base = "/tmp" if run_as and Path("/tmp").is_dir() else None
    root = Path(tempfile.mkdtemp(prefix="aup-pg-", dir=base))
    if run_as:
        pw = pwd.getpwnam(run_as)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    root.chmod(0o755)
    pwfile = root / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if run_as:
        os.chown(pwfile, pwd.getpwnam(run_as).pw_uid, -1)
    data = root / "data"
    try:
        subprocess.run(_cmd(run_as, [str(bindir / "initdb"), "-D", str(data), "-U", PG_USER,
                                     f"--pwfile={pwfile}", "--auth-local=trust",
                                     "--auth-host=scram-sha-256", "-E", "UTF8",
                                     "--locale=C"]),
                       check=True, capture_output=True, text=True, timeout=120)
        port = _free_port()
        opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        subprocess.run(_cmd(run_as, [str(bindir / "pg_ctl"), "-D", str(data), "-o", opts,
                                     "-l", str(root / "log"), "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, text=True, timeout=90)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
        out = getattr(err, "stderr", "") or ""
        log = root / "log"
        if log.exists():
            out += log.read_text(errors="replace")[-2000:]
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"cannot start PostgreSQL: {err}\n{out}") from None
    return PostgresServer("127.0.0.1", port, PG_USER, PG_PASSWORD, root, bindir, run_as, opts)


def stop_postgres(server: PostgresServer) -> None:
    """Stop the cluster and delete its folder."""
    subprocess.run(_cmd(server.run_as, [str(server.bindir / "pg_ctl"), "-D",
                                        str(server.root / "data"), "-m", "immediate", "-w",
                                        "stop"]),
                   capture_output=True, timeout=60)
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server (skipped outside CI when it cannot start)."""
    try:
        server = start_postgres()
    except RuntimeError as err:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL must run under CI: {err}")
        pytest.skip(str(err))
    try:
        yield server
    finally:
        stop_postgres(server)


@pytest.fixture
def pg_url(postgres_server: PostgresServer):
    """A fresh empty database on the session's server (dropped afterwards)."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        try:
            postgres_server.drop_database(url)
        except Exception:  # noqa: BLE001 - cleanup only; the cluster is deleted anyway
            pass
