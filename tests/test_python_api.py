"""The Python API a notebook or script uses: aup.run_experiment and aup.load_experiment
(real subprocess jobs, real SQLite files)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import QUADRATIC, run_cli, write_experiment, write_script
from lifecycle_helpers import experiment, jobs, query, wait_for

import aup
from aup.errors import UsageError

X = [{"name": "x", "type": "float", "range": [0, 1]}]

SLOW = """
import json, sys, time
cfg = json.load(open(sys.argv[-1]))
time.sleep(0.5)
print("#Auptimizer:", cfg["x"])
"""


def test_ctrl_c_in_run_experiment_stops_resumably(tmp_path: Path) -> None:
    """Trial 38: Ctrl-C during aup.run_experiment (no CLI signal handler) recorded the
    experiment FAILED with 'scheduler error: KeyboardInterrupt()'; it is STOPPED, as with
    'aup run', and the resume finishes it."""
    write_script(tmp_path, "job.py", SLOW)
    exp = write_experiment(tmp_path, script="job.py", n_samples=6, parameter_config=X)
    driver = tmp_path / "drive.py"
    driver.write_text(f"import aup\naup.run_experiment({str(exp)!r})\n")
    proc = subprocess.Popen([sys.executable, str(driver)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: query(tmp_path, "SELECT jid FROM job_attempt WHERE status = 'RUNNING'"),
             what="a running job")
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err  # re-raised to the caller
    # the command that continues it, as 'aup run' prints it (trial 46: only the bare error)
    assert ("experiment 1 (experiment) stopped; continue with aup.resume_experiment(1), or "
            "in a shell: aup resume 1") in err, err
    row = experiment(tmp_path)
    assert row["status"] == "STOPPED", (row["status"], row["error_msg"])
    assert "scheduler error" not in (row["error_msg"] or "")
    # the same from aup.resume_experiment
    driver.write_text("import aup\naup.resume_experiment(1)\n")
    n_started = len(query(tmp_path, "SELECT jaid FROM job_attempt"))
    proc = subprocess.Popen([sys.executable, str(driver)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(query(tmp_path, "SELECT jaid FROM job_attempt WHERE status = "
                                         "'RUNNING'")) and len(query(
                 tmp_path, "SELECT jaid FROM job_attempt")) > n_started,
             what="a job running in the resume")
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert ("experiment 1 (experiment) stopped; continue with aup.resume_experiment(1), or "
            "in a shell: aup resume 1") in err, err
    assert experiment(tmp_path)["status"] == "STOPPED"
    res = run_cli("resume", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert [j["status"] for j in jobs(tmp_path)] == ["FINISHED"] * 6


def test_run_experiment_logs_the_config_warnings(tmp_path: Path, caplog) -> None:
    """Trial 38: aup run logged the configuration's warnings, aup.run_experiment dropped them."""
    write_script(tmp_path, "job.py", QUADRATIC)
    exp = write_experiment(tmp_path, script="job.py", n_samples=2, parameter_config=X,
                           resource_args={"early_stop": {"aup_policy": "median",
                                                         "aup_policy_steps": 2,
                                                         "bandit_factor": 0.1}})
    with caplog.at_level("WARNING"):
        result = aup.run_experiment(exp, db=tmp_path / "a.db")  # a Path as db= too
    assert result.status.value == "FINISHED"
    assert "bandit_factor is ignored by policy 'median'" in caplog.text, caplog.text


def test_a_refused_run_experiment_leaves_no_database(tmp_path: Path) -> None:
    """Trial 38: a run refused by the jobs-folder check left a new, empty database file (the
    CLI removed it, the Python API did not)."""
    write_script(tmp_path, "job.py", QUADRATIC)
    exp = write_experiment(tmp_path, script="job.py", n_samples=2, parameter_config=X)
    assert run_cli("run", "-q", str(exp), cwd=tmp_path).returncode == 0  # jobs/ is .aup's
    with pytest.raises(UsageError, match="another database"):
        aup.run_experiment(str(exp), db=str(tmp_path / "other.db"))
    assert not list(tmp_path.glob("other.db*"))
    assert json.loads(run_cli("list", "--json", cwd=tmp_path).stdout)[0]["status"] == \
        "FINISHED"


CURVE = """
import json, sys
cfg = json.load(open(sys.argv[-1]))
x = cfg["x"]
for step in range(3):
    print("#Auptimizer:", "nan" if (x == 2 and step == 1) else x * 10 + step)
"""


def test_intermediate_values_by_job(tmp_path: Path, caplog) -> None:
    # Trial 42: the Python API gave final values only; per-epoch curves needed raw SQL or the
    # dashboard's REST API (Optuna has trial.intermediate_values).
    write_script(tmp_path, "job.py", CURVE)
    exp = write_experiment(tmp_path, script="job.py", proposer="sequence", target="min",
                           parameter_config=[{"name": "x", "type": "choice", "range": [1, 2]}],
                           resource_args={"track_intermediate_results": True},
                           job_failure={"ignore_fail": True})
    assert run_cli(str(exp), "-q", cwd=tmp_path).returncode == 0
    record = aup.load_experiment(1, db=tmp_path / ".aup" / "sqlite3.db")
    with caplog.at_level("WARNING"):
        assert record.intermediate_values() == {1: [10.0, 11.0, 12.0], 2: [20.0, None, 22.0]}
    assert "records no intermediate results" not in caplog.text
    # Optuna's names for the best job (trial 55: repr showed name= and status=, but
    # record.name raised AttributeError, and there was no best_params)
    assert (record.name, record.status) == ("experiment", "FINISHED")
    best = record.best()
    assert best is not None and record.best_value == best["score"] == 12.0
    assert record.best_params == {"x": 1}
    # without tracking: none recorded, and said why (trial 55: a silent {})
    exp = write_experiment(tmp_path, "plain.json", script="job.py", proposer="sequence",
                           parameter_config=[{"name": "x", "type": "choice", "range": [1]}])
    assert run_cli(str(exp), "-q", cwd=tmp_path).returncode == 0
    with caplog.at_level("WARNING"):
        assert aup.load_experiment(2, db=tmp_path / ".aup" / "sqlite3.db"
                                   ).intermediate_values() == {}
    assert "track_intermediate_results was off" in caplog.text, caplog.text


THREE_RESULTS = """
import json, sys, time
cfg = json.load(open(sys.argv[-1]))
print("#Auptimizer:", cfg["x"], flush=True)
time.sleep(1)
"""


@pytest.mark.parametrize("hooks, error, status", [
    (("on_start",), RuntimeError, "FAILED"),
    # raised in the loop, then again as the clean-up records the stopped jobs
    (("on_result", "on_job_ended"), RuntimeError, "FAILED"),
    (("on_result", "on_job_ended"), KeyboardInterrupt, "STOPPED"),  # a second Ctrl-C
])
def test_an_error_during_the_run_or_its_clean_up_leaves_no_running_experiment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hooks: tuple[str, ...], error: type,
        status: str) -> None:
    # Trial 46: an observer raising in on_start (outside the clean-up), or raising again in
    # the clean-up's drain, and a second Ctrl-C during the clean-up, left the experiment
    # RUNNING: 'aup resume' refused it while the notebook kernel lived.
    from aup.experiment import Observer

    class Raising(Observer):
        pass

    def boom(*args, **kwargs):
        raise error("bug in my callback")

    for hook in hooks:
        setattr(Raising, hook, boom)
    write_script(tmp_path, "job.py", THREE_RESULTS)
    exp = write_experiment(tmp_path, script="job.py", n_samples=4, n_parallel=2,
                           parameter_config=X, target="min")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error):
        aup.run_experiment(exp, observer=Raising())
    record = aup.load_experiment(1)
    assert record.row["status"] == status, record.row
    assert all(j["status"] != "RUNNING" for j in record.jobs()), record.jobs()
    proc = run_cli("resume", "1", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ctrl_c_is_held_until_the_block_ends() -> None:
    import os
    import signal

    from aup.experiment import sigint_held

    reached = False
    with pytest.raises(KeyboardInterrupt):
        with sigint_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            reached = True
    assert reached and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # discard: a clean-up while an interrupt is already on its way (a double interrupt during
    # the store's close printed SQLAlchemy's "Exception closing connection" traceback)
    reached = False
    with sigint_held(discard=True):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        reached = True
    assert reached and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_bad_arguments_and_closing_a_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    # Trial 46: run_experiment(None) raised a TypeError from pathlib; a record could not be
    # closed but by the garbage collector (a notebook keeping records kept their connections).
    import os

    with pytest.raises(UsageError, match="needs the path of an experiment.json file"):
        aup.run_experiment(None)
    with pytest.raises(UsageError, match="db= needs a database URL"):
        aup.run_experiment("experiment.json", db=5)
    write_script(tmp_path, "job.py", QUADRATIC)
    exp = write_experiment(tmp_path, script="job.py", n_samples=1, parameter_config=X)
    monkeypatch.chdir(tmp_path)
    aup.run_experiment(exp)

    def open_db_files() -> int:
        db = str(tmp_path / ".aup" / "sqlite3.db")
        return sum(os.path.realpath(f"/proc/self/fd/{fd}").startswith(db)
                   for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}"))

    before = open_db_files()
    kept = []
    for _ in range(5):
        with aup.load_experiment(1) as record:
            assert record.jobs()
            kept.append(record)  # still referenced: only close() frees its connections
    assert open_db_files() == before
    unclosed = [aup.load_experiment(1) for _ in range(3)]
    assert all(r.jobs() for r in unclosed) and open_db_files() > before  # the check can fail


FAILS_ON_A_FLAG = """
import json, os, sys
cfg = json.load(open(sys.argv[-1]))
if os.path.exists("broken"):
    sys.exit("the data loader is broken")
print("#Auptimizer:", cfg["x"])
"""


def test_resume_experiment_continues_from_python(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog) -> None:
    """An Optuna user continues a study in the notebook (load_study + optimize); until now a
    failed or stopped experiment could be continued only with the 'aup resume' command."""
    write_script(tmp_path, "job.py", FAILS_ON_A_FLAG)
    exp = write_experiment(tmp_path, script="job.py", n_samples=5, parameter_config=X,
                           random_seed=3)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken").write_text("")
    first = aup.run_experiment(exp)
    assert first.status.value == "FAILED"
    (tmp_path / "broken").unlink()  # the user repairs the cause...
    cfg = json.loads(exp.read_text())
    cfg["n_parallel"] = 2  # ...and edits what a resume takes
    exp.write_text(json.dumps(cfg))
    with caplog.at_level("WARNING"):
        result = aup.resume_experiment("experiment")  # by name, as aup resume
    assert result.status.value == "FINISHED", result
    assert "resume uses the edited n_parallel" in caplog.text, caplog.text
    done = jobs(tmp_path)
    # the failed job stays recorded and counts (n_samples is the number of jobs)
    assert sorted(j["status"] for j in done) == ["FAILED"] + ["FINISHED"] * 4
    assert json.loads(experiment(tmp_path)["exp_config"])["n_parallel"] == 2
    # nothing left to resume: said, not a silent second run
    with pytest.raises(UsageError, match="already finished; nothing to resume"):
        aup.resume_experiment(1)


def test_resume_experiment_refuses_bad_arguments_without_creating_a_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"needs an experiment id \(int\) or name \(str\), got NoneType"):
        aup.resume_experiment(None)
    with pytest.raises(UsageError, match="db= needs a database URL"):
        aup.resume_experiment(1, db=5)
    with pytest.raises(UsageError, match="no database at"):
        aup.resume_experiment(1)
    assert not (tmp_path / ".aup").exists()
    write_script(tmp_path, "job.py", QUADRATIC)
    aup.run_experiment(write_experiment(tmp_path, script="job.py", n_samples=1,
                                        parameter_config=X))
    with pytest.raises(UsageError, match="no experiment 'nosuch'"):
        aup.resume_experiment("nosuch")


def test_a_resume_while_another_thread_runs_the_experiment_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trial 64: run_experiment in a notebook's background thread, then resume_experiment in
    the next cell. The record's pid is this process's own, which counted as dead: the record
    said crashed, and the resume killed the running jobs (FAILED, their results lost) and ran
    the experiment beside the thread."""
    import threading

    write_script(tmp_path, "job.py", SLOW)
    exp = write_experiment(tmp_path, script="job.py", n_samples=4, n_parallel=2,
                           parameter_config=X)
    monkeypatch.chdir(tmp_path)
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(result=aup.run_experiment(exp)))
    thread.start()
    try:
        wait_for(lambda: query(tmp_path, "SELECT jid FROM job_attempt WHERE status = "
                                         "'RUNNING'"), what="a running job")
        with aup.load_experiment(1) as record:
            assert record.status == "RUNNING" and not record.crashed
        with pytest.raises(UsageError, match="another thread of this process runs it"):
            aup.resume_experiment(1)
        # trial 69: force (for a process that is gone) ran the running jobs a second time
        with pytest.raises(UsageError, match="force does not apply to a run that is alive"):
            aup.resume_experiment(1, force=True)
    finally:
        thread.join(timeout=120)
    assert out["result"].status.value == "FINISHED", out["result"]
    assert [j["status"] for j in jobs(tmp_path)] == ["FINISHED"] * 4
    assert len(query(tmp_path, "SELECT jaid FROM job_attempt")) == 4  # nothing ran twice
    # the same pid recorded by an earlier process (a restarted container): crashed
    import sqlite3

    with sqlite3.connect(tmp_path / ".aup" / "sqlite3.db") as c:
        c.execute("UPDATE experiment SET status = 'RUNNING'")
    with aup.load_experiment(1) as record:
        assert record.crashed


def test_experiments_are_named_by_id_name_or_result_and_observers_are_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trial 64: a NumPy id from a DataFrame was refused by resume_experiment, True and 1.0
    were looked up as the names 'True' and '1.0', db=123 was a TypeError from os.fspath, and
    observer=print failed the run after recording a FAILED experiment."""
    import numpy as np

    write_script(tmp_path, "job.py", QUADRATIC)
    exp = write_experiment(tmp_path, script="job.py", n_samples=2, parameter_config=X)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="observer= needs an object with the methods .* lacks "
                                         "on_start, on_job_started"):
        aup.run_experiment(exp, observer=print)
    assert not (tmp_path / ".aup").exists()  # refused before anything was recorded
    with pytest.raises(UsageError, match="user= needs a user name"):
        aup.run_experiment(exp, user=5)
    result = aup.run_experiment(exp)
    for ref in (np.int64(1), result, 1, "experiment"):
        with aup.load_experiment(ref) as record:
            assert record.eid == 1, ref
    for bad in (True, 1.0, [1]):
        with pytest.raises(UsageError, match=r"load_experiment\(\) needs an experiment id"):
            aup.load_experiment(bad)
    with pytest.raises(UsageError, match="db= needs a database URL or file path, got int"):
        aup.load_experiment(1, db=123)
    with pytest.raises(UsageError, match="already finished"):
        aup.resume_experiment(np.int64(1))
    with pytest.raises(UsageError, match="already finished"):
        aup.resume_experiment(result)
    with pytest.raises(UsageError, match="lacks on_start"):
        aup.resume_experiment(1, observer=lambda *a: None)


def test_the_training_script_given_for_the_experiment_file_is_named(tmp_path: Path) -> None:
    from aup.errors import ConfigError

    write_script(tmp_path, "train.py", QUADRATIC)
    with pytest.raises(ConfigError, match=r"this is a \.py file, not the experiment"):
        aup.run_experiment(tmp_path / "train.py")
