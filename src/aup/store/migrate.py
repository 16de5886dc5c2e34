"""Schema versions: create a new database at the newest revision, upgrade an older one.

The revisions are Alembic migrations in ``aup/store/migrations/versions``:

* ``0000``: Auptimizer 2.0's tables (``aup.setupdb``), the baseline;
* ``0001``: Auptimizer 3's columns (statuses, failure reasons, budgets, proposer state...);
* ``0002``: ``told_result`` (results typed in for the passive resource);
* ``0003``: ``ix_job_dashboard``, the dashboard's covering index on ``job``;
* ``0004``: the 2.0 columns a 2.0 database lacked (``experiment.name``), for a database an
  earlier version upgraded without them.

**Changing the schema** (:mod:`aup.store.schema`) needs a new revision file in
``migrations/versions`` (``down_revision`` = the previous head) and :data:`HEAD` set to it;
``tests/test_migrations.py`` fails until a full upgrade gives the same tables as ``create_all``.

:func:`ensure_schema` runs each time a writer opens the store, so it must be cheap in the common
case: one ``SELECT`` of ``alembic_version``. Only when that is not :data:`HEAD` does it take a
lock (a PostgreSQL advisory lock, or SQLite's write lock) and then

* an empty database: ``create_all`` from :mod:`aup.store.schema` and stamp :data:`HEAD`;
* a database made by Auptimizer 2.0 (its tables, no version table): stamp ``0000``, upgrade;
* a database made before versioning (``aup_schema`` version 1, no ``alembic_version``):
  stamp ``0001``, upgrade;
* an older revision: upgrade;
* a revision this version does not know (made by a newer Auptimizer): :class:`StoreError`.

Several processes may open an old database at once: the lock makes one of them upgrade and the
others find it done.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import (
    Column,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from aup.errors import StoreError
from aup.store import schema as s

log = logging.getLogger(__name__)

#: The newest revision; must equal the head of ``migrations/versions`` (a test checks it).
HEAD = "0004"
#: Key of the PostgreSQL advisory lock held while creating or upgrading the schema.
_PG_LOCK_KEY = 0x617570  # "aup"

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def current_revision(conn: Connection) -> str | None:
    """The database's revision (``alembic_version``), or None when it has none."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _fast_revision(engine: Engine) -> str | None:
    with engine.connect() as c:  # connection errors propagate
        try:
            return c.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:
            return None


def alembic_config(conn: Connection | None = None):
    """An Alembic ``Config`` pointing at the packaged migrations (and ``conn``, if given)."""
    try:
        from alembic.config import Config
    except ImportError:  # pragma: no cover - alembic is a core dependency
        raise StoreError("upgrading this database needs Alembic: pip install alembic") from None
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def known_revisions() -> set[str]:
    """Every revision id of the packaged migrations."""
    from alembic.script import ScriptDirectory

    return {r.revision for r in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def newer_schema_error(rev: str) -> StoreError:
    """The error for a database at revision ``rev``, which a newer Auptimizer made."""
    return StoreError(f"the database schema is at revision {rev!r}, which this Auptimizer "
                      f"does not know (it knows up to {HEAD!r}); a newer Auptimizer made or "
                      "upgraded it (writing commands upgrade the schema; read-only views do "
                      "not). Fix: use that newer version (update the clone this one is "
                      "installed from: git pull, then pip install -e . there; 'aup --version' "
                      "shows each one's schema revision), or use a copy of the database taken "
                      "before the upgrade")


def script_head() -> str:
    """The head revision of the packaged migrations (should equal :data:`HEAD`)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def ensure_schema(engine: Engine) -> str:
    """Bring the database behind ``engine`` to :data:`HEAD` (see the module docstring).

    Returns:
        What was done: ``"current"``, ``"created"`` or ``"upgraded from <rev>"``.

    Raises:
        StoreError: the database was made by a newer Auptimizer, or a migration failed.
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    if _fast_revision(engine) == HEAD:
        return "current"
    sqlite = engine.dialect.name == "sqlite"
    conn = engine.connect()
    try:
        if sqlite:
            # Table rebuilds need foreign keys off, which SQLite ignores inside a transaction.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, waited for
        else:
            conn.begin()
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        done = _ensure_locked(conn)
        conn.commit()
        return done
    except StoreError:
        conn.rollback()
        raise
    except DBAPIError:
        conn.rollback()
        raise
    except Exception as err:  # noqa: BLE001 - a failed migration must say what happened
        conn.rollback()
        raise StoreError(f"cannot upgrade the database schema: {type(err).__name__}: {err}"
                         ) from err
    finally:
        if sqlite:
            try:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
            except DBAPIError:
                conn.invalidate()
        conn.close()


def readable_as_is(conn: Connection) -> bool:
    """True when the database already has every table and column of this version's schema
    (an older revision that differs only in what a reader does not need: an index, or a
    repair of columns that were never missing), so a reader needs no upgrade."""
    insp = inspect(conn)
    tables = set(insp.get_table_names())
    for table in s.metadata.sorted_tables:
        if table.name not in tables:
            return False
        have = {c["name"] for c in insp.get_columns(table.name)}
        if not {c.name for c in table.columns} <= have:
            return False
    return True


def upgrade_existing(engine: Engine) -> str:
    """For readers: upgrade a database that has Auptimizer tables but an older schema that
    lacks something this version reads; create nothing in an empty one. A known older
    revision that already has every table and column is read as it is: a read-only view
    (``aup list``) that stamped it with the newer revision locked the older Auptimizer out of
    it for no change at all (trial 68). Costs one ``SELECT`` when the schema is current.

    Returns:
        ``"current"``, ``"empty"``, ``"readable"`` or ``"upgraded from <rev>"``.

    Raises:
        StoreError: as :func:`ensure_schema`.
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    rev = _fast_revision(engine)
    if rev == HEAD:
        return "current"
    with engine.connect() as c:
        if not inspect(c).has_table("experiment"):
            return "empty"
        if rev is not None and rev in known_revisions() and readable_as_is(c):
            return "readable"
    return ensure_schema(engine)


def _stamp_new(conn: Connection) -> None:
    """Record :data:`HEAD` in ``alembic_version`` the way ``alembic stamp`` does, without
    importing Alembic (a new database is created on the first ``aup run``: it should be fast).
    """
    version = Table("alembic_version", MetaData(),
                    Column("version_num", String(32), nullable=False),
                    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))
    version.create(conn, checkfirst=True)
    conn.execute(version.delete())
    conn.execute(version.insert().values(version_num=HEAD))


def _ensure_locked(conn: Connection) -> str:
    rev = current_revision(conn)
    if rev == HEAD:
        return "current"
    if rev is None:
        tables = set(inspect(conn).get_table_names())
        if "experiment" not in tables:
            clash = tables & {"user", "resource", "job"}  # create_all is one transaction
            if clash:
                # another program's tables of the same names: create_all would skip them and
                # the first write would fail (or worse, succeed in the wrong table)
                raise StoreError(
                    f"the database holds tables of another program named like Auptimizer's "
                    f"({', '.join(sorted(clash))}) and no Auptimizer experiment table; nothing "
                    "was written. Fix: give Auptimizer its own database (or schema)")
            s.metadata.create_all(conn)
            if conn.execute(select(s.schema_info.c.version)).first() is None:
                conn.execute(insert(s.schema_info).values(version=s.SCHEMA_VERSION))
            _stamp_new(conn)
            return "created"
    from alembic import command

    cfg = alembic_config(conn)
    if rev is None:
        rev = "0001" if "aup_schema" in tables else "0000"
        log.warning("database without a schema revision: taken as %s (%s)", rev,
                    "Auptimizer 3 before versioning" if rev == "0001" else "Auptimizer 2.0")
        command.stamp(cfg, rev)
    elif rev not in known_revisions():
        raise newer_schema_error(rev)
    log.warning("upgrading the database schema from revision %s to %s", rev, HEAD)
    command.upgrade(cfg, HEAD)
    return f"upgraded from {rev}"
