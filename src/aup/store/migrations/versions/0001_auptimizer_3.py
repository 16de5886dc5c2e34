"""Auptimizer 3: statuses, failure reasons, budgets, proposer state, liveness.

Upgrades a 2.0 database in place, keeping every row:

* 2.0 columns the database lacks are added first (:mod:`aup.store.v2_columns`);
* ``experiment``: new columns (proposer, target, n_total, proposer_state, stop_requested,
  config_path, workingdir, host, pid, heartbeat); proposer/target/workingdir (and n_total,
  from ``n_samples`` where that is the number of jobs) are read from the stored
  ``exp_config``; 2.0's STOPPING/REQUEST_STOP become STOPPED.
* ``job``: new columns (proposal, budget, bracket, rung, fail_reason, n_attempts, is_rerun);
  the CHECK constraint on ``status`` goes (it forbids INTERRUPTED). Text scores
  (``'EARLY STOPPED'``) become NULL; jobs whose status 2.0 left NULL (Ctrl-C) and jobs that
  ``aup.setupdb.reset`` gave the fake score -999 become INTERRUPTED with a NULL score, so
  that -999 never counts as a result.
* ``job_attempt``: status, exit_code, fail_reason, detail, output_tail, output_path, with the
  status worked out from the job.
* ``resource``: duplicate ``(type, name)`` rows (2.0 had one ``cpu``/``localhost`` row per
  slot) get unique names; then a unique index.
* indexes for the common queries, and the ``aup_schema`` table (version 1).

Revision ID: 0001
Revises: 0000
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from aup.store.v2_columns import add_missing_v2_columns

revision = "0001"
down_revision = "0000"
branch_labels = None
depends_on = None

#: 2.0 proposers whose ``n_samples`` is the number of jobs (the planned total).
_N_SAMPLES_IS_TOTAL = {"random", "hyperopt", "spearmint"}


def _job_columns() -> list[sa.Column]:
    return [
        sa.Column("jid", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("score", sa.Float),
        sa.Column("eid", sa.Integer, sa.ForeignKey("experiment.eid"), nullable=False),
        sa.Column("start_time", sa.Float),
        sa.Column("end_time", sa.Float),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("job_config", sa.Text, nullable=False),
        sa.Column("proposal", sa.Text),
        sa.Column("budget", sa.Float),
        sa.Column("bracket", sa.Integer),
        sa.Column("rung", sa.Integer),
        sa.Column("fail_reason", sa.String(32)),
        sa.Column("n_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("is_rerun", sa.Boolean, nullable=False, server_default=sa.false()),
    ]


def _drop_checks(table: str) -> None:
    insp = sa.inspect(op.get_bind())
    for ck in insp.get_check_constraints(table):
        if ck.get("name"):
            op.drop_constraint(ck["name"], table, type_="check")


def _upgrade_job_sqlite() -> None:
    """SQLite cannot drop a CHECK constraint: rebuild the table (foreign keys are off)."""
    op.create_table("_aup_job_new", *_job_columns())
    op.execute(
        "INSERT INTO _aup_job_new (jid, score, eid, start_time, end_time, status, job_config, "
        "n_attempts, is_rerun) "
        "SELECT jid, CASE WHEN typeof(score) IN ('real', 'integer') THEN score END, eid, "
        "start_time, end_time, COALESCE(status, 'INTERRUPTED'), COALESCE(job_config, '{}'), "
        "(SELECT count(*) FROM job_attempt a WHERE a.jid = job.jid), 0 FROM job")
    op.execute("DROP TABLE job")
    op.execute("ALTER TABLE _aup_job_new RENAME TO job")


def _upgrade_job_generic() -> None:
    _drop_checks("job")
    for col in _job_columns()[7:]:
        op.add_column("job", col)
    op.execute("UPDATE job SET status = 'INTERRUPTED' WHERE status IS NULL")
    op.execute("UPDATE job SET n_attempts = (SELECT count(*) FROM job_attempt a "
               "WHERE a.jid = job.jid)")


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    # 2.0's PyPI release made ``experiment`` without ``name``: add what a 2.0 table lacks.
    add_missing_v2_columns(bind)

    # -- experiment ------------------------------------------------------------------------
    if not sqlite:
        _drop_checks("experiment")
    for col in (sa.Column("proposer", sa.String(64)), sa.Column("target", sa.String(8)),
                sa.Column("n_total", sa.Integer), sa.Column("proposer_state", sa.Text),
                sa.Column("stop_requested", sa.Boolean, nullable=False,
                          server_default=sa.false()),
                sa.Column("config_path", sa.Text), sa.Column("workingdir", sa.Text),
                sa.Column("host", sa.String(255)), sa.Column("pid", sa.Integer),
                sa.Column("heartbeat", sa.Float)):
        op.add_column("experiment", col)
    op.execute("UPDATE experiment SET status = 'STOPPED' "
               "WHERE status IN ('STOPPING', 'REQUEST_STOP') OR status IS NULL")
    exp = sa.table("experiment", sa.column("eid"), sa.column("exp_config"),
                   sa.column("proposer"), sa.column("target"), sa.column("workingdir"),
                   sa.column("n_total"))
    for eid, text in bind.execute(sa.select(exp.c.eid, exp.c.exp_config)).all():
        try:
            cfg = json.loads(text) if text else {}
        except (TypeError, ValueError):
            cfg = {}
        if not isinstance(cfg, dict):
            cfg = {}
        proposer = str(cfg.get("proposer", "")).lower() or None
        n_samples = cfg.get("n_samples")
        # n_samples is the number of jobs only for these 2.0 proposers
        n_total = (n_samples if proposer in _N_SAMPLES_IS_TOTAL and type(n_samples) is int
                   and n_samples > 0 else None)
        # 2.0 treated every target other than "max" as minimise.
        bind.execute(sa.update(exp).where(exp.c.eid == eid).values(
            proposer=proposer, n_total=n_total,
            target="max" if cfg.get("target") == "max" else "min",
            workingdir=cfg.get("workingdir")))

    # -- job -------------------------------------------------------------------------------
    if sqlite:
        _upgrade_job_sqlite()
    else:
        _upgrade_job_generic()
    # 2.0's reset tool wrote score -999 into jobs a crash left running: not a result.
    # (INTERRUPTED here is a job whose status 2.0 left NULL: 2.0 had no such status.)
    op.execute("UPDATE job SET status = 'INTERRUPTED', score = NULL, fail_reason = 'LOST' "
               "WHERE score = -999 AND end_time IS NOT NULL "
               "AND status IN ('RUNNING', 'INTERRUPTED')")
    op.create_index("ix_job_eid_status", "job", ["eid", "status"])
    op.create_index("ix_job_eid_score", "job", ["eid", "score"])

    # -- job_attempt -----------------------------------------------------------------------
    for col in (sa.Column("status", sa.String(16), nullable=False, server_default="RUNNING"),
                sa.Column("exit_code", sa.Integer), sa.Column("fail_reason", sa.String(32)),
                sa.Column("detail", sa.Text), sa.Column("output_tail", sa.Text),
                sa.Column("output_path", sa.Text)):
        op.add_column("job_attempt", col)
    att = sa.table("job_attempt", sa.column("jaid"), sa.column("jid"), sa.column("num"),
                   sa.column("end_time"), sa.column("status"))
    job = sa.table("job", sa.column("jid"), sa.column("status"))
    rows = bind.execute(sa.select(att.c.jaid, att.c.jid, att.c.num, att.c.end_time,
                                  job.c.status).join(job, job.c.jid == att.c.jid)).all()
    last: dict[int, int] = {}
    for _, jid, num, _, _ in rows:
        last[jid] = max(last.get(jid, -1), num or 0)
    by_job = {"FINISHED": "SUCCEEDED", "FAILED": "FAILED", "EARLY_STOPPED": "EARLY_STOPPED",
              "INTERRUPTED": "LOST", "RUNNING": "RUNNING"}
    updates: dict[str, list[int]] = {}
    for jaid, jid, num, end_time, jstatus in rows:
        if (num or 0) < last[jid]:
            status = "FAILED"  # an earlier attempt: it was retried
        else:
            status = by_job.get(jstatus, "LOST")
            if status == "RUNNING" and end_time is not None:
                status = "LOST"
        updates.setdefault(status, []).append(jaid)
    for status, jaids in updates.items():
        for i in range(0, len(jaids), 500):
            bind.execute(sa.update(att).where(att.c.jaid.in_(jaids[i:i + 500]))
                         .values(status=status))
    op.create_index("ix_job_attempt_jid", "job_attempt", ["jid"])

    # -- results ---------------------------------------------------------------------------
    op.create_index("ix_intermediate_result_jid", "intermediate_result", ["jid", "num"])
    op.create_index("ix_multiple_result_jid", "multiple_result", ["jid"])

    # -- resource --------------------------------------------------------------------------
    res = sa.table("resource", sa.column("rid"), sa.column("name"), sa.column("type"))
    seen: set[tuple[str, str]] = set()
    for rid, name, kind in bind.execute(sa.select(res.c.rid, res.c.name, res.c.type)
                                        .order_by(res.c.rid)).all():
        key = (str(kind), str(name))
        if key in seen:
            bind.execute(sa.update(res).where(res.c.rid == rid).values(name=f"{name}#{rid}"))
        else:
            seen.add(key)
    op.create_index("ix_resource_type_name", "resource", ["type", "name"], unique=True)

    op.create_table("aup_schema", sa.Column("version", sa.Integer, primary_key=True))
    op.execute("INSERT INTO aup_schema (version) VALUES (1)")


def downgrade() -> None:
    raise NotImplementedError("Auptimizer does not downgrade a database to 2.0's schema; "
                              "restore a backup instead")
