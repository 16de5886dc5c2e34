"""The experiments that this process is running now, in any of its threads.

A RUNNING experiment whose recorded scheduler pid is this process's own pid is one of two
things: a run going on in another thread of this process (``aup.run_experiment`` in a
notebook's background thread, then ``aup.resume_experiment`` in the next cell), or the record
of an earlier process that happened to have the same pid (a container restarted after a crash:
its first process gets the same pid again). Only the process itself can tell the two apart, by
remembering which experiments it runs: this registry. The liveness checks
(:func:`aup.experiment.scheduler_gone`, :func:`aup.store.admin.experiment_alive`) ask it
instead of taking the own pid for dead, which let a resume in a notebook kill the jobs of the
run still going on in the background thread and lose their results (trial 64).

The registry lives in one object per process (:data:`RUNS`); experiments are keyed by id and
name, which together single out the run (an id alone could come from another database).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RunRegistry:
    """A thread-safe set of the experiments (id, name) this process runs now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[tuple[int, str], int] = {}

    @contextmanager
    def running(self, eid: int, name: str) -> Iterator[None]:
        """Hold experiment ``eid`` (named ``name``) as running in this process for the
        ``with`` block."""
        key = (int(eid), str(name))
        with self._lock:
            self._runs[key] = self._runs.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._runs.pop(key) - 1
                if left:
                    self._runs[key] = left

    def runs(self, eid: int, name: str) -> bool:
        """True while a thread of this process runs experiment ``eid`` named ``name``."""
        with self._lock:
            return (int(eid), str(name)) in self._runs


#: The registry of this process.
RUNS = RunRegistry()


def runs_here(row: dict) -> bool:
    """True when a thread of this process runs the experiment of the database ``row`` now."""
    eid, name = row.get("eid"), row.get("name")
    return eid is not None and name is not None and RUNS.runs(int(eid), str(name))
