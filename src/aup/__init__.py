"""Auptimizer: hyperparameter optimization for unchanged training scripts.

Inside a job, ``import aup`` gives the client helpers (standard library only, fast):
:func:`print_result`, :class:`BasicConfig`, :func:`aup_args`, :func:`aup_save_model`,
:func:`aup_flags`, :func:`score_of`. The scheduler side (:func:`run_experiment`, :func:`resume_experiment`,
:func:`load_experiment`) is imported lazily on first use.
"""

from __future__ import annotations

from aup.client import (
    BasicConfig,
    aup_args,
    aup_flags,
    aup_save_model,
    print_result,
    score_of,
)

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~4 ms at import
if TYPE_CHECKING:
    from typing import Any

__version__ = "3.0.0.dev0"

__all__ = ["BasicConfig", "aup_args", "aup_flags", "aup_save_model", "load_experiment",
           "print_result", "resume_experiment", "run_experiment", "score_of", "__version__"]


def run_experiment(path: Any, *, db: Any = None, observer: Any = None,
                   user: str | None = None) -> Any:
    """Run the experiment described by an experiment.json file, as ``aup run`` does
    (configuration warnings are logged; Ctrl-C stops it resumably, then re-raises
    KeyboardInterrupt).

    Args:
        path: the experiment file (str or path).
        db: a SQLAlchemy URL or a SQLite file (str or path; default: ``storage`` in the
            file, else ``.aup/sqlite3.db``).
        observer: an :class:`aup.experiment.Observer` for progress notifications.
        user: the user name recorded (default: env.ini's, else ``$USER``).

    Returns:
        :class:`aup.experiment.ExperimentResult`.

    Raises:
        aup.errors.ConfigError: the file is invalid (nothing was started or written).
        aup.errors.UsageError: refused before any job (nothing is left behind).
    """
    from aup.api import run_experiment as _run

    return _run(path, db=db, observer=observer, user=user)


def resume_experiment(experiment: int | str, *, db: Any = None, observer: Any = None,
                      force: bool = False) -> Any:
    """Continue a stopped, failed or crashed experiment, as ``aup resume`` does: finished jobs
    are kept, jobs left running by a crash run again, the proposer goes on from its saved
    state, and the edits of experiment.json that a resume takes (``n_parallel``,
    ``job_failure``, ``job_timeout``, the host/GPU list of ``resource_args``) are used; other
    edits are named in a warning and the recorded values kept. Ctrl-C stops it resumably
    again, then re-raises KeyboardInterrupt.

    Args:
        experiment: the id, or the name (the newest experiment of that name).
        db: a SQLAlchemy URL or a SQLite file (str or path; default as ``aup resume``).
        observer: an :class:`aup.experiment.Observer` for progress notifications.
        force: resume although the record says its scheduler still runs (only when that
            process is gone, as ``aup resume --force``).

    Returns:
        :class:`aup.experiment.ExperimentResult`.

    Raises:
        aup.errors.UsageError: no database at ``db``, no such experiment, the experiment
            already finished, or it is still running.
        aup.errors.ConfigError: the recorded configuration no longer validates (e.g. the
            script moved).
    """
    from aup.api import resume_experiment as _resume

    return _resume(experiment, db=db, observer=observer, force=force)


def load_experiment(experiment: int | str, *, db: Any = None) -> Any:
    """Load a recorded experiment (by id or name) for analysis. It only reads: a database
    this process may not write (a colleague's, read-only) opens too.

    Args:
        experiment: the id, or the name (the newest experiment of that name).
        db: a SQLAlchemy URL or a SQLite file (str or path; default as ``aup list``).

    Returns:
        :class:`aup.api.ExperimentRecord` with ``jobs()``, ``best()`` and ``to_dataframe()``.

    Raises:
        aup.errors.UsageError: no database at ``db`` (nothing is created), or no such
            experiment.
    """
    from aup.api import load_experiment as _load

    return _load(experiment, db=db)
