"""``aup init`` (placeholder while being written)."""

from __future__ import annotations


def add_parser(subparsers):
    """Add ``aup init`` to the CLI."""
    p = subparsers.add_parser("init", help="create an experiment.json interactively")
    p.set_defaults(func=lambda args: 2)
    return p
