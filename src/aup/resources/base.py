"""The resource manager interface: where job attempts run.

A resource manager owns a fixed list of :class:`Slot` objects (CPU slots, GPU ids, SSH hosts,
EC2 instances, Ray capacity). The experiment loop picks a free slot and calls
:meth:`ResourceManager.start`; the manager runs the attempt without blocking and reports back
through the event queue it was given:

* :class:`ResultEvent` for every valid ``#Auptimizer:`` line, while the attempt runs;
* exactly one :class:`EndEvent` when the attempt is over, however it ended (also when it could not
  start), carrying an :class:`~aup.job.AttemptOutcome`.

:meth:`ResourceManager.stop` asks a running attempt to stop (its whole process group: SIGTERM,
then SIGKILL after ``kill_grace`` seconds); its end still arrives as an EndEvent. Managers never
touch the database and never mutate ``os.environ``: each attempt gets its own environment copy.
"""

from __future__ import annotations

import queue
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from aup.errors import Problem
from aup.job import AttemptOutcome, StopReason

if TYPE_CHECKING:
    from aup.config import ExperimentConfig


class ResourceOptions(BaseModel):
    """``resource_args`` keys specific to a resource. Subclass per resource.

    Attributes:
        kill_grace: seconds (>= 0) between SIGTERM and SIGKILL when an attempt is stopped.
    """

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    kill_grace: float = Field(default=5.0, ge=0)


@dataclass(frozen=True)
class Slot:
    """One place a job can run.

    Attributes:
        id: unique within the manager, e.g. ``"cpu:0"`` or ``"gpu:1/0"``.
        kind: the resource type (``cpu``, ``gpu``, ``node``...), as stored in ``resource.type``.
        name: what the slot runs on (``localhost``, a GPU id, ``user@host:port``), as stored in
            ``resource.name``.
    """

    id: str
    kind: str
    name: str


@dataclass
class AttemptSpec:
    """Everything needed to run one attempt.

    Attributes:
        job_id: the job id (``jid``).
        attempt: 0-based attempt number of this job.
        job_config: the JSON object written to the job's config file.
        command: argv prefix of the script; the config file path is appended.
        workingdir: directory the job runs in.
        config_path: where the job config file goes (``<workingdir>/jobs/<jid>.json``).
        output_path: where the output goes (``<workingdir>/jobs/<jid>.<attempt>.out``).
        env: variables added to the job's own copy of the environment.
        prescript: shell code run before the script (same shell), may be empty.
        postscript: shell code run after the script, may be empty; the job's exit code is kept.
        n_labels: number of ``multi_res_labels`` (result lines must carry 1 + n_labels values).
        script: the job script on this machine, or None; resources that run it from this
            machine check before each start that it is still there (deleted or moved during
            a run, every later job would otherwise fail as an ordinary job failure).
    """

    job_id: int
    attempt: int
    job_config: dict[str, Any]
    command: list[str]
    workingdir: Path
    config_path: Path
    output_path: Path
    env: dict[str, str] = field(default_factory=dict)
    prescript: str = ""
    postscript: str = ""
    n_labels: int = 0
    script: Path | None = None

    @property
    def key(self) -> tuple[int, int]:
        """``(job_id, attempt)``, which identifies the attempt in events."""
        return (self.job_id, self.attempt)

    @property
    def label(self) -> str:
        """``job <jid> attempt <n>`` for log messages."""
        return f"job {self.job_id} attempt {self.attempt}"


@dataclass(frozen=True)
class ResultEvent:
    """A valid result line of a running attempt.

    Attributes:
        job_id, attempt: the attempt.
        values: the numbers of the line (score first).
        time: Unix time (seconds) the line was read.
    """

    job_id: int
    attempt: int
    values: tuple[float, ...]
    time: float


@dataclass(frozen=True)
class EndEvent:
    """The end of an attempt (exactly one per started attempt)."""

    job_id: int
    attempt: int
    outcome: AttemptOutcome
    time: float


Event = ResultEvent | EndEvent


class RunningAttempt(Protocol):
    """What :class:`RunningAttempts` needs of one attempt object (a local process, an SSH
    channel, a Ray task...)."""

    spec: AttemptSpec

    def start(self) -> None:
        """Start the attempt without blocking."""

    def stop(self, reason: StopReason) -> None:
        """Ask the attempt to stop; its EndEvent follows."""


A = TypeVar("A", bound=RunningAttempt)


class ThreadedAttempt(ABC):
    """Base of an attempt followed by a daemon thread of its own (a remote job, a Ray task).

    :meth:`start` runs :meth:`_run` in a thread named ``<thread_prefix>-<jid>.<attempt>``;
    ``_run`` must end by queuing the attempt's EndEvent.

    Args:
        manager: the resource manager running the attempt.
        spec: the attempt.

    Attributes:
        stopped: why :meth:`stop` was asked, or None; set under ``_lock``.
    """

    #: Prefix of the thread's name, e.g. ``aup-ssh``.
    thread_prefix: ClassVar[str] = "aup"

    def __init__(self, manager: Any, spec: AttemptSpec):
        self.manager = manager
        self.spec = spec
        self.stopped: StopReason | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the attempt's thread (never blocks)."""
        threading.Thread(target=self._run, daemon=True,
                         name=f"{self.thread_prefix}-{self.spec.job_id}.{self.spec.attempt}"
                         ).start()

    @abstractmethod
    def _run(self) -> None:
        """Run the attempt to its end (in the attempt's thread)."""

    @abstractmethod
    def stop(self, reason: StopReason) -> None:
        """Ask the attempt to stop; its EndEvent follows."""


class RunningAttempts(Generic[A]):
    """The attempts a manager is running, by ``(job_id, attempt)``, behind one lock.

    A manager that runs each attempt as an object of its own (with ``spec``, ``start()`` and
    ``stop(reason)``) keeps one of these: :meth:`start` registers the object before starting it,
    the object calls :meth:`ended` once its EndEvent is queued, and :meth:`stop`,
    :meth:`stop_all` and :meth:`wait_empty` serve the manager's ``stop`` and ``close``. Safe to
    use from the loop's thread and the attempts' own threads at once.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, int], A] = {}
        self._lock = threading.Lock()

    def start(self, att: A) -> None:
        """Register ``att`` under ``att.spec.key``, then call ``att.start()``."""
        with self._lock:
            self._by_key[att.spec.key] = att
        att.start()

    def ended(self, att: A) -> None:
        """Forget ``att`` (called by the attempt after its EndEvent was queued)."""
        with self._lock:
            self._by_key.pop(att.spec.key, None)

    def get(self, job_id: int, attempt: int) -> A | None:
        """The running attempt ``(job_id, attempt)``, or None when it is not running."""
        with self._lock:
            return self._by_key.get((job_id, attempt))

    def __contains__(self, key: object) -> bool:
        """True while the attempt with ``key`` (``(job_id, attempt)``) is registered."""
        with self._lock:
            return key in self._by_key

    def stop(self, job_id: int, attempt: int, reason: StopReason) -> None:
        """``stop(reason)`` the attempt ``(job_id, attempt)``; unknown attempts are ignored."""
        att = self.get(job_id, attempt)
        if att is not None:
            att.stop(reason)

    def stop_all(self, reason: StopReason = StopReason.EXPERIMENT_STOP) -> int:
        """Ask every running attempt to stop (outside the lock).

        Returns:
            int: how many attempts were asked.
        """
        with self._lock:
            atts = list(self._by_key.values())
        for a in atts:
            a.stop(reason)
        return len(atts)

    def wait_empty(self, timeout: float, poll: float = 0.05) -> bool:
        """Wait until no attempt is registered, at most ``timeout`` seconds.

        Returns:
            bool: True when none is left.
        """
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._by_key:
                    return True
            if time.monotonic() >= end:
                return False
            time.sleep(poll)


class ResourceManager(ABC):
    """Base class of every resource.

    Args:
        config: the experiment configuration (``resource_options`` holds this resource's
            validated ``resource_args``).
        events: queue the manager puts :class:`ResultEvent`/:class:`EndEvent` objects into.
        env_file: the environment settings of ``aup setup`` (may be None), for slot lists.
    """

    kind: ClassVar[str] = ""
    #: Where a resource with a fixed list of slots gets them, for messages ("" when
    #: ``n_parallel`` itself sets the slots).
    slot_source: ClassVar[str] = ""
    Options: ClassVar[type[ResourceOptions]] = ResourceOptions
    #: True when the script and working directory are local files checked at load.
    local_files: ClassVar[bool] = True
    #: False when aup never sees the job's output (passive: the user runs the job), so no
    #: output file is recorded for its attempts.
    keeps_output: ClassVar[bool] = True
    #: ``resource_args`` keys that ``aup resume`` takes from an edited experiment file: where
    #: the jobs run (hosts, GPU ids), not what they compute (see ``aup.experiment``).
    resume_args: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ExperimentConfig, events: queue.Queue, env_file: Any = None):
        self.config = config
        self.options = config.resource_options
        self.events = events
        self.env_file = env_file

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> list[Problem]:
        """Problems with this resource's settings, found at load (before any job). None by
        default."""
        return []

    @property
    @abstractmethod
    def slots(self) -> list[Slot]:
        """Every slot of this manager (fixed for the manager's life)."""

    @property
    def jobs_dir(self) -> Path:
        """The LOCAL folder of job config files and output copies.

        ``<workingdir>/jobs`` for local resources; for remote ones (``local_files`` False, where
        ``workingdir`` is a remote path) ``jobs/`` next to the experiment file.
        """
        if self.local_files:
            return self.config.workingdir_path / "jobs"
        return self.config.base_dir / "jobs"

    def attach(self, store: Any, eid: int) -> None:  # noqa: B027
        """Called once by the experiment loop with its store and experiment id (the passive
        resource reads values sent with ``aup tell`` from it). Nothing by default."""

    def lost_copies_gone_after(self) -> float:
        """Seconds after its scheduler died by which the processes of the attempts it ran are
        surely gone, so that a resume can run those jobs again without an old copy beside
        them. 0 (the default): nothing to wait for (local jobs are killed by the resume
        itself; Ray ends a dead driver's tasks)."""
        return 0.0

    def available(self, slot: Slot) -> bool:
        """False while ``slot`` is known to be unusable (an SSH node that does not answer); the
        loop then starts new attempts elsewhere. True by default."""
        return True

    def check(self) -> None:  # noqa: B027
        """Readiness checks that connect to nothing and start nothing (hosts or GPU ids
        given at all...), run by ``aup run --check`` and at the start of :meth:`prepare`.
        Raises :class:`~aup.errors.AupError` with a clear message on failure."""

    def prepare(self) -> None:  # noqa: B027
        """Connect, check hosts, start instances... before the first job. Raises
        :class:`~aup.errors.AupError` with a clear message (naming the host or id) on failure.
        Implementations call :meth:`check` first."""

    @abstractmethod
    def start(self, spec: AttemptSpec, slot: Slot) -> None:
        """Start an attempt on a free slot without blocking. Errors become an EndEvent with
        ``START_FAILED``, never an exception."""

    @abstractmethod
    def stop(self, job_id: int, attempt: int, reason: StopReason) -> None:
        """Ask a running attempt to stop; its EndEvent follows. Unknown attempts are ignored."""

    def kill(self, job_id: int, attempt: int) -> None:
        """Kill an attempt at once, without the grace period (a second Ctrl-C). Its EndEvent
        follows. Default: the same as :meth:`stop` with ``EXPERIMENT_STOP``."""
        self.stop(job_id, attempt, StopReason.EXPERIMENT_STOP)

    def close(self) -> None:  # noqa: B027
        """Release everything (called once, after the last attempt ended)."""
