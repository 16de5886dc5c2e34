"""The Hyperband / successive-halving schedule, shared by ``hyperband`` and ``bohb``.

Follows Li, Jamieson, DeSalvo, Rostamizadeh and Talwalkar 2018, "Hyperband: A Novel
Bandit-Based Approach to Hyperparameter Optimization" (JMLR 18), Algorithm 1:

* ``s_max = floor(log_eta(R))`` where ``R`` is the ratio of the largest to the smallest budget,
  computed **exactly** in integer arithmetic (a loop, no floating-point ``log``: ``R = 243,
  eta = 3`` gives ``s_max = 5`` and six brackets, ``R = 1000, eta = 10`` gives four).
* Bracket ``s`` (from ``s_max`` down to 0) starts ``n = ceil((s_max + 1) * eta^s / (s + 1))``
  configurations; rung ``i`` (``0 <= i <= s``) runs ``n_i = floor(n / eta^i)`` of them, each
  with budget ``max_budget * eta^(i - s)``; the best ``n_{i+1}`` of rung ``i`` (lowest loss)
  go on to rung ``i + 1``.

BOHB (Falkner, Klein and Hutter 2018) cycles through the same brackets ``n_iterations`` times
in total; :class:`HyperbandSchedule` supports any number of brackets for that reason.

:class:`SuccessiveHalving` runs a schedule: it hands out jobs one at a time (new
configurations come from a caller-supplied sampler, so the configurations of rung 0 are drawn
lazily, when the job is handed out, which lets BOHB use every result available so far), collects
losses, and promotes. A rung's jobs can all run at once; the next rung of a bracket starts once
every job of the rung has reported. When every open bracket waits for results, the next bracket
is opened, so parallel slots stay busy; with one job at a time the order is exactly the paper's.
Failed jobs rank after every successful one (ties by hand-out order) and are promoted only when
a rung has too few successes, so rung sizes, and the total number of jobs, never change.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from aup.space import config_key

#: Relative tolerance when comparing budgets given as floats (``min_budget * eta^s <= max``).
BUDGET_RTOL = 1e-9
#: Most jobs a schedule may plan. A larger plan comes from a mistyped budget range, never
#: from a plan anyone can run; it is refused at load (and the schedule is never built).
MAX_SCHEDULED_JOBS = 10_000_000


def integer_log(ratio: int, eta: int) -> int:
    """Largest integer ``s >= 0`` with ``eta**s <= ratio``, in exact integer arithmetic.

    Args:
        ratio: an integer ``>= 1`` (Hyperband's ``R``).
        eta: an integer ``>= 2``.

    Returns:
        ``floor(log_eta(ratio))``.

    Raises:
        ValueError: ``ratio < 1`` or ``eta < 2``.
    """
    if ratio < 1 or eta < 2:
        raise ValueError(f"need ratio >= 1 and eta >= 2, got ratio={ratio}, eta={eta}")
    s, power = 0, eta
    while power <= ratio:
        s += 1
        power *= eta
    return s


def budget_levels(min_budget: float, max_budget: float, eta: int) -> int:
    """Largest ``s`` with ``min_budget * eta**s <= max_budget`` (relative tolerance
    :data:`BUDGET_RTOL`, so ``min 1/81, max 1`` gives 4 despite rounding).

    Raises:
        ValueError: ``min_budget <= 0``, ``min_budget > max_budget`` or ``eta < 2``.
    """
    if not 0 < min_budget <= max_budget or eta < 2:
        raise ValueError(f"need 0 < min_budget <= max_budget and eta >= 2, got "
                         f"{min_budget}, {max_budget}, {eta}")
    s, b = 0, min_budget * eta
    while b <= max_budget * (1 + BUDGET_RTOL):
        s += 1
        b *= eta
    return s


def rung_sizes(eta: int, s_max: int, s: int, skip_last: int = 0) -> tuple[int, ...]:
    """Jobs per rung of bracket ``s`` (Li et al. 2018): ``n = ceil((s_max + 1) eta^s / (s + 1))``
    configurations, ``floor(n / eta^i)`` in rung ``i``; the last ``skip_last`` rungs dropped."""
    n = -(-(s_max + 1) * eta ** s // (s + 1))  # exact ceil
    return tuple(n // eta ** i for i in range(s + 1 - skip_last))


def first_bracket_too_large(eta: int, s_max: int) -> bool:
    """True when the most aggressive bracket alone starts more than
    :data:`MAX_SCHEDULED_JOBS` configurations (``eta^s_max`` of them)."""
    return eta ** min(s_max, 64) > MAX_SCHEDULED_JOBS


def schedule_total(eta: int, s_max: int, n_brackets: int | None = None,
                   skip_last: int = 0) -> int:
    """Number of jobs of ``HyperbandSchedule(eta, s_max, n_brackets, skip_last)``, computed
    without building it (at load, before a mistyped budget range builds billions of rungs).

    Returns:
        the exact total, or any number above :data:`MAX_SCHEDULED_JOBS` once it is certain
        that the total exceeds it (the first bracket alone starts ``eta^s_max``
        configurations).
    """
    if first_bracket_too_large(eta, s_max):
        return MAX_SCHEDULED_JOBS + 1
    cycle = [sum(rung_sizes(eta, s_max, s_max - k, skip_last)) for k in range(s_max + 1)]
    count = s_max + 1 if n_brackets is None else n_brackets
    full, rest = divmod(count, s_max + 1)
    return full * sum(cycle) + sum(cycle[:rest])


@dataclass(frozen=True)
class Bracket:
    """One bracket of the schedule (static).

    Attributes:
        index: position in run order (0, 1, ...); the ``bracket`` recorded with each job.
        s: the bracket's aggressiveness; rung ``i`` has budget ``max_budget * eta^(i - s)``.
        sizes: number of jobs of each rung (non-increasing, all ``>= 1``).
    """

    index: int
    s: int
    sizes: tuple[int, ...]


class HyperbandSchedule:
    """The static Hyperband schedule: brackets, rung sizes and budget fractions.

    Args:
        eta: the halving rate, an integer ``>= 2``.
        s_max: the largest bracket (number of budget levels minus one), ``>= 0``.
        n_brackets: number of brackets to run; default ``s_max + 1`` (one Hyperband
            iteration). Bracket ``k`` has ``s = s_max - (k mod (s_max + 1))``.
        skip_last: drop the last ``skip_last`` rungs of every bracket (Auptimizer 2.0's
            option: the largest budgets are not run); brackets left without a rung are
            dropped. ``0 <= skip_last <= s_max``.

    Raises:
        ValueError: an argument is out of range.
    """

    def __init__(self, eta: int, s_max: int, n_brackets: int | None = None,
                 skip_last: int = 0):
        if eta < 2 or s_max < 0 or not 0 <= skip_last <= s_max:
            raise ValueError(f"bad schedule: eta={eta}, s_max={s_max}, skip_last={skip_last}")
        if n_brackets is not None and n_brackets < 1:
            raise ValueError(f"n_brackets must be >= 1, got {n_brackets}")
        self.eta = int(eta)
        self.s_max = int(s_max)
        self.skip_last = int(skip_last)
        count = self.s_max + 1 if n_brackets is None else int(n_brackets)
        brackets = []
        for k in range(count):
            s = self.s_max - (k % (self.s_max + 1))
            sizes = rung_sizes(self.eta, self.s_max, s, self.skip_last)
            if sizes:
                brackets.append(Bracket(len(brackets), s, sizes))
        self.brackets: tuple[Bracket, ...] = tuple(brackets)
        self.total = sum(sum(b.sizes) for b in self.brackets)

    def fraction(self, s: int, rung: int) -> Fraction:
        """Budget of rung ``rung`` of a bracket ``s`` as an exact fraction of the largest
        budget: ``eta^(rung - s)``."""
        return Fraction(self.eta ** rung, self.eta ** s)

    def __repr__(self) -> str:
        return (f"HyperbandSchedule(eta={self.eta}, s_max={self.s_max}, "
                f"brackets={[b.sizes for b in self.brackets]})")


@dataclass(frozen=True)
class Job:
    """A job handed out by :class:`SuccessiveHalving`.

    Attributes:
        params: the configuration.
        bracket: bracket index (run order).
        s: the bracket's ``s``.
        rung: rung index within the bracket (0 = the smallest budget of that bracket).
        level: budget level ``s_max - s + rung`` (0 = the smallest budget overall).
        fraction: budget as an exact fraction of the largest budget.
    """

    params: dict[str, Any]
    bracket: int
    s: int
    rung: int
    level: int
    fraction: Fraction


#: Status of an entry of a rung.
_TODO, _RUNNING, _DONE, _FAILED = 0, 1, 2, 3

#: A sampler gets (bracket, the keys (:func:`aup.space.config_key`) of the configurations
#: already in that bracket's first rung) and returns a new configuration.
Sampler = Callable[[Bracket, set[str]], dict[str, Any]]


class SuccessiveHalving:
    """Runs a :class:`HyperbandSchedule`: hands out jobs, collects losses, promotes.

    State is plain JSON (:meth:`state_dict`); only open brackets are kept, so it stays small.

    Args:
        schedule: the static schedule.
    """

    def __init__(self, schedule: HyperbandSchedule):
        self.schedule = schedule
        # Open brackets: {"k", "rung", "next" (entries handed out), "out" (handed out, not yet
        # reported), "entries": [[params, pid, loss, status], ...]}.
        self.open: list[dict[str, Any]] = []
        self._keys: dict[int, set[str]] = {}  # bracket k -> keys of its first rung (derived)
        self.next_bracket = 0
        self.n_handed = 0
        self.where: dict[int, list[int]] = {}  # pid -> [bracket k, rung, position]

    @property
    def exhausted(self) -> bool:
        """True when every job of the schedule has been handed out."""
        return self.n_handed >= self.schedule.total

    @property
    def done(self) -> bool:
        """True when every job has been handed out and reported."""
        return self.exhausted and not self.where

    def next_job(self, pid: int, sample: Sampler) -> Job | None:
        """Hand out the next job, or None when every open bracket waits for results and no
        bracket is left to open.

        Args:
            pid: the id of the proposal this job becomes (reported back with :meth:`report`).
            sample: called as ``sample(bracket, keys)`` to draw a new configuration for the
                first rung of ``bracket``; ``keys`` are the keys of the configurations already
                in that rung (to avoid duplicates).

        Returns:
            The job, or None.
        """
        for b in self.open:
            job = self._take(b, pid, sample)
            if job is not None:
                return job
        if self.next_bracket < len(self.schedule.brackets):
            b = {"k": self.next_bracket, "rung": 0, "next": 0, "out": 0, "entries": []}
            self.next_bracket += 1
            self.open.append(b)
            return self._take(b, pid, sample)
        return None

    def _take(self, b: dict[str, Any], pid: int, sample: Sampler) -> Job | None:
        bracket = self.schedule.brackets[b["k"]]
        rung, entries, pos = b["rung"], b["entries"], b["next"]
        if pos >= bracket.sizes[rung]:
            return None
        if pos == len(entries):  # first rung: draw the configuration now
            keys = self._first_rung_keys(b)
            # Nor one running at this budget in another open bracket (n_parallel > 1): the
            # same job twice at once.
            running = self._running_keys(self.schedule.s_max - bracket.s, b)
            params = sample(bracket, keys | running if running else keys)
            keys.add(config_key(params))
            entries.append([params, None, None, _TODO])
        b["next"] += 1
        b["out"] += 1
        entry = entries[pos]
        entry[1], entry[3] = pid, _RUNNING
        self.where[pid] = [b["k"], rung, pos]
        self.n_handed += 1
        return Job(entry[0], b["k"], bracket.s, rung, self.schedule.s_max - bracket.s + rung,
                   self.schedule.fraction(bracket.s, rung))

    def report(self, pid: int, loss: float | None) -> Job | None:
        """Record the loss of job ``pid`` (None: failed) and promote when its rung is complete.

        Args:
            pid: a proposal id given to :meth:`next_job`; unknown ids are ignored.
            loss: the job's loss (lower is better), or None when it failed.

        Returns:
            The reported job (for model-based samplers to learn from), or None for an unknown
            id.
        """
        loc = self.where.pop(pid, None)
        if loc is None:
            return None
        k, rung, pos = loc
        b = next(x for x in self.open if x["k"] == k)
        bracket = self.schedule.brackets[k]
        entry = b["entries"][pos]
        entry[2], entry[3] = loss, (_DONE if loss is not None else _FAILED)
        b["out"] -= 1
        job = Job(entry[0], k, bracket.s, rung, self.schedule.s_max - bracket.s + rung,
                  self.schedule.fraction(bracket.s, rung))
        self._maybe_promote(b, bracket)
        return job

    def _maybe_promote(self, b: dict[str, Any], bracket: Bracket) -> None:
        entries = b["entries"]
        if b["next"] < bracket.sizes[b["rung"]] or b["out"] > 0:
            return
        if b["rung"] + 1 >= len(bracket.sizes):
            self.open.remove(b)
            self._keys.pop(b["k"], None)
            return
        keep = bracket.sizes[b["rung"] + 1]
        order = sorted(range(len(entries)), key=lambda i: (
            entries[i][3] == _FAILED, entries[i][2] if entries[i][3] == _DONE else math.inf, i))
        b["rung"] += 1
        b["next"] = 0
        self._keys.pop(b["k"], None)
        b["entries"] = [[entries[i][0], None, None, _TODO] for i in order[:keep]]

    def _running_keys(self, level: int, but: dict[str, Any]) -> set[str]:
        """Keys of the configurations running at budget level ``level`` in the open brackets
        other than ``but``."""
        out: set[str] = set()
        for b in self.open:
            if b is but or b["out"] == 0:
                continue
            if self.schedule.s_max - self.schedule.brackets[b["k"]].s + b["rung"] == level:
                out.update(config_key(e[0]) for e in b["entries"] if e[3] == _RUNNING)
        return out

    def _first_rung_keys(self, b: dict[str, Any]) -> set[str]:
        keys = self._keys.get(b["k"])
        if keys is None:
            keys = self._keys[b["k"]] = {config_key(e[0]) for e in b["entries"]}
        return keys

    def state_dict(self) -> dict[str, Any]:
        """The running state as plain JSON data (open brackets only)."""
        return {"open": [{**b, "entries": [list(e) for e in b["entries"]]} for b in self.open],
                "next_bracket": self.next_bracket, "n_handed": self.n_handed,
                "where": [[pid, *loc] for pid, loc in self.where.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (on a runner built with the same schedule)."""
        self.open = [{"k": int(b["k"]), "rung": int(b["rung"]), "next": int(b["next"]),
                      "out": int(b["out"]), "entries": [list(e) for e in b["entries"]]}
                     for b in state["open"]]
        self._keys = {}
        self.next_bracket = int(state["next_bracket"])
        self.n_handed = int(state["n_handed"])
        self.where = {int(w[0]): [int(w[1]), int(w[2]), int(w[3])] for w in state["where"]}
