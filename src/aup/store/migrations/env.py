"""Alembic environment of the Auptimizer database.

Used in two ways:

* by :func:`aup.store.migrate.ensure_schema`, which passes an open connection in
  ``config.attributes["connection"]`` (normal use: every ``Store`` upgrades an old database);
* by developers with the ``alembic`` command and ``src/aup/store/alembic.ini``
  (``alembic -c src/aup/store/alembic.ini -x url=sqlite:///x.db revision -m "..."``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from aup.store.schema import metadata

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the given connection, or on ``-x url=...`` / sqlalchemy.url."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; give a database URL")
run_migrations_online()
