"""``aup export``: an experiment's jobs as CSV or JSON (parameters, scores, status, reasons,
times, multiple-result values)."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aup.commands.args import add_db_argument
from aup.errors import UsageError

FORMATS = ("csv", "json")
#: The first bytes of every SQLite database file (``--out`` never replaces one).
SQLITE_HEADER = b"SQLite format 3\x00"


def is_sqlite_database(path: Path) -> bool:
    """True when the regular file ``path`` starts with SQLite's header.

    Raises:
        OSError: the file cannot be read.
    """
    with path.open("rb") as f:
        return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER


#: Files SQLite keeps beside a database: replacing one corrupts or loses recent writes.
_SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def _is_sqlite_quietly(path: Path) -> bool:
    try:
        return is_sqlite_database(path)
    except OSError:
        return False


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` file that cannot or must not be written, before any work is done.

    Refused: a missing folder, a folder as ``out``, an existing file without ``overwrite``, and
    an SQLite database (the experiment history, say) or its ``-wal``, ``-shm`` or ``-journal``
    file even with ``overwrite``. Special files
    (``/dev/stdout``, a named pipe) are accepted: they are written in place.

    Raises:
        UsageError: with the reason and a fix.
    """
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: folder {out.parent} does not exist. Fix: create it "
                         "first, or choose another --out")
    if out.is_dir():
        raise UsageError(f"cannot write {out}: it is a folder. Fix: give a file name, e.g. "
                         f"{out / ('experiment' + (out.suffix or '.csv'))}")
    for companion in _SQLITE_COMPANIONS:
        base = out.with_name(out.name[:-len(companion)]) if out.name.endswith(companion) else None
        if base is not None and base.is_file() and _is_sqlite_quietly(base):
            raise UsageError(f"--out {out} is the {companion[1:]} file of the SQLite database "
                             f"{base} (perhaps the experiment history, which a running "
                             "experiment writes through it); it is never written, not even "
                             "with --overwrite; nothing was written. Fix: choose another file "
                             "name")
    if not out.is_file():
        return
    try:
        sqlite = is_sqlite_database(out)
    except OSError as err:
        raise UsageError(f"cannot read {out}: {err.strerror}. Fix: choose another --out"
                         ) from None
    if sqlite:
        raise UsageError(f"--out {out} is an SQLite database (perhaps the experiment history); "
                         "it is never replaced, not even with --overwrite; nothing was "
                         "written. Fix: choose another file name")
    if not overwrite:
        raise UsageError(f"--out {out} exists; nothing was written. Fix: add --overwrite to "
                         "replace it, or choose another file name")


def write_out(out: Path, write: Callable[[Path], None]) -> None:
    """Write ``out`` with ``write(path)`` so that a failure leaves nothing half-written.

    A regular file is written to a temporary file next to ``out`` (same suffix), then renamed
    into place; the temporary file is removed on failure. A special file (``/dev/stdout``, a
    named pipe) is written in place. Call :func:`check_out` first.

    Raises:
        UsageError: the file cannot be written (no permission, disk full...).
    """
    special = out.exists() and not stat.S_ISREG(out.stat().st_mode)
    tmp = out if special else out.with_name(f".{out.stem}.aup-tmp{out.suffix}")
    try:
        write(tmp)
        if not special:
            os.replace(tmp, out)
    except OSError as err:
        if not special:
            tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {out}: {err.strerror or err}; nothing was written. "
                         "Fix: check that the folder is writable and has free space, or "
                         "choose another --out") from None


def add_overwrite_argument(parser: Any) -> None:
    """Add ``--overwrite`` (replace an existing ``--out`` file) to ``parser``."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out file (never an SQLite database)")


def export_text(store: Any, eid: int, fmt: str) -> str:
    """The jobs of experiment ``eid`` rendered as ``csv`` or ``json``.

    CSV: one row per job; the columns of :func:`aup.dashboard.queries.flat_records` (times,
    status, score, budget, bracket, rung, then one per parameter and one per
    ``multi_res_labels`` label). Times are Unix epoch seconds. JSON: ``{"experiment": {...},
    "columns": [...], "jobs": [{column: value}]}``.

    Raises:
        aup.dashboard.queries.NotFound: no experiment ``eid``.
        UsageError: unknown format.
    """
    from aup.dashboard.queries import DashboardQueries, flat_records

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not supported. Fix: use csv or json")
    q = DashboardQueries(store)
    columns, rows = flat_records(q, eid)
    if fmt == "json":
        exp = q.experiment(eid)
        meta = {k: exp[k] for k in ("eid", "name", "status", "proposer", "target", "n_total",
                                    "n_jobs", "n_finished", "n_failed", "best_score",
                                    "start_time", "end_time", "parameters", "labels",
                                    "best_job", "best_budget", "largest_budget_run")
                if k in exp}  # the budgets: a best_score from a smaller budget is marked
        return json.dumps({"experiment": meta, "columns": columns, "jobs": rows}, indent=1,
                          default=str) + "\n"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else
                             json.dumps(v) if isinstance(v, list | dict | bool) else v)
                         for k, v in r.items()})
    return buf.getvalue()


def cmd_export(args: Any) -> int:
    """Write the export to --out or stdout."""
    from aup.api import find_experiment, open_existing_store

    if args.out == "-":  # the usual name of standard output (it wrote a file called "-")
        args.out = None
    fmt = args.format
    if fmt is None:
        suffix = Path(args.out).suffix.lower().lstrip(".") if args.out else ""
        if suffix and suffix not in FORMATS:
            raise UsageError(f"cannot tell the format of --out {args.out!r} (.{suffix} is "
                             "neither csv nor json). Fix: name it .csv or .json, or give "
                             "--format")
        fmt = suffix or "csv"
    out = Path(args.out) if args.out else None
    if out is not None:
        check_out(out, args.overwrite)
    store = open_existing_store(args.db, read_only=True)
    try:
        row = find_experiment(store, args.experiment)
        text = export_text(store, int(row["eid"]), fmt)
    finally:
        store.close()
    if out is not None:
        write_out(out, lambda path: path.write_text(text, encoding="utf-8"))
        print(f"wrote {out} ({fmt})", file=sys.stderr)
    else:
        from aup.commands.output import write_stdout

        write_stdout(text)  # a reader that went away (| head) is noticed: exit 141
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``aup export`` (see :data:`aup.cli.EXTRA_COMMANDS`)."""
    p = subparsers.add_parser("export", help="export an experiment's jobs as CSV or JSON",
                              description="Export an experiment's jobs (parameters, score, "
                              "status, failure reason, times, multiple results) as CSV or JSON.")
    p.set_defaults(func=cmd_export)
    add_db_argument(p)
    p.add_argument("experiment", help="experiment id or name")
    p.add_argument("--format", choices=FORMATS,
                   help="csv or json (default: from --out's suffix .csv or .json, else csv; "
                   "another suffix needs --format)")
    p.add_argument("--out", "-o", help="output file (default, or '-': standard output); an "
                   "existing file needs --overwrite")
    add_overwrite_argument(p)
