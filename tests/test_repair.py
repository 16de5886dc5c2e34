"""aup repair: experiments left RUNNING by a dead scheduler become STOPPED and resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, run_cli, write_experiment, write_script

from aup.store.admin import repair
from aup.store.store import Store


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _running(store: Store, name: str, **row) -> tuple[int, int]:
    eid = store.create_experiment(user="u", name=name, config={}, proposer="random",
                                  target="min", n_total=2, config_path=None, workingdir=None)
    if row:
        store.update_experiment(eid, **row)
    rid = store.resource_id("cpu", "cpu:0")
    jid, _ = store.start_job(eid=eid, job_config={"x": 1}, proposal={"id": 0}, rid=rid,
                             output_dir="jobs", proposer_state=None)
    return eid, jid


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("pg_url")


def test_repair_stops_dead_experiments_and_leaves_live_ones(db_url):
    store = Store(db_url)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        dead, dead_job = _running(store, "dead", pid=_dead_pid())
        live, live_job = _running(store, "live", pid=sleeper.pid)
        far_fresh, _ = _running(store, "far-fresh", host="elsewhere", pid=1,
                                heartbeat=time.time())
        far_stale, _ = _running(store, "far-stale", host="elsewhere", pid=1,
                                heartbeat=time.time() - 3600)
        ended, ended_job = _running(store, "ended")
        store.end_experiment(ended, "FAILED")
        with store.engine.begin() as c:
            c.exec_driver_sql("UPDATE resource SET status = 'busy'")

        dry = repair(store, dry_run=True)
        assert {e for e, _, _ in dry.stopped} == {dead, far_stale}
        assert store.get_experiment(dead)["status"] == "RUNNING"  # dry run changed nothing

        report = repair(store, stale_after=60)
        assert {e for e, _, _ in report.stopped} == {dead, far_stale}
        assert {e for e, _, _ in report.alive} == {live, far_fresh}
        assert [(e, n) for e, _, n in report.cleaned] == [(ended, 1)]
        assert report.resources_freed == 0  # live experiments remain: resources untouched
        row = store.get_experiment(dead)
        assert row["status"] == "STOPPED" and row["end_time"] is not None
        assert "aup resume" in row["error_msg"]
        for eid, jid in ((dead, dead_job), (ended, ended_job)):
            job = store.jobs(eid)[0]
            assert job["jid"] == jid and job["status"] == "INTERRUPTED"
            assert job["score"] is None  # never 2.0's -999
            assert [a["status"] for a in store.attempts(jid)] == ["LOST"]
        assert store.get_experiment(live)["status"] == "RUNNING"
        assert store.jobs(live)[0]["status"] == "RUNNING"

        forced = repair(store, force=True)
        assert {e for e, _, _ in forced.stopped} == {live, far_fresh}
        assert forced.resources_freed == 1
    finally:
        sleeper.kill()
        sleeper.wait()
        store.close()


def test_a_zombie_scheduler_counts_as_gone(tmp_path):
    """An 'aup run' killed with kill -9 under a parent that has not reaped it (a notebook, a
    Popen without wait) is a zombie: it counted as alive, so resume refused and repair left it
    alone, and 'aup stop' (the suggested fix) did nothing."""
    from pathlib import Path

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        stat = Path(f"/proc/{zombie.pid}/stat")
        deadline = time.time() + 30
        while b") Z " not in stat.read_bytes():
            assert time.time() < deadline, "the child did not become a zombie"
            time.sleep(0.05)
        eid, _ = _running(store, "zomb", pid=zombie.pid)
        report = repair(store)
        assert [e for e, _, _ in report.stopped] == [eid] and report.alive == []
    finally:
        zombie.wait()
        store.close()


def test_repair_force_on_a_live_scheduler_warns_before_the_resume_hint(tmp_path):
    """'aup repair --force' printed 'continue with: aup resume N' for a scheduler that still
    ran; pasted at once, two schedulers ran the same jobs (trial 33)."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        eid, _ = _running(store, "live", pid=sleeper.pid)
        store.close()
        r = run_cli("repair", "--force", "--db", url, cwd=tmp_path)
        out = " ".join(r.stdout.split())
        assert r.returncode == 0 and f"process {sleeper.pid} is running on this host" in out
        assert f"make sure it has ended (kill it) before aup resume --db {url} {eid}" in out
    finally:
        sleeper.kill()
        sleeper.wait()


SLOW = """
import json, sys, time
cfg = json.load(open(sys.argv[-1]))
time.sleep(cfg["x"])
print("#Auptimizer:", cfg["x"])
"""


def test_repair_after_kill_9_then_resume_finishes(tmp_path):
    write_script(tmp_path, "slow.py", SLOW)
    exp = write_experiment(tmp_path, script="slow.py", proposer="sequence", target="min",
                           parameter_config=[{"name": "x", "type": "choice",
                                              "range": [0.1, 1.5, 0.2]}])
    env = dict(os.environ)
    env.pop("AUP_DB", None)
    env["PYTHONPATH"] = str(REPO / "src")
    proc = subprocess.Popen([sys.executable, "-m", "aup", "run", exp.name, "-q"], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = Store(f"sqlite:///{tmp_path / '.aup' / 'sqlite3.db'}")
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until the second (slow) job runs
        jobs = store.jobs(1) if store.get_experiment(1) else []
        if len(jobs) == 2 and jobs[1]["status"] == "RUNNING":
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store.get_experiment(1)["status"] == "RUNNING"
    time.sleep(1.6)  # the orphaned job ends by itself

    r = run_cli("repair", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "experiment 1" in r.stdout and "STOPPED" in r.stdout and "aup resume 1" in r.stdout
    row = store.get_experiment(1)
    assert row["status"] == "STOPPED"
    jobs = store.jobs(1)
    assert jobs[1]["status"] == "INTERRUPTED" and jobs[1]["score"] is None
    assert run_cli("repair", cwd=tmp_path).stdout.strip() == "nothing to repair"

    r = run_cli("resume", "1", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = json.loads(run_cli("show", "1", "--json", cwd=tmp_path).stdout)
    finished = sorted(j["job_config"]["x"] for j in jobs if j["status"] == "FINISHED")
    assert finished == [0.1, 0.2, 1.5]
    store.close()


@pytest.mark.parametrize("value", ["-5", "nan"])
def test_negative_stale_after_is_refused(tmp_path, value):
    r = run_cli("repair", f"--stale-after={value}", cwd=tmp_path)
    assert r.returncode == 2
    assert f"--stale-after {value} must be a number of seconds >= 0" in r.stderr
    assert "Fix:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / ".aup").exists()  # checked before the database is opened


def test_repair_where_nothing_was_recorded_creates_no_database(tmp_path):
    for args in (["repair", "--dry-run"], ["repair"]):
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2 and "no database at" in proc.stderr, proc.stderr
    assert not (tmp_path / ".aup").exists()


def test_repair_leaves_an_experiment_that_a_resume_claimed_while_it_looked(db_url, monkeypatch):
    # trial 51: repair read the crashed row, a resume claimed it and started a new attempt,
    # then repair marked the live run STOPPED (and its new attempt LOST), which let a second
    # resume run the same jobs beside the first. Now repair writes only if the row is as read.
    from aup.store import admin

    store = Store(db_url)
    crashed, _ = _running(store, "crashed", pid=_dead_pid())
    ended, _ = _running(store, "ended")
    store.end_experiment(ended, "STOPPED")
    real = admin._running_jobs

    def resume_in_between(st: Store, eid: int) -> int:
        # called by repair after it read the rows: now a resume claims each experiment,
        # marks the old attempt LOST (if any) and starts a new one
        n = real(st, eid)
        for claimed in (crashed, ended):
            assert st.claim_experiment(claimed, st.get_experiment(claimed))
            st.mark_interrupted(claimed, "LOST")
            (job,) = st.jobs(claimed)
            st.start_attempt(jid=job["jid"], num=1, rid=st.resource_id("cpu", "cpu:0"),
                             output_path=None)
        return n

    monkeypatch.setattr(admin, "_running_jobs", resume_in_between)
    report = repair(store)
    assert report.stopped == [] and report.cleaned == []
    assert [(e, why) for e, _, why in report.alive] == [(crashed, admin.CHANGED_WHY),
                                                        (ended, admin.CHANGED_WHY)]
    for eid in (crashed, ended):
        row = store.get_experiment(eid)
        assert row["status"] == "RUNNING" and row["pid"] == os.getpid()  # the resume's
        (job,) = store.jobs(eid)
        assert job["status"] == "RUNNING"
        assert [a["status"] for a in store.attempts(job["jid"])] == ["LOST", "RUNNING"]
    store.close()


@pytest.mark.parametrize("forced", [False, True])
def test_repair_and_a_live_scheduler_writing_at_once_do_not_deadlock(pg_url, forced):
    # review of trial 51's fix: repair locked the experiment row, then the attempts; a live
    # scheduler ending an attempt locks the attempt, then the experiment (its heartbeat).
    # PostgreSQL stopped one of them with "deadlock detected". Also, a job the scheduler
    # finished meanwhile must keep its FINISHED.
    import threading

    from sqlalchemy import update

    from aup.store import schema as s

    store, repairer = Store(pg_url), Store(pg_url)
    eid, jid = _running(store, "live", pid=os.getpid())
    seen = store.get_experiment(eid)
    scheduler = store.engine.connect()
    tx = scheduler.begin()  # the scheduler's end of an attempt, half done: rows locked
    scheduler.execute(update(s.job_attempt).where(s.job_attempt.c.jid == jid)
                      .values(status="SUCCEEDED", end_time=time.time()))
    scheduler.execute(update(s.job).where(s.job.c.jid == jid).values(status="FINISHED",
                                                                     score=1.0))
    out: dict = {}

    def repair_now() -> None:
        try:
            out["n"] = repairer.stop_crashed(eid, seen, "repaired", heartbeat=not forced)
        except Exception as err:  # noqa: BLE001 - reported below
            out["error"] = err

    thread = threading.Thread(target=repair_now)
    thread.start()
    time.sleep(0.5)  # repair waits for the attempt's lock
    scheduler.execute(update(s.experiment).where(s.experiment.c.eid == eid)
                      .values(heartbeat=time.time()))
    tx.commit()
    scheduler.close()
    thread.join(30)
    assert "error" not in out, out
    row = store.get_experiment(eid)
    if forced:  # status, host and pid are as seen: stopped, but the finished job stays so
        assert out["n"] == 1 and row["status"] == "STOPPED"
    else:  # the heartbeat moved: the scheduler is alive, nothing is written
        assert out["n"] is None and row["status"] == "RUNNING"
    assert store.jobs(eid)[0]["status"] == "FINISHED"
    assert [a["status"] for a in store.attempts(jid)] == ["SUCCEEDED"]
    store.close()
    repairer.close()
