"""BOHB: Hyperband's schedule (shared), float budgets between min and max, the KDE model,
failures, resume, bad input and real CLI runs in both directions."""

from __future__ import annotations

import json
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_experiment, write_script
from proposer_helpers import drain, drain_with_restarts

from aup.config import parse_config
from aup.errors import ConfigError
from aup.proposers.bohb import BOHBOptions, BOHBProposer
from aup.proposers.schedule import SuccessiveHalving
from aup.space import ChoiceParam, FloatParam, IntParam, SearchSpace
from aup.store.store import Store, default_url

SPACE = SearchSpace((FloatParam("x", -1.0, 1.0), FloatParam("y", 1e-3, 1.0, log=True),
                     IntParam("k", 1, 8), ChoiceParam("c", ("a", "b", 3)),
                     ChoiceParam("const", ("same",))))


def loss(q) -> float:
    p = q.params
    return ((p["x"] - 0.3) ** 2 + (np.log10(p["y"]) + 2) ** 2 / 4 + abs(p["k"] - 3) / 8
            + (p["c"] != "b") * 0.5 + 0.3 / q.budget)


def test_reuses_the_hyperband_schedule_and_runs_every_rung():
    p = BOHBProposer(SPACE, BOHBOptions())
    assert isinstance(p.runner, SuccessiveHalving)
    assert p.schedule.s_max == 4 and p.total == 201
    assert [b.sizes for b in p.schedule.brackets] == [
        (81, 27, 9, 3, 1), (34, 11, 3, 1), (15, 5, 1), (8, 2)]
    props = drain(p, loss)
    assert len(props) == 201
    per_rung = Counter((q.bracket, q.rung) for q in props)
    assert all(per_rung[(b.index, i)] == n for b in p.schedule.brackets
               for i, n in enumerate(b.sizes))


def test_budgets_are_floats_between_min_and_max():
    p = BOHBProposer(SPACE, BOHBOptions(min_budget=1, max_budget=9, n_iterations=5))
    props = drain(p, loss)
    budgets = sorted({q.budget for q in props})
    assert budgets == [1.0, 3.0, 9.0] and all(isinstance(b, float) for b in budgets)
    assert [b.s for b in p.schedule.brackets] == [2, 1, 0, 2, 1]
    p = BOHBProposer(SPACE, BOHBOptions(min_budget=0.01, max_budget=1, n_iterations=1))
    q = p.ask()
    assert q.budget == pytest.approx(1 / 81) and 0.01 <= q.budget <= 1
    assert q.job_config()["n_iterations"] == pytest.approx(1 / 81)
    # trial 59: 0.9 * 3^-2 was 0.09999999999999999, so int(100 * budget) gave 9 in a script
    p = BOHBProposer(SPACE, BOHBOptions(min_budget=0.1, max_budget=0.9, n_iterations=3))
    assert sorted({q.budget for q in drain(p, loss)}) == [0.1, 0.3, 0.9]


def test_values_are_valid_plain_json():
    p = BOHBProposer(SPACE, BOHBOptions(random_fraction=0, min_budget=1, max_budget=9,
                                        n_iterations=6))
    for q in drain(p, loss):
        v = q.params
        assert type(v["x"]) is float and -1 <= v["x"] <= 1
        assert type(v["y"]) is float and 1e-3 <= v["y"] <= 1
        assert type(v["k"]) is int and 1 <= v["k"] <= 8
        assert v["c"] in ("a", "b", 3) and v["const"] == "same"
        json.dumps(q.to_dict())


def test_model_beats_random_sampling():
    """With the model on (random_fraction 0), new configurations of later brackets are better
    than those of a pure random run of the same schedule."""

    def later_rung0(random_fraction: float, seed: int) -> float:
        p = BOHBProposer(SPACE, BOHBOptions(random_fraction=random_fraction, min_budget=1,
                                            max_budget=9, n_iterations=8, random_seed=seed))
        props = drain(p, loss)
        late = [loss(q) - 0.3 / q.budget for q in props if q.bracket >= 4 and q.rung == 0]
        return float(np.mean(late))

    model = np.mean([later_rung0(0.0, s) for s in range(3)])
    rand = np.mean([later_rung0(1.0, s) for s in range(3)])
    assert model < 0.7 * rand, (model, rand)


@pytest.mark.parametrize("space", [
    SearchSpace((IntParam("a", 1, 4), IntParam("b", 1, 4))),
    SearchSpace((ChoiceParam("p", (1, 2, 3)), ChoiceParam("q", ("u", "v", "w")),
                 ChoiceParam("r", (True, False, None)))),
], ids=["ints-16", "choices-27"])
def test_model_configurations_differ_within_a_rung(space: SearchSpace):
    """Trial 35: the model's samples ignored the rung's configurations, so on a small discrete
    space one rung ran the same configuration up to 9 times (and promoted its copies)."""
    p = BOHBProposer(space, BOHBOptions(min_budget=1, max_budget=9, n_iterations=6,
                                        random_fraction=0.0, random_seed=0))
    props = drain(p, lambda q: zlib.crc32(q.key.encode()) % 7 / q.budget)
    for bracket in {q.bracket for q in props}:
        rung0 = [q.key for q in props if q.bracket == bracket and q.rung == 0]
        assert len(set(rung0)) == len(rung0), (bracket, Counter(rung0).most_common(2))


def test_model_uses_the_largest_budget_with_enough_points():
    p = BOHBProposer(SPACE, BOHBOptions(min_points_in_model=6, min_budget=1, max_budget=9))
    assert p._model() is None
    rng = np.random.default_rng(0)
    for level, n in ((0, 50), (1, 11), (2, 10)):
        p.obs[level] = [[list(rng.random(3)) + [float(rng.integers(3))], float(rng.random())]
                        for _ in range(n)]
    # Level 2: 6 good points leave 4 bad ones, not more than the 4 dimensions.
    assert p._model() is p._models[1][1]
    assert 2 not in p._models
    good, bad = p._models[1][1].good.data, p._models[1][1].bad.data
    assert good.shape == (6, 4) and bad.shape == (5, 4)  # max(6, 15% of 11) good, the rest bad
    # The good and bad sets never share a result (HpBandSter's split).
    rows = sorted(p.obs[1], key=lambda r: r[1])
    assert np.allclose(good, [r[0] for r in rows[:6]]) and np.allclose(bad, [r[0] for r in rows[6:]])
    # min_points_in_model is raised to dimensions + 1 = 5 (statsmodels needs n > d).
    assert BOHBProposer(SPACE, BOHBOptions(min_points_in_model=2)).n_min == 5


def test_failures_count_as_worst_and_never_stall():
    p = BOHBProposer(SPACE, BOHBOptions(min_budget=1, max_budget=9, n_iterations=4,
                                        random_fraction=0))
    props = drain(p, loss, fail=lambda q: q.params["c"] == "a")
    assert len(props) == p.total and p.n_failed > 0
    assert any(r[1] is None for rows in p.obs.values() for r in rows)


def test_all_failures_still_finish():
    p = BOHBProposer(SPACE, BOHBOptions(min_budget=1, max_budget=9))
    props = drain(p, loss, fail=lambda q: True)
    assert len(props) == p.total == p.n_failed


def test_parallel_asks_then_promotion():
    p = BOHBProposer(SPACE, BOHBOptions(min_budget=1, max_budget=9, n_iterations=1))
    first = [p.ask() for _ in range(9)]
    assert p.ask() is None and not p.finished
    assert len({q.key for q in first}) == 9
    for q in first:
        p.tell(q, loss(q))
    second = [p.ask() for _ in range(3)]
    assert all(q.rung == 1 and q.budget == 3.0 for q in second)
    best = sorted(first, key=loss)[:3]
    assert sorted(q.key for q in second) == sorted(q.key for q in best)


def test_resume_continues_exactly():
    opts = {"min_budget": 1, "max_budget": 9, "n_iterations": 5, "random_seed": 3,
            "min_points_in_model": 2, "random_fraction": 0.2}
    def fail(q):
        return q.id % 4 == 0

    got = drain_with_restarts(lambda: BOHBProposer(SPACE, BOHBOptions(**opts)), loss, 5, fail)
    p = BOHBProposer(SPACE, BOHBOptions(**opts))
    ref2 = drain(p, loss, fail)
    assert len(ref2) == p.total
    assert [(q.params, q.budget, q.bracket, q.rung) for q in got] == \
        [(q.params, q.budget, q.bracket, q.rung) for q in ref2]


def test_min_points_in_model_empty_string_means_default():
    opts = BOHBOptions(min_points_in_model="")
    assert opts.min_points_in_model is None
    assert BOHBProposer(SPACE, opts).n_min == 5  # 4 modelled dimensions + 1


# -- configuration errors ------------------------------------------------------------------------
BASE = {"script": "train.py", "proposer": "bohb",
        "parameter_config": [{"name": "x", "range": [0, 1], "type": "float"}]}


@pytest.mark.parametrize("key,value", [("eta", 1), ("min_budget", 0), ("min_budget", -1),
                                       ("min_budget", 5), ("max_budget", 0),
                                       ("n_iterations", 2.5), ("n_iterations", 0),
                                       ("top_n_percent", 0), ("random_fraction", 1.5),
                                       ("num_samples", 0), ("bandwidth_factor", 0),
                                       ("min_bandwidth", 0), ("min_points_in_model", 0),
                                       ("max_budget", float("inf")), ("min_budget", float("nan")),
                                       ("min_budget", 1e-300), ("n_iterations", 10**9)])
def test_bad_options_name_the_key(key, value):
    cfg = {**BASE, "min_budget": 1, "max_budget": 2, key: value}
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, check_files=False)
    assert [p.path for p in err.value.problems] == [key]


# -- real CLI runs -------------------------------------------------------------------------------
SCRIPT = """
import json, sys
cfg = json.load(open(sys.argv[-1]))
budget = float(cfg["n_iterations"])
# Intermediate results first: the job is judged by its final line.
print("#Auptimizer:", -999 if cfg["x"] > 0 else 999)
print("#Auptimizer:", cfg["x"] + 0.0 * budget)
"""


@pytest.mark.parametrize("target", ["min", "max"])
def test_cli_direction_budgets_and_bookkeeping(tmp_path: Path, target: str):
    write_script(tmp_path, "train.py", SCRIPT)
    exp = write_experiment(tmp_path, **{**BASE, "parameter_config": [
        {"name": "x", "range": [-1, 1], "type": "float"}], "target": target, "n_parallel": 2,
        "min_budget": 1, "max_budget": 9, "n_iterations": 2, "random_seed": 4})
    r = run_cli("run", str(exp), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    store = Store(default_url(tmp_path))
    jobs = store.jobs(1)
    assert len(jobs) == 13 + 6
    assert {j["budget"] for j in jobs} == {1.0, 3.0, 9.0}
    for j in jobs:
        assert j["job_config"]["n_iterations"] == j["budget"]
        assert j["bracket"] in (0, 1) and j["rung"] in (0, 1, 2)
        assert j["score"] == pytest.approx(j["job_config"]["x"])
    sign = 1 if target == "min" else -1
    for b in (0, 1):
        rung0 = [j for j in jobs if j["bracket"] == b and j["rung"] == 0]
        rung1 = [j for j in jobs if j["bracket"] == b and j["rung"] == 1]
        best = sorted(rung0, key=lambda j: sign * j["score"])[:len(rung1)]
        assert sorted(j["job_config"]["x"] for j in best) == \
            sorted(j["job_config"]["x"] for j in rung1)
    store.close()
