"""The ``aup`` command line: the only place that prints for humans and sets exit codes.

Exit codes: 0 success, 1 experiment failed, 2 bad usage or bad configuration, 130 interrupted,
141 the output's reader went away (a closed pipe, as a process ended by SIGPIPE)
(stopped by Ctrl-C or ``aup stop``).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from aup.commands.args import DB_HELP
from aup.commands.output import WholeWriter, write_stdout
from aup.errors import AupError, ConfigError, StoreError, UsageError
from aup.job import FailReason

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141

log = logging.getLogger("aup")

#: Subcommands defined in this module.
CORE_COMMANDS = frozenset({"run", "resume", "stop", "list", "show", "best"})

#: Subcommands registered by other modules: name -> (module, function adding the parser).
EXTRA_COMMANDS: dict[str, str] = {
    "dashboard": "aup.dashboard.command",
    "plot": "aup.dashboard.plot",
    "export": "aup.dashboard.export",
    "tell": "aup.cli_tell",
    "init": "aup.commands.init",
    "setup": "aup.commands.setup",
    "convert": "aup.commands.convert",
    "repair": "aup.commands.repair",
}


class PlainConsole:
    """The part of rich's Console that ``aup run`` uses, for output that is not a terminal.

    Pipes, files and CI logs get plain lines (no progress bar, no styles) without importing
    rich, which keeps the start of ``aup run`` quick. ``style`` is accepted and ignored.
    """

    is_terminal = False

    def __init__(self, stderr: bool = False):
        self.file = sys.stderr if stderr else sys.stdout

    def print(self, text: Any = "", style: str | None = None) -> None:
        """Write ``text`` and a newline, flushed (a log follows a running experiment)."""
        print(text, file=self.file, flush=True)


def _is_terminal(stderr: bool = False) -> bool:
    stream = sys.stderr if stderr else sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _console(stderr: bool = False, plain_ok: bool = False):
    """A rich Console; with ``plain_ok``, a :class:`PlainConsole` when not on a terminal."""
    if plain_ok and not _is_terminal(stderr):
        return PlainConsole(stderr)
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False)
    # rich ends the process with status 1 when the reader goes away (aup show | head); raise
    # instead, so main() ends it like every other command: quietly, with status 141.
    console.on_broken_pipe = _raise_broken_pipe
    if not console.is_terminal:
        console.width = 200  # pipes and files: do not squeeze tables to 80 columns
        if not stderr and WholeWriter.usable(sys.stdout):
            console.file = WholeWriter(sys.stdout)
    return console


def _raise_broken_pipe() -> None:
    raise BrokenPipeError(errno.EPIPE, "the output's reader went away")


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                           "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.WARNING))


def _shown_params(job: dict[str, Any]) -> dict[str, Any]:
    """A job's parameters for humans: the proposal's values plus its budget as
    ``n_iterations``, without bookkeeping keys such as hyperopt's ``tid`` (and 2.0's
    ``job_id`` in the jobs it recorded)."""
    from aup.api import job_params

    shown = job_params(job)
    if "n_iterations" in (job.get("job_config") or {}):
        shown["n_iterations"] = job["job_config"]["n_iterations"]
    return shown


def _fmt(v: Any, exact: bool = False) -> str:
    """A parameter value for the summary and tables, its JSON type visible: floats always
    with a point or exponent (``1.0``, not ``1``, which is an int); strings bare unless they
    read as another JSON value (``"1"``, ``"true"`` stay quoted).

    Floats get 6 significant digits (the run's one-line summary), or with ``exact`` the
    shortest text that reads back as the same number (``aup show``, ``aup best``: what the job
    received, so that two jobs never look alike when their values differ)."""
    if isinstance(v, float):
        if exact:
            return repr(v)
        text = f"{v:.6g}"
        return text if any(c in text for c in ".eEn") else text + ".0"  # n: nan, inf
    from aup.api import value_text

    return value_text(v)


# -- progress ------------------------------------------------------------------------------------
class ProgressObserver:
    """Draws a rich progress bar: done/total, running, failed, best so far (the rule of the
    summary: finished jobs, and with budgets only those at the largest budget so far)."""

    def __init__(self, console, enabled: bool):
        self.console = console
        self.enabled = enabled
        self.progress = None
        self.task = None
        self.done = self.failed = 0
        self.running: dict[int, float] = {}  # job id -> budget (0 without budgets)
        self.best: float | None = None
        self.best_budget = -math.inf
        self.maximize = True
        self.exp = None

    def on_start(self, exp) -> None:
        from aup.experiment import Observer  # noqa: F401 - interface documented there

        self.exp = exp
        self.maximize = exp.config.maximize
        self.total = exp.proposer.total
        # A resumed experiment's progress so far, from aggregates (not every job row).
        by_status = exp.store.job_status_counts(exp.eid)
        self.failed = by_status.get("FAILED", 0)
        self.done = self.failed + by_status.get("FINISHED", 0) + by_status.get(
            "EARLY_STOPPED", 0)
        best = exp.store.best_job(exp.eid, self.maximize) if self.done else None
        if best is not None:
            self._best(best["score"], best["budget"] or 0.0)
        if not self.enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(TextColumn(f"[bold]experiment {exp.eid}[/]"),
                                 BarColumn(complete_style="cyan", finished_style="green"),
                                 MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), console=self.console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task("jobs", total=self.total, completed=self.done,
                                           info=self._info())

    def _best(self, score: float, budget: float) -> None:
        better = self.best is None or (score > self.best if self.maximize else score < self.best)
        if budget > self.best_budget or (budget == self.best_budget and better):
            self.best, self.best_budget = score, budget

    def _info(self) -> str:
        best = "-" if self.best is None else f"{self.best:.6g}"
        return f"running {len(self.running)}  failed {self.failed}  best {best}"

    def _refresh(self) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done, info=self._info())

    def on_job_started(self, jid, attempt, slot, config) -> None:
        r = self.exp.running.get((jid, attempt)) if self.exp is not None else None
        budget = r.job.proposal.budget if r is not None else None
        self.running[jid] = float(budget or 0.0)
        self._refresh()

    def on_result(self, jid, values) -> None:
        pass

    def on_job_ended(self, jid, attempt, outcome, job_status) -> None:
        budget = self.running.pop(jid, 0.0)
        if job_status is not None and job_status.value != "INTERRUPTED":
            self.done += 1
            if job_status.value == "FAILED":
                self.failed += 1
            elif job_status.value == "FINISHED" and outcome.score is not None:
                self._best(outcome.score, budget)
        self._refresh()

    def on_stopping(self, reason: str) -> None:
        if self.progress is not None:
            self.progress.console.print(f"stopping: {reason.splitlines()[0]}", style="yellow")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


# -- commands --------------------------------------------------------------------------------------
class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM turned into stop requests of an experiment.

    Installed *before* the experiment is recorded as RUNNING (created or resumed), so that a
    signal at any moment from then on stops it cleanly (STOPPED, resumable, with the resume
    hint) instead of leaving a RUNNING row behind: a signal that arrives before
    :meth:`attach` is remembered and passed on when the experiment exists. The second signal
    asks for a forced stop (jobs killed at once). Use as a context manager; leaving it
    restores the previous handlers.
    """

    def __init__(self) -> None:
        self.count = 0
        self.exp: Any = None
        self._old: tuple[Any, ...] | None = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.exp is not None:
            self.exp.request_stop(force=self.count > 1)

    def attach(self, exp: Any) -> None:
        """Send stop requests to ``exp`` (and the ones received so far)."""
        self.exp = exp
        if self.count:
            exp.request_stop(force=self.count > 1)
        if self._old is not None and self._old[0] is signal.SIG_IGN:
            # said, so that a script's 'kill -INT' that does nothing is not a mystery (trial 68)
            from aup.api import db_option

            log.warning("experiment %d: SIGINT (Ctrl-C) is ignored by this process (a shell "
                        "started it in the background with SIGINT ignored); stop it with: aup "
                        "stop%s %d, or kill -TERM %d", exp.eid, db_option(exp.store), exp.eid,
                        os.getpid())

    def __enter__(self) -> StopSignals:
        # A signal ignored when aup started stays ignored (a shell starts 'aup run ... &' with
        # SIGINT ignored, so that the Ctrl-C meant for the foreground does not reach it).
        self._old = tuple(
            signal.getsignal(sig) if signal.getsignal(sig) is signal.SIG_IGN
            else signal.signal(sig, self._handler) for sig in (signal.SIGINT, signal.SIGTERM))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old[0])
            signal.signal(signal.SIGTERM, self._old[1])


def _below_largest_budget(store, best: dict[str, Any] | None) -> str:
    """``""``, or a note when ``best`` ran at a smaller budget than the experiment's largest
    (every job at the largest budget failed or was stopped: its score is a low-fidelity one)."""
    if best is None or best.get("budget") is None:
        return ""
    top = store.largest_budget_run(int(best["eid"]))
    if top is None or float(best["budget"]) >= top:
        return ""
    return (f" (at budget {float(best['budget']):g}: no job finished at the largest budget "
            f"{top:g}, so this score is a smaller-budget one)")


#: Failures a retry of the same configuration repeats: its result itself is bad.
_REPEATED_BY_A_RETRY = tuple(r.value for r in (
    FailReason.NON_FINITE_SCORE, FailReason.NO_RESULT, FailReason.UNPARSEABLE_RESULT,
    FailReason.WRONG_RESULT_COUNT))


def _some_failure_may_pass(store, eid: int) -> bool:
    """True when a failed job of experiment ``eid`` failed in a way a retry may not repeat (a
    crash, a timeout, a lost node); False when every one reported a bad result (a NaN loss),
    which retrying the same configuration would only repeat (trial 65: the note advised
    'job_retries' after NaN losses)."""
    failed = store.jobs(eid, status=("FAILED",))
    return any(j.get("fail_reason") not in _REPEATED_BY_A_RETRY for j in failed)


def _budget_seems_ignored(store, eid: int) -> str:
    """A note when finished jobs given different budgets all reported the same number (2 or
    more) of intermediate results: the script probably does not read ``n_iterations`` (trial
    59: a script that always trained 3 epochs ran a whole hyperband schedule, and its best
    'budget 9' job had trained as long as the others). Empty otherwise, and without tracked
    intermediate results."""
    histories = store.histories(eid, ["FINISHED"])
    if not histories:
        return ""
    budgets = {j["jid"]: j["budget"] for j in store.jobs(eid) if j["jid"] in histories}
    counts = {len(histories[jid]) for jid in budgets}
    shown = sorted({b for b in budgets.values() if b is not None})
    if len(shown) < 2 or len(counts) != 1 or min(counts) < 2:
        return ""
    listed = ", ".join(f"{b:g}" for b in shown)
    return (f"note: the jobs at budgets {listed} each reported {counts.pop()} results: does "
            "the script train for n_iterations, the budget in its job config? (see "
            "docs/multifidelity.md)")


def _print_summary(console, exp, result) -> int:
    from aup.experiment import ExperimentStatus

    status = result.status
    console.print(f"experiment {result.eid} ({exp.config.experiment_name}): {status.value}"
                  f"  jobs {result.n_jobs}, finished {result.n_finished}, failed "
                  f"{result.n_failed}, early-stopped {result.n_early_stopped}")
    if result.best is not None:
        best = result.best
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in _shown_params(best).items())
        console.print(f"best job {best['jid']}: score {best['score']:.6g} ({params})"
                      f"{_below_largest_budget(exp.store, best)}")
    else:
        console.print("no best result: no job finished")
    saved = getattr(exp, "saved_model", None)
    if saved:
        if saved.get("status") == "FINISHED" and saved.get("wrote") is False:
            console.print(f"save_model re-run (job {saved['jid']}) finished, but nothing was "
                          f"written in {saved['folder']}: the script saves its model there "
                          "with aup_save_model, or itself when its job config has "
                          "\"save_model\": true (the folder is \"folder_name\" under "
                          "aup_models/)")
        elif saved.get("status") == "FINISHED":
            console.print(f"best model saved by job {saved['jid']} in {saved['folder']}")
        else:
            console.print(f"save_model re-run {saved.get('status')}: {saved.get('detail')}")
    ignored = _budget_seems_ignored(exp.store, result.eid)
    if ignored:
        console.print(ignored)
    block = (getattr(exp.config, "_raw", None) or {}).get("job_failure")
    if (result.n_failed and isinstance(block, dict) and "job_retries" not in block
            and _some_failure_may_pass(exp.store, result.eid)):
        # 2.0's default was 3 when the block was there: a 2.0 file loses its retries silently
        console.print("note: failed jobs were not retried: job_failure sets no job_retries, "
                      "which defaults to 0 (Auptimizer 2.0 retried 3 times when a job_failure "
                      "block was present); add \"job_retries\": 3 to it to retry them")
    if status is ExperimentStatus.FINISHED:
        return EXIT_OK
    if result.error:
        console.print(f"first failure: {result.error}")
    if status is ExperimentStatus.STOPPED:
        console.print(f"experiment {result.eid} stopped; running jobs were stopped and will "
                      "run again")
    if result.resumable:
        from aup.api import db_option

        n_unspent = (result.n_jobs - result.n_finished - result.n_failed
                     - result.n_early_stopped)  # INTERRUPTED: left unspent, they run again
        kept = " and ".join(
            ([f"the failed job{'s' if result.n_failed > 1 else ''} stay"
              f"{'' if result.n_failed > 1 else 's'} FAILED"] if result.n_failed else [])
            + (["the jobs that were stopped or could not start run again"] if n_unspent
               else []))
        or_ignore = ("; or, if some configurations are expected to fail (a diverging one "
                     "reports NaN), after adding \"job_failure\": {\"ignore_fail\": true} to "
                     "experiment.json" if result.n_failed
                     and not exp.config.job_failure.ignore_fail else "")
        from aup.experiment import RESUME_EDITABLE, resume_editable_args

        resource = getattr(exp.config, "resource", None)
        cause = _failure_cause(result.error or "", resource,
                               exp.config.job_failure) or (
            f"after fixing the cause in the script or its data{or_ignore}")
        taken = [*RESUME_EDITABLE, *(f"resource_args.{k}" for k in
                                     resume_editable_args(resource))]
        console.print(f"resume with: aup resume{db_option(exp.store)} {result.eid}"
                      + (f" ({cause}: resume takes the edited "
                         f"{', '.join(taken[:-1])} and {taken[-1]}, and keeps the other "
                         f"recorded experiment.json settings{', and ' + kept if kept else ''})"
                         if status is ExperimentStatus.FAILED else ""))
    return EXIT_INTERRUPTED if status is ExperimentStatus.STOPPED else EXIT_FAILED


def _failure_cause(error: str, resource: str | None, job_failure: Any) -> str | None:
    """What to do before resuming a run that a resource failed (a lost node connection or
    worker, a Ray runtime environment that cannot be set up): not "fix the script" (trial 54),
    and in the resource's own words (trial 57: a Ray failure got advice about SSH nodes).
    None when the script's own failure stopped the run."""
    reason = re.search(r"failed \((LOST|RESOURCE_ERROR)\)", error)
    if not reason:
        return None
    retries = getattr(job_failure, "job_retries", 0) or 0
    more = (f"raise job_retries (now {retries})" if retries
            else "add \"job_failure\": {\"job_retries\": 2} to experiment.json")
    if resource == "ray":
        if "runtime environment" in error:
            return ("after fixing what the error names (resource_args.runtime_env, or the "
                    "packages or files it asks for)")
        return (f"once the Ray cluster answers again (a worker or node was lost, or Ray "
                f"failed the task; {more} so that such a job runs again)")
    return (f"once the nodes answer again (a lost connection failed a job; {more} so that "
            "such a job runs again, on another node if one answers)")


def _run_loop(exp, args, console, signals: StopSignals) -> int:
    from aup.errors import DatabaseDamaged, DatabaseUnavailable

    observer = exp.observer
    signals.attach(exp)
    try:
        result = exp.run()
    except DatabaseDamaged as err:  # a backup or a recovered copy decides what can resume
        if isinstance(observer, ProgressObserver):
            observer.close()
        _console(stderr=True, plain_ok=True).print(
            f"error: {err}. Its running jobs were stopped.", style="red")
        return EXIT_FAILED
    except DatabaseUnavailable as err:
        from aup.api import db_option

        if isinstance(observer, ProgressObserver):
            observer.close()
        _console(stderr=True, plain_ok=True).print(
            f"error: {err}. Its running jobs were stopped; what was recorded is kept. Fix: "
            f"{err.repair}, continue with: aup resume{db_option(exp.store)} {exp.eid} (the "
            "experiment still shows RUNNING until then)", style="red")
        return EXIT_FAILED
    finally:
        if isinstance(observer, ProgressObserver):
            observer.close()
    return _print_summary(console, exp, result)


class _WarningCounter(logging.Handler):
    """Counts the warnings logged under the ``aup`` logger while it is entered."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += 1

    def __enter__(self) -> _WarningCounter:
        log.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        log.removeHandler(self)


def cmd_run(args) -> int:
    """aup run: validate, record and run an experiment."""
    import queue

    from aup.api import create_run, resolve_db_url
    from aup.config import load_config
    from aup.environment import load_environment
    from aup.experiment import build_proposer, prepared_resource, warn_planned_jobs

    config = load_config(args.experiment)
    for w in config.warnings:
        log.warning("%s: %s", args.experiment, w)
    console = _console(plain_ok=True)
    env = load_environment()
    # Resource checks that connect to nothing (GPU ids, hosts given): before the database.
    with _WarningCounter() as counted:
        checked = prepared_resource(config, queue.Queue(), env, check_only=True)
        if args.check:
            from aup.api import check_run_database

            proposer = build_proposer(config)  # the same checks and warnings as a run
            check_run_database(resolve_db_url(args.db, config.storage_url), checked)
            warn_planned_jobs(config, proposer)
    if args.check:
        # every warning above counts: the configuration's, the resource check's (no NVIDIA
        # driver, a GPU id this machine lacks) and the proposer's
        n_warnings = len(config.warnings) + counted.n
        jobs = (f", {proposer.total} job{'' if proposer.total == 1 else 's'}"
                if proposer.total is not None else "")
        warned = f"; {n_warnings} warning(s) above: check them" if n_warnings else ""
        console.print(f"{args.experiment}: configuration is valid ({config.proposer}, "
                      f"{config.target_text}, {config.resource}, {len(config.space)} parameter"
                      f"{'' if len(config.space) == 1 else 's'}{jobs}){warned}")
        return EXIT_OK
    url = resolve_db_url(args.db, config.storage_url)
    observer = ProgressObserver(console, enabled=not args.quiet and console.is_terminal)
    with StopSignals() as signals:
        exp, created = create_run(config, url, user=args.user or (env.user if env else None),
                                  observer=observer, env=env, resource=checked)
        store = exp.store
        console.print(f"experiment {exp.eid} ({config.experiment_name}) started: proposer "
                      f"{config.proposer}, {config.target_text}, resource {config.resource}, n_parallel "
                      f"{config.n_parallel}, database {store._safe_url()}")
        if not created:
            _warn_namesakes(store, config.experiment_name, exp.eid)
        return _run_loop(exp, args, console, signals)


def _warn_namesakes(store: Any, name: str, eid: int) -> None:
    """Warn about other experiments named ``name`` (than ``eid``, just started): the latest
    ended one (this run does not continue it), and each running or crashed one: the user may
    have meant to continue one rather than start anew, and the name now means the new one for
    ``aup show``/``stop``/``best``."""
    namesakes = [r for r in store.find_experiments(name) if r["eid"] != eid]
    earlier = [r for r in namesakes if r["status"] != "RUNNING"]
    if earlier:
        # a re-run under the same name starts from scratch: say so once (an Optuna user
        # expects load_if_exists; someone may have meant 'aup resume'; trials 72, 73)
        last = max(earlier, key=lambda r: r["eid"])
        resumable = [r["eid"] for r in earlier if r["status"] in ("STOPPED", "FAILED")]
        hint = ("; ".join(f"'aup resume {e}' continues experiment {e}" for e in resumable)
                if resumable else "a finished experiment gets no more jobs")
        log.warning("experiment %d is also named %r (%s); this run is the new experiment %d, "
                    "started from scratch: nothing of the other carries over (%s). The name now "
                    "means the new one in aup show, best and stop", last["eid"], name,
                    last["status"], eid, hint)
    for row in namesakes:
        if row["status"] != "RUNNING":
            continue
        note = _crash_note(row, store)
        if note:
            log.warning("another experiment named %r: %s (this run is the new experiment %d)",
                        name, note, eid)
        else:
            log.warning("another experiment named %r is running (experiment %d); the name now "
                        "means this new experiment %d in aup show, best and stop: use the id "
                        "%d for the other", name, row["eid"], eid, row["eid"])


def _open(args, read_only: bool = False):
    """Open the existing database for a command that reads or steers recorded experiments
    (:func:`aup.api.open_existing_store`: nothing is created; ``read_only`` for the views).

    Raises:
        UsageError: there is no Auptimizer database at that place.
    """
    from aup.api import open_existing_store

    return open_existing_store(args.db, read_only=read_only)


def cmd_resume(args) -> int:
    """aup resume: continue a stopped, failed or crashed experiment."""
    from aup.api import find_experiment
    from aup.environment import load_environment
    from aup.experiment import Experiment

    store = _open(args)
    row = find_experiment(store, args.experiment)
    console = _console(plain_ok=True)
    if row["status"] == "FINISHED":
        console.print(f"experiment {row['eid']} ({row['name']}) already finished; nothing to "
                      f"resume{_namesakes(store, args.experiment, row)}")
        return EXIT_OK
    observer = ProgressObserver(console, enabled=not args.quiet and console.is_terminal)
    with StopSignals() as signals:
        try:
            exp = Experiment.resume(store, int(row["eid"]), observer=observer,
                                    env_file=load_environment(), force=args.force)
        except UsageError as err:  # e.g. still running: the user may mean a namesake
            raise UsageError(f"{err}{_namesakes(store, args.experiment, row)}") from None
        console.print(f"experiment {exp.eid} ({row['name']}) resumed")
        return _run_loop(exp, args, console, signals)


def _namesakes(store, ref: str, row: dict, command: str = "resume") -> str:
    """For an experiment found by its name ``ref``: the other experiments of that name, with
    their status and the ``aup resume`` (``command`` "resume") or ``aup stop`` ("stop") for
    each one it applies to (the newest of a name is taken; the user may have meant another).
    ``""`` when ``ref`` was an id or the name is unique."""
    from aup.api import db_option

    if str(ref).strip() == str(row["eid"]):
        return ""
    others = [r for r in store.find_experiments(row["name"]) if r["eid"] != row["eid"]]
    if not others:
        return ""
    applies = ((lambda st: st != "FINISHED") if command == "resume"
               else (lambda st: st == "RUNNING"))
    named = ", ".join(
        f"{r['eid']} ({r['status']}" + (f": aup {command}{db_option(store)} {r['eid']}"
                                        if applies(r["status"]) else "") + ")"
        for r in others[:5])
    return (f". '{row['name']}' named the newest of {len(others) + 1} experiments, "
            f"{row['eid']}; the others: {named}")


def cmd_stop(args) -> int:
    """aup stop: ask a running experiment to stop (it stays resumable)."""
    from aup.api import find_experiment

    store = _open(args)
    row = find_experiment(store, args.experiment)
    if row["status"] != "RUNNING":
        _console().print(f"experiment {row['eid']} is {row['status']}, not running: nothing "
                         f"to stop{_namesakes(store, args.experiment, row, 'stop')}")
        return EXIT_OK
    note = _crash_note(row, store)
    if note:
        _console().print(note)
        return EXIT_OK
    store.request_stop(int(row["eid"]))
    _console().print(f"stop requested for experiment {row['eid']}")
    return EXIT_OK


def _time(t: float | None) -> str:
    if t is None:
        return "-"
    import datetime

    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def cmd_list(args) -> int:
    """aup list: the experiments in the database."""
    from rich.table import Table

    statuses = _experiment_status_filter(getattr(args, "status", None))
    store = _open(args, read_only=True)
    rows = _filtered_experiments(store, store.list_experiments(), statuses,
                                 getattr(args, "name", None), getattr(args, "last", None))
    if args.json:
        # the proposer's saved state (a random generator's 625 numbers...) is internal (the
        # experiment table of the database keeps it)
        from aup.experiment import scheduler_gone

        # "crashed": marked RUNNING, its process gone (the table's "RUNNING (crashed)")
        listed = [{**{k: v for k, v in r.items() if k != "proposer_state"},
                   "crashed": r["status"] == "RUNNING" and scheduler_gone(r)} for r in rows]
        write_stdout(json.dumps(listed, default=str) + "\n")
        return EXIT_OK
    # "done/planned": jobs that ended for good (finished, early-stopped or failed) against the
    # planned number; the run summary's "jobs N" counts the jobs started instead
    # the user: names are not per user, and on a shared database 'mnist' may be anyone's
    table = Table("id", "name", "user", "status", "proposer", "target", "done/planned",
                  "failed", "best", "started", "ended")
    notes = []
    for r in rows:
        note = _crash_note(r, store)
        if note:
            notes.append(note)
        total = r["n_total"]
        done = r["n_finished"] + r["n_early_stopped"] + r["n_failed"]
        jobs = f"{done}/{total if total is not None else '?'}"
        best = "-" if r["best_score"] is None else f"{r['best_score']:.6g}"
        if (r["best_score"] is not None and r.get("best_budget") is not None
                and r["best_budget"] < r["largest_budget_run"]):
            # every job at the largest budget failed: say which budget the best comes from
            best += f" (budget {r['best_budget']:g} < {r['largest_budget_run']:g})"
        status = f"{r['status']} (crashed)" if note else r["status"]
        table.add_row(str(r["eid"]), r["name"], r.get("user") or "-", status,
                      r["proposer"] or "-",
                      r["target"] or "-", jobs, str(r["n_failed"]), best,
                      _time(r["start_time"]), _time(r["end_time"]))
    _console().print(table)
    for note in notes:
        _console().print(note)
    return EXIT_OK


#: ``aup list --status``'s pseudo-status of an experiment marked RUNNING whose process is gone.
CRASHED = "CRASHED"


def _experiment_status_filter(text: str | None) -> set[str] | None:
    """The statuses of ``aup list --status A,B``: experiment statuses and ``CRASHED``.

    Raises:
        UsageError: an unknown status, naming the known ones.
    """
    from aup.experiment import ExperimentStatus

    return _status_filter(text, [*(st.value for st in ExperimentStatus), CRASHED], "experiment")


def _filtered_experiments(store: Any, rows: list[dict[str, Any]], statuses: set[str] | None,
                          name: str | None, last: int | None) -> list[dict[str, Any]]:
    """``rows`` of :meth:`Store.list_experiments` with ``aup list``'s filters applied: the
    statuses, a name
    pattern (:func:`fnmatch.fnmatchcase`), then the ``last`` most recently created. ``RUNNING``
    takes the crashed ones too (their status is RUNNING); ``CRASHED`` only those."""
    from fnmatch import fnmatchcase

    if name is not None:
        rows = [r for r in rows if fnmatchcase(str(r["name"]), name)]
    if statuses is not None:
        from aup.experiment import scheduler_gone

        def matches(r: dict[str, Any]) -> bool:  # RUNNING: crashed ones too, as the table
            return r["status"] in statuses or (  # shows them ("RUNNING (crashed)")
                CRASHED in statuses and r["status"] == "RUNNING" and scheduler_gone(r))

        rows = [r for r in rows if matches(r)]
    if last is not None:
        rows = sorted(rows, key=lambda r: r["eid"], reverse=True)[:last]  # newest first
    return rows


def _crash_note(row: dict[str, Any], store: Any) -> str | None:
    """For an experiment marked RUNNING whose ``aup run`` process is gone (a kill -9, a
    reboot), the line that says so and names the command that continues it; else None."""
    if row["status"] != "RUNNING":
        return None
    from aup.experiment import crashed_fix, crashed_text, scheduler_gone

    if not scheduler_gone(row):
        return None
    return f"{crashed_text(row)}; continue it with: {crashed_fix(row, store)}"


#: Above this many rows ``aup show`` prints plain aligned columns instead of a rich table:
#: rich measures and keeps every cell (60,000 jobs took 32 s and 464 MB of memory).
RICH_TABLE_ROWS = 2000


def _print_table(console, headers: list[str], rows: list[list[str]]) -> None:
    """Print ``rows`` (lists of cell strings, one per header) under ``headers``: a rich table
    up to :data:`RICH_TABLE_ROWS` rows, plain space-aligned columns beyond (one line per row,
    the same columns, a few seconds for 100,000 rows).

    Raises:
        BrokenPipeError: the reader of the output went away.
    """
    if len(rows) <= RICH_TABLE_ROWS:
        from rich.table import Table

        table = Table(*headers)
        for r in rows:
            table.add_row(*r)
        console.print(table)
        return
    rows = [[cell.replace("\n", " ") for cell in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    write_stdout("\n".join([line(headers), line(["-" * w for w in widths]),
                            *(line(r) for r in rows)]) + "\n")


def cmd_show(args) -> int:
    """aup show: an experiment's jobs."""
    from aup.api import config_params, find_experiment
    from aup.job import AttemptStatus, JobStatus

    with_attempts = getattr(args, "attempts", False)
    statuses = _status_filter(getattr(args, "status", None),
                              [st.value for st in (AttemptStatus if with_attempts else JobStatus)],
                              "attempt" if with_attempts else "job")
    top = getattr(args, "top", None)
    if top is not None and with_attempts:
        raise UsageError("--top ranks jobs by score; it does not go with --attempts. Fix: "
                         "leave out one of them")
    store = _open(args, read_only=True)
    row = find_experiment(store, args.experiment)
    if with_attempts:
        return _show_attempts(store, row, args.json, statuses)
    every = store.jobs(int(row["eid"]))
    jobs = [j for j in every if statuses is None or j["status"] in statuses]
    if top is not None:
        # as 'aup best': a larger budget first (a budget-1 score is no match for a budget-9
        # one), then the score in the experiment's direction
        sign = -1.0 if row["target"] == "max" else 1.0
        if statuses is None:  # as 'aup best': finished jobs (an early-stopped score is one
            jobs = [j for j in jobs if j["status"] == "FINISHED"]  # from mid-training)
        jobs = sorted((j for j in jobs if j["score"] is not None),
                      key=lambda j: (-(j["budget"] or 0.0), sign * j["score"]))[:top]
    attempts = store.last_attempts(int(row["eid"]))
    if args.json:
        write_stdout(json.dumps(jobs, default=str) + "\n")
        return EXIT_OK
    console = _console()
    console.print(f"experiment {row['eid']} ({row['name']}): {row['status']}, target "
                  f"{row['target']}, proposer {row['proposer'] or '-'}")
    note = _crash_note(row, store)
    if note:
        console.print(note)
    table = []
    for j in jobs:
        a = attempts.get(j["jid"]) or {}
        reason = ""
        detail = f": {a['detail']}" if a.get("detail") else ""
        if j["fail_reason"]:
            reason = f"{j['fail_reason']}{detail}"
        elif j["status"] == "INTERRUPTED" and a.get("status"):
            # why it runs again on resume: its last attempt was STOPPED or LOST
            reason = f"{a['status']}{detail}"
        elif j["status"] == "EARLY_STOPPED" and a.get("detail"):
            reason = str(a["detail"])  # which early-stopping rule ended it
        score = "-" if j["score"] is None else f"{j['score']:.6g}"
        # job_id is the job column already; hyperopt's tid (2.0's protocol) equals the
        # proposal id and is hidden as in 'aup best'
        params = ", ".join(f"{k}={_fmt(v, exact=True)}"
                           for k, v in config_params(j["job_config"]).items())
        table.append([str(j["jid"]), j["status"], score, str(j["n_attempts"]), params, reason])
    _print_table(console, ["job", "status", "score", "attempts", "parameters", "reason"], table)
    if len(jobs) < len(every):
        console.print(f"({len(jobs)} of {len(every)} jobs shown: "
                      + ", ".join(x for x in (
                          f"status {','.join(sorted(statuses))}" if statuses else "",
                          f"the {top} best" if top is not None else "") if x) + ")")
    if top is not None and not jobs and any(j["status"] in (statuses or ()) for j in every):
        console.print(f"(--top ranks jobs by score, and no {','.join(sorted(statuses or ()))} "
                      "job has one. Fix: leave out --top to list them)")
    if row.get("error_msg") and row["status"] == "FAILED":
        console.print(f"first failure: {row['error_msg']}")
    return EXIT_OK


class _VersionAction(argparse.Action):
    """``aup --version``: the package version and the schema revision it creates and
    upgrades to (two installations with one version number may write different schemas;
    trial 68). Imported only when asked, to keep start-up light."""

    def __call__(self, parser, namespace, values, option_string=None):
        from aup import __version__
        from aup.store.migrate import HEAD

        write_stdout(f"aup {__version__} (database schema revision {HEAD}; "
                     f"{os.path.dirname(os.path.abspath(__file__))})\n")
        parser.exit()


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _status_filter(text: str | None, known: list[str], what: str) -> set[str] | None:
    """The statuses of ``--status A,B`` (any letter case), checked against ``known``.

    Raises:
        UsageError: an unknown status, naming the known ones.
    """
    if text is None:
        return None
    wanted = {t.strip().upper() for t in text.split(",") if t.strip()}
    unknown = sorted(wanted - set(known))
    if unknown or not wanted:
        article = "an" if what[0] in "aeiou" else "a"
        raise UsageError(f"--status {text!r}: {', '.join(unknown) or 'no status'} is not "
                         f"{article} {what} status. Fix: use one or more of {', '.join(known)}, "
                         "separated by commas")
    return wanted


def _show_attempts(store, row, as_json: bool, statuses: set[str] | None = None) -> int:
    """aup show --attempts: every attempt with its status, exit code and failure reason
    (only those of ``statuses`` when given)."""
    rows = [a for a in store.experiment_attempts(int(row["eid"]))
            if statuses is None or a["status"] in statuses]
    if as_json:
        write_stdout(json.dumps(rows, default=str) + "\n")
        return EXIT_OK
    table = []
    for a in rows:
        secs = ("-" if a["end_time"] is None or a["start_time"] is None
                else f"{a['end_time'] - a['start_time']:.1f}")
        job = f"{a['jid']} (save_model re-run)" if a.get("is_rerun") else str(a["jid"])
        table.append([job, str(a["num"]), a["status"],
                      "-" if a["exit_code"] is None else str(a["exit_code"]),
                      a["fail_reason"] or "", a["detail"] or "", secs, a["output_path"] or ""])
    console = _console()
    console.print(f"experiment {row['eid']} ({row['name']}): {row['status']}, "
                  f"{len(rows)} attempt(s)")
    _print_table(console, ["job", "attempt", "status", "exit", "reason", "detail", "seconds",
                           "output"], table)
    return EXIT_OK


def cmd_best(args) -> int:
    """aup best: the best job of an experiment."""
    from aup.api import find_experiment

    store = _open(args, read_only=True)
    row = find_experiment(store, args.experiment)
    best = store.best_job(int(row["eid"]), row["target"] == "max")
    results = _labelled_results(store, row, best) if best is not None else {}
    if args.json:
        if best is not None:  # the smaller-budget note of the text output, for machines
            best = {**best, "largest_budget_run": store.largest_budget_run(int(row["eid"])),
                    "results": results, "params": _shown_params(best)}
        write_stdout(json.dumps(best, default=str) + "\n")
        return EXIT_OK if best else EXIT_FAILED
    console = _console()
    if best is None:
        console.print(f"experiment {row['eid']} has no finished job")
        return EXIT_FAILED
    console.print(f"experiment {row['eid']} ({row['name']}): best job {best['jid']}, score "
                  f"{best['score']!r}{_below_largest_budget(store, best)}")
    for k, v in _shown_params(best).items():
        console.print(f"  {k} = {_fmt(v, exact=True)}")
    if results:
        console.print("its other results (multi_res_labels):")
        for label, v in results.items():
            console.print(f"  {label} = {'-' if v is None else _fmt(v, exact=True)}")
    return EXIT_OK


def _labelled_results(store, row: dict, job: dict) -> dict[str, float | None]:
    """The ``multi_res_labels`` values of ``job``'s final result, by label (``{}`` without
    labels): 'which run had the best accuracy' needed export or the dashboard (trial 55)."""
    from aup.api import result_labels

    labels = result_labels(row.get("exp_config"))
    if not labels:
        return {}
    extras = store.final_extras(int(row["eid"])).get(job["jid"], {})
    return {label: extras.get(i) for i, label in enumerate(labels, start=1)}


# -- parser ------------------------------------------------------------------------------------------
#: Every command's help ends with this: --log is a global option, also read after the command.
LOG_EPILOG = ("--log LEVEL (debug, info, warning, error; default warning) sets the log level, "
              "before or after the command.")


def build_parser(extras: bool = True) -> argparse.ArgumentParser:
    """The argparse parser of the core subcommands and, with ``extras``, of
    :data:`EXTRA_COMMANDS` too (their modules are imported only then)."""
    parser = argparse.ArgumentParser(
        prog="aup", description="Auptimizer: hyperparameter optimization for unchanged training "
        "scripts. 'aup EXPERIMENT.json' is short for 'aup run EXPERIMENT.json'.")
    parser.add_argument("--version", action=_VersionAction, nargs=0,
                        help="print the version and the database schema revision it writes")
    parser.add_argument("--log", default="warning", type=str.lower,  # 2.0's DEBUG too
                        choices=["debug", "info", "warning", "error"], help="log level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.subcommand_parsers = sub.choices  # name -> its parser (for error messages)

    def add(name: str, func, help_: str, experiment: bool = True):
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        p.add_argument("--db", help=("database URL (default: $AUP_DB, storage in "
                                     "experiment.json, .aup/env.ini, else .aup/sqlite3.db)")
                       if name == "run" else DB_HELP)
        if experiment:
            p.add_argument("experiment", help="experiment id or name")
        return p

    p = add("run", cmd_run, "run an experiment", experiment=False)
    p.add_argument("experiment", help="experiment.json file")
    p.add_argument("--user", help="user name recorded with the experiment (default $USER)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--check", "--test", action="store_true",
                   help="validate the configuration only; run and record nothing")
    p = add("resume", cmd_resume, "continue a stopped, failed or crashed experiment")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true",
                   help="resume even if the experiment looks alive in another process (only "
                        "when that process is gone: two live processes run jobs twice)")
    add("stop", cmd_stop, "ask a running experiment to stop (it stays resumable)")
    p = add("list", cmd_list, "list experiments", experiment=False)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--status", metavar="STATUS[,STATUS]",
                   help="only experiments of these statuses: RUNNING (crashed ones too), "
                        "CRASHED (marked running, its process gone), STOPPED, FAILED, "
                        "FINISHED, CREATED")
    p.add_argument("--name", metavar="PATTERN",
                   help="only experiments whose name matches PATTERN ('*' and '?' wildcards)")
    p.add_argument("--last", metavar="N", type=_positive_int,
                   help="only the N most recently created experiments (after the filters)")
    p = add("show", cmd_show, "show an experiment's jobs")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--attempts", action="store_true",
                   help="list every attempt (retries, lost and stopped runs) with its reason")
    p.add_argument("--status", metavar="STATUS[,STATUS]",
                   help="only jobs (with --attempts: attempts) of these statuses, e.g. FAILED")
    p.add_argument("--top", metavar="N", type=_positive_int,
                   help="only the N best FINISHED jobs (or of --status), best first, the "
                        "largest budget first, as 'aup best' ranks them")
    p = add("best", cmd_best, "show an experiment's best job")
    p.add_argument("--json", action="store_true", help="print JSON")

    if extras:
        import importlib

        for module in EXTRA_COMMANDS.values():
            importlib.import_module(module).add_parser(sub)
    for command_parser in sub.choices.values():
        command_parser.epilog = command_parser.epilog or LOG_EPILOG
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``aup`` command line (``argv``: the arguments, default ``sys.argv[1:]``). Returns
    the exit code (see the module text); a Ctrl-C at any point ends it with 130 and no
    traceback. The process entry point is :func:`aup.__main__.entry`, which also covers the
    loading of this module and the interpreter's exit."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


#: Flags of Auptimizer 2.0's ``python -m aup EXPERIMENT_JSON`` that ``aup run`` does not take
#: (and the dashboard's ``--path``), with what to do instead (named when such a flag is
#: refused).
V2_RUN_FLAGS = {
    "--aup_folder": "the environment folder is ./.aup; for another one set "
                    "AUP_ENV=FOLDER/env.ini",
    "--resume": "2.0's proposer pickle is not used: aup resume EXPERIMENT continues an "
                "experiment from the database",
    "--launch_dashboard": "run 'aup dashboard' (in another terminal)",
    "--dashboard_port": "run 'aup dashboard --port PORT'",
    "--sleep": "not needed: results are read as they arrive",
    "--path": "the database is given with --db (aup dashboard --db .aup/sqlite3.db)",
}


def _hoist_log(argv: list[str]) -> list[str]:
    """``--log LEVEL`` given after the command (2.0's ``python -m aup exp.json --log debug``)
    moved to the front, where the global option is read. No command has its own ``--log``."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--log" and i + 1 < len(argv):
            front += argv[i:i + 2]
            i += 2
            continue
        (front if argv[i].startswith("--log=") else rest).append(argv[i])
        i += 1
    return front + rest


def _main(argv: list[str] | None) -> int:
    argv = _hoist_log(list(sys.argv[1:] if argv is None else argv))
    # 'aup experiment.json' / 'python -m aup --check experiment.json' -> 'aup run ...'
    # ('run' goes right after the global '--log LEVEL', so that run's own options given before
    # the file (--check/--test, -q, --user NAME, --db URL) still belong to 'run')
    with_value = {"--log", "--user", "--db"}
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")
                  and not (i > 0 and argv[i - 1] in with_value)), None)
    command = argv[first] if first is not None else None
    if command is not None and command not in {*CORE_COMMANDS, *EXTRA_COMMANDS} and (
            command.endswith(".json") or Path(command).is_file()):
        at = 0
        while at < first and (argv[at] == "--log" or argv[at].startswith("--log=")):
            at += 2 if argv[at] == "--log" else 1
        argv.insert(min(at, first), "run")
        command = "run"
    if command is not None and command not in {*CORE_COMMANDS, *EXTRA_COMMANDS}:
        import difflib

        close = difflib.get_close_matches(command, [*CORE_COMMANDS, *EXTRA_COMMANDS], n=1)
        if close:  # argparse lists every command, without a guess (trial 62: 'aup lst')
            print(f"aup: error: unknown command '{command}' (did you mean '{close[0]}'?); "
                  "'aup --help' lists the commands", file=sys.stderr)
            return EXIT_USAGE
    # A core command needs none of the extra commands' modules (a quicker start of 'aup run').
    parser = build_parser(extras=command not in CORE_COMMANDS)
    try:
        args, extra = parser.parse_known_args(argv)
        take_extra = getattr(args, "take_extra", None)
        if extra and take_extra is not None:
            extra = take_extra(args, extra)
        if extra:
            # the command's own usage line, not the top-level one
            command_parser = parser.subcommand_parsers.get(getattr(args, "command", None))
            hints = [f"{flag} is Auptimizer 2.0's: {V2_RUN_FLAGS[flag]}"
                     for flag in dict.fromkeys(e.split("=", 1)[0] for e in extra)
                     if flag in V2_RUN_FLAGS]
            (command_parser or parser).error(f"unrecognized arguments: {' '.join(extra)}"
                                             + "".join(f"\n  {h}" for h in hints))
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    _setup_logging(args.log)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    err_console = _console(stderr=True, plain_ok=True)
    try:
        return int(args.func(args))
    except ConfigError as err:
        err_console.print(f"error: {err.render()}", style="red")
        return EXIT_USAGE
    except (UsageError, StoreError) as err:
        fix = getattr(err, "repair", None) if "Fix:" not in str(err) else None
        # a database that cannot be written before the run started (a run's own message,
        # in _run_loop, says how to continue it)
        err_console.print(f"error: {err}" + (f". Fix: run the command again {fix}"
                                             if fix else ""), style="red")
        return EXIT_USAGE
    except AupError as err:
        err_console.print(f"error: {err}", style="red")
        return EXIT_FAILED
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of the output went away (aup show --json | head): end quietly, with the
        # status of a process ended by SIGPIPE, and let nothing more reach the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
