"""Early stopping: the rules as pure functions (both targets, NaN, too few peers), option
validation, and every policy for both targets through the real CLI."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from lifecycle_helpers import experiment, finish, jobs, query, setup, start_cli

from aup.config import parse_config
from aup.early_stop import (
    EarlyStopOptions,
    bandit_rule,
    early_stop_warnings,
    make_policy,
    median_rule,
    predict_final,
    truncation_rule,
    validate_early_stop,
)
from aup.errors import ConfigError

# -- pure rules ----------------------------------------------------------------------------------


def test_median_rule():
    assert median_rule(3.0, [1.0, 2.0, 2.5])
    assert not median_rule(2.0, [1.0, 2.0, 2.5])  # equal to the median: go on
    assert not median_rule(5.0, [])


def test_bandit_rule_slack_is_relative_for_both_signs():
    # best loss 1.0, factor 0.5: losses up to 1.5 are fine
    assert not bandit_rule(1.5, [1.0, 4.0], 0.5)
    assert bandit_rule(1.6, [1.0, 4.0], 0.5)
    # best loss -2.0 (e.g. score 2 maximized): accepted up to -1.0
    assert not bandit_rule(-1.0, [-2.0], 0.5)
    assert bandit_rule(-0.9, [-2.0], 0.5)


def test_truncation_rule_ranks_ties_in_favour_of_the_job():
    peers = [1.0, 2.0, 3.0]
    assert truncation_rule(4.0, peers, 0.3)  # worst of 4: rank 1/4 <= 0.3
    assert not truncation_rule(2.5, peers, 0.3)
    assert not truncation_rule(3.0, peers, 0.3)  # tie with the worst: ranked better
    assert not truncation_rule(9.0, [], 0.3)


def _opts(**kw):
    base = {"aup_policy": "median", "aup_policy_steps": 2}
    base.update(kw)
    return base


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("policy", ["median", "bandit", "truncation"])
def test_policies_stop_the_bad_job_for_both_targets(policy, maximize):
    sign = -1.0 if maximize else 1.0  # scores in the script's direction
    good = [sign * v for v in (1.0, 0.8, 0.6, 0.5)]
    bad = [sign * v for v in (9.0, 8.0, 7.0, 6.0)]
    p = make_policy(_opts(aup_policy=policy, truncation_percentage=0.4), maximize)
    finished = {1: good, 2: [g * 1.1 for g in good], 3: [g * 1.2 for g in good]}
    assert not p.should_stop(10, good[:2], {11: bad[:2]}, finished)
    assert p.should_stop(11, bad[:2], {10: good[:2]}, finished)
    # evaluated once per step: the same step is not evaluated again
    assert not p.should_stop(11, bad[:3], {10: good[:2]}, finished)


def test_too_few_peers_and_warmup_give_no_decision():
    p = make_policy(_opts(aup_policy="bandit", warmup=4), maximize=False)
    assert not p.should_stop(5, [9.0, 9.0], {}, {1: [1.0, 1.0]})  # warmup
    assert not p.should_stop(5, [9.0] * 4, {}, {1: [1.0] * 4})  # one peer < min_peers 2
    assert p.should_stop(5, [9.0] * 4, {}, {1: [1.0] * 4, 2: [1.1] * 4})


def test_peers_that_did_not_reach_the_step_do_not_count():
    p = make_policy(_opts(aup_policy="median"), maximize=False)
    assert not p.should_stop(5, [9.0, 9.0, 9.0, 9.0], {}, {1: [1.0], 2: [1.0, 1.0, 1.0]})


def test_nan_values_are_ignored():
    nan = math.nan
    p = make_policy(_opts(aup_policy="median"), maximize=False)
    # NaN values are skipped: the job's mean of its finite values (9) is judged
    assert p.should_stop(5, [nan, nan, 9.0, 9.0], {}, {1: [1.0] * 4, 2: [1.0] * 4})
    p = make_policy(_opts(aup_policy="median"), maximize=False)
    assert not p.should_stop(5, [nan, 0.5, 0.5, 0.5], {}, {1: [1.0] * 4, 2: [1.0] * 4})
    # NaN in peers is skipped; a peer with only NaN up to the step is no peer
    p = make_policy(_opts(aup_policy="median"), maximize=False)
    assert not p.should_stop(5, [9.0, 9.0], {}, {1: [nan, 1.0], 2: [nan, nan]})
    # None (NULL from the database) is NaN
    p = make_policy(_opts(aup_policy="median"), maximize=True)
    assert p.should_stop(5, [-9.0, -9.0], {}, {1: [None, 1.0], 2: [2.0, None]})


@pytest.mark.parametrize("policy", ["median", "bandit", "truncation", "curve_fitting"])
@pytest.mark.parametrize("maximize", [False, True])
def test_a_job_reporting_only_nan_since_its_last_check_is_stopped(policy, maximize):
    # A diverged training: the rules see finite values only, so before this it ran to its end
    nan, inf = math.nan, math.inf
    good = [(-1.0 if maximize else 1.0)] * 6
    peers = {1: good, 2: good}
    extra = {"curve_fitting_max_iters": 50} if policy == "curve_fitting" else {}
    p = make_policy(_opts(aup_policy=policy, **extra), maximize=maximize)
    assert p.should_stop(5, [nan, None], {}, peers)  # only NaN/NULL from the start
    p = make_policy(_opts(aup_policy=policy, **extra), maximize=maximize)
    # good at first (the best of all), then NaN and inf since the previous check at step 2
    first = [(-0.1 if maximize else 0.1)] * 2
    assert not p.should_stop(5, first, {}, peers)
    assert p.should_stop(5, first + [nan, inf], {}, peers)
    # too few peers with a finite value at the step: every job reports NaN at first
    p = make_policy(_opts(aup_policy=policy, **extra), maximize=maximize)
    assert not p.should_stop(5, [nan, nan], {3: [nan, nan]}, {1: good, 2: [nan, nan]})
    # a finite value in the window: the rules decide (the job is the best: not stopped)
    p = make_policy(_opts(aup_policy=policy, **extra), maximize=maximize)
    assert not p.should_stop(5, [nan, first[0]], {}, peers)
    # trial 69: a decision late for its step (warmup 3, steps 2: step 2 judged at result 3)
    # looked at the step's window [nan, nan] and stopped a job whose latest value recovered
    p = make_policy(_opts(aup_policy=policy, warmup=3, **extra), maximize=maximize)
    assert not p.should_stop(5, [nan, nan, first[0]], {}, peers)


def test_disabled_job_is_never_stopped():
    p = make_policy(_opts(aup_policy="bandit"), maximize=False)
    p.disable(5)
    assert not p.should_stop(5, [9.0] * 2, {}, {1: [1.0] * 2, 2: [1.0] * 2})


@pytest.mark.parametrize("policy", ["median", "bandit", "truncation", "curve_fitting"])
def test_no_decision_once_a_job_reported_a_complete_training(policy):
    """Trial 55: a job was stopped at its last result line (while it saved a checkpoint) and
    recorded EARLY_STOPPED, so its complete and best result could never be the best."""
    p = make_policy(_opts(aup_policy=policy, aup_policy_steps=2, truncation_percentage=0.4,
                          curve_fitting_max_iters=4), maximize=False)
    try:
        finished = {1: [1.0] * 4, 2: [1.0] * 4}
        # mid-training the bad job is judged as before (curve fitting: one point short)
        if policy != "curve_fitting":
            assert p.should_stop(5, [9.0] * 2, {}, finished, full_length=4)
        # at the length of a complete training: no decision
        assert not p.should_stop(6, [9.0] * 4, {}, finished, full_length=4)
        # beyond it the finished jobs were shorter (one stopped itself early): judged, except
        # past curve fitting's own end (trial 63: one self-stopped job at 3 results switched
        # early stopping off for every longer job)
        longer = {9: [1.0] * 6, 10: [1.0] * 6}  # running peers as long as the job
        assert p.should_stop(7, [9.0] * 6, longer, finished, full_length=4) is (
            policy != "curve_fitting")
        if policy == "curve_fitting":  # its own end: curve_fitting_max_iters
            assert not p.should_stop(8, [9.0] * 4, {}, finished)
            assert not p.busy  # nothing was submitted
        else:  # unknown end (no job finished): judged
            assert p.should_stop(8, [9.0] * 4, {}, finished)
    finally:
        p.close()


def test_curve_prediction_both_directions():
    rising = [1 - math.exp(-0.2 * i) for i in range(1, 11)]
    pred = predict_final(rising, 40, timeout=10)
    assert pred is not None and abs(pred - (1 - math.exp(-8))) < 0.05
    pred = predict_final([-v for v in rising], 40, timeout=10)
    assert pred is not None and abs(pred + (1 - math.exp(-8))) < 0.05
    assert predict_final([1.0, math.nan, 2.0], 40, timeout=10) is None  # too few points


def test_curve_prediction_of_a_curve_still_rising_in_a_straight_line():
    """Trial 55: every family flattened, so the median predicted 0.69 for 0.095 * x at x = 10
    (0.95): curve_fitting stopped the best job at 7 of 10 results. Saturating curves keep their
    predictions."""
    straight = [0.095 * i for i in range(1, 8)]
    assert abs(predict_final(straight, 10, timeout=10) - 0.95) < 0.01
    assert abs(predict_final([-v for v in straight], 10, timeout=10) + 0.95) < 0.01
    bending = [0.2 * math.log(i) for i in range(1, 8)]
    assert abs(predict_final(bending, 30, timeout=10) - 0.2 * math.log(30)) < 0.01
    p = make_policy(_opts(aup_policy="curve_fitting", aup_policy_steps=7,
                          curve_fitting_max_iters=10), maximize=True)
    try:
        assert not p.should_stop(7, straight, {}, {1: [0.09 * i for i in range(1, 11)]})
        import time

        deadline = time.monotonic() + 20
        while p.busy and time.monotonic() < deadline:
            assert p.poll() == []  # not condemned: heading for 0.95 against a finished 0.9
            time.sleep(0.01)
        assert not p.busy and p.poll() == []
    finally:
        p.close()


def test_curve_fitting_policy_decides_in_the_background():
    import time

    p = make_policy(_opts(aup_policy="curve_fitting", aup_policy_steps=5,
                          curve_fitting_max_iters=30), maximize=True)
    try:
        good = [1 - math.exp(-0.3 * i) for i in range(1, 31)]
        bad = [0.3 * (1 - math.exp(-0.3 * i)) for i in range(1, 11)]
        assert not p.should_stop(7, bad[:4], {}, {1: good})  # fewer than 5 points
        assert not p.should_stop(7, bad[:5], {}, {1: good})  # submitted
        deadline = time.monotonic() + 20
        stopped: list[int] = []
        while not stopped and time.monotonic() < deadline:
            stopped = p.poll()
            time.sleep(0.01)
        assert stopped == [7]
        assert not p.should_stop(8, good[:5], {}, {1: good})
        deadline = time.monotonic() + 20
        while p.busy and time.monotonic() < deadline:
            assert p.poll() == []
            time.sleep(0.01)
    finally:
        p.close()


@pytest.mark.parametrize("options, key", [
    ({"aup_policy": "median", "aup_policy_steps": "5"}, "aup_policy_steps"),
    ({"aup_policy": "median", "aup_policy_steps": 5.0}, "aup_policy_steps"),
    ({"aup_policy": "median", "aup_policy_steps": True}, "aup_policy_steps"),
    ({"aup_policy": "median", "aup_policy_steps": 0}, "aup_policy_steps"),
    ({"aup_policy": "bandit", "aup_policy_steps": 1, "bandit_factor": "0.5"}, "bandit_factor"),
    ({"aup_policy": "bandit", "aup_policy_steps": 1, "bandit_factor": 1.5}, "bandit_factor"),
    ({"aup_policy": "median", "aup_policy_steps": 1, "warmup": -1}, "warmup"),
    ({"aup_policy": "truncation", "aup_policy_steps": 1, "truncation_percentage": 1},
     "truncation_percentage"),
    ({"aup_policy": "curve_fitting", "aup_policy_steps": 1}, "curve_fitting_max_iters"),
    ({"aup_policy": "curve_fitting", "aup_policy_steps": 1, "curve_fitting_max_iters": 9,
      "curve_fitting_timeout": "fast"}, "curve_fitting_timeout"),
    ({"aup_policy": "medain", "aup_policy_steps": 1}, "aup_policy"),
    ({"aup_policy_steps": 1}, "aup_policy"),
    ({"aup_policy": "median", "aup_policy_steps": 1, "warm_up": 3}, "warm_up"),
])
def test_wrong_options_are_config_errors_naming_the_key(options, key):
    problems = validate_early_stop(options)
    assert any(p.path == f"resource_args.early_stop.{key}" for p in problems), problems
    with pytest.raises(ConfigError):
        make_policy(options, maximize=False)


def test_defaults():
    o = EarlyStopOptions.model_validate({"aup_policy": "bandit", "aup_policy_steps": 3})
    assert (o.warmup, o.bandit_factor, o.truncation_percentage, o.curve_fitting_threshold,
            o.curve_fitting_timeout, o.curve_fitting_max_iters) == (0, 0.5, 0.3, 0.95, 60.0, None)


@pytest.mark.parametrize(("options", "warned"), [
    # an option of another policy was accepted without a word (trial 34)
    ({"aup_policy": "median", "bandit_factor": 0.1},
     ["bandit_factor is ignored by policy 'median' (an option of 'bandit')"]),
    ({"aup_policy": "bandit", "curve_fitting_max_iters": 20, "truncation_percentage": 0.2},
     ["truncation_percentage is ignored by policy 'bandit' (an option of 'truncation')",
      "curve_fitting_max_iters is ignored by policy 'bandit' (an option of 'curve_fitting')"]),
    # fewer results than a curve needs: the policy could never act
    ({"aup_policy": "curve_fitting", "curve_fitting_max_iters": 3},
     ["curve_fitting_max_iters is 3: a curve is fitted to at least 5 results"]),
    ({"aup_policy": "curve_fitting", "curve_fitting_max_iters": 5}, []),
    ({"aup_policy": "bandit", "bandit_factor": 0.1, "warmup": 2, "min_peers": 3}, []),
])
def test_settings_that_cannot_act_are_warned(options, warned):
    found = early_stop_warnings({"aup_policy_steps": 1, **options})
    assert len(found) == len(warned)
    for text, expected in zip(found, warned, strict=True):
        assert text.startswith("resource_args.early_stop.") and expected in text


def test_curve_fitting_without_scipy_is_refused_at_load(monkeypatch):
    """Trial 36: on a core install (no scipy) curve fitting was accepted, then every job
    logged an error and nothing was ever stopped."""
    monkeypatch.setitem(sys.modules, "scipy", None)  # as if not installed
    with pytest.raises(ConfigError) as err:
        parse_config({"script": "job.py", "parameter_config": [
            {"name": "x", "type": "float", "range": [0, 1]}], "resource_args": {"early_stop": {
            "aup_policy": "curve_fitting", "aup_policy_steps": 3,
            "curve_fitting_max_iters": 10}}}, check_files=False)
    text = str(err.value)
    assert "resource_args.early_stop.aup_policy" in text and "scipy" in text, text
    assert "auptimizer[bo]" in text, text


@pytest.mark.parametrize("track", [False, True, None])
def test_tracking_turned_off_next_to_early_stopping_is_warned(track):
    """Trial 36: an explicit "track_intermediate_results": false next to early_stop was
    overridden without a word."""
    ra = {"early_stop": {"aup_policy": "median", "aup_policy_steps": 3}}
    if track is not None:
        ra["track_intermediate_results"] = track
    cfg = parse_config({"script": "job.py", "resource_args": ra, "parameter_config": [
        {"name": "x", "type": "float", "range": [0, 1]}]}, check_files=False)
    warned = [w for w in cfg.warnings if "track_intermediate_results" in w]
    assert len(warned) == (track is False), cfg.warnings


def test_wrong_option_type_through_the_cli_exit_2_nothing_runs(tmp_path: Path):
    exp = setup(tmp_path, 'print("#Auptimizer: 1")\n',
                parameter_config=[{"name": "x", "type": "choice", "range": [1]}],
                resource_args={"early_stop": {"aup_policy": "median",
                                              "aup_policy_steps": "two"}})
    res = run_cli(str(exp), cwd=tmp_path)
    assert res.returncode == 2
    assert "resource_args.early_stop.aup_policy_steps" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "jobs").exists()


# -- through the CLI ---------------------------------------------------------------------------------
CURVES = """
import json, sys, time
cfg = json.load(open(sys.argv[-1]))
q = cfg["q"]
for i in range(1, 16):
    loss = q + 1.0 / i
    print("#Auptimizer:", loss if cfg["target"] == "min" else 10 - loss, flush=True)
    time.sleep(0.2 if q > 1 else 0.05)  # the bad job leaves time to be stopped
"""

POLICY_OPTIONS = {
    "median": {},
    "bandit": {},
    "truncation": {"truncation_percentage": 0.4},
    "curve_fitting": {"curve_fitting_max_iters": 15, "curve_fitting_timeout": 5},
}


@pytest.mark.parametrize("policy", sorted(POLICY_OPTIONS))
def test_policy_stops_the_bad_job_through_the_cli(tmp_path: Path, policy):
    es = {"aup_policy": policy, "aup_policy_steps": 5, **POLICY_OPTIONS[policy]}
    procs = {}
    for target in ("min", "max"):  # both targets, run side by side
        folder = tmp_path / target
        folder.mkdir()
        exp = setup(folder, CURVES, target=target, n_parallel=1,
                    parameter_config=[{"name": "q", "type": "choice",
                                       "range": [0.0, -0.05, 8.0]},
                                      {"name": "target", "type": "choice", "range": [target]}],
                    resource_args={"early_stop": es, "kill_grace": 1})
        procs[target] = start_cli(str(exp), cwd=folder)
    for target, proc in procs.items():
        folder = tmp_path / target
        rc, out, err = finish(proc, folder)
        assert rc == 0, out + err
        good1, good2, bad = jobs(folder)
        assert good1["status"] == good2["status"] == "FINISHED", target
        assert bad["status"] == "EARLY_STOPPED", (target, out + err)
        inter = query(folder, "SELECT score FROM intermediate_result WHERE jid = ? "
                              "ORDER BY num", (bad["jid"],))
        assert 5 <= len(inter) < 15, target
        assert bad["score"] == inter[-1]["score"]  # recorded with its last value
        assert "early-stopped 1" in out
        row = experiment(folder)
        assert row["status"] == "FINISHED"
        if policy == "median":  # 'aup list' counted only FINISHED jobs as done: 2/3
            listed = run_cli("list", cwd=folder)
            line = next(x for x in listed.stdout.splitlines() if " FINISHED " in x)
            assert " 3/3 " in line, listed.stdout
            # 'aup show' gives the rule that stopped it (the reason column was blank)
            (att,) = query(folder, "SELECT detail FROM job_attempt WHERE jid = ?",
                           (bad["jid"],))
            assert att["detail"]
            shown = run_cli("show", "1", cwd=folder, env={"COLUMNS": "500"})
            row_line = next(x for x in shown.stdout.splitlines() if "EARLY_STOPPED" in x)
            assert att["detail"] in row_line, shown.stdout
        # early stopping turns tracking on, and the stored configuration says so
        assert json.loads(row["exp_config"])["resource_args"]["track_intermediate_results"]


# CURVES, plus a SIGTERM handler that prints a "result" far better than any real one.
CURVES_WITH_HANDLER = """
import signal, sys
def on_term(signum, frame):
    print("#Auptimizer: -100", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
""" + CURVES


def test_a_result_printed_after_the_early_stop_is_not_the_score(tmp_path: Path):
    """Trial 36: a value printed after the early stop (here by a SIGTERM handler) became the
    job's score (-100, better than the best job), an intermediate result and a peer value."""
    exp = setup(tmp_path, CURVES_WITH_HANDLER, target="min", n_parallel=1,
                parameter_config=[{"name": "q", "type": "choice", "range": [0.0, -0.05, 8.0]},
                                  {"name": "target", "type": "choice", "range": ["min"]}],
                resource_args={"early_stop": {"aup_policy": "median", "aup_policy_steps": 5},
                               "kill_grace": 1})
    rc, out, err = finish(start_cli(str(exp), cwd=tmp_path), tmp_path)
    assert rc == 0, out + err
    bad = jobs(tmp_path)[2]
    assert bad["status"] == "EARLY_STOPPED", out + err
    inter = [r["score"] for r in query(
        tmp_path, "SELECT score FROM intermediate_result WHERE jid = ? ORDER BY num",
        (bad["jid"],))]
    assert -100 not in inter and min(inter) > 8, inter
    assert bad["score"] == inter[-1], (bad["score"], inter)
    best = run_cli("best", "1", cwd=tmp_path).stdout
    assert "-100" not in best, best


def test_finished_histories_survive_resume(tmp_path: Path):
    from aup.experiment import Experiment
    from aup.store.store import open_store

    es = {"aup_policy": "median", "aup_policy_steps": 2}
    script = 'for v in (3, 2, 1):\n    print("#Auptimizer:", v)\n'
    exp = setup(tmp_path, script, n_parallel=1,
                parameter_config=[{"name": "x", "type": "choice", "range": [1, 2]}],
                resource_args={"early_stop": es})
    assert run_cli(str(exp), cwd=tmp_path).returncode == 0
    store = open_store(f"sqlite:///{tmp_path / '.aup' / 'sqlite3.db'}")
    store.update_experiment(1, status="STOPPED")
    resumed = Experiment.resume(store, 1)
    assert resumed._histories == {1: [3.0, 2.0, 1.0], 2: [3.0, 2.0, 1.0]}
    store.close()


def test_an_error_in_the_policy_disables_it_for_that_job_only(tmp_path: Path, caplog):
    from aup.config import load_config
    from aup.experiment import Experiment, ExperimentStatus
    from aup.store.store import Store

    exp_path = setup(tmp_path, 'for v in (3, 2, 1):\n    print("#Auptimizer:", v)\n',
                     n_parallel=2,
                     parameter_config=[{"name": "x", "type": "choice", "range": [1, 2, 3]}],
                     resource_args={"early_stop": {"aup_policy": "median",
                                                   "aup_policy_steps": 1}})
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    exp = Experiment.create(load_config(exp_path), store)
    calls: list[int] = []

    def broken(jid, history, running, finished):
        calls.append(jid)
        raise ZeroDivisionError("policy bug")

    exp.early_stop.should_stop = broken
    disable = exp.early_stop.disable
    disabled: list[int] = []
    exp.early_stop.disable = lambda jid: (disabled.append(jid), disable(jid))
    with caplog.at_level("WARNING"):
        result = exp.run()
    store.close()
    assert result.status is ExperimentStatus.FINISHED and result.n_finished == 3
    assert sorted(set(disabled)) == [1, 2, 3]
    assert "early stopping disabled for this job" in caplog.text


FINAL_LINE_THEN_CHECKPOINT = """
import json, sys, time, aup
cfg = json.load(open(sys.argv[-1]))
for v in {0: [1, 1, 1, 1], 1: [1, 1, 1, 1], 2: [5, 5, 5, 0.1]}[cfg["x"]]:
    aup.print_result(v)
    time.sleep(0.05)
time.sleep(0.5)  # saving a checkpoint after the last epoch
"""


def test_a_job_at_its_last_result_is_not_stopped_and_can_be_the_best(tmp_path: Path):
    """Trial 55: with epochs a multiple of aup_policy_steps, the rule ran on a job's final
    result and killed it while it saved its model: recorded EARLY_STOPPED, the job with the
    best final score (0.1) was left out of 'aup best'. Kept over a resume too."""
    exp = setup(tmp_path, FINAL_LINE_THEN_CHECKPOINT, target="min", n_parallel=1,
                proposer="sequence",
                parameter_config=[{"name": "x", "type": "int", "range": [0, 2]}],
                resource_args={"early_stop": {"aup_policy": "median", "aup_policy_steps": 4}})
    rc, out, err = finish(start_cli(str(exp), cwd=tmp_path), tmp_path)
    assert rc == 0, out + err
    assert [j["status"] for j in jobs(tmp_path)] == ["FINISHED"] * 3, out + err
    best = json.loads(run_cli("best", "1", "--json", cwd=tmp_path).stdout)
    assert best["jid"] == 3 and best["score"] == 0.1, best

    from aup.experiment import Experiment
    from aup.store.store import open_store

    store = open_store(f"sqlite:///{tmp_path / '.aup' / 'sqlite3.db'}")
    try:
        store.update_experiment(1, status="STOPPED")
        assert Experiment.resume(store, 1)._full_lengths == {None: 4}
    finally:
        store.close()


ONE_RESULT_PER_EPOCH = """
import json, sys, time, aup
cfg = json.load(open(sys.argv[-1]))
for epoch in range(int(cfg["n_iterations"])):  # all alike for 2 epochs, then apart
    aup.print_result(0.0 if epoch < 2 else cfg["x"])
    time.sleep(0.05)
time.sleep(0.3)  # saving the checkpoint the next rung loads
"""


def test_a_job_at_its_own_budget_is_not_stopped_under_hyperband(tmp_path: Path):
    """Trial 65: a complete training's length was the longest FINISHED job's, whatever its
    budget, so once a budget-9 job had finished, budget-3 jobs were judged at their third and
    last result and killed while they saved their checkpoint (EARLY_STOPPED, exit -15)."""
    exp = setup(tmp_path, ONE_RESULT_PER_EPOCH, target="min", n_parallel=2,
                proposer="hyperband", max_iter=9, eta=3, random_seed=3,
                parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}],
                resource_args={"early_stop": {"aup_policy": "median", "aup_policy_steps": 1}})
    rc, out, err = finish(start_cli(str(exp), cwd=tmp_path), tmp_path, timeout=240)
    assert rc == 0, out + err
    rows = jobs(tmp_path)
    assert len(rows) == 22
    n_results = {r["jid"]: len(query(tmp_path, "SELECT * FROM intermediate_result WHERE jid = ?",
                                     (r["jid"],))) for r in rows}
    at_end = [(r["jid"], r["budget"], r["status"]) for r in rows
              if n_results[r["jid"]] >= r["budget"]]
    assert at_end and all(status == "FINISHED" for _, _, status in at_end), at_end
    stopped = [r for r in rows if r["status"] == "EARLY_STOPPED"]
    assert stopped, "the policy stopped nothing: the test shows nothing"
    assert all(n_results[r["jid"]] < r["budget"] for r in stopped)
