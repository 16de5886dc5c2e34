"""The ``spearmint`` proposer: Gaussian-process Bayesian optimization with expected improvement.

In the spirit of Snoek, Larochelle and Adams 2012, "Practical Bayesian Optimization of Machine
Learning Algorithms" (the Spearmint package that Auptimizer 2.0 wrapped), rewritten on
scikit-learn and scipy:

1. **Initial design.** The first ``n_initial`` proposals (default ``min(10, max(3, d + 1))``
   for ``d`` non-constant parameters) are points of a scrambled Sobol sequence seeded by
   ``random_seed``.
2. **Model.** A GP with a Matern 5/2 kernel with one length scale per feature (ARD), an
   amplitude and a noise term, on Yeo-Johnson-warped then standardized losses (see
   :func:`_standardize`). Hyperparameters are a MAP point estimate (marginal likelihood times
   the weak priors of :func:`aup.proposers.gp.neg_log_prior`) found with L-BFGS-B, warm
   started from the previous fit, with ``n_restarts`` extra random starts on every 5th fit
   (and the first); refitted at every proposal up to 20 observations, then each time the data
   grew by 5% (in between, the last hyperparameters are conditioned on the new data).
   Spearmint proper sampled the hyperparameters by slice sampling; the point estimate is much
   cheaper (``benchmarks/quality.py`` measures the result).
3. **Encoding.** Floats use the unit interval (log-warped with ``"log": true``); integers are
   rounded to the centre of their slice of the unit interval before the GP sees them;
   choices are one-hot. Constants are passed through untouched.
4. **Pending jobs** (``n_parallel > 1``) enter the GP as fantasies at the posterior mean
   ("kriging believer") of the GP that already holds the failures: the variance there
   collapses, expected improvement vanishes, so parallel proposals differ. **Failed jobs** enter as pessimistic fantasies at the worst
   (standardized) loss observed, so the search leaves a failing region rather than probing
   beside each failure; what a failed job printed never reaches the model. A configuration already observed is not
   proposed again either (unless nothing else is left): the noise term keeps some expected
   improvement at observed corners and integer points, and a second run there is a wasted job.
5. **Acquisition.** log expected improvement (numerically stable, see
   :func:`aup.proposers.gp.log_h`) over ``grid_size`` scrambled Sobol candidates plus
   perturbations of the best observations, then (engine ``GPEIOptChooser``) refined with
   L-BFGS-B from the ``n_refine`` best candidates over the float and int coordinates
   (integers relaxed to reals, rounded at the end).
6. **Cost cap.** The GP sees at most ``max_points`` observations (default 200): the best
   half of that number plus an evenly spaced selection of the rest in arrival order. Beyond
   it the cost of a proposal stops growing (except for the encoding of the history, linear).

Engines (``engine``): ``GPEIOptChooser`` (default; with local refinement), ``GPEIChooser``
(candidates only, as Spearmint's chooser of that name) and ``RandomChooser`` (Sobol points
only). Options of Auptimizer 2.0 accepted: ``engine``, ``engine_config`` (keys below),
``grid_size``, ``random_seed``, ``spearmint_dir`` (accepted and ignored: nothing is written
to disk; the state lives in the database).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aup.errors import Problem
from aup.proposers import gp as gpm
from aup.proposers.base import Proposal, Proposer, ProposerOptions
from aup.space import SearchSpace, config_key

log = logging.getLogger(__name__)

ENGINES = ("GPEIOptChooser", "GPEIChooser", "RandomChooser")
#: Largest number of GP features (one per float/int, one per choice value) accepted at load.
MAX_FEATURES = 100
#: Number of local candidates drawn around each of the best observations.
_LOCAL_PER_POINT = 100
_LOCAL_TOP = 5
_LOCAL_SCALE = 0.05
#: Every how many model fits the hyperparameters get random restarts.
_RESTART_EVERY = 5
#: Hyperparameters are refitted once the observations grew by 1/this since the last fit
#: (every proposal up to 20 observations, every 5th around 100).
_REFIT_FRACTION = 20
#: Most recent failures the GP sees as fantasies (all of them are never proposed again).
_MAX_FAILED = 50
#: Candidates scored again in float64 after the float32 screening.
_RESCORE = 256


class EngineConfig(BaseModel):
    """``engine_config`` of the ``spearmint`` proposer.

    Attributes:
        n_initial: Sobol points before the GP is used (None: ``min(10, max(3, d + 1))``).
        max_points: most observations the GP sees (cost cap; see the module docstring).
        n_restarts: random restarts of the likelihood maximization (on every 5th fit).
        n_refine: candidates refined by L-BFGS-B (``GPEIOptChooser`` only).
        output_warping: Yeo-Johnson warp of the losses before standardizing.
    """

    model_config = ConfigDict(extra="forbid")
    n_initial: int | None = Field(default=None, ge=1)
    max_points: int = Field(default=200, ge=10)
    n_restarts: int = Field(default=2, ge=0, le=50)
    n_refine: int = Field(default=2, ge=0, le=50)
    output_warping: bool = True


class SpearmintOptions(ProposerOptions):
    """Options of the ``spearmint`` proposer (the keys of Auptimizer 2.0).

    Attributes:
        engine: ``GPEIOptChooser`` (default), ``GPEIChooser`` or ``RandomChooser``
            (case-insensitive).
        engine_config: see :class:`EngineConfig`.
        grid_size: number of Sobol candidates scored per proposal (1 to 1,000,000).
        spearmint_dir: accepted for compatibility, unused.
    """

    engine: str = "GPEIOptChooser"
    engine_config: EngineConfig = Field(default_factory=EngineConfig)
    grid_size: int = Field(default=20000, ge=1, le=1_000_000)
    spearmint_dir: str | None = None

    @field_validator("engine")
    @classmethod
    def _engine(cls, v: str) -> str:
        for name in ENGINES:
            if v.strip().lower() == name.lower():
                return name
        raise ValueError(f"unknown engine {v!r}; use one of {', '.join(ENGINES)}")


def _standardize(y: np.ndarray, warp: bool) -> np.ndarray:
    """Losses as the GP sees them: Yeo-Johnson warped (:func:`yeo_johnson`) when ``warp``,
    then zero mean and unit variance. The warp is increasing, so the best loss stays the best;
    it makes skewed losses (a few good results far below the rest) look Gaussian, which keeps
    expected improvement exploring instead of polishing the first basin found."""
    y = np.asarray(y, dtype=float)
    y = y - float(np.median(y))
    span = float(np.abs(y).max())
    y = y / span if span > 0 else y  # first into [-1, 1]: the variance of 1e200s overflows
    sd = float(y.std())
    y = (y - float(y.mean())) / (sd if sd > 0 else 1.0)
    if warp and len(y) >= 3 and sd > 0:
        z = yeo_johnson(y)
        if np.all(np.isfinite(z)) and float(z.std()) > 0:
            y = (z - float(z.mean())) / float(z.std())
    return y


def _yj(y: np.ndarray, lam: float) -> np.ndarray:
    out = np.empty_like(y)
    pos = y >= 0
    yp, yn = y[pos], y[~pos]
    out[pos] = np.log1p(yp) if abs(lam) < 1e-8 else np.expm1(lam * np.log1p(yp)) / lam
    out[~pos] = (-np.log1p(-yn) if abs(lam - 2) < 1e-8
                 else -np.expm1((2 - lam) * np.log1p(-yn)) / (2 - lam))
    return out


def yeo_johnson(y: np.ndarray) -> np.ndarray:
    """Yeo-Johnson transform of ``y`` with the exponent that maximizes the Gaussian
    log-likelihood (Yeo and Johnson 2000), searched in ``[-2, 4]``.

    The same transform as scikit-learn's ``PowerTransformer(method="yeo-johnson")`` (a test
    checks it); written out because that one's exponent search went through scipy.stats'
    argument inspection and cost 70 ms per proposal.
    """
    from scipy import optimize

    log_term = float((np.sign(y) * np.log1p(np.abs(y))).sum())

    def neg_llf(lam: float) -> float:
        var = float(_yj(y, lam).var())
        if var <= 0:
            return math.inf
        return 0.5 * len(y) * math.log(var) - (lam - 1.0) * log_term

    res = optimize.minimize_scalar(neg_llf, bounds=(-2.0, 4.0), method="bounded",
                                   options={"xatol": 1e-4})
    return _yj(y, float(res.x))


class SpearmintProposer(Proposer):
    """GP-EI Bayesian optimization (see the module docstring for the method)."""

    name = "spearmint"
    accepts_points = True
    Options = SpearmintOptions

    def __init__(self, space: SearchSpace, options: SpearmintOptions):
        super().__init__(space, options)
        self.options: SpearmintOptions = options
        self.enc = gpm.Encoder(space)
        cfg = options.engine_config
        d = self.enc.n_params
        self.n_initial = cfg.n_initial if cfg.n_initial is not None else min(10, max(3, d + 1))
        self.rng = np.random.Generator(np.random.PCG64(options.random_seed))
        self.observations: list[list[Any]] = []  # [params, loss]
        self.failures: list[dict[str, Any]] = []
        self.theta: list[float] | None = None
        self.n_fits = 0
        self.fit_n = 0  # number of observations at the last hyperparameter fit
        self._x: list[np.ndarray] = []  # features of self.observations
        self._observed_keys: set[str] = set()  # config keys of self.observations
        self._threadpools: Any = None

    @classmethod
    def check_space(cls, space: SearchSpace, options: ProposerOptions) -> list[Problem]:
        dim = gpm.Encoder(space).dim
        if dim > MAX_FEATURES:
            return [Problem("parameter_config", f"the space needs {dim} GP features (one per "
                            "float/int parameter, one per choice value), more than "
                            f"{MAX_FEATURES}", dim,
                            "use fewer choice values, or the hyperopt or random proposer")]
        return []

    # -- proposing ---------------------------------------------------------------------------
    def _propose(self, proposal_id: int) -> Proposal | None:
        # Never a running configuration; never again one that failed or was already observed
        # (a corner or an integer point the acquisition favours again), unless nothing else.
        avoid = self._pending_keys() | {config_key(f) for f in self.failures}
        running = avoid | self._observed_keys
        if self.enc.n_params == 0:
            return Proposal(proposal_id, self.enc.decode(np.zeros(0)))
        use_model = (self.options.engine != "RandomChooser" and proposal_id >= self.n_initial
                     and len(self.observations) >= 2)
        favourite: dict[str, Any] | None = None
        if use_model:
            try:
                # One BLAS thread: the matrices are small, and OpenBLAS's threads made the
                # proposal up to 50x slower on a busy 2-core machine.
                with self._blas_controller().limit(limits=1, user_api="blas"):
                    candidates = self._model_candidates()
                for u in candidates:
                    params = self.enc.decode(u)
                    key = Proposal(proposal_id, params).key
                    if key not in running:
                        return Proposal(proposal_id, params)
                    if favourite is None and key not in avoid:
                        favourite = params
            except (np.linalg.LinAlgError, ValueError) as err:  # pragma: no cover - defensive
                log.warning("spearmint: the GP could not be fitted (%s); proposing a Sobol "
                            "point instead", err)
        sobol = self._sobol_proposal(proposal_id, running, avoid)
        if favourite is not None and sobol.key in running:
            # Every configuration tried has a result already (a small discrete space): the
            # model's favourite again rather than a random one.
            return Proposal(proposal_id, favourite)
        return sobol

    def _blas_controller(self) -> Any:
        """threadpoolctl's controller, built once (building it scans the loaded libraries)."""
        if self._threadpools is None:
            # Load scipy's own BLAS first: the controller only sees libraries loaded by now.
            import scipy.linalg  # noqa: F401
            import scipy.optimize  # noqa: F401
            from threadpoolctl import ThreadpoolController

            self._threadpools = ThreadpoolController()
        return self._threadpools

    def _sobol_proposal(self, proposal_id: int, running: set[str],
                        avoid: frozenset[str] | set[str] = frozenset()) -> Proposal:
        """The next Sobol point whose configuration is not in ``running``; failing that (a
        small discrete space, every configuration tried), the first that is not in ``avoid``
        (running now, or failed); failing that, the last point drawn."""
        from scipy.stats import qmc

        sobol = qmc.Sobol(self.enc.n_params, scramble=True, seed=self.options.random_seed)
        if proposal_id:
            sobol.fast_forward(proposal_id)
        params: dict[str, Any] = {}
        fallback: dict[str, Any] | None = None
        for _ in range(100):
            params = self.enc.decode(sobol.random(1)[0])
            key = Proposal(proposal_id, params).key
            if key not in running:
                return Proposal(proposal_id, params)
            if fallback is None and key not in avoid:
                fallback = params
        return Proposal(proposal_id, fallback if fallback is not None else params)

    def _training_set(self) -> tuple[np.ndarray, np.ndarray]:
        """Features and losses the GP sees, at most ``max_points`` of them."""
        x = np.asarray(self._x)
        y = np.array([o[1] for o in self.observations], dtype=float)
        cap = self.options.engine_config.max_points
        if len(y) <= cap:
            return x, y
        order = np.argsort(y, kind="stable")
        best = order[: cap // 2]
        rest = np.setdiff1d(np.arange(len(y)), best)  # sorted: arrival order
        pick = rest[np.linspace(0, len(rest) - 1, cap - len(best)).round().astype(int)]
        keep = np.concatenate([best, pick])
        return x[keep], y[keep]

    def _model_candidates(self) -> list[np.ndarray]:
        """Param-unit points, best acquisition first (a handful of distinct ones)."""
        cfg = self.options.engine_config
        x, y = self._training_set()
        ys = _standardize(y, cfg.output_warping)
        n = len(self.observations)
        if self.theta is None or n - self.fit_n >= max(1, n // _REFIT_FRACTION):
            starts: list[np.ndarray] = []
            if self.n_fits % _RESTART_EVERY == 0:
                bounds = gpm.theta_bounds(x.shape[1])
                starts = [gpm.default_theta(x.shape[1])] + [
                    self.rng.uniform(bounds[:, 0], bounds[:, 1]) for _ in range(cfg.n_restarts)]
            theta0 = np.asarray(self.theta) if self.theta is not None else None
            model = gpm.MaternGP.fit(x, ys, theta0, starts)
            self.theta = [float(t) for t in model.theta]
            self.n_fits += 1
            self.fit_n = n
        else:  # hyperparameters of the last fit, conditioned on the new data
            model = gpm.MaternGP(np.asarray(self.theta)).condition(x, ys)
        pending = [p.params for p in self.pending.values()]
        failed = self.failures[-_MAX_FAILED:]
        if failed:
            # Failed jobs at the worst loss seen (a pessimistic fantasy), which steers the
            # search out of a failing region instead of next to each failure.
            x = np.vstack([x, np.array([self.enc.encode(p) for p in failed])])
            ys = np.concatenate([ys, np.full(len(failed), float(ys.max()))])
            model = gpm.MaternGP(model.theta).condition(x, ys)
        best = float(ys.min())
        if pending:
            # Pending jobs at the posterior mean of the model that knows the failures
            # (kriging believer): one beside a failure is not fantasized as good.
            xp = np.array([self.enc.encode(p) for p in pending])
            yp = model.predict(xp)[0]
            model = gpm.MaternGP(model.theta).condition(np.vstack([x, xp]),
                                                        np.concatenate([ys, yp]))
            best = min(best, float(yp.min()))  # the fantasized values count as observed

        def acq(u: np.ndarray, snap: bool = True, single: bool = False) -> np.ndarray:
            m, s = model.predict(self.enc.features(u, snap), single=single)
            return gpm.log_expected_improvement(m, s, best)

        cands = np.vstack([self._sobol_candidates(), self._local_candidates()])
        # Screen every candidate in float32, score the best _RESCORE again in float64.
        screened = np.argsort(-acq(cands, single=True), kind="stable")[:_RESCORE]
        cands = cands[screened]
        scores = acq(cands)
        order = np.argsort(-scores, kind="stable")
        top = [cands[i] for i in order[:20]]
        top_scores = [float(scores[i]) for i in order[:20]]
        if self.options.engine == "GPEIOptChooser" and self.enc.numeric and cfg.n_refine:
            refined = [self._refine(acq, u) for u in top[: cfg.n_refine]]
            ref_scores = acq(np.array(refined)).tolist()
            pairs = sorted(zip(ref_scores + top_scores, range(len(refined) + len(top)),
                               strict=True), key=lambda t: (-t[0], t[1]))
            pool = refined + top
            top = [pool[i] for _, i in pairs]
        return top

    def _sobol_candidates(self) -> np.ndarray:
        from scipy.stats import qmc

        n = self.options.grid_size
        sobol = qmc.Sobol(self.enc.n_params, scramble=True,
                          seed=int(self.rng.integers(2**31 - 1)))
        return sobol.random_base2(max(0, math.ceil(math.log2(n))))[:n]

    def _local_candidates(self) -> np.ndarray:
        """Gaussian perturbations of the float/int coordinates of the best observations."""
        losses = np.array([o[1] for o in self.observations])
        order = np.argsort(losses, kind="stable")[:_LOCAL_TOP]
        base = np.array([self.enc.to_param_unit(self.observations[i][0]) for i in order])
        pts = np.repeat(base, _LOCAL_PER_POINT, axis=0)
        noise = self.rng.normal(0.0, _LOCAL_SCALE, size=(len(pts), len(self.enc.numeric)))
        pts[:, self.enc.numeric] += noise
        return np.clip(pts, 0.0, 1.0)

    def _refine(self, acq: Any, u0: np.ndarray) -> np.ndarray:
        """L-BFGS-B on -log EI over the float/int coordinates, starting at ``u0``."""
        from scipy import optimize

        idx = self.enc.numeric
        h = 1e-6

        def f(z: np.ndarray) -> tuple[float, np.ndarray]:
            pts = np.repeat(u0[None, :], len(idx) + 1, axis=0)
            pts[:, idx] = z
            for k in range(len(idx)):  # forward differences, one batched prediction
                pts[k + 1, idx[k]] += h if z[k] + h <= 1.0 else -h
            vals = -acq(pts, snap=False)
            step = np.where(z + h <= 1.0, h, -h)
            return float(vals[0]), (vals[1:] - vals[0]) / step

        res = optimize.minimize(f, u0[idx], jac=True, method="L-BFGS-B",
                                bounds=[(0.0, 1.0)] * len(idx), options={"maxiter": 20})
        out = u0.copy()
        out[idx] = np.clip(res.x, 0.0, 1.0)
        return out

    # -- learning ----------------------------------------------------------------------------
    def _observe(self, proposal: Proposal, loss: float) -> None:
        self.observations.append([proposal.params, loss])
        self._x.append(self.enc.encode(proposal.params))
        self._observed_keys.add(proposal.key)

    def _observe_failure(self, proposal: Proposal) -> None:
        self.failures.append(proposal.params)

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(rng=self.rng.bit_generator.state, observations=list(self.observations),
                     failures=list(self.failures), theta=self.theta, n_fits=self.n_fits,
                     fit_n=self.fit_n)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rng.bit_generator.state = state["rng"]
        self.observations = [[dict(p), float(v)] for p, v in state.get("observations", [])]
        self.failures = [dict(p) for p in state.get("failures", [])]
        self.theta = [float(t) for t in state["theta"]] if state.get("theta") else None
        self.n_fits = int(state.get("n_fits", 0))
        self.fit_n = int(state.get("fit_n", 0))
        self._x = [self.enc.encode(p) for p, _ in self.observations]
        self._observed_keys = {config_key(p) for p, _ in self.observations}
