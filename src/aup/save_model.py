"""``resource_args.save_model``: run the best configuration once more so that it saves its model.

After an experiment finished normally (before it is marked FINISHED), :func:`rerun_best` runs
the best job's configuration again with two more keys in the job config:
``"save_model": true`` and ``"folder_name": "models_<experiment id>"``. The script saves its
model either through a callback registered with :func:`aup.aup_save_model` (called by
:func:`aup.aup_args` from inside ``aup_models/models_<eid>/`` in the working directory), or by
reading those two keys itself (the decorator-free way).

Unlike Auptimizer 2.0 the re-run is its own job row, flagged ``is_rerun`` (it never counts as
a job of the experiment, never becomes the best job and never adds results to the best job),
and its outcome (FINISHED, FAILED with a reason) is recorded and reported.
"""

from __future__ import annotations

import logging
import queue
import time
from typing import TYPE_CHECKING, Any

from aup.job import AttemptStatus, JobStatus, StopReason
from aup.orphans import job_markers
from aup.resources.base import AttemptSpec, EndEvent, ResultEvent

if TYPE_CHECKING:
    from aup.experiment import Experiment

log = logging.getLogger(__name__)

#: Seconds between two reads of the stop request while the re-run runs.
_STOP_POLL = 0.5


def model_folder(eid: int) -> str:
    """``models_<eid>``: the ``folder_name`` given to the re-run (under ``aup_models/``)."""
    return f"models_{eid}"


def rerun_best(exp: Experiment) -> dict[str, Any] | None:
    """Re-run the best job of ``exp`` with ``save_model: true`` and wait for it.

    Uses the experiment's resource manager (still open) and its first slot; honours
    ``job_timeout``, Ctrl-C and ``aup stop`` like any job. Sets ``exp.saved_model``.

    Args:
        exp: an experiment whose loop just finished normally.

    Returns:
        ``{"jid", "best_jid", "status", "folder", "wrote", "detail", "reason"}`` (status: the
        re-run job's status; wrote: whether the model folder has files, None for a remote
        resource), or None when there is no best job.
    """
    store, eid = exp.store, exp.eid
    best = store.best_job(eid, exp.config.maximize)
    if best is None:
        log.warning("experiment %d: save_model is set but no job finished; nothing to save", eid)
        return None
    folder = model_folder(eid)
    job_config = {k: v for k, v in best["job_config"].items() if k != "job_id"}
    job_config.update(save_model=True, folder_name=folder)
    slot = exp.slots[0]
    rid = store.resource_id(slot.kind, slot.name)
    # A re-run of the same configuration cut short by a crash or a stop (resume brings the
    # experiment here again) gets its next attempt, rather than a new job beside a row left
    # INTERRUPTED for ever.
    earlier = next((j for j in store.jobs(eid, include_rerun=True, status=(
        JobStatus.INTERRUPTED.value, JobStatus.RUNNING.value))
        if j["is_rerun"] and j["job_config"] == job_config), None)
    if earlier is not None:
        jid, num = int(earlier["jid"]), int(earlier["n_attempts"])
        jaid = store.start_attempt(jid=jid, num=num, rid=rid,
                                   output_path=str(exp.jobs_dir / f"{jid}.{num}.out"))
    else:
        num = 0
        jid, jaid = store.start_job(
            eid=eid, job_config=job_config, proposal=best.get("proposal") or {}, rid=rid,
            output_dir=str(exp.jobs_dir), proposer_state=None, budget=best.get("budget"),
            bracket=best.get("bracket"), rung=best.get("rung"), is_rerun=True)
    rt = exp.config.runtime_args
    spec = AttemptSpec(
        job_id=jid, attempt=num, job_config={**job_config, "job_id": jid},
        command=exp.config.job_command(), workingdir=exp.workingdir,
        config_path=exp.jobs_dir / f"{jid}.json",
        output_path=exp.jobs_dir / f"{jid}.{num}.out",
        env={**job_markers(eid), **rt.env}, prescript=rt.prescript, postscript=rt.postscript,
        n_labels=len(exp.labels))
    log.info("experiment %d: re-running best job %d as job %d to save its model in "
             "aup_models/%s", eid, best["jid"], jid, folder)
    exp.resource.start(spec, slot)
    end = _wait(exp, jid, num)
    o = end.outcome
    if o.status is AttemptStatus.SUCCEEDED:
        status = JobStatus.FINISHED
    elif o.status is AttemptStatus.STOPPED:
        status = JobStatus.INTERRUPTED
    else:
        status = JobStatus.FAILED
    store.end_attempt(
        eid=eid, jid=jid, jaid=jaid, attempt_status=o.status.value, exit_code=o.exit_code,
        fail_reason=o.reason.value if o.reason else None, detail=o.detail, output_tail=o.tail,
        job_status=status.value, score=o.score if status is JobStatus.FINISHED else None,
        extras=o.extras if exp.labels else ())
    path: Any = exp.workingdir / "aup_models" / folder
    wrote: bool | None = None  # unknown for remote resources
    if not getattr(exp.resource, "local_files", True):
        path = f"aup_models/{folder} under workingdir {exp.config.workingdir} on {slot.name}"
    else:
        wrote = path.is_dir() and any(path.iterdir())
    if status is JobStatus.FINISHED and wrote is False:
        log.warning("experiment %d: the save_model re-run (job %d) finished but wrote nothing "
                    "in %s", eid, jid, path)
    elif status is JobStatus.FINISHED:
        log.info("experiment %d: best model saved by job %d; see %s", eid, jid, path)
    else:
        log.warning("experiment %d: the save_model re-run (job %d) ended %s: %s", eid, jid,
                    status.value, o.detail)
    exp.saved_model = {"jid": jid, "best_jid": best["jid"], "status": status.value,
                       "folder": str(path), "wrote": wrote, "detail": o.detail,
                       "reason": o.reason.value if o.reason else None}
    return exp.saved_model


def _wait(exp: Experiment, jid: int, attempt: int) -> EndEvent:
    """Wait for the re-run's EndEvent, recording its result lines, enforcing the timeout and
    stop requests."""
    timeout = exp.config.job_timeout
    deadline = time.monotonic() + timeout if timeout else None
    next_poll = 0.0
    stopped = False
    num = 0
    while True:
        now = time.monotonic()
        if not stopped and deadline is not None and now >= deadline:
            exp.resource.stop(jid, attempt, StopReason.TIMEOUT)
            stopped = True
        if not stopped and now >= next_poll:
            next_poll = now + _STOP_POLL
            if exp._stop_event.is_set() or exp.store.stop_requested(exp.eid):
                exp.resource.stop(jid, attempt, StopReason.EXPERIMENT_STOP)
                stopped = True
        try:
            ev = exp.events.get(timeout=0.25)
        except queue.Empty:
            continue
        if ev.job_id != jid:
            continue
        if isinstance(ev, ResultEvent):
            values = ev.values if exp.labels else ev.values[:1]
            if exp.track or len(values) > 1:
                exp.store.add_result(eid=exp.eid, jid=jid, num=num, values=values,
                                     receive_time=ev.time, track=exp.track)
            num += 1
        elif isinstance(ev, EndEvent):
            return ev
