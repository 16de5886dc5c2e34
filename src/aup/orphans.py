"""Find and kill job processes left behind by a scheduler that died (``kill -9``, a crash).

Every local job gets ``AUP_EXPERIMENT_ID`` and ``AUP_SCHEDULER_PID`` in its environment, and its
children inherit them. When an experiment is resumed on the host where its dead scheduler ran,
the processes that still carry both values are the orphans of the lost attempts: they are killed
(SIGKILL) before the lost jobs run again, so that they neither compete with the new attempts for
CPUs or GPUs nor write into the same working directory. Linux only (``/proc``); elsewhere
nothing is done.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

log = logging.getLogger(__name__)

ENV_EXPERIMENT = "AUP_EXPERIMENT_ID"
ENV_SCHEDULER = "AUP_SCHEDULER_PID"


def job_markers(eid: int, scheduler_pid: int | None = None) -> dict[str, str]:
    """The environment variables that mark a job of experiment ``eid`` run by this process."""
    return {ENV_EXPERIMENT: str(eid), ENV_SCHEDULER: str(scheduler_pid or os.getpid())}


def pid_exists(pid: int, proc: Path = Path("/proc")) -> bool:
    """True when a live process ``pid`` exists on this host (also one of another user).

    Sends signal 0, which checks without delivering anything. A zombie (a process that ended
    and that its parent has not reaped yet, e.g. an ``aup run`` killed with ``kill -9`` under a
    notebook) counts as gone: it runs nothing (read from ``/proc/<pid>/stat`` where it exists).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = (proc / str(pid) / "stat").read_bytes()
    except OSError:
        return True  # no /proc (not Linux), or it just ended: signal 0 said it exists
    # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")"
    return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] != b"Z"


def find_orphans(eid: int, scheduler_pid: int, proc: Path = Path("/proc")) -> list[int]:
    """Pids of live processes marked as jobs of ``eid`` started by ``scheduler_pid``.

    Processes of other users (unreadable environment) are skipped.
    """
    wanted = {f"{k}={v}".encode() for k, v in job_markers(eid, scheduler_pid).items()}
    me = os.getpid()
    out = []
    try:
        entries = list(proc.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if wanted <= set(env.split(b"\0")):
            out.append(int(entry.name))
    return out


def kill_orphans(eid: int, scheduler_pid: int | None) -> int:
    """SIGKILL the orphans of ``eid`` left by the dead ``scheduler_pid``; returns how many.

    Never raises: a process that is gone or not ours is skipped.
    """
    if not scheduler_pid or not Path("/proc/self/environ").exists():
        return 0
    pids = find_orphans(eid, int(scheduler_pid))
    n = 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            n += 1
        except (ProcessLookupError, PermissionError):
            continue
    if n:
        # (after a crash: its jobs; after a clean stop of a node experiment: the watchdogs
        # that wait kill_grace seconds before ending, trial 49)
        log.warning("experiment %d: killed %d process(es) left running by its earlier "
                    "scheduler (pid %s), which has ended", eid, n, scheduler_pid)
    return n
