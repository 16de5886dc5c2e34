"""Strict experiment.json checks found by a fresh-user trial: missing optional packages, quoted
numbers and booleans, nested typos, non-executable scripts, BOM and duplicate keys, hints on
every problem, and the ``aup --check FILE`` shorthand."""

from __future__ import annotations

import codecs
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from aup.cli import main
from aup.config import load_config, parse_config
from aup.errors import ConfigError, Problem
from tests.conftest import write_experiment, write_script

PARAMS = [{"name": "x", "range": [0, 1], "type": "float"}]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_script(tmp_path, "train.py", "print('#Auptimizer:1')\n")
    return tmp_path


def _config(**over: Any) -> dict[str, Any]:
    return {"script": "train.py", "parameter_config": PARAMS, **over}


def _problems(data: dict[str, Any], folder: Path | None = None, **kw: Any) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        if folder is None:
            parse_config(data, check_files=False, **kw)
        else:
            parse_config(data, folder, **kw)
    return info.value.problems


def _by_path(problems: list[Problem]) -> dict[str, Problem]:
    return {p.path: p for p in problems}


# -- 1. missing optional packages -----------------------------------------------------------------
@pytest.mark.parametrize(("key", "name", "module", "extra"), [
    ("proposer", "hyperopt", "hyperopt", "bo"),
    ("proposer", "spearmint", "scipy", "bo"),
    ("proposer", "bohb", "statsmodels", "bo"),
    ("resource", "node", "paramiko", "ssh"),
    ("resource", "aws", "boto3", "aws"),
    ("resource", "ray", "ray", "ray"),
])
def test_missing_optional_package_is_reported_at_load(monkeypatch, key, name, module,
                                                      extra) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # "import <module>" now fails
    problems = [p for p in _problems(_config(**{key: name})) if p.path == key]
    assert len(problems) == 1
    assert module in problems[0].message and "not installed" in problems[0].message
    assert problems[0].hint.startswith(f"pip install 'auptimizer[{extra}]'")
    assert f"pip install -e '.[{extra}]'" in problems[0].hint


def test_installed_optional_package_is_not_reported() -> None:
    cfg = parse_config(_config(proposer="hyperopt"), check_files=False)
    assert cfg.proposer == "hyperopt"


def test_run_with_a_missing_package_records_nothing(folder: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "hyperopt", None)
    monkeypatch.chdir(folder)
    monkeypatch.delenv("AUP_DB", raising=False)
    path = write_experiment(folder, **_config(proposer="hyperopt", n_samples=2))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'auptimizer[bo]'" in err and "Traceback" not in err
    assert not (folder / ".aup").exists()  # no database, no RUNNING experiment row


# -- 2. strict types ------------------------------------------------------------------------------
@pytest.mark.parametrize(("over", "path", "hint"), [
    ({"n_samples": "3"}, "n_samples", "without quotes: 3"),
    ({"n_parallel": "2"}, "n_parallel", "without quotes: 2"),
    ({"job_timeout": "10"}, "job_timeout", "without quotes: 10"),
    ({"n_samples": 3.0}, "n_samples", "without a decimal point: 3"),
    ({"job_failure": {"ignore_fail": "yes"}}, "job_failure.ignore_fail", "write true"),
    ({"resource_args": {"track_intermediate_results": "yes"}},
     "resource_args.track_intermediate_results", "write true"),
    ({"resource_args": {"save_model": "no"}}, "resource_args.save_model", "write false"),
    ({"target": 1}, "target", '"min" or "max"'),
    ({"proposer": "hyperband", "max_iter": "9"}, "max_iter", "without quotes: 9"),
    ({"proposer": "bohb", "min_budget": "0.5"}, "min_budget", "without quotes: 0.5"),
    # "nan" is no JSON number: the hint must not suggest writing it without quotes.
    ({"proposer": "bohb", "max_budget": "nan"}, "max_budget", "use a number (without quotes)"),
    ({"resource_args": {"kill_grace": "3"}}, "resource_args.kill_grace", "without quotes: 3"),
    ({"parameter_config": [{"name": "x", "range": [0, 1], "type": "float", "log": "yes"}]},
     "parameter_config[0].log", "write true"),
    # nested option models get the same hint (early_stop's own checks kept only the message)
    ({"resource_args": {"early_stop": {"aup_policy": "median", "aup_policy_steps": "3"}}},
     "resource_args.early_stop.aup_policy_steps", "without quotes: 3"),
    ({"resource_args": {"early_stop": {"aup_policy": "bandit", "aup_policy_steps": 2,
                                       "bandit_factor": "0.5"}}},
     "resource_args.early_stop.bandit_factor", "without quotes: 0.5"),
    ({"resource_args": {"early_stop": {"aup_policy": "median", "aup_policy_steps": 3.0}}},
     "resource_args.early_stop.aup_policy_steps", "without a decimal point: 3"),
    ({"proposer": "spearmint", "engine_config": {"n_restarts": "3"}},
     "engine_config.n_restarts", "without quotes: 3"),
    ({"resource": "node", "resource_args": {"nodes": ["me@host"], "max_retries": "3"}},
     "resource_args.max_retries", "without quotes: 3"),
])
def test_quoted_numbers_and_booleans_are_rejected(over, path, hint) -> None:
    problem = _by_path(_problems(_config(**over)))[path]
    assert hint in problem.hint


def test_a_non_number_in_a_nested_model_keeps_its_own_hint() -> None:
    problem = _by_path(_problems(_config(resource_args={"early_stop": {
        "aup_policy": "median", "aup_policy_steps": "often"}})))[
        "resource_args.early_stop.aup_policy_steps"]
    assert problem.hint.startswith("use an integer >= 1")


def test_an_int_where_a_number_is_expected_is_fine() -> None:
    cfg = parse_config(_config(job_timeout=10, proposer="bohb", min_budget=1, max_budget=9,
                               resource_args={"kill_grace": 2}), check_files=False)
    assert cfg.job_timeout == 10.0 and cfg.proposer_options.min_budget == 1.0
    assert cfg.resource_options.kill_grace == 2.0


def test_kill_grace_must_not_be_negative() -> None:
    problem = _by_path(_problems(_config(resource_args={"kill_grace": -1})))
    assert "resource_args.kill_grace" in problem


# -- 3. random_seed -------------------------------------------------------------------------------
@pytest.mark.parametrize("proposer", ["random", "hyperband", "bohb", "hyperopt", "spearmint"])
def test_negative_random_seed_is_named_at_load(proposer: str) -> None:
    problems = _problems(_config(proposer=proposer, random_seed=-1))
    assert [p.path for p in problems] == ["random_seed"]  # once, although checked twice
    assert ">= 0" in problems[0].hint


# -- 4. nested typos and ignored grid keys -------------------------------------------------------
def test_unknown_nested_keys_are_warned_with_a_suggestion() -> None:
    cfg = parse_config(_config(
        job_failure={"job_retry": 2}, runtime_args={"envs": {"A": "1"}},
        parameter_config=[{"name": "x", "range": [0, 1], "type": "float", "lgo": True}]),
        check_files=False)
    text = "\n".join(cfg.warnings)
    assert "'job_failure.job_retry' is ignored (did you mean 'job_retries'?)" in text
    assert "'runtime_args.envs' is ignored (did you mean 'env'?)" in text
    assert "'parameter_config[0].lgo' is ignored (did you mean 'log'?)" in text


def test_warnings_show_control_characters_escaped() -> None:
    # Trial 45: an unknown key with an escape sequence was printed raw in the warning (it
    # cleared the terminal), while errors escaped it.
    cfg = parse_config({**_config(), "\x1b[2Jzz": 1, "parameter_config": [
        {"name": "x", "range": [0, 1], "type": "float", "b\x07": 1}]}, check_files=False)
    text = "\n".join(cfg.warnings)
    assert "unknown key '\\u001b[2Jzz' is ignored" in text, text
    assert "parameter_config[0].b\\u0007" in text and "\x1b" not in text and "\x07" not in text


def test_other_tools_parameter_keys_name_ours() -> None:
    # Trial 42: Optuna's "low" got "did you mean 'log'?"; and a list of ints as an int range
    # did not point to "choice".
    cfg = parse_config(_config(parameter_config=[
        {"name": "x", "range": [0, 1], "type": "float", "low": 0, "high": 1},
        {"name": "c", "range": [1, 2], "type": "int", "choices": [1, 2]}]), check_files=False)
    text = "\n".join(cfg.warnings)
    assert "'parameter_config[0].low' is ignored (write the bounds as \"range\": [low, high])" \
        in text and "did you mean 'log'" not in text, text
    assert "'parameter_config[1].choices' is ignored (write the values as \"range\": [...] " \
        "with \"type\": \"choice\")" in text, text
    problem = _by_path(_problems(_config(parameter_config=[
        {"name": "n", "range": [16, 32, 64], "type": "int"}])))
    assert "the range of an int parameter" in problem["parameter_config[0].range"].message
    assert 'for just these values use "type": "choice"' in \
        problem["parameter_config[0].range"].hint


@pytest.mark.parametrize(("over", "warned"), [
    ({"proposer": "random"}, True),
    ({"proposer": "hyperband", "max_iter": 9}, True),
    ({"proposer": "sequence"}, False),
    ({"proposer": "hyperband", "max_iter": 9, "engine": "sequence"}, False),
])
def test_grid_keys_warn_when_the_proposer_ignores_them(over, warned: bool) -> None:
    params = [{"name": "x", "range": [0, 1], "type": "float", "interval": 0.25},
              {"name": "y", "range": [0, 4], "type": "int", "n": 3}]
    cfg = parse_config(_config(parameter_config=params, **over), check_files=False)
    grid = [w for w in cfg.warnings if "use a grid" in w]
    assert len(grid) == (2 if warned else 0)
    if warned:
        assert grid[0].startswith("parameter_config[0].interval is ignored by proposer")
        assert grid[1].startswith("parameter_config[1].n is ignored")


@pytest.mark.parametrize(("runtime", "warned"), [
    ({"prescript": "source venv/bin/activate"}, ["prescript"]),
    ({"prescript": "cd data && source env.sh", "postscript": "source x"},
     ["prescript", "postscript"]),
    ({"prescript": ". venv/bin/activate"}, []),
    ({"prescript": "echo resource source"}, []),  # a word, not the command
])
def test_source_in_a_prescript_is_warned(runtime, warned) -> None:
    """2.0's examples wrote "source venv/bin/activate"; the wrapper is /bin/sh, dash on
    Debian, so it failed ("source: not found") and the job ran without the venv (trial 33)."""
    cfg = parse_config(_config(runtime_args=runtime), check_files=False)
    hits = [w.split()[0] for w in cfg.warnings if "calls 'source'" in w]
    assert hits == [f"runtime_args.{k}" for k in warned]
    assert all('". venv/bin/activate"' in w for w in cfg.warnings if "calls 'source'" in w)


# -- 5. scripts, working directories and experiment paths ----------------------------------------
def test_non_executable_script_needs_chmod(folder: Path) -> None:
    script = write_script(folder, "ne.sh", "#!/bin/sh\necho '#Auptimizer:1'\n")
    problem = _by_path(_problems(_config(script="ne.sh --fast"), folder))["script"]
    assert "not executable" in problem.message and problem.hint == f"chmod +x {script}"
    script.chmod(0o755)
    assert parse_config(_config(script="ne.sh --fast"), folder).script == "ne.sh --fast"


def test_non_executable_python_script_is_fine(folder: Path) -> None:
    assert parse_config(_config(), folder).script == "train.py"


def test_script_check_is_skipped_for_remote_resources(folder: Path) -> None:
    write_script(folder, "ne.sh", "#!/bin/sh\n")
    cfg = parse_config(_config(script="ne.sh", resource="node",
                               resource_args={"nodes": ["me@host"]}), folder)
    assert cfg.resource == "node"


@pytest.mark.parametrize("program", ["python", "python3", "bash"])
def test_a_program_before_the_script_is_named_as_such(folder: Path, program: str) -> None:
    # "python train.py" is a common first try: say to drop the program, not "no file python".
    problem = _by_path(_problems(_config(script=f"{program} train.py --fast"), folder))["script"]
    assert f"not the program '{program}'" in problem.message
    assert problem.hint.startswith('write "script": "train.py --fast"')
    # a first word that is no program stays "does not exist"
    problem = _by_path(_problems(_config(script="nosuchprogram123 train.py"), folder))["script"]
    assert problem.message == "the script does not exist"


def test_directory_as_script_or_file_as_workingdir(folder: Path) -> None:
    (folder / "sub").mkdir()
    assert "is a directory" in _by_path(_problems(_config(script="sub"), folder))[
        "script"].message
    problem = _by_path(_problems(_config(workingdir="train.py"), folder))["workingdir"]
    assert "not a directory" in problem.message


def test_directory_as_experiment_file(folder: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(folder)
    assert "is a directory" in info.value.problems[0].message
    assert "does not exist" not in str(info.value)


# -- 6. BOM and duplicate keys --------------------------------------------------------------------
def test_utf8_bom_is_accepted(folder: Path) -> None:
    path = folder / "bom.json"
    path.write_bytes(codecs.BOM_UTF8 + json.dumps(_config(n_samples=2)).encode())
    assert load_config(path).n_samples == 2


def test_duplicate_keys_are_reported_with_their_path(folder: Path) -> None:
    path = folder / "dup.json"
    path.write_text('{"script": "train.py", "n_samples": 3, "n_samples": 4,\n'
                    ' "job_failure": {"job_retries": 1, "job_retries": 2},\n'
                    ' "parameter_config": [{"name": "x", "name": "y", "range": [0, 1],'
                    ' "type": "float"}]}', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    paths = [p.path for p in info.value.problems]
    assert paths == ["n_samples", "job_failure.job_retries", "parameter_config[0].name"]
    assert "more than once" in info.value.problems[0].message
    assert info.value.problems[0].hint == "keep one 'n_samples' and delete the others"


def test_duplicate_keys_are_listed_with_other_problems(folder: Path) -> None:
    path = folder / "dup.json"
    path.write_text('{"script": "train.py", "n_parallel": 0, "n_parallel": 0,'
                    ' "parameter_config": [{"name": "x", "range": [0, 1], "type": "float"}]}',
                    encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [p.message[:20] for p in info.value.problems] == [
        "this key is given mo", "Input should be grea"]


# -- 7./8. one problem per mistake, each with a hint ----------------------------------------------
def test_problems_are_not_repeated() -> None:
    problems = _problems(_config(n_samples="3", proposer="hyperband"))
    assert [p.path for p in problems] == ["n_samples"]


@pytest.mark.parametrize(("over", "path", "hint"), [
    ({"proposer": "hyperband", "eta": 1}, "eta", "use a value >= 2"),
    ({"proposer": "hyperopt", "engine": "tpe2"}, "engine", 'use one of "tpe", "rand" or "anneal"'),
    ({"proposer": "hyperband", "engine": "grid"}, "engine", 'use one of "random" or "sequence"'),
    ({"resource_args": {"multi_res_labels": "acc"}}, "resource_args.multi_res_labels",
     '["accuracy", "time"]'),
    ({"proposer": "spearmint", "engine": "GP"}, "engine", "use one of GPEIOptChooser"),
    ({"proposer": "bohb", "top_n_percent": 100}, "top_n_percent", "use a value <= 99"),
    ({"runtime_args": {"env": {"A": 1}}}, "runtime_args.env.A", "use a string in double"),
    ({"storage": 5}, "storage", "use a string in double quotes"),
    ({"parameter_config": "x"}, "parameter_config", 'give a list of {"name"'),
])
def test_every_problem_has_a_fix(over, path: str, hint: str) -> None:
    problems = _problems(_config(**over))
    assert all(p.hint for p in problems)
    problem = _by_path(problems)[path]
    assert hint in problem.hint
    assert not problem.message.startswith("Value error")
    assert ". Fix: " in problem.render()


# -- 9. CLI shorthand and aup stop ----------------------------------------------------------------
@pytest.mark.parametrize("argv", [["--check", "E"], ["--test", "E"], ["-q", "E", "--check"],
                                  ["--log", "error", "--test", "E"], ["E", "--check"],
                                  # 2.0's order: the log level after the file
                                  ["E", "--log", "debug", "--test"],
                                  ["--test", "E", "--log=error"]])
def test_options_before_the_experiment_file(folder: Path, monkeypatch, capsys, argv) -> None:
    monkeypatch.chdir(folder)
    path = write_experiment(folder, **_config())
    assert main([str(path) if a == "E" else a for a in argv]) == 0
    assert "configuration is valid" in capsys.readouterr().out
    assert not (folder / ".aup").exists()


@pytest.mark.parametrize(("flags", "fix"), [
    (["--aup_folder", ".aup"], "AUP_ENV=FOLDER/env.ini"),
    (["--resume", "exp1.pkl"], "aup resume EXPERIMENT"),
    (["--launch_dashboard"], "aup dashboard"),
    (["--sleep", "2"], "not needed"),
])
def test_a_2_0_run_flag_names_what_to_do_instead(folder: Path, monkeypatch, capsys, flags,
                                                 fix) -> None:
    monkeypatch.chdir(folder)
    path = write_experiment(folder, **_config())
    assert main([str(path), *flags]) == 2
    err = capsys.readouterr().err
    assert f"{flags[0]} is Auptimizer 2.0's: " in err and fix in err
    assert not (folder / ".aup").exists()


def test_check_counts_the_warnings(folder: Path, monkeypatch, capsys) -> None:
    # a typo is only a warning (the seed's rule), so --check says there were some
    monkeypatch.chdir(folder)
    path = write_experiment(folder, **_config(targt="min"))
    assert main(["run", "--check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "configuration is valid" in out and "1 warning(s) above" in out
    path = write_experiment(folder, **_config())
    assert main(["run", "--check", str(path)]) == 0
    assert "warning(s)" not in capsys.readouterr().out


def test_stop_on_a_finished_experiment_says_nothing_to_stop(folder: Path, monkeypatch,
                                                            capsys) -> None:
    monkeypatch.chdir(folder)
    monkeypatch.delenv("AUP_DB", raising=False)
    path = write_experiment(folder, name="once", **_config(n_samples=1))
    assert main(["-q", str(path)]) == 0
    capsys.readouterr()
    assert main(["stop", "once"]) == 0
    assert "FINISHED, not running: nothing to stop" in capsys.readouterr().out


# -- 11. aup init's re-ask message -----------------------------------------------------------------
def test_swapped_range_message_has_single_punctuation() -> None:
    from aup.commands.init import check_range

    with pytest.raises(ValueError) as info:
        check_range("float", [1, -1])
    text = f"invalid answer '1, -1': {info.value}. Try again."  # as aup init prints it
    assert "did you mean -1, 1" in text and "?." not in text
    setup_doc = Path(__file__).resolve().parents[1] / "docs" / "setup.md"
    assert str(info.value) in setup_doc.read_text(encoding="utf-8")


def test_generic_hint_of_a_proposer_option_points_to_the_proposer_docs() -> None:
    from aup.config_problems import GENERIC_HINT, finalize
    from aup.errors import Problem

    docs = {"max_iter": "docs/multifidelity.md"}
    out = finalize([Problem("max_iter", "is odd", 7, ""), Problem("n_samples", "is odd", 7, "")],
                   docs)
    assert out[0].hint == "see docs/multifidelity.md for the allowed values of this key"
    assert out[1].hint == GENERIC_HINT


# -- 12. generic hints point to the document of the key -----------------------------------------
RESOURCES_DOC = "see docs/resources.md for the allowed values of this key"


@pytest.mark.parametrize(("resource", "args", "path"), [
    ("gpu", {"gpus": [-1]}, "resource_args.gpus"),
    ("gpu", {"gpus": ["a"]}, "resource_args.gpus"),
    ("gpu", {"gpus": []}, "resource_args.gpus"),
    ("gpu", {"gpus": [99999999999999999999]}, "resource_args.gpus"),
    ("node", {"nodes": ["host"]}, "resource_args.nodes"),
    ("node", {"nodes": ["me@host:70000"]}, "resource_args.nodes"),
    ("aws", {"instances": ["me@host"]}, "resource_args.instances"),
])
def test_generic_hint_of_a_resource_key_points_to_the_resource_docs(resource, args,
                                                                      path) -> None:
    problem = _by_path(_problems(_config(resource=resource, resource_args=args)))[path]
    assert problem.hint == RESOURCES_DOC
    assert f". Fix: {RESOURCES_DOC}" in problem.render()


def test_generic_hint_of_a_nested_key_uses_the_document_of_its_block() -> None:
    from aup.config_problems import GENERIC_HINT, finalize

    docs = {"resource_args.nodes": "docs/resources.md", "max_iter": "docs/multifidelity.md"}
    out = finalize([Problem("resource_args.nodes[0]", "is odd", "x", ""),
                    Problem("resource_args.save_model", "is odd", 1, ""),
                    Problem("max_iter", "is odd", 7, "")], docs)
    assert [p.hint for p in out] == [RESOURCES_DOC, GENERIC_HINT,
                                     "see docs/multifidelity.md for the allowed values of "
                                     "this key"]


# -- 13. a script file name with a space ----------------------------------------------------------
@pytest.mark.parametrize(("script", "quoted"), [
    ("my job.py --flag 'a b'", "'my job.py' --flag 'a b'"),
    ("my job.py", "'my job.py'"),
])
def test_a_script_name_with_a_space_gets_the_quoted_form(folder: Path, script: str,
                                                         quoted: str) -> None:
    write_script(folder, "my job.py", "print('#Auptimizer:1')\n")
    problem = _by_path(_problems(_config(script=script), folder))["script"]
    assert problem.message == "the script does not exist" and problem.value == script
    assert f"no file at {folder / 'my'}" in problem.hint
    assert f'quote the file name, which has a space: write "script": {json.dumps(quoted)}' \
        in problem.hint
    cfg = parse_config(_config(script=quoted), folder)  # the quoted form is valid
    assert cfg.script_path() == folder / "my job.py"


def test_a_folder_with_a_space_gets_the_hint_to_name_a_file_inside(folder: Path) -> None:
    # "script": "my dir" (a folder) said only "no file at .../my".
    (folder / "my dir").mkdir()
    problem = _by_path(_problems(_config(script="my dir"), folder))["script"]
    assert f"no file at {folder / 'my'}" in problem.hint
    assert "'my dir' is a folder, and the script must be a file" in problem.hint
    assert '"script": "\'my dir/train.py\'"' in problem.hint, problem.hint


def test_a_missing_name_with_a_space_says_how_the_command_was_read(folder: Path) -> None:
    # "nonexist file.py" said only "no file at .../nonexist" (trial 73)
    problem = _by_path(_problems(_config(script="nonexist file.py"), folder))["script"]
    assert f"no file at {folder / 'nonexist'}" in problem.hint
    assert "the script is its first word 'nonexist'" in problem.hint
    assert "no file 'nonexist file.py' exists either" in problem.hint, problem.hint


def test_a_missing_script_without_a_space_gets_no_quoting_hint(folder: Path) -> None:
    problem = _by_path(_problems(_config(script="nofile.py --flag 'a b'"), folder))["script"]
    assert "quote" not in problem.hint


# -- 14. the interpreter of a script run as a program ---------------------------------------------
def _exe(folder: Path, name: str, body: str | bytes) -> Path:
    path = folder / name
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body, encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("resource", ["cpu", "gpu"])
def test_a_missing_interpreter_is_reported_at_load(folder: Path, resource: str) -> None:
    _exe(folder, "badinterp.sh", "#!/no/such/interp\necho '#Auptimizer:1'\n")
    args = {"gpus": [0]} if resource == "gpu" else {}
    problem = _by_path(_problems(_config(script="badinterp.sh --fast", resource=resource,
                                         resource_args=args), folder))["script"]
    assert "interpreter /no/such/interp" in problem.message and "does not exist" in \
        problem.message
    assert problem.value == "badinterp.sh --fast"
    assert f"change the first line of {folder / 'badinterp.sh'}" in problem.hint


def test_a_missing_interpreter_that_is_installed_elsewhere_suggests_env(folder: Path) -> None:
    _exe(folder, "job.sh", "#!/no/such/dir/sh\necho '#Auptimizer:1'\n")
    problem = _by_path(_problems(_config(script="job.sh"), folder))["script"]
    assert "#!/usr/bin/env sh" in problem.hint


def test_an_interpreter_that_is_a_directory_is_reported(folder: Path) -> None:
    _exe(folder, "job.sh", f"#!{folder}\n")
    problem = _by_path(_problems(_config(script="job.sh"), folder))["script"]
    assert "is not an executable file" in problem.message


@pytest.mark.parametrize(("name", "hint"), [
    ("noshebang.sh", "e.g. #!/bin/sh"),
    ("noshebang.py", "#!/usr/bin/env python3"),  # executable: run as a program, not by Python
])
def test_a_text_script_without_a_shebang_line_is_reported(folder: Path, name: str,
                                                          hint: str) -> None:
    _exe(folder, name, "echo '#Auptimizer:1'\n")
    problem = _by_path(_problems(_config(script=name), folder))["script"]
    assert "no #! line" in problem.message and "Exec format error" in problem.message
    assert hint in problem.hint and str(folder / name) in problem.hint


def test_windows_line_endings_in_the_shebang_line_are_reported(folder: Path) -> None:
    _exe(folder, "crlf.sh", "#!/bin/sh\r\necho '#Auptimizer:1'\r\n")
    problem = _by_path(_problems(_config(script="crlf.sh"), folder))["script"]
    assert "carriage return" in problem.message and "dos2unix" in problem.hint


@pytest.mark.parametrize(("name", "body", "over"), [
    ("sh.sh", "#!/bin/sh\necho '#Auptimizer:1'\n", {}),
    ("env.sh", "#!/usr/bin/env python3\nprint('#Auptimizer:1')\n", {}),
    ("spaced.sh", "#! /bin/sh -e\necho '#Auptimizer:1'\n", {}),
    # only env itself is checked: where NAME is found depends on the job's PATH
    ("envname.sh", "#!/usr/bin/env nosuchprogram123\n", {}),
    ("binary", b"\x7fELF\x02\x01\x01\x00" + bytes(64), {}),
    # with a prescript the job runs under /bin/sh, which runs such a file as a shell script
    ("plain.sh", "echo '#Auptimizer:1'\n", {"runtime_args": {"prescript": "true"}}),
])
def test_scripts_that_can_start_are_accepted(folder: Path, name: str, body: str | bytes,
                                             over: dict[str, Any]) -> None:
    _exe(folder, name, body)
    assert parse_config(_config(script=name, **over), folder).script == name


@pytest.mark.parametrize(("resource", "args"), [
    ("node", {"nodes": ["me@host"]}),
    ("aws", {"instances": ["ubuntu@i-0123456789abcdef0"]}),
    ("ray", {}),
    ("passive", {}),
])
def test_interpreter_checks_are_only_for_jobs_run_here(folder: Path, resource: str,
                                                       args: dict[str, Any]) -> None:
    _exe(folder, "badinterp.sh", "#!/no/such/interp\n")
    _exe(folder, "noshebang.sh", "echo hi\n")
    for script in ("badinterp.sh", "noshebang.sh"):
        try:
            parse_config(_config(script=script, resource=resource, resource_args=args), folder)
        except ConfigError as err:
            assert "script" not in _by_path(err.problems), err


def test_check_reports_a_missing_interpreter_with_exit_2(folder: Path, monkeypatch,
                                                         capsys) -> None:
    monkeypatch.chdir(folder)
    _exe(folder, "badinterp.sh", "#!/no/such/interp\necho '#Auptimizer:1'\n")
    path = write_experiment(folder, **_config(script="badinterp.sh"))
    assert main(["run", "--check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "script: the interpreter /no/such/interp" in err and ". Fix: change the first " \
        "line of" in err
    assert "Traceback" not in err and not (folder / ".aup").exists()


# -- 15. JSON syntax mistakes named, with the culprit's line and column ---------------------------
def _json_problem(folder: Path, text: str) -> Problem:
    path = folder / "exp.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [problem] = info.value.problems
    assert problem.path == "" and problem.message.startswith("not valid JSON: ")
    return problem


def test_a_comment_is_named_with_every_line_to_remove(folder: Path) -> None:
    # trial: "// my exp" got "Expecting value at line 1 column 1. Fix: fix the JSON syntax"
    problem = _json_problem(folder, '// my exp\n' + json.dumps(_config()))
    assert problem.message == ("not valid JSON: comments (// or /* */ or #) are not allowed in "
                               "JSON (one starts at line 1 column 1)")
    assert problem.hint == "remove the comment at line 1"
    text = '{\n "script": "train.py", // the job\n /* a */ "n_samples": 2, # b\n' \
           ' "name": "x // y # z",\n "parameter_config": []}'
    problem = _json_problem(folder, text)
    assert "(one starts at line 2 column 24)" in problem.message, problem.message
    assert problem.hint == "remove the comments at lines 2 and 3"  # not line 4's string


def test_a_trailing_comma_points_at_the_comma(folder: Path) -> None:
    # trial: '...},],}' got "Expecting value at line 1 column 105", past the comma
    text = json.dumps(_config())[:-2] + ",],}"
    first = text.index(",]") + 1
    problem = _json_problem(folder, text)
    assert problem.message == (
        f"not valid JSON: trailing commas before ']' at line 1 column {first} and before '}}' "
        f"at line 1 column {first + 2} (JSON allows no comma after the last item of a list "
        "or object)")
    assert problem.hint == "remove them"
    problem = _json_problem(folder, '{"script": "train.py",\n  "n_samples": 2,\n}')
    assert problem.message.startswith("not valid JSON: trailing comma before '}' at line 2 "
                                      "column 17 ("), problem.message
    assert problem.hint == "remove it"


@pytest.mark.parametrize(("text", "message", "hint"), [
    ("", "the file is empty", 'write the experiment as a JSON object, e.g. {"script": '),
    (" \n\t\n", "the file has only white space", "write the experiment as a JSON object"),
    ("{'script': 'train.py'}", "single quotes at line 1 column 2: JSON strings and keys are in "
     "double quotes", "write \"...\" instead of '...'"),
    ('{"script": "train.py",\n "ignore_fail": True}', "True at line 2 column 17 is Python, "
     "not JSON", "write true"),
    ('{"a": 1 "b": 2}', "Expecting ',' delimiter at line 1 column 9",
     "fix the JSON syntax at line 1"),
])
def test_other_json_mistakes_are_named(folder: Path, text: str, message: str,
                                       hint: str) -> None:
    problem = _json_problem(folder, text)
    assert problem.message == f"not valid JSON: {message}"
    assert problem.hint.startswith(hint), problem.hint


def test_a_commented_file_is_still_refused_by_the_cli(folder: Path, monkeypatch,
                                                      capsys) -> None:
    monkeypatch.chdir(folder)
    (folder / "exp.json").write_text("# notes\n" + json.dumps(_config()), encoding="utf-8")
    assert main(["run", "--check", "exp.json"]) == 2  # strict JSON: diagnosed, not accepted
    err = capsys.readouterr().err
    assert "Fix: remove the comment at line 1" in err and "Traceback" not in err


# -- 16. non-ASCII text shown as typed ----------------------------------------------------------
def test_non_ascii_values_are_shown_as_typed(folder: Path) -> None:
    # trial: (got "train job \u00fc.py --fast") ... write "script": "'train job \u00fc.py' --fast"
    write_script(folder, "train job ü.py", "print('#Auptimizer:1')\n")
    problem = _by_path(_problems(_config(script="train job ü.py --fast"), folder))["script"]
    text = problem.render()
    assert '(got "train job ü.py --fast")' in text, text
    assert 'write "script": "\'train job ü.py\' --fast"' in text, text
    assert "\\u00fc" not in text
    problem = _by_path(_problems(_config(parameter_config=[
        {"name": "k", "range": ["é", "é"], "type": "choice"}])))["parameter_config[0].range"]
    assert problem.render().startswith('parameter_config[0].range: the choice "é" is listed '
                                       'twice (got ["é", "é"])')


def test_shown_json_escapes_what_cannot_be_seen() -> None:
    from aup.errors import shown_json

    assert shown_json({"k": ["ü", "学习率"]}) == '{"k": ["ü", "学习率"]}'
    shown = shown_json("a\x1b[2J\u200b\x85\udc80b")  # terminal codes, invisible, a lone surrogate
    assert shown == '"a\\u001b[2J\\u200b\\u0085\\udc80b"' and shown.isprintable()
    assert json.loads(shown) == "a\x1b[2J\u200b\x85\udc80b"  # still JSON to paste
