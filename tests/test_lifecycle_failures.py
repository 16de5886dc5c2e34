"""Job failures through the real CLI: a reason per attempt, retries on another slot,
ignore_fail, the first failure in the CLI output, all-failed experiments, timeouts that kill the
whole process group, and scripts that misbehave (bad input of issue 5)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from conftest import run_cli
from lifecycle_helpers import alive, attempts, experiment, jobs, read_pids, setup

MODES = """
import json, os, signal, sys, time
cfg = json.load(open(sys.argv[-1]))
mode = cfg["mode"]
M = "#Auptimizer:"
if mode == "ok":
    print(M, 1.5)
elif mode == "exit3":
    print("some output before the crash")
    sys.exit(3)
elif mode == "marker_then_crash":
    print(M, 0.25, flush=True)
    raise RuntimeError("crash after the result")
elif mode == "signal":
    print(M, 0.5, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
elif mode == "noresult":
    print("I forgot to print the result")
elif mode == "garbage_last":
    print(M, 1.0)
    print(M + "not-a-number")
elif mode == "garbage_middle":
    print(M, 3.0)
    print(M + "oops,??")
    print(M, 2.0)
elif mode == "nan":
    print(M, "nan")
elif mode == "inf":
    print(M, 1.0)
    print(M, "inf")
elif mode == "sleep":
    time.sleep(60)
"""


def test_every_failure_reason_is_recorded_per_attempt(tmp_path: Path):
    modes = ["ok", "exit3", "marker_then_crash", "signal", "noresult", "garbage_last",
             "garbage_middle", "nan", "inf", "sleep"]
    exp = setup(tmp_path, MODES, n_parallel=4, job_timeout=2,
                parameter_config=[{"name": "mode", "type": "choice", "range": modes}],
                job_failure={"ignore_fail": True},
                resource_args={"kill_grace": 0.5})
    t0 = time.monotonic()
    res = run_cli(str(exp), cwd=tmp_path, timeout=60)
    assert time.monotonic() - t0 < 30
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {j["job_config"]["mode"]: j for j in jobs(tmp_path)}
    assert set(rows) == set(modes)
    expected = {
        "ok": ("FINISHED", None, 0),
        "exit3": ("FAILED", "NONZERO_EXIT", 3),
        "marker_then_crash": ("FAILED", "NONZERO_EXIT", 1),
        "signal": ("FAILED", "KILLED_BY_SIGNAL", -9),
        "noresult": ("FAILED", "NO_RESULT", 0),
        "garbage_last": ("FAILED", "UNPARSEABLE_RESULT", 0),
        "garbage_middle": ("FINISHED", None, 0),
        "nan": ("FAILED", "NON_FINITE_SCORE", 0),
        "inf": ("FAILED", "NON_FINITE_SCORE", 0),
        "sleep": ("FAILED", "TIMEOUT", None),
    }
    for mode, (status, reason, code) in expected.items():
        job = rows[mode]
        (att,) = attempts(tmp_path, job["jid"])
        assert (job["status"], job["fail_reason"]) == (status, reason), mode
        assert att["fail_reason"] == reason, mode
        if code is not None:
            assert att["exit_code"] == code, mode
        assert att["end_time"] is not None
    assert rows["garbage_middle"]["score"] == 2.0  # the garbage line was skipped, not fatal
    assert "exited with code 3" in attempts(tmp_path, rows["exit3"]["jid"])[0]["detail"]
    assert "SIGKILL" in attempts(tmp_path, rows["signal"]["jid"])[0]["detail"]
    assert "some output before the crash" in attempts(tmp_path, rows["exit3"]["jid"])[0][
        "output_tail"]
    assert experiment(tmp_path)["status"] == "FINISHED"
    # 'aup show' lists the reasons
    show = run_cli("show", "1", cwd=tmp_path)
    for reason in ("NONZERO_EXIT", "KILLED_BY_SIGNAL", "TIMEOUT", "NO_RESULT",
                   "UNPARSEABLE_RESULT", "NON_FINITE_SCORE"):
        assert reason in show.stdout


def test_wrong_result_count_with_labels(tmp_path: Path):
    script = """
    import json, sys
    cfg = json.load(open(sys.argv[-1]))
    M = "#Auptimizer:"
    if cfg["mode"] == "good_after_bad":
        print(M + "1.0,2.0")        # wrong count: skipped with a warning
        print(M + "0.5,7.0,8.0")    # good
    else:
        print(M + "0.5,7.0,8.0")
        print(M + "0.4,1.0")        # the last line has the wrong count
    """
    exp = setup(tmp_path, script, n_parallel=1,
                parameter_config=[{"name": "mode", "type": "choice",
                                   "range": ["good_after_bad", "bad_last"]}],
                job_failure={"ignore_fail": True},
                resource_args={"multi_res_labels": ["a", "b"]})
    res = run_cli("--log", "warning", str(exp), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    good, bad = jobs(tmp_path)
    assert good["status"] == "FINISHED" and good["score"] == 0.5
    assert bad["status"] == "FAILED" and bad["fail_reason"] == "WRONG_RESULT_COUNT"
    assert "expected 3 values" in attempts(tmp_path, bad["jid"])[0]["detail"]
    assert "skipped result line with 2 values" in res.stderr


def test_start_failed_is_a_reason(tmp_path: Path):
    # A binary the kernel cannot run (a missing #! interpreter is refused at load already).
    binary = tmp_path / "job.bin"
    binary.write_bytes(b"\0\0\0\0garbage")
    binary.chmod(0o755)
    exp = setup(tmp_path, "", script="job.bin", n_parallel=1,
                parameter_config=[{"name": "x", "type": "choice", "range": [1]}])
    res = run_cli(str(exp), cwd=tmp_path)
    assert res.returncode == 1
    (job,) = jobs(tmp_path)
    assert job["fail_reason"] == "START_FAILED"
    assert "START_FAILED" in res.stdout and "cannot start" in res.stdout
    # The job never ran: it stops the experiment but is not spent. Once the cause is repaired
    # (here the file becomes a script), 'aup resume' runs it (it stayed FAILED before).
    assert job["status"] == "INTERRUPTED" and "could not start run again" in res.stdout
    binary.write_text("#!/usr/bin/env python3\nprint('#Auptimizer: 0.75')\n")
    res = run_cli("resume", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    (job,) = jobs(tmp_path)
    assert job["status"] == "FINISHED" and job["score"] == 0.75
    assert job["fail_reason"] is None
    assert [a["fail_reason"] for a in attempts(tmp_path, job["jid"])] == ["START_FAILED", None]



def test_with_ignore_fail_jobs_that_cannot_start_anywhere_stop_the_experiment(tmp_path: Path):
    # With ignore_fail, a job that could not start was a failure like any other, so a broken
    # environment (here a job file the kernel cannot run) burnt every remaining job in seconds.
    # Now the experiment stops once every slot failed to start 2 attempts in a row; the last
    # job is not spent and runs again on resume.
    binary = tmp_path / "job.bin"
    binary.write_bytes(b"\0\0\0\0garbage")
    binary.chmod(0o755)
    exp = setup(tmp_path, "", script="job.bin", n_parallel=2, n_samples=20, proposer="random",
                parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}],
                job_failure={"ignore_fail": True})
    res = run_cli(str(exp), cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    out = " ".join((res.stdout + res.stderr).split())
    assert "no job can start any more" in out and "cannot start" in out, out
    rows = jobs(tmp_path)
    # The stop needs 2 failed starts in a row on each slot. A job that could not start is not
    # spent (trial 44): it runs again on a slot that can start jobs, so the same one or two
    # jobs take those attempts; well under the 20 jobs it burnt before.
    assert 1 <= len(rows) <= 4, rows
    assert sum(len(attempts(tmp_path, j["jid"])) for j in rows) >= 4
    # every job could not start, except one the stop caught while it was being started on the
    # other slot (a race of the two slots): that one is INTERRUPTED without a reason
    assert {j["fail_reason"] for j in rows} <= {"START_FAILED", None}, rows
    assert "START_FAILED" in {j["fail_reason"] for j in rows}
    assert all(j["status"] == "INTERRUPTED" for j in rows if j["fail_reason"] is None), rows
    assert rows[-1]["status"] == "INTERRUPTED"
    n_failed = sum(j["status"] == "FAILED" for j in rows)
    assert n_failed == 0, rows
    assert "the jobs that were stopped or could not start run again" in out
    binary.write_text("#!/usr/bin/env python3\nprint('#Auptimizer: 0.75')\n")
    res = run_cli("resume", "1", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = jobs(tmp_path)
    assert len(rows) == 20
    assert sum(j["status"] == "FINISHED" for j in rows) == 20 - n_failed

DELETES_ITSELF = """
import json, os, sys, time
cfg = json.load(open(sys.argv[-1]))
time.sleep(3 if cfg["job_id"] == 1 else 0.05)
if cfg["job_id"] == 3:
    os.remove(__file__)  # the script is gone for every later job
print("#Auptimizer:", cfg["x"])
"""


def test_a_script_deleted_mid_run_stops_the_experiment_while_another_slot_is_busy(
        tmp_path: Path):
    # Trial 40: with ignore_fail, the stop for "no job can start" needed every slot to fail
    # twice; the other slot ran a long job, so the free one failed 33 of 40 jobs for good in a
    # second. The failing slot now waits for the busy one, whose next start decides. And a
    # deleted .py script (run as `python job.py`) was an ordinary exit 2, not a start failure.
    exp = setup(tmp_path, DELETES_ITSELF, n_parallel=2, n_samples=20, proposer="random",
                parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}],
                job_failure={"ignore_fail": True})
    res = run_cli(str(exp), cwd=tmp_path, timeout=60)
    out = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == 1, out
    assert "no job can start any more" in out and "is gone" in out, out
    rows = jobs(tmp_path)
    # Job 4 could not start on the free slot (twice), which then waited for the busy one; job 4
    # could not start there either (twice): the experiment stopped. It was never spent (trial
    # 44: jobs 4-6 stayed FAILED, told to the proposer as failures).
    failed = [j for j in rows if j["status"] == "FAILED"]
    assert failed == [] and len(rows) <= 5, rows
    assert next(j for j in rows if j["jid"] == 1)["status"] == "FINISHED"
    stopped = [j for j in rows if j["status"] == "INTERRUPTED"]
    assert stopped and all(j["fail_reason"] in ("START_FAILED", None) for j in stopped), rows
    setup(tmp_path, DELETES_ITSELF.replace("== 3", "== -1"))
    res = run_cli("resume", "1", "-q", cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = jobs(tmp_path)
    assert len(rows) == 20
    assert sum(j["status"] == "FINISHED" for j in rows) == 20 - len(failed)


def test_first_failure_reason_and_tail_in_cli_output_exit_1(tmp_path: Path):
    script = """
    import json, sys, time
    cfg = json.load(open(sys.argv[-1]))
    if cfg["x"] == 2:
        print("TAIL-LINE-1234 before failing")
        print("second line")
        sys.exit(7)
    time.sleep(0.3 if cfg["x"] == 1 else 30)
    print("#Auptimizer:", cfg["x"])
    """
    exp = setup(tmp_path, script, n_parallel=3,
                parameter_config=[{"name": "x", "type": "choice", "range": [1, 2, 3, 4, 5]}],
                resource_args={"kill_grace": 0.5})
    t0 = time.monotonic()
    res = run_cli(str(exp), cwd=tmp_path)
    assert time.monotonic() - t0 < 20  # the sleeping job was stopped, not waited for
    assert res.returncode == 1, res.stdout
    assert "FAILED" in res.stdout
    assert "NONZERO_EXIT" in res.stdout and "exited with code 7" in res.stdout
    assert "TAIL-LINE-1234 before failing\nsecond line" in res.stdout  # the tail, line by line
    assert "aup resume 1" in res.stdout
    row = experiment(tmp_path)
    assert row["status"] == "FAILED" and "TAIL-LINE-1234" in row["error_msg"]
    statuses = {j["job_config"]["x"]: j["status"] for j in jobs(tmp_path)}
    assert statuses[2] == "FAILED"
    assert statuses[3] == "INTERRUPTED"  # stopped cleanly, runs again on resume
    assert 4 not in statuses and 5 not in statuses  # nothing new started after the failure
    # the user fixes the script and resumes: the failed job stays failed (kept exactly once),
    # the interrupted one runs again, the rest run
    (tmp_path / "job.py").write_text('import json, sys\n'
                                     'print("#Auptimizer:", json.load(open(sys.argv[-1]))["x"])\n')
    res = run_cli("resume", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {j["job_config"]["x"]: j for j in jobs(tmp_path)}
    assert {x: j["status"] for x, j in rows.items()} == {
        1: "FINISHED", 2: "FAILED", 3: "FINISHED", 4: "FINISHED", 5: "FINISHED"}
    assert rows[2]["n_attempts"] == 1 and rows[3]["n_attempts"] == 2
    assert experiment(tmp_path)["status"] == "FINISHED"
    assert experiment(tmp_path)["error_msg"] is None


def test_all_failed_experiment_is_failed_without_best(tmp_path: Path):
    script = """
    import sys
    sys.exit(1)
    """
    exp = setup(tmp_path, script, n_parallel=2,
                parameter_config=[{"name": "x", "type": "choice", "range": [1, 2, 3]}],
                job_failure={"ignore_fail": True, "job_retries": 1})
    res = run_cli(str(exp), cwd=tmp_path)
    assert res.returncode == 1
    assert "no best result" in res.stdout
    assert experiment(tmp_path)["status"] == "FAILED"
    rows = jobs(tmp_path)
    assert [j["status"] for j in rows] == ["FAILED"] * 3
    for j in rows:  # every attempt is a row with its reason
        assert [a["fail_reason"] for a in attempts(tmp_path, j["jid"])] == ["NONZERO_EXIT"] * 2
    best = run_cli("best", "1", cwd=tmp_path)
    assert best.returncode == 1
    shown = run_cli("show", "1", "--attempts", "--json", cwd=tmp_path)
    rows = json.loads(shown.stdout)
    assert [(a["jid"], a["num"], a["fail_reason"]) for a in rows] == [
        (jid, num, "NONZERO_EXIT") for jid in (1, 2, 3) for num in (0, 1)]
    table = run_cli("show", "1", "--attempts", cwd=tmp_path)
    assert table.returncode == 0 and table.stdout.count("NONZERO_EXIT") == 6


def test_retry_prefers_another_slot(tmp_path: Path):
    script = """
    import os, sys
    if os.environ["AUP_ATTEMPT"] == "0":
        sys.exit(2)
    print("#Auptimizer: 1")
    """
    exp = setup(tmp_path, script, n_parallel=2,
                parameter_config=[{"name": "x", "type": "choice", "range": [1]}],
                job_failure={"job_retries": 2})
    res = run_cli("--log", "info", str(exp), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    (job,) = jobs(tmp_path)
    assert job["status"] == "FINISHED" and job["n_attempts"] == 2
    assert [a["status"] for a in attempts(tmp_path, job["jid"])] == ["FAILED", "SUCCEEDED"]
    assert "job 1 attempt 0 started on cpu:0" in res.stderr
    assert "job 1 attempt 1 started on cpu:1" in res.stderr
    assert "retrying (1/2)" in res.stderr


def test_ignore_fail_goes_on_and_tells_the_proposer(tmp_path: Path):
    script = """
    import json, sys
    cfg = json.load(open(sys.argv[-1]))
    if cfg["x"] % 2:
        sys.exit(1)
    print("#Auptimizer:", cfg["x"])
    """
    exp = setup(tmp_path, script, proposer="random", n_samples=6, n_parallel=2,
                parameter_config=[{"name": "x", "type": "int", "range": [0, 1000]}],
                job_failure={"ignore_fail": True})
    res = run_cli(str(exp), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = jobs(tmp_path)
    assert len(rows) == 6  # failed jobs count toward n_samples and are not replaced
    assert {j["status"] for j in rows} <= {"FINISHED", "FAILED"}
    state = json.loads(experiment(tmp_path)["proposer_state"])
    assert state["n_failed"] == sum(j["status"] == "FAILED" for j in rows)
    assert state["n_told"] == sum(j["status"] == "FINISHED" for j in rows)


TIMEOUT_SCRIPT = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "open('pids/child.pid', 'w').write(str(os.getpid())); time.sleep(120)"])
grand = subprocess.Popen(["sh", "-c", "trap '' TERM; echo $$ > pids/grand.pid; sleep 120"])
open("pids/main.pid", "w").write(str(os.getpid()))
time.sleep(120)
"""


def test_job_timeout_kills_the_whole_process_group(tmp_path: Path):
    exp = setup(tmp_path, TIMEOUT_SCRIPT, n_parallel=1, job_timeout=1.5,
                parameter_config=[{"name": "x", "type": "choice", "range": [1]}],
                job_failure={"ignore_fail": True},
                resource_args={"kill_grace": 0.5})
    t0 = time.monotonic()
    res = run_cli(str(exp), cwd=tmp_path, timeout=60)
    elapsed = time.monotonic() - t0
    assert elapsed < 15, elapsed
    assert res.returncode == 1  # the only job failed
    (job,) = jobs(tmp_path)
    (att,) = attempts(tmp_path, job["jid"])
    assert att["fail_reason"] == "TIMEOUT"
    pids = read_pids(tmp_path)
    assert len(pids) == 3
    time.sleep(0.3)
    assert [p for p in pids if alive(p)] == []  # no orphan survives (all ignored SIGTERM)


CHATTY = """
import json, sys, time
cfg = json.load(open(sys.argv[-1]))
for _ in range(20):  # 160 KB: more than a pipe holds, so it waits for the scheduler to read
    print("x" * 8000, flush=True)
    time.sleep(0.1)
print("#Auptimizer:", cfg["x"])
"""


def test_a_paused_scheduler_does_not_time_its_jobs_out(tmp_path: Path):
    """Trial 66: while the scheduler was paused (Ctrl-Z, SIGSTOP) nobody read the jobs'
    output; a job that filled its pipe waited, and on SIGCONT every such job was stopped as
    TIMEOUT at once, which failed the experiment. The timeouts now move by the pause."""
    import signal
    import subprocess
    import sys

    from lifecycle_helpers import finish, start_cli, wait_for

    exp = setup(tmp_path, CHATTY, n_parallel=2, job_timeout=6, parameter_config=[
        {"name": "x", "type": "int", "range": [1, 4]}])
    proc = start_cli(str(exp), cwd=tmp_path)
    assert isinstance(proc, subprocess.Popen) and sys.platform.startswith("linux")
    wait_for(lambda: len(attempts(tmp_path, 1)) and attempts(tmp_path, 1)[0]["status"]
             == "RUNNING", what="job 1 running")
    proc.send_signal(signal.SIGSTOP)
    time.sleep(8)  # past job_timeout while paused
    proc.send_signal(signal.SIGCONT)
    rc, out, err = finish(proc, tmp_path, timeout=120)
    assert rc == 0, out + err
    assert [j["status"] for j in jobs(tmp_path)] == ["FINISHED"] * 4, out + err
    assert "the scheduler did not run for" in err and "is extended by as much" in err, err
