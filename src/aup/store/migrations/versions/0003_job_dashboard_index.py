"""``ix_job_dashboard``: the dashboard's covering index on ``job``.

Experiment counts, best scores, the history plot and every sort of the job table read only
this index.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS = ["eid", "is_rerun", "status", "score", "start_time", "end_time", "n_attempts"]


def upgrade() -> None:
    existing = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("job")}
    if "ix_job_dashboard" not in existing:  # made by create_all before this revision existed
        op.create_index("ix_job_dashboard", "job", _COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_job_dashboard", "job")
