"""Command-line arguments shared by several ``aup`` subcommands.

Standard library only, so that building the parser stays cheap.
"""

from __future__ import annotations

import argparse

#: Help of ``--db`` for commands that read an existing database (no experiment file).
DB_HELP = "database URL (default: $AUP_DB, .aup/env.ini, else .aup/sqlite3.db)"


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--db URL`` (see :func:`aup.api.resolve_db_url` for the defaults) to ``parser``."""
    parser.add_argument("--db", help=DB_HELP)
