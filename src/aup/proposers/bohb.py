"""BOHB: Hyperband's schedule with a kernel-density model choosing new configurations.

Falkner, Klein and Hutter 2018, "BOHB: Robust and Efficient Hyperparameter Optimization at
Scale" (ICML), Algorithm 2. The brackets, rung sizes and promotions are exactly Hyperband's
(:mod:`aup.proposers.schedule`, shared with :mod:`aup.proposers.hyperband`); only the way a new
configuration is drawn differs:

* with probability ``random_fraction``, or while no budget has at least
  ``min_points_in_model + 2`` results, a configuration is drawn at random;
* otherwise the results of the **largest** budget that has enough are split into the best
  ``N_good = max(N_min, top_n_percent% of N)`` ("good") and the other ``N - N_good`` ("bad");
  as in the authors' reference implementation (HpBandSter) the two sets never share a point,
  so a budget is modelled only once its bad set also has more points than dimensions
  (``N >= N_good + d + 1``, i.e. ``2d + 2`` results with the defaults). The paper's Eq. 3
  (``N_bad = max(N_min, N - N_good)``) lets the sets overlap when ``N < 2 N_min``: a model
  whose good and bad densities share most of their points then replaced a better-informed
  model of a smaller budget. Two product-kernel densities ``l`` (good) and ``g`` (bad) are
  fitted with statsmodels' ``KDEMultivariate`` (Scott's normal-reference bandwidths, floored at
  ``min_bandwidth``); ``num_samples`` candidates are drawn around random good points with the
  bandwidths widened by ``bandwidth_factor``; the candidate maximizing ``l(x) / g(x)`` is
  proposed.

Float and int parameters are modelled on the unit interval (log-warped when ``"log": true``)
with a Gaussian kernel; choices are modelled as unordered categories (Aitchison-Aitken kernel);
constant parameters are left out. Failed jobs count as the worst results of their budget.

Options: ``n_iterations`` (number of brackets, default 4; bracket ``k`` has
``s = s_max - k mod (s_max + 1)``), ``min_budget`` (0.01), ``max_budget`` (1), ``eta`` (3),
``min_points_in_model`` (default, and floor: number of modelled dimensions + 1, since each
density needs more points than dimensions), ``top_n_percent`` (15),
``num_samples`` (64), ``random_fraction`` (1/3), ``bandwidth_factor`` (3), ``min_bandwidth``
(0.001), ``random_seed``. Budgets are ``max_budget * eta^-j`` for ``j = s_max..0`` with
``s_max`` the largest integer with ``min_budget * eta^s_max <= max_budget``; they reach the
job as the float ``n_iterations``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from aup.errors import Problem
from aup.proposers.base import Proposal, Proposer, ProposerOptions
from aup.proposers.schedule import (
    MAX_SCHEDULED_JOBS,
    Bracket,
    HyperbandSchedule,
    SuccessiveHalving,
    budget_levels,
    first_bracket_too_large,
    schedule_total,
)
from aup.space import ChoiceParam, config_key

#: Random draws tried to avoid repeating a configuration within a bracket (tiny spaces).
_MAX_REDRAWS = 100


class BOHBOptions(ProposerOptions):
    """Options of the ``bohb`` proposer (see the module docstring)."""

    n_iterations: int = Field(default=4, ge=1)
    min_budget: float = Field(default=0.01, gt=0, allow_inf_nan=False)
    max_budget: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    eta: int = Field(default=3, ge=2)
    min_points_in_model: int | None = Field(default=None, ge=1)
    top_n_percent: int = Field(default=15, ge=1, le=99)
    num_samples: int = Field(default=64, ge=1)
    random_fraction: float = Field(default=1 / 3, ge=0, le=1)
    bandwidth_factor: float = Field(default=3.0, gt=0)
    min_bandwidth: float = Field(default=1e-3, gt=0, le=1)  # the KDEs work in [0, 1]

    @field_validator("min_points_in_model", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        # Auptimizer 2.0 wrote "" for "not set".
        return None if v == "" else v


class _Model:
    """The good/bad densities of one budget level.

    Args:
        good: encoded good configurations, shape (n_good, d).
        bad: encoded bad configurations, shape (n_bad, d).
        levels: per dimension, the number of categories (0 for a continuous dimension).
        min_bw: bandwidth floor.
    """

    def __init__(self, good: np.ndarray, bad: np.ndarray, levels: list[int], min_bw: float):
        from statsmodels.nonparametric.kernel_density import KDEMultivariate

        var_type = "".join("u" if c else "c" for c in levels)
        # Aitchison-Aitken bandwidths above (c-1)/c would favour the other categories.
        high = np.array([1 - 1 / c if c else np.inf for c in levels])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.good = KDEMultivariate(good, var_type=var_type, bw="normal_reference")
            self.bad = KDEMultivariate(bad, var_type=var_type, bw="normal_reference")
        self.good.bw = np.clip(self.good.bw, min_bw, np.maximum(high, min_bw))
        self.bad.bw = np.clip(self.bad.bw, min_bw, np.maximum(high, min_bw))
        self.data = good

    def ratio(self, x: np.ndarray) -> np.ndarray:
        """``l(x) / g(x)`` for each row of ``x`` (shape (n, d)).

        statsmodels counts a categorical dimension's levels from the data, so a category that
        all of one set lack gives NaN; it is read as density 0 there.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lx = np.nan_to_num(np.asarray(self.good.pdf(x), dtype=float), nan=0.0)
            gx = np.nan_to_num(np.asarray(self.bad.pdf(x), dtype=float), nan=0.0)
        with np.errstate(over="ignore"):
            return lx / np.maximum(gx, 1e-32)


class BOHBProposer(Proposer):
    """BOHB: Hyperband brackets, configurations from a per-budget TPE-like KDE model.

    Args:
        space: the search space.
        options: validated :class:`BOHBOptions`.
    """

    name = "bohb"
    gives_budget = True
    Options = BOHBOptions
    schedule_options = ("min_budget", "max_budget", "eta", "n_iterations")
    foreign_schedule_keys = {
        **dict.fromkeys(("max_iter", "max_t", "max_resource"),
                        ("max_budget", 'bohb\'s largest budget is "max_budget"')),
        **dict.fromkeys(("grace_period", "min_resource"),
                        ("min_budget", 'bohb\'s smallest budget is "min_budget"')),
        "reduction_factor": ("eta", 'bohb\'s reduction factor is "eta"'),
    }

    def __init__(self, space, options: BOHBOptions):
        super().__init__(space, options)
        s_max = budget_levels(options.min_budget, options.max_budget, options.eta)
        self.schedule = HyperbandSchedule(options.eta, s_max, n_brackets=options.n_iterations)
        self.runner = SuccessiveHalving(self.schedule)
        self.rng = np.random.Generator(np.random.PCG64(options.random_seed))
        # Modelled dimensions: (param, number of categories or 0 for continuous).
        self.dims = [(p, len(p.choices) if isinstance(p, ChoiceParam) else 0)
                     for p in space if not p.is_constant]
        # statsmodels' KDE needs more points than dimensions in each of the two sets.
        self.n_min = max(options.min_points_in_model or 0, len(self.dims) + 1)
        # Results per budget level: [[vector, loss or None (failed)], ...].
        self.obs: dict[int, list[list[Any]]] = {}
        self._models: dict[int, tuple[int, _Model]] = {}

    @classmethod
    def check_space(cls, space, options: BOHBOptions) -> list[Problem]:
        o = options
        if o.min_budget > o.max_budget:
            return [Problem("min_budget", f"min_budget is above max_budget ({o.max_budget})",
                            o.min_budget, "use 0 < min_budget <= max_budget")]
        s_max = budget_levels(o.min_budget, o.max_budget, o.eta)
        if first_bracket_too_large(o.eta, s_max):
            ratio = o.max_budget / o.min_budget
            shown = (f"{ratio:.3g}" if math.isfinite(ratio) else
                     f"1e{math.log10(o.max_budget) - math.log10(o.min_budget):.0f}")
            return [Problem("min_budget", f"max_budget / min_budget = "
                            f"{shown} with eta={o.eta} gives "
                            f"{s_max + 1} budget levels, and the first bracket alone more than "
                            f"{MAX_SCHEDULED_JOBS:,} jobs", o.min_budget,
                            "use a smaller ratio of max_budget to min_budget, or a larger eta")]
        if schedule_total(o.eta, s_max, o.n_iterations) > MAX_SCHEDULED_JOBS:
            return [Problem("n_iterations", f"{o.n_iterations} brackets plan more than "
                            f"{MAX_SCHEDULED_JOBS:,} jobs", o.n_iterations,
                            "n_iterations is the number of brackets: use a smaller one")]
        return []

    @classmethod
    def option_warnings(cls, options: BOHBOptions, given: set[str]) -> list[str]:
        o = options
        try:
            s_max = budget_levels(o.min_budget, o.max_budget, o.eta)
        except ValueError:  # min_budget > max_budget: a problem of check_space
            return []
        if s_max == 0:
            return [f"min_budget {o.min_budget:g} and max_budget {o.max_budget:g} are less "
                    f"than a factor eta={o.eta} apart: a single budget level, so bohb runs "
                    "every job at max_budget and halves nothing (use min_budget <= "
                    f"max_budget / eta^2 = {o.max_budget / o.eta ** 2:g})"]
        return []

    @property
    def total(self) -> int:
        """Exact number of jobs of the ``n_iterations`` brackets."""
        return self.schedule.total

    @property
    def finished(self) -> bool:
        return self.runner.exhausted

    def budget(self, level: int) -> float:
        """Budget of level ``level`` (0 = smallest): ``max_budget / eta^(s_max - level)``,
        rounded to 12 significant digits so that decimal budgets come out as written (0.9 / 9
        is 0.1, where 0.9 * 3^-2 was 0.09999999999999999 and ``int(100 * budget)`` gave 9)."""
        o = self.options
        return float(f"{o.max_budget / o.eta ** (self.schedule.s_max - level):.12g}")

    # -- encoding ------------------------------------------------------------------------------
    def _encode(self, params: dict[str, Any]) -> list[float]:
        return [float(p.index(params[p.name])) if c else p.to_unit(params[p.name])
                for p, c in self.dims]

    def _decode(self, x: np.ndarray) -> dict[str, Any]:
        values = {p.name: p.from_unit(0.5) for p in self.space if p.is_constant}
        for (p, c), v in zip(self.dims, x, strict=True):
            values[p.name] = p.from_unit((int(v) + 0.5) / c) if c else p.from_unit(float(v))
        return {p.name: _plain(values[p.name]) for p in self.space}

    # -- sampling ------------------------------------------------------------------------------
    def _model(self) -> _Model | None:
        for level in sorted(self.obs, reverse=True):
            rows = self.obs[level]
            n = len(rows)
            n_good = max(self.n_min, (self.options.top_n_percent * n) // 100)
            if n - n_good <= len(self.dims):  # (implies n >= n_min + 2: n_good >= n_min >= 2)
                continue
            cached = self._models.get(level)
            if cached is not None and cached[0] == n:
                return cached[1]
            order = sorted(range(n), key=lambda i: (rows[i][1] is None,
                                                    rows[i][1] if rows[i][1] is not None
                                                    else math.inf, i))
            x = np.array([rows[i][0] for i in order], dtype=float)
            model = _Model(x[:n_good], x[n_good:], [c for _, c in self.dims],
                           self.options.min_bandwidth)
            self._models[level] = (n, model)
            return model
        return None

    def _random(self, taken: set[str]) -> dict[str, Any]:
        for _ in range(_MAX_REDRAWS):
            params = self.space.sample(self.rng)
            if config_key(params) not in taken:
                break
        return params

    def _sample(self, bracket: Bracket, taken: set[str]) -> dict[str, Any]:
        if not self.dims or self.rng.random() < self.options.random_fraction:
            return self._random(taken)
        model = self._model()
        if model is None:
            return self._random(taken)
        o = self.options
        n, d = o.num_samples, len(self.dims)
        centers = model.data[self.rng.integers(len(model.data), size=n)]
        cand = np.empty((n, d))
        for j, (_, c) in enumerate(self.dims):
            bw = float(model.good.bw[j])
            if c:
                change = self.rng.random(n) < min(1.0, bw)
                cand[:, j] = np.where(change, self.rng.integers(c, size=n), centers[:, j])
            else:
                cand[:, j] = _truncated_normal(self.rng, centers[:, j],
                                               max(bw * o.bandwidth_factor, o.min_bandwidth))
        # The best ratio l(x)/g(x) among the candidates that are not in this rung already
        # (decoding snaps choices and integers, so two candidates can be one configuration).
        for i in np.argsort(-model.ratio(cand), kind="stable"):
            params = self._decode(cand[i])
            if config_key(params) not in taken:
                return params
        return self._random(taken)

    # -- the proposer interface ----------------------------------------------------------------
    def _propose(self, proposal_id: int) -> Proposal | None:
        job = self.runner.next_job(proposal_id, self._sample)
        if job is None:
            return None
        return Proposal(proposal_id, dict(job.params), budget=self.budget(job.level),
                        bracket=job.bracket, rung=job.rung)

    def _learn(self, proposal: Proposal, loss: float | None) -> None:
        job = self.runner.report(proposal.id, loss)
        if job is not None and self.dims:
            self.obs.setdefault(job.level, []).append([self._encode(job.params), loss])

    def _observe(self, proposal: Proposal, loss: float) -> None:
        self._learn(proposal, loss)

    def _observe_failure(self, proposal: Proposal) -> None:
        self._learn(proposal, None)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(runner=self.runner.state_dict(), rng=self.rng.bit_generator.state,
                     obs={str(k): list(v) for k, v in self.obs.items()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.runner.load_state_dict(state["runner"])
        self.rng.bit_generator.state = state["rng"]
        self.obs = {int(k): [list(r) for r in v] for k, v in state["obs"].items()}
        self._models = {}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _truncated_normal(rng: np.random.Generator, mean: np.ndarray, sd: float) -> np.ndarray:
    """Normal draws around ``mean`` (shape (n,)) kept inside ``[0, 1]`` by redrawing the ones
    outside (up to 20 times, then clipping)."""
    out = rng.normal(mean, sd)
    for _ in range(20):
        bad = (out < 0) | (out > 1)
        if not bad.any():
            break
        out[bad] = rng.normal(mean[bad], sd)
    return np.clip(out, 0.0, 1.0)
