"""``told_result``: results typed in by hand for jobs of the ``passive`` resource (``aup tell``).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("told_result"):
        return  # made by create_all before this revision existed
    op.create_table(
        "told_result",
        sa.Column("tid", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("jid", sa.Integer, sa.ForeignKey("job.jid"), nullable=False),
        sa.Column("vals", sa.Text),
        sa.Column("final", sa.Boolean, nullable=False),
        sa.Column("exit_code", sa.Integer),
        sa.Column("time", sa.Float),
    )
    op.create_index("ix_told_result_jid", "told_result", ["jid", "tid"])


def downgrade() -> None:
    op.drop_index("ix_told_result_jid", "told_result")
    op.drop_table("told_result")
