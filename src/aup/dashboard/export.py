"""``aup export``: an experiment's jobs as CSV or JSON (parameters, scores, status, reasons,
times, multiple-result values)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from aup.commands.args import add_db_argument
from aup.errors import UsageError

FORMATS = ("csv", "json")


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
                                    "best_job")}
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
    from aup.api import find_experiment
    from aup.dashboard.command import open_read_store

    fmt = args.format
    if fmt is None:
        suffix = Path(args.out).suffix.lower().lstrip(".") if args.out else ""
        if suffix and suffix not in FORMATS:
            raise UsageError(f"cannot tell the format of --out {args.out!r} (.{suffix} is "
                             "neither csv nor json). Fix: name it .csv or .json, or give "
                             "--format")
        fmt = suffix or "csv"
    store = open_read_store(args.db)
    try:
        row = find_experiment(store, args.experiment)
        text = export_text(store, int(row["eid"]), fmt)
    finally:
        store.close()
    if args.out:
        out = Path(args.out)
        if not out.parent.is_dir():
            raise UsageError(f"--out {args.out}: folder {out.parent} does not exist")
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out} ({fmt})", file=sys.stderr)
    else:
        sys.stdout.write(text)
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
                   help="csv or json (default: from --out's suffix, else csv)")
    p.add_argument("--out", "-o", help="output file (default: standard output)")
