"""Maintenance of the database: repair after a crash, and (on explicit request) a fresh start.

:func:`repair` is Auptimizer 2.0's ``aup.setupdb.reset`` done right. After a scheduler was
killed (``kill -9``, a reboot, a lost SSH session) its experiment stays RUNNING and its jobs and
attempts stay RUNNING. ``repair``

* marks an experiment whose process is gone STOPPED (resumable with ``aup resume``), with an
  ``error_msg`` that says so;
* marks its RUNNING jobs INTERRUPTED and their RUNNING attempts LOST (they run again on resume);
  scores stay NULL. 2.0 wrote the score -999, which then counted as a real (best!) result;
* does the same for RUNNING jobs left in experiments that already ended;
* frees resource rows left ``busy`` when no experiment is alive any more.

"Process gone": on this host, the recorded pid does not exist; on another host (a shared
PostgreSQL database), the heartbeat is older than ``stale_after`` seconds.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

from sqlalchemy import func, select, update

from aup.in_process import runs_here
from aup.orphans import pid_exists
from aup.store import schema as s
from aup.store.store import Store

#: Seconds without a heartbeat after which a scheduler on another host counts as gone (the
#: scheduler writes one every :data:`aup.experiment.HEARTBEAT` seconds), for ``aup repair``
#: and ``aup resume``.
STALE_AFTER = 60.0

#: The experiment's error message after a repair (``{db}``: the ``--db`` option, or nothing).
REPAIRED_MSG = ("the scheduler process ended without closing the experiment (crash or kill); "
                "marked STOPPED by 'aup repair'. Continue with: aup resume{db} {eid}")
#: The same for an experiment Auptimizer 2.0 recorded, which cannot be resumed.
REPAIRED_2_0_MSG = ("recorded by Auptimizer 2.0 as RUNNING; marked STOPPED by 'aup repair'. It "
                    "cannot be resumed (2.0 kept no proposer state); its jobs stay recorded")

#: Why ``aup repair`` left an experiment alone that another process changed while it looked.
CHANGED_WHY = "another process changed it while repair looked"


@dataclass
class RepairReport:
    """What :func:`repair` did (or would do, with ``dry_run``).

    Attributes:
        stopped: ``(eid, name, n_jobs_interrupted)`` of experiments marked STOPPED.
        cleaned: ``(eid, name, n_jobs_interrupted)`` of ended experiments whose RUNNING jobs
            were marked INTERRUPTED.
        alive: ``(eid, name, why)`` of RUNNING experiments left alone.
        forced: ``{eid: why}`` of experiments marked STOPPED by ``force`` although their
            process looked alive (it may still run jobs).
        resources_freed: resource rows set from busy to free.
        schedulers: ``{eid: (host, pid)}`` of the gone scheduler of each experiment in
            ``stopped`` (whose job processes may still run on that host).
    """

    stopped: list[tuple[int, str, int]] = field(default_factory=list)
    cleaned: list[tuple[int, str, int]] = field(default_factory=list)
    alive: list[tuple[int, str, str]] = field(default_factory=list)
    forced: dict[int, str] = field(default_factory=dict)
    resources_freed: int = 0
    schedulers: dict[int, tuple[str | None, int | None]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """True when something was (or would be) repaired."""
        return bool(self.stopped or self.cleaned or self.resources_freed)


def experiment_alive(row: dict, stale_after: float, now: float | None = None) -> str | None:
    """Why the RUNNING experiment ``row`` looks alive, or None when its process is gone."""
    now = time.time() if now is None else now
    pid, host = row.get("pid"), row.get("host")
    if host == socket.gethostname() and pid:
        if int(pid) == os.getpid():  # this process: alive if one of its threads runs it
            return "another thread of this process runs it" if runs_here(row) else None
        return f"process {pid} is running on this host" if pid_exists(int(pid)) else None
    beat = row.get("heartbeat")
    if beat is not None and now - float(beat) < stale_after:
        return (f"process {pid} on {host} sent a heartbeat {now - float(beat):.0f} s ago "
                f"(less than {stale_after:.0f} s)")
    return None


def _running_jobs(store: Store, eid: int) -> int:
    with store.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(s.job).where(
            s.job.c.eid == eid, s.job.c.status == "RUNNING")).scalar() or 0)


def repair(store: Store, *, stale_after: float = STALE_AFTER, force: bool = False,
           dry_run: bool = False) -> RepairReport:
    """Close what a crashed scheduler left open (see the module docstring).

    Args:
        store: the database.
        stale_after: seconds without heartbeat after which a process on another host counts
            as gone.
        force: repair RUNNING experiments even when their process looks alive.
        dry_run: only report.

    Returns:
        The :class:`RepairReport`.
    """
    report = RepairReport()
    now = time.time()
    e, j = s.experiment, s.job
    with store.engine.connect() as c:
        running = [dict(r._mapping) for r in c.execute(
            select(e.c.eid, e.c.name, e.c.status, e.c.pid, e.c.host, e.c.heartbeat,
                   e.c.error_msg).where(e.c.status == "RUNNING").order_by(e.c.eid))]
        leftover = c.execute(
            select(e.c.eid, e.c.name, func.count()).join(j, j.c.eid == e.c.eid)
            .where(e.c.status != "RUNNING", j.c.status == "RUNNING")
            .group_by(e.c.eid, e.c.name).order_by(e.c.eid)).all()
    for row in running:
        why = experiment_alive(row, stale_after, now)
        if why is not None and not force:
            report.alive.append((row["eid"], row["name"], why))
            continue
        eid = int(row["eid"])
        n: int | None = _running_jobs(store, eid)
        if not dry_run:
            from aup.api import db_option

            msg = (REPAIRED_2_0_MSG if store.count_unproposed_jobs(eid)
                   else REPAIRED_MSG.format(db=db_option(store), eid=eid))
            # One compare-and-set with what was judged crashed: a resume that claimed the
            # experiment since (trial 51) keeps its live run and its new attempts.
            n = store.stop_crashed(eid, row, row["error_msg"] or msg, heartbeat=why is None)
            if n is None:
                report.alive.append((eid, row["name"], CHANGED_WHY))
                continue
        if why is not None:
            report.forced[eid] = why
        report.stopped.append((eid, row["name"], n))
        report.schedulers[eid] = (row["host"], row["pid"])
    for eid, name, n in leftover:
        if not dry_run:
            n = store.interrupt_leftovers(int(eid))
            if n is None:  # resumed in between: its running attempts are its own
                report.alive.append((int(eid), name, CHANGED_WHY))
                continue
        report.cleaned.append((int(eid), name, int(n)))
    if not report.alive:
        r = s.resource
        with store.engine.begin() as c:
            if dry_run:
                report.resources_freed = int(c.execute(select(func.count()).select_from(r)
                                                       .where(r.c.status == "busy")).scalar())
            else:
                report.resources_freed = c.execute(update(r).where(r.c.status == "busy")
                                                   .values(status="free")).rowcount or 0
    return report


def count_history(store: Store) -> tuple[int, int]:
    """``(experiments, jobs)`` recorded in the database."""
    with store.engine.connect() as c:
        n_exp = c.execute(select(func.count()).select_from(s.experiment)).scalar()
        n_job = c.execute(select(func.count()).select_from(s.job)).scalar()
    return int(n_exp or 0), int(n_job or 0)


def history_owners(store: Store) -> list[str]:
    """The names of the users whose experiments the database holds, sorted (a shared
    database: ``--reset-history`` names whose history it deletes)."""
    e, u = s.experiment, s.user
    with store.engine.connect() as c:
        rows = c.execute(select(u.c.name).distinct().join(e, e.c.uid == u.c.uid)).all()
    return sorted(str(r[0]) for r in rows if r[0] is not None)


def live_experiments(store: Store, stale_after: float = STALE_AFTER) -> list[str]:
    """The RUNNING experiments whose scheduler looks alive (:func:`experiment_alive`), each as
    ``"<eid> (<name>): <why>"``: deleting the history under a live run crashed it and lost its
    records (trial 58)."""
    out = []
    for row in store.list_experiments():
        if row.get("status") == "RUNNING":
            why = experiment_alive(row, stale_after)
            if why:
                out.append(f"{row['eid']} ({row.get('name')}): {why}")
    return out


def delete_history(store: Store) -> None:
    """Drop every Auptimizer table (all history) and create them again, empty.

    Only for ``aup setup --reset-history`` after the user confirmed.
    """
    from sqlalchemy import MetaData, inspect

    from aup.store.migrate import ensure_schema

    with store.engine.begin() as c:
        names = set(inspect(c).get_table_names())
        reflected = MetaData()
        ours = {t.name for t in s.metadata.sorted_tables} | {"alembic_version"}
        reflected.reflect(c, only=[n for n in names if n in ours])
        reflected.drop_all(c)
    ensure_schema(store.engine)
