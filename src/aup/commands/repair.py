"""``aup repair``: close what a crashed scheduler left open (2.0's ``aup.setupdb.reset``).

Experiments left RUNNING by a dead process become STOPPED (resume them with ``aup resume``),
their running jobs INTERRUPTED and attempts LOST; busy resource rows are freed. No score is
invented (2.0 wrote -999). Experiments whose process is alive are left alone. See
:mod:`aup.store.admin`.
"""

from __future__ import annotations

import argparse

from aup.commands.args import add_db_argument
from aup.errors import UsageError

HELP = "mark jobs and experiments left running by a crashed scheduler as interrupted/stopped"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``aup repair`` to the CLI."""
    p = subparsers.add_parser("repair", help=HELP, description=HELP)
    add_db_argument(p)
    p.add_argument("--stale-after", type=float, default=None, metavar="SECONDS",
                   help="an experiment run from another host counts as dead after this many "
                   "seconds without heartbeat (default 60, at least 0)")
    p.add_argument("--force", action="store_true",
                   help="also repair experiments whose process looks alive")
    p.add_argument("--dry-run", action="store_true", help="only show what would be repaired")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Entry point of ``aup repair``. Returns the exit code."""
    from aup.api import db_option, open_existing_store
    from aup.store.admin import CHANGED_WHY, STALE_AFTER, repair

    if args.stale_after is None:  # not in the parser: building it must not import SQLAlchemy
        args.stale_after = STALE_AFTER
    if not args.stale_after >= 0:  # also refuses nan
        raise UsageError(f"--stale-after {args.stale_after:g} must be a number of seconds >= 0; "
                         "nothing was repaired. Fix: e.g. --stale-after 60 (the default)")
    store = open_existing_store(args.db)  # a mistyped place gets no new empty database
    try:
        store.check_integrity()  # damage the other commands meet only in the pages they read
        report = repair(store, stale_after=args.stale_after, force=args.force,
                        dry_run=args.dry_run)
        orphans = {eid: _orphans(eid, *report.schedulers.get(eid, (None, None)))
                   for eid, _, _ in report.stopped}
        legacy = {eid for eid, _, _ in report.stopped if store.count_unproposed_jobs(eid)}
    finally:
        store.close()
    verb = "would mark" if args.dry_run else "marked"
    for eid, name, n in report.stopped:
        then = ("it was recorded by Auptimizer 2.0 and cannot be resumed; its jobs stay recorded"
                if eid in legacy else f"continue with: aup resume{db_option(store)} {eid}")
        forced = report.forced.get(eid)
        if forced:  # --force on a live scheduler: resuming now would run every job twice
            then = (f"its scheduler looked alive ({forced}): make sure it has ended (kill it) "
                    f"before {then.replace('continue with: ', '')}, or both run the same jobs")
        print(f"experiment {eid} ({name}): {verb} STOPPED, {n} running job(s) INTERRUPTED; "
              f"{then}")
        if orphans[eid]:
            pids = " ".join(str(p) for p in orphans[eid])
            print(f"  {len(orphans[eid])} process(es) of its jobs still run ({pids}): aup "
                  f"resume kills them before running those jobs again; to stop them now: "
                  f"kill -9 {pids}")
    for eid, name, n in report.cleaned:
        print(f"experiment {eid} ({name}): {verb} {n} leftover running job(s) INTERRUPTED")
    for eid, name, why in report.alive:
        if why == CHANGED_WHY:
            print(f"experiment {eid} ({name}): left alone, {why} (a resume, or its own "
                  "scheduler); run aup repair again to see where it stands")
            continue
        print(f"experiment {eid} ({name}): left alone, it looks alive ({why}); use --force if "
              "it is not")
    if report.resources_freed:
        print(f"{'would free' if args.dry_run else 'freed'} {report.resources_freed} busy "
              "resource row(s)")
    if not report.changed and not report.alive:
        print("nothing to repair")
    return 0


def _orphans(eid: int, host: str | None, pid: int | None) -> list[int]:
    """Pids of the job processes the dead scheduler ``pid`` of ``eid`` left running on this
    host (a ``kill -9`` of the scheduler does not end its jobs). The scheduler is the one
    repair found gone, not whatever the row names now (a resume may have claimed it since)."""
    import socket

    from aup.orphans import find_orphans

    if host != socket.gethostname() or not pid:
        return []
    return find_orphans(eid, int(pid))
