"""Hyperband (the ``hyperband`` proposer).

Li, Jamieson, DeSalvo, Rostamizadeh and Talwalkar 2018, "Hyperband: A Novel Bandit-Based
Approach to Hyperparameter Optimization" (JMLR 18): successive halving over brackets of
different aggressiveness, with configurations drawn by an inner engine (``random`` or
``sequence``). The schedule itself lives in :mod:`aup.proposers.schedule`.

Options (top-level experiment.json keys):

* ``max_iter`` (R, default 81): the largest budget a configuration gets. The smallest is
  ``R / eta^s_max`` with ``s_max = floor(log_eta R)`` computed exactly.
* ``eta`` (default 3): only the best ``1/eta`` of a rung go on, with ``eta`` times the budget.
* ``skip_last`` (default 0): drop the last rungs of every bracket (no job gets the largest
  budgets; brackets left without a rung are dropped).
* ``engine`` (``random`` default, or ``sequence``): how new configurations are drawn. With
  ``sequence`` the grid is walked with one cursor over the whole experiment (wrapping round when
  the grid is smaller than the number of configurations needed), so configurations differ.
* ``random_seed``.

Each job gets its budget as the job config key ``n_iterations``: ``R * eta^(i - s)`` for rung
``i`` of bracket ``s`` (an int when whole, otherwise a float). ``n_samples`` is ignored: the
number of jobs is the schedule's (:attr:`HyperbandProposer.total`).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from aup.errors import Problem
from aup.proposers.base import Proposal, Proposer, ProposerOptions
from aup.proposers.schedule import (
    MAX_SCHEDULED_JOBS,
    Bracket,
    HyperbandSchedule,
    SuccessiveHalving,
    integer_log,
    schedule_total,
)
from aup.space import config_key

#: Random draws tried to avoid repeating a configuration within a bracket (tiny spaces).
_MAX_REDRAWS = 100


class HyperbandOptions(ProposerOptions):
    """Options of the ``hyperband`` proposer (see the module docstring)."""

    max_iter: int = Field(default=81, ge=1)
    eta: int = Field(default=3, ge=2)
    skip_last: int = Field(default=0, ge=0)
    engine: Literal["random", "sequence"] = "random"

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_case(cls, v: Any) -> Any:
        # Case-insensitive, as hyperopt's and spearmint's engines ("Random" was refused).
        return v.strip().lower() if isinstance(v, str) else v


def _number(budget: Any) -> int | float:
    """An exact fraction as an int when whole, else a float."""
    return int(budget) if budget.denominator == 1 else float(budget)


class HyperbandProposer(Proposer):
    """Hyperband with a random or grid engine; minimizes the loss it is told.

    Args:
        space: the search space.
        options: validated :class:`HyperbandOptions`.

    Raises:
        ValueError: ``skip_last`` leaves no rung to run (checked at load by
            :meth:`check_space`).
    """

    name = "hyperband"
    gives_budget = True
    Options = HyperbandOptions
    schedule_options = ("max_iter", "eta", "skip_last")
    foreign_schedule_keys = {
        **dict.fromkeys(("max_budget", "max_t", "max_resource"),
                        ("max_iter", 'hyperband\'s largest budget is "max_iter" (an int)')),
        **dict.fromkeys(("min_budget", "grace_period", "min_resource"),
                        (None, "hyperband has no smallest-budget option (its budgets are "
                         'max_iter / eta^k); use "proposer": "bohb" to set min_budget and '
                         "max_budget")),
        "reduction_factor": ("eta", 'hyperband\'s reduction factor is "eta"'),
    }

    @classmethod
    def option_warnings(cls, options: HyperbandOptions, given: set[str]) -> list[str]:
        if integer_log(options.max_iter, options.eta) == 0:
            return [f"max_iter {options.max_iter} is below eta {options.eta}: a single budget "
                    "level, so hyperband runs one job and halves nothing (use max_iter >= "
                    f"eta^2 = {options.eta ** 2} for successive halving)"]
        return []

    def __init__(self, space, options: HyperbandOptions):
        super().__init__(space, options)
        s_max = integer_log(options.max_iter, options.eta)
        self.schedule = HyperbandSchedule(options.eta, s_max, skip_last=options.skip_last)
        self.runner = SuccessiveHalving(self.schedule)
        self.rng = np.random.Generator(np.random.PCG64(options.random_seed))
        self.cursor = 0  # next grid index of the sequence engine
        self.engine = None
        if options.engine == "sequence":
            from aup.proposers.sequence import SequenceProposer

            self.engine = SequenceProposer(space, options)

    @classmethod
    def check_space(cls, space, options: HyperbandOptions) -> list[Problem]:
        problems = []
        s_max = integer_log(options.max_iter, options.eta)
        if options.skip_last > s_max:
            problems.append(Problem(
                "skip_last", f"max_iter={options.max_iter} with eta={options.eta} gives brackets "
                f"of at most {s_max + 1} rungs, so skipping {options.skip_last} leaves none to run",
                options.skip_last, f"use skip_last between 0 and {s_max}, or raise max_iter"))
        elif schedule_total(options.eta, s_max, skip_last=options.skip_last) > MAX_SCHEDULED_JOBS:
            problems.append(Problem(
                "max_iter", f"max_iter={options.max_iter} with eta={options.eta} plans more than "
                f"{MAX_SCHEDULED_JOBS:,} jobs", options.max_iter,
                "max_iter is the largest budget in units of the smallest one (e.g. epochs): "
                "use a smaller max_iter or a larger eta"))
        if options.engine == "sequence":
            from aup.proposers.sequence import SequenceProposer

            problems.extend(SequenceProposer.check_space(space, options))
        return problems

    @property
    def total(self) -> int:
        """Exact number of jobs of the schedule (every rung of every bracket)."""
        return self.schedule.total

    @property
    def finished(self) -> bool:
        return self.runner.exhausted

    def _sample(self, bracket: Bracket, taken: set[str]) -> dict[str, Any]:
        if self.engine is not None:
            index = self.cursor % self.engine.total
            self.cursor += 1
            return self.engine._propose(index).params
        for _ in range(_MAX_REDRAWS):
            params = self.space.sample(self.rng)
            if config_key(params) not in taken:
                break
        return params

    def _propose(self, proposal_id: int) -> Proposal | None:
        job = self.runner.next_job(proposal_id, self._sample)
        if job is None:
            return None
        budget = _number(self.options.max_iter * job.fraction)
        return Proposal(proposal_id, dict(job.params), budget=budget, bracket=job.bracket,
                        rung=job.rung)

    def _observe(self, proposal: Proposal, loss: float) -> None:
        self.runner.report(proposal.id, loss)

    def _observe_failure(self, proposal: Proposal) -> None:
        self.runner.report(proposal.id, None)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(runner=self.runner.state_dict(), rng=self.rng.bit_generator.state,
                     cursor=self.cursor)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.runner.load_state_dict(state["runner"])
        self.rng.bit_generator.state = state["rng"]
        self.cursor = int(state["cursor"])
