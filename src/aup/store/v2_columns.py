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


def v2_metadata() -> sa.MetaData:
    """Auptimizer 2.0's tables as ``aup.setupdb`` created them (with their CHECK
    constraints): the baseline revision ``0000`` creates them, and :func:`add_missing_v2_columns`
    the ones an older 2.0 database lacks."""
    md = sa.MetaData()
    sa.Table("user", md, sa.Column("uid", sa.Integer, primary_key=True),
             sa.Column("name", sa.Text, unique=True), sa.Column("permission", sa.Text))
    sa.Table("resource", md, sa.Column("rid", sa.Integer, primary_key=True),
             sa.Column("name", sa.Text), sa.Column("type", sa.Text), sa.Column("status", sa.Text))
    sa.Table("experiment", md,
             sa.Column("eid", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("uid", sa.Integer, sa.ForeignKey("user.uid")), sa.Column("name", sa.Text),
             sa.Column("start_time", sa.Integer), sa.Column("end_time", sa.Integer),
             sa.Column("status", sa.Text), sa.Column("exp_config", sa.Text),
             sa.Column("error_msg", sa.Text),
             sa.CheckConstraint("status IN ('CREATED', 'RUNNING', 'STOPPED', 'FINISHED', "
                                "'FAILED', 'STOPPING', 'REQUEST_STOP')"))
    sa.Table("job", md, sa.Column("jid", sa.Integer, primary_key=True),
             sa.Column("score", sa.Float), sa.Column("eid", sa.Integer,
                                                     sa.ForeignKey("experiment.eid")),
             sa.Column("start_time", sa.Integer), sa.Column("end_time", sa.Integer),
             sa.Column("status", sa.Text), sa.Column("job_config", sa.Text),
             sa.CheckConstraint("status IN ('RUNNING', 'EARLY_STOPPED', 'FINISHED', 'FAILED')"))
    sa.Table("job_attempt", md, sa.Column("jaid", sa.Integer, primary_key=True),
             sa.Column("jid", sa.Integer, sa.ForeignKey("job.jid")), sa.Column("num", sa.Integer),
             sa.Column("rid", sa.Integer, sa.ForeignKey("resource.rid")),
             sa.Column("start_time", sa.Integer), sa.Column("end_time", sa.Integer))
    sa.Table("intermediate_result", md, sa.Column("irid", sa.Integer, primary_key=True),
             sa.Column("num", sa.Integer), sa.Column("score", sa.Float),
             sa.Column("jid", sa.Integer, sa.ForeignKey("job.jid")),
             sa.Column("receive_time", sa.Integer))
    sa.Table("multiple_result", md, sa.Column("mrid", sa.Integer, primary_key=True),
             sa.Column("label_order", sa.Integer), sa.Column("value", sa.Float),
             sa.Column("receive_time", sa.Float),
             sa.Column("jid", sa.Integer, sa.ForeignKey("job.jid")),
             sa.Column("irid", sa.Integer, sa.ForeignKey("intermediate_result.irid")),
             sa.Column("eid", sa.Integer, sa.ForeignKey("experiment.eid")),
             sa.Column("is_last_result", sa.Boolean))
    return md


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
    docstring). In a 2.0 database (``experiment`` and ``job`` exist) the result and attempt
    tables it lacks are created empty; other missing tables are left alone. A ``job`` table
    without ``status`` (2.0's documented schema) gets its statuses worked out
    (:func:`_older_job_table`).

    Returns:
        What was added: ``"table"`` for a table, ``"table.column"`` for a column (empty for a
        complete database).
    """
    insp = sa.inspect(conn)
    tables = set(insp.get_table_names())
    added: list[str] = []
    if {"experiment", "job"} <= tables:
        # An older 2.0 database without the tables of later features: created empty (the
        # upgrade failed with "no such table: main.multiple_result").
        md = v2_metadata()
        for name in ("job_attempt", "intermediate_result", "multiple_result"):
            if name not in tables:
                md.tables[name].create(conn)
                added.append(name)
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
        if table == "job" and "status" not in have:
            _older_job_table(conn, have)
    if "experiment" in tables:
        exp = sa.table("experiment", sa.column("eid"), sa.column("name"),
                       sa.column("exp_config"))
        unnamed = conn.execute(sa.select(exp.c.eid, exp.c.exp_config)
                               .where(exp.c.name.is_(None))).all()
        for eid, text in unnamed:
            conn.execute(sa.update(exp).where(exp.c.eid == eid)
                         .values(name=_name_from_config(eid, text)))
    return added


def _older_job_table(conn: Connection, have: set[str]) -> None:
    """The job table of 2.0's documented schema (``docs/Database/schema.sql``: ``job.rid``, no
    ``status``), whose ``status`` column was just added: a job with a numeric score (not the
    reset tool's -999) and an end time finished; the others stay without a status (they become
    INTERRUPTED, as 2.0's Ctrl-C jobs). The resource each job ran on (``job.rid``, a column
    the upgrade drops) is kept as the job's attempt 0 where it has no attempt row.
    Before, every job of such a database became INTERRUPTED: ``aup best`` found nothing
    (trial 56)."""
    numeric = ("typeof(score) IN ('real', 'integer')" if conn.dialect.name == "sqlite"
               else "score IS NOT NULL")
    conn.exec_driver_sql(f"UPDATE job SET status = 'FINISHED' WHERE status IS NULL AND {numeric} "
                         "AND score <> -999 AND end_time IS NOT NULL")
    if "rid" in have:
        conn.exec_driver_sql(
            "INSERT INTO job_attempt (jid, num, rid, start_time, end_time) "
            "SELECT jid, 0, rid, start_time, end_time FROM job WHERE rid IS NOT NULL AND "
            "NOT EXISTS (SELECT 1 FROM job_attempt a WHERE a.jid = job.jid)")
