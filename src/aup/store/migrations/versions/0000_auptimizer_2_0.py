"""Auptimizer 2.0's schema (the baseline).

A database written by Auptimizer 2.0 (``aup.setupdb``) is at this revision: it is stamped
``0000`` and then upgraded. Upgrading an empty database from here creates 2.0's tables as
2.0 did (``python -m aup.setupdb``), with their CHECK constraints.

Revision ID: 0000
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0000"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user",
        sa.Column("uid", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, unique=True),
        sa.Column("permission", sa.Text),
    )
    op.create_table(
        "resource",
        sa.Column("rid", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("type", sa.Text),
        sa.Column("status", sa.Text),
    )
    op.create_table(
        "experiment",
        sa.Column("eid", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uid", sa.Integer, sa.ForeignKey("user.uid")),
        sa.Column("name", sa.Text),
        sa.Column("start_time", sa.Integer),
        sa.Column("end_time", sa.Integer),
        sa.Column("status", sa.Text),
        sa.Column("exp_config", sa.Text),
        sa.Column("error_msg", sa.Text),
        sa.CheckConstraint("status IN ('CREATED', 'RUNNING', 'STOPPED', 'FINISHED', 'FAILED', "
                           "'STOPPING', 'REQUEST_STOP')"),
    )
    op.create_table(
        "job",
        sa.Column("jid", sa.Integer, primary_key=True),
        sa.Column("score", sa.Float),
        sa.Column("eid", sa.Integer, sa.ForeignKey("experiment.eid")),
        sa.Column("start_time", sa.Integer),
        sa.Column("end_time", sa.Integer),
        sa.Column("status", sa.Text),
        sa.Column("job_config", sa.Text),
        sa.CheckConstraint("status IN ('RUNNING', 'EARLY_STOPPED', 'FINISHED', 'FAILED')"),
    )
    op.create_table(
        "job_attempt",
        sa.Column("jaid", sa.Integer, primary_key=True),
        sa.Column("jid", sa.Integer, sa.ForeignKey("job.jid")),
        sa.Column("num", sa.Integer),
        sa.Column("rid", sa.Integer, sa.ForeignKey("resource.rid")),
        sa.Column("start_time", sa.Integer),
        sa.Column("end_time", sa.Integer),
    )
    op.create_table(
        "intermediate_result",
        sa.Column("irid", sa.Integer, primary_key=True),
        sa.Column("num", sa.Integer),
        sa.Column("score", sa.Float),
        sa.Column("jid", sa.Integer, sa.ForeignKey("job.jid")),
        sa.Column("receive_time", sa.Integer),
    )
    op.create_table(
        "multiple_result",
        sa.Column("mrid", sa.Integer, primary_key=True),
        sa.Column("label_order", sa.Integer),
        sa.Column("value", sa.Float),
        sa.Column("receive_time", sa.Float),
        sa.Column("jid", sa.Integer, sa.ForeignKey("job.jid")),
        sa.Column("irid", sa.Integer, sa.ForeignKey("intermediate_result.irid")),
        sa.Column("eid", sa.Integer, sa.ForeignKey("experiment.eid")),
        sa.Column("is_last_result", sa.Boolean),
    )


def downgrade() -> None:
    for name in ("multiple_result", "intermediate_result", "job_attempt", "job", "experiment",
                 "resource", "user"):
        op.drop_table(name)
