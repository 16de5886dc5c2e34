"""``python -m aup.dashboard``: Auptimizer 2.0's way to start the dashboard, kept as
``aup dashboard`` (2.0's ``--path DB`` is read as ``--db DB``; the other options are
``aup dashboard``'s)."""

import sys

from aup.__main__ import entry


def dashboard_args(argv: list[str]) -> list[str]:
    """``aup dashboard`` arguments for 2.0's ``python -m aup.dashboard`` arguments
    (``--path DB`` or ``--path=DB`` becomes ``--db DB``)."""
    out = ["dashboard"]
    for arg in argv:
        if arg == "--path":
            out.append("--db")
        elif arg.startswith("--path="):
            out.append("--db=" + arg[len("--path="):])
        else:
            out.append(arg)
    return out


if __name__ == "__main__":
    sys.exit(entry(dashboard_args(sys.argv[1:])))
