"""The job-side client API (aup.client): standard library only, fast to import."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli, write_experiment, write_script

from aup.client import BasicConfig, aup_args, aup_flags, aup_save_model, print_result


def test_print_result_number_and_list() -> None:
    out = io.StringIO()
    print_result(0.25, file=out)
    print_result([1, 2.5, 3], file=out)
    lines = [ln for ln in out.getvalue().splitlines() if ln]
    assert lines == ["#Auptimizer:0.25", "#Auptimizer:1.0,2.5,3.0"]


def test_print_result_numpy() -> None:
    np = pytest.importorskip("numpy")
    out = io.StringIO()
    print_result(np.float32(0.5), file=out)
    print_result(np.array([1.0, 2.0]), file=out)
    assert "#Auptimizer:0.5" in out.getvalue() and "#Auptimizer:1.0,2.0" in out.getvalue()


def test_print_result_rejects_non_numbers() -> None:
    with pytest.raises(TypeError):
        print_result("good", file=io.StringIO())
    with pytest.raises(TypeError):
        print_result(None, file=io.StringIO())


def test_print_result_writes_no_blank_line() -> None:
    out = io.StringIO()
    print_result(0.5, file=out)
    print_result([1, 2], file=out)
    assert out.getvalue() == "#Auptimizer:0.5\n#Auptimizer:1.0,2.0\n"


@pytest.mark.parametrize("value", ["0.5", b"0.5", ["0.5"], (1, "2"), True])
def test_print_result_rejects_numbers_given_as_strings(value) -> None:
    out = io.StringIO()
    with pytest.raises(TypeError, match="a result must be a number"):
        print_result(value, file=out)
    assert out.getvalue() == ""


def test_a_string_result_is_refused_with_the_fix() -> None:
    # trial 56: 2.0's print_result("%.4f" % acc) worked; the error gave no fix
    with pytest.raises(TypeError, match=r"got '0\.8444' \(a string\): pass float\(\.\.\.\)"):
        print_result("0.8444", file=io.StringIO())


@pytest.mark.parametrize("value", [[], (), "numpy"])
def test_print_result_refuses_an_empty_sequence(value) -> None:
    if value == "numpy":
        value = pytest.importorskip("numpy").array([])
    out = io.StringIO()
    with pytest.raises(ValueError, match=r"empty sequence: give the score, or \[score, v1"):
        print_result(value, file=out)
    assert out.getvalue() == ""  # not a bare '#Auptimizer:'


@pytest.mark.parametrize("value", [10**400, [1, -10**400]])
def test_print_result_refuses_an_int_too_large_for_a_float(value) -> None:
    out = io.StringIO()
    with pytest.raises(ValueError, match="must be a finite number, got -?1000.*too large"):
        print_result(value, file=out)
    assert out.getvalue() == ""


def test_aup_save_model_needs_a_callable_at_registration() -> None:
    with pytest.raises(TypeError, match=r"function that saves the model first, got 42 \(int\)"):
        aup_save_model(42, "model.pt")
    from aup.client import _save_registry

    assert _save_registry.callback is None


@pytest.mark.parametrize("argv, needle", [
    # Trial 46: in a notebook the kernel's connection file was read as the job config, with
    # one warning per key ("config key 'shell_port' is not a parameter")
    (["/venv/lib/python3.11/site-packages/ipykernel_launcher.py", "-f",
      "/root/.local/share/jupyter/runtime/kernel-1234.json"], "runs in a Jupyter kernel"),
    (["-c"], "there is none here"),  # said 'python -c config.json'
    (["python"], "there is none here"),
])
def test_aup_args_outside_a_script_names_the_call_with_a_config(monkeypatch, argv, needle):
    @aup_args
    def main(lr):
        return lr

    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.delenv("AUP_JOB_ID", raising=False)
    with pytest.raises(ValueError) as err:
        main()
    text = str(err.value)
    assert needle in text and "call main('config.json')" in text, text


def test_aup_args_run_without_a_config_file_says_so(monkeypatch) -> None:
    @aup_args
    def main(x):
        return x

    monkeypatch.setattr(sys, "argv", ["train.py"])
    with pytest.raises(ValueError) as err:
        main()
    text = str(err.value)
    assert "last command-line argument, and train.py got none" in text
    assert "'train.py <workingdir>/jobs/<job id>.json'" in text
    assert "python train.py config.json" in text and "unsupported" not in text

    @aup_flags(object())
    def flags_main():
        return 1

    with pytest.raises(ValueError, match="last command-line argument"):
        flags_main()


def test_aup_args_keeps_protocol_keys_out_of_kwargs(tmp_path: Path, capsys) -> None:
    """docs/experiment.md: protocol keys are dropped silently, also with **kwargs; a function
    gets one by naming it."""
    (tmp_path / "job.json").write_text(json.dumps(
        {"x": 2, "z": 3, "job_id": 7, "n_iterations": 9, "save_model": False,
         "folder_name": "m"}))

    seen: list[dict] = []

    @aup_args
    def main(x, **kw):
        seen.append({"x": x, **kw})

    main(str(tmp_path / "job.json"))
    assert seen.pop() == {"x": 2, "z": 3}

    @aup_args
    def named(x, job_id, n_iterations, **kw):
        seen.append({"x": x, "job_id": job_id, "n_iterations": n_iterations, **kw})

    named(str(tmp_path / "job.json"))
    assert seen.pop() == {"x": 2, "job_id": 7, "n_iterations": 9, "z": 3}


def test_aup_args_names_unused_config_keys(tmp_path: Path, caplog) -> None:
    (tmp_path / "job.json").write_text(json.dumps({"x": 2, "z": 3, "job_id": 7}))

    @aup_args
    def main(x):
        return x

    with caplog.at_level("WARNING", logger="aup.client"):
        assert main(str(tmp_path / "job.json")) == 2
    assert [r.getMessage() for r in caplog.records] == [
        "config key 'z' is not a parameter of main(); ignored"]


def test_basic_config_json_and_pickle(tmp_path: Path) -> None:
    cfg = BasicConfig(a=1, b="x")
    cfg.c = [1, 2]
    cfg.save(tmp_path / "c.json")
    cfg.save(tmp_path / "c.pkl")
    for name in ("c.json", "c.pkl"):
        loaded = BasicConfig().load(tmp_path / name)
        assert loaded == {"a": 1, "b": "x", "c": [1, 2]} and loaded.b == "x"
    with pytest.raises(ValueError):
        BasicConfig().load(tmp_path / "c.txt")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError):
        BasicConfig().load(tmp_path / "list.json")


def test_aup_args_passes_config_and_reports(tmp_path: Path, capsys) -> None:
    (tmp_path / "job.json").write_text(json.dumps({"x": 2, "y": 3, "job_id": 7, "extra": 1}))

    @aup_args
    def f(x, y, z=10):
        return x * y + z

    assert f(str(tmp_path / "job.json")) == 16
    assert "#Auptimizer:16.0" in capsys.readouterr().err


def test_aup_args_missing_required_parameter_is_clear(tmp_path: Path) -> None:
    (tmp_path / "job.json").write_text(json.dumps({"x": 2}))

    @aup_args
    def f(x, y):
        return x

    with pytest.raises(TypeError, match="needs parameter 'y'"):
        f(str(tmp_path / "job.json"))


def test_aup_flags_applies_the_config(tmp_path: Path) -> None:
    class Flags:
        lr = 0.1
        steps = 5

    (tmp_path / "job.json").write_text(json.dumps({"lr": 0.01}))
    flags = Flags()

    @aup_flags(flags)
    def main():
        return flags.lr

    out = io.StringIO()
    with contextlib.redirect_stderr(out):
        assert main(["prog", str(tmp_path / "job.json")]) is None  # absl exits with it
    assert flags.lr == 0.01 and flags.steps == 5
    assert out.getvalue().strip() == "#Auptimizer:0.01"


ABSL_JOB = """
from absl import app, flags
import aup

FLAGS = flags.FLAGS
flags.DEFINE_float("lr", 0.1, "learning rate")
flags.DEFINE_integer("layers", 1, "layers")


@aup.aup_flags(FLAGS)
def main(argv):
    return FLAGS.lr * FLAGS.layers


if __name__ == "__main__":
    app.run(main)
"""


def test_aup_flags_job_under_absl_app_run_succeeds(tmp_path: Path) -> None:
    """Trial 36: the wrapper returned main's score, and absl's app.run exits with it
    (sys.exit(1.5) is exit code 1), so every 2.0-style TensorFlow job failed."""
    pytest.importorskip("absl")
    write_script(tmp_path, "fl.py", ABSL_JOB)
    exp = write_experiment(tmp_path, script="fl.py", proposer="sequence", target="max",
                           parameter_config=[
                               {"name": "lr", "type": "float", "range": [0.5, 1.5], "n": 2},
                               {"name": "layers", "type": "int", "range": [1, 2]}])
    res = run_cli(str(exp), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = json.loads(run_cli("show", "--json", "1", cwd=tmp_path).stdout)
    assert sorted((r["status"], r["score"]) for r in rows) == [
        ("FINISHED", 0.5), ("FINISHED", 1.0), ("FINISHED", 1.5), ("FINISHED", 3.0)]


def test_client_imports_only_the_standard_library() -> None:
    code = ("import sys; import aup; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'sqlalchemy', 'pydantic', 'rich', 'scipy', 'sklearn')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_auptimizer_2_module_path_of_the_client_works() -> None:
    """Trial 36: 2.0 scripts import the helpers from aup.aup; that path was gone."""
    code = ("import sys; from aup.aup import BasicConfig, aup_args, print_result; "
            "import aup.client as c; assert BasicConfig is c.BasicConfig; "
            "print([m for m in sys.modules if m.split('.')[0] in ('numpy', 'pydantic')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_a_pandas_series_is_read_by_key_never_by_position() -> None:
    """Trial 64: a Series (a metrics table's last row) has tolist(), so print_result printed
    its values by position (the loss became the score) and score_of returned it whole."""
    import pandas as pd

    from aup.client import score_of

    row = pd.Series({"loss": 29.4, "acc": 0.6})
    assert score_of(row, "acc") == 0.6
    assert score_of(row, "acc", ["loss"]) == [0.6, 29.4]
    with pytest.raises(KeyError, match="no key 'ac' .*its keys: 'loss', 'acc'"):
        score_of(row, "ac")
    out = io.StringIO()
    with pytest.raises(TypeError, match="got a Series \\(keys: 'loss', 'acc'\\)"):
        print_result(row, file=out)
    assert out.getvalue() == ""  # nothing printed
    print_result(score_of(row, "acc"), file=out)
    assert out.getvalue() == "#Auptimizer:0.6\n"
    # trial 69: a metrics table gave its whole column; its last row is the result
    table = pd.DataFrame({"loss": [2.0, 1.0], "acc": [0.8, 0.9]})
    assert score_of(table, "acc") == 0.9 and score_of(table, "acc", ["loss"]) == [0.9, 1.0]


def test_aup_args_takes_the_config_as_a_dict_or_as_keywords(monkeypatch) -> None:
    """Trial 64: in a notebook a decorated function could only be tried with a file on disk:
    main({...}) was 'unsupported config file' and main(x=..) read the kernel's argv."""
    @aup_args
    def main(x, y=2.0):
        return x * y

    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py", "-f", "/run/kernel-1.json"])
    out = io.StringIO()
    with contextlib.redirect_stderr(out):
        assert main({"x": 3.0}) == 6.0
        assert main(x=1.5, y=4.0) == 6.0
        assert main({"x": 1.0}, y=5.0) == 5.0  # keywords override the dict
    assert out.getvalue().splitlines() == ["#Auptimizer:6.0", "#Auptimizer:6.0",
                                           "#Auptimizer:5.0"]
    with pytest.raises(TypeError, match="needs parameter 'x'"):
        main(y=1.0)
    with pytest.raises(ValueError, match="runs in a Jupyter kernel"):
        main()  # nothing given: still the clear error


def test_basic_config_saves_numpy_values_as_plain_json(tmp_path: Path) -> None:
    import numpy as np

    BasicConfig(x=np.float64(0.5), n=np.int64(3), v=np.arange(2)).save(tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": 0.5, "n": 3, "v": [0, 1]}
    with pytest.raises(TypeError, match="of type object cannot be written to JSON"):
        BasicConfig(o=object()).save(tmp_path / "d.json")
