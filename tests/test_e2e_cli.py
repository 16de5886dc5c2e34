"""End to end: the real CLI, real job subprocesses, the real SQLite store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import QUADRATIC, run_cli, write_experiment, write_script

X = [{"name": "x", "range": [-1, 1], "type": "float"}]


def _db(folder: Path) -> sqlite3.Connection:
    con = sqlite3.connect(folder / ".aup" / "sqlite3.db")
    con.row_factory = sqlite3.Row
    return con


@pytest.mark.parametrize("target", ["min", "max"])
@pytest.mark.parametrize("proposer", ["random", "sequence"])
def test_run_finds_the_optimum_for_both_targets(tmp_path: Path, proposer: str,
                                                target: str) -> None:
    # score = (x - 0.3)^2: min at x = 0.3, max at the bound x = -1
    write_script(tmp_path, "quad.py", QUADRATIC)
    params = [{"name": "x", "range": [-1, 1], "type": "float", "interval": 0.1}]
    path = write_experiment(tmp_path, script="quad.py", proposer=proposer, n_samples=25,
                            random_seed=3, target=target, n_parallel=2, parameter_config=params)
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    con = _db(tmp_path)
    jobs = con.execute("SELECT * FROM job ORDER BY jid").fetchall()
    assert len(jobs) == (21 if proposer == "sequence" else 25)
    assert all(j["status"] == "FINISHED" for j in jobs)
    best = (min if target == "min" else max)(jobs, key=lambda j: j["score"])
    x = json.loads(best["job_config"])["x"]
    if target == "min":
        assert abs(x - 0.3) < (1e-9 if proposer == "sequence" else 0.15)
    else:
        assert x < -0.8
    assert f"best job {best['jid']}" in proc.stdout
    exp = con.execute("SELECT * FROM experiment").fetchone()
    assert exp["status"] == "FINISHED" and exp["end_time"] is not None
    # job protocol files: config with job_id, streamed output per attempt
    cfg = json.loads((tmp_path / "jobs" / f"{best['jid']}.json").read_text())
    assert cfg["job_id"] == best["jid"] and cfg["x"] == x
    assert (tmp_path / "jobs" / f"{best['jid']}.0.out").read_text().startswith("#Auptimizer:")


def test_grid_size_differs_from_n_samples_is_reported(tmp_path: Path) -> None:
    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, script="quad.py", proposer="sequence", n_samples=10,
                            parameter_config=[{"name": "x", "range": [0, 1], "type": "float",
                                               "n": 3}])
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 0
    assert "runs 3 jobs" in proc.stderr
    assert _db(tmp_path).execute("SELECT count(*) FROM job").fetchone()[0] == 3


def test_random_is_reproducible(tmp_path: Path) -> None:
    configs = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        write_script(folder, "quad.py", QUADRATIC)
        path = write_experiment(folder, script="quad.py", n_samples=6, random_seed=42,
                                parameter_config=X + [{"name": "k", "range": [1, 5],
                                                       "type": "int"}])
        assert run_cli("run", str(path), cwd=folder).returncode == 0
        rows = _db(folder).execute("SELECT job_config FROM job ORDER BY jid").fetchall()
        configs.append([json.loads(r[0]) for r in rows])
    assert configs[0] == configs[1]
    assert all(type(c["k"]) is int and 1 <= c["k"] <= 5 for c in configs[0])


def test_python_dash_m_shorthand_and_read_commands(tmp_path: Path) -> None:
    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, "quad.json", script="quad.py", n_samples=3, target="min",
                            parameter_config=X)
    proc = run_cli(str(path), cwd=tmp_path)  # python -m aup quad.json
    assert proc.returncode == 0, proc.stderr
    listing = run_cli("list", cwd=tmp_path)
    assert listing.returncode == 0 and "quad" in listing.stdout and "FINISHED" in listing.stdout
    shown = run_cli("show", "quad", "--json", cwd=tmp_path)
    jobs = json.loads(shown.stdout)
    assert len(jobs) == 3 and {j["status"] for j in jobs} == {"FINISHED"}
    best = json.loads(run_cli("best", "1", "--json", cwd=tmp_path).stdout)
    assert best["score"] == min(j["score"] for j in jobs)
    missing = run_cli("show", "99", cwd=tmp_path)
    assert missing.returncode == 2 and "no experiment" in missing.stderr


def test_parallel_jobs_overlap(tmp_path: Path) -> None:
    write_script(tmp_path, "slow.py", """
        import json, sys, time
        start = time.time(); time.sleep(0.6)
        print("#Auptimizer:", start)
    """)
    path = write_experiment(tmp_path, script="slow.py", n_samples=4, n_parallel=2,
                            parameter_config=X)
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 0
    rows = _db(tmp_path).execute("SELECT start_time, end_time FROM job").fetchall()
    overlaps = sum(1 for a in rows for b in rows if a is not b and
                   a["start_time"] < b["end_time"] and b["start_time"] < a["end_time"])
    assert overlaps >= 2
    # never more than n_parallel at once
    events = sorted([(r["start_time"], 1) for r in rows] + [(r["end_time"], -1) for r in rows])
    level = peak = 0
    for _, d in events:
        level += d
        peak = max(peak, level)
    assert peak <= 2


def test_each_job_has_its_own_environment_and_process_group(tmp_path: Path) -> None:
    write_script(tmp_path, "env.py", """
        import json, os, sys
        cfg = json.load(open(sys.argv[-1]))
        json.dump({"job": os.environ.get("AUP_JOB_ID"), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                   "mine": os.environ.get("MY_FLAG"), "pgid": os.getpgid(0), "pid": os.getpid(),
                   "ppid": os.getppid()},
                  open(f"env_{cfg['job_id']}.json", "w"))
        print("#Auptimizer:1")
    """)
    path = write_experiment(tmp_path, script="env.py", n_samples=2, parameter_config=X,
                            runtime_args={"env": {"MY_FLAG": "on"}})
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 0
    seen = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("env_*.json"))]
    assert len(seen) == 2
    for s in seen:
        assert s["cuda"] == "" and s["mine"] == "on"
        assert s["pgid"] == s["pid"]  # its own process group
    assert {s["job"] for s in seen} == {"1", "2"}


def test_prescript_and_postscript(tmp_path: Path) -> None:
    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, script="quad.py", n_samples=1, parameter_config=X,
                            runtime_args={"prescript": "echo pre > pre.txt",
                                          "postscript": "echo post > post.txt"})
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 0
    assert (tmp_path / "pre.txt").read_text().strip() == "pre"
    assert (tmp_path / "post.txt").read_text().strip() == "post"


def test_bash_job(tmp_path: Path) -> None:
    write_script(tmp_path, "job.sh", """
        #!/bin/sh
        echo "config is $1"
        echo "#Auptimizer:0.75"
    """, executable=True)
    path = write_experiment(tmp_path, script="job.sh", n_samples=2, parameter_config=X)
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    scores = _db(tmp_path).execute("SELECT score FROM job").fetchall()
    assert [s[0] for s in scores] == [0.75, 0.75]


BAD_SCRIPTS = {
    "crash": ("raise SystemExit(3)", "NONZERO_EXIT", "exited with code 3"),
    "traceback": ("raise RuntimeError('boom in training')", "NONZERO_EXIT", "boom in training"),
    "prints nothing": ("pass", "NO_RESULT", "no '#Auptimizer:"),
    "prints garbage": ("print('#Auptimizer:accuracy=high')", "UNPARSEABLE_RESULT", "accuracy"),
    "prints NaN": ("print('#Auptimizer:nan')", "NON_FINITE_SCORE", "not finite"),
    "marker then exit 1": ("print('#Auptimizer:0.5', flush=True); raise SystemExit(1)",
                           "NONZERO_EXIT", "exited with code 1"),
    "killed": ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "KILLED_BY_SIGNAL",
               "SIGKILL"),
}


@pytest.mark.parametrize("case", sorted(BAD_SCRIPTS))
def test_misbehaving_scripts_fail_with_a_recorded_reason(tmp_path: Path, case: str) -> None:
    body, reason, text = BAD_SCRIPTS[case]
    write_script(tmp_path, "bad.py", body + "\n")
    path = write_experiment(tmp_path, script="bad.py", n_samples=3, parameter_config=X)
    proc = run_cli("run", str(path), cwd=tmp_path, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback (most recent call last)" not in proc.stderr
    assert reason in proc.stdout and text in proc.stdout
    assert "resume with: aup resume" in proc.stdout
    con = _db(tmp_path)
    job = con.execute("SELECT * FROM job").fetchone()
    attempt = con.execute("SELECT * FROM job_attempt").fetchone()
    assert job["status"] == "FAILED" and job["fail_reason"] == reason
    assert attempt["fail_reason"] == reason and text in (attempt["detail"] + attempt["output_tail"])
    exp = con.execute("SELECT * FROM experiment").fetchone()
    assert exp["status"] == "FAILED" and reason in exp["error_msg"]
    # without ignore_fail the first failure stops the experiment: no new job after it
    assert con.execute("SELECT count(*) FROM job").fetchone()[0] == 1


def test_ignore_fail_goes_on_and_retries_are_attempts(tmp_path: Path) -> None:
    write_script(tmp_path, "flaky.py", """
        import json, sys
        cfg = json.load(open(sys.argv[-1]))
        if cfg["job_id"] % 2 == 0:
            raise SystemExit(2)
        print("#Auptimizer:", cfg["x"])
    """)
    path = write_experiment(tmp_path, script="flaky.py", n_samples=4, parameter_config=X,
                            job_failure={"job_retries": 1, "ignore_fail": True})
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    con = _db(tmp_path)
    statuses = [r[0] for r in con.execute("SELECT status FROM job ORDER BY jid")]
    assert statuses == ["FINISHED", "FAILED", "FINISHED", "FAILED"]
    attempts = con.execute("SELECT jid, num, fail_reason FROM job_attempt ORDER BY jaid").fetchall()
    failed = [(a["jid"], a["num"]) for a in attempts if a["fail_reason"] == "NONZERO_EXIT"]
    assert failed == [(2, 0), (2, 1), (4, 0), (4, 1)]
    assert (tmp_path / "jobs" / "2.1.out").exists()


def test_all_jobs_failed_means_failed_and_no_best(tmp_path: Path) -> None:
    write_script(tmp_path, "bad.py", "raise SystemExit(1)\n")
    path = write_experiment(tmp_path, script="bad.py", n_samples=3, parameter_config=X,
                            job_failure={"ignore_fail": True})
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 1
    assert "no best result" in proc.stdout and "FAILED" in proc.stdout
    # the first failure's reason is shown, and resuming would run nothing: no resume advice
    assert "no job succeeded; the first failure was job" in proc.stdout
    assert "exited with code 1" in proc.stdout
    assert "resume with" not in proc.stdout
    # resumed anyway, the failures are older than the process: the summary still names one
    proc = run_cli("resume", "1", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no job succeeded; the first failure was job 1 (NONZERO_EXIT)" in proc.stdout


def test_flood_of_output_and_invalid_utf8(tmp_path: Path) -> None:
    write_script(tmp_path, "noisy.py", """
        import sys
        out = sys.stdout.buffer
        line = b"x" * 1023 + b"\\n"
        for _ in range(8 * 1024):      # 8 MiB of lines
            out.write(line)
        out.write(b"\\xff\\xfe broken bytes \\xc3\\n")
        out.write(b"y" * (3 << 20))     # a 3 MiB line without newline...
        out.write(b" #Auptimizer:0.125\\n")  # ...that ends with the marker
        out.flush()
    """)
    path = write_experiment(tmp_path, script="noisy.py", n_samples=1, parameter_config=X)
    proc = run_cli("run", str(path), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    con = _db(tmp_path)
    assert con.execute("SELECT score FROM job").fetchone()[0] == 0.125
    out = (tmp_path / "jobs" / "1.0.out").read_bytes()
    assert len(out) > 11 * (1 << 20)
    assert "\ufffd broken bytes".encode() in out


def test_detached_grandchild_holding_the_output_does_not_stall_the_job(tmp_path: Path) -> None:
    # setsid puts the sleeper outside the job's process group, with the job's stdout open.
    write_script(tmp_path, "bg.sh", """
        #!/bin/sh
        setsid sleep 30 &
        echo "#Auptimizer:1"
    """, executable=True)
    path = write_experiment(tmp_path, script="bg.sh", n_samples=1, job_timeout=20,
                            parameter_config=X)
    import time

    start = time.monotonic()
    proc = run_cli("run", str(path), cwd=tmp_path, timeout=60)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert elapsed < 15
    job = _db(tmp_path).execute("SELECT status, score FROM job").fetchone()
    assert tuple(job) == ("FINISHED", 1.0)


def test_resource_not_ready_is_exit_2_and_nothing_recorded(tmp_path: Path) -> None:
    # gpu with no ids anywhere (no resource_args.gpus, no env.ini): refused before any write
    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, script="quad.py", resource="gpu", parameter_config=X)
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "gpus" in proc.stderr and "Traceback" not in proc.stderr
    assert "started" not in proc.stdout
    db = tmp_path / ".aup" / "sqlite3.db"
    if db.exists():
        assert _db(tmp_path).execute("SELECT count(*) FROM experiment").fetchone()[0] == 0


@pytest.mark.parametrize("args", [("list",), ("show", "1"), ("best", "1"), ("stop", "1"),
                                  ("resume", "1")])
def test_read_commands_do_not_create_a_database(tmp_path: Path, args: tuple[str, ...]) -> None:
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2 and "no database at" in proc.stderr
    assert not (tmp_path / ".aup").exists()
    elsewhere = tmp_path / "nowhere" / "x.db"
    proc = run_cli(*args, "--db", f"sqlite:///{elsewhere}", cwd=tmp_path)
    assert proc.returncode == 2 and not elsewhere.parent.exists()


@pytest.mark.parametrize("proposer", ["random", "sequence"])
def test_run_starts_light_when_output_is_not_a_terminal(tmp_path: Path, proposer: str) -> None:
    # 'aup run' into a pipe needs neither rich (no progress bar) nor the modules of the other
    # subcommands, and neither random nor grid search needs numpy: each of these imports costs
    # tens of milliseconds before the first job.
    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, script="quad.py", proposer=proposer, n_samples=3,
                            parameter_config=[{"name": "x", "range": [-1, 1], "type": "float",
                                               "n": 3}])
    from aup.cli import EXTRA_COMMANDS

    heavy = ("rich", "aup.dashboard", "numpy", *EXTRA_COMMANDS.values())
    probe = ("import atexit, runpy, sys\n"
             f"heavy = {heavy!r}\n"
             "atexit.register(lambda: print('LOADED', sorted(m for m in sys.modules\n"
             "                              if m.startswith(heavy))))\n"
             f"sys.argv = ['aup', 'run', {str(path)!r}]\n"
             "runpy.run_module('aup', run_name='__main__')\n")
    res = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "LOADED []" in res.stdout, res.stdout
    # plain lines instead of rich's console: the same summary a terminal user reads
    assert "FINISHED  jobs 3, finished 3, failed 0" in res.stdout, res.stdout
    assert "best job" in res.stdout


def test_a_mistyped_option_shows_the_usage_of_its_command(tmp_path: Path) -> None:
    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, script="quad.py", parameter_config=X)
    res = run_cli("run", "--quite", str(path), cwd=tmp_path)
    assert res.returncode == 2
    assert "usage: aup run" in res.stderr and "unrecognized arguments: --quite" in res.stderr
    assert not (tmp_path / ".aup").exists()  # nothing ran, nothing was recorded


@pytest.mark.parametrize(("typed", "meant"), [("lst", "list"), ("shwo", "show"),
                                              ("resme", "resume"), ("dashbaord", "dashboard")])
def test_a_mistyped_command_gets_a_suggestion(tmp_path: Path, typed: str, meant: str) -> None:
    # trial 62: argparse's "invalid choice" listed every command without a guess
    res = run_cli(typed, "1", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"unknown command '{typed}' (did you mean '{meant}'?)" in res.stderr, res.stderr
    far = run_cli("xyzzy", cwd=tmp_path)  # nothing close: argparse's list of commands
    assert far.returncode == 2 and "invalid choice: 'xyzzy'" in far.stderr


def test_a_second_database_does_not_overwrite_the_job_files_of_the_first(tmp_path: Path) -> None:
    # Job files are named by job id, and ids count per database: a run with another database
    # (or after deleting .aup/) in the same folder is refused before it records anything.
    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, script="quad.py", n_samples=2, parameter_config=X)
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 0
    first = (tmp_path / "jobs" / "1.0.out").read_text()
    other = tmp_path / "other.db"
    proc = run_cli("run", "--db", f"sqlite:///{other}", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "holds the files of jobs up to id 2" in proc.stderr and "Fix:" in proc.stderr
    assert (tmp_path / "jobs" / "1.0.out").read_text() == first
    assert not other.exists()  # refused before the new database was created
    # the database that recorded them goes on using the folder (ids continue at 3)
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "jobs" / "3.json").exists()
    assert (tmp_path / "jobs" / "1.0.out").read_text() == first


def test_relative_storage_is_next_to_the_experiment_file_and_the_hint_names_it(
        tmp_path: Path) -> None:
    # "storage": "sqlite:///runs.db" is relative to the experiment file's folder (like every
    # path of experiment.json), and the resume hint says which database to resume from.
    folder = tmp_path / "exp"
    folder.mkdir()
    write_script(folder, "bad.py", "raise SystemExit(1)\n")
    path = write_experiment(folder, script="bad.py", n_samples=2, parameter_config=X,
                            storage="sqlite:///runs.db")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_cli("run", str(path), cwd=elsewhere)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (folder / "runs.db").is_file() and not (elsewhere / "runs.db").exists()
    hint = f"resume with: aup resume --db sqlite:///{folder / 'runs.db'} 1"
    assert hint in proc.stdout, proc.stdout
    # following the hint from that other folder resumes this experiment
    proc = run_cli(*hint.split(": ", 1)[1].split()[1:], cwd=elsewhere)
    assert "experiment 1 (experiment) resumed" in proc.stdout, proc.stdout + proc.stderr
    # with the default database the hint stays short
    write_script(tmp_path, "bad.py", "raise SystemExit(1)\n")
    path = write_experiment(tmp_path, script="bad.py", n_samples=2, parameter_config=X)
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert "resume with: aup resume 1 (after fixing the cause" in proc.stdout, proc.stdout


def test_show_keeps_the_json_types_of_choice_values_apart(tmp_path: Path) -> None:
    # 1, 1.0, "1", true and "true" reach the job as different values; the tables say so too.
    write_script(tmp_path, "echo.py", """
        import json, sys
        cfg = json.load(open(sys.argv[-1]))
        print("#Auptimizer:", cfg["job_id"])
    """)
    choices = [1, 1.0, "1", True, "true", "rbf"]
    path = write_experiment(tmp_path, script="echo.py", proposer="sequence", n_samples=6,
                            parameter_config=[{"name": "c", "range": choices,
                                               "type": "choice"}])
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 0
    proc = run_cli("show", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = [line.split("c=", 1)[1].split()[0] for line in proc.stdout.splitlines()
             if "c=" in line]
    assert shown == ["1", "1.0", '"1"', "true", '"true"', "rbf"], proc.stdout
    proc = run_cli("best", "1", cwd=tmp_path)  # the best is the last job (score = job id)
    assert 'c = rbf' in proc.stdout, proc.stdout


def test_show_and_best_print_the_exact_values_the_jobs_received(tmp_path: Path) -> None:
    # 6 significant digits showed x=1.23457e+11 for both grid points of this range.
    write_script(tmp_path, "echo.py", """
        import json, sys
        cfg = json.load(open(sys.argv[-1]))
        print("#Auptimizer:", cfg["job_id"])
    """)
    path = write_experiment(tmp_path, script="echo.py", proposer="sequence",
                            parameter_config=[{"name": "x", "type": "float", "n": 3,
                                               "range": [123456789012.0, 123456789012.5]}])
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 0
    proc = run_cli("show", "1", cwd=tmp_path)
    shown = [line.split("x=", 1)[1].split()[0] for line in proc.stdout.splitlines()
             if "x=" in line]
    assert shown == ["123456789012.0", "123456789012.25", "123456789012.5"], proc.stdout
    proc = run_cli("best", "1", cwd=tmp_path)
    assert "x = 123456789012.5" in proc.stdout, proc.stdout


def test_a_folder_where_the_database_should_be_is_named(tmp_path: Path) -> None:
    (tmp_path / ".aup" / "sqlite3.db").mkdir(parents=True)
    proc = run_cli("list", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is not a file (it is a folder)" in proc.stderr, proc.stderr


def test_resume_says_when_the_experiment_file_was_edited(tmp_path: Path) -> None:
    # resume goes on with the recorded configuration; an edit of the file is named, not ignored
    write_script(tmp_path, "bad.py", "raise SystemExit(1)\n")
    path = write_experiment(tmp_path, script="bad.py", n_samples=3, parameter_config=X,
                            job_timeout=5)
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 1
    proc = run_cli("resume", "1", cwd=tmp_path)
    assert "was edited" not in proc.stderr
    write_experiment(tmp_path, script="bad.py", n_samples=4, parameter_config=X, job_timeout=5)
    proc = run_cli("resume", "1", cwd=tmp_path)
    assert "was edited since the experiment started (n_samples)" in proc.stderr, proc.stderr
    assert f"aup run {path}" in proc.stderr


def _nan_experiment(folder: Path, **extra: Any) -> Path:
    """A grid of 5 jobs, 2 of which (x > 0) report NaN (a diverging learning rate); written
    again with ``extra`` to edit it between a run and its resume."""
    write_script(folder, "nan.py", "import json, sys\n"
                 "x = json.load(open(sys.argv[-1]))['x']\n"
                 "print('#Auptimizer:', 'nan' if x > 0 else x)\n")
    return write_experiment(folder, script="nan.py", proposer="sequence", target="min",
                            parameter_config=[{"name": "x", "type": "choice",
                                               "range": [-3, 1, -2, 2, -1]}], **extra)


def test_resume_takes_an_edited_job_failure_and_job_timeout(tmp_path: Path) -> None:
    # Trial 42: a diverging job (NaN) stops an experiment without ignore_fail; adding it to
    # experiment.json and resuming was ignored ("resume goes on with the configuration recorded
    # then"), so the run stopped again at the next NaN. How failures are handled is taken from
    # the edited file; what is searched is not.
    path = _nan_experiment(tmp_path)
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 1 and "NON_FINITE_SCORE" in proc.stdout, proc.stdout
    assert '"job_failure": {"ignore_fail": true}' in " ".join(proc.stdout.split()), proc.stdout
    _nan_experiment(tmp_path, job_failure={"ignore_fail": True}, job_timeout=30, n_parallel=3,
                    random_seed=7)
    proc = run_cli("resume", "1", cwd=tmp_path)
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resume uses the edited job_failure, job_timeout and n_parallel" in err, err
    assert "was edited since the experiment started (random_seed); resume goes on with the " \
        "configuration recorded then (except job_failure, job_timeout and n_parallel)" \
        in err, err
    assert "jobs 5, finished 3, failed 2" in proc.stdout, proc.stdout
    (row,) = json.loads(run_cli("list", "--json", cwd=tmp_path).stdout)
    assert row["exp_config"]["job_failure"]["ignore_fail"] is True
    assert row["exp_config"]["job_timeout"] == 30 and row["exp_config"]["n_parallel"] == 3
    assert row["exp_config"]["random_seed"] == 0
    # the recorded copy now has them: a later resume sees no job_failure edit
    proc = run_cli("resume", "1", cwd=tmp_path)
    assert "job_failure" not in proc.stderr


@pytest.mark.parametrize("command", ["run", "resume"])
def test_ctrl_c_just_after_the_experiment_is_recorded_stops_it_cleanly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        command: str) -> None:
    # A Ctrl-C between recording the experiment as RUNNING and the start of its loop left it
    # RUNNING with only "interrupted" printed; it now stops it (STOPPED, exit 130, resume hint).
    import os
    import signal

    from aup import cli
    from aup.experiment import Experiment

    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, script="quad.py", n_samples=3, parameter_config=X)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    monkeypatch.chdir(tmp_path)
    if command == "resume":  # a stopped experiment whose last job runs again on resume
        assert cli.main(["run", "--db", db, str(path)]) == 0
        con = sqlite3.connect(tmp_path / "c.db")
        con.execute("UPDATE experiment SET status = 'STOPPED'")
        con.execute("UPDATE job SET status = 'INTERRUPTED' WHERE jid = 3")
        con.commit()
        con.close()
        capsys.readouterr()
    real = getattr(Experiment, command if command == "resume" else "create").__func__

    def recorded_then_interrupted(cls, *args, **kwargs):
        exp = real(cls, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, right after the RUNNING row
        return exp

    monkeypatch.setattr(Experiment, command if command == "resume" else "create",
                        classmethod(recorded_then_interrupted))
    args = ["run", "--db", db, str(path)] if command == "run" else ["resume", "--db", db, "1"]
    assert cli.main(args) == 130
    out = capsys.readouterr()
    assert f"resume with: aup resume --db {db} 1" in out.out, out.out + out.err
    con = sqlite3.connect(tmp_path / "c.db")
    assert con.execute("SELECT status FROM experiment").fetchone()[0] == "STOPPED"
    con.close()


@pytest.mark.parametrize("view", [["show", "--json", "1"], ["show", "1"], ["list"],
                                  ["best", "1"]])
def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path, view: list[str]) -> None:
    # 'aup show --json 1 | head -c 10' ended with a BrokenPipeError traceback; the table views
    # ('aup show 1 | true', 'aup list | true') ended with status 1 (rich's own exit), not 141.
    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, script="quad.py", n_samples=2, parameter_config=X)
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "aup", *view], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before aup writes anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "Error" not in err, err


@pytest.mark.parametrize("view", [["show", "1"], ["export", "1"], ["show", "--json", "1"]])
def test_a_large_view_into_a_pipe_whose_reader_left_ends_141(tmp_path: Path, view) -> None:
    """'aup show 1 | head -2' on a big table ended 0 (trial 33): CPython's buffered stdout
    reported the 64 KiB the pipe took of one large write as done, dropping the rest silently."""
    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, script="quad.py", n_samples=2, parameter_config=X)
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 0
    con = sqlite3.connect(tmp_path / ".aup" / "sqlite3.db")
    for _ in range(12):  # 2 -> 8192 jobs: about 700 KB of table, far more than a pipe holds
        con.execute("INSERT INTO job (score, eid, start_time, end_time, status, job_config, "
                    "proposal, n_attempts, is_rerun) SELECT score, eid, start_time, end_time, "
                    "status, job_config, proposal, n_attempts, is_rerun FROM job")
    con.commit()
    con.close()
    proc = subprocess.Popen([sys.executable, "-m", "aup", *view], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.read(100)  # the reader takes a little...
    proc.stdout.close()  # ... and goes away while aup still writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err
    full = run_cli(*view, cwd=tmp_path)  # into a reader that stays, everything arrives
    assert full.returncode == 0 and len(full.stdout) > 300_000


def test_resume_names_the_recorded_copy_when_it_no_longer_validates(tmp_path: Path) -> None:
    # After the script moved, resume named experiment.json as if that file were the problem.
    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, script="quad.py", n_samples=2, parameter_config=X)
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 0
    con = sqlite3.connect(tmp_path / ".aup" / "sqlite3.db")
    con.execute("UPDATE experiment SET status = 'STOPPED'")
    con.commit()
    con.close()
    (tmp_path / "quad.py").rename(tmp_path / "moved.py")
    res = run_cli("resume", "1", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"in the copy recorded for experiment 1 from {path}" in " ".join(res.stderr.split())
    assert "script" in res.stderr and "does not exist" in res.stderr


def test_a_run_refused_after_creating_its_database_leaves_no_empty_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two runs started at once with different --db: the one refused left an empty database.
    from aup import api, cli

    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, script="quad.py", n_samples=2, parameter_config=X)
    real_open = api.open_store

    def open_then_the_other_run_writes_its_jobs(url, *a, **k):
        st = real_open(url, *a, **k)
        (tmp_path / "jobs").mkdir(exist_ok=True)
        (tmp_path / "jobs" / "1.json").write_text("{}")  # the other run's first job
        return st

    monkeypatch.setattr(api, "open_store", open_then_the_other_run_writes_its_jobs)
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "p.db"
    assert cli.main(["run", "--db", f"sqlite:///{db}", str(path)]) == 2
    assert not db.exists() and not list(tmp_path.glob("p.db-*"))
    assert (tmp_path / "jobs" / "1.json").read_text() == "{}"  # the other run's file is kept


def test_ctrl_c_while_the_command_loads_ends_with_130_and_no_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    # A Ctrl-C right after 'aup list' started (while argparse and the modules were loading)
    # printed a KeyboardInterrupt traceback.
    from aup import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["list"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_a_relative_db_is_named_by_its_absolute_path(tmp_path: Path) -> None:
    # 'aup run --db sqlite:///rel.db' printed that URL as given: its resume hint failed from
    # any other folder
    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, script="quad.py", n_samples=1, parameter_config=X)
    proc = run_cli("run", "--db", "sqlite:///rel.db", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"database sqlite:///{tmp_path / 'rel.db'}" in proc.stdout, proc.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_cli("list", "--db", f"sqlite:///{tmp_path / 'rel.db'}", cwd=elsewhere)
    assert proc.returncode == 0 and "experiment" in proc.stdout


def test_a_number_that_is_both_an_id_and_a_name_is_pointed_out(tmp_path: Path) -> None:
    write_script(tmp_path, "quad.py", QUADRATIC)
    first = write_experiment(tmp_path, "2.json", script="quad.py", n_samples=1,
                             parameter_config=X)  # named "2" after its file
    second = write_experiment(tmp_path, "other.json", script="quad.py", n_samples=1,
                              parameter_config=X)
    assert run_cli("run", str(first), cwd=tmp_path).returncode == 0
    assert run_cli("run", str(second), cwd=tmp_path).returncode == 0
    proc = run_cli("best", "2", cwd=tmp_path)
    assert proc.returncode == 0 and "experiment 2 (other)" in proc.stdout, proc.stdout
    assert "is the id of experiment 2 (other) and the name of experiment 1" in proc.stderr
    assert "give its id 1" in proc.stderr
    # the score is printed as recorded, like the parameters (it was cut to 6 digits)
    con = _db(tmp_path)
    score = con.execute("SELECT score FROM job WHERE eid = 2").fetchone()[0]
    assert f"score {score!r}" in proc.stdout


def test_check_counts_one_job_in_the_singular(tmp_path: Path) -> None:
    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, script="quad.py", proposer="sequence",
                            parameter_config=[{"name": "x", "type": "float", "range": [1, 1]},
                                              {"name": "c", "type": "choice", "range": ["a"],
                                               "n": 3}])
    proc = run_cli("run", "--check", str(path), cwd=tmp_path)
    assert proc.returncode == 0 and ", 1 job)" in proc.stdout, proc.stdout
    # a grid key on a choice was ignored without a word
    assert "parameter_config[1].n is ignored: the grid of a choice" in proc.stderr


def test_a_run_started_with_sigint_ignored_keeps_ignoring_it(tmp_path: Path) -> None:
    # A shell starts 'aup run ... &' with SIGINT ignored; aup installed its own handler anyway,
    # so the Ctrl-C meant for the foreground program stopped the background experiment.
    import signal
    import time

    write_script(tmp_path, "slow.py", """
        import json, sys, time
        cfg = json.load(open(sys.argv[-1]))
        time.sleep(1.0)
        print("#Auptimizer:", cfg["x"])
    """)
    path = write_experiment(tmp_path, script="slow.py", n_samples=2, parameter_config=X)
    env = {k: v for k, v in os.environ.items() if k != "AUP_DB"}
    proc = subprocess.Popen([sys.executable, "-m", "aup", "run", str(path)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 60
    while not (tmp_path / "jobs" / "1.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "FINISHED  jobs 2, finished 2" in out, out


def test_a_database_in_a_missing_folder_creates_no_folders(tmp_path: Path) -> None:
    # "storage": "sqlite:////nonexistent/x.db" created /nonexistent at the root
    write_script(tmp_path, "quad.py", QUADRATIC)
    missing = tmp_path / "no" / "such"
    path = write_experiment(tmp_path, script="quad.py", n_samples=1, parameter_config=X,
                            storage=f"sqlite:///{missing / 'x.db'}")
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"the folder {missing} of the database x.db does not exist" in proc.stderr
    assert not (tmp_path / "no").exists() and not (tmp_path / "jobs").exists()
    # the default .aup/ folder is still created on first use
    path = write_experiment(tmp_path, script="quad.py", n_samples=1, parameter_config=X)
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 0
    assert (tmp_path / ".aup" / "sqlite3.db").is_file()


def test_every_command_help_names_the_log_option() -> None:
    # Trial 41: the README says 'aup run X --log debug' works (it does), but 'aup run --help'
    # listed no --log: it is a global option, read before or after the command.
    from aup import cli

    parser = cli.build_parser()
    commands = parser.subcommand_parsers
    assert {"run", "resume", "show", "dashboard", "init"} <= set(commands)
    for name, command_parser in commands.items():
        assert "--log LEVEL" in command_parser.format_help(), name


def test_the_log_level_is_read_in_either_case(tmp_path: Path) -> None:
    # Trial 58: 2.0-style 'aup run exp.json --log DEBUG' was "invalid choice: 'DEBUG'".
    write_script(tmp_path, "job.py", QUADRATIC)
    path = write_experiment(tmp_path, script="job.py", n_samples=1, parameter_config=X)
    res = run_cli("run", str(path), "--log", "DEBUG", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "DEBUG" in res.stderr  # debug lines were logged
    assert run_cli("--log", "Loud", "list", cwd=tmp_path).returncode == 2


def test_the_stored_configuration_holds_the_default_name(tmp_path: Path) -> None:
    # Trial 41: an experiment.json without "name" is named after the file's stem, but the
    # stored configuration (aup list --json, the dashboard) said "name": null.
    write_script(tmp_path, "job.py", QUADRATIC)
    path = write_experiment(tmp_path, "e5.json", script="job.py", n_samples=1, parameter_config=X)
    assert run_cli("run", "-q", str(path), cwd=tmp_path).returncode == 0
    (row,) = json.loads(run_cli("list", "--json", cwd=tmp_path).stdout)
    assert row["name"] == "e5" and row["exp_config"]["name"] == "e5", row


def test_the_start_line_names_the_target(tmp_path: Path) -> None:
    # Trial 42: "target" defaults to max (2.0's default); a loss run without it was silently
    # maximized, and neither the start line nor --check said which way the search went.
    write_script(tmp_path, "job.py", QUADRATIC)
    explicit = write_experiment(tmp_path, "min.json", script="job.py", n_samples=1,
                                parameter_config=X, target="min")
    implicit = write_experiment(tmp_path, "max.json", script="job.py", n_samples=1,
                                parameter_config=X)
    assert "started: proposer random, target min, resource cpu" in run_cli(
        "run", "-q", str(explicit), cwd=tmp_path).stdout
    assert "(random, target max (the default), cpu, 1 parameter, 1 job)" in run_cli(
        "run", "--check", str(implicit), cwd=tmp_path).stdout


def test_a_long_job_table_is_printed_as_plain_columns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    # Trial 43: rich measured and kept every cell: 'aup show' of 60,000 jobs took 32 s and
    # 464 MB. Above RICH_TABLE_ROWS rows (lowered here to 2) the rows are plain columns.
    from aup import cli

    write_script(tmp_path, "job.py", QUADRATIC)
    path = write_experiment(tmp_path, script="job.py", n_samples=3, parameter_config=X,
                            n_parallel=1)
    assert run_cli("run", "-q", str(path), cwd=tmp_path).returncode == 0
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "RICH_TABLE_ROWS", 2)
    jobs = json.loads(run_cli("show", "1", "--json", cwd=tmp_path).stdout)
    for args, n_rows in ((["show", "1"], 3), (["show", "1", "--attempts"], 3)):
        assert cli.main(args) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[1].split()[:3] == ["job", "status", "score"] or \
            lines[1].split()[:3] == ["job", "attempt", "status"], lines
        assert set(lines[2]) <= {"-", " "} and len(lines) == 3 + n_rows, lines
        assert "┃" not in "\n".join(lines)
    rows = [line.split() for line in cli_lines(cli, capsys, ["show", "1"])[3:]]
    assert [r[0] for r in rows] == [str(j["jid"]) for j in jobs]
    assert [float(r[2]) for r in rows] == pytest.approx([j["score"] for j in jobs], rel=1e-5)
    assert [r[4] for r in rows] == [f"x={j['job_config']['x']!r}" for j in jobs]


def cli_lines(cli, capsys: pytest.CaptureFixture, args: list[str]) -> list[str]:
    assert cli.main(args) == 0
    return capsys.readouterr().out.splitlines()


def test_points_to_evaluate_are_the_first_jobs(tmp_path: Path) -> None:
    write_script(tmp_path, "job.py", QUADRATIC)
    path = write_experiment(tmp_path, script="job.py", n_samples=3, parameter_config=X,
                            proposer="hyperopt", target="min",
                            points_to_evaluate=[{"x": 0.25}, {"x": -1}])
    assert run_cli("run", "-q", str(path), cwd=tmp_path).returncode == 0
    jobs = json.loads(run_cli("show", "1", "--json", cwd=tmp_path).stdout)
    assert [j["job_config"]["x"] for j in jobs[:2]] == [0.25, -1.0] and len(jobs) == 3
    # hyperopt's jobs all carry tid, the points' too (trial 44)
    assert [j["job_config"]["tid"] for j in jobs] == [0, 1, 2]
    bad = write_experiment(tmp_path, "bad.json", script="job.py", n_samples=3,
                           parameter_config=X, points_to_evaluate=[{"x": 7}])
    proc = run_cli("run", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "points_to_evaluate[0].x: outside the range" in proc.stderr


def test_resume_takes_a_valid_job_failure_edit_from_a_file_with_other_mistakes(
        tmp_path: Path) -> None:
    # Trial 44: with another key mistyped ("n_samples": "8") the whole file "no longer
    # validates", so the added ignore_fail was dropped silently and the resume stopped again at
    # the next NaN. Each editable key is now validated on its own; an invalid one refuses.
    path = _nan_experiment(tmp_path)
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 1
    _nan_experiment(tmp_path, job_failure={"ignore_fail": "yes"})
    proc = run_cli("resume", "1", cwd=tmp_path)
    assert proc.returncode == 2 and "job_failure.ignore_fail" in proc.stderr, proc.stderr
    assert "nothing was resumed" in proc.stderr and "Traceback" not in proc.stderr
    (row,) = json.loads(run_cli("list", "--json", cwd=tmp_path).stdout)
    assert row["status"] == "FAILED"  # not claimed, not changed
    _nan_experiment(tmp_path, job_failure={"ignore_fail": True}, random_seed="2")
    proc = run_cli("resume", "1", cwd=tmp_path)
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resume uses the edited job_failure" in err, err
    assert "it no longer validates: random_seed:" in err, err
    assert "jobs 5, finished 3, failed 2" in proc.stdout, proc.stdout


def _resume_ok(folder: Path) -> tuple[str, dict[str, Any]]:
    """``aup resume 1`` that must succeed: its stderr on one line, and the experiment's row."""
    proc = run_cli("resume", "1", cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = json.loads(run_cli("list", "--json", cwd=folder).stdout)
    return " ".join(proc.stderr.split()), row


def test_resume_takes_an_edited_gpu_list_and_names_other_resource_args(tmp_path: Path) -> None:
    # Where jobs run (the GPU ids) is taken on resume; what they compute is not. An invalid
    # edit of a key the resume takes refuses the resume before anything changes.
    gpu = {"resource": "gpu", "n_parallel": 2}
    path = _nan_experiment(tmp_path, resource_args={"gpus": [0, 1]}, **gpu)
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 1
    _nan_experiment(tmp_path, resource_args={"gpus": "x"}, **gpu)
    proc = run_cli("resume", "1", cwd=tmp_path)
    assert proc.returncode == 2 and "resource_args.gpus" in proc.stderr, proc.stderr
    assert "nothing was resumed" in proc.stderr and "Traceback" not in proc.stderr
    _nan_experiment(tmp_path, resource_args={"gpus": [3], "track_intermediate_results": True},
                    job_failure={"ignore_fail": True}, **gpu)
    err, row = _resume_ok(tmp_path)
    assert "resume uses the edited job_failure and resource_args.gpus" in err, err
    assert "(resource_args.track_intermediate_results); resume goes on" in err, err
    assert row["exp_config"]["resource_args"]["gpus"] == [3]
    assert row["exp_config"]["resource_args"]["track_intermediate_results"] is False
    # an edited resource (gpu -> cpu) is not taken, nor its resource_args
    from aup.experiment import _resume_edits

    now = {**row["exp_config"], "resource": "cpu", "resource_args": {"gpus": [5]}}
    taken, _, others = _resume_edits(row["exp_config"], now, ["resource", "resource_args"])
    assert taken == [] and others == ["resource", "resource_args"]


def test_resume_refuses_an_edited_file_that_is_not_json_and_shows_typos(tmp_path: Path) -> None:
    # Trial 49: a trailing comma after the added ignore_fail made the file unreadable; the
    # resume went on with the recorded configuration and failed again at the next NaN. A typo
    # inside an edited key ("ignore_fals") was taken without the warning a run prints.
    path = _nan_experiment(tmp_path)
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 1
    good = path.read_text()
    path.write_text(good.rstrip().rstrip("}") + ', "job_failure": {"ignore_fail": true},\n}\n')
    proc = run_cli("resume", "1", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "not valid JSON: " in proc.stderr and "nothing was resumed" in proc.stderr
    assert "Traceback" not in proc.stderr
    path.write_text("[1, 2]")
    proc = run_cli("resume", "1", cwd=tmp_path)
    assert proc.returncode == 2 and "JSON list, not an object" in proc.stderr, proc.stderr
    (row,) = json.loads(run_cli("list", "--json", cwd=tmp_path).stdout)
    assert row["status"] == "FAILED" and row["exp_config"]["job_failure"]["ignore_fail"] is False
    _nan_experiment(tmp_path, job_failure={"ignore_fals": True})
    proc = run_cli("resume", "1", cwd=tmp_path)
    err = " ".join(proc.stderr.split())
    assert "unknown key 'job_failure.ignore_fals'" in err and "'ignore_fail'" in err, err
    assert proc.returncode == 1  # the typo left ignore_fail off: the next NaN stops it again
    path.unlink()
    proc = run_cli("resume", "1", cwd=tmp_path)
    assert "experiment.json is gone; resume goes on with the configuration recorded" in \
        " ".join(proc.stderr.split()), proc.stderr


def test_infinite_numbers_are_refused_at_load(tmp_path: Path) -> None:
    # Trial 49: "job_timeout": Infinity was taken and stored as JSON that no parser reads.
    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, script="quad.py", parameter_config=X,
                            job_timeout=float("inf"))
    proc = run_cli("run", "--check", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "job_timeout" in proc.stderr, proc.stderr
    path = write_experiment(tmp_path, script="quad.py", parameter_config=X,
                            resource_args={"kill_grace": float("nan")})
    proc = run_cli("run", "--check", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "kill_grace" in proc.stderr, proc.stderr


def test_resume_of_a_file_that_no_longer_validates_reads_it_as_run_does(tmp_path: Path) -> None:
    # Review of the resume edits: with the resource switched (gpu -> cpu) in a file with a
    # mistake, the recorded GPU list was dropped as if edited; a byte order mark was "not valid
    # JSON"; a deeply nested file gave a traceback.
    gpu = {"resource": "gpu", "n_parallel": 2}
    path = _nan_experiment(tmp_path, resource_args={"gpus": [0, 1]}, **gpu)
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 1
    path.write_text("[" * 100_000 + "]" * 100_000)
    proc = run_cli("resume", "1", cwd=tmp_path)
    assert proc.returncode == 2 and "nested too deeply" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    _nan_experiment(tmp_path, resource="cpu", n_parallel=2, job_failure={"ignore_fail": True},
                    random_seed="2")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # a Windows editor's BOM
    err, row = _resume_ok(tmp_path)
    assert "resume uses the edited job_failure of" in err, err
    assert "fix it and start a new experiment with: aup run" in err, err
    assert row["exp_config"]["resource"] == "gpu"
    assert row["exp_config"]["resource_args"]["gpus"] == [0, 1]


def test_show_lists_parameters_without_hyperopts_trial_id(tmp_path: Path) -> None:
    # trial 59: 'aup show' listed hyperopt's tid (2.0's bookkeeping key, equal to the proposal
    # id) among the parameters, while 'aup best' hid it
    write_script(tmp_path, "quad.py", QUADRATIC)
    path = write_experiment(tmp_path, "quad.json", script="quad.py", n_samples=2, target="min",
                            proposer="hyperopt", parameter_config=X)
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 0
    cfg = json.loads((tmp_path / "jobs" / "1.json").read_text())
    assert "tid" in cfg  # the job protocol keeps it
    shown = run_cli("show", "quad", cwd=tmp_path)
    assert shown.returncode == 0 and "x=" in shown.stdout and "tid" not in shown.stdout
    # trial 65: the export, the dashboard's job table and 'aup best --json' still listed it
    exported = run_cli("export", "quad", "--format", "csv", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    header = exported.stdout.splitlines()[0].split(",")
    assert "x" in header and "tid" not in header, header
    best = json.loads(run_cli("best", "quad", "--json", cwd=tmp_path).stdout)
    assert set(best["params"]) == {"x"} and "tid" in best["job_config"], best
    from aup.dashboard.queries import DashboardQueries
    from aup.store.store import open_store

    store = open_store(f"sqlite:///{tmp_path / '.aup' / 'sqlite3.db'}")
    try:
        q = DashboardQueries(store)
        assert all(set(it["params"]) == {"x"} for it in q.jobs(1)["items"])
        assert set(q.experiment(1)["best_job"]["params"]) == {"x"}
    finally:
        store.close()


def test_show_filters_by_status_and_ranks_the_best(tmp_path: Path) -> None:
    """Trial 66: 'aup show' of a 3,000-job experiment printed 3,003 lines with no way to see
    only the failed jobs or the best ones."""
    write_script(tmp_path, "job.py", "import json, sys\nx = json.load(open(sys.argv[-1]))['x']\n"
                                     "print('#Auptimizer:', 'nan' if x > 3 else x)\n")
    path = write_experiment(tmp_path, "e.json", script="job.py", proposer="sequence",
                            target="min", job_failure={"ignore_fail": True},
                            parameter_config=[{"name": "x", "type": "int", "range": [1, 5]}])
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 0

    def shown(*args: str) -> list[int]:
        res = run_cli("show", "e", "--json", *args, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        return [j["jid"] for j in json.loads(res.stdout)]

    assert shown("--status", "failed") == [4, 5]
    assert shown("--status", "FINISHED,failed") == [1, 2, 3, 4, 5]
    assert shown("--top", "2") == [1, 2]  # min: the smallest scores first
    assert shown("--status", "FAILED", "--top", "1") == []  # failed jobs have no score
    text = run_cli("show", "e", "--top", "2", cwd=tmp_path).stdout
    assert "(2 of 5 jobs shown: the 2 best)" in text, text
    text = run_cli("show", "e", "--status", "FAILED", "--top", "1", cwd=tmp_path).stdout
    assert "no FAILED job has one" in text and "leave out --top" in text, text
    res = run_cli("show", "e", "--attempts", "--status", "succeeded", "--json", cwd=tmp_path)
    assert [a["jid"] for a in json.loads(res.stdout)] == [1, 2, 3]
    for args, needle in ((["--status", "DONE"], "DONE is not a job status. Fix: use one or "
                                                "more of RUNNING, FINISHED"),
                         (["--attempts", "--status", "FINISHED"], "FINISHED is not an attempt status"),
                         (["--attempts", "--top", "1"], "does not go with --attempts"),
                         (["--top", "0"], "expected a whole number >= 1")):
        res = run_cli("show", "e", *args, cwd=tmp_path)
        assert res.returncode == 2 and needle in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr


def test_version_names_the_schema_revision(tmp_path: Path) -> None:
    """Trial 68: two installations called themselves 3.0.0.dev0 while one refused the other's
    database; there was no 'aup --version'."""
    from aup import __version__
    from aup.store.migrate import HEAD

    res = run_cli("--version", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"aup {__version__} (database schema revision {HEAD}; ")


def test_show_top_ranks_finished_jobs_as_aup_best_does(tmp_path: Path) -> None:
    """Trial 70: --top ranked an early-stopped job (a score from mid-training) above the best
    job that 'aup best' reports."""
    from aup.store.store import Store

    db = tmp_path / "db.sqlite"
    store = Store(f"sqlite:///{db}")
    eid = store.create_experiment(user="u", name="e", config={}, proposer="random",
                                  target="min", n_total=2, config_path=None, workingdir=None)
    rid = store.resource_id("cpu", "cpu:0")
    for score, status in ((1.5, "FINISHED"), (0.9, "EARLY_STOPPED")):
        jid, jaid = store.start_job(eid=eid, job_config={"x": score}, proposal={"id": 0},
                                    rid=rid, output_dir=None, proposer_state=None)
        store.end_attempt(eid=eid, jid=jid, jaid=jaid, attempt_status="SUCCEEDED"
                          if status == "FINISHED" else "EARLY_STOPPED", exit_code=0,
                          fail_reason=None, detail="", output_tail="", job_status=status,
                          score=score)
    store.close()

    def top(*args: str) -> list[float]:
        res = run_cli("show", "e", "--db", str(db), "--json", *args, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        return [j["score"] for j in json.loads(res.stdout)]

    assert top("--top", "2") == [1.5]
    assert top("--top", "2", "--status", "EARLY_STOPPED,FINISHED") == [0.9, 1.5]
    best = json.loads(run_cli("best", "e", "--db", str(db), "--json", cwd=tmp_path).stdout)
    assert best["score"] == 1.5


def test_list_filters_by_status_name_and_recency(tmp_path: Path) -> None:
    # aup list --status/--name/--last: a database with many experiments, and the ones to
    # resume (CRASHED: marked RUNNING, its process gone; FAILED) found without reading them all.
    import signal
    import time

    from tests.lifecycle_helpers import experiment, start_cli, wait_for

    write_script(tmp_path, "quad.py", QUADRATIC)
    write_script(tmp_path, "bad.py", "import sys\nsys.exit(3)\n")
    write_script(tmp_path, "slow.py", "import time\ntime.sleep(60)\n")
    for name, script in [("mnist-a", "quad.py"), ("mnist-b", "quad.py"), ("cifar", "bad.py")]:
        write_experiment(tmp_path, name=f"{name}.json", script=script, n_samples=1,
                         target="min", parameter_config=X)  # experiment name: the file's stem
        run_cli("run", f"{name}.json", "-q", cwd=tmp_path)
    write_experiment(tmp_path, name="slow.json", script="slow.py", n_samples=1, target="min",
                     parameter_config=X)
    proc = start_cli("run", "slow.json", "-q", cwd=tmp_path)
    wait_for(lambda: experiment(tmp_path, 4).get("status") == "RUNNING", what="slow running")
    proc.send_signal(signal.SIGKILL)  # a crash: the row stays RUNNING
    proc.wait()
    time.sleep(0.2)

    def names(*flags: str) -> list[str]:
        out = run_cli("list", "--json", *flags, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        return [r["name"] for r in json.loads(out.stdout)]

    assert names() == ["slow", "cifar", "mnist-b", "mnist-a"]
    assert names("--status", "crashed,failed") == ["slow", "cifar"]
    assert names("--status", "RUNNING") == ["slow"]  # as the table: "RUNNING (crashed)"
    listed = json.loads(run_cli("list", "--json", cwd=tmp_path).stdout)
    assert [r["crashed"] for r in listed] == [True, False, False, False]
    assert names("--status", "FINISHED", "--name", "mnist*") == ["mnist-b", "mnist-a"]
    assert names("--name", "mnist-?", "--last", "1") == ["mnist-b"]
    assert names("--last", "2") == ["slow", "cifar"]
    table = run_cli("list", "--status", "CRASHED", cwd=tmp_path).stdout
    assert "slow" in table and "RUNNING (crashed)" in table and "cifar" not in table
    bad = run_cli("list", "--status", "DONE", cwd=tmp_path)
    assert bad.returncode == 2 and "DONE is not an experiment status" in bad.stderr
    assert "CRASHED" in bad.stderr and "Traceback" not in bad.stderr
    subprocess.run(["pkill", "-f", str(tmp_path / "slow.py")], check=False)  # the orphan job


def test_a_second_run_under_a_used_name_says_it_starts_from_scratch(tmp_path: Path) -> None:
    # trial 72: an Optuna user re-ran the experiment file after raising n_samples, expecting
    # the finished study to get more trials; a new experiment started anew without a word.
    write_script(tmp_path, "quad.py", QUADRATIC)
    write_experiment(tmp_path, "e.json", script="quad.py", n_samples=2, target="min",
                     parameter_config=X)
    first = run_cli("run", "e.json", "-q", cwd=tmp_path)
    assert first.returncode == 0 and "also named" not in first.stderr
    second = run_cli("run", "e.json", "-q", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert ("experiment 1 is also named 'e' (FINISHED); this run is the new experiment 2, "
            "started from scratch") in second.stderr, second.stderr
    assert "a finished experiment gets no more jobs" in second.stderr
    # a resumable namesake is named even when a later one finished (trial 73)
    write_script(tmp_path, "bad.py", "import sys\nsys.exit(3)\n")
    write_experiment(tmp_path, "e.json", script="bad.py", n_samples=1, target="min",
                     parameter_config=X)
    assert run_cli("run", "e.json", "-q", cwd=tmp_path).returncode == 1  # experiment 3 FAILED
    write_experiment(tmp_path, "e.json", script="quad.py", n_samples=1, target="min",
                     parameter_config=X)
    fourth = run_cli("run", "e.json", "-q", cwd=tmp_path)
    assert "'aup resume 3' continues experiment 3" in fourth.stderr, fourth.stderr
