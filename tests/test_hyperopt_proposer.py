"""The ``hyperopt`` proposer: the real hyperopt algorithms behind an ask/tell adapter."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from aup.config import parse_config
from aup.errors import ConfigError
from aup.proposers.tpe_hyperopt import HyperoptOptions, HyperoptProposer
from aup.space import ChoiceParam, FloatParam, IntParam, SearchSpace


def f2(x: float, y: float) -> float:
    return (x - 0.3) ** 2 + (y + 1.0) ** 2 + 0.1 * math.sin(5 * x)


def test_same_proposals_as_hyperopt_fmin() -> None:
    """Driving tpe.suggest ourselves reproduces fmin exactly (same seeds, same history)."""
    from hyperopt import Trials, fmin, hp, tpe

    n = 30
    trials = Trials()
    fmin(lambda d: f2(d["x"], d["y"]), {"x": hp.uniform("x", -1, 1), "y": hp.uniform("y", -2, 2)},
         algo=tpe.suggest, max_evals=n, trials=trials, rstate=np.random.default_rng(7),
         show_progressbar=False)
    expected = [(t["misc"]["vals"]["x"][0], t["misc"]["vals"]["y"][0]) for t in trials.trials]

    space = SearchSpace((FloatParam("x", -1, 1), FloatParam("y", -2, 2)))
    proposer = HyperoptProposer(space, HyperoptOptions(n_samples=n, random_seed=7))
    got = []
    while not proposer.finished:
        p = proposer.ask()
        got.append((p.params["x"], p.params["y"]))
        proposer.tell(p, f2(p.params["x"], p.params["y"]))
    assert got == expected


@pytest.mark.parametrize("engine", ["tpe", "rand", "random", "anneal", "TPE"])
def test_engines(engine: str) -> None:
    space = SearchSpace((FloatParam("x", -1, 1), IntParam("n", 0, 2), ChoiceParam("c", ("a", 1))))
    proposer = HyperoptProposer(space, HyperoptOptions(n_samples=25, random_seed=0,
                                                       engine=engine, n_startup_jobs=5))
    best = math.inf
    while not proposer.finished:
        p = proposer.ask()
        loss = (p.params["x"] - 0.3) ** 2 + p.params["n"]
        best = min(best, loss)
        proposer.tell(p, loss)
    assert best < 0.05


def _config(**extra):
    return {"script": "train.py", "proposer": "hyperopt", "n_samples": 5,
            "parameter_config": [{"name": "x", "range": [0, 1], "type": "float"}], **extra}


@pytest.mark.parametrize("key,value", [("engine", "bogus"), ("engine", 3),
                                       ("n_startup_jobs", -1), ("n_startup_jobs", "x")])
def test_bad_options_are_config_errors_naming_the_key(key: str, value) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_config(**{key: value}), check_files=False)
    assert any(p.path == key for p in err.value.problems), err.value.problems


@pytest.mark.parametrize("engine,warned", [("rand", True), ("anneal", True), ("tpe", False)])
def test_n_startup_jobs_outside_tpe_is_warned(engine: str, warned: bool) -> None:
    # Trial 42: accepted silently with engine "rand", where it does nothing.
    config = parse_config(_config(engine=engine, n_startup_jobs=3), check_files=False)
    assert any("n_startup_jobs is ignored by engine" in w for w in config.warnings) == warned
    assert not any("n_startup_jobs is ignored" in w for w in parse_config(
        _config(engine=engine), check_files=False).warnings)


def test_a_range_wider_than_a_float_is_refused_at_load(tmp_path) -> None:
    # It passed --check, then numpy's uniform raised OverflowError at the first proposal (a
    # traceback and a FAILED experiment with no job).
    from aup.experiment import build_proposer

    config = parse_config({**_config(), "parameter_config": [
        {"name": "x", "range": [-1e308, 1e308], "type": "float"}]}, check_files=False)
    with pytest.raises(ConfigError) as err:
        build_proposer(config)
    assert "width high - low is more than the largest float" in err.value.render()


def test_failures_reach_hyperopt_as_fail_and_tpe_goes_on() -> None:
    space = SearchSpace((FloatParam("x", -1, 1),))
    proposer = HyperoptProposer(space, HyperoptOptions(n_samples=30, random_seed=1,
                                                       n_startup_jobs=5))
    statuses = []
    while not proposer.finished:
        p = proposer.ask()
        if p.params["x"] < 0:  # the left half always fails
            proposer.tell_failure(p)
            statuses.append("fail")
        else:
            proposer.tell(p, (p.params["x"] - 0.3) ** 2)
            statuses.append("ok")
    docs = proposer._trials.trials
    assert [d["result"]["status"] for d in docs] == statuses
    assert "fail" in statuses
    # TPE treats failures as bad: later proposals mostly avoid the failing half.
    assert statuses[-10:].count("ok") >= 7


def test_tid_in_job_config() -> None:
    # (a parameter named tid is refused at load: tests/test_config.py)
    p = HyperoptProposer(SearchSpace((FloatParam("x", 0, 1),)),
                         HyperoptOptions(n_samples=3)).ask()
    assert p.job_config()["tid"] == p.id == 0


def test_state_rebuilds_trials_with_statuses() -> None:
    space = SearchSpace((FloatParam("x", -1, 1), ChoiceParam("c", (None, "b"))))
    a = HyperoptProposer(space, HyperoptOptions(n_samples=12, random_seed=3))
    for i in range(6):
        p = a.ask()
        if i == 2:
            a.tell_failure(p)
        else:
            a.tell(p, p.params["x"] ** 2)
    running = a.ask()
    state = json.loads(json.dumps(a.state_dict()))
    b = HyperoptProposer(space, HyperoptOptions(n_samples=12, random_seed=3))
    b.load_state_dict(state)
    assert [(d["tid"], d["result"]["status"]) for d in b._trials.trials] == \
        [(d["tid"], d["result"]["status"]) for d in a._trials.trials]
    assert b._trials.trials[-1]["result"]["status"] == "running"
    a.tell(running, 0.5)
    b.tell(b.pending[running.id], 0.5)
    assert a.ask().params == b.ask().params


def test_int_bounds_inclusive_and_log_scale() -> None:
    space = SearchSpace((IntParam("n", 1, 3), IntParam("w", 1, 1000, log=True)))
    proposer = HyperoptProposer(space, HyperoptOptions(n_samples=60, random_seed=0,
                                                       engine="rand"))
    ns, ws = set(), []
    while not proposer.finished:
        p = proposer.ask()
        ns.add(p.params["n"])
        ws.append(p.params["w"])
        assert type(p.params["w"]) is int and 1 <= p.params["w"] <= 1000
        proposer.tell(p, 0.0)
    assert ns == {1, 2, 3}
    # log-uniform: about half of the draws below sqrt(1000) ~ 32
    assert 15 <= sum(w < 32 for w in ws) <= 45


def test_rosenbrock_example_runs(tmp_path, examples) -> None:
    """The example of docs/proposers.md, through the CLI."""
    import sqlite3

    from tests.conftest import run_cli

    db = tmp_path / "r.db"
    proc = run_cli("run", str(examples / "rosenbrock" / "experiment_hyperopt.json"),
                   "--db", f"sqlite:///{db}", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = list(sqlite3.connect(db).execute("SELECT score, job_config FROM job"))
    assert len(rows) == 30 and min(r[0] for r in rows) < 10
    assert sorted(json.loads(r[1])["tid"] for r in rows) == list(range(30))
