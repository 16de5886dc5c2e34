"""The contract every registered proposer keeps, run for each name in the registry.

A proposer added to :mod:`aup.proposers.registry` is covered by registration alone: it runs with
its default options (``FAST_OPTIONS`` only makes some of them cheaper; a proposer missing there
still runs). Multi-fidelity proposers whose number of jobs is not ``n_samples`` and whose
``ask()`` returns None while they wait for results are driven by :func:`drive`, which tells the
oldest pending result whenever ``ask()`` has nothing to give.

The last tests run the real CLI (``python -m aup``) on a 1-D quadratic job script for every
proposer, with ``target`` min and max.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aup.proposers import registry
from aup.proposers.base import Proposal, Proposer
from aup.space import ChoiceParam, FloatParam, IntParam, SearchSpace, config_key
from tests.conftest import run_cli, write_script

NAMES = registry.names()

#: Cheaper options for some proposers (tests stay fast); others run with their defaults.
FAST_OPTIONS: dict[str, dict[str, Any]] = {
    "spearmint": {"grid_size": 256, "engine_config": {"n_restarts": 1, "n_refine": 1}},
    "hyperband": {"max_iter": 9, "eta": 3},
    "bohb": {"n_iterations": 3, "min_budget": 1, "max_budget": 9},
    "hyperopt": {"n_startup_jobs": 8},
}

PLAIN_TYPES = (int, float, str, bool, type(None))


def make(name: str, space: SearchSpace, n_samples: int = 20, seed: int = 0,
         **extra: Any) -> Proposer:
    """A proposer of the registry built from its options model, as the config loader does."""
    cls = registry.get(name)
    raw = {"n_samples": n_samples, "random_seed": seed, **FAST_OPTIONS.get(name, {}), **extra}
    options = cls.Options.model_validate({k: v for k, v in raw.items()
                                          if k in cls.Options.model_fields})
    assert cls.check_space(space, options) == []
    return cls(space, options)


def assert_plain(value: Any) -> None:
    """Plain JSON types only (no numpy scalars, even those subclassing float)."""
    if isinstance(value, list):
        for v in value:
            assert_plain(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            assert type(k) is str
            assert_plain(v)
    else:
        assert type(value) in PLAIN_TYPES, f"{value!r} is a {type(value)}"


def drive(proposer: Proposer, loss: Callable[[Proposal], float | None], parallel: int = 1,
          max_jobs: int = 400, promotions_may_repeat: bool = False) -> list[Proposal]:
    """Ask/tell until the proposer is finished and nothing is pending.

    Keeps up to ``parallel`` proposals pending; when ``ask()`` returns None the oldest pending
    one is told. ``loss`` returning None means the job failed (``tell_failure``). A proposal
    that repeats a pending configuration (at the same budget) fails the test, except, with
    ``promotions_may_repeat``, a promotion (rung > 0), which its rung's results decide.

    Returns:
        every proposal, in the order asked.
    """
    asked: list[Proposal] = []
    pending: deque[Proposal] = deque()
    while len(asked) < max_jobs:
        while len(pending) < parallel and not proposer.finished:
            p = proposer.ask()
            if p is None:
                break
            running = {q.key for q in pending}
            assert p.key not in running or p.budget is not None and all(
                q.budget != p.budget for q in pending if q.key == p.key) or (
                promotions_may_repeat and (p.rung or 0) > 0), f"{p.params} is still running"
            assert_plain(p.job_config())
            pending.append(p)
            asked.append(p)
        if not pending:
            assert proposer.finished, "ask() returned None with nothing running"
            break
        p = pending.popleft()
        value = loss(p)
        if value is None:
            proposer.tell_failure(p)
        else:
            proposer.tell(p, value)
    return asked


def quad_space() -> SearchSpace:
    # ``n`` is the grid of the sequence proposer; the others ignore it.
    return SearchSpace((FloatParam("x", -1.0, 1.0, n=21),))


def best_of(asked: list[Proposal], loss: Callable[[Proposal], float]) -> Proposal:
    return min(asked, key=loss)


# -- optimization direction -----------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_minimize_finds_optimum_region(name: str) -> None:
    proposer = make(name, quad_space(), n_samples=25)

    def loss(p: Proposal) -> float:
        return (p.params["x"] - 0.3) ** 2

    asked = drive(proposer, loss)
    assert proposer.finished
    assert abs(best_of(asked, loss).params["x"] - 0.3) <= 0.1


@pytest.mark.parametrize("name", NAMES)
def test_maximize_finds_optimum_region(name: str) -> None:
    """A score to maximize reaches the proposer as loss = -score (the loop's rule)."""
    proposer = make(name, quad_space(), n_samples=25)

    def loss(p: Proposal) -> float:
        score = -((p.params["x"] + 0.4) ** 2)
        return -score

    asked = drive(proposer, loss)
    assert abs(best_of(asked, loss).params["x"] + 0.4) <= 0.1


# -- parameter types ------------------------------------------------------------------------
MIXED = SearchSpace((
    IntParam("n", 1, 3),
    IntParam("w", 1, 8, log=True),
    ChoiceParam("c", (1, "1", True, None, 1.5)),
    FloatParam("lr", 1e-4, 1e-1, log=True, n=4),
    FloatParam("k", 2.5, 2.5),
    IntParam("m", 4, 4),
    ChoiceParam("s", ("only",)),
))


def mixed_loss(p: Proposal) -> float:
    """Best at both int bounds, so the bounds get proposed."""
    v = p.params
    return -((v["n"] - 2) ** 2) - abs(v["w"] - 4.5) + 0.1 * math.log10(v["lr"])


@pytest.mark.parametrize("name", NAMES)
def test_types_bounds_choices_constants(name: str) -> None:
    proposer = make(name, MIXED, n_samples=30, seed=3)
    asked = drive(proposer, mixed_loss, parallel=2)
    assert asked
    seen_n, seen_c = set(), set()
    for p in asked:
        v = p.params
        assert list(v) == MIXED.names
        assert type(v["n"]) is int and 1 <= v["n"] <= 3
        assert type(v["w"]) is int and 1 <= v["w"] <= 8
        assert type(v["lr"]) is float and 1e-4 <= v["lr"] <= 1e-1
        assert type(v["k"]) is float and v["k"] == 2.5
        assert type(v["m"]) is int and v["m"] == 4
        assert v["s"] == "only"
        MIXED["c"].index(v["c"])  # raises unless the value and its JSON type are a choice
        seen_n.add(v["n"])
        seen_c.add(config_key({"c": v["c"]}))
        assert_plain(p.job_config())
    assert {1, 3} <= seen_n, f"int bounds are inclusive; saw {sorted(seen_n)}"
    assert len(seen_c) >= 3, "choices should be explored"


@pytest.mark.parametrize("name", NAMES)
def test_choice_values_keep_their_json_type(name: str) -> None:
    space = SearchSpace((ChoiceParam("c", (1, "1", True, None, 1.5)),))
    proposer = make(name, space, n_samples=15, seed=1)
    order = {config_key({"c": c}): i for i, c in enumerate(space["c"].choices)}

    def loss(p: Proposal) -> float:  # "1" (the string) is best
        return abs(order[config_key({"c": p.params["c"]})] - 1)

    asked = drive(proposer, loss)
    for p in asked:
        c = p.params["c"]
        assert config_key({"c": c}) in order
        assert type(c) in (int, str, bool, type(None), float)
    assert any(p.params["c"] == "1" and type(p.params["c"]) is str for p in asked)


# -- parallel asks, failures ----------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_parallel_asks_never_repeat_a_running_configuration(name: str) -> None:
    # 2 x 2 = 4 configurations; 4 asks without a tell must give 4 different ones.
    space = SearchSpace((ChoiceParam("a", ("u", "v")), IntParam("b", 0, 1)))
    proposer = make(name, space, n_samples=8, seed=5)
    got: list[Proposal] = []
    for _ in range(4):
        p = proposer.ask()
        if p is None:
            break
        got.append(p)
    assert got
    keys = [p.key for p in got]
    assert len(set(keys)) == len(keys), keys
    # Continuous space, more asks: still all different, and the run completes.
    proposer = make(name, quad_space(), n_samples=12, seed=5)
    drive(proposer, lambda p: (p.params["x"] - 0.3) ** 2, parallel=4)
    assert proposer.finished


@pytest.mark.parametrize("high", [6, 3], ids=["12-configs", "6-configs"])
@pytest.mark.parametrize("name", NAMES)
def test_a_learned_model_does_not_repeat_a_running_configuration(name: str, high: int) -> None:
    # Trial 48: in hyperopt's TPE phase, 3 jobs at once in a space of 6 configurations ran the
    # favourite configuration twice at the same time (TPE's draws all landed on it). With
    # fewer jobs running than configurations, a running one is never proposed again (12
    # here: more than a rung of hyperband's and bohb's first bracket, 9). A promotion may meet
    # the same configuration, drawn by the model for the next bracket, at its new budget.
    space = SearchSpace((IntParam("k", 1, high), ChoiceParam("opt", ("a", "b"))))
    if registry.get(name).gives_budget and high == 3:
        pytest.skip("a first rung of 9 jobs in 6 configurations repeats some of them")
    proposer = make(name, space, n_samples=30, seed=0, n_startup_jobs=2,
                    engine_config={"n_initial": 2})
    favourite = {"k": 1, "opt": "a"}
    drive(proposer, lambda p: 0.0 if p.params == favourite else 1.0 + p.params["k"],
          parallel=3, promotions_may_repeat=True)  # drive() fails on a repeat
    assert proposer.finished


@pytest.mark.parametrize("name", NAMES)
def test_failures_are_absorbed(name: str) -> None:
    proposer = make(name, quad_space(), n_samples=20, seed=2)
    count = {"n": 0}

    def loss(p: Proposal) -> float | None:
        count["n"] += 1
        return None if count["n"] % 3 == 0 else (p.params["x"] - 0.3) ** 2

    asked = drive(proposer, loss, parallel=2)
    assert proposer.finished
    assert proposer.n_failed >= 3
    assert proposer.n_failed + proposer.n_told == len(asked)


@pytest.mark.parametrize("name", NAMES)
def test_all_failures_still_finish(name: str) -> None:
    proposer = make(name, quad_space(), n_samples=8, seed=2)
    asked = drive(proposer, lambda p: None)
    assert proposer.finished and asked


# -- reproducibility and state --------------------------------------------------------------
def _trace(asked: list[Proposal]) -> list[tuple[str, Any]]:
    return [(p.key, p.budget) for p in asked]


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_proposals(name: str) -> None:
    def loss(p: Proposal) -> float:
        return (p.params["x"] - 0.3) ** 2 + 0.01 * p.params["n"]

    space = SearchSpace((FloatParam("x", -1, 1, n=5), IntParam("n", 0, 4)))
    a = drive(make(name, space, n_samples=14, seed=11), loss, parallel=2)
    b = drive(make(name, space, n_samples=14, seed=11), loss, parallel=2)
    assert _trace(a) == _trace(b)


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_continues_identically(name: str) -> None:
    space = SearchSpace((FloatParam("x", -1, 1, n=9), ChoiceParam("c", ("a", 2, None)),
                         IntParam("n", 0, 5)))

    def loss(p: Proposal) -> float:
        return (p.params["x"] - 0.3) ** 2 + (0.5 if p.params["c"] is None else 0.0) \
            + 0.1 * abs(p.params["n"] - 2)

    original = make(name, space, n_samples=24, seed=4)
    first = drive(original, loss, max_jobs=10)
    # Two more asks, left pending across the save.
    extra = [p for p in (original.ask(), original.ask()) if p is not None]
    state = json.loads(json.dumps(original.state_dict()))
    assert_plain(state)

    resumed = make(name, space, n_samples=24, seed=4)
    resumed.load_state_dict(state)
    assert sorted(resumed.pending) == sorted(original.pending)
    assert resumed.n_asked == original.n_asked and resumed.finished == original.finished

    def finish(proposer: Proposer) -> list[Proposal]:
        for p in sorted(proposer.pending.values(), key=lambda q: q.id):
            proposer.tell(p, loss(p))
        return drive(proposer, loss, parallel=2)

    rest_a = finish(original)
    rest_b = finish(resumed)
    assert first and (extra or original.finished)
    assert _trace(rest_a) == _trace(rest_b)
    assert original.finished and resumed.finished


# -- points_to_evaluate (warm start) ---------------------------------------------------------
WARM = [{"n": 3, "w": 8, "c": "1", "lr": 0.001}, {"n": 1, "w": 1, "c": None, "lr": 0.1,
                                                    "k": 2.5, "m": 4, "s": "only"}]


@pytest.mark.parametrize("name", NAMES)
def test_points_to_evaluate_run_first_or_are_refused_at_load(name: str) -> None:
    # Trial 42: no way to start from known-good configurations (Optuna's enqueue_trial, Ray
    # Tune's and hyperopt's points_to_evaluate). Every proposer either runs them first, typed
    # as the space says and told like any result, or refuses them at load.
    from aup.config import parse_config
    from aup.errors import ConfigError

    cls = registry.get(name)
    if not cls.accepts_points:
        cfg = {"script": "x.py", "proposer": name, "points_to_evaluate": [{"x": 0.5}],
               "parameter_config": [{"name": "x", "type": "float", "range": [0, 1]}],
               **FAST_OPTIONS.get(name, {})}
        with pytest.raises(ConfigError) as err:
            parse_config(cfg, check_files=False)
        assert [p.path for p in err.value.problems] == ["points_to_evaluate"]
        return
    proposer = make(name, MIXED, n_samples=12, seed=1, points_to_evaluate=WARM)
    first = proposer.ask()
    state = json.loads(json.dumps(proposer.state_dict()))  # paused between the two points
    second = proposer.ask()
    assert first.params == {"n": 3, "w": 8, "c": "1", "lr": 0.001, "k": 2.5, "m": 4,
                            "s": "only"}
    assert second.params["c"] is None and type(second.params["lr"]) is float
    assert type(first.params["w"]) is int and type(first.params["c"]) is str
    proposer.tell(first, mixed_loss(first))
    proposer.tell_failure(second)
    rest = drive(proposer, mixed_loss)
    assert len(rest) == 10 and all(q.params != first.params for q in rest)
    # a resume between the two points goes on with the second one
    again = make(name, MIXED, n_samples=12, seed=1, points_to_evaluate=WARM)
    again.load_state_dict(state)
    assert again.ask().params == second.params


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_is_plain_json(name: str) -> None:
    proposer = make(name, MIXED, n_samples=12, seed=0)
    drive(proposer, mixed_loss, parallel=3, max_jobs=12)
    state = proposer.state_dict()
    assert_plain(json.loads(json.dumps(state)))
    json.dumps(state, allow_nan=False)


# -- end to end through the CLI -------------------------------------------------------------
QUAD_SCRIPT = """
import json, sys
cfg = json.load(open(sys.argv[-1]))
value = (cfg["x"] - 0.3) ** 2
print("#Auptimizer:", value if sys.argv[1] == "min" else -value)
"""

#: experiment.json keys that keep the end-to-end runs short.
E2E_OPTIONS: dict[str, dict[str, Any]] = {
    "spearmint": {"grid_size": 1024},
    "hyperband": {"max_iter": 9, "eta": 3},
    "bohb": {"n_iterations": 4, "min_budget": 1, "max_budget": 9},
    "hyperopt": {"n_startup_jobs": 6},
}


@pytest.mark.parametrize("target", ["min", "max"])
@pytest.mark.parametrize("name", NAMES)
def test_cli_end_to_end_quadratic(name: str, target: str, tmp_path: Path) -> None:
    write_script(tmp_path, "quad.py", QUAD_SCRIPT)
    cfg = {"name": f"quad_{name}_{target}", "script": f"quad.py {target}", "proposer": name,
           "n_samples": 16, "n_parallel": 2, "target": target, "random_seed": 1,
           "parameter_config": [{"name": "x", "range": [-1, 1], "type": "float", "n": 21}],
           **E2E_OPTIONS.get(name, {})}
    (tmp_path / "exp.json").write_text(json.dumps(cfg), encoding="utf-8")
    run = run_cli("run", "-q", "exp.json", cwd=tmp_path, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    best = run_cli("best", cfg["name"], "--json", cwd=tmp_path)
    assert best.returncode == 0, best.stdout + best.stderr
    job = json.loads(best.stdout)
    x = job["job_config"]["x"]
    assert type(x) is float
    # A wrong direction would end at a bound (|x - 0.3| >= 0.7); a short random-based run is
    # allowed to land 0.3 away.
    assert abs(x - 0.3) <= 0.3, job
    # the script negates the quadratic for max: <= 0 (0 exactly when the grid hits x = 0.3)
    assert job["score"] >= 0 if target == "min" else job["score"] <= 0
