"""``python -m aup.setup``: the same as ``aup setup`` (Auptimizer 2.0's entry point)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run ``aup setup`` with ``argv`` (default: the command line). Returns the exit code."""
    from aup.cli import main as cli_main

    return cli_main(["setup", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
