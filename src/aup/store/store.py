"""The Store: the only code that talks SQL.

One :class:`Store` per process, over any SQLAlchemy URL. The default is SQLite at
``.aup/sqlite3.db`` under the current directory, created on first use. SQLite runs in WAL mode
with a busy timeout, so readers (dashboard, CLI) never block the experiment process, which is the
single writer of its experiment. Every write is one short transaction.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    IntegrityError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)

from aup.errors import (
    DatabaseDamaged,
    DatabaseUnavailable,
    DatabaseWriteFailed,
    StoreError,
    install_hint,
)
from aup.store import schema as s
from aup.store.text import readable_text

log = logging.getLogger(__name__)

#: Seconds a SQLite connection waits for a lock before failing.
SQLITE_BUSY_TIMEOUT = 30.0
#: Seconds to wait for a PostgreSQL server to accept a connection.
PG_CONNECT_TIMEOUT = 10
#: Seconds a store call keeps retrying while a database server does not answer (a restart,
#: a network blip), unless ``AUP_DB_OUTAGE_WAIT`` says otherwise.
DB_OUTAGE_WAIT = 120.0

_T = TypeVar("_T")


def outage_wait_seconds() -> float:
    """Seconds an experiment's store calls retry while the database server does not answer:
    ``AUP_DB_OUTAGE_WAIT`` (seconds) or :data:`DB_OUTAGE_WAIT`."""
    try:
        return max(0.0, float(os.environ.get("AUP_DB_OUTAGE_WAIT", DB_OUTAGE_WAIT)))
    except ValueError:
        return DB_OUTAGE_WAIT


def _reconnecting(method: Callable[..., _T]) -> Callable[..., _T]:
    """Retry a store call (one transaction) while the database server does not answer.

    A PostgreSQL server that restarts or drops the connection used to end the run with a
    traceback and leave the experiment RUNNING. The call is retried with growing pauses (0.5 s
    to 5 s) for up to ``AUP_DB_OUTAGE_WAIT`` seconds (default :data:`DB_OUTAGE_WAIT`), or until
    ``store.abort()`` is true (a stop request); a warning says so once. Each call is one
    transaction, rolled back when the connection broke, so running it again writes it once.
    SQLite errors are not retried (a file does not go away and come back; locks have their
    own timeout): they raise :class:`~aup.errors.DatabaseWriteFailed` (a full disk used to end
    the run with a SQLAlchemy traceback).

    Raises:
        DatabaseUnavailable: the server did not come back in time (or the run was stopped).
        DatabaseWriteFailed: a SQLite database cannot be read or written.
    """

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> _T:
        start = time.monotonic()
        pause = 0.5
        warned = False
        while True:
            try:
                result = method(self, *args, **kwargs)
            except (OperationalError, InterfaceError) as err:
                self._drop_writer()
                cause = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
                if self.engine.dialect.name == "sqlite":
                    raise DatabaseWriteFailed(f"the database {self._safe_url()} cannot be used "
                                              f"({cause})", locked="locked" in cause) from None
                waited = time.monotonic() - start
                if waited >= self.outage_wait or (self.abort is not None and self.abort()):
                    raise DatabaseUnavailable(
                        f"the database {self._safe_url()} did not answer for {waited:.0f} s "
                        f"({cause}); the experiment could not record its progress") from None
                if not warned:
                    log.warning("the database %s does not answer (%s); retrying for up to "
                                "%.0f s", self._safe_url(), cause, self.outage_wait)
                    warned = True
                # (never past the limit: with 6 s, pauses of 0.5, 1, 2 and 4 s waited 7.5)
                time.sleep(min(pause, max(0.05, self.outage_wait - waited)))
                pause = min(pause * 2, 5.0)
                continue
            if warned:
                log.warning("the database %s answers again", self._safe_url())
            return result

    return wrapper


def safe_url(url: str) -> str:
    """``url`` for messages: the password (if any) shown as ``***``. A SQLite URL (no
    password) is shown as given: SQLAlchemy's rendering percent-encodes a path's spaces and
    non-ASCII letters, and ``--db`` reads such a path literally (a pasted hint failed)."""
    if url.startswith("sqlite"):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for messages
        return "<unparseable URL>"


def shown_url(url: str) -> str:
    """``url`` for messages (:func:`safe_url`), followed by ``(file PATH)`` when it names a
    SQLite file whose path it spells differently: a ``%``, ``?`` or ``#`` in the path is
    percent-encoded in the URL (``runs%20x.db`` is ``sqlite:///runs%2520x.db``)."""
    shown = safe_url(url)
    path = sqlite_file(url)
    if path is not None and str(path) not in url:
        shown += f" (file {path})"
    return shown


def pasteable_db(url: str) -> str:
    """``url`` as the shell word of a ``--db`` hint: shell-quoted, and a password (the real
    one, or the ``***`` of :func:`safe_url`) replaced by ``$PGPASSWORD`` inside double quotes
    (the variable libpq also reads), so that the hint pastes as printed once it is set. A
    hint with ``***`` sent the password ``***`` (trial 58)."""
    import shlex

    if url.startswith("sqlite"):
        return shlex.quote(url)
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - only for a message
        return shlex.quote(safe_url(url))
    if parsed.password is None:
        return shlex.quote(safe_url(url))
    marker = "AUPPASSWORDMARKER"
    text = parsed.set(password=marker).render_as_string(hide_password=False)
    for ch in '\\"$`':  # what double quotes do not keep as is
        text = text.replace(ch, "\\" + ch)
    return '"' + text.replace(marker, "$PGPASSWORD") + '"'


def without_password(config: Any) -> Any:
    """``config`` (a decoded experiment configuration) with the password of its ``storage``
    URL shown as ``***``: the configuration is stored in the shared database and shown by
    ``aup list --json`` and the dashboard. Anything else is returned unchanged."""
    if not isinstance(config, dict) or not isinstance(config.get("storage"), str):
        return config
    storage = config["storage"]
    if storage.startswith("sqlite") or "@" not in storage:
        return config
    return {**config, "storage": safe_url(storage)}


#: What a path must not hold as is in a SQLite URL: SQLAlchemy decodes ``%XX`` in the database
#: part and ends it at ``?`` (a query); ``#`` is escaped too, for other readers of the URL.
_URL_ESCAPES = (("%", "%25"), ("?", "%3F"), ("#", "%23"))


def sqlite_url(path: str | os.PathLike[str], scheme: str = "sqlite", query: str = "") -> str:
    """The SQLAlchemy URL of the SQLite file ``path``, which it names exactly (a folder called
    ``q?dir`` or ``acc%41`` included): only ``%``, ``?`` and ``#`` are percent-encoded, so the
    URL stays readable in messages; other characters (spaces, non-ASCII letters, and the
    surrogate escapes of a name that is not valid UTF-8) are kept as they are, which
    SQLAlchemy reads back unchanged. :func:`sqlite_file` gives ``path`` back.

    Args:
        path: the database file (used as given: resolve it first if it must be absolute).
        scheme: the URL's scheme (``sqlite``, ``sqlite+pysqlite``).
        query: the URL's options without the ``?`` (``timeout=5``), already URL-encoded.
    """
    text = os.fspath(path)
    for char, code in _URL_ESCAPES:
        text = text.replace(char, code)
    return f"{scheme}:///{text}" + (f"?{query}" if query else "")


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (``sqlite:///path``, ``sqlite+pysqlite:///path?opts``), or None
    for another database or an in-memory one. The path is decoded as SQLAlchemy decodes it
    (``%XX`` escapes; the query after ``?`` left out), so it is the file SQLite opens."""
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[1].split("?", 1)[0]
    if "%" in path:
        from urllib.parse import unquote

        path = unquote(path)  # what sqlalchemy.engine.make_url does with the database part
    return Path(path) if path and path != ":memory:" else None


def absolute_sqlite_url(url: str, base: str | os.PathLike[str]) -> str:
    """``url`` with the relative file of a SQLite URL (``sqlite:///runs.db``) made absolute
    against the folder ``base`` (``~`` expanded), its options kept; any other URL (another
    database, in memory, an absolute file, a ``file:`` URI filename) as given."""
    path = sqlite_file(url)
    if path is None or path.is_absolute() or str(path).startswith("file:"):
        return url
    scheme, rest = url.split(":///", 1) if ":///" in url else (url, "")
    query = rest.split("?", 1)[1] if "?" in rest else ""
    return sqlite_url((Path(base) / path.expanduser()).resolve(), scheme, query)


def _url_fix(url: str) -> str:
    """The fix for a database URL SQLAlchemy cannot use (unknown scheme, missing driver)."""
    scheme = url.split("://", 1)[0].lower()
    try:
        import psycopg  # noqa: F401 - only asks whether the driver is installed
        install = ""
    except ImportError:
        install = f"; install that driver with {install_hint('postgres')}"
    if scheme.startswith("postgres") and scheme != "postgresql+psycopg":
        # postgres:// (Heroku's spelling) names no driver; postgresql:// means psycopg2
        return (f"start the URL with postgresql+psycopg:// instead of {scheme}:// (psycopg 3 "
                f"is the PostgreSQL driver Auptimizer supports){install}")
    if scheme == "postgresql+psycopg":
        return (install.removeprefix("; ") or "check that 'python -c \"import psycopg\"' works "
                "in this environment")
    return ("give a SQLAlchemy URL such as sqlite:///path/to/db.sqlite or "
            "postgresql+psycopg://user:password@host:5432/dbname")


@contextmanager
def read_only_sqlite(path: Path) -> Iterator[Any]:
    """A plain ``sqlite3`` connection to ``path`` that cannot write (not even the WAL mode
    switch the store's connections make), closed on exit.

    Raises:
        sqlite3.Error: the file cannot be opened or is not a database.
    """
    import sqlite3

    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        yield con
    finally:
        con.close()


#: The end of the fix for a SQLite file or folder that cannot be written.
_ELSEWHERE = "put the database elsewhere with --db sqlite:///path/to/db.sqlite (or AUP_DB)"

#: The tables every database of Auptimizer (2.0 or later) has.
_CORE_TABLES = frozenset({"user", "resource", "experiment", "job"})


def refuse_foreign_sqlite(path: Path) -> None:
    """Refuse a SQLite file that holds another program's tables and none of Auptimizer's.

    Checked on a read-only connection before the store's own (which turns on WAL mode, a
    change written to the file): such a file is left exactly as it was. A file SQLite cannot
    read is left to the store's connection, which reports it.

    Raises:
        StoreError: the file has tables, and they are not Auptimizer's.
    """
    import sqlite3

    try:
        if path.stat().st_size == 0:
            return
        with read_only_sqlite(path) as con:
            names = {r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%'")}
    except (OSError, sqlite3.Error):
        return
    if not names or _CORE_TABLES <= names:  # new, or Auptimizer's (created in one transaction)
        return
    shown = ", ".join(sorted(names)[:6]) + (", ..." if len(names) > 6 else "")
    raise StoreError(
        f"the SQLite file {path} holds the tables of another program ({shown}), not an "
        "Auptimizer database; nothing was written to it. Fix: give a new file or an Auptimizer "
        "database (e.g. --db sqlite:///path/to/aup.db)")


def check_url(url: str) -> None:
    """What opening ``url`` would refuse, found without connecting or creating anything
    (``aup run --check``): a SQLite path that is a folder or lies in a missing folder, an
    existing file that is not a SQLite database or holds another program's tables; for a
    server, an unknown scheme or a driver that is not installed. A server that does not answer
    or refuses the login is found only by connecting.

    Raises:
        StoreError: with the fix, as opening the database would say it.
    """
    path = sqlite_file(url)
    if path is None:
        try:
            create_engine(url).dispose()  # loads the dialect and its driver, connects nothing
        except (ArgumentError, NoSuchModuleError, ImportError) as err:
            raise StoreError(f"cannot use database URL {shown_url(url)}: {err}. Fix: "
                             f"{_url_fix(url)}") from None
        return
    check_sqlite_folder(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with open(path, "rb") as f:
            header = f.read(16)
    except OSError as err:
        raise StoreError(f"cannot open database {shown_url(url)}: {err.strerror or err}") \
            from None
    if header != b"SQLite format 3\x00":
        raise StoreError(f"cannot open database {shown_url(url)}: file is not a database (if "
                         "it was an Auptimizer database, its first page is damaged: restore it "
                         "from a backup). Fix: give the URL of an Auptimizer database (--db, "
                         "AUP_DB or storage), or move this file away")
    refuse_foreign_sqlite(path)


def check_sqlite_folder(path: Path, create_ok: bool = False) -> None:
    """Refuse a SQLite path that is a folder, or whose folder does not exist unless that folder
    is ``.aup`` (the default place, created on first use): a typo in ``--db`` or ``storage``
    must not create folders anywhere. Creates nothing.

    Args:
        path: the database file.
        create_ok: accept a missing folder (``aup setup``, the explicit step that makes the
            database, creates it).

    Raises:
        StoreError: the path is a folder or its folder is missing, with the fix.
    """
    if path.is_dir():
        if path.name == "sqlite3.db" and path.parent.name == ".aup":  # the default place
            raise StoreError(f"the database {path} is a folder (the default database file's "
                             f"place). Fix: move that folder away, or give another database "
                             f"file (e.g. --db {sqlite_url(path / 'aup.db')}, AUP_DB or "
                             f"\"storage\")")
        raise StoreError(f"the database {path} is a folder. Fix: give a file in it (e.g. "
                         f"{sqlite_url(path / 'aup.db')} in --db, AUP_DB or \"storage\"), or "
                         "leave the database out for the default .aup/sqlite3.db under the "
                         "current folder")
    if not create_ok and path.parent.name != ".aup" and not path.parent.is_dir():
        raise StoreError(
            f"the folder {path.parent} of the database {path.name} does not exist. "
            f"Fix: create it (mkdir -p {path.parent}) or correct the path")


def default_url(root: str | Path | None = None) -> str:
    """URL of the default database: ``<root>/.aup/sqlite3.db`` (root: current directory)."""
    base = Path(root) if root is not None else Path.cwd()
    return sqlite_url((base / ".aup" / "sqlite3.db").resolve())


def _finite(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def _set_sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
    cur.close()



def _writable(path: Path) -> bool:
    """True when this process may write the SQLite file ``path`` and create its ``-wal`` and
    ``-shm`` files next to it (WAL mode needs both)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def _read_only_engine(path: Path) -> Engine:
    """An engine whose connections open ``path`` read-only, for the views of a database this
    process may not write (an archive on a read-only disk, another user's results).

    WAL mode keeps a ``-shm`` index next to the database that every connection needs. While a
    writer has the database open that file exists and SQLite (3.22 or later) reads through it
    (``mode=ro``). Without it (no writer) and without the right to create it, the file is
    opened ``immutable``: read as it is on disk. Changes a crashed writer left in the ``-wal``
    file are then not seen; a warning says so.
    """
    import sqlite3

    uri = f"{path.resolve().as_uri()}?mode=ro"
    shm = path.with_name(path.name + "-shm")
    wal = path.with_name(path.name + "-wal")
    if not shm.exists():
        uri += "&immutable=1"
        if wal.exists() and wal.stat().st_size > 0:
            log.warning("the database %s is read-only here and its -wal file holds changes "
                        "that were not yet copied into it; they are not shown. Fix: open it "
                        "once where it can be written (any aup command does that)", path)

    def connect() -> sqlite3.Connection:
        con = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT,
                              check_same_thread=False)
        con.execute("PRAGMA foreign_keys=ON")
        return con

    return create_engine("sqlite://", creator=connect)


def _check_read_only_schema(engine: Engine, path: Path) -> None:
    """Refuse a read-only database whose schema is older than this version's (it cannot be
    upgraded there)."""
    from aup.store.migrate import (
        HEAD,
        _fast_revision,
        known_revisions,
        newer_schema_error,
        readable_as_is,
    )

    rev = _fast_revision(engine)
    if rev == HEAD or not inspect(engine).has_table("experiment"):
        return
    if rev is not None and rev not in known_revisions():
        raise newer_schema_error(rev)
    with engine.connect() as c:
        if rev is not None and readable_as_is(c):  # an index or a no-op repair behind
            return
    raise StoreError(f"the database {path} has an older schema, which this Auptimizer reads "
                     "only after upgrading it, and it cannot be written here. Fix: copy it to "
                     "a folder you can write to and give the copy with --db")


# Statements of the hot path (one job: start, results, end), built once: building a Core
# statement per call cost more than the database work (benchmarks/store.py).
_INS_JOB = insert(s.job)
_INS_ATTEMPT = insert(s.job_attempt)
_INS_INTERMEDIATE = insert(s.intermediate_result)
_INS_MULTIPLE = insert(s.multiple_result)
_UPD_EXP_STATE = (update(s.experiment).where(s.experiment.c.eid == bindparam("b_eid"))
                  .values(proposer_state=bindparam("b_state"), heartbeat=bindparam("b_now")))
_UPD_EXP_BEAT = (update(s.experiment).where(s.experiment.c.eid == bindparam("b_eid"))
                 .values(heartbeat=bindparam("b_now")))
_UPD_ATTEMPT_END = (update(s.job_attempt).where(s.job_attempt.c.jaid == bindparam("b_jaid"))
                    .values(end_time=bindparam("b_now"), status=bindparam("b_status"),
                            exit_code=bindparam("b_exit"), fail_reason=bindparam("b_reason"),
                            detail=bindparam("b_detail"), output_tail=bindparam("b_tail")))
_UPD_JOB_END = (update(s.job).where(s.job.c.jid == bindparam("b_jid"))
                .values(end_time=bindparam("b_now"), status=bindparam("b_status"),
                        score=bindparam("b_score"), fail_reason=bindparam("b_reason")))
# The job's last k multiple-result rows (k = number of labels) get is_last_result, in one
# statement: no expanding IN, so it compiles once like the rest of the hot path.
_UPD_MULTIPLE_LAST = (update(s.multiple_result)
                      .where(s.multiple_result.c.mrid.in_(
                          select(s.multiple_result.c.mrid)
                          .where(s.multiple_result.c.jid == bindparam("b_jid"))
                          .order_by(s.multiple_result.c.mrid.desc())
                          .limit(bindparam("b_n")).offset(bindparam("b_off"))
                          .scalar_subquery()))
                      .values(is_last_result=true()))


class Store:
    """Access to the Auptimizer database.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://user:pw@host/db``).
            SQLite files are created on first use, and their folder when it is ``.aup``
            (another folder must exist: a mistyped path creates nothing).
        create: create missing tables (True for writers; readers may pass False).

    Raises:
        StoreError: the URL is malformed, the driver is missing or the server does not answer.
    """

    def __init__(self, url: str, create: bool = True, read_only: bool = False):
        self.url = url
        self.read_only = False
        #: (st_dev, st_ino) of the SQLite file, remembered by the first check_file()
        self._file_identity: tuple[int, int] | None = None
        try:
            path = sqlite_file(url)
            if read_only and path is not None and path.is_file() and not _writable(path):
                self.read_only = True
                self.engine = _read_only_engine(path)
                event.listen(self.engine, "handle_error", _damaged_file_error(path))
                _check_read_only_schema(self.engine, path)
            elif url.startswith("sqlite"):
                if path is not None:
                    check_sqlite_folder(path)
                    refuse_foreign_sqlite(path)
                    if not path.parent.is_dir():  # the default place (.aup), made on first use
                        try:
                            path.parent.mkdir(parents=True, exist_ok=True)
                        except OSError as err:
                            raise StoreError(
                                f"cannot create the database folder {path.parent}: "
                                f"{err.strerror or err}. Fix: run from a folder you can write "
                                f"to, or {_ELSEWHERE}") from None
                self.engine: Engine = create_engine(
                    url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT,
                                       "check_same_thread": False})
                event.listen(self.engine, "connect", _set_sqlite_pragmas)
            else:
                # a server that does not answer fails within seconds, not minutes
                args = ({"connect_timeout": PG_CONNECT_TIMEOUT}
                        if url.startswith("postgresql") and "connect_timeout" not in url else {})
                self.engine = create_engine(url, pool_pre_ping=True, connect_args=args)
            if path is not None and not self.read_only:
                event.listen(self.engine, "handle_error", _damaged_file_error(path))
            if create and not self.read_only:
                self._create()
            elif not self.read_only:  # a read-only file is checked above, never upgraded
                # readers create nothing, but an older schema is upgraded so they can read it
                from aup.store.migrate import upgrade_existing

                upgrade_existing(self.engine)
        except (ArgumentError, NoSuchModuleError, ImportError) as err:
            raise StoreError(f"cannot use database URL {self._safe_url()}: {err}. Fix: "
                             f"{_url_fix(url)}") from None
        except DatabaseError as err:  # OperationalError, or "file is not a database"
            first = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
            if url.startswith("sqlite"):
                fix = ""
                if "unable to open" in first or "readonly" in first:
                    fix = (f". Fix: make the database file and its folder writable, or "
                           f"{_ELSEWHERE}")
                elif "not a database" in first:
                    fix = (" (if it was an Auptimizer database, its first page is damaged: "
                           "restore it from a backup). Fix: give the URL of an Auptimizer "
                           "database (--db, AUP_DB or storage), or move this file away")
                raise StoreError(f"cannot open database {self._safe_url()}: {first}{fix}"
                                 ) from None
            from aup.store.connect_errors import connect_reason

            raise StoreError(f"cannot open database {self._safe_url()}: "
                             f"{connect_reason(first)}") from None
        self._rid_cache: dict[tuple[str, str], int] = {}
        #: Seconds a call retries while a database server does not answer (see
        #: :func:`_reconnecting`): 0 (fail at once) for the read commands; the experiment
        #: loop sets :func:`outage_wait_seconds`. ``abort``: ends that wait early when true.
        self.outage_wait = 0.0
        self.abort: Callable[[], bool] | None = None
        self._writer: Any = None
        self._writer_thread: int | None = None
        self._sql: dict[tuple[int, tuple[str, ...]], tuple[str, list[str] | None]] = {}

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """A transaction on this store's long-lived write connection (the hot path).

        Checking a connection out of the pool and resetting it on return cost about as much
        as the SQLite commit itself, twice per job and once per result line; the writer
        keeps one connection instead. Only the thread that first wrote uses it (the
        experiment loop); other threads get a pooled connection. A connection that broke
        (PostgreSQL restart) is replaced on the next transaction.
        """
        me = threading.get_ident()
        if self._writer_thread is None:
            self._writer_thread = me
        if me != self._writer_thread:
            with self.engine.begin() as c:
                yield c
            return
        if self._writer is None or self._writer.invalidated or self._writer.closed:
            self._writer = self.engine.connect()
        with self._writer.begin():
            yield self._writer

    def _drop_writer(self) -> None:
        """Forget the write connection after an error (a new one is opened when needed)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.invalidate()
            except Exception:  # noqa: BLE001 - the connection is gone anyway
                pass

    # -- the hot path: statements compiled once per store, run as driver SQL ---------------------
    def _exec(self, c, stmt, params: dict[str, Any] | list[dict[str, Any]], *,
              returning=None):
        """Run a prebuilt statement with ``params`` (one dict, or a list for executemany).

        The statement is compiled for this database once (per set of parameter names) and
        then run with ``exec_driver_sql``, which skips SQLAlchemy's per-call statement
        processing: the job hot path's cost was mostly that, not the database.
        ``returning``: the primary-key column of an INSERT, whose new value is returned.
        """
        first = params[0] if isinstance(params, list) else params
        key = (id(stmt), tuple(first))
        compiled = self._sql.get(key)
        if compiled is None:
            target = stmt
            use_returning = returning is not None and self.engine.dialect.name != "sqlite"
            if use_returning:
                target = stmt.returning(returning)
            comp = target.compile(dialect=self.engine.dialect, column_keys=list(first))
            names = list(comp.positiontup) if comp.positional else None
            # exec_driver_sql skips the types' bind processing: the one this schema needs
            # (NulFreeText: no NUL reaches PostgreSQL) is applied here.
            nul_free = frozenset(k for k, b in comp.binds.items()
                                 if isinstance(b.type, s.NulFreeText))
            compiled = self._sql[key] = (str(comp), names, nul_free)
        sql, names, nul_free = compiled

        def bind(p: dict[str, Any]):
            if nul_free:  # a copy only when a value changes (nearly never): the job hot path
                changed = {k: c for k in nul_free
                           if k in p and (c := s.NulFreeText.clean(p[k])) is not p[k]}
                if changed:
                    p = {**p, **changed}
            return tuple(p[n] for n in names) if names is not None else p

        args = [bind(p) for p in params] if isinstance(params, list) else bind(params)
        result = c.exec_driver_sql(sql, args)
        if returning is None:
            return result
        if self.engine.dialect.name == "sqlite":
            return result.lastrowid
        return result.scalar_one()

    def _safe_url(self) -> str:
        return shown_url(self.url)

    def _create(self) -> None:
        # New database: create_all + stamp the newest revision; older one: Alembic upgrade;
        # current one: a single SELECT (see aup.store.migrate).
        from aup.store.migrate import ensure_schema

        ensure_schema(self.engine)

    def close(self) -> None:
        """Release the connections."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.engine.dispose()

    # -- users and resources ------------------------------------------------------------------
    @_reconnecting
    def user_id(self, name: str) -> int:
        """The uid of ``name``, created on first use (2.0 required a set-up step)."""
        name = readable_text(name)  # storable (a name that is not valid UTF-8)
        with self.engine.begin() as c:
            uid = c.execute(select(s.user.c.uid).where(s.user.c.name == name)).scalar()
        if uid is None:
            try:
                with self.engine.begin() as c:
                    uid = c.execute(insert(s.user).values(name=name, permission="all")
                                    ).inserted_primary_key[0]
            except IntegrityError:  # another process created it first
                with self.engine.connect() as c:
                    uid = c.execute(select(s.user.c.uid).where(s.user.c.name == name)).scalar()
        return int(uid)

    @_reconnecting
    def resource_id(self, kind: str, name: str) -> int:
        """The rid of the resource ``(kind, name)``, created on first use."""
        key = (kind, name)
        if key not in self._rid_cache:
            q = select(s.resource.c.rid).where(s.resource.c.type == kind,
                                               s.resource.c.name == name)
            with self.engine.connect() as c:
                rid = c.execute(q).scalar()
            if rid is None:
                try:
                    with self.engine.begin() as c:
                        rid = c.execute(insert(s.resource).values(
                            name=name, type=kind, status="free")).inserted_primary_key[0]
                except IntegrityError:  # another process created it first
                    with self.engine.connect() as c:
                        rid = c.execute(q).scalar()
            self._rid_cache[key] = int(rid)
        return self._rid_cache[key]

    # -- experiments -------------------------------------------------------------------------
    @_reconnecting
    def create_experiment(self, *, user: str, name: str, config: dict[str, Any], proposer: str,
                          target: str, n_total: int | None, config_path: str | None,
                          workingdir: str | None, status: str = "RUNNING") -> int:
        """Insert an experiment row and return its eid."""
        uid = self.user_id(user)
        with self.engine.begin() as c:
            eid = c.execute(insert(s.experiment).values(
                # the file's stem may be a name that is not valid UTF-8 (caf\xe9.json)
                uid=uid, name=readable_text(name), start_time=time.time(), status=status,
                exp_config=_dumps(config), proposer=proposer, target=target, n_total=n_total,
                config_path=config_path, workingdir=workingdir, stop_requested=False,
                host=socket.gethostname(), pid=os.getpid(), heartbeat=time.time(),
            )).inserted_primary_key[0]
        return int(eid)

    def check_file(self) -> None:
        """For a SQLite database: check that its path still names the file this store opened
        (the first call remembers it). Cheap (one ``stat``); the experiment loop calls it with
        each heartbeat.

        Raises:
            DatabaseFileGone: the file was deleted, or another file took its path (a restored
                copy, a second database created there), naming the path and what to do.
        """
        from aup.errors import DatabaseFileGone

        path = sqlite_file(self.url)
        if path is None:
            return
        try:
            st = os.stat(path)
        except FileNotFoundError:
            what = "was deleted"
        else:
            seen = self._file_identity
            if seen is None or seen == (st.st_dev, st.st_ino):
                self._file_identity = (st.st_dev, st.st_ino)
                return
            what = "was replaced by another file"
        raise DatabaseFileGone(
            f"the database file {path} {what} while the experiment ran: this process was "
            "writing into the old file, which nothing else can read, so what it recorded since "
            "is lost with it. Fix: if you moved it, move it back and continue with aup resume; "
            "otherwise restore it from a backup, or start again with aup run")

    @_reconnecting
    def update_experiment(self, eid: int, **values: Any) -> None:
        """Set columns of an experiment row (``proposer_state`` and ``exp_config`` given as dicts
        are JSON-encoded)."""
        for key in ("proposer_state", "exp_config"):
            if key in values and not isinstance(values[key], str | None):
                values[key] = _dumps(values[key])
        with self._tx() as c:
            c.execute(update(s.experiment).where(s.experiment.c.eid == eid).values(**values))

    @_reconnecting
    def claim_experiment(self, eid: int, seen: dict[str, Any]) -> bool:
        """Mark an experiment RUNNING in this process (resume), provided that its row still
        holds the ``status``, ``host``, ``pid`` and ``heartbeat`` of ``seen`` (the row the
        caller judged resumable): one compare-and-set, so of two processes resuming at once
        only one gets it.

        Returns:
            False when another process changed the row in between (nothing was written).
        """
        e = s.experiment
        same = [e.c[k].is_not_distinct_from(seen.get(k))
                for k in ("status", "host", "pid", "heartbeat")]
        with self._tx() as c:
            done = c.execute(update(e).where(e.c.eid == eid, *same).values(
                status="RUNNING", end_time=None, stop_requested=False,
                host=socket.gethostname(), pid=os.getpid(), heartbeat=time.time()))
            return done.rowcount == 1

    @_reconnecting
    def unclaim_experiment(self, eid: int, seen: dict[str, Any]) -> None:
        """Undo :meth:`claim_experiment` after a resume that could not start: the row gets
        back the ``status``, ``end_time``, ``host``, ``pid`` and ``heartbeat`` of ``seen``, if
        this process still holds it."""
        e = s.experiment
        with self._tx() as c:
            c.execute(update(e).where(e.c.eid == eid, e.c.pid == os.getpid(),
                                      e.c.host == socket.gethostname())
                      .values(**{k: seen.get(k) for k in ("status", "end_time", "host", "pid",
                                                           "heartbeat")}))

    @_reconnecting
    def end_experiment(self, eid: int, status: str, error_msg: str | None = None) -> None:
        """Mark an experiment ended with ``status`` (FINISHED, FAILED, STOPPED)."""
        self.update_experiment(eid, status=status, end_time=time.time(), error_msg=error_msg,
                               stop_requested=False)

    @_reconnecting
    def request_stop(self, eid: int) -> None:
        """Ask the process running ``eid`` to stop (``aup stop``, the dashboard)."""
        self.update_experiment(eid, stop_requested=True)

    @_reconnecting
    def stop_requested(self, eid: int) -> bool:
        """True when a stop was requested for ``eid``."""
        with self.engine.connect() as c:
            return bool(c.execute(select(s.experiment.c.stop_requested)
                                  .where(s.experiment.c.eid == eid)).scalar())

    @_reconnecting
    def get_experiment(self, eid: int) -> dict[str, Any] | None:
        """The experiment row as a dict (``exp_config`` decoded), or None."""
        with self.engine.connect() as c:
            row = c.execute(select(s.experiment).where(s.experiment.c.eid == eid)).first()
        return _experiment_dict(row) if row is not None else None

    @_reconnecting
    def find_experiments(self, name: str) -> list[dict[str, Any]]:
        """Experiments called ``name``, newest first."""
        name = readable_text(name)  # as create_experiment stored it
        with self.engine.connect() as c:
            rows = c.execute(select(s.experiment).where(s.experiment.c.name == name)
                             .order_by(s.experiment.c.eid.desc())).all()
        return [_experiment_dict(r) for r in rows]

    @_reconnecting
    def list_experiments(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Every experiment, newest first, with ``user`` (the name of the user who ran it),
        ``n_jobs``, ``n_finished``, ``n_failed``, ``n_early_stopped`` and ``best_score`` (by the experiment's target, with the rule of :meth:`best_job`: finished
        jobs only and, with budgets, only those at the largest budget), and with budgets
        ``best_budget`` (the budget of that best job) and ``largest_budget_run`` (the largest
        budget any job ran at, failed ones too); both None without budgets."""
        e, j = s.experiment, s.job
        counts = (select(j.c.eid, func.count().label("n_jobs"),
                         func.sum((j.c.status == "FINISHED").cast(s.Integer)).label("n_finished"),
                         func.sum((j.c.status == "FAILED").cast(s.Integer)).label("n_failed"),
                         func.sum((j.c.status == "EARLY_STOPPED").cast(s.Integer))
                         .label("n_early_stopped"),
                         func.max(j.c.budget).label("largest_budget_run"))
                  .where(j.c.is_rerun.is_(False)).group_by(j.c.eid).subquery())
        scored, budget, top = largest_budget()
        best = (select(j.c.eid, func.max(j.c.score).label("max_score"),
                       func.min(j.c.score).label("min_score"),
                       func.max(top.c.top).label("best_budget"))
                .join(top, and_(top.c.eid == j.c.eid, budget == top.c.top)).where(scored)
                .group_by(j.c.eid).subquery())
        u = s.user
        q = (select(e, counts.c.n_jobs, counts.c.n_finished, counts.c.n_failed,
                    counts.c.n_early_stopped, counts.c.largest_budget_run,
                    best.c.max_score, best.c.min_score, best.c.best_budget,
                    u.c.name.label("user"))
             .outerjoin(counts, counts.c.eid == e.c.eid)
             .outerjoin(best, best.c.eid == e.c.eid)
             .outerjoin(u, u.c.uid == e.c.uid).order_by(e.c.eid.desc()))
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        out = []
        for r in rows:
            d = _experiment_dict(r)
            m = r._mapping
            d["n_jobs"] = int(m["n_jobs"] or 0)
            d["n_finished"] = int(m["n_finished"] or 0)
            d["n_failed"] = int(m["n_failed"] or 0)
            d["n_early_stopped"] = int(m["n_early_stopped"] or 0)
            d["best_score"] = m["max_score"] if d["target"] == "max" else m["min_score"]
            d.update(budget_fields(m["largest_budget_run"], m["best_budget"]))
            out.append(d)
        return out

    # -- jobs ----------------------------------------------------------------------------------
    @_reconnecting
    def start_job(self, *, eid: int, job_config: dict[str, Any], proposal: dict[str, Any],
                  rid: int, output_dir: str | None, proposer_state: dict[str, Any] | None,
                  budget: float | None = None, bracket: int | None = None,
                  rung: int | None = None, is_rerun: bool = False) -> tuple[int, int]:
        """Insert a RUNNING job with its attempt 0, and save the proposer state, atomically.

        Returns:
            ``(jid, jaid)``.
        """
        now = time.time()
        with self._tx() as c:
            jid = self._exec(c, _INS_JOB, {
                "eid": eid, "start_time": now, "status": "RUNNING",
                "job_config": _dumps(job_config), "proposal": _dumps(proposal),
                "budget": budget, "bracket": bracket, "rung": rung, "n_attempts": 1,
                "is_rerun": bool(is_rerun)}, returning=s.job.c.jid)
            jaid = self._exec(c, _INS_ATTEMPT, {
                "jid": jid, "num": 0, "rid": rid, "start_time": now, "status": "RUNNING",
                "output_path": f"{output_dir}/{jid}.0.out" if output_dir is not None else None},
                returning=s.job_attempt.c.jaid)
            if proposer_state is not None:
                self._exec(c, _UPD_EXP_STATE, {"b_eid": eid, "b_state": _dumps(proposer_state),
                                               "b_now": now})
        return int(jid), int(jaid)

    @_reconnecting
    def set_job_config(self, jid: int, job_config: dict[str, Any]) -> None:
        """Rewrite the stored job config (it holds the job id, known after the insert)."""
        with self.engine.begin() as c:
            c.execute(update(s.job).where(s.job.c.jid == jid)
                      .values(job_config=_dumps(job_config)))

    @_reconnecting
    def start_attempt(self, *, jid: int, num: int, rid: int, output_path: str | None) -> int:
        """Insert attempt ``num`` of a job (a retry or a re-run after resume); returns jaid.

        The results (intermediate and multiple) of the earlier attempts are deleted in the same
        transaction: a job's results are those of its latest attempt (the earlier attempts'
        output stays in their ``jobs/<jid>.<num>.out`` files)."""
        now = time.time()
        with self._tx() as c:
            c.execute(delete(s.multiple_result).where(s.multiple_result.c.jid == jid))
            c.execute(delete(s.intermediate_result).where(s.intermediate_result.c.jid == jid))
            jaid = c.execute(insert(s.job_attempt).values(
                jid=jid, num=num, rid=rid, start_time=now, status="RUNNING",
                output_path=output_path)).inserted_primary_key[0]
            c.execute(update(s.job).where(s.job.c.jid == jid)
                      .values(status="RUNNING", n_attempts=num + 1, end_time=None))
        return int(jaid)

    def add_result(self, *, eid: int, jid: int, num: int, values: tuple[float, ...],
                   receive_time: float, track: bool) -> None:
        """Record one result line: an ``intermediate_result`` row when ``track``, and the
        secondary values in ``multiple_result`` (:meth:`add_results` with one line)."""
        self.add_results(eid=eid, rows=[(jid, num, values, receive_time)], track=track)

    @_reconnecting
    def add_results(self, *, eid: int, rows: list[tuple[int, int, tuple[float, ...], float]],
                    track: bool) -> None:
        """Record several result lines in one transaction (the experiment loop batches the lines
        that arrived together): per line an ``intermediate_result`` row when ``track``, and the
        secondary values in ``multiple_result``.

        Args:
            rows: ``(jid, num, values, receive_time)`` per line, in arrival order.
        """
        if not rows:
            return
        with self._tx() as c:
            if all(len(r[2]) == 1 for r in rows):
                if track:
                    self._exec(c, _INS_INTERMEDIATE, [
                        {"num": num, "score": _finite(values[0]), "jid": jid,
                         "receive_time": t} for jid, num, values, t in rows])
                return
            for jid, num, values, t in rows:
                irid = None
                if track:
                    irid = self._exec(c, _INS_INTERMEDIATE, {
                        "num": num, "score": _finite(values[0]), "jid": jid,
                        "receive_time": t}, returning=s.intermediate_result.c.irid)
                if len(values) > 1:
                    self._exec(c, _INS_MULTIPLE, [
                        {"label_order": i, "value": _finite(v), "receive_time": t,
                         "jid": jid, "irid": irid, "eid": eid, "is_last_result": False}
                        for i, v in enumerate(values[1:], start=1)])

    @_reconnecting
    def end_attempt(self, *, eid: int, jid: int, jaid: int, attempt_status: str,
                    exit_code: int | None, fail_reason: str | None, detail: str,
                    output_tail: str, job_status: str | None = None,
                    score: float | None = None, extras: Iterable[float] = (),
                    proposer_state: dict[str, Any] | None = None,
                    error_msg: str | None = None) -> None:
        """End an attempt, and (when ``job_status`` is given) its job, atomically.

        Args:
            job_status: the job's final status; None while the job will be retried.
            score: the job's score (script direction) when FINISHED or EARLY_STOPPED.
            extras: the final secondary values, marked ``is_last_result``.
            proposer_state: saved together, so the database and proposer always agree.
            error_msg: set as the experiment's ``error_msg`` if it has none yet.
        """
        now = time.time()
        extras = list(extras)
        with self._tx() as c:
            self._exec(c, _UPD_ATTEMPT_END, {
                "b_jaid": jaid, "b_now": now, "b_status": attempt_status, "b_exit": exit_code,
                "b_reason": fail_reason, "b_detail": detail, "b_tail": output_tail})
            if job_status is not None:
                self._exec(c, _UPD_JOB_END, {
                    "b_jid": jid, "b_now": now, "b_status": job_status,
                    "b_score": _finite(score), "b_reason": fail_reason})
                if extras:
                    self._exec(c, _UPD_MULTIPLE_LAST, {"b_jid": jid, "b_n": len(extras),
                                                       "b_off": 0})
            if proposer_state is not None:
                self._exec(c, _UPD_EXP_STATE, {"b_eid": eid, "b_state": _dumps(proposer_state),
                                               "b_now": now})
            else:
                self._exec(c, _UPD_EXP_BEAT, {"b_eid": eid, "b_now": now})
            if error_msg is not None:
                c.execute(update(s.experiment).where(s.experiment.c.eid == eid,
                                                     s.experiment.c.error_msg.is_(None))
                          .values(error_msg=error_msg))

    @_reconnecting
    def mark_interrupted(self, eid: int, reason: str = "LOST") -> int:
        """Mark RUNNING attempts of ``eid`` as ``reason`` (LOST or STOPPED) and their jobs
        INTERRUPTED, so that they run again on resume. Returns the number of jobs.

        A STOPPED attempt ends now. A LOST one (its scheduler died) gets no end time: when it
        really ended is unknown (its process may even have outlived the scheduler), and the
        time of the resume or repair that marks it would make up a duration.
        """
        with self._tx() as c:
            return _interrupt_running(c, eid, reason)

    @_reconnecting
    def stop_crashed(self, eid: int, seen: dict[str, Any], error_msg: str, *,
                     heartbeat: bool = True) -> int | None:
        """``aup repair`` of an experiment whose scheduler is gone, in one transaction: the
        experiment becomes STOPPED with ``error_msg`` and its running attempts LOST (their
        jobs INTERRUPTED), provided that its row still holds the ``status``, ``host``,
        ``pid`` and (with ``heartbeat``) ``heartbeat`` of ``seen`` (the row judged crashed).
        A resume that claimed it in between is left alone: its live run is not marked
        STOPPED, nor its new attempts LOST. (``heartbeat=False``: ``--force`` on a scheduler
        that may be alive, whose heartbeat moves at every job start and end.)

        The attempts are written first and the experiment row last, the order in which a
        live scheduler writes them (a finished attempt, then the heartbeat): the opposite
        order deadlocked with one on PostgreSQL.

        Returns:
            The number of jobs interrupted, or None when the row changed (nothing written).
        """
        e = s.experiment
        keys = ("status", "host", "pid", "heartbeat") if heartbeat else ("status", "host", "pid")
        same = [e.c[k].is_not_distinct_from(seen.get(k)) for k in keys]
        return self._interrupt_lost_if(eid, update(e).where(e.c.eid == eid, *same).values(
            status="STOPPED", end_time=time.time(), stop_requested=False, error_msg=error_msg))

    @_reconnecting
    def interrupt_leftovers(self, eid: int) -> int | None:
        """Mark the RUNNING attempts of an experiment that has *ended* LOST (their jobs
        INTERRUPTED), in one transaction that also checks, and locks, the experiment row:
        once a resume made it RUNNING again its attempts are its own.

        Returns:
            The number of jobs interrupted, or None when the experiment runs again (nothing
            written).
        """
        e = s.experiment
        return self._interrupt_lost_if(eid, update(e).where(  # a no-op write: the row's lock
            e.c.eid == eid, e.c.status != "RUNNING").values(heartbeat=e.c.heartbeat))

    def _interrupt_lost_if(self, eid: int, guard: Any) -> int | None:
        """In one transaction: mark the RUNNING attempts of ``eid`` LOST (their jobs
        INTERRUPTED), then run ``guard``, an UPDATE of the experiment row that matches it only
        while it is as the caller saw it; when it matches nothing, roll everything back.
        Attempts first, the experiment row last: the order of a live scheduler's writes.

        Returns:
            The number of jobs interrupted, or None when the guard matched nothing.
        """
        try:
            with self._tx() as c:
                n = _interrupt_running(c, eid, "LOST")
                if c.execute(guard).rowcount != 1:
                    raise _RowChanged
                return n
        except _RowChanged:  # rolled back
            return None

    @_reconnecting
    def jobs(self, eid: int, *, include_rerun: bool = False,
             status: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Jobs of an experiment in jid order (``job_config`` and ``proposal`` decoded);
        only those whose status is in ``status`` when given."""
        q = select(s.job).where(s.job.c.eid == eid)
        if not include_rerun:
            q = q.where(s.job.c.is_rerun.is_(False))
        if status is not None:
            q = q.where(s.job.c.status.in_(list(status)))
        with self.engine.connect() as c:
            rows = c.execute(q.order_by(s.job.c.jid)).all()
        return [_job_dict(r) for r in rows]

    def check_integrity(self) -> None:
        """Check a SQLite file page by page (``PRAGMA quick_check``: seconds for a large file;
        a PostgreSQL server keeps its own): ``aup repair`` runs it, since the other commands
        see damage only in the pages they read.

        Raises:
            DatabaseDamaged: the file is damaged, with the fix.
        """
        path = sqlite_file(self.url)
        if path is None:
            return
        with self.engine.connect() as c:
            found = [str(r[0]) for r in c.exec_driver_sql("PRAGMA quick_check").all()]
        if found != ["ok"]:
            raise DatabaseDamaged(f"the database file {path} is damaged ({found[0]}"
                                  f"{f' and {len(found) - 1} more problems' if len(found) > 1 else ''}"
                                  f"). {DatabaseDamaged.recovery(path)}")

    @_reconnecting
    def job_status_counts(self, eid: int) -> dict[str, int]:
        """Number of jobs of ``eid`` (re-runs left out) by status, e.g. ``{"FINISHED": 58,
        "FAILED": 2}``: one aggregate query, where loading every row (:meth:`jobs`) cost a run
        of 60,000 jobs 160 MB at its end."""
        j = s.job
        q = (select(j.c.status, func.count()).where(j.c.eid == eid, j.c.is_rerun.is_(False))
             .group_by(j.c.status))
        with self.engine.connect() as c:
            return {str(status): int(n) for status, n in c.execute(q).all()}

    @_reconnecting
    def first_failed_job(self, eid: int) -> tuple[int, str | None] | None:
        """``(jid, fail_reason)`` of the first FAILED job of ``eid``, or None."""
        j = s.job
        q = (select(j.c.jid, j.c.fail_reason).where(
            j.c.eid == eid, j.c.is_rerun.is_(False), j.c.status == "FAILED")
            .order_by(j.c.jid).limit(1))
        with self.engine.connect() as c:
            row = c.execute(q).first()
        return (int(row[0]), row[1]) if row is not None else None

    @_reconnecting
    def count_unproposed_jobs(self, eid: int) -> int:
        """Jobs of ``eid`` with no recorded proposal: those Auptimizer 2.0 recorded (an
        experiment with any cannot be resumed: 2.0 kept no proposer state either)."""
        j = s.job
        with self.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(j).where(
                j.c.eid == eid, j.c.proposal.is_(None), j.c.is_rerun.is_(False))).scalar() or 0)

    @_reconnecting
    def attempts(self, jid: int) -> list[dict[str, Any]]:
        """Attempts of a job, in order."""
        with self.engine.connect() as c:
            rows = c.execute(select(s.job_attempt).where(s.job_attempt.c.jid == jid)
                             .order_by(s.job_attempt.c.num)).all()
        return [dict(r._mapping) for r in rows]

    @_reconnecting
    def experiment_attempts(self, eid: int) -> list[dict[str, Any]]:
        """Every attempt of every job of ``eid`` (re-runs included, marked by ``is_rerun``), by
        jid then number."""
        a, j = s.job_attempt, s.job
        q = (select(a, j.c.is_rerun).join(j, j.c.jid == a.c.jid).where(j.c.eid == eid)
             .order_by(a.c.jid, a.c.num))
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        return [dict(r._mapping) for r in rows]

    @_reconnecting
    def failed_attempt_counts(self, eid: int) -> dict[int, int]:
        """Number of FAILED attempts of each job of ``eid`` that has any, by jid (what counts
        against ``job_retries``; STOPPED and LOST attempts do not, nor those of a job that never
        ran, :data:`aup.job.NEVER_RAN`)."""
        from aup.job import NEVER_RAN

        a, j = s.job_attempt, s.job
        q = (select(a.c.jid, func.count()).join(j, j.c.jid == a.c.jid)
             .where(j.c.eid == eid, a.c.status == "FAILED",
                    or_(a.c.fail_reason.is_(None),
                        a.c.fail_reason.not_in([r.value for r in NEVER_RAN])))
             .group_by(a.c.jid))
        with self.engine.connect() as c:
            return {int(jid): int(n) for jid, n in c.execute(q).all()}

    @_reconnecting
    def last_attempts(self, eid: int) -> dict[int, dict[str, Any]]:
        """The latest attempt of every job of ``eid``, by jid."""
        a, j = s.job_attempt, s.job
        latest = (select(func.max(a.c.jaid)).join(j, j.c.jid == a.c.jid)
                  .where(j.c.eid == eid).group_by(a.c.jid))
        with self.engine.connect() as c:
            rows = c.execute(select(a).where(a.c.jaid.in_(latest))).all()
        return {r.jid: dict(r._mapping) for r in rows}

    @_reconnecting
    def intermediate(self, jid: int) -> list[dict[str, Any]]:
        """Intermediate results of a job, in order."""
        t = s.intermediate_result
        with self.engine.connect() as c:
            rows = c.execute(select(t).where(t.c.jid == jid).order_by(t.c.num, t.c.irid)).all()
        return [dict(r._mapping) for r in rows]

    @_reconnecting
    def histories(self, eid: int, statuses: Iterable[str]) -> dict[int, list[float | None]]:
        """Intermediate scores of the jobs of ``eid`` whose status is in ``statuses``, by jid, in
        order (NULL for values that were not finite). One query; used to rebuild the
        early-stopping peers on resume."""
        t, j = s.intermediate_result, s.job
        q = (select(t.c.jid, t.c.score).join(j, j.c.jid == t.c.jid)
             .where(j.c.eid == eid, j.c.status.in_(list(statuses)), j.c.is_rerun.is_(False))
             .order_by(t.c.jid, t.c.num, t.c.irid))
        out: dict[int, list[float | None]] = {}
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        for jid, score in rows:
            out.setdefault(jid, []).append(score)
        return out

    @_reconnecting
    def multiple(self, jid: int) -> list[dict[str, Any]]:
        """Multiple-result rows of a job, in order."""
        t = s.multiple_result
        with self.engine.connect() as c:
            rows = c.execute(select(t).where(t.c.jid == jid).order_by(t.c.mrid)).all()
        return [dict(r._mapping) for r in rows]

    @_reconnecting
    def final_extras(self, eid: int) -> dict[int, dict[int, float | None]]:
        """The secondary values of each job's final result (``is_last_result``), by jid, then
        by label order (1 = the first ``multi_res_labels`` label), for the jobs that have a
        score (a FAILED job's last line, say before a crash, is not its result). One query."""
        m, j = s.multiple_result, s.job
        # through job (indexed by eid), then multiple_result by its jid index
        q = (select(m.c.jid, m.c.label_order, m.c.value).join(j, j.c.jid == m.c.jid)
             .where(j.c.eid == eid, m.c.is_last_result.is_(True), j.c.score.is_not(None)))
        out: dict[int, dict[int, float | None]] = {}
        with self.engine.connect() as c:
            for jid, order, value in c.execute(q):
                out.setdefault(int(jid), {})[int(order)] = value
        return out

    @_reconnecting
    def tell(self, jid: int, values: tuple[float, ...] | None, *, final: bool = True,
             exit_code: int | None = None) -> int:
        """Record a result sent by hand for a ``passive`` job (``aup tell``); returns its id.

        Args:
            values: the result values (score first), or None when only a failure is reported.
            final: False for an intermediate result.
            exit_code: the job's exit code when the user reports a failure.
        """
        with self.engine.begin() as c:
            return int(c.execute(insert(s.told_result).values(
                jid=jid, vals=_dumps(list(values)) if values is not None else None,
                final=final, exit_code=exit_code, time=time.time())).inserted_primary_key[0])

    @_reconnecting
    def told(self, jids: Iterable[int], after: int = 0) -> list[dict[str, Any]]:
        """Results told for ``jids`` with an id above ``after``, oldest first (``tid``, ``jid``,
        ``values`` (tuple or None), ``final``, ``exit_code``, ``time``)."""
        jids = list(jids)
        if not jids:
            return []
        t = s.told_result
        with self.engine.connect() as c:
            rows = c.execute(select(t).where(t.c.jid.in_(jids), t.c.tid > after)
                             .order_by(t.c.tid)).all()
        return [{"tid": r.tid, "jid": r.jid, "final": bool(r.final), "exit_code": r.exit_code,
                 "time": r.time,
                 "values": tuple(json.loads(r.vals)) if r.vals is not None else None}
                for r in rows]

    @_reconnecting
    def last_job_id(self) -> int:
        """The largest job id recorded in this database, over every experiment (0: none)."""
        with self.engine.connect() as c:
            return int(c.execute(select(func.max(s.job.c.jid))).scalar() or 0)

    @_reconnecting
    def best_job(self, eid: int, maximize: bool) -> dict[str, Any] | None:
        """The FINISHED job with the best score (ties: lowest jid), or None.

        With budgets (hyperband, bohb) only the jobs run at the largest budget compete: a
        score at a smaller budget is not comparable (fewer epochs, less data).
        """
        j = s.job
        order = j.c.score.desc() if maximize else j.c.score.asc()
        q = (select(j).where(j.c.eid == eid, j.c.status == "FINISHED", j.c.score.is_not(None),
                             j.c.is_rerun.is_(False))
             .order_by(func.coalesce(j.c.budget, 0).desc(), order, j.c.jid).limit(1))
        with self.engine.connect() as c:
            row = c.execute(q).first()
        return _job_dict(row) if row is not None else None

    @_reconnecting
    def largest_budget_run(self, eid: int) -> int | float | None:
        """The largest budget any job of ``eid`` ran at (failed ones too), or None without
        budgets: with it a best job at a smaller budget can be told apart (every job at the
        largest budget failed)."""
        j = s.job
        with self.engine.connect() as c:
            value = c.execute(select(func.max(j.c.budget)).where(
                j.c.eid == eid, j.c.is_rerun.is_(False))).scalar()
        return None if value is None else plain_number(value)


def largest_budget(eids: Iterable[int] | None = None) -> tuple[Any, Any, Any]:
    """The rule of :meth:`Store.best_job` in SQL: the best job is a finished, scored, non-re-run
    job at the largest budget its experiment has among such jobs (no budget counts as 0).

    Args:
        eids: restrict the subquery to these experiments (None: all).

    Returns:
        ``(scored, budget, top)``: the condition "finished, scored, not a re-run", the job's
        budget expression, and a subquery of ``(eid, top)`` with each experiment's largest
        budget; a job is a candidate when ``scored`` holds and ``budget == top.c.top``.
    """
    j = s.job
    scored = and_(j.c.status == "FINISHED", j.c.score.is_not(None), j.c.is_rerun.is_(False))
    budget = func.coalesce(j.c.budget, 0)
    top = select(j.c.eid, func.max(budget).label("top")).where(scored).group_by(j.c.eid)
    if eids is not None:
        top = top.where(j.c.eid.in_(list(eids)))
    return scored, budget, top.subquery()


def budget_fields(largest_run: Any, best: Any) -> dict[str, int | float | None]:
    """``largest_budget_run`` and ``best_budget`` of an experiment summary from the SQL
    aggregates (:func:`largest_budget` counts no budget as 0): both None without budgets."""
    return {"largest_budget_run": None if largest_run is None else plain_number(largest_run),
            "best_budget": (None if largest_run is None or best is None
                            else plain_number(best))}


def plain_number(value: Any) -> int | float:
    """A budget as JSON shows it elsewhere: an int when whole."""
    f = float(value)
    return int(f) if f.is_integer() else f


def _experiment_dict(row) -> dict[str, Any]:
    d = dict(row._mapping)
    for k in ("exp_config", "proposer_state"):
        if d.get(k):
            try:
                d[k] = json.loads(d[k])
            except (TypeError, ValueError):
                pass
    if "exp_config" in d:  # recorded before passwords were left out of it
        d["exp_config"] = without_password(d["exp_config"])
    return d


def _job_dict(row) -> dict[str, Any]:
    """A job row with ``job_config`` (a dict) and ``proposal`` (a dict or None) decoded. A
    damaged value (not JSON, not an object: only seen in hand-edited 2.0 databases) reads as
    ``{}`` and None, as the dashboard and the exports read it, instead of failing the view."""
    d = dict(row._mapping)
    for k in ("job_config", "proposal"):
        value = d.get(k)
        if value:
            try:
                value = json.loads(value)
            except (TypeError, ValueError):
                value = None
        d[k] = value if isinstance(value, dict) else ({} if k == "job_config" else None)
    if isinstance(d.get("budget"), float):
        # a whole budget as the job got it (n_iterations 9, not 9.0; trial 55)
        d["budget"] = plain_number(d["budget"])
    return d


#: SQLite's message for a file damaged inside (its header is readable, a page is not); a file
#: without a SQLite header ("file is not a database") is another program's file.
_DAMAGED = "database disk image is malformed"


def _damaged_file_error(path: Path) -> Callable[[Any], None]:
    """A ``handle_error`` listener for the engine of the SQLite file ``path``: a damaged file
    raises :class:`~aup.errors.DatabaseDamaged` naming the file and the way to recover it,
    from whichever statement first reads the damaged page (a view, the Python API, a run),
    instead of SQLAlchemy's ``DatabaseError`` with a traceback."""

    def listener(context: Any) -> None:
        import sqlite3

        orig = context.original_exception
        if isinstance(orig, sqlite3.DatabaseError) and _DAMAGED in str(orig):
            raise DatabaseDamaged(f"the database file {path} is damaged ({orig}). "
                                  f"{DatabaseDamaged.recovery(path)}") from None

    return listener


def open_store(url: str | None = None, *, create: bool = True, read_only: bool = False
               ) -> Store:
    """Open the database at ``url`` (default: :func:`default_url`).

    ``read_only``: a SQLite file this process may not write is opened read-only (for the
    views: ``list``, ``show``, ``best``, ``export``, ``plot``, ``dashboard``) instead of being
    refused.

    Raises:
        StoreError: the database cannot be opened.
    """
    url = url or default_url()
    try:
        return Store(url, create=create, read_only=read_only)
    except SQLAlchemyError as err:
        orig = getattr(err, "orig", None)
        reason = str(orig).strip().splitlines()[0] if orig else str(err).splitlines()[0]
        damaged = (" (if it was an Auptimizer database, its first page is damaged: restore "
                   "it from a backup)" if "not a database" in reason else "")
        raise StoreError(f"cannot open database {shown_url(url)}: {reason}{damaged}. Fix: give "
                         "the URL of an Auptimizer database (--db, AUP_DB or storage), or move "
                         "this file away to start a new one there") from None


class _RowChanged(Exception):
    """Another process changed the row a compare-and-set expected (the transaction is rolled
    back)."""


def _interrupt_running(c: Any, eid: int, reason: str) -> int:
    """Within the transaction ``c``: RUNNING attempts of ``eid`` become ``reason`` and their
    jobs INTERRUPTED (see :meth:`Store.mark_interrupted`). Returns the number of jobs."""
    jids = c.execute(select(s.job.c.jid).where(s.job.c.eid == eid,
                                               s.job.c.status == "RUNNING")).scalars().all()
    if jids:
        end = None if reason == "LOST" else time.time()
        c.execute(update(s.job_attempt).where(s.job_attempt.c.jid.in_(jids),
                                              s.job_attempt.c.status == "RUNNING")
                  .values(status=reason, end_time=end,
                          fail_reason="LOST" if reason == "LOST" else None,
                          detail="the scheduler stopped while the attempt ran"))
        # (RUNNING again: on PostgreSQL a job that a live scheduler finished since the select
        # above keeps its FINISHED)
        c.execute(update(s.job).where(s.job.c.jid.in_(jids), s.job.c.status == "RUNNING")
                  .values(status="INTERRUPTED"))
    return len(jids)
