"""The experiment loop: the one place that changes an experiment's state.

One thread runs :meth:`Experiment.run`. It fills free resource slots with proposals, records
every job and attempt in the store, reads result and end events from the resource manager,
tells the proposer, retries failed attempts (on another slot when one is free), enforces
``job_timeout``, honours stop requests (Ctrl-C, ``aup stop``, the dashboard), and ends when the
proposer is finished and nothing runs.

Scores become losses in exactly one place (:meth:`Experiment._loss`): ``-score`` for
``target: max``. Proposers always minimize.

Every change is saved as it happens (the proposer state with it), so an experiment stopped by
Ctrl-C, ``aup stop``, a failed job, or even ``kill -9`` resumes with :meth:`Experiment.resume`:
finished jobs are kept exactly once, interrupted ones run again, and job ids keep increasing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from aup.config import ExperimentConfig, parse_config
from aup.errors import AupError, ConfigError, DatabaseUnavailable, UsageError, install_hint
from aup.in_process import RUNS, runs_here
from aup.job import (
    NEVER_RAN,
    AttemptOutcome,
    AttemptStatus,
    FailReason,
    JobStatus,
    StopReason,
)
from aup.jobs_folder import JobsFolderClaim, claim_jobs_dir
from aup.open_files import ensure_open_files
from aup.orphans import job_markers, pid_exists
from aup.proposers import registry as proposer_registry
from aup.proposers.base import Proposal, Proposer
from aup.resources import registry as resource_registry
from aup.resources.base import AttemptSpec, EndEvent, ResourceManager, ResultEvent, Slot
from aup.store.admin import STALE_AFTER, experiment_alive
from aup.store.store import Store, outage_wait_seconds

log = logging.getLogger(__name__)

#: Seconds between two reads of the stop request (and heartbeats) in the store.
STOP_POLL = 0.5
#: Seconds between two heartbeat writes.
HEARTBEAT = 5.0
#: Most events handled in one batch after the first (their result lines: one transaction).
EVENT_BATCH = 1000
#: A gap between two deadline checks longer than this (seconds; they come every 0.25 s or
#: so) means the scheduler was paused: Ctrl-Z, SIGSTOP, a frozen virtual machine.
PAUSE_GAP = 5.0
#: Attempts in a row that could not start, on every slot in use, after which the experiment
#: stops even with ``ignore_fail`` (see ``Experiment._count_start_failure``).
_START_FAILED_LIMIT = 2


class ExperimentStatus(str, Enum):
    """Status of an experiment (``experiment.status``)."""

    CREATED = "CREATED"
    RUNNING = "RUNNING"
    #: Stopped by the user (Ctrl-C, ``aup stop``); resumable.
    STOPPED = "STOPPED"
    FINISHED = "FINISHED"
    #: A job failed without ``ignore_fail``, no job succeeded, or the scheduler failed;
    #: resumable.
    FAILED = "FAILED"


@dataclass
class ExperimentResult:
    """What :meth:`Experiment.run` returns.

    Attributes:
        eid: the experiment id.
        status: how it ended.
        best: the best job row (dict with ``jid``, ``score``, ``job_config``...) or None.
        n_jobs, n_finished, n_failed, n_early_stopped: job counts (re-runs excluded).
        error: the first failure's message (reason and output tail), or None.
    """

    eid: int
    status: ExperimentStatus
    best: dict[str, Any] | None
    n_jobs: int
    n_finished: int
    n_failed: int
    n_early_stopped: int
    error: str | None = None
    #: False when resuming would run nothing (every planned job has ended).
    resumable: bool = True


class Observer:
    """Receives progress notifications from the loop (the CLI draws its progress bar).

    Every method is a no-op here; override what you need. Called from the loop's thread.
    """

    def on_start(self, experiment: Experiment) -> None:
        """The loop starts (after the resource is prepared)."""

    def on_job_started(self, jid: int, attempt: int, slot: Slot, config: dict[str, Any]) -> None:
        """An attempt started."""

    def on_result(self, jid: int, values: tuple[float, ...]) -> None:
        """A running job reported a result line."""

    def on_job_ended(self, jid: int, attempt: int, outcome: AttemptOutcome,
                     job_status: JobStatus | None) -> None:
        """An attempt ended; ``job_status`` is None when the job will be retried."""

    def on_stopping(self, reason: str) -> None:
        """The experiment is stopping (user request or failure)."""


@dataclass
class _Job:
    jid: int
    proposal: Proposal
    job_config: dict[str, Any]
    attempts: int = 0  # attempts started so far (the next attempt's number)
    #: Attempts that FAILED; only these count against ``job_retries`` (an attempt that was
    #: STOPPED or LOST to an interruption is not the job's failure).
    failures: int = 0
    bad_slots: set[str] = field(default_factory=set)


@dataclass
class _Running:
    job: _Job
    attempt: int
    jaid: int
    slot: Slot
    started: float
    deadline: float | None
    n_results: int = 0
    last: tuple[float, ...] | None = None
    history: list[float] = field(default_factory=list)
    #: Set when the early-stopping policy stopped it: the values it had reported then, its
    #: score (lines printed after the stop, e.g. by a SIGTERM handler, are ignored).
    early_values: tuple[float, ...] | None = None
    early_stopped: bool = False


class Experiment:
    """One experiment: configuration, proposer, resource manager and store, run by one loop.

    Build it with :meth:`create` (a new experiment) or :meth:`resume` (continue a stored one),
    then call :meth:`run`.

    Args:
        config: the validated configuration.
        store: the database.
        eid: the experiment id (row already in the store).
        proposer: the proposer (state restored when resuming).
        observer: progress notifications.
        env_file: ``aup setup``'s environment settings (resource lists), if any.
    """

    def __init__(self, config: ExperimentConfig, store: Store, eid: int, proposer: Proposer,
                 observer: Observer | None = None, env_file: Any = None,
                 resource: ResourceManager | None = None):
        self.config = config
        self.store = store
        self.eid = eid
        self.proposer = proposer
        self.observer = observer or Observer()
        if resource is None:
            resource = prepared_resource(config, queue.Queue(), env_file, prepare=False)
        self.resource: ResourceManager = resource
        self.events: queue.Queue = resource.events
        self._prepared = getattr(resource, "_aup_prepared", False)
        self.slots = self.resource.slots[: max(1, len(self.resource.slots))]
        self.busy: dict[str, tuple[int, int]] = {}
        self.running: dict[tuple[int, int], _Running] = {}
        self.retry_queue: list[_Job] = []
        self.rerun_queue: list[_Job] = []
        self._stop_event = threading.Event()
        # A database server that stops answering (a restart) is waited for, not a crash;
        # a stop request ends the wait.
        store.outage_wait = outage_wait_seconds()
        store.abort = self._stop_event.is_set
        self._force = False
        self._last_deadline_check = time.monotonic()
        self.stop_reason: str | None = None
        self.first_failure: str | None = None
        #: The first job that failed for good (also with ignore_fail), with its output tail.
        self.first_job_failure: str | None = None
        self.failed = False
        self.n_parallel = config.n_parallel
        #: Per slot id, how many attempts in a row ended START_FAILED there (see _on_end).
        self._start_failed_streak: dict[str, int] = {}
        self.workingdir = config.workingdir_path
        self.jobs_dir = self.resource.jobs_dir
        #: This run's hold on ``jobs/`` (set by create/resume; released when run() ends).
        self._claim = JobsFolderClaim(None)
        #: argv prefix of the script, computed once (it stats the script file).
        self._command = tuple(config.job_command())
        self._script = config.script_path()
        self.resource.attach(store, eid)
        ra = config.resource_args
        self.labels = list(ra.multi_res_labels or [])
        self.track = bool(ra.track_intermediate_results or ra.early_stop)
        self.early_stop = None
        #: Histories of jobs that ended FINISHED or EARLY_STOPPED (early-stopping peers).
        self._histories: dict[int, list[float]] = {}
        #: Results of the longest FINISHED job, per budget (None: without budgets): how many a
        #: complete training reports (a budget-3 job reports fewer than a budget-9 one).
        self._full_lengths: dict[float | None, int] = {}
        self._extra_values_warned = False
        if ra.early_stop:
            from aup.early_stop import make_policy

            self.early_stop = make_policy(ra.early_stop, maximize=config.maximize)
        #: Result lines not written yet: (jid, num, values, receive time).
        self._results: list[tuple[int, int, tuple[float, ...], float]] = []
        #: Outcome of the ``save_model`` re-run (set by :mod:`aup.save_model`), or None.
        self.saved_model: dict[str, Any] | None = None

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def create(cls, config: ExperimentConfig, store: Store, *, user: str | None = None,
               observer: Observer | None = None, env_file: Any = None,
               resource: ResourceManager | None = None) -> Experiment:
        """Record a new experiment and build its proposer and resource manager (or prepare
        ``resource``, one built and checked by :func:`prepared_resource` with ``check_only``,
        so that its checks and warnings run once).

        Raises:
            ConfigError: the proposer rejects its options.
        """
        proposer = build_proposer(config)
        warn_planned_jobs(config, proposer)
        # The resource is ready (hosts reached, GPU ids known...) before anything is written.
        resource = prepared_resource(config, queue.Queue(), env_file, resource=resource)
        claim = claim_jobs_dir(resource.jobs_dir, store)
        try:
            eid = store.create_experiment(
                user=user or default_user(), name=config.experiment_name,
                config=_stored_config(config), proposer=config.proposer, target=config.target,
                n_total=proposer.total,
                config_path=str(config.source) if config.source else None,
                workingdir=str(config.workingdir_path))
            store.update_experiment(eid, proposer_state=proposer.state_dict())
            exp = cls(config, store, eid, proposer, observer, env_file, resource)
        except BaseException:
            claim.release()
            raise
        exp._claim = claim
        return exp

    @classmethod
    def resume(cls, store: Store, eid: int, *, observer: Observer | None = None,
               env_file: Any = None, force: bool = False) -> Experiment:
        """Continue a stored experiment.

        Attempts left running by a crash are marked LOST and their jobs run again; finished
        jobs are kept; the proposer continues from its saved state.

        Raises:
            UsageError: unknown eid, the experiment is FINISHED, or it is still running in a
                live process (unless ``force``).
            ConfigError: the stored configuration no longer validates (e.g. the script moved).
        """
        row = store.get_experiment(eid)
        if row is None:
            raise UsageError(f"no experiment with id {eid}")
        if row.get("config_path"):  # stored as readable text when not valid UTF-8
            from aup.store.text import stored_path

            row = {**row, "config_path": str(stored_path(row["config_path"]))}
        if row["status"] == ExperimentStatus.FINISHED.value:
            raise UsageError(f"experiment {eid} ({row['name']}) already finished; nothing to "
                             "resume")
        if store.count_unproposed_jobs(eid):
            raise UsageError(_recorded_by_2_0(row, store))
        if row["status"] == ExperimentStatus.RUNNING.value and runs_here(row):
            # --force is for a process that is gone; this one is not (trial 69: with force
            # the resume ran every running job a second time beside the thread)
            raise UsageError(f"experiment {eid} is still running (another thread of this "
                             "process runs it). Fix: wait for that run to end (join its "
                             f"thread), or stop it with: aup stop {eid}, then resume it; force "
                             "does not apply to a run that is alive")
        alive = (experiment_alive(row, STALE_AFTER)
                 if row["status"] == ExperimentStatus.RUNNING.value and not force else None)
        if alive:  # on this host its process exists; on another, its heartbeat is fresh
            from aup.api import db_option

            raise UsageError(f"experiment {eid} is still running ({alive}); stop it first "
                             f"with: aup stop{db_option(store)} {eid} (or, only if that "
                             "process is gone, add --force)")
        if (row.get("host") == socket.gethostname() and row.get("pid")
                and not _process_alive(row)):
            # The orphans of the dead scheduler, killed *before* the claim replaces its pid in
            # the record: a resume killed in between would otherwise leave them running,
            # unknown to the next one, beside their own re-runs (trial 51). Also after 'aup
            # repair' (which marked the attempts LOST already), and harmless when another
            # resume wins the claim: the dead scheduler's jobs can never report. Any
            # resource: what carries this experiment's and that scheduler's markers here (a
            # job of a node on this machine too) is one of its orphans.
            from aup.orphans import kill_orphans

            kill_orphans(eid, row.get("pid"))
        # Claimed first, atomically: of two resumes at once (on PostgreSQL nothing else
        # serializes them) only one marks the running attempts LOST and runs the jobs.
        if not store.claim_experiment(eid, row):
            raise UsageError(f"experiment {eid} was resumed or changed by another process "
                             "just now; look with: aup list")
        try:
            base = Path(row["config_path"]).parent if row.get("config_path") else Path.cwd()
            changed, now, file_warnings = _edited_since(row)
            recorded = row["exp_config"]
            taken: list[str] = []
            others = list(changed)
            if now:
                taken, recorded, others = _resume_edits(recorded, now, changed)
            elif changed:  # the file no longer validates: its editable keys may
                taken, recorded, file_warnings = _editable_of_invalid_file(row, base)
            for warning in file_warnings:  # a typo in an edited key ("ignore_fals")
                log.warning("%s: %s", row["config_path"], warning)
            try:
                config = parse_config(recorded, base, row.get("config_path"))
            except ConfigError as err:  # e.g. the script moved: name what was validated
                origin = f" from {row['config_path']}" if row.get("config_path") else ""
                raise ConfigError(err.problems, f"the copy recorded for experiment {eid}{origin} "
                                  "(resume goes on with that copy)", err.warnings) from None
            if others:
                log.warning("experiment %d: %s was edited since the experiment started (%s); "
                            "resume goes on with the configuration recorded then%s. To use the "
                            "edited one, %sstart a new experiment with: aup run %s", eid,
                            row["config_path"], ", ".join(others),
                            f" (except {_listed(taken)})" if taken else "",
                            "fix it and " if not now else "", row["config_path"])
            elif row.get("config_path") and not Path(row["config_path"]).is_file():
                log.warning("experiment %d: %s is gone; resume goes on with the configuration "
                            "recorded when the experiment started", eid, row["config_path"])
            proposer = build_proposer(config)
            if row.get("proposer_state"):
                proposer.load_state_dict(row["proposer_state"])
            n_lost = store.mark_interrupted(eid, AttemptStatus.LOST.value)
            if n_lost:
                log.warning("experiment %d: %d attempt(s) were still recorded as running (their "
                            "scheduler ended without recording how they ended: it crashed, or "
                            "the database could not be reached); they run again", eid, n_lost)
            resource = prepared_resource(config, queue.Queue(), env_file)
            short = ensure_open_files(config.n_parallel)  # an edited n_parallel: said once
            if short:
                log.warning("%s", short)
            claim = claim_jobs_dir(resource.jobs_dir, store)
            try:
                exp = cls(config, store, eid, proposer, observer, env_file, resource)
                if taken:  # recorded once the edited hosts answered (exit 2 changes nothing)
                    store.update_experiment(eid, exp_config=recorded)
                    log.warning("experiment %d: resume uses the edited %s of %s (how and where "
                                "jobs run, not what is searched)", eid, _listed(taken),
                                row["config_path"])
            except BaseException:
                claim.release()
                raise
        except BaseException:
            store.unclaim_experiment(eid, row)
            raise
        exp._claim = claim
        unfinished = [j for j in store.jobs(
            eid, status=(JobStatus.INTERRUPTED.value, JobStatus.RUNNING.value))
            if j["status"] in (JobStatus.INTERRUPTED.value, JobStatus.RUNNING.value)]
        _wait_for_lost_copies(store, row, unfinished, resource.lost_copies_gone_after())
        failures = store.failed_attempt_counts(eid) if unfinished else {}
        for j in unfinished:
            exp.rerun_queue.append(_Job(j["jid"], Proposal.from_dict(j["proposal"]),
                                        j["job_config"], attempts=int(j["n_attempts"]),
                                        failures=failures.get(j["jid"], 0)))
        if exp.early_stop is not None:
            # Peers of the early-stopping policy survive the restart.
            exp._histories.update(store.histories(
                eid, (JobStatus.FINISHED.value, JobStatus.EARLY_STOPPED.value)))
            finished = store.histories(eid, (JobStatus.FINISHED.value,))
            budgets = {int(j["jid"]): j.get("budget") for j in store.jobs(
                eid, status=(JobStatus.FINISHED.value,))}
            for jid, history in finished.items():
                exp._note_full_length(budgets.get(jid), len(history))
        return exp

    # -- control -------------------------------------------------------------------------------
    def request_stop(self, force: bool = False) -> None:
        """Ask the loop to stop (safe from signal handlers and other threads). Running jobs are
        stopped (SIGTERM, then SIGKILL); with ``force`` they are killed at once."""
        self._force = self._force or force
        self._stop_event.set()

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> ExperimentResult:
        """Run until the proposer is finished and nothing runs, or until stopped.

        Returns:
            The result (status, best job, counts). A FAILED or STOPPED experiment is returned,
            not raised; :class:`~aup.errors.AupError` is raised only when the resource cannot
            be prepared (the experiment is then marked FAILED with that message).
        """
        if not self._prepared:
            try:
                self.resource.prepare()
            except AupError as err:
                self._claim.release()
                self.store.end_experiment(self.eid, ExperimentStatus.FAILED.value, str(err))
                raise
            self._prepared = True
        row = self.store.get_experiment(self.eid) or {}
        with RUNS.running(self.eid, row.get("name", self.config.experiment_name)):
            return self._run_prepared()

    def _run_prepared(self) -> ExperimentResult:
        status = ExperimentStatus.FAILED
        try:
            self.observer.on_start(self)  # inside: a raising observer must not leave it RUNNING
            status = self._loop()
            # the heartbeat checks every 5 s: a run shorter than that, or a deletion after the
            # last one, ended FINISHED with its records in the deleted file (trial 69)
            self.store.check_file()
            if status is ExperimentStatus.FINISHED:
                self._after_finish()
                if (self.saved_model or {}).get("status") == JobStatus.INTERRUPTED.value:
                    # Ctrl-C or 'aup stop' during the save_model re-run: resumable (the
                    # resume runs it again), not FINISHED without a saved model.
                    status = ExperimentStatus.STOPPED
                    self.stop_reason = self.stop_reason or "stopped during the save_model re-run"
        except DatabaseUnavailable:
            # Nothing can be recorded: stop the jobs (they run again on resume, which marks
            # their attempts LOST once the database answers) and report it.
            self._stop_all(force=True)
            self._drain(timeout=self.resource.options.kill_grace + 5, record=False)
            raise
        except BaseException as err:
            # Ctrl-C where no handler of ours turned it into a stop request (aup.run_experiment
            # in a notebook or script): a stop like 'aup run's, resumable; anything else is a
            # scheduler error.
            interrupted = isinstance(err, KeyboardInterrupt)
            self.stop_reason = self.stop_reason or (
                "interrupted (KeyboardInterrupt)" if interrupted else f"scheduler error: {err!r}")
            # A second Ctrl-C (a notebook's "interrupt" pressed twice), or an observer raising
            # again while the last results drain, cut this clean-up short and left the
            # experiment RUNNING: the record is written whatever happens, with Ctrl-C held.
            with sigint_held():
                try:
                    self._stop_all(force=True)
                    self._drain(timeout=self.resource.options.kill_grace + 5)
                except BaseException as again:  # noqa: BLE001 - the first error is raised
                    log.warning("experiment %d: clean-up after %r cut short by %r", self.eid,
                                err, again)
                    self._stop_all(force=True)
                self.store.mark_interrupted(self.eid, AttemptStatus.STOPPED.value)
                if interrupted and not self.failed:
                    self.store.end_experiment(self.eid, ExperimentStatus.STOPPED.value,
                                              self.stop_reason)
                else:
                    self.store.end_experiment(self.eid, ExperimentStatus.FAILED.value,
                                              self.first_failure or self.stop_reason)
            raise
        finally:
            if self.early_stop is not None:
                self.early_stop.close()
            self.resource.close()
            self._claim.release()
        if status is not ExperimentStatus.FINISHED:
            # Jobs waiting for a retry when the experiment stopped run again on resume.
            self.store.mark_interrupted(self.eid, AttemptStatus.STOPPED.value)
        self.store.end_experiment(self.eid, status.value, self.first_failure
                                  if status is not ExperimentStatus.FINISHED else None)
        return self.result(status)

    def result(self, status: ExperimentStatus) -> ExperimentResult:
        """Summarize the experiment from the store."""
        by_status = self.store.job_status_counts(self.eid)
        count = {s: by_status.get(s.value, 0) for s in JobStatus}
        return ExperimentResult(
            self.eid, status, self.store.best_job(self.eid, self.config.maximize),
            sum(by_status.values()),
            count[JobStatus.FINISHED], count[JobStatus.FAILED], count[JobStatus.EARLY_STOPPED],
            self.first_failure or (self.stop_reason if status is ExperimentStatus.FAILED
                                   else None),
            resumable=status is not ExperimentStatus.FINISHED and (
                not self.proposer.finished or count[JobStatus.INTERRUPTED] > 0
                or count[JobStatus.RUNNING] > 0
                or (self.saved_model or {}).get("status") == JobStatus.INTERRUPTED.value))

    def _loop(self) -> ExperimentStatus:
        next_poll = next_beat = 0.0
        stopping = killed = False
        self._last_deadline_check = time.monotonic()  # the time before the loop is no pause
        while True:
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + STOP_POLL
                if self.store.stop_requested(self.eid) and not self._stop_event.is_set():
                    # said, so that a stop by a colleague on a shared database is not taken
                    # for a Ctrl-C (trial 58)
                    log.warning("experiment %d: a stop was requested from outside this process "
                                "('aup stop' or the dashboard's stop button); stopping",
                                self.eid)
                    self._stop_event.set()
                if now >= next_beat:
                    next_beat = now + HEARTBEAT
                    self.store.check_file()  # a deleted database: stop, not "FINISHED"
                    self.store.update_experiment(self.eid, heartbeat=time.time())
            if stopping and self._force and not killed:
                killed = True  # a second Ctrl-C: no grace period
                self._stop_all(force=True)
            if self._stop_event.is_set() and not stopping:
                stopping = True
                killed = self._force
                self.stop_reason = self.stop_reason or "stopped at the user's request"
                self.observer.on_stopping(self.stop_reason)
                self._stop_all(force=self._force)
            if self.failed and not stopping:
                stopping = True
                self.observer.on_stopping(self.first_failure or "a job failed")
                self._stop_all(force=False)
            waiting = False
            if not stopping:
                waiting = self._fill()
            if not self.running:
                if stopping:
                    return (ExperimentStatus.FAILED if self.failed
                            else ExperimentStatus.STOPPED)
                if not self.retry_queue and not self.rerun_queue:
                    if self.proposer.finished or waiting:
                        if not self.proposer.finished:
                            self.stop_reason = ("the proposer has nothing to propose and no job "
                                                "is running")
                            log.error("experiment %d: %s", self.eid, self.stop_reason)
                            return ExperimentStatus.FAILED
                        return self._final_status()
            self._wait_events()
            self._check_deadlines()
            if self.early_stop is not None:
                self._poll_early_stop()

    def _final_status(self) -> ExperimentStatus:
        by_status = self.store.job_status_counts(self.eid)
        n_ok = by_status.get(JobStatus.FINISHED.value, 0) + by_status.get(
            JobStatus.EARLY_STOPPED.value, 0)
        if n_ok == 0:
            self.stop_reason = "no job succeeded"
            first = self.first_job_failure
            if first is None:  # every failure happened before a resume: name the first one
                failed = self.store.first_failed_job(self.eid)
                if failed:
                    first = f"job {failed[0]} ({failed[1]})"
            self.first_failure = self.first_failure or (
                f"no job succeeded; the first failure was {first}" if first else self.stop_reason)
            return ExperimentStatus.FAILED
        return ExperimentStatus.FINISHED

    def _free_slots(self) -> list[Slot]:
        """The slots that can take an attempt now, those that can start jobs first.

        A slot whose last :data:`_START_FAILED_LIMIT` attempts could not start gets no new
        attempt while a slot that can start jobs is running one: it waits for that slot, whose
        next start tells a broken slot (the others keep the experiment going) from a broken
        environment (a deleted script: every slot then fails and the experiment stops, see
        :meth:`_count_start_failure`). Without this, the free slot failed every remaining job
        while the other one ran a long job.
        """
        streak = self._start_failed_streak
        free = [s for s in self.slots if s.id not in self.busy and self.resource.available(s)]
        failing = {s.id for s in free if streak.get(s.id, 0) >= _START_FAILED_LIMIT}
        if not failing:
            return free
        if any(streak.get(b, 0) < _START_FAILED_LIMIT for b in self.busy):
            return [s for s in free if s.id not in failing]
        return sorted(free, key=lambda s: s.id in failing)

    def _fill(self) -> bool:
        """Start attempts on free slots. Returns True when the proposer asked us to wait."""
        while len(self.running) < self.n_parallel:
            free = self._free_slots()
            if not free:
                return False
            if self.retry_queue:
                job = self.retry_queue.pop(0)
                good = [s for s in free if s.id not in job.bad_slots]
                self._start_attempt(job, (good or free)[0])
                continue
            if self.rerun_queue:
                self._start_attempt(self.rerun_queue.pop(0), free[0])
                continue
            proposal = self.proposer.ask()
            if proposal is None:
                return True
            self._start_new_job(proposal, free[0])
        return False

    def _start_new_job(self, proposal: Proposal, slot: Slot) -> None:
        job_config = proposal.job_config()
        rid = self.store.resource_id(slot.kind, slot.name)
        jid, jaid = self.store.start_job(
            eid=self.eid, job_config=job_config, proposal=proposal.to_dict(), rid=rid,
            output_dir=str(self.jobs_dir) if self.resource.keeps_output else None,
            proposer_state=self.proposer.state_dict(), budget=proposal.budget,
            bracket=proposal.bracket, rung=proposal.rung)
        job = _Job(jid, proposal, job_config, attempts=1)
        self._launch(job, 0, jaid, slot)

    def _start_attempt(self, job: _Job, slot: Slot) -> None:
        num = job.attempts
        job.attempts += 1
        rid = self.store.resource_id(slot.kind, slot.name)
        out = self.jobs_dir / f"{job.jid}.{num}.out" if self.resource.keeps_output else None
        jaid = self.store.start_attempt(jid=job.jid, num=num, rid=rid,
                                        output_path=str(out) if out is not None else None)
        self._launch(job, num, jaid, slot)

    def _launch(self, job: _Job, num: int, jaid: int, slot: Slot) -> None:
        rt = self.config.runtime_args
        spec = AttemptSpec(
            job_id=job.jid, attempt=num, job_config={**job.job_config, "job_id": job.jid},
            command=list(self._command), workingdir=self.workingdir,
            config_path=self.jobs_dir / f"{job.jid}.json",
            output_path=self.jobs_dir / f"{job.jid}.{num}.out",
            env={**job_markers(self.eid), **rt.env}, prescript=rt.prescript,
            postscript=rt.postscript,
            n_labels=len(self.labels), script=self._script)
        timeout = self.config.job_timeout
        now = time.monotonic()
        self.running[spec.key] = _Running(job, num, jaid, slot, now,
                                          now + timeout if timeout else None)
        self.busy[slot.id] = spec.key
        log.info("job %d attempt %d started on %s: %s", job.jid, num, slot.id, job.job_config)
        self.observer.on_job_started(job.jid, num, slot, job.job_config)
        self.resource.start(spec, slot)

    def _wait_events(self) -> None:
        timeout = 0.25
        deadlines = [r.deadline for r in self.running.values() if r.deadline is not None]
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic()))
        try:
            ev = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        self._handle(ev)
        # Take what else arrived (bounded, so that stop requests and deadlines stay prompt);
        # the result lines among them are written in one transaction.
        for _ in range(EVENT_BATCH):
            try:
                ev = self.events.get_nowait()
            except queue.Empty:
                break
            self._handle(ev)
        self._flush_results()

    def _drain(self, timeout: float, record: bool = True) -> None:
        """Wait up to ``timeout`` seconds for the running attempts to end, recording them
        unless ``record`` is False (the database cannot be written: they stay RUNNING there and
        the resume marks them LOST and runs them again)."""
        end = time.monotonic() + timeout
        while self.running and time.monotonic() < end:
            try:
                ev = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if record:
                self._handle(ev)
            elif isinstance(ev, EndEvent):
                self.running.pop((ev.job_id, ev.attempt), None)
        if record:
            self._flush_results()

    def _check_deadlines(self) -> None:
        """Stop the attempts past their ``job_timeout``. After a pause of the scheduler
        (:data:`PAUSE_GAP`) the deadlines move by the pause first: while it was paused nobody
        read the jobs' output, so a job that filled its pipe waited for it, and every such job
        was stopped as TIMEOUT at once on SIGCONT, which failed the experiment (trial 66)."""
        now = time.monotonic()
        gap, self._last_deadline_check = now - self._last_deadline_check, now
        if gap > PAUSE_GAP:
            timed = [r for r in self.running.values() if r.deadline is not None]
            for r in timed:
                r.deadline += gap
            if timed:
                log.warning("experiment %d: the scheduler did not run for %.1f s (paused by "
                            "Ctrl-Z or SIGSTOP, a frozen machine, or waiting for a locked "
                            "database); the job_timeout of the %d running job(s) is extended "
                            "by as much", self.eid, gap, len(timed))
            return
        for key, r in list(self.running.items()):
            if r.deadline is not None and now >= r.deadline:
                r.deadline = None
                log.warning("job %d attempt %d: timeout after %ss, stopping it", key[0], key[1],
                            self.config.job_timeout)
                self.resource.stop(key[0], key[1], StopReason.TIMEOUT)

    def _stop_all(self, force: bool) -> None:
        for key in list(self.running):
            self.resource.stop(key[0], key[1], StopReason.EXPERIMENT_STOP)
            if force:
                self.resource.kill(key[0], key[1])

    def _handle(self, ev: ResultEvent | EndEvent) -> None:
        r = self.running.get((ev.job_id, ev.attempt))
        if r is None:
            return
        if isinstance(ev, ResultEvent):
            self._on_result(r, ev)
        else:
            self._flush_results()  # the job's results go first (is_last_result marks them)
            self._on_end(r, ev)

    def _on_result(self, r: _Running, ev: ResultEvent) -> None:
        if r.early_stopped:
            log.debug("job %d: result %r after the early stop ignored", r.job.jid, ev.values)
            return
        num = r.n_results
        r.n_results += 1
        r.last = ev.values
        # Without multi_res_labels extra values are ignored (as in Auptimizer 2.0).
        values = ev.values if self.labels else ev.values[:1]
        if len(ev.values) > 1 and not self.labels and not self._extra_values_warned:
            self._warn_extra_values(r.job.jid, ev.values)
        if self.track or len(values) > 1:
            self._results.append((r.job.jid, num, values, ev.time))
        self.observer.on_result(r.job.jid, ev.values)
        if self.early_stop is not None:
            r.history.append(ev.values[0])
            self._check_early_stop(r)

    def _warn_extra_values(self, jid: int, values: tuple[float, ...]) -> None:
        """Say once per run that a result line's extra values are ignored: a decimal comma
        (``0,210``) or a thousands separator (``1,234.5``) otherwise becomes a plausible wrong
        score without a word (trial 55)."""
        self._extra_values_warned = True
        shown = ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if len(values) > 5 else "")
        log.warning("job %d printed %d values on a result line (%s): without "
                    "resource_args.multi_res_labels only the first, %g, is its score and the "
                    "others are ignored. Values are separated by commas: for a decimal comma "
                    "or a thousands separator, print the number with a point and no separator "
                    "(0.210, 1234.5); for several metrics, name the extra ones in "
                    "multi_res_labels. (Said once.)", jid, len(values), shown, values[0])

    def _flush_results(self) -> None:
        """Write the result lines collected since the last flush (one transaction)."""
        if self._results:
            rows, self._results = self._results, []
            self.store.add_results(eid=self.eid, rows=rows, track=self.track)

    def _check_early_stop(self, r: _Running) -> None:
        """Ask the early-stopping policy about a running job; stop it if the policy says so.

        An error inside the policy disables early stopping for that job, with a warning.
        """
        policy = self.early_stop
        budget = r.job.proposal.budget
        if budget is not None and float(budget).is_integer() and len(r.history) == budget:
            # as many results as its budget (n_iterations): one per epoch, this is its last;
            # stopping it would save nothing and make a complete result an early-stopped one,
            # and its finished peers at this budget may not exist yet (trial 65)
            return
        try:
            peers = {key[0]: x.history for key, x in self.running.items() if x is not r}
            if policy.should_stop(r.job.jid, r.history, peers, self._finished_histories(),
                                  full_length=self._full_lengths.get(budget)):
                self._stop_early(r)
        except Exception as err:  # noqa: BLE001 - a policy bug must not stall the experiment
            log.warning("job %d: early stopping disabled for this job after an error in the "
                        "policy: %r", r.job.jid, err)
            policy.disable(r.job.jid)

    def _note_full_length(self, budget: float | None, n_results: int) -> None:
        """A job of ``budget`` FINISHED after ``n_results`` results: the longest such is a
        complete training's length at that budget (early stopping spares a job there)."""
        key = float(budget) if budget is not None else None
        self._full_lengths[key] = max(self._full_lengths.get(key, 0), n_results)

    def _finished_histories(self) -> dict[int, list[float]]:
        return self._histories

    def _poll_early_stop(self) -> None:
        """Stop the jobs a background evaluation (curve fitting) condemned."""
        try:
            jids = self.early_stop.poll()
        except Exception as err:  # noqa: BLE001 - a policy bug must not stall the experiment
            log.warning("early stopping: error while polling the policy: %r", err)
            return
        for jid in jids:
            for key, r in self.running.items():
                if key[0] == jid:
                    self._stop_early(r)
                    break

    def _stop_early(self, r: _Running) -> None:
        """Stop ``r`` for the early-stopping policy; its score is what it reported so far."""
        if r.early_stopped:
            return
        log.info("job %d: stopped early by the %s policy", r.job.jid, self.early_stop.name)
        r.early_stopped, r.early_values = True, r.last
        self.resource.stop(r.job.jid, r.attempt, StopReason.EARLY_STOP)

    def _loss(self, score: float) -> float:
        """The only place where a score becomes a loss (proposers minimize)."""
        return -score if self.config.maximize else score

    def _on_end(self, r: _Running, ev: EndEvent) -> None:
        key = (ev.job_id, ev.attempt)
        self.running.pop(key, None)
        self.busy.pop(r.slot.id, None)
        o = ev.outcome
        if (o.reason is FailReason.KILLED_BY_SIGNAL and o.exit_code == -signal.SIGINT
                and (self._stop_event.is_set() or self.stop_reason)):
            # The terminal's Ctrl-C reached a job that was starting (a new process is in the
            # scheduler's process group until it makes its own): stopped with the
            # experiment, to run again on resume, not a failure of its configuration.
            o = replace(o, status=AttemptStatus.STOPPED, reason=None,
                        detail="stopped with the experiment (the Ctrl-C reached the job too)")
        if o.status is AttemptStatus.EARLY_STOPPED and r.early_stopped:
            v = r.early_values or (None,)
            o = replace(o, score=v[0], extras=tuple(v[1:]))
        job = r.job
        state = None
        job_status: JobStatus | None
        error_msg = None
        if o.status in (AttemptStatus.SUCCEEDED, AttemptStatus.EARLY_STOPPED):
            self._start_failed_streak[r.slot.id] = 0  # this slot can start jobs
        if o.status is AttemptStatus.SUCCEEDED:
            job_status = JobStatus.FINISHED
            self.proposer.tell(job.proposal, self._loss(float(o.score)))
        elif o.status is AttemptStatus.EARLY_STOPPED:
            job_status = JobStatus.EARLY_STOPPED
            loss = self._loss(o.score) if o.score is not None and math.isfinite(o.score) else None
            self.proposer.tell_early_stopped(job.proposal, loss)
        elif o.status is AttemptStatus.STOPPED:
            job_status = JobStatus.INTERRUPTED
        else:
            retries = self.config.job_failure.job_retries
            summary = (f"job {job.jid} attempt {ev.attempt} failed ({o.reason.value}): "
                       f"{o.detail}")
            start_failed = o.reason in NEVER_RAN
            broken = self._count_start_failure(r.slot.id, start_failed)
            error_msg = summary + ("\n--- output tail ---\n" + o.tail if o.tail else "")
            ignore = self.config.job_failure.ignore_fail
            stopping = self.failed or self._stop_event.is_set()
            if start_failed and ignore and not broken:
                # It never ran, so it says nothing about its configuration: not spent, and no
                # retry used. It runs again on a slot that can start jobs (a failing slot waits
                # for the others, see _free_slots), or on resume if the experiment is stopping.
                # Once no slot can start jobs (``broken``) the experiment stops below.
                if stopping:
                    job_status = JobStatus.INTERRUPTED
                    log.warning("%s; it runs again on resume", summary)
                else:
                    job_status = None
                    job.bad_slots.add(r.slot.id)
                    self.retry_queue.append(job)
                    log.warning("%s; it runs again (not counted as a retry)", summary)
            elif job.failures + 1 <= retries and not broken:
                job.failures += 1
                job_status = None
                if stopping:
                    # Retries left, but the experiment is stopping: the retry is the resume's
                    # (its FAILED attempts are counted again from the database then).
                    job_status = JobStatus.INTERRUPTED
                    log.warning("%s; it runs again on resume (retry %d/%d)", summary,
                                job.failures, retries)
                else:
                    job.bad_slots.add(r.slot.id)
                    self.retry_queue.append(job)
                    log.warning("%s; retrying (%d/%d)", summary, job.failures, retries)
            else:
                job.failures += 1
                # A job that never ran (START_FAILED: its config could not be written...) stops
                # the experiment like any failure, but is not spent: the proposer is not told
                # and the job runs again on resume once the cause is repaired.
                # With ignore_fail too once no slot can start a job any more (``broken``):
                # ignore_fail covers the jobs' own failures, not a broken environment, which
                # would otherwise burn every remaining job in seconds.
                unspent = start_failed
                job_status = JobStatus.INTERRUPTED if unspent else JobStatus.FAILED
                log.error("%s%s", summary, "; it runs again on resume" if unspent else "")
                self.first_job_failure = self.first_job_failure or error_msg
                if not unspent:
                    self.proposer.tell_failure(job.proposal)
                if (not ignore or broken) and not self.failed:
                    self.failed = True
                    self.first_failure = error_msg if not broken else (
                        f"no job can start any more (the last {_START_FAILED_LIMIT} attempts on "
                        f"every slot could not start; ignore_fail covers failures of the jobs "
                        f"themselves, not this): {error_msg}")
        if job_status is not None and job_status is not JobStatus.INTERRUPTED:
            state = self.proposer.state_dict()
        if self.early_stop is not None:
            self.early_stop.forget(job.jid)
            if job_status in (JobStatus.FINISHED, JobStatus.EARLY_STOPPED):
                self._histories[job.jid] = r.history
            if job_status is JobStatus.FINISHED:
                self._note_full_length(job.proposal.budget, len(r.history))
        extras = o.extras if self.labels else ()
        self.store.end_attempt(
            eid=self.eid, jid=job.jid, jaid=r.jaid, attempt_status=o.status.value,
            exit_code=o.exit_code, fail_reason=o.reason.value if o.reason else None,
            detail=o.detail, output_tail=o.tail,
            job_status=job_status.value if job_status else None,
            score=o.score if job_status in (JobStatus.FINISHED, JobStatus.EARLY_STOPPED)
            else None, extras=extras, proposer_state=state, error_msg=error_msg)
        self.observer.on_job_ended(job.jid, ev.attempt, o, job_status)

    def _count_start_failure(self, slot_id: str, start_failed: bool) -> bool:
        """Record whether an attempt that failed on ``slot_id`` could not start. Returns True
        when every slot in use has seen :data:`_START_FAILED_LIMIT` such attempts in a row (the
        jobs folder cannot be written, the interpreter is gone, every host refuses): the
        experiment then stops even with ``ignore_fail``. One broken slot among working ones
        does not stop it."""
        streak = self._start_failed_streak
        streak[slot_id] = streak.get(slot_id, 0) + 1 if start_failed else 0
        in_use = min(len(self.slots), self.n_parallel)
        return (start_failed and len(streak) >= in_use
                and all(n >= _START_FAILED_LIMIT for n in streak.values()))

    def _after_finish(self) -> None:
        """Hook run after a normal finish (the ``save_model`` re-run)."""
        if self.config.resource_args.save_model:
            from aup.save_model import rerun_best

            try:
                rerun_best(self)
            except Exception as err:  # noqa: BLE001 - the experiment itself has finished
                log.error("experiment %d: the save_model re-run failed: %r", self.eid, err)
                self.saved_model = {"status": "FAILED", "detail": repr(err)}


def prepared_resource(config: ExperimentConfig, events: queue.Queue, env_file: Any = None,
                      prepare: bool = True, check_only: bool = False,
                      resource: ResourceManager | None = None) -> ResourceManager:
    """Build the configured resource manager (or take ``resource``, built by an earlier call)
    and (by default) prepare it; with ``check_only``, run only its checks that connect to
    nothing and start nothing (``aup run --check``).

    Raises:
        UsageError: the resource is not ready (no GPU ids, a host that does not answer, a
            missing package...); nothing has been recorded yet.
    """
    try:
        if resource is None:
            resource = resource_registry.get(config.resource)(config, events, env_file)
        if check_only:
            resource.check()
            _warn_unused_parallelism(config, resource)
            # said here, before anything is recorded ('aup run' and run_experiment check
            # first; a resume says it itself)
            warning = ensure_open_files(config.n_parallel, raise_limit=False)
            if warning:
                log.warning("%s", warning)
        elif prepare:
            ensure_open_files(config.n_parallel)  # the soft limit up to what the jobs need
            resource.prepare()
            resource._aup_prepared = True  # type: ignore[attr-defined]
    except ConfigError:
        raise
    except ImportError as err:
        raise UsageError(f"resource '{config.resource}' needs the Python package "
                         f"'{err.name}'. Fix: {install_hint('all')}") from None
    except AupError as err:
        raise UsageError(f"resource '{config.resource}' is not ready: {err}") from None
    return resource


def _warn_unused_parallelism(config: ExperimentConfig, resource: ResourceManager) -> None:
    """Warn when ``n_parallel`` asks for more jobs at once than the resource has slots: the
    start line said "n_parallel 3" while one GPU id ran the jobs one at a time."""
    n = len(resource.slots)
    if 0 < n < config.n_parallel:
        source = resource.slot_source
        log.warning('n_parallel is %d but resource "%s" has %d slot%s%s: at most %d %s '
                    "at once; list an id or host once per job it should run at the same time "
                    "(an entry listed twice gives two slots), or set n_parallel to %d",
                    config.n_parallel, config.resource, n, "" if n == 1 else "s",
                    f" ({source})" if source else "", n, "job runs" if n == 1 else "jobs run",
                    n)


def warn_planned_jobs(config: ExperimentConfig, proposer: Proposer) -> bool:
    """Warn when the proposer's planned number of jobs (a schedule or a grid) differs from an
    ``n_samples`` the configuration sets. Returns True when it warned."""
    if ("n_samples" in config.raw and proposer.total is not None
            and proposer.total != config.n_samples):
        log.warning("%s runs %d jobs (its schedule or grid size), not n_samples=%d",
                    config.proposer, proposer.total, config.n_samples)
        return True
    return False


def build_proposer(config: ExperimentConfig) -> Proposer:
    """Instantiate the configured proposer.

    Raises:
        ConfigError: the proposer rejects its options or the space.
    """
    cls = proposer_registry.get(config.proposer)
    try:
        return cls(config.space, config.proposer_options)
    except ConfigError:
        raise
    except ValueError as err:
        from aup.errors import Problem

        raise ConfigError([Problem("proposer", str(err), config.proposer)],
                          str(config.source) if config.source else None) from None


#: Keys of experiment.json that a resume takes from the edited file: they decide how failed
#: and hanging jobs are handled and how many run at once, not what is searched (a run stopped
#: by a diverging job is resumed with ``ignore_fail`` added; one whose cluster shrank, with
#: fewer jobs at once). The host or GPU list of ``resource_args`` is editable too (see
#: :func:`resume_editable_args`). Other edits need a new experiment.
RESUME_EDITABLE = ("job_failure", "job_timeout", "n_parallel")


def resume_editable_args(resource: str | None) -> tuple[str, ...]:
    """The ``resource_args`` keys of ``resource`` that a resume takes from the edited file:
    where its jobs run (the hosts of ``node`` and ``aws``, the GPU ids of ``gpu``, the Ray
    head's address and runtime environment), so that a host that died for good can be left
    out, or a runtime environment that cannot be set up fixed. ``()`` for an unknown
    resource or one whose module cannot be imported."""
    from aup.resources import registry

    try:
        cls = registry.get(resource or "cpu")
    except (KeyError, ImportError):
        return ()
    return tuple(cls.resume_args)


def _resume_edits(recorded: dict[str, Any], now: dict[str, Any], changed: list[str]
                  ) -> tuple[list[str], dict[str, Any], list[str]]:
    """Split the edits of a valid experiment file into those a resume takes and the others.

    Args:
        recorded: the configuration recorded for the experiment (stored form).
        now: the file's configuration now (stored form).
        changed: the top-level keys that differ.

    Returns:
        ``(taken, recorded with the taken edits, others)``; keys of ``resource_args`` are
        named ``resource_args.<key>``.
    """
    taken: list[str] = []
    others: list[str] = []
    out = dict(recorded)
    same_resource = now.get("resource") == recorded.get("resource")
    for key in changed:
        if key in RESUME_EDITABLE:
            out[key] = now.get(key)
            taken.append(key)
        elif key == "resource_args" and same_resource:
            editable = resume_editable_args(recorded.get("resource"))
            old, new = recorded.get(key) or {}, now.get(key) or {}
            ra = dict(old)
            for sub in sorted(set(old) | set(new)):
                if old.get(sub) == new.get(sub):
                    continue
                if sub not in editable:
                    others.append(f"{key}.{sub}")
                    continue
                if sub in new:
                    ra[sub] = new[sub]
                else:
                    ra.pop(sub, None)
                taken.append(f"{key}.{sub}")
            out[key] = ra
        else:
            others.append(key)
    return taken, out, others


def _listed(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _with_path(config: dict[str, Any], path: tuple[str, ...], source: dict[str, Any]
               ) -> dict[str, Any]:
    """A copy of ``config`` whose value at ``path`` (nested keys) is the one of ``source``
    (left out when ``source`` has none)."""
    out = dict(config)
    head = path[0]
    if len(path) == 1:
        if head in source:
            out[head] = source[head]
        else:
            out.pop(head, None)
        return out
    inner = source.get(head) if isinstance(source.get(head), dict) else {}
    base = out.get(head) if isinstance(out.get(head), dict) else {}
    out[head] = _with_path(base, path[1:], inner)
    return out


def _at_path(config: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(config, dict):
            return None
        config = config.get(key)  # type: ignore[assignment]
    return config


def _wait_for_lost_copies(store: Store, row: dict[str, Any], unfinished: list[dict[str, Any]],
                          settle: float) -> None:
    """Before a resume runs jobs whose attempts were lost with their scheduler, wait until the
    old copies are surely gone: ``settle`` seconds (:meth:`ResourceManager.lost_copies_gone_after`)
    after the scheduler's death, which came at most :data:`HEARTBEAT` seconds after its last
    heartbeat. Trial 54: a remote job that ignored SIGTERM ran beside its own re-run for
    ``kill_grace`` seconds after a ``kill -9`` of ``aup run`` and an immediate resume."""
    if not settle or not unfinished or row.get("heartbeat") is None:
        return
    wait = float(row["heartbeat"]) + HEARTBEAT + settle - time.time()
    if wait <= 0:
        return
    lost = [j["jid"] for j in unfinished
            if (store.attempts(j["jid"]) or [{}])[-1].get("status") == AttemptStatus.LOST.value]
    if not lost:
        return
    log.warning("experiment %d: waiting %.0f s before running %d lost job(s) again, until their "
                "old copies on the nodes are surely stopped", int(row["eid"]), wait, len(lost))
    time.sleep(wait)


@contextlib.contextmanager
def sigint_held(*, discard: bool = False) -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) during the block, in the main thread: one that arrives is raised
    as KeyboardInterrupt when the block ends, or dropped with ``discard`` (a clean-up that runs
    while an interrupt is already on its way up). Elsewhere, and under another handler than
    Python's default one, nothing changes."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if caught and not discard:
        raise KeyboardInterrupt


def _edited_since(row: dict[str, Any]) -> tuple[list[str], dict[str, Any], list[str]]:
    """The top-level keys of an experiment's file that differ now from the configuration
    recorded when it started, the file's configuration as it would be stored, and the file's
    load warnings when it was edited (``[]``, ``{}`` and ``[]`` when the file is gone or
    unchanged; ``["it no longer validates: ..."]`` and ``{}`` when it no longer validates)."""
    path = row.get("config_path")
    if not path or not Path(path).is_file():
        return [], {}, []
    from aup.config import load_config

    try:
        cfg = load_config(path, check_files=False)
    except ConfigError as err:
        named = "; ".join(f"{p.path or 'the file'}: {p.message}" for p in err.problems[:3])
        more = f"; and {len(err.problems) - 3} more" if len(err.problems) > 3 else ""
        return [f"it no longer validates: {named}{more}"], {}, []
    except AupError:
        return ["it no longer validates"], {}, []
    now = _stored_config(cfg)
    old = row.get("exp_config") or {}
    if old.get("name") is None:  # recorded before the default name was stored
        old = {**old, "name": now.get("name")}
    changed = sorted(k for k in set(now) | set(old) if now.get(k) != old.get(k))
    return changed, now, list(cfg.warnings) if changed else []


def _editable_of_invalid_file(row: dict[str, Any], base: Path
                              ) -> tuple[list[str], dict[str, Any], list[str]]:
    """The :data:`RESUME_EDITABLE` keys (and :func:`resume_editable_args`) of an experiment
    file that no longer validates as a whole, each validated on its own over the recorded
    configuration: a user who adds ``ignore_fail`` and mistypes another key still gets
    ``ignore_fail`` (it was dropped, and the resume failed again at the next NaN). Returns the
    keys taken, the recorded configuration with them, and the load warnings about them (an
    unknown key inside an edited ``job_failure``).

    Raises:
        ConfigError: an edited key that a resume takes is itself invalid (the resume would
            otherwise run the jobs in a way the user just changed), or the file is not a JSON
            object at all (its edits cannot be read: a trailing comma dropped an added
            ``ignore_fail`` and the resume failed again at the next NaN).
    """
    from aup.config import read_json
    from aup.errors import MISSING, Problem

    recorded = row["exp_config"]
    file = row["config_path"]
    try:
        raw, _ = read_json(Path(file))
    except ConfigError as err:  # not JSON (a trailing comma), not UTF-8, unreadable
        raise ConfigError([replace(p, hint="fix the file and resume again (or move it away: "
                                   "the resume then goes on with the recorded configuration)")
                           for p in err.problems],
                          f"{file} (resume takes its edited job_failure, job_timeout, "
                          "n_parallel and hosts; nothing was resumed)") from None
    if not isinstance(raw, dict):
        raise ConfigError([Problem("", f"the file holds a JSON {type(raw).__name__}, not an "
                                   "object of keys", MISSING,
                                   "fix the file and resume again (or move it away: the resume "
                                   "then goes on with the recorded configuration)")],
                          f"{file} (nothing was resumed)")
    taken = []
    warnings: list[str] = []
    paths = [(key,) for key in RESUME_EDITABLE]
    same_resource = (str(raw.get("resource", "cpu")).strip().lower()
                     == str(recorded.get("resource", "cpu")).strip().lower())
    if same_resource and isinstance(raw.get("resource_args", {}), dict):
        # (another resource's hosts are not taken: the valid-file path names that edit)
        paths += [("resource_args", sub)
                  for sub in resume_editable_args(recorded.get("resource"))]
    for path in paths:
        name = ".".join(path)
        candidate = _with_path(recorded, path, raw)
        try:
            parsed = parse_config(candidate, base, row["config_path"], check_files=False)
        except ConfigError as err:
            problems = [p for p in err.problems
                        if p.path == name or p.path.startswith(name + ".")
                        or p.path.startswith(name + "[")]
            if problems:
                raise ConfigError(problems, f"{row['config_path']} (resume takes its edited "
                                  f"{name}, which is invalid; nothing was resumed)") from None
            continue
        stored = _stored_config(parsed)
        if _at_path(stored, path) != _at_path(recorded, path):
            taken.append(name)
            recorded = _with_path(recorded, path, stored)
            warnings += [w for w in parsed.warnings if f"'{name}." in w or f"'{name}'" in w]
    return taken, recorded, warnings


def _stored_config(config: ExperimentConfig) -> dict[str, Any]:
    """The configuration as stored: every default filled in, intermediate tracking shown
    on when early stopping turns it on (as Auptimizer 2.0 stored it), no database password
    (the database may be shared; resuming needs only the database it is read from), and text
    every view can show (:func:`aup.store.text.readable_text`: the name of a file
    ``caf\\xe9.json`` is not valid UTF-8, and the dashboard failed to send it)."""
    from aup.store.store import without_password

    data = without_password(config.to_json_dict())
    if data.get("name") is None:  # the default, the file's stem, as the experiment is named
        data["name"] = config.experiment_name
    ra = data.get("resource_args")
    if isinstance(ra, dict) and ra.get("early_stop"):
        ra["track_intermediate_results"] = True
    return _readable(data)


def _readable(data: Any) -> Any:
    """``data`` (decoded JSON) with every string made storable and showable
    (:func:`aup.store.text.readable_text`), as a copy."""
    from aup.store.text import readable_text

    if isinstance(data, str):
        return readable_text(data)
    if isinstance(data, dict):
        return {readable_text(k) if isinstance(k, str) else k: _readable(v)
                for k, v in data.items()}
    if isinstance(data, list):
        return [_readable(v) for v in data]
    return data


def default_user() -> str:
    """The user name recorded with experiments: ``$USER``, else ``default``."""
    return os.environ.get("USER") or os.environ.get("USERNAME") or "default"


def scheduler_gone(row: dict) -> bool:
    """True when the experiment ``row`` ran on this machine and its ``aup run`` process is
    gone (it crashed), or when no scheduler was ever recorded for it (Auptimizer 2.0 recorded
    no host or pid); False when it lives or ran elsewhere (cannot be told from here)."""
    if row.get("host") is None and row.get("pid") is None:
        return True
    return row.get("host") == socket.gethostname() and not _process_alive(row)


def _recorded_by_2_0(row: dict, store: Store) -> str:
    """Why an experiment Auptimizer 2.0 recorded cannot be resumed, and what to do instead."""
    from aup.api import db_option

    again = (f"aup run {row['config_path']}" if row.get("config_path")
             else "aup run <its experiment.json>")
    return (f"experiment {row['eid']} ({row['name']}) was recorded by Auptimizer 2.0, which "
            "kept no proposer state and no proposals, so it cannot be resumed; its jobs stay "
            f"recorded (aup show{db_option(store)} {row['eid']}). Fix: start a new experiment "
            f"with: {again}")


def crashed_text(row: dict) -> str:
    """The words that say experiment ``row`` crashed (:func:`scheduler_gone` is True), shared
    by ``aup stop``, ``aup tell`` and the dashboard's stop request."""
    if row.get("pid") is None:
        return (f"experiment {row['eid']} is marked RUNNING but no aup process was ever recorded "
                "for it (Auptimizer 2.0 recorded it)")
    return (f"experiment {row['eid']} is marked RUNNING but its process {row['pid']} is gone "
            "(it crashed)")


def crashed_fix(row: dict, store: Store) -> str:
    """The command that continues the crashed experiment ``row``: ``aup resume``, or for one
    Auptimizer 2.0 recorded (not resumable) ``aup repair``, which closes it."""
    from aup.api import db_option

    if store.count_unproposed_jobs(int(row["eid"])):
        return (f"aup repair{db_option(store)} (it marks it STOPPED; an experiment recorded by "
                "Auptimizer 2.0 cannot be resumed)")
    return f"aup resume{db_option(store)} {row['eid']}"


def _process_alive(row: dict) -> bool:
    """True when the scheduler recorded in ``row`` lives on this host: another process with
    its pid exists, or it is this process's own pid and one of its threads runs the experiment
    (:mod:`aup.in_process`; otherwise the pid was reused, e.g. by a restarted container)."""
    host, pid = row.get("host"), row.get("pid")
    if not pid or host != socket.gethostname():
        return False
    if int(pid) == os.getpid():
        return runs_here(row)
    return pid_exists(int(pid))
