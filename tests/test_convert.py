"""aup convert: the generated script runs under the job protocol; bad input writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import run_cli, write_experiment, write_script

SOURCE = """
import math

def rosenbrock(x, y, a=1.0):
    return (a - x) ** 2 + 100 * (y - x * x) ** 2

def budgeted(x, n_iterations=1):
    return x * n_iterations

if __name__ == "__main__":
    raise SystemExit("the source's own main must not run inside a job")
"""

PARAMS = [{"name": "x", "type": "float", "range": [-2, 2]},
          {"name": "y", "type": "float", "range": [-1, 3]}]


def test_generated_script_runs_as_an_experiment(tmp_path):
    write_script(tmp_path, "rosen.py", SOURCE)
    exp = write_experiment(tmp_path, script="rosen_job.py", proposer="random", n_samples=3,
                           target="min", parameter_config=PARAMS)
    r = run_cli("convert", "rosen.py", exp.name, "rosenbrock", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "rosen_job.py"
    assert out.is_file() and out.stat().st_mode & 0o111
    assert (tmp_path / "rosen.py").read_text().lstrip().startswith("import math")  # untouched
    r = run_cli("run", exp.name, "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_cli("show", "1", "--json", cwd=tmp_path)
    jobs = json.loads(r.stdout)
    assert [j["status"] for j in jobs] == ["FINISHED"] * 3
    for j in jobs:
        c = j["job_config"]
        assert abs(j["score"] - ((1 - c["x"]) ** 2 + 100 * (c["y"] - c["x"] ** 2) ** 2)) < 1e-9


def test_generated_script_passes_the_budget_when_the_function_takes_it(tmp_path):
    write_script(tmp_path, "src.py", SOURCE)
    exp = write_experiment(tmp_path, script="job.py", parameter_config=PARAMS[:1])
    assert run_cli("convert", "src.py", exp.name, "budgeted", cwd=tmp_path).returncode == 0
    cfg = tmp_path / "1.json"
    cfg.write_text(json.dumps({"x": 0.5, "job_id": 1, "n_iterations": 9}))
    r = subprocess.run([sys.executable, "job.py", str(cfg)], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert "#Auptimizer:4.5" in r.stdout + r.stderr


def test_unknown_function_is_refused_and_nothing_is_written(tmp_path):
    write_script(tmp_path, "rosen.py", SOURCE)
    exp = write_experiment(tmp_path, script="rosen_job.py", parameter_config=PARAMS)
    r = run_cli("convert", "rosen.py", exp.name, "rosen", cwd=tmp_path)
    assert r.returncode == 2
    assert "no top-level function 'rosen'" in r.stderr and "rosenbrock" in r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment.json", "rosen.py"]


def test_the_source_is_never_overwritten(tmp_path):
    write_script(tmp_path, "rosen.py", SOURCE)
    before = (tmp_path / "rosen.py").read_text()
    exp = write_experiment(tmp_path, script="rosen.py", parameter_config=PARAMS)
    r = run_cli("convert", "rosen.py", exp.name, "rosenbrock", cwd=tmp_path)
    assert r.returncode == 2 and "source script itself" in r.stderr
    r = run_cli("convert", "rosen.py", exp.name, "rosenbrock", "-o", "./rosen.py",
                "--overwrite", cwd=tmp_path)
    assert r.returncode == 2
    assert (tmp_path / "rosen.py").read_text() == before


def test_existing_output_needs_overwrite(tmp_path):
    write_script(tmp_path, "rosen.py", SOURCE)
    (tmp_path / "job.py").write_text("keep me\n")
    exp = write_experiment(tmp_path, script="job.py", parameter_config=PARAMS)
    r = run_cli("convert", "rosen.py", exp.name, "rosenbrock", cwd=tmp_path)
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert (tmp_path / "job.py").read_text() == "keep me\n"
    r = run_cli("convert", "rosen.py", exp.name, "rosenbrock", "--overwrite", cwd=tmp_path)
    assert r.returncode == 0 and "_aup_job_main" in (tmp_path / "job.py").read_text()


def test_signature_that_does_not_fit_is_refused(tmp_path):
    write_script(tmp_path, "f.py", "def f(x, z):\n    return x\n\ndef g(a):\n    return a\n")
    exp = write_experiment(tmp_path, script="job.py", parameter_config=PARAMS[:1])
    r = run_cli("convert", "f.py", exp.name, "f", cwd=tmp_path)
    assert r.returncode == 2 and "'z'" in r.stderr
    r = run_cli("convert", "f.py", exp.name, "g", cwd=tmp_path)
    assert r.returncode == 2 and "no argument 'x'" in r.stderr
    assert not (tmp_path / "job.py").exists()


def test_syntax_error_and_missing_parameters_are_clear(tmp_path):
    write_script(tmp_path, "bad.py", "def f(x):\n    return (x\n")
    exp = write_experiment(tmp_path, script="job.py", parameter_config=PARAMS[:1])
    r = run_cli("convert", "bad.py", exp.name, "f", cwd=tmp_path)
    assert r.returncode == 2 and "syntax error" in r.stderr
    empty = write_experiment(tmp_path, "empty.json", script="job.py")
    r = run_cli("convert", "bad.py", empty.name, "f", cwd=tmp_path)
    assert r.returncode == 2 and "parameter_config" in r.stderr
    assert not (tmp_path / "job.py").exists()


def test_python_m_aup_convert_works(tmp_path):
    write_script(tmp_path, "rosen.py", SOURCE)
    exp = write_experiment(tmp_path, script="out.py", parameter_config=PARAMS)
    r = subprocess.run([sys.executable, "-m", "aup.convert", "rosen.py", exp.name, "rosenbrock"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.py").is_file()


def test_bad_outputs_and_sources_are_clear_errors_and_leave_nothing(tmp_path):
    write_script(tmp_path, "rb.py", SOURCE)
    exp = write_experiment(tmp_path, script="job.py", parameter_config=PARAMS)
    (tmp_path / "d.py").mkdir()
    (tmp_path / "bin.py").write_bytes(b"\xff\xfe")
    (tmp_path / "nb.ipynb").write_text(json.dumps({"cells": [], "nbformat": 4}))
    before = sorted(p.name for p in tmp_path.iterdir())
    missing = tmp_path / "missing"
    for args, needle in (
            (["rb.py", exp.name, "rosenbrock", "-o", ".", "--overwrite"], "is a folder"),
            (["rb.py", exp.name, "rosenbrock", "-o", "d.py", "--overwrite"], "is a folder"),
            (["rb.py", exp.name, "rosenbrock", "-o", "d.py"], "is a folder"),
            (["bin.py", exp.name, "rosenbrock", "-o", "j.py"], "bin.py is not UTF-8 text"),
            # trial 64: the notebook's JSON was parsed as Python ("has no top-level function")
            (["nb.ipynb", exp.name, "rosenbrock", "-o", "j.py"],
             "is a Jupyter notebook, not a Python source"),
            (["rb.py", exp.name, "rosenbrock", "-o", str(missing / "j.py")],
             f"the folder {missing} of the output")):
        r = run_cli("convert", *args, cwd=tmp_path)
        assert r.returncode == 2, r.stdout
        assert needle in r.stderr and "Fix:" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing left behind
    assert not list((tmp_path / "d.py").iterdir()) and not missing.exists()


def test_a_function_needing_the_budget_is_refused_when_the_proposer_gives_none(tmp_path):
    write_script(tmp_path, "src.py", "def train(x, n_iterations):\n    return x * n_iterations\n")
    exp = write_experiment(tmp_path, script="job.py", proposer="random",
                           parameter_config=PARAMS[:1])
    r = run_cli("convert", "src.py", exp.name, "train", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "'n_iterations'" in r.stderr and "'random'" in r.stderr and "hyperband" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "job.py").exists()
    hb = write_experiment(tmp_path, "hb.json", script="job.py", proposer="hyperband",
                          max_iter=9, eta=3, parameter_config=PARAMS[:1])
    r = run_cli("convert", "src.py", hb.name, "train", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "job.py").is_file()


def test_a_kwargs_function_takes_names_that_are_not_argument_names(tmp_path):
    # "learning-rate" is not an identifier and "lambda" is a keyword: neither can be written
    # as name=value, but a **kwargs function receives both by their names.
    write_script(tmp_path, "src.py", "def score(**params):\n"
                 "    return params['learning-rate'] * 10 + params['lambda']\n"
                 "def plain(lr):\n    return lr\n")
    params = [{"name": "learning-rate", "type": "float", "range": [0, 1]},
              {"name": "lambda", "type": "float", "range": [0, 1]}]
    exp = write_experiment(tmp_path, script="job.py", n_samples=2, parameter_config=params)
    r = run_cli("convert", "src.py", exp.name, "score", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert run_cli("run", exp.name, "-q", cwd=tmp_path).returncode == 0
    jobs = json.loads(run_cli("show", "1", "--json", cwd=tmp_path).stdout)
    assert [j["status"] for j in jobs] == ["FINISHED"] * 2
    for j in jobs:
        c = j["job_config"]
        assert abs(j["score"] - (c["learning-rate"] * 10 + c["lambda"])) < 1e-9
    # A function with named arguments cannot take them: refused, naming the **kwargs fix.
    r = run_cli("convert", "src.py", exp.name, "plain", "-o", "job2.py", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "'learning-rate', 'lambda'" in r.stderr and "**kwargs" in r.stderr
    assert not (tmp_path / "job2.py").exists()


def _run_job(folder, script, config):
    cfg = folder / "cfg.json"
    cfg.write_text(json.dumps(config))
    done = subprocess.run([sys.executable, script, str(cfg)], cwd=folder, capture_output=True,
                          text=True)
    done.stdout += done.stderr  # print_result writes to stderr, as 2.0 did
    return done


def test_the_sources_own_interpreter_line_is_replaced(tmp_path):
    # "#!/usr/bin/python3" ran every job under the system Python, which has no aup.
    write_script(tmp_path, "src.py", "#!/usr/bin/python3\ndef f(x):\n    return x\n")
    exp = write_experiment(tmp_path, script="job.py", n_samples=2, parameter_config=PARAMS[:1])
    r = run_cli("convert", "src.py", exp.name, "f", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "first line #!/usr/bin/python3 became #!/usr/bin/env python3" in r.stdout, r.stdout
    lines = (tmp_path / "job.py").read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env python3"
    assert lines[1] == "def f(x):"  # line numbers of tracebacks stay the source's
    assert run_cli("run", exp.name, "-q", cwd=tmp_path).returncode == 0


def test_protocol_keys_reach_only_named_arguments(tmp_path):
    # def train(**params): model(**params) got n_iterations under hyperband and failed every
    # job, where @aup_args drops it; a function that names job_id gets it.
    write_script(tmp_path, "src.py", "def model(x):\n    return x\n"
                 "def train(**params):\n    return model(**params)\n"
                 "def ids(x, job_id):\n    return x + 1000 * job_id\n")
    hb = write_experiment(tmp_path, script="job.py", proposer="hyperband", max_iter=3, eta=3,
                          parameter_config=PARAMS[:1])
    r = run_cli("convert", "src.py", hb.name, "train", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "train() does not take n_iterations" in r.stdout, r.stdout
    done = _run_job(tmp_path, "job.py", {"x": 0.5, "job_id": 7, "n_iterations": 3})
    assert done.returncode == 0 and "#Auptimizer:0.5" in done.stdout, done.stderr
    r = run_cli("convert", "src.py", hb.name, "ids", "-o", "ids.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    done = _run_job(tmp_path, "ids.py", {"x": 0.5, "job_id": 7, "n_iterations": 3})
    assert "#Auptimizer:7000.5" in done.stdout, done.stdout + done.stderr


def test_a_function_needing_a_save_model_key_gets_the_right_fix(tmp_path):
    write_script(tmp_path, "src.py", "def f(x, folder_name):\n    return x\n")
    exp = write_experiment(tmp_path, script="job.py", parameter_config=PARAMS[:1])
    r = run_cli("convert", "src.py", exp.name, "f", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "'folder_name'" in r.stderr and "give it a default value" in r.stderr
    assert "parameter_config cannot use" in r.stderr, r.stderr


def test_every_spelling_of_the_main_test_is_switched_off(tmp_path):
    write_script(tmp_path, "src.py", "def f(x):\n    return x\n"
                 "if '__main__' == __name__:\n    raise SystemExit(3)\n"
                 "if (__name__ == '__main__'):\n    raise SystemExit(4)\n"
                 "if __name__ != '__main__':\n    pass\n")
    exp = write_experiment(tmp_path, script="job.py", parameter_config=PARAMS[:1])
    assert run_cli("convert", "src.py", exp.name, "f", cwd=tmp_path).returncode == 0
    done = _run_job(tmp_path, "job.py", {"x": 0.25, "job_id": 1})
    assert done.returncode == 0 and "#Auptimizer:0.25" in done.stdout, done.stderr
    assert "if __name__ != '__main__':" in (tmp_path / "job.py").read_text()


def test_a_function_named_like_the_client_api_is_not_hidden(tmp_path):
    write_script(tmp_path, "src.py", "def print_result(x):\n    return 42.0\n"
                 "def config(x):\n    return 43.0\n")
    exp = write_experiment(tmp_path, script="job.py", parameter_config=PARAMS[:1])
    for name, value in (("print_result", "42.0"), ("config", "43.0")):
        r = run_cli("convert", "src.py", exp.name, name, "--overwrite", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        done = _run_job(tmp_path, "job.py", {"x": 0.5, "job_id": 1})
        assert f"#Auptimizer:{value}" in done.stdout, done.stdout + done.stderr


def test_output_in_a_subfolder_gets_the_script_value_that_works(tmp_path):
    write_script(tmp_path, "helper.py", "def scale(v):\n    return 2 * v\n")
    write_script(tmp_path, "src.py", "from helper import scale\ndef f(x):\n    return scale(x)\n")
    (tmp_path / "sub").mkdir()
    exp = write_experiment(tmp_path, script="other.py", parameter_config=PARAMS[:1])
    r = run_cli("convert", "src.py", exp.name, "f", "-o", "sub/job.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert 'set "script": "sub/job.py"' in r.stdout, r.stdout
    assert "imports helper from its own folder" in r.stdout, r.stdout
    assert f"aup run --check {exp.name}" in r.stdout
    # next to the source: no import note, and no script note when the experiment names it
    exp2 = write_experiment(tmp_path, "e2.json", script="job.py", parameter_config=PARAMS[:1])
    r = run_cli("convert", "src.py", exp2.name, "f", cwd=tmp_path)
    assert r.returncode == 0 and "note:" not in r.stdout, r.stdout
    # a folder given as the source is named as a folder
    r = run_cli("convert", "sub", exp.name, "f", "-o", "x.py", cwd=tmp_path)
    assert r.returncode == 2 and "is a folder" in r.stderr, r.stderr


def test_a_ray_tune_style_function_with_a_dict_result(tmp_path):
    # trial 60: def trainable(config): return {"mean_accuracy": ...} was refused ("it takes
    # config"), and a dict result failed every job
    write_script(tmp_path, "src.py", "def trainable(config):\n"
                 "    return {'acc': 1 - config['x'], 'loss': config['x'], 'n': 3}\n"
                 "def budgeted(config, n_iterations=1):\n"
                 "    return {'acc': n_iterations * config['x']}\n")
    exp = write_experiment(tmp_path, script="job.py", n_samples=3, target="max",
                           parameter_config=PARAMS[:1],
                           resource_args={"multi_res_labels": ["loss"]})
    r = run_cli("convert", "src.py", exp.name, "trainable", "--metric", "acc", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "calls trainable(config={x}) and reports its result['acc']" in r.stdout, r.stdout
    assert run_cli("run", exp.name, "-q", cwd=tmp_path).returncode == 0
    jobs = json.loads(run_cli("show", "1", "--json", cwd=tmp_path).stdout)
    assert [j["status"] for j in jobs] == ["FINISHED"] * 3
    for j in jobs:
        assert abs(j["score"] - (1 - j["job_config"]["x"])) < 1e-9
    export = json.loads(run_cli("export", "1", "--format", "json", cwd=tmp_path).stdout)
    assert [round(e["loss"], 9) for e in export["jobs"]] == [
        round(j["job_config"]["x"], 9) for j in jobs]
    # a key the result lacks names the keys it has
    r = run_cli("convert", "src.py", exp.name, "trainable", "--metric", "accuracy",
                "--overwrite", cwd=tmp_path)
    assert r.returncode == 0
    done = _run_job(tmp_path, "job.py", {"x": 0.5, "job_id": 1})
    assert done.returncode != 0 and "no key 'accuracy'" in done.stdout, done.stdout
    assert "its keys: 'acc', 'loss', 'n'" in done.stdout
    # without --metric a dict result is refused at run time by print_result, naming the type
    r = run_cli("convert", "src.py", exp.name, "trainable", "--overwrite", cwd=tmp_path)
    assert r.returncode == 0
    done = _run_job(tmp_path, "job.py", {"x": 0.5, "job_id": 1})
    assert done.returncode != 0 and "got a dict (keys: 'acc', 'loss', 'n')" in done.stdout
    assert "give --metric KEY" in done.stdout, done.stdout
    # the budget reaches a config-dict function as a named argument
    hb = write_experiment(tmp_path, "hb.json", script="hb_job.py", proposer="hyperband",
                          max_iter=3, eta=3, parameter_config=PARAMS[:1])
    r = run_cli("convert", "src.py", hb.name, "budgeted", "--metric", "acc", cwd=tmp_path)
    assert r.returncode == 0 and "budgeted(config={x}, n_iterations)" in r.stdout, r.stdout
    done = _run_job(tmp_path, "hb_job.py", {"x": 0.5, "job_id": 1, "n_iterations": 3})
    assert "#Auptimizer:1.5" in done.stdout, done.stdout


def test_an_output_name_with_a_space_gets_the_quoted_script_value(tmp_path):
    # trial: -o "job file.py" noted 'set "script": "job file.py"', which fails validation
    # ("script" is split like a shell command: "no file at .../job; quote the file name")
    write_script(tmp_path, "my train.py", "def f(x):\n    return x\n")
    exp = write_experiment(tmp_path, script="'my train.py'", n_samples=1,
                           parameter_config=PARAMS[:1])
    r = run_cli("convert", "my train.py", exp.name, "f", "-o", "job ü file.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (f'note: {exp.name} has "script": "\'my train.py\'"; set "script": '
            '"\'job ü file.py\'" to use the new file') in r.stdout, r.stdout
    value = r.stdout.split('set "script": ')[1].split(" to use")[0]
    write_experiment(tmp_path, exp.name, script=json.loads(value), n_samples=1,
                     parameter_config=PARAMS[:1])  # the value as noted works
    r = run_cli("run", exp.name, "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    # and the experiment now names the output: no note on the next convert
    r = run_cli("convert", "my train.py", exp.name, "f", "--overwrite", cwd=tmp_path)
    assert r.returncode == 0 and "note:" not in r.stdout, r.stdout + r.stderr
    assert f"wrote {tmp_path / 'job ü file.py'}:" in r.stdout  # the default: the "script"


def test_a_commented_experiment_is_named_and_nothing_is_written(tmp_path):
    write_script(tmp_path, "src.py", "def f(x):\n    return x\n")
    (tmp_path / "e.json").write_text("// my exp\n" + json.dumps(
        {"script": "job.py", "parameter_config": PARAMS[:1]}), encoding="utf-8")
    r = run_cli("convert", "src.py", "e.json", "f", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert ("e.json is not valid JSON: comments (// or /* */ or #) are not allowed in JSON (one "
            "starts at line 1 column 1); nothing was written. Fix: remove the comment at line 1"
            ) in r.stderr, r.stderr
    assert not (tmp_path / "job.py").exists()
