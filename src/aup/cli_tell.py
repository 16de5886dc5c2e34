"""``aup tell EXPERIMENT JOB [VALUE]``: send the result of a job run by hand (``passive``).

The value is stored in the database (``told_result``); the experiment process picks it up
within ``resource_args.poll_interval`` seconds. Registered in :data:`aup.cli.EXTRA_COMMANDS`.
"""

from __future__ import annotations

import argparse
import math
import time

from aup.commands.args import add_db_argument
from aup.errors import UsageError


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``tell`` subcommand to the ``aup`` parser."""
    p = sub.add_parser(
        "tell", help="send the result of a job run by hand (resource passive)",
        description="Send the result of a job of a 'passive' experiment: the score, or "
        "'v0,v1,...' with multi_res_labels. --exit-code reports a failed run.")
    add_db_argument(p)
    p.add_argument("experiment", help="experiment id or name")
    p.add_argument("job", type=int, help="job id (jid), as printed by the experiment")
    p.add_argument("value", nargs="?", help="the result, e.g. 0.93 or 0.93,12.5")
    p.add_argument("--intermediate", action="store_true",
                   help="an intermediate result (the job goes on)")
    p.add_argument("--exit-code", type=int, default=None,
                   help="the job failed with this exit code")
    p.set_defaults(func=cmd_tell, take_extra=_value_after_options)
    return p


def _value_after_options(args, extra: list[str]) -> list[str]:
    """``aup tell E J --intermediate 0.3``: argparse leaves a VALUE typed after an option
    unparsed (VALUE is optional); take it as VALUE. Returns what is still unrecognized."""
    if args.value is None and len(extra) == 1 and not extra[0].startswith("--"):
        args.value = extra[0]
        return []
    return extra


def cmd_tell(args) -> int:
    """Store the told value after checking the job waits for one.

    Refused (:class:`UsageError`, exit code 2; nothing is stored): a value that is not a
    number, a NaN or infinite score, a count other than 1 + len(``multi_res_labels``), a job
    that is not waiting or already has a final value waiting to be taken, an experiment that
    is not passive, and a database that does not exist (none is created).
    """
    from aup.api import find_experiment, open_existing_store
    from aup.resources.passive import check_values, parse_exit_code, parse_values, value_hint

    if args.value is None and args.exit_code is None:
        raise UsageError("give the job's VALUE, or --exit-code N for a failed run")
    values = None
    if args.value is not None:
        try:
            values = parse_values(args.value)
        except ValueError:
            raise UsageError(f"VALUE {args.value!r} is not a number or a comma-separated list "
                             "of numbers; e.g. aup tell 1 3 0.93") from None
        if not math.isfinite(values[0]):
            # A job whose score is NaN or infinite fails; a typo must not fail it.
            raise UsageError(f"VALUE {args.value!r}: the score must be a finite number; to "
                             "report a failed run use --exit-code N")
    if args.exit_code is not None:
        try:
            parse_exit_code(args.exit_code)
        except ValueError as err:
            raise UsageError(f"--exit-code: {err}") from None
    if args.intermediate and args.exit_code is not None:
        raise UsageError("--intermediate and --exit-code exclude each other")
    store = open_existing_store(args.db)
    try:
        row = find_experiment(store, args.experiment)
        eid = int(row["eid"])
        job = next((j for j in store.jobs(eid, include_rerun=True) if j["jid"] == args.job), None)
        if job is None:
            raise UsageError(f"experiment {eid} has no job {args.job}; see 'aup show {eid}'")
        config = row.get("exp_config") or {}
        resource = config.get("resource", "cpu")
        if resource != "passive":
            raise UsageError(f"experiment {eid} runs on resource '{resource}'; only 'passive' "
                             "jobs take told results")
        if job["status"] != "RUNNING":
            raise UsageError(f"job {args.job} is {job['status']}, not waiting for a result")
        _refuse_crashed(store, row)
        labels = [str(x) for x in ((config.get("resource_args") or {}).get("multi_res_labels")
                                   or [])]
        if values is not None:
            try:
                check_values(values, labels)
            except ValueError as err:
                # the job would fail WRONG_RESULT_COUNT, which may end the experiment
                raise UsageError(f"VALUE {args.value!r}: {err}. Fix: aup tell {args.experiment} "
                                 f"{args.job} {value_hint(labels)}") from None
        _refuse_second_value(store, args.job)
        store.tell(args.job, values, final=not args.intermediate, exit_code=args.exit_code)
    finally:
        store.close()
    what = f"failure (exit code {args.exit_code})" if args.exit_code is not None else args.value
    print(f"told job {args.job} of experiment {eid}: {what}"
          + (" (intermediate)" if args.intermediate else ""))
    return 0


def _refuse_crashed(store, row) -> None:
    """Refuse a value for an experiment whose scheduler died on this machine: nothing would
    pick it up (a resumed experiment runs its interrupted jobs again)."""
    from aup.experiment import crashed_fix, crashed_text, scheduler_gone

    if scheduler_gone(row):
        fix = crashed_fix(row, store)
        then = (" (its waiting jobs run again and wait for their values), then tell them"
                if fix.startswith("aup resume") else "")
        raise UsageError(f"{crashed_text(row)}, so nothing would pick the value up. Fix: "
                         f"{fix}{then}")


def _refuse_second_value(store, jid: int) -> None:
    """Refuse a tell while a final value (or failure) told for the job's current attempt has
    not been taken by the experiment yet: the first one ends the attempt, so a second would be
    dropped. Told values older than the attempt belong to an earlier one (taken, or lost when
    the experiment stopped); intermediate values are all taken, in order.

    Raises:
        UsageError: such a value is waiting.
    """
    attempts = store.attempts(jid)
    since = attempts[-1]["start_time"] if attempts else None
    for r in store.told([jid]):
        if ((r["final"] or r["exit_code"] is not None)
                and (since is None or (r["time"] or 0) >= since)):
            told = (f"failure (exit code {r['exit_code']})" if r["exit_code"] is not None
                    else ",".join(str(v) for v in r["values"] or ()))
            at = time.strftime("%H:%M:%S", time.localtime(r["time"] or 0))
            raise UsageError(f"a value is already waiting for job {jid}: {told}, told at {at} "
                             "and not yet taken by the experiment (it reads told values every "
                             "resource_args.poll_interval seconds; a job takes one final "
                             "value). Fix: nothing to do if that value is right; if the "
                             "experiment is no longer running, 'aup resume' runs the job again")
