"""aup init: the real prompt driven with pexpect; wrong answers are re-asked; the file runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pexpect
import pytest
from conftest import run_cli, write_experiment, write_script

from aup.commands.init import (
    check_param_name,
    check_range,
    parse_gpus,
    parse_list,
    parse_param_flag,
    proposer_questions,
)
from aup.config import load_config
from aup.proposers import registry

TRAIN = """
import json, sys
c = json.load(open(sys.argv[-1]))
print("#Auptimizer:", (c["x"] - 0.2) ** 2 + (0 if c.get("act", "relu") == "relu" else 1))
"""


class Dialogue:
    """Answers prompts one by one; each step waits for the prompt text first."""

    def __init__(self, tmp_path, *args: str):
        env = dict(os.environ)
        env.pop("AUP_DB", None)
        self.child = pexpect.spawn(sys.executable, ["-m", *args], cwd=str(tmp_path), env=env,
                                   encoding="utf-8", timeout=15, dimensions=(50, 300))

    def answer(self, prompt: str, text: str, *, reask: str | None = None) -> None:
        """Wait for ``prompt`` (a regex ending the question), send ``text``; when ``reask`` is
        given, expect that reason and the same prompt again (the caller answers it next)."""
        self.child.expect(prompt)
        self.child.sendline(text)
        if reask is not None:
            self.child.expect(reask)

    def finish(self) -> tuple[int, str]:
        self.child.expect(pexpect.EOF)
        out = self.child.before
        self.child.close()
        return self.child.exitstatus, out


def test_interactive_dialogue_reasks_and_writes_a_runnable_file(tmp_path):
    write_script(tmp_path, "train.py", TRAIN)
    d = Dialogue(tmp_path, "aup.init")
    d.answer(r"experiment file to write \[experiment.json\]: ", "exp",
             reask="must end with .json")
    d.answer(r"experiment file to write \[experiment.json\]: ", "hb.json")
    d.answer(r"experiment name \[hb\]: ", "")
    d.answer(r"resource \(where jobs run\) .*\[cpu\]: ", "laptop", reask="choose one of")
    d.answer(r"resource \(where jobs run\) .*\[cpu\]: ", "")
    d.answer(r"working directory of the jobs \[\./\]: ", "nowhere", reask="no folder")
    d.answer(r"working directory of the jobs \[\./\]: ", "")
    d.answer(r"training script .*: ", "missing.py", reask="no file")
    d.answer(r"training script .*: ", "train.py")
    d.answer(r"n_parallel\) \[1\]: ", "0", reask="must be >= 1")
    d.answer(r"n_parallel\) \[1\]: ", "2")
    d.answer(r"target: .*\[max\]: ", "down", reask="choose one of")
    d.answer(r"target: .*\[max\]: ", "min")
    d.answer(r"proposer .*\[random\]: ", "hyperband")
    # hyperband's own options, read from its pydantic Options class
    d.answer(r"max_iter \(int >= 1\) \[81\]: ", "0", reask="greater than or equal to 1")
    d.answer(r"max_iter \(int >= 1\) \[81\]: ", "9")
    d.answer(r"eta \(int >= 2\) \[3\]: ", "")
    d.answer(r"skip_last .*\[0\]: ", "")
    d.answer(r"engine \(random/sequence\) \[random\]: ", "grid", reask="Input should be")
    d.answer(r"engine \(random/sequence\) \[random\]: ", "")
    d.answer(r"random_seed .*\[0\]: ", "7")
    d.answer(r"parameter name: ", "job_id", reask="reserved")
    d.answer(r"parameter name: ", "x")
    d.answer(r"type of x .*\[float\]: ", "")
    d.answer(r"range of x: low, high: ", "1, -1", reask="did you mean -1, 1")
    d.answer(r"range of x: low, high: ", "[-1, 1]")
    d.answer(r"parameter name \(ENTER when done\): ", "x", reask="already a parameter")
    d.answer(r"parameter name \(ENTER when done\): ", "act")
    d.answer(r"type of act .*\[float\]: ", "choice")
    d.answer(r"values of act .*: ", "relu, 'tanh'")
    d.answer(r"parameter name \(ENTER when done\): ", "")
    code, out = d.finish()
    assert code == 0, out
    assert "wrote hb.json" in out
    data = json.loads((tmp_path / "hb.json").read_text())
    assert data["name"] == "hb" and data["proposer"] == "hyperband"
    assert (data["max_iter"], data["eta"], data["random_seed"], data["engine"]) == (9, 3, 7,
                                                                                    "random")
    assert "n_samples" not in data  # hyperband sets its own number of jobs
    assert data["parameter_config"] == [
        {"name": "x", "type": "float", "range": [-1, 1]},
        {"name": "act", "type": "choice", "range": ["relu", "tanh"]}]
    load_config(tmp_path / "hb.json")  # validates
    r = run_cli("run", "hb.json", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_existing_file_is_the_start_and_is_not_replaced_without_yes(tmp_path):
    write_script(tmp_path, "train.py", TRAIN)
    original = write_experiment(tmp_path, "experiment.json", script="train.py",
                                proposer="sequence", target="min", parameter_config=[
                                    {"name": "x", "type": "float", "range": [0, 1], "n": 3}])
    data = json.loads(original.read_text())
    data["name"] = "orig"
    original.write_text(json.dumps(data))
    before = original.read_text()
    d = Dialogue(tmp_path, "aup", "init")
    d.answer(r"experiment file to write \[experiment.json\]: ", "")
    d.answer(r"exists\. Start from its values\? \(y/n\) \[y\]: ", "")
    d.answer(r"experiment name \[orig\]: ", "")
    d.answer(r"resource .*\[cpu\]: ", "")
    d.answer(r"working directory .*\[\./\]: ", "")
    d.answer(r"training script .*\[train.py\]: ", "")
    d.answer(r"n_parallel\) \[1\]: ", "")
    d.answer(r"target: .*\[min\]: ", "")
    d.answer(r"proposer .*\[sequence\]: ", "")
    d.answer(r"keep the 1 parameter of the file \(x\)\? \(y/n\) \[y\]: ", "")
    d.answer(r"parameter name \(ENTER when done\): ", "k")
    d.answer(r"type of k .*\[float\]: ", "int")
    d.answer(r"range of k: low, high: ", "1.5, 3", reask="whole numbers")
    d.answer(r"range of k: low, high: ", "1, 3")
    d.answer(r"log scale for k\? \(y/n\) \[n\]: ", "")
    d.answer(r"grid of k: .*\[interval=1\]: ", "n=1", reask="n must be a whole number >= 2")
    d.answer(r"grid of k: .*\[interval=1\]: ", "")
    d.answer(r"parameter name \(ENTER when done\): ", "")
    d.answer(r"replace experiment.json\? \(y/n\) \[n\]: ", "")
    code, out = d.finish()
    assert code == 2 and "nothing was written" in out
    assert original.read_text() == before


def test_dialogue_switch_to_sequence_asks_the_grid_of_kept_parameters(tmp_path):
    """Keeping a random experiment's parameters after choosing sequence wrote them with no
    grid: 2 points each, silently (trial 33). The grid is now asked for each; switching back
    to random drops the grid keys (they were kept, then warned about)."""
    write_script(tmp_path, "train.py", TRAIN)
    write_experiment(tmp_path, "experiment.json", script="train.py", proposer="random",
                     n_samples=4, target="min",
                     parameter_config=[{"name": "x", "type": "float", "range": [-5, 5]},
                                       {"name": "act", "type": "choice",
                                        "range": ["relu", "tanh"]}])

    def walk(proposer: str, grid_answer: str | None) -> dict:
        d = Dialogue(tmp_path, "aup", "init")
        d.answer(r"experiment file to write \[experiment.json\]: ", "")
        d.answer(r"Start from its values\? \(y/n\) \[y\]: ", "")
        for prompt in (r"experiment name \[", r"resource .*\[cpu\]: ", r"working directory",
                       r"training script", r"n_parallel\) \[1\]: ", r"target: .*\[min\]: "):
            d.answer(prompt + ".*: " if not prompt.endswith(": ") else prompt, "")
        d.answer(r"proposer .*\]: ", proposer)
        keep = r"keep the 2 parameters of the file \(x, act\)\? \(y/n\) \[y\]: "
        while d.child.expect([keep, r"\]: "]) == 1:  # the proposer's options: defaults
            d.child.sendline("")
        d.child.sendline("")
        if grid_answer is not None:
            d.answer(r"grid of x: n=POINTS or interval=STEP \[n=5\]: ", grid_answer)
        d.answer(r"parameter name \(ENTER when done\): ", "")
        d.answer(r"replace experiment.json\? \(y/n\) \[n\]: ", "y")
        code, out = d.finish()
        assert code == 0, out
        return json.loads((tmp_path / "experiment.json").read_text())

    data = walk("sequence", "n=3")
    assert data["parameter_config"] == [
        {"name": "x", "type": "float", "range": [-5, 5], "n": 3},
        {"name": "act", "type": "choice", "range": ["relu", "tanh"]}]
    assert "n_samples" not in data
    data = walk("random", None)
    assert data["parameter_config"][0] == {"name": "x", "type": "float", "range": [-5, 5]}


def test_ctrl_d_aborts_without_writing(tmp_path):
    d = Dialogue(tmp_path, "aup.init")
    d.answer(r"experiment file to write \[experiment.json\]: ", "")
    d.child.expect(r"experiment name \[experiment\]: ")
    d.child.sendeof()
    code, out = d.finish()
    assert code == 2 and "nothing was written" in out
    assert list(tmp_path.iterdir()) == []


def test_param_with_from_replaces_or_adds_and_keeps_the_others(tmp_path):
    # --from FILE --param z:... wrote z alone: FILE's x, lr and act were dropped silently.
    write_script(tmp_path, "train.py", TRAIN)
    r = run_cli("init", "--no-input", "-e", "e.json", "--script", "train.py", "--param",
                "x:float:-1,1", "--param", "lr:float:1e-4,1e-1:log", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("init", "--no-input", "--from", "e.json", "-e", "f.json", "--param",
                "x:float:0,2", "--param", "z:int:0,3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    params = json.loads((tmp_path / "f.json").read_text())["parameter_config"]
    assert params == [{"name": "x", "type": "float", "range": [0, 2]},
                      {"name": "lr", "type": "float", "range": [0.0001, 0.1], "log": True},
                      {"name": "z", "type": "int", "range": [0, 3]}]
    assert "kept the parameters lr of e.json" in r.stderr


def test_from_with_another_proposer_drops_its_options_and_adds_the_grid(tmp_path):
    """--from a random file with --proposer sequence kept n_samples and random_seed (unused by
    sequence) and left the parameters without a grid (2 points each); the dialogue did not."""
    write_script(tmp_path, "train.py", TRAIN)
    r = run_cli("init", "--no-input", "-e", "r.json", "--script", "train.py", "--param",
                "x:float:0,1", "--param", "k:int:1,3", "--option", "n_samples=7",
                "--option", "random_seed=3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("init", "--no-input", "--from", "r.json", "-e", "s.json", "--proposer",
                "sequence", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "s.json").read_text())
    assert "n_samples" not in data and "random_seed" not in data
    assert "dropped n_samples, random_seed of r.json" in r.stderr
    assert data["parameter_config"] == [
        {"name": "x", "type": "float", "range": [0, 1], "n": 5},
        {"name": "k", "type": "int", "range": [1, 3], "interval": 1}]
    assert "not n_samples" not in r.stderr  # no "sequence runs 2 jobs, not n_samples" warning
    # the same proposer keeps its options
    r = run_cli("init", "--no-input", "--from", "r.json", "-e", "t.json", "--proposer",
                "random", cwd=tmp_path)
    assert r.returncode == 0 and "dropped" not in r.stderr, r.stderr
    assert json.loads((tmp_path / "t.json").read_text())["n_samples"] == 7
    # and back from the grid: its keys go (each was kept, then warned about as ignored)
    r = run_cli("init", "--no-input", "--from", "s.json", "-e", "u.json", "--proposer",
                "random", cwd=tmp_path)
    assert r.returncode == 0 and "ignored" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert json.loads((tmp_path / "u.json").read_text())["parameter_config"] == [
        {"name": "x", "type": "float", "range": [0, 1]},
        {"name": "k", "type": "int", "range": [1, 3]}]


def test_non_interactive_flags(tmp_path):
    write_script(tmp_path, "train.py", TRAIN)
    r = run_cli("init", "--no-input", "-e", "e.json", "--script", "train.py", "--target", "min",
                "--proposer", "random", "--param", "x:float:-1,1", "--param",
                "lr:float:1e-4,1e-1:log", "--param", "act:choice:relu,tanh", "--option",
                "n_samples=3", "--n-parallel", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["parameter_config"][1] == {"name": "lr", "type": "float",
                                           "range": [0.0001, 0.1], "log": True}
    assert (data["name"], data["n_samples"], data["n_parallel"]) == ("e", 3, 2)
    r = run_cli("run", "e.json", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # never overwritten without --overwrite
    r = run_cli("init", "--no-input", "-e", "e.json", "--script", "train.py", "--param",
                "x:int:0,3", cwd=tmp_path)
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert json.loads((tmp_path / "e.json").read_text()) == data
    # start from the existing file, change one thing
    r = run_cli("init", "--no-input", "--from", "e.json", "-e", "f.json", "--option",
                "n_samples=5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    f = json.loads((tmp_path / "f.json").read_text())
    assert f["n_samples"] == 5 and f["parameter_config"] == data["parameter_config"]
    # a mistyped --option key is refused, not written to be ignored
    r = run_cli("init", "--no-input", "--from", "e.json", "-e", "g.json", "--option",
                "n_sample=5", "--option", "max_iter=9", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "unknown key 'n_sample' (did you mean 'n_samples'?)" in r.stderr
    assert "'max_iter' (an option of proposer 'hyperband'" in r.stderr
    assert not (tmp_path / "g.json").exists()


def test_non_ascii_parameter_names_are_accepted_by_flags_and_dialogue(tmp_path):
    write_script(tmp_path, "train.py", TRAIN)
    r = run_cli("init", "--no-input", "-e", "flags.json", "--script", "train.py", "--param",
                "学习率:float:1e-4,1e-1:log", "--param", "x:float:0,1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    names = [p["name"] for p in json.loads((tmp_path / "flags.json").read_text())
             ["parameter_config"]]
    assert names == ["学习率", "x"]
    d = Dialogue(tmp_path, "aup", "init", "--from", "flags.json", "-e", "talk.json")
    d.answer(r"experiment file to write \[talk.json\]: ", "")
    for _ in range(7):  # name, resource, workingdir, script, n_parallel, target, proposer
        d.answer(r"\]: ", "")
    d.answer(r"n_samples .*\]: ", "")
    d.answer(r"random_seed .*\]: ", "")
    d.answer(r"keep the 2 parameters .*\? \(y/n\) \[y\]: ", "n")
    d.answer(r"parameter name: ", "1x", reask="not a parameter name")
    d.answer(r"parameter name: ", "动量")
    d.answer(r"type of 动量 .*\[float\]: ", "")
    d.answer(r"range of 动量: low, high: ", "0, 1")
    d.answer(r"parameter name \(ENTER when done\): ", "")
    code, out = d.finish()
    assert code == 0, out
    data = json.loads((tmp_path / "talk.json").read_text(encoding="utf-8"))
    assert data["parameter_config"] == [{"name": "动量", "type": "float", "range": [0, 1]}]


@pytest.mark.parametrize("args, message", [
    (["--param", "x:float:1,0"], "did you mean 0, 1"),
    (["--param", "x:real:0,1"], "NAME:TYPE:RANGE"),
    (["--param", "x:float:0,1", "--option", "n_samples=0"], "n_samples"),
    (["--param", "x:float:0,1", "--proposer", "nope"], "unknown proposer"),
    (["--param", "x:float:0,1", "--script", "missing.py"], "the script does not exist"),
    ([], "--no-input needs --param"),
    (["--param", "x:float:0,1:logg"], "unknown flag 'logg'"),
    (["--param", "x:int:0:5"], "unknown flag '5'"),
    (["--param", "x:choice:[1,2"], "unbalanced brackets in '[1,2'"),
    (["--param", "x:choice:1,2]"], "unbalanced brackets"),
    (["--param", "1x:float:0,1"], "'1x' is not a parameter name"),
    (["--param", "x:float:0,1", "--param", "x:int:0,3"], "'x' is already a parameter"),
    (["--param", "x:float:0,1:n=1"], "n must be a whole number >= 2"),
    (["--param", "x:float:0,1:n=3:interval=0.5"], "give one grid flag"),
    (["--param", "x:int:0,9:interval=0.5"], "an int grid needs a whole-number interval"),
    (["--param", "x:float:0,1:interval=inf"], "interval must be a finite number"),
    (["--param", "x:float:0,1:interval=nan"], "interval must be a finite number"),
    (["--param", "x:float:1,10:log:interval=1", "--proposer", "sequence"],
     "must be above 1"),
    (["--param", "x:choice:a,b:n=3"], "a choice's grid is every value"),
    (["--param", "x:float:0,1", "--resource", "gpu"], "Fix with aup init: add --gpus 0,1"),
    (["--param", "x:float:0,1", "--gpus", "0,1"], "--gpus is for the gpu resource"),
    (["--param", "x:float:0,1", "--resource", "gpu", "--gpus", "0,x"], "is not a GPU id: an id is digits"),
    (["--param", "x:float:0,1", "--resource", "gpu", "--gpus", "0 1"], "separate GPU ids"),
    (["--param", "x:float:0,1", "--resource", "gpu", "--gpus", "99999999999999999999"],
     "is out of range: an id is the index nvidia-smi -L lists, 0 to 1023"),
    # a negative id said "must be digits"
    (["--param", "x:float:0,1", "--resource", "gpu", "--gpus", "0,-1"],
     "the GPU id -1 is out of range: an id is the index nvidia-smi -L lists, 0 to 1023"),
    (["--param", "x:float:0,1", "--resource", "node"], 'resource "node"'),
])
def test_non_interactive_bad_input_writes_nothing(tmp_path, args, message):
    write_script(tmp_path, "train.py", TRAIN)
    base = ["init", "--no-input", "-e", "x.json"]
    if "--script" not in args:
        base += ["--script", "train.py"]
    r = run_cli(*base, *args, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x.json").exists()


def test_piped_answers_are_not_read_and_the_message_says_so(tmp_path):
    """Trial 56: answers piped into aup init (a 2.0 habit with aup.init) got '--no-input
    needs --script and --param', naming a flag the user never gave."""
    r = run_cli("init", "-e", "x.json", cwd=tmp_path, input="experiment.json\nmyexp\ncpu\n")
    assert r.returncode == 2, r.stderr
    assert "asks its questions only in a terminal, and standard input is not one" in r.stderr
    assert "--no-input" not in r.stderr and "--script and --param" in r.stderr
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("target, message", [
    # the experiment history: it wrote JSON over the database (trial 32)
    (".aup/sqlite3.db", "must end with .json"),
    ("history.json", "is an SQLite database"),  # whatever its name
    ("train.py", "must end with .json"),  # the job script: it overwrote the script
    ("sub", "is a folder"),  # was an IsADirectoryError and a left-over .sub.aup-tmp file
    # its workingdir "./" is read relative to that folder: "workingdir does not exist"
    ("nodir/x.json", "its folder nodir does not exist"),
])
def test_overwrite_never_replaces_a_database_a_script_or_a_folder(tmp_path, target, message):
    write_script(tmp_path, "train.py", TRAIN)
    (tmp_path / ".aup").mkdir()
    (tmp_path / "sub").mkdir()
    db = b"SQLite format 3\x00" + bytes(100)
    (tmp_path / ".aup" / "sqlite3.db").write_bytes(db)
    (tmp_path / "history.json").write_bytes(db)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    r = run_cli("init", "--no-input", "-e", target, "--overwrite", "--script", "train.py",
                "--param", "x:float:0,1", cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and "nothing was written" in r.stderr
    assert "Traceback" not in r.stderr
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing replaced, no temporary file left
    assert not (tmp_path / "nodir").exists()


def test_dialogue_reasks_for_an_experiment_file_that_is_a_folder(tmp_path):
    write_script(tmp_path, "train.py", TRAIN)
    (tmp_path / "sub").mkdir()
    d = Dialogue(tmp_path, "aup.init")
    d.answer(r"experiment file to write \[experiment.json\]: ", "sub", reask="is a folder")
    d.child.expect(r"experiment file to write \[experiment.json\]: ")
    d.child.sendeof()
    code, out = d.finish()
    assert code == 2 and "nothing was written" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub", "train.py"]
    assert list((tmp_path / "sub").iterdir()) == []


def test_helpers():
    assert parse_list("[1, 2]") == [1, 2]
    assert parse_list("relu, 'tanh', \"elu\"") == ["relu", "tanh", "elu"]
    assert parse_list("[1, [2, 3]], 4") == [[1, [2, 3]], 4]
    assert parse_list("[1, 2], [3, 4]") == [[1, 2], [3, 4]]
    assert parse_list("'a]b', c") == ["a]b", "c"]
    for bad in ("[1,2", "1,2]", "{'a': 1"):
        with pytest.raises(ValueError, match="unbalanced brackets"):
            parse_list(bad)
    assert check_param_name("学习率", set()) == "学习率"
    assert check_param_name("lr.decay-2", set()) == "lr.decay-2"
    for bad in ("1x", "a b", "x:y", ""):
        with pytest.raises(ValueError, match="not a parameter name"):
            check_param_name(bad, set())
    assert check_range("int", [1.0, 4]) == [1, 4]
    assert parse_param_flag("x:float:0,1:n=3") == {"name": "x", "type": "float",
                                                   "range": [0, 1], "n": 3}
    assert parse_param_flag("lr:float:1e-3,1:log:n=4") == {
        "name": "lr", "type": "float", "range": [0.001, 1], "log": True, "n": 4}
    assert parse_param_flag("k:int:0,10:interval=2")["interval"] == 2
    assert parse_param_flag("a:choice:x:y,z") == {"name": "a", "type": "choice",
                                                  "range": ["x:y", "z"]}
    assert parse_gpus("0, 1") == [0, 1]
    assert parse_gpus('"0,1", 2') == ["0,1", 2]
    for bad in ("", "0 1", "-1", "1.5"):
        with pytest.raises(ValueError):
            parse_gpus(bad)
    with pytest.raises(ValueError, match="low bound > 0"):
        check_range("float", [0, 1], log=True)


@pytest.mark.parametrize("name", registry.names())
def test_every_proposer_has_askable_options(name):
    """Every registered proposer's simple options can be asked; defaults validate."""
    cls = registry.get(name)
    for field_name, field in proposer_questions(cls):
        default = field.get_default(call_default_factory=True)
        cls.Options.model_validate({field_name: default})


def test_gpu_resource_by_flags_passes_run_check(tmp_path):
    """init runs the checks of aup run --check: a gpu experiment without GPU ids is refused
    (nothing written); with --gpus, or with gpu_mapping in env.ini, the file passes them."""
    write_script(tmp_path, "train.py", TRAIN)
    base = ["init", "--no-input", "--script", "train.py", "--resource", "gpu", "--param",
            "x:float:0,1"]
    r = run_cli(*base, "-e", "g.json", cwd=tmp_path)
    assert r.returncode == 2, r.stdout
    assert "has no GPU ids" in r.stderr and "--gpus 0,1" in r.stderr
    assert "nothing was written" in r.stderr and not (tmp_path / "g.json").exists()
    r = run_cli(*base, "-e", "g.json", "--gpus", "0,1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "g.json").read_text())["resource_args"] == {"gpus": [0, 1]}
    r = run_cli("run", "--check", "g.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # --from keeps the other resource_args and replaces the ids
    (tmp_path / "g.json").write_text(json.dumps({
        **json.loads((tmp_path / "g.json").read_text()),
        "resource_args": {"gpus": [0], "save_model": True}}))
    r = run_cli("init", "--no-input", "--from", "g.json", "-e", "h.json", "--gpus", '"0,1",2',
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "h.json").read_text())["resource_args"] == {
        "gpus": ["0,1", 2], "save_model": True}
    # ids from env.ini (aup setup --gpu) need no --gpus
    (tmp_path / ".aup").mkdir()
    (tmp_path / ".aup" / "env.ini").write_text(
        '[Auptimizer]\nSQL_ENGINE = sqlite\nSQLITE_FILE = .aup/sqlite3.db\n'
        'gpu_mapping = {"1": "0"}\n')
    r = run_cli(*base, "-e", "e.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "resource_args" not in json.loads((tmp_path / "e.json").read_text())
    assert run_cli("run", "--check", "e.json", cwd=tmp_path).returncode == 0


def test_gpu_resource_dialogue_asks_for_gpu_ids(tmp_path):
    write_script(tmp_path, "train.py", TRAIN)
    d = Dialogue(tmp_path, "aup", "init")
    d.answer(r"experiment file to write \[experiment.json\]: ", "g.json")
    d.answer(r"experiment name \[g\]: ", "")
    d.answer(r"resource .*\[cpu\]: ", "gpu")
    d.answer(r"GPU ids, one job slot each \(comma-separated, e\.g\. 0,1\): ", "none",
             reask="env.ini lists no GPU ids")
    d.answer(r"GPU ids, one job slot each .*: ", "0 1", reask="separate GPU ids with commas")
    d.answer(r"GPU ids, one job slot each .*: ", "0, 1")
    d.answer(r"working directory .*\[\./\]: ", "")
    d.answer(r"training script .*: ", "train.py")
    for _ in range(3):  # n_parallel, target, proposer
        d.answer(r"\]: ", "")
    d.answer(r"n_samples .*\]: ", "2")
    d.answer(r"random_seed .*\]: ", "")
    d.answer(r"parameter name: ", "x")
    d.answer(r"type of x .*\[float\]: ", "")
    d.answer(r"range of x: low, high: ", "0, 1")
    d.answer(r"parameter name \(ENTER when done\): ", "")
    code, out = d.finish()
    assert code == 0, out
    data = json.loads((tmp_path / "g.json").read_text())
    assert (data["resource"], data["resource_args"]) == ("gpu", {"gpus": [0, 1]})
    r = run_cli("run", "--check", "g.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_sequence_grid_is_the_same_by_dialogue_and_flags(tmp_path):
    """sequence: no random_seed question (a grid draws no random numbers), and a new float
    parameter gets n=5 points, an int every integer, by the dialogue and by --param alike."""
    write_script(tmp_path, "train.py", TRAIN)
    d = Dialogue(tmp_path, "aup", "init")
    d.answer(r"experiment file to write \[experiment.json\]: ", "talk.json")
    for _ in range(3):  # name, resource, workingdir
        d.answer(r"\]: ", "")
    d.answer(r"training script .*: ", "train.py")
    for _ in range(2):  # n_parallel, target
        d.answer(r"\]: ", "")
    d.answer(r"proposer .*\[random\]: ", "sequence")
    d.answer(r"parameter name: ", "x")
    d.answer(r"type of x .*\[float\]: ", "")
    d.answer(r"range of x: low, high: ", "0, 1")
    d.answer(r"grid of x: .*\[n=5\]: ", "")
    d.answer(r"parameter name \(ENTER when done\): ", "k")
    d.answer(r"type of k .*\[float\]: ", "int")
    d.answer(r"range of k: low, high: ", "0, 3")
    d.answer(r"grid of k: .*\[interval=1\]: ", "")
    d.answer(r"parameter name \(ENTER when done\): ", "")
    code, out = d.finish()
    assert code == 0, out
    assert "random_seed" not in out
    talk = json.loads((tmp_path / "talk.json").read_text())
    assert "random_seed" not in talk
    r = run_cli("init", "--no-input", "-e", "flags.json", "--script", "train.py", "--proposer",
                "sequence", "--param", "x:float:0,1", "--param", "k:int:0,3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    flags = json.loads((tmp_path / "flags.json").read_text())
    assert flags["parameter_config"] == talk["parameter_config"] == [
        {"name": "x", "type": "float", "range": [0, 1], "n": 5},
        {"name": "k", "type": "int", "range": [0, 3], "interval": 1}]
    r = run_cli("run", "--check", "flags.json", cwd=tmp_path)
    assert r.returncode == 0 and "20 jobs" in r.stdout, r.stdout + r.stderr
    # the grid by flag
    r = run_cli("init", "--no-input", "-e", "g.json", "--script", "train.py", "--proposer",
                "sequence", "--param", "x:float:0,1:n=11", "--param", "k:int:0,10:interval=5",
                "--param", "lr:float:1e-3,1:log:n=4", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [p.get("n", p.get("interval")) for p in json.loads(
        (tmp_path / "g.json").read_text())["parameter_config"]] == [11, 5, 4]
    r = run_cli("run", "--check", "g.json", cwd=tmp_path)
    assert r.returncode == 0 and "132 jobs" in r.stdout, r.stdout + r.stderr


def test_the_run_hint_pastes_for_a_file_name_with_a_space(tmp_path):
    write_script(tmp_path, "train.py", TRAIN)
    r = run_cli("init", "--no-input", "-e", "a b.json", "--script", "train.py", "--param",
                "x:float:0,1", "--option", "n_samples=1", cwd=tmp_path)
    assert r.returncode == 0 and "Run it with: aup run 'a b.json'" in r.stdout, r.stderr
    command = r.stdout.split("Run it with: ")[1].splitlines()[0]  # aup run 'a b.json'
    pasted = subprocess.run(["bash", "-c", f"{sys.executable} -m {command} -q"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert pasted.returncode == 0, pasted.stderr


def test_the_dialogue_does_not_ask_for_points_to_evaluate() -> None:
    # A list of configurations is edited in the file; the dialogue asked for it as an option
    # (and the dialogue tests waited for their next question at that prompt).
    from aup.commands.init import proposer_questions
    from aup.proposers import registry

    for name in registry.names():
        asked = [n for n, _ in proposer_questions(registry.get(name))]
        assert "points_to_evaluate" not in asked, (name, asked)
    assert "n_samples" in [n for n, _ in proposer_questions(registry.get("random"))]


def test_a_script_flag_naming_a_file_with_a_space_is_quoted_for_the_file(tmp_path):
    # trial: --script "my train.py" was refused with a fix for JSON ('write "script": ...'),
    # although the shell had passed the file's name as one word
    write_script(tmp_path, "my train.py", TRAIN)
    r = run_cli("init", "--no-input", "-e", "x.json", "--script", "my train.py", "--param",
                "x:float:0,1", "--option", "n_samples=1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "x.json").read_text())["script"] == "'my train.py'"
    assert '--script "my train.py" is written as "script": "\'my train.py\'"' in r.stderr
    assert load_config(tmp_path / "x.json").script_path() == tmp_path / "my train.py"
    r = run_cli("run", "x.json", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    # the quoted form and a plain name are written as given, without a note
    for given in ("'my train.py' --fast", "train.py"):
        write_script(tmp_path, "train.py", TRAIN)
        r = run_cli("init", "--no-input", "-e", "y.json", "--script", given, "--param",
                    "x:float:0,1", "--overwrite", cwd=tmp_path)
        assert r.returncode == 0 and "note" not in r.stderr, r.stderr
        assert json.loads((tmp_path / "y.json").read_text())["script"] == given


def test_a_script_flag_with_arguments_after_a_spaced_name_gets_the_flag_to_give(tmp_path):
    write_script(tmp_path, "my train.py", TRAIN)
    r = run_cli("init", "--no-input", "-e", "x.json", "--script", "my train.py --fast",
                "--param", "x:float:0,1", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f'--script "my train.py --fast": no file {tmp_path / "my"}' in r.stderr, r.stderr
    assert r.stderr.rstrip().endswith(
        'nothing was written. Fix: quote the file name inside the value: '
        '--script "\'my train.py\' --fast"'), r.stderr
    assert '"script":' not in r.stderr  # the fix is for the command line, not for JSON
    assert not (tmp_path / "x.json").exists()
    r = run_cli("init", "--no-input", "-e", "x.json", "--script", "'my train.py' --fast",
                "--param", "x:float:0,1", cwd=tmp_path)  # the suggested flag works
    assert r.returncode == 0, r.stderr


def test_the_dialogue_quotes_a_script_name_with_a_space(tmp_path):
    from aup.commands.init import _script_check

    write_script(tmp_path, "my train.py", TRAIN)
    assert _script_check("my train.py", tmp_path) == "'my train.py'"
    assert _script_check("'my train.py' --fast", tmp_path) == "'my train.py' --fast"
    with pytest.raises(ValueError, match="quote the file name, which has a space: "
                       "'my train.py' --fast"):
        _script_check("my train.py --fast", tmp_path)
    write_script(tmp_path, "it's.py", TRAIN)  # a quote in the name: it cannot even be split
    assert _script_check("it's.py", tmp_path) == "'it'\"'\"'s.py'"


def test_from_a_file_with_a_comment_names_it(tmp_path):
    (tmp_path / "old.json").write_text('{"script": "train.py", // mine\n "parameter_config": '
                                       '[]}', encoding="utf-8")
    r = run_cli("init", "--no-input", "--from", "old.json", "-e", "x.json", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert ("old.json is not valid JSON: comments (// or /* */ or #) are not allowed in JSON "
            "(one starts at line 1 column 24); nothing was written. Fix: remove the comment at "
            "line 1") in r.stderr, r.stderr
