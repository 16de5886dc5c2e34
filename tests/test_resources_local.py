"""gpu and passive specifics: slot lists, bad input, the prompt, and ``aup tell`` errors."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from resource_backends import Backend, make_experiment, run_experiment

from aup.config import load_config
from aup.environment import Environment
from aup.errors import AupError
from aup.resources.base import AttemptSpec
from aup.resources.gpu import GPUResourceManager
from aup.resources.passive import PassiveResourceManager

OK = "import json, sys\ncfg = json.load(open(sys.argv[-1]))\nprint('#Auptimizer:', cfg['x'])\n"


def _config(tmp_path: Path, resource: str, args: dict, **cfg):
    return load_config(make_experiment(tmp_path, Backend(resource, args), OK, **cfg))


def test_gpu_slots_from_resource_args_and_env_ini(tmp_path: Path) -> None:
    rm = GPUResourceManager(_config(tmp_path, "gpu", {"gpus": [0, "0", "1,2"]}), queue.Queue())
    assert [s.name for s in rm.slots] == ["0", "0", "1,2"]
    assert len({s.id for s in rm.slots}) == 3
    env = Environment(tmp_path / "env.ini", gpus=["4", "5"])
    rm = GPUResourceManager(_config(tmp_path, "gpu", {}), queue.Queue(), env)
    assert [s.name for s in rm.slots] == ["4", "5"]


def test_gpu_without_ids_fails_before_any_job(tmp_path: Path) -> None:
    rm = GPUResourceManager(_config(tmp_path, "gpu", {}), queue.Queue())
    with pytest.raises(AupError, match="gpus"):
        rm.prepare()


def _fake_nvidia_smi(folder: Path, listing: str | None) -> str:
    """A folder for PATH with an ``nvidia-smi`` that prints ``listing`` (None: no such
    program). A stand-in for the GPU driver, which these machines may not have."""
    folder.mkdir(exist_ok=True)
    if listing is not None:
        exe = folder / "nvidia-smi"
        lines = " ".join(f"'{line}'" for line in listing.splitlines())
        exe.write_text(f"#!/bin/sh\nprintf '%s\\n' {lines}\n")  # a builtin: PATH is bare
        exe.chmod(0o755)
    return str(folder)


@pytest.mark.parametrize("listing, gpus, warning", [
    (None, [0], "no NVIDIA driver answers on this machine"),
    ("GPU 0: NVIDIA H200 (UUID: GPU-1)\nGPU 1: NVIDIA H200 (UUID: GPU-2)", [0, "1,3", 7],
     "GPU id(s) 3, 7 not on this machine (nvidia-smi lists 0, 1)"),
    ("GPU 0: NVIDIA H200 (UUID: GPU-1)", [0, 0], None),
])
def test_gpu_ids_the_machine_lacks_are_warned_about(tmp_path: Path, caplog, monkeypatch,
                                                    listing, gpus, warning) -> None:
    # On a machine without GPUs, "gpus": [0] ran every job on the CPU without a word.
    monkeypatch.setenv("PATH", _fake_nvidia_smi(tmp_path / "bin", listing))
    rm = GPUResourceManager(_config(tmp_path, "gpu", {"gpus": gpus}), queue.Queue())
    rm.check()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if warning is None:
        assert warned == []
    else:
        assert any(warning in w for w in warned), warned


def test_check_counts_the_gpu_warning_in_its_last_line(tmp_path: Path) -> None:
    # "configuration is valid" came without "1 warning(s) above" after the GPU warning, where
    # configuration warnings got it (trial 60).
    fake = _fake_nvidia_smi(tmp_path / "bin", "GPU 0: NVIDIA H200 (UUID: GPU-1)")
    path = make_experiment(tmp_path / "exp", Backend("gpu", {"gpus": [0, 5]}),
                           "print('#Auptimizer: 1')\n")
    r = run_cli("run", "--check", str(path), cwd=path.parent,
                env={"PATH": f"{fake}:{os.path.dirname(sys.executable)}:/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "GPU id(s) 5 not on this machine" in r.stderr, r.stderr
    assert "; 1 warning(s) above: check them" in r.stdout, r.stdout
    # n_parallel above the number of slots: ran one job at a time without a word (trial 60)
    wide = make_experiment(tmp_path / "wide", Backend("gpu", {"gpus": [0]}),
                           "print('#Auptimizer: 1')\n", n_parallel=3)
    r = run_cli("run", "--check", str(wide), cwd=wide.parent,
                env={"PATH": f"{fake}:{os.path.dirname(sys.executable)}:/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert ('n_parallel is 3 but resource "gpu" has 1 slot (one per GPU id ("gpus")): at '
            "most 1 job runs at once") in " ".join(r.stderr.split()), r.stderr
    assert "; 1 warning(s) above" in r.stdout, r.stdout
    clean = make_experiment(tmp_path / "clean", Backend("gpu", {"gpus": [0]}),
                            "print('#Auptimizer: 1')\n")
    r = run_cli("run", "--check", str(clean), cwd=clean.parent,
                env={"PATH": f"{fake}:{os.path.dirname(sys.executable)}:/usr/bin:/bin"})
    assert r.returncode == 0 and "warning" not in r.stdout + r.stderr, r.stdout + r.stderr


def test_aup_run_warns_about_a_missing_gpu_once(tmp_path: Path) -> None:
    # aup run checked the resource before opening the database, then prepared a second one
    # that checked again: every warning was printed twice.
    fake = _fake_nvidia_smi(tmp_path / "bin", "GPU 0: NVIDIA H200 (UUID: GPU-1)")
    path = make_experiment(tmp_path / "exp", Backend("gpu", {"gpus": [5]}),
                           "print('#Auptimizer: 1')\n")
    res = run_cli("run", str(path), cwd=tmp_path / "exp",
                  env={"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"})
    assert res.returncode == 0, res.stderr
    assert (res.stdout + res.stderr).count("GPU id(s) 5 not on this machine") == 1, res.stderr


def test_bad_gpu_id_is_a_config_error_exit_2(tmp_path: Path) -> None:
    path = make_experiment(tmp_path, Backend("gpu", {"gpus": ["zero"]}), OK)
    res = run_cli("run", str(path), cwd=tmp_path)
    assert res.returncode == 2
    assert "resource_args.gpus" in res.stderr + res.stdout
    assert "Traceback" not in res.stderr


def test_gpu_slot_wins_over_runtime_env(tmp_path: Path) -> None:
    script = "import os\nprint('CVD=' + os.environ['CUDA_VISIBLE_DEVICES'])\nprint('#Auptimizer: 1')\n"
    run = run_experiment(tmp_path / "exp", Backend("gpu", {"gpus": [7]}), script,
                         runtime_args={"env": {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}})
    (job,) = run.jobs()
    assert "CVD=7\n" in Path(run.attempts(job["jid"])[0]["output_path"]).read_text()


def _spec(tmp_path: Path, jid: int) -> AttemptSpec:
    return AttemptSpec(jid, 0, {"x": 1, "job_id": jid}, ["python", "job.py"], tmp_path,
                       tmp_path / "jobs" / f"{jid}.json", tmp_path / "jobs" / f"{jid}.0.out")


def test_passive_prompt_lines(tmp_path: Path) -> None:
    events: queue.Queue = queue.Queue()
    rm = PassiveResourceManager(_config(tmp_path, "passive", {"prompt": False}, n_parallel=2),
                                events)
    shown: list[str] = []
    rm.announce = shown.append
    rm.start(_spec(tmp_path, 1), rm.slots[0])
    assert "python job.py" in shown[-1] and "aup tell" in shown[-1]
    assert (tmp_path / "jobs" / "1.json").is_file()
    assert rm.handle_input("0.5\n") == "job 1: recorded"  # one job waits: value alone
    end = events.get_nowait()
    while not hasattr(end, "outcome"):
        end = events.get_nowait()
    assert end.outcome.status.value == "SUCCEEDED" and end.outcome.score == 0.5
    rm.start(_spec(tmp_path, 2), rm.slots[0])
    rm.start(_spec(tmp_path, 3), rm.slots[1])
    assert "2 jobs wait" in rm.handle_input("0.7")
    assert rm.handle_input("3 abc").startswith("cannot read '3 abc'")
    assert rm.handle_input("9 1.0").startswith("job 9 is not waiting")
    # Exit codes that cannot be a failure's, and parser wording, were accepted or leaked.
    for line, why in [("3 fail 0", "exit code 0 means the run succeeded"),
                      ("3 fail 300", "exit code 300 is out of range"),
                      ("3 fail x", "the exit code 'x' is not an integer"),
                      ("3 0.5 0.6", "'0.5 0.6' is not a number")]:
        reply = rm.handle_input(line)
        assert why in reply and "invalid literal" not in reply, reply
    assert rm.handle_input("3 fail 4") == "job 3: recorded"
    outcomes = [e.outcome for e in list(events.queue) if hasattr(e, "outcome")]
    assert outcomes[-1].reason.value == "NONZERO_EXIT" and outcomes[-1].exit_code == 4
    # one job waiting: 'fail CODE' alone (trial 56: 'fail' was read as a job id)
    assert rm.handle_input("fail 5") == "job 2: recorded"
    outcomes = [e.outcome for e in list(events.queue) if hasattr(e, "outcome")]
    assert outcomes[-1].exit_code == 5
    rm.start(_spec(tmp_path, 4), rm.slots[0])
    rm.close()  # job 4 still waits: it is stopped
    last = list(events.queue)[-1]
    assert last.job_id == 4 and last.outcome.status.value == "STOPPED"


def test_aup_tell_refuses_mistakes_with_exit_2(tmp_path: Path) -> None:
    run = run_experiment(tmp_path / "exp", Backend("cpu"), OK)
    db = f"sqlite:///{tmp_path / 'exp' / 'aup.db'}"
    eid, jid = run.result.eid, run.jobs()[0]["jid"]
    for args, text in [((str(eid), str(jid), "0.5"), "only 'passive'"),
                       # the value may follow an option: it is still the VALUE
                       ((str(eid), str(jid), "--intermediate", "0.5"), "only 'passive'"),
                       ((str(eid), str(jid), "0.5", "0.6"), "usage: aup tell"),
                       ((str(eid), "99", "0.5"), "no job 99"),
                       ((str(eid), str(jid), "abc"), "not a number"),
                       ((str(eid), str(jid), "nan"), "finite number"),
                       ((str(eid), str(jid), "inf,1"), "finite number"),
                       ((str(eid), str(jid)), "VALUE"),
                       ((str(eid), str(jid), "--exit-code", "0"), "tell its value instead"),
                       ((str(eid), str(jid), "--exit-code", "256"), "out of range"),
                       (("nosuch", str(jid), "1"), "no experiment")]:
        res = run_cli("tell", "--db", db, *args, cwd=tmp_path)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert text in res.stderr + res.stdout, (args, res.stderr)
        assert "Traceback" not in res.stderr


def _outcomes(events: queue.Queue) -> list:
    return [e.outcome for e in list(events.queue) if hasattr(e, "outcome")]


def test_passive_prompt_refuses_values_the_job_would_fail_on(tmp_path: Path) -> None:
    """'0.5' with multi_res_labels ["acc"] (WRONG_RESULT_COUNT) and '1 nan' (NON_FINITE_SCORE)
    are refused at the prompt with the reason; the job keeps waiting."""
    events: queue.Queue = queue.Queue()
    rm = PassiveResourceManager(_config(tmp_path, "passive", {
        "prompt": False, "multi_res_labels": ["acc"]}), events)
    shown: list[str] = []
    rm.announce = shown.append
    rm.start(_spec(tmp_path, 1), rm.slots[0])
    assert "aup tell <experiment> 1 <score>,<acc>" in shown[-1]
    for line, why in [("0.5", "is 2 values, <score>,<acc>; got 1"),
                      ("1 0.5,", "is 2 values, <score>,<acc>; got 1"),
                      ("1 0.5,1,2", "got 3"),
                      ("1 nan", "the score must be a finite number, got nan"),
                      ("1 inf,0.9", "the score must be a finite number, got inf")]:
        reply = rm.handle_input(line)
        assert reply.startswith(f"cannot read {line!r}: ") and why in reply, reply
        assert "type '<jid> <score>,<acc>' or '<jid> fail [code]'" in reply
    assert [w.spec.job_id for w in rm.pending()] == [1] and _outcomes(events) == []
    assert rm.handle_input("1 0.5,0.9") == "job 1: recorded"
    (end,) = _outcomes(events)
    assert end.status.value == "SUCCEEDED" and end.score == 0.5 and end.extras == (0.9,)


def test_passive_prompt_error_says_its_fix_once(tmp_path: Path) -> None:
    events: queue.Queue = queue.Queue()
    rm = PassiveResourceManager(_config(tmp_path, "passive", {"prompt": False}, n_parallel=2),
                                events)
    rm.announce = lambda text: None
    rm.start(_spec(tmp_path, 2), rm.slots[0])
    rm.start(_spec(tmp_path, 3), rm.slots[1])
    reply = rm.handle_input("0.7")
    assert reply == ("cannot read '0.7': 2 jobs wait (2, 3), so give the job id first; type "
                     "'<jid> <value>' or '<jid> fail [code]' for a failed run")
    rm.close()


def test_passive_announces_aup_tell_without_the_prompt(tmp_path: Path) -> None:
    for prompt, then in [(False, "then run: aup tell <experiment> 1 <value>"),
                         (True, "then type '1 <value>' here, or run: aup tell <experiment> 1 "
                                "<value>")]:
        rm = PassiveResourceManager(_config(tmp_path, "passive", {"prompt": prompt}),
                                    queue.Queue())
        shown: list[str] = []
        rm.announce = shown.append
        rm.start(_spec(tmp_path, 1), rm.slots[0])
        assert shown[-1].splitlines()[-1] == then
        rm.close()


def _passive_db(tmp_path: Path, labels: list[str] | None = None) -> tuple[str, int, int]:
    """A database with a passive experiment whose one job waits (RUNNING, attempt 0), as the
    experiment process leaves it; returns (url, eid, jid)."""
    from aup.store.store import open_store

    url = f"sqlite:///{tmp_path / 'passive.db'}"
    store = open_store(url)
    ra = {"multi_res_labels": labels} if labels else {}
    eid = store.create_experiment(user="me", name="p", config={
        "resource": "passive", "resource_args": ra}, proposer="random", target="max",
        n_total=1, config_path=None, workingdir=str(tmp_path))
    jid, _ = store.start_job(eid=eid, job_config={"x": 1}, proposal={}, rid=store.resource_id(
        "passive", "passive:0"), output_dir=str(tmp_path / "jobs"), proposer_state=None)
    store.close()
    return url, eid, jid


def _told(url: str) -> list[dict]:
    from aup.store.store import open_store

    store = open_store(url, create=False)
    try:
        return store.told([1, 2, 3])
    finally:
        store.close()


def test_aup_tell_refuses_a_value_count_that_does_not_match_the_labels(tmp_path: Path) -> None:
    url, eid, jid = _passive_db(tmp_path, ["acc"])
    for value in ("0.5", "0.5,", "0.5,0.9,1"):
        res = run_cli("tell", "--db", url, str(eid), str(jid), value, cwd=tmp_path)
        assert res.returncode == 2, res.stdout + res.stderr
        assert "multi_res_labels ['acc']" in res.stderr and "<score>,<acc>" in res.stderr
        assert "Traceback" not in res.stderr
    res = run_cli("tell", "--db", url, str(eid), str(jid), "--intermediate", "0.5", cwd=tmp_path)
    assert res.returncode == 2 and "<score>,<acc>" in res.stderr
    assert _told(url) == []
    res = run_cli("tell", "--db", url, str(eid), str(jid), "0.5,0.9", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert [r["values"] for r in _told(url)] == [(0.5, 0.9)]


def test_aup_tell_refuses_a_second_value_while_the_first_waits(tmp_path: Path) -> None:
    """With a long poll_interval both tells were accepted and the second was dropped."""
    url, eid, jid = _passive_db(tmp_path)
    tell = ("tell", "--db", url, str(eid), str(jid))
    assert run_cli(*tell, "--intermediate", "0.1", cwd=tmp_path).returncode == 0
    assert run_cli(*tell, "--intermediate", "0.2", cwd=tmp_path).returncode == 0
    assert run_cli(*tell, "0.5", cwd=tmp_path).returncode == 0  # intermediate values go first
    for args in (("0.6",), ("--exit-code", "3"), ("--intermediate", "0.7")):
        res = run_cli(*tell, *args, cwd=tmp_path)
        assert res.returncode == 2, res.stdout + res.stderr
        assert f"a value is already waiting for job {jid}: 0.5, told at" in res.stderr
    assert [r["values"] for r in _told(url)] == [(0.1,), (0.2,), (0.5,)]
    # the value was taken and the attempt failed; its retry takes a value again
    from aup.store.store import open_store

    store = open_store(url)
    store.start_attempt(jid=jid, num=1, rid=1, output_path=str(tmp_path / "jobs" / "x.out"))
    store.close()
    res = run_cli(*tell, "--exit-code", "3", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = run_cli(*tell, "0.6", cwd=tmp_path)
    assert res.returncode == 2 and ": failure (exit code 3), told at" in res.stderr


def test_aup_tell_creates_no_database(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "aup.db"
    for args in (("--db", str(missing)), ("--db", f"sqlite:///{missing}"), ()):
        res = run_cli("tell", *args, "1", "1", "0.5", cwd=tmp_path)
        assert res.returncode == 2, res.stdout + res.stderr
        assert "no database at" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "typo").exists() and not (tmp_path / ".aup").exists()


@pytest.mark.parametrize("mode", ["stdin", "aup tell"])
def test_passive_through_the_cli_with_results_typed_on_stdin(tmp_path: Path, mode: str) -> None:
    """The real 'aup run' prints each job's command; the 'user' types '<jid> <value>' at the
    prompt, or sends it with 'aup tell' from another process."""
    import os
    import subprocess
    import sys
    import time

    args = {"poll_interval": 0.1} if mode == "stdin" else {"poll_interval": 0.1, "prompt": False}
    path = make_experiment(tmp_path, Backend("passive", args), OK, n_samples=2, n_parallel=2)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("AUP_DB", None)
    proc = subprocess.Popen([sys.executable, "-m", "aup", "run", str(path)], cwd=tmp_path,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    seen: list[int] = []
    lines: list[str] = []
    end = time.monotonic() + 60
    assert proc.stdout is not None and proc.stdin is not None
    while len(seen) < 2 and time.monotonic() < end:
        line = proc.stdout.readline()
        lines.append(line)
        if "waits for you" in line:
            seen.append(int(line.split("job ")[1].split()[0]))
    assert len(seen) == 2, "".join(lines)
    for jid in seen:
        if mode == "stdin":
            proc.stdin.write(f"{jid} {jid / 10}\n")
            proc.stdin.flush()
        else:
            told = subprocess.run([sys.executable, "-m", "aup", "tell", "1", str(jid),
                                   str(jid / 10)], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=60)
            assert told.returncode == 0, told.stderr
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines) + out
    assert ("recorded" if mode == "stdin" else "finished 2") in out
    # no output file is claimed for jobs the user ran (aup show --attempts listed jobs/1.0.out)
    shown = subprocess.run([sys.executable, "-m", "aup", "show", "--attempts", "--json", "1"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert [a["output_path"] for a in json.loads(shown.stdout)] == [None, None], shown.stdout


def _passive_job_waiting(folder: Path):
    """Start 'aup run' of a one-job passive experiment in ``folder`` that reads told values
    every 30 s, and return (the process, its environment) once its job waits."""
    import os
    import subprocess
    import sys
    import time

    path = make_experiment(folder, Backend("passive", {"poll_interval": 30, "prompt": False}),
                           OK, n_samples=1, n_parallel=1)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("AUP_DB", None)
    proc = subprocess.Popen([sys.executable, "-m", "aup", "run", str(path)], cwd=folder,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    lines: list[str] = []
    end = time.monotonic() + 60
    while not any("waits for you" in ln for ln in lines) and time.monotonic() < end:
        lines.append(proc.stdout.readline())
    assert any("waits for you" in ln for ln in lines), "".join(lines)
    return proc, env


def test_a_told_value_survives_a_crash_before_the_poll(tmp_path: Path) -> None:
    """'aup tell' said "told job 1"; a kill -9 of 'aup run' before its next poll lost the value:
    the resumed run waited for the job again and ignored it (trial 63)."""
    import signal
    import subprocess
    import sys

    proc, env = _passive_job_waiting(tmp_path)
    told = subprocess.run([sys.executable, "-m", "aup", "tell", "1", "1", "0.25"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert told.returncode == 0, told.stderr
    proc.send_signal(signal.SIGKILL)  # long before the 30 s poll
    proc.communicate(timeout=30)
    res = subprocess.run([sys.executable, "-m", "aup", "resume", "1"], cwd=tmp_path, env=env,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "taking the value told for its previous attempt" in res.stdout, res.stdout
    shown = json.loads(subprocess.run([sys.executable, "-m", "aup", "show", "1", "--json"],
                                      cwd=tmp_path, env=env, capture_output=True, text=True,
                                      timeout=60).stdout)
    assert [(j["status"], j["score"]) for j in shown] == [("FINISHED", 0.25)]


def test_a_told_value_is_kept_when_the_experiment_stops_before_polling(tmp_path: Path) -> None:
    """'aup tell' said "told job 1"; an 'aup stop' within poll_interval then dropped the value
    (the job ended INTERRUPTED and waited again after resume). Stopping now reads it first."""

    proc, _ = _passive_job_waiting(tmp_path)
    told = run_cli("tell", "1", "1", "0.42", cwd=tmp_path, env={"PYTHONUNBUFFERED": "1"})
    assert told.returncode == 0, told.stderr
    assert run_cli("stop", "1", cwd=tmp_path).returncode == 0
    out, _ = proc.communicate(timeout=60)  # well before the 30 s poll
    shown = json.loads(run_cli("show", "--json", "1", cwd=tmp_path).stdout)
    assert [(j["status"], j["score"]) for j in shown] == [("FINISHED", 0.42)], out


def test_node_and_aws_hosts_from_env_ini(tmp_path: Path) -> None:
    from aup.resources.aws import AWSResourceManager
    from aup.resources.ssh import SSHResourceManager

    env = Environment(tmp_path / "env.ini", nodes=["me@a:2222 /k", "me@b"],
                      aws=["ubuntu@i-0123456789abcdef0"])
    cfg = _config(tmp_path, "node", {}, workingdir="/remote")
    assert [s.name for s in SSHResourceManager(cfg, queue.Queue(), env).slots] == [
        "me@a:2222", "me@b:22"]
    cfg = _config(tmp_path, "aws", {}, workingdir="/remote")
    assert [s.name for s in AWSResourceManager(cfg, queue.Queue(), env).slots] == [
        "ubuntu@i-0123456789abcdef0"]
    rm = SSHResourceManager(cfg, queue.Queue(), None)
    with pytest.raises(AupError, match="no hosts"):
        rm.prepare()


def test_the_documented_examples_are_valid_configurations(tmp_path: Path) -> None:
    """Every ```json block of docs/resources.md validates (script and parameters added)."""
    import json
    import re

    from aup.config import parse_config

    text = (Path(__file__).resolve().parents[1] / "docs" / "resources.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    assert len(blocks) >= 5
    for block in blocks:
        data = json.loads(block)
        data.setdefault("script", "train.py")
        data["parameter_config"] = [{"name": "x", "range": [0, 1], "type": "float"}]
        cfg = parse_config(data, tmp_path, check_files=False)
        assert not [w for w in cfg.warnings if "resource_args" in w], (block, cfg.warnings)


def test_one_output_pump_thread_serves_every_cpu_job(tmp_path: Path) -> None:
    # Four jobs at once: their output and exits are watched by a single pump thread (no thread
    # per job), every result arrives, and the pump stops once nothing runs.
    import sys
    import threading
    import time

    from aup.resources.base import EndEvent, ResultEvent
    from aup.resources.local import CPUResourceManager, OutputPump

    events: queue.Queue = queue.Queue()
    rm = CPUResourceManager(_config(tmp_path, "cpu", {}, n_parallel=4), events)
    (tmp_path / "two.py").write_text(
        "import json, sys, time\ncfg = json.load(open(sys.argv[-1]))\n"
        "print('#Auptimizer:', cfg['x'], flush=True)\ntime.sleep(0.5)\n"
        "print('#Auptimizer:', cfg['x'] + 1)\n")
    before = {t.ident for t in threading.enumerate()}
    for jid, slot in zip(range(1, 5), rm.slots, strict=True):
        spec = _spec(tmp_path, jid)
        spec.command = [sys.executable, "two.py"]
        spec.job_config["x"] = jid
        rm.start(spec, slot)
    time.sleep(0.25)
    new = [t for t in threading.enumerate() if t.ident not in before]
    assert [t.name for t in new] == ["aup-output-pump"]
    results: dict[int, list] = {}
    ends = {}
    while len(ends) < 4:
        ev = events.get(timeout=30)
        if isinstance(ev, ResultEvent):
            results.setdefault(ev.job_id, []).append(ev.values[0])
        elif isinstance(ev, EndEvent):
            ends[ev.job_id] = ev.outcome
    assert results == {j: [float(j), float(j + 1)] for j in range(1, 5)}
    assert all(o.status.value == "SUCCEEDED" and o.score == j + 1 for j, o in ends.items())
    deadline = time.monotonic() + OutputPump.LINGER + 5
    while any(t.name == "aup-output-pump" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the pump thread did not stop when idle"
        time.sleep(0.05)


def test_the_pump_thread_starts_the_processes(tmp_path: Path, monkeypatch) -> None:
    # The busy experiment loop only writes the job's files; the mostly idle pump thread spawns
    # (a spawn from the loop waited ~4 ms at n_parallel 2, from the pump ~0.3 ms).
    import subprocess
    import sys
    import threading

    from aup.resources import local
    from aup.resources.base import EndEvent

    spawners = []
    real_popen = subprocess.Popen

    def spy(*args, **kwargs):  # records the calling thread, then starts the real process
        spawners.append(threading.current_thread().name)
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(local.subprocess, "Popen", spy)
    events: queue.Queue = queue.Queue()
    rm = local.CPUResourceManager(_config(tmp_path, "cpu", {}, n_parallel=2), events)
    (tmp_path / "job.py").write_text("print('#Auptimizer: 1')\n")
    for jid, slot in zip((1, 2), rm.slots, strict=True):
        spec = _spec(tmp_path, jid)
        spec.command = [sys.executable, "job.py"]
        rm.start(spec, slot)
    ends = [events.get(timeout=30) for _ in range(4)]
    outcomes = [e.outcome.status.value for e in ends if isinstance(e, EndEvent)]
    assert outcomes == ["SUCCEEDED", "SUCCEEDED"]
    assert spawners == ["aup-output-pump", "aup-output-pump"]


def test_a_start_error_of_any_kind_ends_the_attempt_and_the_pump_goes_on(tmp_path: Path) -> None:
    # Popen raised in the pump thread would stop it and leave every job waiting for ever: a
    # NUL byte in the environment (ValueError, not OSError) ends that attempt as START_FAILED,
    # and the next job on the same pump runs.
    import sys

    from aup.resources.base import EndEvent
    from aup.resources.local import LocalProcess, OutputPump

    (tmp_path / "job.py").write_text("print('#Auptimizer: 1')\n")
    events: queue.Queue = queue.Queue()
    pump = OutputPump()
    bad = _spec(tmp_path, 1)
    bad.command = [sys.executable, "job.py"]
    LocalProcess(bad, {"BAD": "a\0b"}, events, 1.0, pump=pump).start()
    end = events.get(timeout=30)
    assert isinstance(end, EndEvent) and end.outcome.reason.value == "START_FAILED"
    assert "null byte" in end.outcome.detail
    good = _spec(tmp_path, 2)
    good.command = [sys.executable, "job.py"]
    LocalProcess(good, {}, events, 1.0, pump=pump).start()
    ends = [e for e in (events.get(timeout=30) for _ in range(2)) if isinstance(e, EndEvent)]
    assert [e.outcome.status.value for e in ends] == ["SUCCEEDED"]


class _HeldPump:
    """Keeps what it is given without starting it (test seam: lets a test stop an attempt in the
    window between the loop's start() and the pump's spawn, which is otherwise microseconds)."""

    def __init__(self) -> None:
        self.held: list = []

    def add(self, proc) -> None:
        self.held.append(proc)


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_an_attempt_stopped_before_the_pump_spawns_it_never_runs(tmp_path: Path,
                                                                  how: str) -> None:
    import sys

    from aup.resources.base import EndEvent, StopReason
    from aup.resources.local import LocalProcess

    marker = tmp_path / "ran"
    (tmp_path / "job.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    events: queue.Queue = queue.Queue()
    pump = _HeldPump()
    spec = _spec(tmp_path, 1)
    spec.command = [sys.executable, "job.py"]
    proc = LocalProcess(spec, {}, events, 1.0, pump=pump)
    proc.start()
    assert pump.held == [proc] and proc.proc is None
    if how == "stop":
        proc.stop(StopReason.EXPERIMENT_STOP)
    else:
        proc.kill()
    assert proc.spawn() is False and proc.proc is None
    end = events.get(timeout=5)
    assert isinstance(end, EndEvent) and end.outcome.status.value == "STOPPED"
    assert not marker.exists()


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs a virtual environment")
def test_a_job_sees_the_virtual_environment_of_aup_activated(tmp_path: Path) -> None:
    # '.venv/bin/aup run' without activating the venv: an executable job script whose
    # '#!/usr/bin/env python3' line must find the Python that has aup.
    script = tmp_path / "job.py"
    script.write_text("#!/usr/bin/env python3\nimport os, sys\nimport aup\n"
                      "print(os.environ['VIRTUAL_ENV'], file=sys.stderr)\n"
                      "aup.print_result(float(sys.prefix == os.environ['VIRTUAL_ENV']))\n")
    script.chmod(0o755)
    (tmp_path / "e.json").write_text(json.dumps({
        "script": "job.py", "n_samples": 1,
        "parameter_config": [{"name": "x", "range": [0, 1], "type": "float"}]}))
    env = {"PATH": os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                                   if d != str(Path(sys.prefix) / "bin")),
           "VIRTUAL_ENV": ""}
    proc = run_cli("run", "e.json", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "score 1" in proc.stdout, proc.stdout
    assert (tmp_path / "jobs" / "1.0.out").read_text().startswith(sys.prefix)



@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs a virtual environment")
def test_a_virtual_environment_the_user_activated_is_left_to_the_jobs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # aup installed in its own venv (pipx-style), the project's venv activated: a job's
    # '#!/usr/bin/env python3' must find the project's Python, as it does by hand (trial 71:
    # aup's venv replaced it and the job's imports failed).
    from aup.resources.local import scheduler_environment

    other = tmp_path / "project-venv"
    path = os.pathsep.join([str(other / "bin"), "/usr/bin", "/bin"])
    monkeypatch.setenv("VIRTUAL_ENV", str(other))
    monkeypatch.setenv("PATH", path)
    env = scheduler_environment()
    assert env["VIRTUAL_ENV"] == str(other) and env["PATH"] == path


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs a virtual environment")
def test_with_path_unset_jobs_still_find_the_system_commands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 'env -i .venv/bin/aup run': PATH became the venv's bin alone, so '#!/usr/bin/env bash'
    # failed with code 127 (trial 71). The system's default search path follows it now.
    from aup.resources.local import scheduler_environment

    monkeypatch.delenv("PATH", raising=False)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    env = scheduler_environment()
    dirs = env["PATH"].split(os.pathsep)
    assert dirs[0] == str(Path(sys.prefix) / "bin")
    assert [d for d in os.defpath.split(os.pathsep) if d] == dirs[1:]
    script = tmp_path / "job.sh"
    script.write_text("#!/usr/bin/env bash\necho '#Auptimizer: 0.5'\n")
    script.chmod(0o755)
    out = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "0.5" in out.stdout, out.stderr


def test_a_script_reached_through_a_symbolic_link_runs_under_the_links_path(
        tmp_path: Path) -> None:
    # "script": "linkrun.sh", a link to real/run.sh that reads data.txt next to itself ($0):
    # by hand that is the data.txt beside the link; aup ran the link's target, whose folder has
    # none, and the job failed (trial 71).
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "run.sh"
    target.write_text('#!/bin/bash\nread v < "$(dirname "$0")/data.txt" && echo "#Auptimizer: $v"\n')
    target.chmod(0o755)
    (tmp_path / "data.txt").write_text("0.625\n")
    _run_through_link(tmp_path, "linkrun.sh", "run.sh", "score 0.625")


def test_a_link_without_py_to_a_python_file_runs_under_python(tmp_path: Path) -> None:
    # A link "linknoext" to a non-executable .py file ran as before the link-path change
    # (trial 73: it failed START_FAILED, Permission denied): its target decides.
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "tr.py").write_text("print('#Auptimizer: 0.75')\n")
    _run_through_link(tmp_path, "linknoext", "tr.py", "score 0.75")


def _run_through_link(folder: Path, link: str, target: str, expected: str) -> None:
    """Run a 1-job experiment whose script is ``link``, a link to ``real/<target>``, and
    check that it finished with ``expected`` in its summary."""
    (folder / link).symlink_to(Path("real") / target)
    (folder / "e.json").write_text(json.dumps({
        "script": link, "n_samples": 1,
        "parameter_config": [{"name": "x", "range": [0, 1], "type": "float"}]}))
    proc = run_cli("run", "e.json", cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert expected in proc.stdout, proc.stdout


def test_a_write_error_on_the_output_file_keeps_the_result_and_the_pump(tmp_path: Path) -> None:
    # A full disk (or a file-size limit) while copying a job's output to jobs/<id>.<n>.out
    # raised in the pump thread, which serves every job: nothing was recorded again and the run
    # hung (trial 27). /dev/full fails every write with ENOSPC: the job keeps its result, the
    # next job on the same pump runs.
    import sys

    from aup.resources.base import EndEvent
    from aup.resources.local import LocalProcess, OutputPump

    (tmp_path / "job.py").write_text(
        "import sys\nfor i in range(3000): print('x' * 99)\nprint('#Auptimizer: 0.25')\n")
    events: queue.Queue = queue.Queue()
    pump = OutputPump()
    full = _spec(tmp_path, 1)
    full.command = [sys.executable, "job.py"]
    full.output_path = Path("/dev/full")
    LocalProcess(full, {}, events, 1.0, pump=pump).start()
    nxt = _spec(tmp_path, 2)
    nxt.command = [sys.executable, "job.py"]
    LocalProcess(nxt, {}, events, 1.0, pump=pump).start()
    ends = [e for e in (events.get(timeout=30) for _ in range(4)) if isinstance(e, EndEvent)]
    assert sorted((e.outcome.status.value, e.outcome.score) for e in ends) == [
        ("SUCCEEDED", 0.25), ("SUCCEEDED", 0.25)]
    assert (tmp_path / "jobs" / "2.0.out").read_text().endswith("#Auptimizer: 0.25\n")


def test_an_unwritable_job_config_is_named_not_blamed_on_the_interpreter(tmp_path: Path) -> None:
    # A read-only or full jobs folder said "cannot start .../python3: Read-only file system".
    import sys

    from aup.resources.base import EndEvent
    from aup.resources.local import LocalProcess, OutputPump

    (tmp_path / "blocked").write_text("a file where the jobs folder should be")
    spec = _spec(tmp_path, 1)
    spec.command = [sys.executable, "job.py"]
    spec.config_path = tmp_path / "blocked" / "1.json"
    events: queue.Queue = queue.Queue()
    LocalProcess(spec, {}, events, 1.0, pump=OutputPump()).start()
    end = events.get(timeout=30)
    while not isinstance(end, EndEvent):
        end = events.get(timeout=30)
    assert end.outcome.reason.value == "START_FAILED"
    assert "cannot write the job's config" in end.outcome.detail
    assert "blocked" in end.outcome.detail and "cannot start" not in end.outcome.detail


def test_aup_tell_refuses_a_value_for_a_crashed_experiment(tmp_path: Path) -> None:
    # It printed "told job 1" and exit 0, but nothing would pick the value up: the resumed
    # experiment runs its interrupted job again.
    import sqlite3
    import subprocess

    url, eid, jid = _passive_db(tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    con.execute("UPDATE experiment SET pid = ? WHERE eid = ?", (gone.pid, eid))
    con.commit()
    con.close()
    res = run_cli("tell", "--db", url, str(eid), str(jid), "0.5", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert f"process {gone.pid} is gone" in res.stderr and f"aup resume --db {url}" in res.stderr
    assert _told(url) == []


def test_passive_run_line_has_the_prescript_and_postscript(tmp_path: Path) -> None:
    # The printed command left out runtime_args' prescript and postscript, so a user
    # following it ran the job without its activation step.
    import dataclasses
    import subprocess

    rm = PassiveResourceManager(_config(tmp_path, "passive", {"prompt": False}), queue.Queue())
    shown: list[str] = []
    rm.announce = shown.append
    (tmp_path / "job.py").write_text(
        "import os, sys\nprint(os.environ['STEP'], os.environ['PYTHONUNBUFFERED'], sys.argv[-1])\n")
    spec = dataclasses.replace(_spec(tmp_path, 1), command=[sys.executable, "job.py"],
                               prescript="export STEP=pre", postscript="echo post > post.txt")
    rm.start(spec, rm.slots[0])
    line = shown[-1].splitlines()[1].strip()
    out = subprocess.run(["/bin/sh", "-c", line], cwd="/", capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["pre", "1", str(tmp_path / "jobs" / "1.json")]
    assert (tmp_path / "post.txt").read_text() == "post\n"
    rm.close()


THREADS = """
import json, os, sys
cfg = json.load(open(sys.argv[-1]))
print("THREADS=" + ",".join(os.environ.get(v, "-") for v in
      ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")))
print("#Auptimizer:", cfg["x"])
"""


@pytest.mark.parametrize("n_parallel", [1, 2])
def test_parallel_cpu_jobs_share_the_cpus_in_their_thread_pools(tmp_path: Path,
                                                                n_parallel: int) -> None:
    # Trial 42: with n_parallel 2 every PyTorch/numpy job started one thread per CPU, so the
    # jobs oversubscribed the machine (Ray Tune sets OMP_NUM_THREADS per trial). A value the
    # user set is kept.
    from conftest import write_experiment, write_script

    write_script(tmp_path, "job.py", THREADS)
    path = write_experiment(tmp_path, script="job.py", n_samples=2, n_parallel=n_parallel,
                            parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}])
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    share = str(max(1, len(os.sched_getaffinity(0)) // 2)) if n_parallel == 2 else "-"
    # Trial 44: a user's own OMP_NUM_THREADS (environment or runtime_args.env) kept, but the
    # OPENBLAS/MKL variables set beside it overrode it for numpy: any of the three set means
    # none is added. An empty value is not a setting.
    for env, expected in ((clean, [share] * 3), ({**clean, "OMP_NUM_THREADS": "3"},
                                                 ["3", "-", "-"]),
                          ({**clean, "OMP_NUM_THREADS": ""},
                           [share] * 3 if n_parallel == 2 else ["", "-", "-"])):
        res = subprocess_run_cli(path, tmp_path, env)
        assert res.returncode == 0, res.stdout + res.stderr
        outs = sorted((tmp_path / "jobs").glob("*.0.out"))
        lines = {line for out in outs for line in out.read_text().splitlines()
                 if line.startswith("THREADS=")}
        assert lines == {"THREADS=" + ",".join(expected)}, lines
        for out in outs:
            out.unlink()


def subprocess_run_cli(path: Path, cwd: Path, env: dict[str, str]):
    import subprocess

    return subprocess.run([sys.executable, "-m", "aup", "run", "-q", str(path)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def test_thread_limits_leave_a_user_setting_alone() -> None:
    from aup.resources.local import thread_limits

    assert thread_limits(1, {}) == {}
    assert thread_limits(2, {"OPENBLAS_NUM_THREADS": "4"}) == {}  # e.g. from runtime_args.env
    limits = thread_limits(2, {"OMP_NUM_THREADS": ""})
    assert set(limits) == {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"}
    assert len(set(limits.values())) == 1 and int(limits["OMP_NUM_THREADS"]) >= 1


@pytest.mark.parametrize("text", ["1_000", "1_000,1", "\u0661\u0662", "\uff11"])
def test_passive_values_are_plain_ascii_numbers(text: str) -> None:
    # Trial 45: the passive prompt recorded '1_000,1' as 1000 (Python's float syntax).
    from aup.resources.passive import parse_values

    with pytest.raises(ValueError):
        parse_values(text)
    assert parse_values(" 0.5, 1e-3 ") == (0.5, 0.001)


def _limited_files(soft: int, hard: int):
    """preexec_fn: the child's open-file limit (soft, hard), as 'ulimit -Sn/-Hn' would set."""
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_many_jobs_at_once_raise_the_open_file_limit(tmp_path: Path) -> None:
    """Trial 66: each running job holds about 3 open files in the scheduler, so with the
    usual soft limit (1024) jobs beyond ~335 at once failed START_FAILED ('Too many open
    files') and the experiment ended FAILED, although the hard limit allowed more. Here a
    soft limit of 96 fails from about 10 jobs at once; the scheduler raises it to what 40
    need."""
    from conftest import write_experiment, write_script

    write_script(tmp_path, "job.sh", "#!/bin/sh\nsleep 2\necho '#Auptimizer:1'\n",
                 executable=True)
    exp = write_experiment(tmp_path, script="job.sh", proposer="random", n_samples=40,
                           n_parallel=40, parameter_config=[
                               {"name": "x", "type": "float", "range": [0, 1]}])
    res = run_cli("run", exp.name, cwd=tmp_path, timeout=300,
                  preexec_fn=_limited_files(96, 4096))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Too many open files" not in res.stdout + res.stderr
    assert "jobs 40, finished 40, failed 0" in res.stdout, res.stdout
    # a hard limit too low: said at load, with n_parallel and the fix, before any job
    res = run_cli("run", "--check", exp.name, cwd=tmp_path, timeout=120,
                  preexec_fn=_limited_files(96, 128))
    assert res.returncode == 0, res.stdout + res.stderr
    text = res.stdout + res.stderr
    assert ("n_parallel is 40, which needs about 224 open files, but this process may open "
            "only 128") in text, text
    assert "set n_parallel to 16 or less" in text and "1 warning(s) above" in text, text
    assert "jobs beyond about 16 at once may fail" in text, text
