"""Columns of Auptimizer 2.0's tables that some 2.0 databases lack.

The 2.0 release on PyPI created ``experiment`` without ``name`` (its documentation and later
code have it), so a database made by that release cannot be read by a query that names the
column. :func:`add_missing_v2_columns` adds every 2.0 baseline column a table lacks, and fills
``experiment.name`` from the stored ``exp_config`` (2.0 always stored the name there), or
``experiment-<eid>`` where the config has none. Used by the migrations ``0001`` (a 2.0 database
being upgraded) and ``0004`` (a database an earlier Auptimizer 3 upgraded without adding them).
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.engine import Connection

#: ``{table: [(column, type)]}``: 2.0's columns that are not primary keys.
V2_COLUMNS: dict[str, list[tuple[str, sa.types.TypeEngine]]] = {
    "user": [("name", sa.Text()), ("permission", sa.Text())],
    "resource": [("name", sa.Text()), ("type", sa.Text()), ("status", sa.Text())],
    "experiment": [("uid", sa.Integer()), ("name", sa.Text()), ("start_time", sa.Integer()),
                   ("end_time", sa.Integer()), ("status", sa.Text()), ("exp_config", sa.Text()),
                   ("error_msg", sa.Text())],
    "job": [("score", sa.Float()), ("eid", sa.Integer()), ("start_time", sa.Integer()),
            ("end_time", sa.Integer()), ("status", sa.Text()), ("job_config", sa.Text())],
    "job_attempt": [("jid", sa.Integer()), ("num", sa.Integer()), ("rid", sa.Integer()),
                    ("start_time", sa.Integer()), ("end_time", sa.Integer())],
    "intermediate_result": [("num", sa.Integer()), ("score", sa.Float()), ("jid", sa.Integer()),
                            ("receive_time", sa.Integer())],
    "multiple_result": [("label_order", sa.Integer()), ("value", sa.Float()),
                        ("receive_time", sa.Float()), ("jid", sa.Integer()),
                        ("irid", sa.Integer()), ("eid", sa.Integer()),
                        ("is_last_result", sa.Boolean())],
}


def _name_from_config(eid: int, text: object) -> str:
    try:
        cfg = json.loads(text) if isinstance(text, (str, bytes)) else {}
    except ValueError:
        cfg = {}
    name = cfg.get("name") if isinstance(cfg, dict) else None
    return str(name)[:255] if isinstance(name, str) and name.strip() else f"experiment-{eid}"


def add_missing_v2_columns(conn: Connection) -> list[str]:
    """Add the 2.0 columns (:data:`V2_COLUMNS`) missing from the tables of the database behind
    ``conn``, as nullable columns; give every experiment without a name one (see the module
    docstring). Tables that do not exist are left alone.

    Returns:
        The columns added, as ``"table.column"`` (empty for a complete database).
    """
    insp = sa.inspect(conn)
    tables = set(insp.get_table_names())
    added: list[str] = []
    for table, columns in V2_COLUMNS.items():
        if table not in tables:
            continue
        have = {c["name"] for c in insp.get_columns(table)}
        for name, type_ in columns:
            if name not in have:
                quoted = conn.dialect.identifier_preparer.quote
                conn.exec_driver_sql(f"ALTER TABLE {quoted(table)} ADD COLUMN {quoted(name)} "
                                     f"{type_.compile(dialect=conn.dialect)}")
                added.append(f"{table}.{name}")
    if "experiment" in tables:
        exp = sa.table("experiment", sa.column("eid"), sa.column("name"),
                       sa.column("exp_config"))
        unnamed = conn.execute(sa.select(exp.c.eid, exp.c.exp_config)
                               .where(exp.c.name.is_(None))).all()
        for eid, text in unnamed:
            conn.execute(sa.update(exp).where(exp.c.eid == eid)
                         .values(name=_name_from_config(eid, text)))
    return added
