"""Add the 2.0 columns a 2.0 database lacked (``experiment.name`` in the PyPI release).

Revision ``0001`` now adds them itself; this revision repairs a database that an earlier
Auptimizer 3 upgraded without them (stamped ``0003``, and every read failed with "no such
column: experiment.name"). See :mod:`aup.store.v2_columns`.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import logging

from alembic import op

from aup.store.v2_columns import add_missing_v2_columns

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    added = add_missing_v2_columns(op.get_bind())
    if added:
        logging.getLogger("aup.store.migrate").warning(
            "added the Auptimizer 2.0 column(s) this database lacked: %s", ", ".join(added))


def downgrade() -> None:  # the columns belong to the 2.0 baseline: nothing to undo
    pass
