"""The proposer (search algorithm) interface shared by every algorithm.

A proposer proposes configurations with :meth:`Proposer.ask` and learns their losses with
:meth:`Proposer.tell`. Proposers always **minimize**: the experiment loop turns scores into
losses (``-score`` for ``target: max``) in exactly one place. Several ``ask()`` calls without a
``tell()`` must work (``n_parallel > 1``) and must not hand out a configuration that is still
running. ``ask()`` returns None when nothing can be proposed until a running job reports;
:attr:`Proposer.finished` is True when the proposer will never propose again.

Every proposer can pause and resume: :meth:`state_dict` returns plain JSON data (stored in the
database after every ask and tell) and :meth:`load_state_dict` restores it, after which the
proposer continues exactly as if it had not been interrupted. Proposals still pending at that
point are told later through the Proposal objects the loop rebuilds with
:meth:`Proposal.from_dict`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from aup.errors import Problem
from aup.space import SearchSpace, config_key


class ProposerOptions(BaseModel):
    """Top-level experiment.json keys every proposer reads. Subclass to add a proposer's own.

    Attributes:
        n_samples: number of jobs to run (for proposers with a fixed budget of jobs).
        random_seed: seed of the proposer's random number generator (>= 0: numpy's seeds are
            non-negative).
        points_to_evaluate: configurations run first, in order, before the proposer's own
            (:mod:`aup.proposers.warm_start`; checked against the space at load).
    """

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    n_samples: int = Field(default=10, ge=1)
    random_seed: int = Field(default=0, ge=0)
    points_to_evaluate: list[Any] | None = None


@dataclass
class Proposal:
    """One configuration handed out by a proposer.

    Attributes:
        id: unique, increasing id within the proposer (0, 1, ...).
        params: parameter name -> plain JSON value (never numpy scalars).
        budget: for multi-fidelity proposers, the budget (reaches the job as ``n_iterations``).
        bracket: multi-fidelity bracket index, if any.
        rung: multi-fidelity rung index within the bracket, if any.
        extra: more keys for the job config (e.g. hyperopt's ``tid``).
    """

    id: int
    params: dict[str, Any]
    budget: float | None = None
    bracket: int | None = None
    rung: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def job_config(self) -> dict[str, Any]:
        """The job config keys this proposal contributes: params, extra, ``n_iterations``."""
        cfg = dict(self.params)
        cfg.update(self.extra)
        if self.budget is not None:
            b = self.budget
            cfg["n_iterations"] = int(b) if float(b).is_integer() else b
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form, stored with the job."""
        return {"id": self.id, "params": self.params, "budget": self.budget,
                "bracket": self.bracket, "rung": self.rung, "extra": self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Proposal:
        """Rebuild a proposal stored by :meth:`to_dict`."""
        return cls(int(data["id"]), dict(data["params"]), data.get("budget"),
                   data.get("bracket"), data.get("rung"), dict(data.get("extra") or {}))

    @property
    def key(self) -> str:
        """Canonical key of the parameter values (JSON types kept distinct)."""
        return config_key(self.params)


class Proposer(ABC):
    """Base class of every search algorithm.

    Subclasses set :attr:`name` and :attr:`Options`, implement :meth:`_propose`, and usually
    override :meth:`_observe`/:meth:`_observe_failure` and extend :meth:`state_dict`.
    The base class keeps the pending proposals and the counts.

    Args:
        space: the search space.
        options: the validated options (an instance of ``Options``).
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[ProposerOptions]] = ProposerOptions
    #: True when every proposal carries a budget (it reaches the job as ``n_iterations``).
    gives_budget: ClassVar[bool] = False
    #: True when the proposer runs ``points_to_evaluate`` first (not a grid or a schedule).
    accepts_points: ClassVar[bool] = False
    #: Options that fix the schedule (how many jobs, which budgets). An unknown key that is a
    #: near miss of one of them is a config error, not a warning: the run would go on with
    #: the default schedule, which can be hundreds of jobs more than meant.
    schedule_options: ClassVar[tuple[str, ...]] = ()
    #: Other proposers' and other tools' names for those options: key -> (the option it
    #: stands for, or None; what to write instead). Such a key is a config error too, unless
    #: the option it stands for is also given.
    foreign_schedule_keys: ClassVar[dict[str, tuple[str | None, str]]] = {}

    def __init__(self, space: SearchSpace, options: ProposerOptions):
        self.space = space
        self.options = options
        self._next_id = 0
        self.pending: dict[int, Proposal] = {}
        self.n_told = 0
        self.n_failed = 0

    # -- configuration checks ---------------------------------------------------------------
    @classmethod
    def check_space(cls, space: SearchSpace, options: ProposerOptions) -> list[Problem]:
        """Problems with a space this proposer cannot handle (checked at load). None by default."""
        return []

    @classmethod
    def option_warnings(cls, options: ProposerOptions, given: set[str]) -> list[str]:
        """Warnings about options that are valid but have no effect with the others (checked
        at load; ``given``: the keys experiment.json sets). None by default."""
        return []

    # -- the interface ------------------------------------------------------------------------
    @property
    def total(self) -> int | None:
        """Planned number of jobs, if known upfront (for progress bars)."""
        return self.options.n_samples

    @property
    def n_asked(self) -> int:
        """Number of proposals handed out so far."""
        return self._next_id

    @property
    def finished(self) -> bool:
        """True when the proposer will never propose again."""
        total = self.total
        return total is not None and self._next_id >= total

    def ask(self) -> Proposal | None:
        """Propose the next configuration, or None when nothing can be proposed now.

        Returns:
            A new :class:`Proposal` (recorded as pending), or None when the proposer is finished
            or waits for running jobs.
        """
        if self.finished:
            return None
        points = self.options.points_to_evaluate or ()
        if self.accepts_points and self._next_id < len(points):
            from aup.proposers.warm_start import point_params

            proposal = self._given(self._next_id, point_params(self.space,
                                                               points[self._next_id]))
        else:
            proposal = self._propose(self._next_id)
        if proposal is None:
            return None
        self._next_id += 1
        self.pending[proposal.id] = proposal
        return proposal

    def tell(self, proposal: Proposal, loss: float) -> None:
        """Report the loss (lower is better) of a finished proposal.

        Args:
            proposal: a proposal returned by :meth:`ask` (or rebuilt with ``from_dict``).
            loss: a finite float.

        Raises:
            ValueError: the loss is not finite.
        """
        if not math.isfinite(loss):
            raise ValueError(f"loss must be finite, got {loss}")
        self.pending.pop(proposal.id, None)
        self.n_told += 1
        self._observe(proposal, float(loss))

    def tell_failure(self, proposal: Proposal) -> None:
        """Report that a proposal failed for good (no loss). The proposer must go on."""
        self.pending.pop(proposal.id, None)
        self.n_failed += 1
        self._observe_failure(proposal)

    def tell_early_stopped(self, proposal: Proposal, loss: float | None) -> None:
        """Report a proposal stopped early; ``loss`` is its last intermediate loss, if any.

        The default treats a finite last loss as the result and otherwise as a failure.
        """
        if loss is not None and math.isfinite(loss):
            self.tell(proposal, loss)
        else:
            self.tell_failure(proposal)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue later, as plain JSON data."""
        return {"next_id": self._next_id, "n_told": self.n_told, "n_failed": self.n_failed,
                "pending": [p.to_dict() for p in self.pending.values()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict` (on a proposer built from the same
        configuration)."""
        self._next_id = int(state["next_id"])
        self.n_told = int(state.get("n_told", 0))
        self.n_failed = int(state.get("n_failed", 0))
        self.pending = {int(p["id"]): Proposal.from_dict(p) for p in state.get("pending", [])}

    # -- for subclasses -----------------------------------------------------------------------
    @abstractmethod
    def _propose(self, proposal_id: int) -> Proposal | None:
        """Build proposal number ``proposal_id``, or None to wait."""

    def _given(self, proposal_id: int, params: dict[str, Any]) -> Proposal:
        """The proposal of a configuration from ``points_to_evaluate`` (override to add the
        proposer's own job-config keys, such as hyperopt's ``tid``)."""
        return Proposal(proposal_id, params)

    def _observe(self, proposal: Proposal, loss: float) -> None:  # noqa: B027
        """Learn from a finished proposal (default: nothing)."""

    def _observe_failure(self, proposal: Proposal) -> None:  # noqa: B027
        """Learn from a failed proposal (default: nothing)."""

    def _pending_keys(self) -> set[str]:
        return {p.key for p in self.pending.values()}
