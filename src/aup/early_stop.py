"""Early stopping policies (``resource_args.early_stop``).

A policy looks at a running job's intermediate results (its *history*: every value reported so
far, in order) and at the histories of its peers (the other running jobs, and the jobs that
already ended FINISHED or EARLY_STOPPED), and decides whether the job should stop now.

The options keep Auptimizer 2.0's names (reference section 5.5):

``aup_policy`` (required)
    ``bandit``, ``median``, ``truncation`` or ``curve_fitting``.
``aup_policy_steps`` (required, int >= 1)
    a job is evaluated each time it has reported a multiple of this many results; the
    comparison uses the first ``step`` values of every history (``step = n // k * k``).
``warmup`` (int >= 0, default 0)
    no decision before a job has reported this many results.
``bandit_factor`` (0 < f <= 1, default 0.5)
    bandit: stop when the job's best value is worse than the peers' best by more than a
    relative ``1 - f`` (for ``target: max`` and a positive best ``B``: ``value < f * B``).
``truncation_percentage`` (0 < p < 1, default 0.3)
    truncation: stop when the job ranks in the worst fraction ``p`` of all jobs at that step.
``curve_fitting_threshold`` (0 < t <= 1, default 0.95)
    curve_fitting: stop when the predicted final value is worse than the best finished value by
    more than a relative ``1 - t``.
``curve_fitting_max_iters`` (int >= 1, required for curve_fitting)
    the number of results the script reports in total: the point the curve is extrapolated to.
``curve_fitting_timeout`` (seconds > 0, default 60)
    time limit of one prediction.
``min_peers`` (int >= 1, default 2; new in Auptimizer 3)
    no decision while fewer peers than this have reached the step.

Every rule works on *losses* (lower is better): values are negated once for ``target: max``,
so both targets behave the same (Auptimizer 2.0's curve fitting did nothing when minimizing).
NaN and infinite values are ignored by the rules (a history whose first ``step`` values hold
no finite number is not a peer). A job whose latest ``aup_policy_steps`` values are all
NaN or infinite is stopped once ``min_peers`` peers have finite values at that step (a diverged
training; :meth:`EarlyStopPolicy._diverged`).

The rules (:func:`median_rule`, :func:`bandit_rule`, :func:`truncation_rule`,
:func:`predict_final`) are pure functions of the data. The :class:`EarlyStopPolicy` objects only
remember which step of which job was already evaluated. Curve fitting runs in one worker thread
owned by the policy so that the experiment loop never waits for a fit: its decisions come back
through :meth:`EarlyStopPolicy.poll`.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from aup.config_problems import closest_key
from aup.errors import MISSING, ConfigError, Problem, install_hint, missing_modules

log = logging.getLogger(__name__)

POLICIES = ("bandit", "median", "truncation", "curve_fitting")

#: Fewest finite points a curve is fitted to.
MIN_CURVE_POINTS = 5


class EarlyStopOptions(BaseModel):
    """The validated ``resource_args.early_stop`` block (see the module docstring).

    Integers must be JSON integers (``"5"`` and ``true`` are rejected); numbers may be ints or
    floats. Unknown keys are rejected so that a typo cannot silently disable a setting.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
    aup_policy: str
    aup_policy_steps: StrictInt = Field(ge=1)
    warmup: StrictInt = Field(default=0, ge=0)
    bandit_factor: float = Field(default=0.5, gt=0, le=1)
    truncation_percentage: float = Field(default=0.3, gt=0, lt=1)
    curve_fitting_threshold: float = Field(default=0.95, gt=0, le=1)
    curve_fitting_max_iters: StrictInt | None = Field(default=None, ge=1)
    curve_fitting_timeout: float = Field(default=60.0, gt=0)
    min_peers: StrictInt = Field(default=2, ge=1)


_HINTS = {
    "aup_policy": "use one of " + ", ".join(POLICIES),
    "aup_policy_steps": "use an integer >= 1 (check every that many results)",
    "warmup": "use an integer >= 0 (results before the first decision)",
    "bandit_factor": "use a number in (0, 1], e.g. 0.5",
    "truncation_percentage": "use a fraction in (0, 1), e.g. 0.3",
    "curve_fitting_threshold": "use a number in (0, 1], e.g. 0.95",
    "curve_fitting_max_iters": "use an integer >= 1: how many results the script reports in all",
    "curve_fitting_timeout": "use a number of seconds > 0",
    "min_peers": "use an integer >= 1",
}


def _problems(options: Any) -> tuple[EarlyStopOptions | None, list[Problem]]:
    base = "resource_args.early_stop"
    if not isinstance(options, dict):
        return None, [Problem(base, "must be an object", options,
                              'e.g. {"aup_policy": "median", "aup_policy_steps": 5}')]
    problems: list[Problem] = []
    policy = options.get("aup_policy", MISSING)
    if policy is not MISSING and policy not in POLICIES:
        problems.append(Problem(base + ".aup_policy", "unknown early-stopping policy", policy,
                                _HINTS["aup_policy"]))
    parsed = None
    try:
        parsed = EarlyStopOptions.model_validate(options)
    except ValidationError as err:
        for e in err.errors():
            key = str(e["loc"][0]) if e["loc"] else ""
            if key == "aup_policy" and problems:
                continue
            if e["type"] == "missing":
                msg, value = "required key is missing", MISSING
            elif e["type"] == "extra_forbidden":
                msg, value = "unknown early-stopping option", e.get("input", MISSING)
            else:
                msg, value = e["msg"], e.get("input", MISSING)
            hint = _HINTS.get(key, "known options: " + ", ".join(EarlyStopOptions.model_fields))
            if e["type"] == "extra_forbidden":  # 'warm_up': as the top level's typos
                close = closest_key(key, EarlyStopOptions.model_fields)
                hint = f"did you mean '{close}'? " + hint if close else hint
            problems.append(Problem(f"{base}.{key}", msg, value, hint))
    if parsed is not None and not problems and parsed.aup_policy == "curve_fitting" \
            and parsed.curve_fitting_max_iters is None:
        problems.append(Problem(base + ".curve_fitting_max_iters", "required by the "
                                "curve_fitting policy", MISSING,
                                _HINTS["curve_fitting_max_iters"]))
    if parsed is not None and parsed.aup_policy == "curve_fitting" and missing_modules(("scipy",)):
        # found at load, not as a warning per job at run time with nothing ever stopped
        problems.append(Problem(base + ".aup_policy", "the curve_fitting policy needs the "
                                "Python package scipy, which is not installed",
                                "curve_fitting", install_hint("bo")))
    return (parsed if not problems else None), problems


def validate_early_stop(options: Any) -> list[Problem]:
    """Problems with ``resource_args.early_stop`` (empty when valid).

    Args:
        options: the JSON value of ``resource_args.early_stop``.

    Returns:
        One :class:`~aup.errors.Problem` per bad key, each naming the key path, the value and
        the fix.
    """
    return _problems(options)[1]


#: The options only one policy reads.
POLICY_OPTIONS = {
    "bandit": ("bandit_factor",),
    "truncation": ("truncation_percentage",),
    "curve_fitting": ("curve_fitting_threshold", "curve_fitting_max_iters",
                      "curve_fitting_timeout"),
}


def early_stop_warnings(options: Any) -> list[str]:
    """Warnings for a valid ``resource_args.early_stop`` whose settings cannot act: an option
    of another policy (``bandit_factor`` with ``median``: ignored, as 2.0 ignored it), and
    ``curve_fitting_max_iters`` below :data:`MIN_CURVE_POINTS` (no curve is ever fitted, so
    no job is ever stopped). Empty for an invalid block (its problems say enough)."""
    parsed, problems = _problems(options)
    if parsed is None or problems:
        return []
    base = "resource_args.early_stop"
    out = [f"{base}.{key} is ignored by policy '{parsed.aup_policy}' (an option of "
           f"'{policy}')"
           for policy, keys in POLICY_OPTIONS.items() if policy != parsed.aup_policy
           for key in keys if key in options]
    if (parsed.aup_policy == "curve_fitting" and parsed.curve_fitting_max_iters is not None
            and parsed.curve_fitting_max_iters < MIN_CURVE_POINTS):
        out.append(f"{base}.curve_fitting_max_iters is {parsed.curve_fitting_max_iters}: a curve "
                   f"is fitted to at least {MIN_CURVE_POINTS} results, so this policy never "
                   "stops a job; report more results, or use another policy")
    return out


def parse_early_stop(options: Any) -> EarlyStopOptions:
    """Validate ``resource_args.early_stop`` and return its options.

    Raises:
        ConfigError: listing every bad key.
    """
    parsed, problems = _problems(options)
    if problems or parsed is None:
        raise ConfigError(problems)
    return parsed


# -- pure rules ------------------------------------------------------------------------------------
def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def prefix_mean(history: Sequence[float], step: int) -> float | None:
    """Mean of the finite values among the first ``step`` values, or None if there is none."""
    vals = _finite(history[:step])
    return sum(vals) / len(vals) if vals else None


def prefix_best(history: Sequence[float], step: int) -> float | None:
    """Lowest finite loss among the first ``step`` values, or None if there is none."""
    vals = _finite(history[:step])
    return min(vals) if vals else None


def relative_margin(best: float, factor: float) -> float:
    """The worst loss still accepted next to ``best``: ``best + (1 - factor) * |best|``.

    In score terms for ``target: max`` and a positive best score ``B`` this is ``factor * B``,
    and for a negative one ``(2 - factor) * B``: Auptimizer 2.0's bandit and curve-fitting
    thresholds, written once for both targets.
    """
    return best + (1.0 - factor) * abs(best)


def median_rule(value: float, peer_values: Sequence[float]) -> bool:
    """Median stopping rule (Golovin et al. 2017, "Google Vizier", section 3.2.2).

    Args:
        value: the job's mean loss over the first ``step`` results.
        peer_values: the peers' mean losses over their first ``step`` results.

    Returns:
        True (stop) when ``value`` is worse (higher) than the median of the peers.
    """
    return bool(peer_values) and value > statistics.median(peer_values)


def bandit_rule(value: float, peer_values: Sequence[float], factor: float) -> bool:
    """Bandit rule: stop when the job's best loss is worse than the peers' best by more than a
    relative ``1 - factor`` (the slack policy of Auptimizer 2.0 / Azure ML's bandit policy).

    Args:
        value: the job's best loss over its first ``step`` results.
        peer_values: each peer's best loss over its first ``step`` results.
        factor: ``bandit_factor`` in (0, 1].
    """
    return bool(peer_values) and value > relative_margin(min(peer_values), factor)


def truncation_rule(value: float, peer_values: Sequence[float], percentage: float) -> bool:
    """Truncation rule: stop when the job ranks among the worst ``percentage`` of all jobs.

    Jobs are ranked by their best loss over the first ``step`` results, worst first; the job's
    1-based rank ``r`` among ``N = len(peer_values) + 1`` jobs counts ties in its favour (a tie
    ranks the job as the better one). Stop when ``r / N <= percentage``.
    """
    if not peer_values:
        return False
    n = len(peer_values) + 1
    rank = 1 + sum(1 for p in peer_values if p > value)
    # ties in the job's favour: it ranks after (better than) every peer it equals
    rank += sum(1 for p in peer_values if p == value)
    return rank / n <= percentage


# -- curve fitting -----------------------------------------------------------------------------------
def _curve_families() -> dict[str, tuple[Callable[..., Any], list[float]]]:
    import numpy as np

    def pow3(x, c, a, alpha):
        return c - a * np.power(x, -alpha)

    def exp3(x, c, a, b):
        return c - a * np.exp(-b * x)

    def linear(x, a, b):
        return a + b * x

    def log_linear(x, a, b):
        return a + b * np.log(x)

    def ilog2(x, c, a):
        return c - a / np.log(x + 1.0)

    def janoschek(x, alpha, beta, k, delta):
        return alpha - (alpha - beta) * np.exp(-k * np.power(x, delta))

    return {
        "pow3": (pow3, [1.0, 1.0, 0.5]),
        "exp3": (exp3, [1.0, 1.0, 0.1]),
        # A curve still rising in a straight line: every other family flattens, and their
        # median predicted 0.69 for 0.095 * x at x = 10 (0.95), which stopped the best job
        # (trial 55). Only kept when it fits about as well as the best family.
        "linear": (linear, [0.0, 0.1]),
        "log_linear": (log_linear, [0.0, 0.3]),
        "ilog2": (ilog2, [1.0, 1.0]),
        "janoschek": (janoschek, [1.0, 0.0, 0.1, 1.0]),
    }


def predict_final(history: Sequence[float], max_iters: int, timeout: float,
                  clock: Callable[[], float] = time.monotonic) -> float | None:
    """Extrapolate a learning curve of losses to step ``max_iters``.

    Fits a few parametric learning-curve families (power law, exponential, log-linear,
    inverse-log, Janoschek: families used by Domhan et al. 2015, "Speeding up automatic
    hyperparameter optimization of deep neural networks by extrapolation of learning curves";
    and a straight line, as in Auptimizer 2.0's list, for a curve that has not bent yet)
    with :func:`scipy.optimize.curve_fit` (least squares) to the finite values of ``history``
    at x = 1, 2, ..., keeps the fits whose root mean square error is within 1.5 times the best fit's
    (plus 1% of the curve's range), and returns the median of their predictions at
    ``max_iters``. A plain median instead of Domhan's MCMC model average keeps one prediction
    within milliseconds and robust to one wild family.

    Args:
        history: the job's losses, in order (NaN/inf ignored).
        max_iters: the x to predict at (``curve_fitting_max_iters``).
        timeout: seconds; families not fitted when it runs out are skipped.
        clock: monotonic clock (tests).

    Returns:
        The predicted loss, or None when fewer than ``MIN_CURVE_POINTS`` finite values exist, no
        family fits, or the time ran out before any fit.
    """
    import numpy as np
    from scipy.optimize import OptimizeWarning, curve_fit

    pts = [(i + 1, float(v)) for i, v in enumerate(history) if v is not None and math.isfinite(v)]
    if len(pts) < MIN_CURVE_POINTS:
        return None
    x = np.array([p[0] for p in pts], dtype=float)
    y = np.array([p[1] for p in pts], dtype=float)
    # Fit a rising curve from 0 to about 1 (the start values of every family assume it):
    # z = sign * (y - y[0]) / d, and map the prediction back.
    sign = 1.0 if y[-1] >= y[0] else -1.0
    d = float(np.max(np.abs(y - y[0])))
    if d == 0.0:
        return float(y[0])
    ys = sign * (y - y[0]) / d
    span = float(np.ptp(ys))
    deadline = clock() + timeout
    fits: list[tuple[float, float]] = []
    for _name, (fn, p0) in _curve_families().items():
        if clock() >= deadline:
            break
        if len(p0) >= len(x):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                params, _ = curve_fit(fn, x, ys, p0=p0, maxfev=2000)
                rmse = float(np.sqrt(np.mean((fn(x, *params) - ys) ** 2)))
                pred = float(fn(float(max_iters), *params))
        except (RuntimeError, ValueError, FloatingPointError, ZeroDivisionError):
            continue
        if math.isfinite(rmse) and math.isfinite(pred):
            fits.append((rmse, pred))
    if not fits:
        return None
    best_rmse = min(f[0] for f in fits)
    good = [pred for rmse, pred in fits if rmse <= 1.5 * best_rmse + 0.01 * span]
    return float(y[0]) + sign * d * statistics.median(good)


def curve_fitting_rule(history: Sequence[float], best_finished: float, max_iters: int,
                       threshold: float, timeout: float) -> bool:
    """Stop when the predicted final loss is worse than ``relative_margin(best_finished,
    threshold)``; no decision (False) when no prediction can be made."""
    pred = predict_final(history, max_iters, timeout)
    if pred is None:
        return False
    log.debug("curve fitting: predicted %.6g at step %d, best finished %.6g", pred, max_iters,
              best_finished)
    return pred > relative_margin(best_finished, threshold)


def _import_scipy() -> None:
    import scipy.optimize  # noqa: F401


# -- policies ----------------------------------------------------------------------------------------
class _Prefix:
    """Prefix means and bests of an immutable (finished) history, computed once."""

    __slots__ = ("means", "bests")

    def __init__(self, history: Sequence[float]):
        self.means: list[float | None] = [None]
        self.bests: list[float | None] = [None]
        total = 0.0
        count = 0
        best: float | None = None
        for v in history:
            if v is not None and math.isfinite(v):
                total += v
                count += 1
                best = v if best is None or v < best else best
            self.means.append(total / count if count else None)
            self.bests.append(best)


class EarlyStopPolicy:
    """Base of the policies: step bookkeeping, peers, loss conversion, disabled jobs.

    Args:
        options: the validated options.
        maximize: True for ``target: max`` (values are negated into losses).

    Call :meth:`should_stop` after each new result of a running job; call :meth:`poll` now and
    then for decisions computed in the background (curve fitting); :meth:`close` at the end.
    """

    name = ""
    #: "mean" or "best": which prefix statistic of each history the rule compares.
    statistic = "best"

    def __init__(self, options: EarlyStopOptions, maximize: bool):
        self.options = options
        self.maximize = maximize
        self._done_steps: dict[int, int] = {}
        self._disabled: set[int] = set()
        self._prefix: dict[int, _Prefix] = {}

    # -- interface used by the experiment loop -------------------------------------------------
    def should_stop(self, jid: int, history: Sequence[float],
                    running_peers: Mapping[int, Sequence[float]],
                    finished: Mapping[int, Sequence[float]], *,
                    full_length: int | None = None) -> bool:
        """Decide about job ``jid`` after its latest result.

        Args:
            jid: the job.
            history: its values so far (script direction, NaN allowed).
            running_peers: the other running jobs' histories, by jid.
            finished: histories of jobs that ended FINISHED or EARLY_STOPPED, by jid (never
                modified after they are added).
            full_length: the number of results of the longest FINISHED job (None while none
                finished): how many a complete training reports.

        Returns:
            True when the job should stop now. Never when the job has reported exactly as
            many results as a complete training (``full_length``, or
            ``curve_fitting_max_iters``): it is at its end, where stopping saves nothing and
            would turn a complete result into an early-stopped one, which can never be the
            best (trial 55).
        """
        if jid in self._disabled:
            return False
        n = len(history)
        if n < self.options.warmup:
            return False
        if self._at_end(n, full_length):
            return False
        k = self.options.aup_policy_steps
        step = (n // k) * k
        if step == 0 or self._done_steps.get(jid) == step:
            return False
        if self._diverged(jid, step, history, running_peers, finished):
            self._done_steps[jid] = step
            return True
        decision = self._decide(jid, step, history, running_peers, finished)
        if decision is not None:
            self._done_steps[jid] = step
        return bool(decision)

    def poll(self) -> list[int]:
        """Jobs whose background evaluation decided "stop" since the last call."""
        return []

    def _diverged(self, jid: int, step: int, history: Sequence[float],
                  running_peers: Mapping[int, Sequence[float]],
                  finished: Mapping[int, Sequence[float]]) -> bool:
        """True when the job's latest ``aup_policy_steps`` values are all NaN, infinite or
        missing while at
        least ``min_peers`` peers have a finite value at this step: a training that diverged.
        The rules compare finite values only, so such a job was never stopped (its earlier
        finite values, or none at all, were all they saw); Optuna's pruners likewise prune a
        trial whose intermediate values are all NaN. When no peer has a finite value either
        (a metric every job reports as NaN at first) nothing is decided."""
        # the latest values: a decision can come later than its step (warmup, min_peers), and
        # a job whose NaNs lie behind it has recovered (trial 69)
        window = history[-self.options.aup_policy_steps:]
        if any(v is not None and math.isfinite(v) for v in window):
            return False
        peers = self.peer_values(jid, step, running_peers, finished)
        if len(peers) < self.options.min_peers:
            return False
        log.info("job %d: %s policy says stop at step %d: its last %d value(s) are NaN or "
                 "infinite while %d peers have finite values", jid, self.name, step,
                 len(window), len(peers))
        return True

    def _at_end(self, n: int, full_length: int | None) -> bool:
        """True when a job with ``n`` results is at the end of a complete training: exactly
        the longest finished job's length. A job with more results than that is longer than
        the finished ones (one that stopped itself early, a Keras EarlyStopping, set the
        length): that estimate is short, and decisions go on (with ``>=`` a single job that
        stopped itself at 3 results switched early stopping off for every longer job, trial
        63)."""
        return full_length is not None and n == full_length

    def disable(self, jid: int) -> None:
        """Never stop job ``jid`` (after an error in the policy)."""
        self._disabled.add(jid)

    def forget(self, jid: int) -> None:
        """Drop bookkeeping of an ended job."""
        self._done_steps.pop(jid, None)

    def close(self) -> None:
        """Release background workers."""

    # -- helpers ----------------------------------------------------------------------------------
    def _loss_values(self, history: Sequence[float]) -> list[float]:
        if self.maximize:
            return [-v if v is not None else math.nan for v in history]
        return [v if v is not None else math.nan for v in history]

    def _stat(self, history: Sequence[float], step: int) -> float | None:
        losses = self._loss_values(history)
        return (prefix_mean if self.statistic == "mean" else prefix_best)(losses, step)

    def _finished_stat(self, jid: int, history: Sequence[float], step: int) -> float | None:
        pre = self._prefix.get(jid)
        if pre is None or len(pre.means) != len(history) + 1:
            pre = _Prefix(self._loss_values(history))
            self._prefix[jid] = pre
        if step >= len(pre.means):
            return None
        return pre.means[step] if self.statistic == "mean" else pre.bests[step]

    def peer_values(self, jid: int, step: int, running_peers: Mapping[int, Sequence[float]],
                    finished: Mapping[int, Sequence[float]]) -> list[float]:
        """The statistic of every peer that reached ``step`` with a finite value."""
        out: list[float] = []
        for pj, h in running_peers.items():
            if pj != jid and len(h) >= step:
                v = self._stat(h, step)
                if v is not None:
                    out.append(v)
        for pj, h in finished.items():
            if pj != jid and len(h) >= step:
                v = self._finished_stat(pj, h, step)
                if v is not None:
                    out.append(v)
        return out

    def _decide(self, jid: int, step: int, history: Sequence[float],
                running_peers: Mapping[int, Sequence[float]],
                finished: Mapping[int, Sequence[float]]) -> bool | None:
        """True/False once the step was evaluated; None to evaluate it again later."""
        value = self._stat(history, step)
        if value is None:
            return None
        peers = self.peer_values(jid, step, running_peers, finished)
        if len(peers) < self.options.min_peers:
            return None
        stop = self._rule(value, peers)
        if stop:
            log.info("job %d: %s policy says stop at step %d (value %.6g, %d peers)", jid,
                     self.name, step, -value if self.maximize else value, len(peers))
        return stop

    def _rule(self, value: float, peers: list[float]) -> bool:
        raise NotImplementedError


class MedianPolicy(EarlyStopPolicy):
    """``median``: stop a job whose running mean is worse than the median of its peers'."""

    name = "median"
    statistic = "mean"

    def _rule(self, value: float, peers: list[float]) -> bool:
        return median_rule(value, peers)


class BanditPolicy(EarlyStopPolicy):
    """``bandit``: stop a job whose best value is not within ``bandit_factor`` of the best."""

    name = "bandit"

    def _rule(self, value: float, peers: list[float]) -> bool:
        return bandit_rule(value, peers, self.options.bandit_factor)


class TruncationPolicy(EarlyStopPolicy):
    """``truncation``: stop a job ranked in the worst ``truncation_percentage``."""

    name = "truncation"

    def _rule(self, value: float, peers: list[float]) -> bool:
        return truncation_rule(value, peers, self.options.truncation_percentage)


class CurveFittingPolicy(EarlyStopPolicy):
    """``curve_fitting``: extrapolate the job's curve to ``curve_fitting_max_iters`` and stop it
    when the prediction is clearly worse than the best finished job.

    Needs at least one finished job with a finite value and ``MIN_CURVE_POINTS`` values of its
    own. The fit runs in a single worker thread; :meth:`poll` returns the jobs it condemned.
    """

    name = "curve_fitting"

    def __init__(self, options: EarlyStopOptions, maximize: bool):
        super().__init__(options, maximize)
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[int, Future] = {}
        self._best_cache: tuple[int, float | None] = (-1, None)
        # Import scipy in the worker now, so that the first fit does not pay for it.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aup-curve")
        self._pool.submit(_import_scipy)

    def _at_end(self, n: int, full_length: int | None) -> bool:
        # curve_fitting_max_iters is the training's length as the user gives it: at or past it
        # the extrapolation has nothing left to predict
        max_iters = self.options.curve_fitting_max_iters
        return super()._at_end(n, full_length) or (max_iters is not None and n >= max_iters)

    def _best_finished(self, finished: Mapping[int, Sequence[float]]) -> float | None:
        if self._best_cache[0] == len(finished):
            return self._best_cache[1]
        best = None
        for jid, h in finished.items():
            v = self._finished_stat(jid, h, len(h))
            if v is not None and (best is None or v < best):
                best = v
        self._best_cache = (len(finished), best)
        return best

    def _decide(self, jid, step, history, running_peers, finished):
        if jid in self._futures or step < MIN_CURVE_POINTS:
            return None
        best = self._best_finished(finished)
        if best is None:
            return None
        losses = self._loss_values(history[:step])
        if len(_finite(losses)) < MIN_CURVE_POINTS:
            return None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aup-curve")
        o = self.options
        self._futures[jid] = self._pool.submit(
            curve_fitting_rule, losses, best, int(o.curve_fitting_max_iters or step),
            o.curve_fitting_threshold, o.curve_fitting_timeout)
        return False  # evaluated (in the background): this step is done

    def poll(self) -> list[int]:
        if not self._futures:
            return []
        out = []
        for jid, fut in list(self._futures.items()):
            if not fut.done():
                continue
            del self._futures[jid]
            try:
                stop = fut.result()
            except Exception as err:  # noqa: BLE001 - a fit error disables the job, never more
                log.warning("job %d: early stopping disabled for this job after an error in "
                            "curve fitting: %r", jid, err)
                self.disable(jid)
                continue
            if stop and jid not in self._disabled:
                log.info("job %d: curve_fitting policy says stop", jid)
                out.append(jid)
        return out

    @property
    def busy(self) -> bool:
        """True while a fit is running or waiting."""
        return bool(self._futures)

    def forget(self, jid: int) -> None:
        super().forget(jid)
        fut = self._futures.pop(jid, None)
        if fut is not None:
            fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._futures.clear()


_CLASSES: dict[str, type[EarlyStopPolicy]] = {
    "median": MedianPolicy,
    "bandit": BanditPolicy,
    "truncation": TruncationPolicy,
    "curve_fitting": CurveFittingPolicy,
}


def make_policy(options: dict[str, Any] | EarlyStopOptions, maximize: bool) -> EarlyStopPolicy:
    """Build the configured policy.

    Args:
        options: ``resource_args.early_stop`` (a dict, validated here) or parsed options.
        maximize: True for ``target: max``.

    Raises:
        ConfigError: the options are invalid.
    """
    opts = options if isinstance(options, EarlyStopOptions) else parse_early_stop(options)
    return _CLASSES[opts.aup_policy](opts, maximize)
