"""Enough open files for ``n_parallel`` jobs at once.

Each running job holds a few file descriptors in the scheduler (its output pipe, a pidfd or
an SSH channel, its ``.out`` file), so the usual soft limit of 1024 open files stopped jobs
from starting (``START_FAILED: Too many open files``) at about 335 jobs at once, although
``n_parallel`` may be up to 10,000 and the hard limit allowed more (trial 66). Before the
first job the scheduler raises its soft limit towards the hard one, as Ray does; where the
hard limit itself is too low it says so at load (``aup run --check`` too).
"""

from __future__ import annotations

#: Descriptors the scheduler keeps for itself (database, logs, listening sockets...).
BASE_FILES = 64
#: Descriptors per running job, with some room (3 were counted per local job).
FILES_PER_JOB = 4


def files_needed(n_parallel: int) -> int:
    """Open files a scheduler running ``n_parallel`` jobs at once may need."""
    return BASE_FILES + FILES_PER_JOB * n_parallel


def ensure_open_files(n_parallel: int, *, raise_limit: bool = True) -> str | None:
    """Raise this process's soft limit of open files (``RLIMIT_NOFILE``) to what
    ``n_parallel`` jobs need, up to the hard limit (only with ``raise_limit``; never lowered).

    Args:
        n_parallel: the number of jobs at once.
        raise_limit: False to only check (``aup run --check``).

    Returns:
        A warning when the limit stays below the need, naming ``n_parallel``, the limit and
        the fix; None when it suffices (or the platform has no such limit).
    """
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    need = files_needed(n_parallel)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    if soft == unlimited or soft >= need:
        return None
    reachable = need if hard == unlimited else min(need, hard)
    if raise_limit and reachable > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (reachable, hard))
            soft = reachable
        except (ValueError, OSError):
            pass
    limit = soft if raise_limit else reachable
    if limit >= need:
        return None
    fits = (limit - BASE_FILES) // FILES_PER_JOB
    beyond = (f"jobs beyond about {fits} at once may fail" if fits >= 1 else
              "jobs may fail")
    lower = f"set n_parallel to {fits} or less, or " if fits >= 1 else ""
    return (f"n_parallel is {n_parallel}, which needs about {need} open files, but this "
            f"process may open only {limit} (ulimit -n; the hard limit is "
            f"{'unlimited' if hard == unlimited else hard}): {beyond} to start with 'Too many "
            f"open files'. Fix: {lower}raise the limit (ulimit -n, ulimit -Hn, or nofile in "
            "/etc/security/limits.conf)")
