"""experiment.json validation: defaults, path resolution, and a clear error for each mistake."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aup.config import load_config, parse_config
from aup.errors import ConfigError
from tests.conftest import run_cli, write_experiment, write_script

PARAMS = [{"name": "x", "range": [0, 1], "type": "float"}]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_script(tmp_path, "train.py", "print('#Auptimizer:1')\n")
    return tmp_path


def test_seed_defaults(folder: Path) -> None:
    cfg = load_config(write_experiment(folder, script="train.py", parameter_config=PARAMS))
    assert cfg.proposer == "random"
    assert cfg.n_samples == 10
    assert cfg.n_parallel == 1
    assert cfg.job_failure.job_retries == 0
    assert cfg.job_failure.ignore_fail is False
    assert cfg.target == "max"
    assert cfg.workingdir == "./"
    assert cfg.resource == "cpu"
    assert cfg.experiment_name == "experiment"  # the file's stem


def test_relative_paths_resolve_against_the_experiment_folder(folder: Path, tmp_path_factory
                                                               ) -> None:
    (folder / "sub").mkdir()
    write_script(folder / "sub", "job.py", "print('#Auptimizer:1')\n")
    path = write_experiment(folder, "e.json", script="job.py", workingdir="sub",
                            parameter_config=PARAMS)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    import os

    old = os.getcwd()
    os.chdir(elsewhere)
    try:
        cfg = load_config(path)
    finally:
        os.chdir(old)
    assert cfg.workingdir_path == (folder / "sub").resolve()
    assert cfg.script_path() == (folder / "sub" / "job.py").resolve()
    assert cfg.experiment_name == "e"


def test_non_executable_python_script_runs_under_current_python(folder: Path) -> None:
    import sys

    cfg = load_config(write_experiment(folder, script="train.py --fast", parameter_config=PARAMS))
    assert cfg.job_command() == [sys.executable, str(folder / "train.py"), "--fast"]


def test_unknown_keys_warn(folder: Path) -> None:
    cfg = load_config(write_experiment(folder, script="train.py", parameter_config=PARAMS,
                                       learning_rat=1))
    assert any("learning_rat" in w for w in cfg.warnings)


def test_unknown_keys_name_the_proposer_they_belong_to_and_close_keys(folder: Path) -> None:
    # hyperband's max_iter given to bohb, and "log_scale" for "log", were ignored without a hint
    # (bohb then ran its default budgets, and the parameter was searched on a linear scale).
    # ("log_scale": true is an error now: test_another_tools_log_scale_is_named)
    cfg = load_config(write_experiment(folder, script="train.py", proposer="random",
                                       max_iter=27,
                                       parameter_config=[{"name": "lr", "type": "float",
                                                          "range": [1e-4, 1],
                                                          "log_scal": True}]))
    assert ("unknown key 'max_iter' is ignored (an option of proposer 'hyperband', not of "
            "'random'; see docs/multifidelity.md)" in cfg.warnings[0])  # where it is listed
    assert cfg.warnings[1] == ("unknown key 'parameter_config[0].log_scal' is ignored "
                               "(did you mean 'log'?)")
    cfg = load_config(write_experiment(folder, script="train.py", typo_key=1,
                                       parameter_config=PARAMS))
    assert cfg.warnings == ["unknown key 'typo_key' is ignored"]


@pytest.mark.parametrize(("extra", "path", "fix"), [
    # trial 59: each of these ran the default schedule (bohb: 1,516 jobs instead of 18;
    # hyperband: max_iter 81, 206 jobs) or maximized a loss, after one warning line
    ({"proposer": "bohb", "min_buget": 1, "max_budget": 9}, "min_buget",
     "did you mean 'min_budget'?"),
    ({"proposer": "hyperband", "max_budget": 9}, "max_budget", '"max_iter"'),
    ({"proposer": "hyperband", "max_iter": 9, "grace_period": 1}, "grace_period",
     '"proposer": "bohb"'),
    ({"proposer": "bohb", "max_iter": 27}, "max_iter", '"max_budget"'),
    ({"proposer": "bohb", "max_budget": 27, "reduction_factor": 3}, "reduction_factor",
     '"eta"'),
    ({"proposer": "hyperband", "max_iters": 9}, "max_iters", "did you mean 'max_iter'?"),
    ({"mode": "min"}, "mode", 'write "target": "min" instead of "mode"'),
    ({"direction": "maximize"}, "direction", 'write "target": "max"'),
    # trial 62: other tools' names for the number of jobs ran the default 10
    ({"n_trials": 20}, "n_trials", 'write "n_samples": 20 instead of "n_trials"'),
    ({"proposer": "spearmint", "num_samples": 50}, "num_samples", '"n_samples": 50'),
    ({"proposer": "hyperopt", "max_evals": 30}, "max_evals", '"n_samples": 30'),
    # trial 72: Optuna / Ray Tune names that ran random search, seed 0, one job at a time or
    # no early stopping after one warning line
    ({"sampler": "TPESampler"}, "sampler", 'write "proposer": "hyperopt" instead of "sampler"'),
    ({"search_alg": "bayesopt"}, "search_alg", '"proposer": "spearmint"'),
    ({"sampler": "cmaes"}, "sampler", "hyperopt (TPE), spearmint (GP)"),
    ({"optimizer": "tpe"}, "optimizer", '"proposer": "hyperopt"'),
    ({"seed": 3}, "seed", 'write "random_seed": 3 instead of "seed"'),
    ({"n_jobs": 2}, "n_jobs", 'write "n_parallel": 2 instead of "n_jobs"'),
    ({"max_concurrent_trials": 4}, "max_concurrent_trials", '"n_parallel": 4'),
    # trial 73: joblib's -1 ("all CPUs") is no valid n_parallel: the fix gives a number
    ({"n_jobs": -1}, "n_jobs", f'"n_parallel": {os.cpu_count() or 2} (the jobs at once'),
    ({"seed": None}, "seed", '"random_seed": 0 (any whole number >= 0)'),
    ({"pruner": {"type": "median"}}, "pruner", "resource_args.early_stop"),
    ({"scheduler": "asha"}, "scheduler", "hyperband and bohb"),
    ({"early_stop": {"aup_policy": "median"}}, "early_stop",
     'move it into "resource_args": {"early_stop": {"aup_policy": "median"}}'),
    ({"save_model": True}, "save_model", 'move it into "resource_args"'),
    ({"ignore_fail": True}, "ignore_fail", 'move it into "job_failure"'),
    ({"proposer": "tpe"}, "proposer", 'write "proposer": "hyperopt"'),
    ({"proposer": "ASHA"}, "proposer", 'write "proposer": "hyperband"'),
])
def test_unknown_keys_that_change_the_schedule_or_direction_are_errors(
        folder: Path, extra: dict, path: str, fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_experiment(folder, script="train.py", parameter_config=PARAMS,
                                     **extra))
    problems = info.value.problems
    assert [p.path for p in problems] == [path]
    assert fix in problems[0].hint


@pytest.mark.parametrize("extra", [
    {"proposer": "hyperband", "max_iter": 9, "max_iters": 9},  # the real key is given too
    {"proposer": "bohb", "max_budget": 9, "max_iter": 9},
    {"mode": "min", "target": "min"},
    {"proposer": "random", "min_buget": 1},  # no schedule: nothing depends on it
    {"n_trials": 20, "n_samples": 20},
    {"proposer": "sequence", "n_trials": 20},  # a grid: the number of jobs is its size
    {"sampler": "tpe", "proposer": "hyperopt", "n_samples": 30},
    {"seed": 1, "random_seed": 1},
    {"n_jobs": 2, "n_parallel": 2},
    {"optimizer": "adam"},  # a model's optimizer, not a search algorithm: only warned about
    {"proposer": "sequence", "seed": 1},  # a grid has no randomness (trial 73)
    {"scheduler": None},  # asks for nothing
])
def test_leftover_keys_beside_the_real_ones_are_warnings(folder: Path, extra: dict) -> None:
    cfg = load_config(write_experiment(folder, script="train.py", parameter_config=PARAMS,
                                       **extra))
    assert len(cfg.warnings) == 1 and "is ignored" in cfg.warnings[0]


def test_the_search_space_under_another_tools_name_is_named(folder: Path) -> None:
    # trial 62: "search_space" got "parameter_config: required key is missing" and a warning
    path = write_experiment(folder, script="train.py", search_space=PARAMS)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.path == "parameter_config"
    assert problem.hint.startswith('rename "search_space" (NNI\'s and Ray Tune\'s name) to '
                                   '"parameter_config"'), problem.hint


def test_a_ray_tune_scheduler_option_gets_the_hint_for_budgets(folder: Path) -> None:
    # trial 59: min_resource got "did you mean 'resource'?" (where jobs run)
    cfg = load_config(write_experiment(folder, script="train.py", parameter_config=PARAMS,
                                       min_resource=1, grace_period=1))
    assert len(cfg.warnings) == 2 and "did you mean" not in " ".join(cfg.warnings)
    assert all("'hyperband'" in w and "early_stop" in w for w in cfg.warnings)


def test_unknown_keys_are_listed_with_the_problems(folder: Path) -> None:
    # One round of fixes: a file with errors also shows its unknown keys (a typo of n_samples
    # may be why the user is confused), after the problems.
    path = write_experiment(folder, script="train.py", n_sample=5, n_parallel=0,
                            parameter_config=[{"name": "x", "range": [1, 0], "type": "float"}])
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = info.value.render()
    assert "2 problems" in text and "n_parallel" in text and "parameter_config[0].range" in text
    assert text.index("also (warnings):") > text.index("parameter_config[0].range")
    assert "'n_sample' is ignored (did you mean 'n_samples'?)" in text


def _nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


BROKEN = {
    "missing script": ({"parameter_config": PARAMS}, "script", "required key is missing"),
    "unknown proposer": ({"script": "train.py", "proposer": "grid_search",
                          "parameter_config": PARAMS}, "proposer", "unknown proposer"),
    "unknown resource": ({"script": "train.py", "resource": "tpu", "parameter_config": PARAMS},
                         "resource", "unknown resource"),
    "reversed range": ({"script": "train.py", "parameter_config": [
        {"name": "x", "range": [1, 0], "type": "float"}]}, "parameter_config[0].range",
        "lower bound is above upper bound"),
    "log bound <= 0": ({"script": "train.py", "parameter_config": [
        {"name": "x", "range": [0, 1], "type": "float", "log": True}]},
        "parameter_config[0].range", "log scale needs bounds > 0"),
    "empty choice": ({"script": "train.py", "parameter_config": [
        {"name": "x", "range": [], "type": "choice"}]}, "parameter_config[0].range",
        "at least one value"),
    "unknown type": ({"script": "train.py", "parameter_config": [
        {"name": "x", "range": [0, 1], "type": "double"}]}, "parameter_config[0].type",
        "not an allowed value"),
    "n_samples wrong type": ({"script": "train.py", "n_samples": "ten",
                              "parameter_config": PARAMS}, "n_samples", "valid integer"),
    "n_parallel 0": ({"script": "train.py", "n_parallel": 0, "parameter_config": PARAMS},
                     "n_parallel", "greater than or equal to 1"),
    "script does not exist": ({"script": "missing.py", "parameter_config": PARAMS}, "script",
                              "does not exist"),
    "workingdir does not exist": ({"script": "train.py", "workingdir": "nowhere",
                                   "parameter_config": PARAMS}, "workingdir", "does not exist"),
    "target": ({"script": "train.py", "target": "maximize", "parameter_config": PARAMS},
               "target", "not an allowed value"),
    "no parameters": ({"script": "train.py", "parameter_config": []}, "parameter_config",
                      "at least 1"),
    "duplicate name": ({"script": "train.py", "parameter_config": PARAMS + PARAMS},
                       "parameter_config[1].name", "duplicate"),
    "int bounds not whole": ({"script": "train.py", "parameter_config": [
        {"name": "k", "range": [0.5, 3], "type": "int"}]}, "parameter_config[0].range",
        "whole numbers"),
    "range not a list": ({"script": "train.py", "parameter_config": [
        {"name": "x", "range": "0-1", "type": "float"}]}, "parameter_config[0].range",
        "valid list"),
    "job_retries negative": ({"script": "train.py", "job_failure": {"job_retries": -1},
                              "parameter_config": PARAMS}, "job_failure.job_retries",
                             "greater than or equal to 0"),
    "top level not an object": ([1, 2], "", "must be a JSON object"),
    "repeated label": ({"script": "train.py", "parameter_config": PARAMS,
                        "resource_args": {"multi_res_labels": ["acc", "acc"]}},
                       "resource_args.multi_res_labels", "the label 'acc' is given twice"),
    "empty label": ({"script": "train.py", "parameter_config": PARAMS,
                     "resource_args": {"multi_res_labels": ["acc", " "]}},
                    "resource_args.multi_res_labels", "a label is empty"),
    # a newline broke the tables like one in a name (trial 36)
    "label with a newline": ({"script": "train.py", "parameter_config": PARAMS,
                              "resource_args": {"multi_res_labels": ["acc", "a\nb"]}},
                             "resource_args.multi_res_labels", "control or invisible characters (U+000A)"),
    # aup_args drops the protocol's keys from every job config: such a parameter never
    # reached the job's function (tid: the trial id hyperopt adds)
    "parameter named tid": ({"script": "train.py", "parameter_config": [
        {"name": "tid", "range": [5, 9], "type": "int"}]}, "parameter_config[0].name",
        "reserved for the job protocol"),
    "parameter named job_id": ({"script": "train.py", "parameter_config": [
        {"name": "job_id", "range": [5, 9], "type": "int"}]}, "parameter_config[0].name",
        "reserved for the job protocol"),
    "repeated choice": ({"script": "train.py", "parameter_config": [
        {"name": "k", "range": ["a", 1, "a"], "type": "choice"}]}, "parameter_config[0].range",
        'the choice "a" is listed twice'),
    # passed --check, then the run exhausted the memory building 1e11 slots (or raised
    # MemoryError) and left the experiment RUNNING
    "n_parallel huge": ({"script": "train.py", "n_parallel": 100000000000,
                         "parameter_config": PARAMS}, "n_parallel", "less than or equal to 10000"),
    # passed --check, then SQLite could not store the planned job count (OverflowError)
    "n_samples beyond 64 bits": ({"script": "train.py", "n_samples": 10**23,
                                  "parameter_config": PARAMS}, "n_samples",
                                 "less than or equal to 1000000000"),
    # passed --check, then an IndexError traceback at every run and resume
    "blank script": ({"script": "   ", "parameter_config": PARAMS}, "script",
                     "the script is blank"),
    "NUL in script": ({"script": "train.py\x00x", "parameter_config": PARAMS}, "script",
                      "NUL character"),
    "NUL in workingdir": ({"script": "train.py", "workingdir": "a\x00b",
                           "parameter_config": PARAMS}, "workingdir", "NUL character"),
    "NUL in storage": ({"script": "train.py", "storage": "a\x00b.db",
                        "parameter_config": PARAMS}, "storage", "NUL character"),
    # passed --check, then every job failed to start
    "env name with =": ({"script": "train.py", "runtime_args": {"env": {"A=B": "1"}},
                         "parameter_config": PARAMS}, 'runtime_args.env["A=B"]',
                        "not an environment variable name"),
    "empty env name": ({"script": "train.py", "runtime_args": {"env": {"": "1"}},
                        "parameter_config": PARAMS}, 'runtime_args.env[""]',
                       "not an environment variable name"),
    "NUL in env value": ({"script": "train.py", "runtime_args": {"env": {"A": "1\x00"}},
                          "parameter_config": PARAMS}, "runtime_args.env.A", "NUL character"),
    # trial 45: passed --check, then every job failed START_FAILED ("embedded null byte")
    "NUL in prescript": ({"script": "train.py", "runtime_args": {"prescript": "\x00"},
                          "parameter_config": PARAMS}, "runtime_args.prescript", "NUL character"),
    "NUL in postscript": ({"script": "train.py", "runtime_args": {"postscript": "echo \x00"},
                           "parameter_config": PARAMS}, "runtime_args.postscript",
                          "NUL character"),
    "control character in name": ({"script": "train.py", "name": "a\nb",
                                   "parameter_config": PARAMS}, "name", "U+000A"),
    "invisible character in parameter name": ({"script": "train.py", "parameter_config": [
        {"name": "x\u200b", "range": [0, 1], "type": "float"}]}, "parameter_config[0].name",
        "U+200B"),
    "name too long": ({"script": "train.py", "name": "n" * 300, "parameter_config": PARAMS},
                      "name", "at most 255"),
    # n was dropped silently: 5 jobs instead of 3
    "interval and n": ({"script": "train.py", "proposer": "sequence", "parameter_config": [
        {"name": "x", "range": [0, 1], "type": "float", "interval": 0.25, "n": 3}]},
        "parameter_config[0].n", "not both"),
    # passed --check, then pydantic could not serialize it for the database
    "nested too deep": ({"script": "train.py", "parameter_config": [
        {"name": "c", "type": "choice", "range": [_nested(70)]}]}, "",
        "nested more than 64 levels"),
}


def test_choices_of_different_json_types_are_not_repeats(folder: Path) -> None:
    cfg = parse_config({"script": "train.py", "parameter_config": [
        {"name": "k", "range": [1, 1.0, "1", True, "true", None], "type": "choice"}]}, folder)
    assert len(cfg.space.params[0].choices) == 6


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_configs_name_key_value_and_fix(folder: Path, case: str) -> None:
    data, path, message = BROKEN[case]
    with pytest.raises(ConfigError) as info:
        parse_config(data, folder)
    problems = [p for p in info.value.problems if p.path == path]
    assert problems, f"no problem reported at {path!r}: {info.value}"
    assert message in problems[0].message or message in info.value.render()


def test_every_problem_is_reported_at_once(folder: Path) -> None:
    data = {"script": "missing.py", "n_parallel": 0, "target": "up", "parameter_config": [
        {"name": "x", "range": [1, 0], "type": "float"},
        {"name": "y", "range": [], "type": "choice"}]}
    with pytest.raises(ConfigError) as info:
        parse_config(data, folder)
    paths = {p.path for p in info.value.problems}
    assert {"script", "n_parallel", "target", "parameter_config[0].range",
            "parameter_config[1].range"} <= paths


def test_nested_checks_report_with_the_top_level_problems(folder: Path) -> None:
    """Trial 55: the early_stop options and the proposer's space checks were reported only
    once the top-level problems were fixed (a second batch after the first)."""
    data = {"script": "train.py", "n_parallel": "2", "proposer": "bohb",
            "min_budget": 10, "max_budget": 1, "parameter_config": PARAMS,
            "resource_args": {"early_stop": {"aup_policy": "medain", "aup_policy_steps": 2,
                                             "warm_up": 2}}}
    with pytest.raises(ConfigError) as info:
        parse_config(data, folder)
    by_path = {p.path: p for p in info.value.problems}
    assert {"n_parallel", "min_budget", "resource_args.early_stop.aup_policy",
            "resource_args.early_stop.warm_up"} <= set(by_path), info.value.render()
    assert "did you mean 'warmup'?" in by_path["resource_args.early_stop.warm_up"].hint
    # a non-object early_stop is one problem, not two
    data["resource_args"]["early_stop"] = "median"
    with pytest.raises(ConfigError) as info:
        parse_config(data, folder)
    assert [p.path for p in info.value.problems].count("resource_args.early_stop") == 1, \
        info.value.render()


@pytest.mark.parametrize("data, where, says", [
    ({"proposer": "passive"}, "proposer", 'write "resource": "passive" with any proposer'),
    ({"proposer": "EAS"}, "proposer", "2.0's eas (a demo of architecture search"),
])
def test_2_0_names_are_explained_where_they_are_refused(folder: Path, data, where,
                                                        says) -> None:
    """Trial 56: 2.0's names got only 'unknown proposer'; the docs held the explanation."""
    with pytest.raises(ConfigError) as info:
        parse_config({"script": "train.py", "parameter_config": PARAMS, **data}, folder)
    (problem,) = [p for p in info.value.problems if p.path == where]
    assert says in problem.hint and "use one of" in problem.hint, problem.hint


def test_2_0_env_ini_mappings_in_resource_args_name_the_key_to_write(folder: Path) -> None:
    cfg = parse_config({"script": "train.py", "parameter_config": PARAMS, "resource": "gpu",
                        "resource_args": {"gpus": [0], "gpu_mapping": {"1": "0"}}}, folder)
    assert any("'resource_args.gpu_mapping' is ignored by resource 'gpu' (it is a key of "
               "env.ini (aup setup --gpu 0,1); in experiment.json write resource_args "
               "\"gpus\": [0, 1])" in w for w in cfg.warnings), cfg.warnings


def test_every_bad_env_entry_is_reported_at_once(folder: Path) -> None:
    # A bad name was only reported once a value of the wrong type had been fixed.
    data = {"script": "train.py", "parameter_config": PARAMS, "runtime_args": {"env": {
        "X": 2, "A=B": "1", "OK": "fine", "N": "a\x00"}}}
    with pytest.raises(ConfigError) as info:
        parse_config(data, folder)
    assert {p.path for p in info.value.problems} == {
        "runtime_args.env.X", 'runtime_args.env["A=B"]', "runtime_args.env.N"}


def test_cli_reports_bad_config_with_exit_2_and_no_traceback(folder: Path) -> None:
    path = write_experiment(folder, script="train.py", n_parallel=0, parameter_config=[
        {"name": "x", "range": [1, 0], "type": "float"}])
    proc = run_cli("run", str(path), cwd=folder)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "n_parallel" in proc.stderr and "parameter_config[0].range" in proc.stderr
    assert "swap them" in proc.stderr
    # nothing was written: no database, no jobs folder
    assert not (folder / ".aup").exists()
    assert not (folder / "jobs").exists()


def test_cli_non_json_file(folder: Path) -> None:
    bad = folder / "bad.json"
    bad.write_text('{"script": "train.py",', encoding="utf-8")
    proc = run_cli("run", str(bad), cwd=folder)
    assert proc.returncode == 2
    assert "not valid JSON" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_missing_file(folder: Path) -> None:
    proc = run_cli("run", str(folder / "absent.json"), cwd=folder)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_a_pipe_as_experiment_file(folder: Path) -> None:
    os.mkfifo(folder / "exp.json")
    proc = run_cli("run", str(folder / "exp.json"), cwd=folder, timeout=30)
    assert proc.returncode == 2
    assert "not a regular file" in proc.stderr and "Traceback" not in proc.stderr


def test_check_flag_validates_without_writing(folder: Path) -> None:
    path = write_experiment(folder, script="train.py", parameter_config=PARAMS)
    proc = run_cli("run", "--check", str(path), cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout
    assert not (folder / ".aup").exists()


@pytest.mark.parametrize(("resource", "needle"), [("gpu", 'resource "gpu" has no GPU ids'),
                                                   ("node", 'resource "node" has no hosts')])
def test_check_flag_refuses_a_resource_that_run_would_refuse(folder: Path, resource: str,
                                                             needle: str) -> None:
    # --check runs the resource's checks that need no connection: no GPU ids, no hosts.
    path = write_experiment(folder, script="train.py", parameter_config=PARAMS,
                            resource=resource)
    for args in (("run", "--check", str(path)), ("run", str(path))):
        proc = run_cli(*args, cwd=folder, env={"HOME": str(folder)})
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert not (folder / ".aup" / "sqlite3.db").exists()


def test_stored_config_has_defaults_filled(folder: Path) -> None:
    cfg = load_config(write_experiment(folder, script="train.py", parameter_config=PARAMS))
    stored = json.loads(json.dumps(cfg.to_json_dict()))
    assert stored["n_samples"] == 10 and stored["target"] == "max"
    assert stored["job_failure"] == {"job_retries": 0, "ignore_fail": False}


def test_a_grid_too_large_names_the_limit(folder: Path) -> None:
    # The message said "the grid has 10010000 points (got 10010000)" without the limit.
    with pytest.raises(ConfigError) as info:
        parse_config({"script": "train.py", "proposer": "sequence", "parameter_config": [
            {"name": "x", "range": [0, 1], "type": "float", "n": 10000},
            {"name": "y", "range": [0, 1], "type": "float", "n": 1001}]}, folder)
    text = info.value.render()
    assert "more than 10,000,000 points (10,010,000)" in text
    # the parameter to change is named (the message named only parameter_config)
    assert "parameter_config[0]:" in text and "'x' with 10,000 values" in text
    # a step of 1e-300 printed a 300-digit count
    with pytest.raises(ConfigError) as info:
        parse_config({"script": "train.py", "proposer": "sequence", "parameter_config": [
            {"name": "x", "range": [0, 1], "type": "float", "interval": 1e-300}]}, folder)
    assert "'x' has 1e+300 grid values" in info.value.render()
    assert len(info.value.render()) < 400


def test_a_parameter_grid_too_large_to_build_is_refused(folder: Path) -> None:
    # Trial 45: one float with "n": 10,000,000 (within the grid limit) took 39 s and 1 GB in
    # --check, and the run sat for minutes before its first job, building the grid.
    with pytest.raises(ConfigError) as info:
        parse_config({"script": "train.py", "proposer": "sequence", "parameter_config": [
            {"name": "x", "range": [0, 1], "type": "float", "n": 100},
            {"name": "y", "range": [0, 1], "type": "float", "n": 10_000_000}]}, folder)
    text = info.value.render()
    assert "parameter_config[1]: 'y' has 10,000,000 grid values, more than the 100,000" in text
    parse_config({"script": "train.py", "proposer": "sequence", "parameter_config": [
        {"name": "x", "range": [0, 1], "type": "float", "n": 100_000}]}, folder)


def test_ray_save_model_needs_the_jobs_in_workingdir(tmp_path):
    # With ship_workingdir (the default) the model was saved in Ray's temporary copy of the
    # folder, lost with the session, and the run blamed the script.
    write_script(tmp_path, "t.py", "print('#Auptimizer: 1')\n")
    base = dict(script="t.py", resource="ray",
                parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}])
    path = write_experiment(tmp_path, resource_args={"save_model": True}, **base)
    r = run_cli("run", "--check", str(path), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "resource_args.save_model" in r.stderr and '"ship_workingdir": false' in r.stderr
    ok = write_experiment(tmp_path, name="ok", resource_args={
        "save_model": True, "ship_workingdir": False}, **base)
    assert load_config(ok).resource_args.save_model


def test_a_space_of_constants_only_warns_that_every_job_is_the_same(folder: Path) -> None:
    # Trial 48: bohb with one int [1, 1] planned 201 identical jobs without a word.
    const = [{"name": "k", "range": [1, 1], "type": "int"},
             {"name": "c", "range": ["a"], "type": "choice"}]
    cfg = parse_config({"script": "train.py", "proposer": "bohb", "parameter_config": const},
                       folder)
    assert any("every job runs the same configuration" in w for w in cfg.warnings), cfg.warnings
    cfg = parse_config({"script": "train.py", "parameter_config": [*const, *PARAMS]}, folder)
    assert not any("same configuration" in w for w in cfg.warnings), cfg.warnings


def test_hyperband_engine_names_are_case_insensitive(folder: Path) -> None:
    # Trial 48: hyperopt took "TPE", hyperband refused "Random".
    cfg = parse_config({"script": "train.py", "proposer": "hyperband", "engine": " Sequence",
                        "parameter_config": PARAMS}, folder)
    assert cfg.proposer_options.engine == "sequence"
    with pytest.raises(ConfigError, match="engine"):
        parse_config({"script": "train.py", "proposer": "hyperband", "engine": "grid",
                      "parameter_config": PARAMS}, folder)


@pytest.mark.parametrize(("extra", "words"), [
    # trial 59: both passed --check without a word, and ran as plain random search
    ({"proposer": "hyperband", "max_iter": 2}, "max_iter 2 is below eta 3"),
    ({"proposer": "bohb", "min_budget": 9, "max_budget": 9}, "a single budget level"),
])
def test_a_schedule_with_a_single_budget_level_is_warned_about(folder: Path, extra: dict,
                                                               words: str) -> None:
    cfg = load_config(write_experiment(folder, script="train.py", parameter_config=PARAMS,
                                       **extra))
    assert len(cfg.warnings) == 1 and words in cfg.warnings[0]
    cfg = load_config(write_experiment(folder, script="train.py", parameter_config=PARAMS,
                                       proposer="hyperband", max_iter=9))
    assert cfg.warnings == []


@pytest.mark.parametrize(("entry", "path", "fix"), [
    # trial 72: "scale": "log" was a warning and the range was sampled linearly
    ({"scale": "log"}, "parameter_config[0].scale", 'write "log": true instead of "scale"'),
    ({"log_scale": True}, "parameter_config[0].log_scale", '"log": true'),
    ({"distribution": "loguniform"}, "parameter_config[0].distribution", '"log": true'),
    ({"type": "loguniform"}, "parameter_config[0].type", 'with "log": true'),
])
def test_another_tools_log_scale_is_named(folder: Path, entry: dict, path: str,
                                          fix: str) -> None:
    param = {"name": "lr", "range": [1e-4, 1e-1], "type": "float", **entry}
    with pytest.raises(ConfigError) as info:
        load_config(write_experiment(folder, script="train.py", parameter_config=[param]))
    (problem,) = info.value.problems
    assert problem.path == path and fix in problem.hint, problem


def test_tpe_that_would_never_use_its_model_is_warned_about(folder: Path) -> None:
    # trial 72: n_samples 15 with hyperopt's 20 startup jobs was random search, silently
    cfg = load_config(write_experiment(folder, script="train.py", parameter_config=PARAMS,
                                       proposer="hyperopt", n_samples=15))
    assert any("every job is a random one" in w and '"n_startup_jobs": 10' in w
               for w in cfg.warnings), cfg.warnings
    cfg = load_config(write_experiment(folder, script="train.py", parameter_config=PARAMS,
                                       proposer="hyperopt", n_samples=15, n_startup_jobs=5))
    assert cfg.warnings == []


@pytest.mark.parametrize("entry", [
    {"scale": "logit"}, {"distribution": "lognormal"},  # not a log-uniform scale
    {"type": "choice", "range": [1, 10, 100], "scale": "log"},  # "log" is refused on a choice
])
def test_other_scales_are_only_warned_about(folder: Path, entry: dict) -> None:
    param = {"name": "lr", "range": [1e-4, 1e-1], "type": "float", **entry}
    cfg = load_config(write_experiment(folder, script="train.py", parameter_config=[param]))
    assert len(cfg.warnings) == 1 and "is ignored" in cfg.warnings[0], cfg.warnings
