"""Multi-fidelity benchmark: random search at full budget vs ``hyperband`` vs ``bohb``.

Two tasks, both minimized:

* ``hartmann6``: the 6-d Hartmann function with a fidelity ``z = budget / max_budget``
  (budgets 1..81). As in Kandasamy et al. 2017 ("Multi-fidelity Bayesian Optimisation with
  Continuous Approximations", the multi-fidelity Hartmann used in the literature) the weights
  become ``alpha - 0.1 * (1 - z)`` (a bias that vanishes at full fidelity), and evaluations get
  Gaussian noise with standard deviation ``0.1 * (1 - z) + 0.01`` (low budgets are noisier).
  Regret = noise-free full-fidelity value of the incumbent minus the global minimum -3.32237.
* ``digits``: scikit-learn's SGDClassifier (logistic loss) on the bundled digits data
  (train/validation split fixed), budget = epochs 1..27. Each job trains ``budget`` epochs
  (``max_iter=budget, tol=None``; one ``fit`` call, which is about 5x cheaper per epoch than a
  ``partial_fit`` loop and trains the same passes). Loss = validation cross-entropy (continuous,
  unlike the error rate, whose 1/594 steps hide differences). Regret = full-budget validation
  loss of the incumbent minus the best full-budget loss seen anywhere in the run.
* ``digits-mlp``: scikit-learn's MLPClassifier with one hidden layer on the same split and with
  the same loss and regret; hidden units (8-128, log), ``alpha``, ``learning_rate_init``,
  ``batch_size`` (16-256, log), solver adam or sgd, momentum; budget = epochs 1..27 (no early
  stop). A harder space than the SGD one: random search at full budget is still far from the
  best configuration after 100 jobs there, while on ``digits`` every method ends within a few
  thousandths of it, so the comparison is mostly noise.

The incumbent of hyperband/bohb is the best result at the largest budget evaluated so far (as
in the BOHB paper); for random search, the best result. Proposers are driven directly with
``ask``/``tell`` (one job at a time, no subprocesses). Hyperband's outer loop is repeated (a
new seed per iteration, as in Li et al. 2018) until the budget is spent; bohb runs as many
brackets as the budget allows. Every method gets ``100 * max_budget`` (random: 100 full-budget
jobs); curves are the mean over seeds of regret against cumulative budget (sum of budgets).

Goals (issue 4): hyperband reaches random's regret after 100 full-budget jobs with at most 1/3
of that cumulative budget; bohb reaches hyperband's final regret with at most 1/2 of
hyperband's budget; schedule bookkeeping per proposal <= 5 ms.

Usage::

    python benchmarks/multifidelity.py            # 10 seeds, both tasks
    python benchmarks/multifidelity.py --quick    # 3 seeds, smaller horizon
    python benchmarks/multifidelity.py --task hartmann6 --out results.json
    python benchmarks/multifidelity.py --task digits-mlp
    python benchmarks/multifidelity.py --task digits-mlp --first-seed 10   # seeds 10-19
    python benchmarks/multifidelity.py --task digits-mlp --workers 2       # 2 seeds at a time
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aup.proposers.base import Proposer
from aup.proposers.bohb import BOHBOptions, BOHBProposer
from aup.proposers.hyperband import HyperbandOptions, HyperbandProposer
from aup.space import FloatParam, SearchSpace

# -- tasks ---------------------------------------------------------------------------------------
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
               [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                      [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
HARTMANN6_MIN = -3.32237


@dataclass
class Task:
    """A multi-fidelity objective.

    Attributes:
        name: task name.
        space: the search space.
        max_budget: the full budget (int); the smallest is ``max_budget / eta^s_max``.
        evaluate: ``(params, budget, rng) -> observed loss``.
        true_loss: ``params -> noise-free full-budget loss`` (for regret).
        optimum: the known minimum, or None (then the best true loss seen is used).
    """

    name: str
    space: SearchSpace
    max_budget: int
    evaluate: Callable[[dict[str, Any], float, np.random.Generator], float]
    true_loss: Callable[[dict[str, Any]], float]
    optimum: float | None = None
    cache: dict[str, float] = field(default_factory=dict)


def hartmann6(x: np.ndarray, z: float = 1.0) -> float:
    """Hartmann6 at fidelity ``z`` in (0, 1] (bias ``-0.1 (1 - z)`` on every weight)."""
    alpha = _ALPHA - 0.1 * (1.0 - z)
    return float(-np.sum(alpha * np.exp(-np.sum(_A * (x - _P) ** 2, axis=1))))


def hartmann_task() -> Task:
    space = SearchSpace(tuple(FloatParam(f"x{i}", 0.0, 1.0) for i in range(6)))
    max_budget = 81

    def vec(p: dict[str, Any]) -> np.ndarray:
        return np.array([p[f"x{i}"] for i in range(6)])

    def evaluate(p, budget, rng):
        z = budget / max_budget
        return hartmann6(vec(p), z) + rng.normal(0.0, 0.1 * (1.0 - z) + 0.01)

    return Task("hartmann6", space, max_budget, evaluate, lambda p: hartmann6(vec(p)),
                HARTMANN6_MIN)


def _digits_task(name: str, space: SearchSpace, make_model: Callable[[dict[str, Any], int], Any]
                 ) -> Task:
    """A live task on scikit-learn's digits: ``make_model(params, epochs)`` is fitted on a fixed
    2/3 split and scored by validation cross-entropy (a diverged model counts as uniform)."""
    from sklearn.datasets import load_digits
    from sklearn.metrics import log_loss
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    xtr, xva, ytr, yva = train_test_split(x, y, test_size=0.33, random_state=0, stratify=y)
    scaler = StandardScaler().fit(xtr)
    xtr, xva = scaler.transform(xtr), scaler.transform(xva)
    max_budget = 27
    memo: dict[tuple[str, int], float] = {}

    def train(p: dict[str, Any], epochs: int) -> float:
        key = (json.dumps(p, sort_keys=True), epochs)
        if key not in memo:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                try:
                    proba = make_model(p, epochs).fit(xtr, ytr).predict_proba(xva)
                except (ValueError, FloatingPointError):
                    proba = np.full((len(yva), 10), 0.1)
            bad = ~np.isfinite(proba).all(axis=1)
            proba[bad] = 0.1  # a diverged model predicts nothing: uniform
            proba = np.clip(proba, 1e-6, 1.0)
            proba /= proba.sum(axis=1, keepdims=True)
            memo[key] = float(log_loss(yva, proba, labels=list(range(10))))
        return memo[key]

    return Task(name, space, max_budget, lambda p, b, rng: train(p, int(round(b))),
                lambda p: train(p, max_budget), None)


def digits_task() -> Task:
    """SGDClassifier (logistic loss), epochs as the budget."""
    from sklearn.linear_model import SGDClassifier

    from aup.space import ChoiceParam

    space = SearchSpace((
        FloatParam("alpha", 1e-7, 1.0, log=True),
        FloatParam("eta0", 1e-5, 1.0, log=True),
        ChoiceParam("learning_rate", ("constant", "invscaling", "adaptive", "optimal")),
        ChoiceParam("penalty", ("l2", "l1", "elasticnet")),
        FloatParam("l1_ratio", 0.0, 1.0),
    ))
    return _digits_task("digits", space, lambda p, epochs: SGDClassifier(
        loss="log_loss", alpha=p["alpha"], eta0=p["eta0"], learning_rate=p["learning_rate"],
        penalty=p["penalty"], l1_ratio=p["l1_ratio"], max_iter=epochs, tol=None,
        random_state=0))


def digits_mlp_task() -> Task:
    """MLPClassifier with one hidden layer, epochs as the budget (no early stop)."""
    from sklearn.neural_network import MLPClassifier

    from aup.space import ChoiceParam, IntParam

    space = SearchSpace((
        IntParam("units", 8, 128, log=True),
        FloatParam("alpha", 1e-6, 1.0, log=True),
        FloatParam("learning_rate_init", 1e-5, 1.0, log=True),
        IntParam("batch_size", 16, 256, log=True),
        ChoiceParam("solver", ("adam", "sgd")),
        FloatParam("momentum", 0.0, 0.99),
    ))
    return _digits_task("digits-mlp", space, lambda p, epochs: MLPClassifier(
        (p["units"],), alpha=p["alpha"], solver=p["solver"],
        learning_rate_init=p["learning_rate_init"], batch_size=p["batch_size"],
        momentum=p["momentum"], max_iter=epochs, tol=0.0, n_iter_no_change=10**6,
        random_state=0))


# -- runs ----------------------------------------------------------------------------------------
@dataclass
class Trace:
    """Cumulative budget and the incumbent's true loss after each job."""

    budget: list[float] = field(default_factory=list)
    true_loss: list[float] = field(default_factory=list)
    seconds_per_ask: float = 0.0


def _drive(task: Task, proposers: Callable[[int], Proposer], limit: float, seed: int,
           full_only: bool = False) -> Trace:
    rng = np.random.default_rng(10_000 + seed)
    trace = Trace()
    spent, best_level, best = 0.0, -1.0, (math.inf, None)
    ask_time, n_ask = 0.0, 0
    k = 0
    while spent < limit:
        p = proposers(k)
        k += 1
        while spent < limit and not p.finished:
            t0 = time.perf_counter()
            q = p.ask()
            ask_time += time.perf_counter() - t0
            n_ask += 1
            budget = float(task.max_budget if full_only else q.budget)
            loss = task.evaluate(q.params, budget, rng)
            t0 = time.perf_counter()
            p.tell(q, loss)
            ask_time += time.perf_counter() - t0
            spent += budget
            if budget > best_level or (budget == best_level and loss < best[0]):
                best_level, best = budget, (loss, q.params)
            trace.budget.append(spent)
            trace.true_loss.append(task.true_loss(best[1]))
    trace.seconds_per_ask = ask_time / max(n_ask, 1)
    return trace


def run_random(task: Task, seed: int, limit: float) -> Trace:
    from aup.proposers.base import ProposerOptions
    from aup.proposers.random import RandomProposer

    n = int(math.ceil(limit / task.max_budget))
    return _drive(task, lambda k: RandomProposer(task.space, ProposerOptions(
        n_samples=n, random_seed=seed * 1000 + k)), limit, seed, full_only=True)


def run_hyperband(task: Task, seed: int, limit: float) -> Trace:
    return _drive(task, lambda k: HyperbandProposer(task.space, HyperbandOptions(
        max_iter=task.max_budget, eta=3, random_seed=seed * 1000 + k)), limit, seed)


def run_bohb(task: Task, seed: int, limit: float) -> Trace:
    return _drive(task, lambda k: BOHBProposer(task.space, BOHBOptions(
        min_budget=1, max_budget=task.max_budget, eta=3, n_iterations=1000,
        random_seed=seed * 1000 + k)), limit, seed)


def mean_curve(traces: list[Trace], grid: np.ndarray, optimum: float) -> np.ndarray:
    """Mean regret over seeds at each grid budget (step function; inf before the first job)."""
    out = []
    for t in traces:
        b = np.asarray(t.budget)
        r = np.asarray(t.true_loss) - optimum
        idx = np.searchsorted(b, grid, side="right") - 1
        out.append(np.where(idx >= 0, r[np.clip(idx, 0, None)], np.inf))
    return np.mean(out, axis=0)


def first_reach(curve: np.ndarray, grid: np.ndarray, level: float) -> float:
    """Smallest grid budget from which ``curve <= level`` holds for good (inf if never).

    Incumbent curves are not monotone (a new, larger budget can replace a lucky incumbent of a
    smaller one), so the first touch would flatter a method; this is the last crossing.
    """
    above = np.nonzero(curve > level * (1 + 1e-12) + 1e-15)[0]
    if len(above) == 0:
        return float(grid[0])
    if above[-1] == len(grid) - 1:
        return math.inf
    return float(grid[above[-1] + 1])


def bookkeeping_ms(n_rounds: int = 3) -> tuple[float, float]:
    """Milliseconds per proposal of the hyperband schedule (ask + tell + state_dict,
    R=243, eta=3: 611 jobs) and of bohb's ask (the KDE model, for information)."""
    space = SearchSpace(tuple(FloatParam(f"x{i}", 0.0, 1.0) for i in range(6)))
    times = []
    for r in range(n_rounds):
        p = HyperbandProposer(space, HyperbandOptions(max_iter=243, eta=3, random_seed=r))
        t0 = time.perf_counter()
        n = 0
        while not p.finished:
            q = p.ask()
            p.tell(q, q.params["x0"])
            p.state_dict()
            n += 1
        times.append((time.perf_counter() - t0) / n * 1000)
    task = hartmann_task()
    trace = run_bohb(task, 0, 30 * task.max_budget)
    return min(times), trace.seconds_per_ask * 1000


def _seed_runs(task_name: str, seed: int, limit: float) -> tuple[Trace, Trace, Trace]:
    """The random, hyperband and bohb runs of one seed (a unit of work for ``--workers``)."""
    task = TASKS[task_name]()
    return (run_random(task, seed, limit), run_hyperband(task, seed, limit),
            run_bohb(task, seed, limit))


def _one_thread() -> None:
    """Worker initializer: one BLAS/OpenMP thread per worker process (the workers share the
    machine's cores; the seeds' results do not depend on it)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def benchmark(task: Task, seeds: int, horizon_jobs: int, first_seed: int = 0,
              workers: int = 1) -> dict[str, Any]:
    """Run every method on ``seeds`` seeds of ``task`` (in ``workers`` processes) and compare
    their mean regret curves (see the module docstring)."""
    limit = float(horizon_jobs * task.max_budget)
    runs: dict[str, list[Trace]] = {"random": [], "hyperband": [], "bohb": []}
    t0 = time.perf_counter()
    seed_list = list(range(first_seed, first_seed + seeds))
    if workers > 1 and task.name in TASKS:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, initializer=_one_thread) as pool:
            results = list(pool.map(_seed_runs, [task.name] * len(seed_list), seed_list,
                                    [limit] * len(seed_list)))
    else:
        results = []
        for s in seed_list:
            results.append((run_random(task, s, limit), run_hyperband(task, s, limit),
                            run_bohb(task, s, limit)))
            print(f"  {task.name}: seed {s} done ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr)
    for random_trace, hb_trace, bohb_trace in results:
        runs["random"].append(random_trace)
        runs["hyperband"].append(hb_trace)
        runs["bohb"].append(bohb_trace)
    if task.optimum is not None:
        optimum = task.optimum
    else:
        optimum = min(min(t.true_loss) for ts in runs.values() for t in ts)
    grid = np.linspace(task.max_budget / 27, limit, 2000)
    curves = {k: mean_curve(v, grid, optimum) for k, v in runs.items()}
    random_final = float(curves["random"][-1])
    hb_final = float(curves["hyperband"][-1])
    hb_reach = first_reach(curves["hyperband"], grid, random_final)
    bohb_reach = first_reach(curves["bohb"], grid, hb_final)
    checkpoints = [0.1, 0.25, 0.5, 1.0]
    table = {k: {f"{int(c * 100)}%": float(np.interp(c * limit, grid, v)) for c in checkpoints}
             for k, v in curves.items()}
    return {
        "task": task.name, "seeds": seeds, "budget_limit": limit, "optimum": optimum,
        "regret_at_fraction_of_limit": table,
        "random_regret_after_jobs": random_final,
        "hyperband_budget_to_reach_random": hb_reach,
        "hyperband_ratio": hb_reach / limit,
        "hyperband_final_regret": hb_final,
        "bohb_budget_to_reach_hyperband_final": bohb_reach,
        "bohb_ratio": bohb_reach / limit,
        "pass_hyperband": hb_reach <= limit / 3,
        "pass_bohb": bohb_reach <= limit / 2,
        # Each seed's final regret per method: the mean curves above hide whether one seed or
        # all of them are behind.
        "final_regret_per_seed": {k: [float(t.true_loss[-1] - optimum) for t in v]
                                  for k, v in runs.items()},
        "first_seed": first_seed,
    }


TASKS: dict[str, Callable[[], Task]] = {"hartmann6": hartmann_task, "digits": digits_task,
                                        "digits-mlp": digits_mlp_task}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=[*TASKS, "all"], default="all")
    ap.add_argument("--seeds", type=int, default=None, help="default 10 (3 with --quick)")
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. +seeds-1")
    ap.add_argument("--quick", action="store_true", help="3 seeds, 40 full-budget jobs")
    ap.add_argument("--out", help="write the figures as JSON to this file")
    ap.add_argument("--workers", type=lambda v: max(1, int(v)), default=1,
                    help="seeds run in this many processes (one BLAS thread each)")
    args = ap.parse_args(argv)
    seeds = args.seeds or (3 if args.quick else 10)
    horizon = 40 if args.quick else 100
    tasks = list(TASKS.values()) if args.task == "all" else [TASKS[args.task]]
    hb_ms, bohb_ms = bookkeeping_ms()
    results: dict[str, Any] = {"bookkeeping_ms_per_proposal": hb_ms,
                               "bohb_ask_ms_per_proposal": bohb_ms, "tasks": []}
    print(f"schedule bookkeeping (hyperband ask+tell+state_dict): {hb_ms:.3f} ms/proposal "
          f"(goal <= 5 ms: {'PASS' if hb_ms <= 5 else 'FAIL'}); bohb ask+tell incl. KDE: "
          f"{bohb_ms:.2f} ms/proposal")
    for make in tasks:
        r = benchmark(make(), seeds, horizon, args.first_seed, args.workers)
        results["tasks"].append(r)
        lim = r["budget_limit"]
        print(f"\n{r['task']}: {seeds} seeds from {args.first_seed}, budget limit {lim:g} "
              f"({horizon} full-budget jobs)")
        print("  mean regret at a fraction of the budget limit:")
        for k, row in r["regret_at_fraction_of_limit"].items():
            print(f"    {k:10s} " + "  ".join(f"{c}: {v:.4f}" for c, v in row.items()))
        print(f"  random after {horizon} full-budget jobs: regret {r['random_regret_after_jobs']:.4f}")
        print(f"  hyperband reaches it with budget {r['hyperband_budget_to_reach_random']:.0f} "
              f"= {r['hyperband_ratio']:.3f} of random's (goal <= 1/3: "
              f"{'PASS' if r['pass_hyperband'] else 'FAIL'})")
        print(f"  hyperband final regret {r['hyperband_final_regret']:.4f}; bohb reaches it with "
              f"budget {r['bohb_budget_to_reach_hyperband_final']:.0f} = {r['bohb_ratio']:.3f} of "
              f"hyperband's (goal <= 1/2: {'PASS' if r['pass_bohb'] else 'FAIL'})")
        print(f"  final regret per seed (seeds {args.first_seed}..):")
        for k, vals in r["final_regret_per_seed"].items():
            print(f"    {k:10s} " + " ".join(f"{v:.4f}" for v in vals))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
