"""Auptimizer 2.0's schema (the baseline).

A database written by Auptimizer 2.0 (``aup.setupdb``) is at this revision: it is stamped
``0000`` and then upgraded. Upgrading an empty database from here creates 2.0's tables as
2.0 did (``python -m aup.setupdb``), with their CHECK constraints.

Revision ID: 0000
Revises:
"""

from __future__ import annotations

from alembic import op

from aup.store.v2_columns import v2_metadata

revision = "0000"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    v2_metadata().create_all(op.get_bind())


def downgrade() -> None:
    for name in ("multiple_result", "intermediate_result", "job_attempt", "job", "experiment",
                 "resource", "user"):
        op.drop_table(name)
