"""Pause, stop and resume through the real CLI: Ctrl-C, ``aup stop`` from another process,
``kill -9`` of the scheduler, and resuming (continuing exactly like an uninterrupted run)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import QUADRATIC, run_cli
from lifecycle_helpers import (
    alive,
    attempts,
    db_path,
    experiment,
    finish,
    jobs,
    kill_pids,
    query,
    read_pids,
    setup,
    start_cli,
    wait_for,
)

# Jobs with x in BLOCK wait until the file "go" exists; every job writes its pid.
GATED = """
import json, os, signal, sys, time
cfg = json.load(open(sys.argv[-1]))
os.makedirs("pids", exist_ok=True)
open(f"pids/{cfg['job_id']}.{os.environ['AUP_ATTEMPT']}.pid", "w").write(str(os.getpid()))
if cfg.get("gate") and not os.path.exists("go"):
    while not os.path.exists("go"):
        time.sleep(0.02)
print("#Auptimizer:", cfg["x"])
"""


def _running(folder: Path, n: int):
    rows = query(folder, "SELECT jid FROM job_attempt WHERE status = 'RUNNING'")
    return len(rows) >= n and rows


def _wait_for_jobs(folder: Path, n: int) -> list[int]:
    """Wait until ``n`` attempts are RUNNING and ``n`` jobs wrote their pid; return the pids."""
    wait_for(lambda: _running(folder, n) and len(read_pids(folder)) == n,
             what=f"{n} running jobs")
    return read_pids(folder)


def _cleanup(folder: Path) -> None:
    kill_pids(read_pids(folder))


def _ctrl_c_once_running(exp: Path, folder: Path, n: int, pause: float = 0.0
                         ) -> tuple[int, str, str]:
    """Run ``aup run exp`` in ``folder``, send it one SIGINT (Ctrl-C) ``pause`` seconds after
    ``n`` jobs run, and return its (exit code, stdout, stderr); the jobs are killed after."""
    proc = start_cli(str(exp), cwd=folder)
    try:
        _wait_for_jobs(folder, n)
        time.sleep(pause)
        proc.send_signal(signal.SIGINT)
        return finish(proc, folder, timeout=30)
    finally:
        _cleanup(folder)


def test_ctrl_c_stops_jobs_and_resume_continues(tmp_path: Path):
    exp = setup(tmp_path, GATED, n_parallel=2,
                parameter_config=[{"name": "x", "type": "choice", "range": [1, 2, 3, 4]},
                                  {"name": "gate", "type": "choice", "range": [True]}],
                resource_args={"kill_grace": 1})
    proc = start_cli(str(exp), cwd=tmp_path)
    try:
        pids = _wait_for_jobs(tmp_path, 2)
        proc.send_signal(signal.SIGINT)
        rc, out, err = finish(proc, tmp_path, timeout=30)
    finally:
        _cleanup(tmp_path)
    assert rc == 130, out + err
    assert "aup resume 1" in out and "stopped" in out
    assert experiment(tmp_path)["status"] == "STOPPED"
    assert [j["status"] for j in jobs(tmp_path)] == ["INTERRUPTED", "INTERRUPTED"]
    assert [a["status"] for a in attempts(tmp_path, 1)] == ["STOPPED"]
    assert not [p for p in pids if alive(p)]  # the jobs were stopped
    shown = run_cli("show", "1", cwd=tmp_path).stdout  # the reason column says why
    assert shown.count("INTERRUPTED") == 2 and shown.count("STOPPED:") == 2, shown
    (tmp_path / "go").touch()
    res = run_cli("resume", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert experiment(tmp_path)["status"] == "FINISHED"
    rows = jobs(tmp_path)
    assert [j["job_config"]["x"] for j in rows] == [1, 2, 3, 4]
    assert [j["status"] for j in rows] == ["FINISHED"] * 4
    assert [a["status"] for a in attempts(tmp_path, 1)] == ["STOPPED", "SUCCEEDED"]
    # resuming a finished experiment says so and starts nothing
    again = run_cli("resume", "1", cwd=tmp_path)
    assert again.returncode == 0 and "already finished" in again.stdout
    assert len(jobs(tmp_path)) == 4


# The terminal's Ctrl-C reaching a job at its start, before it is in its own process group
# (trial 62): the job sends SIGINT to the scheduler and dies of SIGINT itself, at once.
CAUGHT_BY_CTRL_C = """
import os, signal, sys
if not os.path.exists("go"):
    os.kill(os.getppid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGINT)
print("#Auptimizer:", 1)
"""


def test_a_job_killed_by_the_ctrl_c_is_interrupted_not_failed(tmp_path: Path):
    # Once in 15 Ctrl-Cs the job starting at that moment got the terminal's SIGINT too; it was
    # recorded FAILED (KILLED_BY_SIGNAL), and without ignore_fail the experiment ended FAILED,
    # exit 1, with that job failed for good after the resume.
    exp = setup(tmp_path, CAUGHT_BY_CTRL_C, proposer="random", n_samples=1,
                parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}])
    proc = start_cli(str(exp), cwd=tmp_path)
    rc, out, err = finish(proc, tmp_path, timeout=60)
    assert rc == 130, out + err
    assert "KILLED_BY_SIGNAL" not in out + err
    assert experiment(tmp_path)["status"] == "STOPPED"
    assert [j["status"] for j in jobs(tmp_path)] == ["INTERRUPTED"]
    assert [a["status"] for a in attempts(tmp_path, 1)] == ["STOPPED"]
    (tmp_path / "go").touch()
    res = run_cli("resume", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert [j["status"] for j in jobs(tmp_path)] == ["FINISHED"]


# Waits for the file "go", then fails: every attempt after the gate opens is a failure.
GATED_FAIL = """
import json, os, sys, time
cfg = json.load(open(sys.argv[-1]))
open(f"pids/{cfg['job_id']}.{os.environ['AUP_ATTEMPT']}.pid", "w").write(str(os.getpid()))
while not os.path.exists("go"):
    time.sleep(0.02)
sys.exit(3)
"""


def test_an_interrupted_attempt_does_not_use_up_a_retry(tmp_path: Path):
    """Trial 35: an attempt STOPPED by Ctrl-C (or LOST to a crash) counted against
    job_retries, so after the resume the job failed once and was not retried."""
    exp = setup(tmp_path, GATED_FAIL, n_parallel=1,
                parameter_config=[{"name": "x", "type": "choice", "range": [1]}],
                job_failure={"job_retries": 1, "ignore_fail": True},
                resource_args={"kill_grace": 1})
    rc, out, err = _ctrl_c_once_running(exp, tmp_path, 1)
    assert rc == 130, out + err
    (tmp_path / "go").touch()
    res = run_cli("resume", "1", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr  # no job finished
    assert "retrying (1/1)" in res.stderr, res.stderr
    # the failed attempt after the resume is retried once, as job_retries 1 says
    assert [a["status"] for a in attempts(tmp_path, 1)] == ["STOPPED", "FAILED", "FAILED"]
    assert [j["status"] for j in jobs(tmp_path)] == ["FAILED"]


# Ignores SIGTERM and hangs (so a timeout ends it only with the kill after kill_grace),
# unless the file "go" exists.
DEAF = """
import json, os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
cfg = json.load(open(sys.argv[-1]))
open(f"pids/{cfg['job_id']}.{os.environ['AUP_ATTEMPT']}.pid", "w").write(str(os.getpid()))
if not os.path.exists("go"):
    time.sleep(30)
print("#Auptimizer:", cfg["x"])
"""


def test_a_job_failing_while_the_experiment_stops_keeps_its_retries(tmp_path: Path):
    """Trial 38: a job that failed (here its timeout) while a Ctrl-C was stopping the
    experiment was recorded FAILED with its retries unused, and resume never ran it again."""
    exp = setup(tmp_path, DEAF, n_parallel=1, job_timeout=0.5,
                parameter_config=[{"name": "x", "type": "choice", "range": [1]}],
                job_failure={"job_retries": 2, "ignore_fail": True},
                resource_args={"kill_grace": 3})
    # the timeout's SIGTERM is ignored at 0.5 s; its SIGKILL comes at 3.5 s, after the Ctrl-C
    rc, out, err = _ctrl_c_once_running(exp, tmp_path, 1, pause=1.0)
    assert rc == 130, out + err
    assert [(a["status"], a["fail_reason"]) for a in attempts(tmp_path, 1)] == [
        ("FAILED", "TIMEOUT")]
    assert [j["status"] for j in jobs(tmp_path)] == ["INTERRUPTED"], err
    (tmp_path / "go").touch()
    res = run_cli("resume", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert [a["status"] for a in attempts(tmp_path, 1)] == ["FAILED", "SUCCEEDED"]
    assert [j["status"] for j in jobs(tmp_path)] == ["FINISHED"]


TERM_TIME = """
import json, os, signal, sys, time
def on_term(signum, frame):
    open(f"pids/{os.getpid()}.term", "w").write(repr(time.time()))
    sys.exit(1)
signal.signal(signal.SIGTERM, on_term)
open(f"pids/{os.getpid()}.pid", "w").write(str(os.getpid()))
time.sleep(120)
"""


def test_aup_stop_from_another_process_is_honoured_within_a_second(tmp_path: Path):
    exp = setup(tmp_path, TERM_TIME, n_parallel=2,
                parameter_config=[{"name": "x", "type": "choice", "range": [1, 2, 3]},
                                  {"name": "gate", "type": "choice", "range": [True]}],
                resource_args={"kill_grace": 5})
    proc = start_cli(str(exp), cwd=tmp_path)
    try:
        wait_for(lambda: _running(tmp_path, 2), what="2 running jobs")
        stop = run_cli("stop", "1", cwd=tmp_path)
        t0 = time.time()  # the request is in the database once 'aup stop' returned
        assert stop.returncode == 0 and "stop requested" in stop.stdout
        rc, out, err = finish(proc, tmp_path, timeout=30)
    finally:
        _cleanup(tmp_path)
    assert rc == 130, out + err
    # said as such, not taken for a Ctrl-C (trial 58: a colleague's stop on a shared database)
    assert "a stop was requested from outside this process ('aup stop' or the dashboard" \
        in " ".join(err.split()), err
    # polled every 0.5 s: the jobs get SIGTERM within about a second of the request (0.75 s
    # at most on an idle machine; the bound leaves room for a loaded CI runner)
    terms = [float(p.read_text()) for p in (tmp_path / "pids").glob("*.term")]
    assert len(terms) == 2
    assert max(terms) - t0 < 1.5, [t - t0 for t in terms]
    assert experiment(tmp_path)["status"] == "STOPPED"
    assert experiment(tmp_path)["stop_requested"] == 0


# Gated jobs (and a child of theirs) hang while the file "hold" names their scheduler's pid.
HELD = """
import json, os, subprocess, sys, time
cfg = json.load(open(sys.argv[-1]))
os.makedirs("pids", exist_ok=True)
tag = f"{cfg['job_id']}.{os.environ['AUP_ATTEMPT']}"
open(f"pids/{tag}.pid", "w").write(str(os.getpid()))
if cfg.get("gate"):
    child = subprocess.Popen(["sleep", "120"])
    open(f"pids/{tag}.child.pid", "w").write(str(child.pid))
    while (os.path.exists("hold")
           and open("hold").read().strip() == os.environ["AUP_SCHEDULER_PID"]):
        time.sleep(0.02)
    child.kill()
print("#Auptimizer:", cfg["x"])
"""


def _uninterrupted(folder: Path, proposer: str) -> list[dict]:
    folder.mkdir()
    exp = _write(folder, proposer)
    res = run_cli(str(exp), cwd=folder)
    assert res.returncode == 0, res.stdout + res.stderr
    return [j["job_config"] for j in jobs(folder)]


def _write(folder: Path, proposer: str) -> Path:
    params = [{"name": "x", "type": "float", "range": [0, 1]}]
    if proposer == "sequence":
        params = [{"name": "x", "type": "float", "range": [0, 1], "n": 5}]
    params.append({"name": "gate", "type": "choice", "range": [False, True]})
    return setup(folder, HELD, proposer=proposer, n_samples=10, random_seed=2, n_parallel=2,
                 parameter_config=params)


@pytest.mark.parametrize("proposer", ["random", "sequence"])
def test_kill_9_then_resume_continues_like_an_uninterrupted_run(tmp_path: Path, proposer):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    exp = _write(run_dir, proposer)
    proc = start_cli(str(exp), cwd=run_dir)
    (run_dir / "hold.tmp").write_text(str(proc.pid))
    (run_dir / "hold.tmp").rename(run_dir / "hold")
    try:
        # wait until some jobs finished and two gated ones hang
        wait_for(lambda: (len(query(run_dir, "SELECT jid FROM job WHERE status='FINISHED'"))
                          >= 1 and _running(run_dir, 2)
                          and len(list((run_dir / "pids").glob("*.child.pid"))) == 2),
                 what="finished + running jobs")
        time.sleep(0.2)
        proc.kill()  # kill -9 of the scheduler
        proc.wait()
        for f in proc._aup_files:  # type: ignore[attr-defined]
            f.close()
        before = jobs(run_dir)
        assert experiment(run_dir)["status"] == "RUNNING"  # as a crash leaves it
        lost = [j["jid"] for j in before if j["status"] == "RUNNING"]
        done = {j["jid"]: j for j in before if j["status"] == "FINISHED"}
        assert len(lost) == 2 and done
        orphans = [int((run_dir / "pids" / f"{jid}.0{kind}.pid").read_text())
                   for jid in lost for kind in ("", ".child")]
        assert all(alive(p) for p in orphans)  # the dead scheduler's jobs still run
        stop = run_cli("stop", "1", cwd=run_dir)  # nobody would honour a stop request
        assert stop.returncode == 0 and "crashed" in stop.stdout, stop.stdout
        # list and show say it too, with the command that continues it (trial 35)
        for view in (("list",), ("show", "1")):
            shown = run_cli(*view, cwd=run_dir, env={"COLUMNS": "200"}).stdout
            assert "crashed" in shown and "continue it with: aup resume 1" in shown, shown
        if proposer == "random":  # 'aup repair' first (marks LOST) must change nothing below
            repair = run_cli("repair", cwd=run_dir)
            assert repair.returncode == 0 and "STOPPED" in repair.stdout, repair.stdout
            # it says the dead scheduler's jobs still run, with their pids
            assert "4 process(es) of its jobs still run" in repair.stdout, repair.stdout
            assert f"kill -9 {' '.join(map(str, sorted(orphans)))}" in repair.stdout
        res = run_cli("resume", "1", cwd=run_dir)
    finally:
        _cleanup(run_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not [p for p in orphans if alive(p)]  # resume killed them (children included)
    assert "killed 4 process(es) left running" in res.stderr
    after = jobs(run_dir)
    assert experiment(run_dir)["status"] == "FINISHED"
    for jid in lost:  # lost attempts are recorded, and the job ran again
        assert [(a["status"], a["fail_reason"]) for a in attempts(run_dir, jid)] == [
            ("LOST", "LOST"), ("SUCCEEDED", None)]
    for jid, j in done.items():  # finished jobs kept exactly once, never re-run
        (row,) = [a for a in after if a["jid"] == jid]
        assert row["n_attempts"] == 1 and row["score"] == j["score"]
    jids = [j["jid"] for j in after]
    assert jids == sorted(jids) and len(set(jids)) == len(jids) == 10
    assert min(j for j in jids if j not in {b["jid"] for b in before}) > max(
        b["jid"] for b in before)  # ids keep increasing
    # the same configurations as a run that was never interrupted
    configs = [{k: v for k, v in j["job_config"].items()} for j in after]
    assert configs == _uninterrupted(tmp_path / "ref", proposer)
    state = json.loads(experiment(run_dir)["proposer_state"])
    assert state["n_told"] == 10 and state["pending"] == []


# A resume that dies (kill -9) right after it claimed the experiment.
CLAIM_THEN_DIE = """
import os, sys
from aup.store.store import Store
claim = Store.claim_experiment
def claim_then_die(self, eid, seen):
    claim(self, eid, seen)
    os._exit(137)
Store.claim_experiment = claim_then_die
from aup.cli import main
sys.exit(main(["resume", "1"]))
"""


def test_a_resume_killed_after_its_claim_leaves_no_orphan_behind(tmp_path: Path):
    # trial 51: the claim replaced the dead scheduler's pid before its orphans were killed;
    # a resume killed in between left them running, unknown to the next resume, beside
    # their own re-runs. They are now killed before the claim.
    exp = _write(tmp_path, "random")
    proc = start_cli(str(exp), cwd=tmp_path)
    (tmp_path / "hold.tmp").write_text(str(proc.pid))
    (tmp_path / "hold.tmp").rename(tmp_path / "hold")
    try:
        wait_for(lambda: (_running(tmp_path, 2)
                          and len(list((tmp_path / "pids").glob("*.child.pid"))) == 2),
                 what="two running gated jobs")
        proc.kill()
        finish(proc, tmp_path)
        lost = [j["jid"] for j in jobs(tmp_path) if j["status"] == "RUNNING"]
        orphans = [int((tmp_path / "pids" / f"{jid}.0{kind}.pid").read_text())
                   for jid in lost for kind in ("", ".child")]
        assert len(orphans) == 4 and all(alive(p) for p in orphans)
        env = {k: v for k, v in os.environ.items() if k != "AUP_DB"}
        dying = subprocess.run([sys.executable, "-c", CLAIM_THEN_DIE], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=60)
        assert dying.returncode == 137, dying.stderr
        assert experiment(tmp_path)["pid"] != proc.pid  # it claimed the experiment
        assert not [p for p in orphans if alive(p)]  # and killed the orphans first
        res = run_cli("resume", "1", cwd=tmp_path)
    finally:
        _cleanup(tmp_path)
        kill_pids([int(f.read_text()) for f in (tmp_path / "pids").glob("*.pid")])
    assert res.returncode == 0, res.stdout + res.stderr
    assert experiment(tmp_path)["status"] == "FINISHED"
    for jid in lost:
        assert [a["status"] for a in attempts(tmp_path, jid)] == ["LOST", "SUCCEEDED"]


def test_resume_refuses_a_live_experiment(tmp_path: Path):
    exp = setup(tmp_path, GATED, n_parallel=1,
                parameter_config=[{"name": "x", "type": "choice", "range": [1]},
                                  {"name": "gate", "type": "choice", "range": [True]}])
    proc = start_cli(str(exp), cwd=tmp_path)
    try:
        wait_for(lambda: _running(tmp_path, 1), what="a running job")
        res = run_cli("resume", "1", cwd=tmp_path)
        assert res.returncode == 2 and "still running" in res.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        finish(proc, tmp_path)
        _cleanup(tmp_path)


def test_save_model_with_the_decorator_and_without(tmp_path: Path):
    decorated = """
    import aup

    def save(path, value):
        with open(path, "w") as f:
            f.write(str(value))

    @aup.aup_args
    def main(x, job_id):
        aup.aup_save_model(save, "model.txt", x)
        return (x - 2) ** 2

    main()
    """
    plain = """
    import json, os, sys
    cfg = json.load(open(sys.argv[-1]))
    if cfg.get("save_model") is True:
        path = os.path.join("aup_models", cfg["folder_name"])
        os.makedirs(path, exist_ok=True)
        open(os.path.join(path, "plain.txt"), "w").write(str(cfg["x"]))
    print("#Auptimizer:", (cfg["x"] - 2) ** 2)
    """
    for name, body in (("deco", decorated), ("plain", plain)):
        folder = tmp_path / name
        folder.mkdir()
        exp = setup(folder, body, n_parallel=2,
                    parameter_config=[{"name": "x", "type": "choice", "range": [0, 2, 3]}],
                    resource_args={"save_model": True, "track_intermediate_results": True},
                    job_failure={"ignore_fail": True})
        res = run_cli(str(exp), cwd=folder, env={"PYTHONPATH": str(Path(__file__).parents[1]
                                                                  / "src")})
        assert res.returncode == 0, res.stdout + res.stderr
        assert "best model saved" in res.stdout
        fname = "model.txt" if name == "deco" else "plain.txt"
        assert (folder / "aup_models" / "models_1" / fname).read_text() == "2"
        normal = jobs(folder)
        assert len(normal) == 3  # the re-run is not a job of the experiment
        (rerun,) = jobs(folder, rerun=True)
        assert rerun["status"] == "FINISHED" and rerun["job_config"]["save_model"] is True
        assert rerun["job_config"]["folder_name"] == "models_1"
        best = [j for j in normal if j["job_config"]["x"] == 2][0]
        # the best job did not get the re-run's results appended
        n_best = query(folder, "SELECT count(*) AS n FROM intermediate_result WHERE jid = ?",
                       (best["jid"],))[0]["n"]
        assert n_best == 1
        assert run_cli("best", "1", cwd=folder).stdout.count(f"best job {best['jid']}") == 1
        # `aup show --attempts` marks the re-run's attempt (it looked like a 4th job: trial 27)
        shown = run_cli("show", "1", "--attempts", cwd=folder).stdout
        assert f"{rerun['jid']} (save_model re-run)" in " ".join(shown.split())
        assert shown.count("save_model re-run") == 1
        listed = json.loads(run_cli("show", "1", "--attempts", "--json", cwd=folder).stdout)
        assert [a["jid"] for a in listed if a["is_rerun"]] == [rerun["jid"]]


def test_save_model_failure_is_recorded_and_reported(tmp_path: Path):
    body = """
    import json, sys
    cfg = json.load(open(sys.argv[-1]))
    if cfg.get("save_model"):
        sys.exit(4)
    print("#Auptimizer:", cfg["x"])
    """
    exp = setup(tmp_path, body, n_parallel=1,
                parameter_config=[{"name": "x", "type": "choice", "range": [1, 2]}],
                resource_args={"save_model": True})
    res = run_cli(str(exp), cwd=tmp_path)
    assert res.returncode == 0  # the experiment itself finished
    assert "save_model re-run FAILED" in res.stdout
    (rerun,) = jobs(tmp_path, rerun=True)
    assert rerun["status"] == "FAILED" and rerun["fail_reason"] == "NONZERO_EXIT"
    assert experiment(tmp_path)["status"] == "FINISHED"



#: A job whose save_model re-run writes pids/rerun.pid, waits for a file "go", then saves.
RERUN_WAITS_FOR_GO = """
import json, os, sys, time
cfg = json.load(open(sys.argv[-1]))
if cfg.get("save_model"):
    os.makedirs("pids", exist_ok=True)
    open("pids/rerun.pid", "w").write(str(os.getpid()))
    while not os.path.exists("go"):
        time.sleep(0.02)
    os.makedirs(os.path.join("aup_models", cfg["folder_name"]), exist_ok=True)
    open(os.path.join("aup_models", cfg["folder_name"], "m.txt"), "w").write("saved")
print("#Auptimizer:", cfg["x"])
"""


def _rerun_waiting_for_go(folder: Path) -> Path:
    """An experiment of two jobs with save_model whose re-run waits for ``folder/go``."""
    return setup(folder, RERUN_WAITS_FOR_GO, n_parallel=1,
                 parameter_config=[{"name": "x", "type": "choice", "range": [1, 2]}],
                 resource_args={"save_model": True})


def test_save_model_rerun_that_saves_nothing_is_not_reported_as_saved(tmp_path: Path):
    body = """
    import json, sys
    cfg = json.load(open(sys.argv[-1]))
    print("#Auptimizer:", cfg["x"])
    """
    exp = setup(tmp_path, body, n_parallel=1,
                parameter_config=[{"name": "x", "type": "choice", "range": [1, 2]}],
                resource_args={"save_model": True})
    res = run_cli(str(exp), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "best model saved" not in res.stdout
    assert "finished, but nothing was written in" in res.stdout


def test_ctrl_c_during_the_save_model_rerun_is_resumable(tmp_path: Path):
    exp = _rerun_waiting_for_go(tmp_path)
    proc = start_cli(str(exp), cwd=tmp_path)
    try:
        wait_for(lambda: (tmp_path / "pids" / "rerun.pid").exists(), what="the re-run")
        proc.send_signal(signal.SIGINT)
        rc, out, err = finish(proc, tmp_path, timeout=60)
        assert rc == 130, out + err  # not FINISHED (exit 0) without a model
        assert experiment(tmp_path)["status"] == "STOPPED"
        assert "resume with: aup resume 1" in out
        (tmp_path / "go").touch()
        res = run_cli("resume", "1", cwd=tmp_path)
    finally:
        _cleanup(tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "best model saved" in res.stdout
    assert (tmp_path / "aup_models" / "models_1" / "m.txt").read_text() == "saved"
    # the interrupted re-run got its next attempt (it stayed INTERRUPTED beside a new job)
    reruns = jobs(tmp_path, rerun=True)
    assert [(r["status"], r["n_attempts"]) for r in reruns] == [("FINISHED", 2)]
    assert experiment(tmp_path)["status"] == "FINISHED"


def test_second_ctrl_c_kills_without_the_grace_period(tmp_path: Path):
    stubborn = """
    import json, os, signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    cfg = json.load(open(sys.argv[-1]))
    os.makedirs("pids", exist_ok=True)
    open(f"pids/{cfg['job_id']}.pid", "w").write(str(os.getpid()))
    time.sleep(120)
    """
    exp = setup(tmp_path, stubborn, n_parallel=2,
                parameter_config=[{"name": "x", "type": "choice", "range": [1, 2, 3]}],
                resource_args={"kill_grace": 60})
    proc = start_cli(str(exp), cwd=tmp_path)
    try:
        pids = _wait_for_jobs(tmp_path, 2)
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert proc.poll() is None  # the jobs ignore SIGTERM: the grace period runs
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc, out, err = finish(proc, tmp_path, timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        _cleanup(tmp_path)
    assert rc == 130, out + err
    assert elapsed < 3, elapsed
    assert not [p for p in pids if alive(p)]
    assert [j["status"] for j in jobs(tmp_path)] == ["INTERRUPTED", "INTERRUPTED"]


def test_crash_during_the_save_model_rerun_then_resume_reruns_it(tmp_path: Path):
    exp = _rerun_waiting_for_go(tmp_path)
    proc = start_cli(str(exp), cwd=tmp_path)
    try:
        wait_for(lambda: (tmp_path / "pids" / "rerun.pid").exists(), what="the re-run")
        proc.kill()
        proc.wait()
        for f in proc._aup_files:  # type: ignore[attr-defined]
            f.close()
        assert experiment(tmp_path)["status"] == "RUNNING"  # not FINISHED before the re-run
        (tmp_path / "go").touch()
        res = run_cli("resume", "1", cwd=tmp_path)
    finally:
        _cleanup(tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "best model saved" in res.stdout
    assert (tmp_path / "aup_models" / "models_1" / "m.txt").read_text() == "saved"
    assert [j["status"] for j in jobs(tmp_path)] == ["FINISHED", "FINISHED"]  # not re-run
    reruns = jobs(tmp_path, rerun=True)
    assert [(r["status"], r["n_attempts"]) for r in reruns] == [("FINISHED", 2)]
    assert experiment(tmp_path)["status"] == "FINISHED"


def _file_size_limit(n_bytes: int):
    import resource

    def limit() -> None:  # runs in the child before exec; jobs inherit it too
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))

    return limit


def test_a_database_that_cannot_be_written_stops_cleanly_and_resume_finishes(tmp_path: Path):
    # A full disk under the SQLite database ended 'aup run' with a SQLAlchemy traceback. A
    # file-size limit (RLIMIT_FSIZE, the portable stand-in for a full disk: SQLite's WAL file
    # cannot grow past it) makes the same write error happen after a few jobs.
    exp = setup(tmp_path, "import json, sys\nprint('#Auptimizer:', json.load(open(sys.argv[-1]))"
                "['x'])\n", proposer="random", n_samples=40, n_parallel=2,
                parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}])
    res = run_cli(str(exp), "-q", cwd=tmp_path, preexec_fn=_file_size_limit(400_000))
    assert res.returncode == 1, res.stdout + res.stderr
    err = " ".join(res.stderr.split())
    assert "Traceback" not in res.stderr and "cannot be used" in err, res.stderr
    assert "free space on its disk" in err and "aup resume 1" in err
    done = [j for j in jobs(tmp_path) if j["status"] == "FINISHED"]
    assert 0 < len(done) < 40  # what was recorded before the error stays
    res = run_cli("resume", "1", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = jobs(tmp_path)
    assert len(rows) == 40 and {j["status"] for j in rows} == {"FINISHED"}
    assert experiment(tmp_path)["status"] == "FINISHED"


def _tamper(folder: Path, sql: str, *params) -> None:
    import sqlite3

    con = sqlite3.connect(folder / ".aup" / "sqlite3.db")
    con.execute(sql, params)
    con.commit()
    con.close()


def test_resume_refuses_an_experiment_alive_on_another_host(tmp_path: Path,
                                                            quadratic_experiment):
    """A scheduler on another host (a shared database) is alive while its heartbeat is fresh,
    as ``aup repair`` judges it: resume refuses without --force, and takes a stale one over."""
    exp = quadratic_experiment(n_samples=2)
    assert run_cli("run", exp.name, "-q", cwd=tmp_path).returncode == 0
    _tamper(tmp_path, "UPDATE experiment SET status = 'RUNNING', host = 'elsewhere', pid = 7, "
            "heartbeat = ?, end_time = NULL", time.time())
    res = run_cli("resume", "1", "-q", cwd=tmp_path)
    assert res.returncode == 2 and "still running" in res.stderr
    assert "process 7 on elsewhere sent a heartbeat" in res.stderr and "--force" in res.stderr
    assert experiment(tmp_path)["host"] == "elsewhere"  # not taken over
    _tamper(tmp_path, "UPDATE experiment SET heartbeat = ?", time.time() - 3600)
    res = run_cli("resume", "1", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert experiment(tmp_path)["status"] == "FINISHED"


def test_resume_of_an_experiment_recorded_by_auptimizer_2_0_is_refused(tmp_path: Path,
                                                                       quadratic_experiment):
    """2.0 kept no proposals and no proposer state: resume says so (exit 2, no traceback)
    and changes nothing, instead of a TypeError that left the experiment as it was."""
    exp = quadratic_experiment(n_samples=2)
    assert run_cli("run", exp.name, "-q", cwd=tmp_path).returncode == 0
    _tamper(tmp_path, "UPDATE job SET proposal = NULL, status = 'RUNNING' WHERE jid = 2")
    _tamper(tmp_path, "UPDATE experiment SET status = 'RUNNING', host = NULL, pid = NULL, "
            "proposer_state = NULL")
    res = run_cli("resume", "1", "-q", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "recorded by Auptimizer 2.0" in res.stderr and "aup run" in res.stderr
    assert [j["status"] for j in jobs(tmp_path)] == ["FINISHED", "RUNNING"]


def test_resume_by_a_shared_name_names_the_other_experiments(tmp_path: Path):
    """Two experiments called 'twin': the newest runs, the older one crashed. 'aup resume twin'
    takes the newest (refused: it runs) and now names the older one with its resume command."""
    import socket
    import subprocess

    from aup.store.store import Store

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url)
    ids = [store.create_experiment(user="u", name="twin", config={}, proposer="random",
                                   target="min", n_total=1, config_path=None, workingdir=None)
           for _ in range(2)]
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        store.end_experiment(ids[0], "STOPPED")
        store.update_experiment(ids[1], host=socket.gethostname(), pid=sleeper.pid)
        store.close()
        res = run_cli("resume", "twin", "--db", url, cwd=tmp_path)
        assert res.returncode == 2 and "still running" in res.stderr, res.stderr
        assert (f"'twin' named the newest of 2 experiments, {ids[1]}; the others: {ids[0]} "
                f"(STOPPED: aup resume --db {url} {ids[0]})") in " ".join(res.stderr.split())
        res = run_cli("resume", str(ids[1]), "--db", url, cwd=tmp_path)  # an id: no namesakes
        assert res.returncode == 2 and "the others" not in res.stderr
        # 'aup stop twin' when the newest is the stopped one names the running namesake
        store = Store(url)
        store.end_experiment(ids[1], "STOPPED")
        store.update_experiment(ids[0], status="RUNNING")
        store.close()
        res = run_cli("stop", "twin", "--db", url, cwd=tmp_path)
        assert res.returncode == 0 and f"the others: {ids[0]} (RUNNING: aup stop --db {url} " \
            f"{ids[0]})" in " ".join(res.stdout.split()), res.stdout
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_new_run_of_a_crashed_experiment_names_the_resume(tmp_path: Path):
    """Trial 35: after a crash, 'aup run' of the same file silently started a second
    experiment of that name, leaving the first RUNNING; it now says which one crashed and how
    to continue it, and 'aup list' marks it."""
    exp = setup(tmp_path, QUADRATIC, proposer="random", n_samples=2,
                parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}])
    assert run_cli(str(exp), cwd=tmp_path).returncode == 0
    dead = subprocess.Popen(["true"])
    dead.wait()
    con = sqlite3.connect(db_path(tmp_path))
    with con:  # as a kill -9 of the scheduler leaves it
        con.execute("UPDATE experiment SET status = 'RUNNING', end_time = NULL, pid = ?",
                    (dead.pid,))
    con.close()
    listed = run_cli("list", cwd=tmp_path, env={"COLUMNS": "200"}).stdout
    assert "RUNNING (crashed)" in listed and "continue it with: aup resume 1" in listed, listed
    # the Python API tells it too (trial 61: a plain RUNNING there)
    import aup

    with aup.load_experiment(1, db=str(db_path(tmp_path))) as record:
        assert record.status == "RUNNING" and record.crashed, record
        assert "status='RUNNING', crashed," in repr(record)
    again = run_cli(str(exp), cwd=tmp_path, env={"COLUMNS": "200"})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "another experiment named 'experiment'" in again.stderr, again.stderr
    assert "aup resume 1" in again.stderr and "new experiment 2" in again.stderr, again.stderr
    with aup.load_experiment(2, db=str(db_path(tmp_path))) as record:
        assert record.status == "FINISHED" and not record.crashed


def test_a_new_run_beside_a_running_namesake_says_which_the_name_now_means(tmp_path: Path):
    """Trial 40: a second 'aup run' of a file whose experiment is still running silently made
    a second experiment of that name, which the name then meant in aup show/best/stop."""
    exp = setup(tmp_path, QUADRATIC, proposer="random", n_samples=2,
                parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}])
    assert run_cli(str(exp), cwd=tmp_path).returncode == 0
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        con = sqlite3.connect(db_path(tmp_path))
        with con:  # as a live 'aup run' on this host leaves it
            con.execute("UPDATE experiment SET status = 'RUNNING', end_time = NULL, pid = ?, "
                        "host = ?", (sleeper.pid, socket.gethostname()))
        con.close()
        again = run_cli(str(exp), cwd=tmp_path, env={"COLUMNS": "200"})
        assert again.returncode == 0, again.stdout + again.stderr
        err = " ".join(again.stderr.split())
        assert "another experiment named 'experiment' is running (experiment 1)" in err, err
        assert "means this new experiment 2" in err and "use the id 1" in err, err
    finally:
        sleeper.kill()
        sleeper.wait()
