"""End to end on PostgreSQL: `aup run` with `storage` = a PostgreSQL URL, several experiments
from several processes at once, and bad URLs (exit 2, nothing written)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import QUADRATIC, REPO, run_cli, write_experiment, write_script
from pg_fixture import PG_PASSWORD

from aup.store.store import Store

pytestmark = pytest.mark.postgres


def _experiment(folder, storage: str, **extra):
    folder.mkdir(exist_ok=True)
    write_script(folder, "quad.py", QUADRATIC)
    cfg = {"script": "quad.py", "proposer": "random", "n_samples": 4, "n_parallel": 2,
           "target": "min", "storage": storage,
           "parameter_config": [{"name": "x", "type": "float", "range": [-1, 1]}]}
    cfg.update(extra)
    return write_experiment(folder, **cfg)


def test_aup_run_with_storage_postgresql(tmp_path, pg_url):
    exp = _experiment(tmp_path, pg_url, name="pg-e2e")
    r = run_cli("run", exp.name, "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "postgresql+psycopg" in r.stdout and "aup-test-pw" not in r.stdout
    assert not (tmp_path / ".aup").exists()  # nothing went to the default SQLite file
    listed = run_cli("list", "--json", "--db", pg_url, cwd=tmp_path).stdout
    rows = json.loads(listed)
    assert [(r["name"], r["status"], r["n_finished"]) for r in rows] == [("pg-e2e", "FINISHED",
                                                                          4)]
    # the password of the storage URL is neither stored in the shared database nor shown
    # (trial 37: 'aup list --json' printed it, and every user of the server could read it)
    assert PG_PASSWORD not in listed and ":***@" in rows[0]["exp_config"]["storage"], listed
    st = Store(pg_url)
    with st.engine.connect() as c:
        stored = c.exec_driver_sql("SELECT exp_config FROM experiment").scalar_one()
    assert PG_PASSWORD not in stored, stored
    from aup.dashboard.queries import DashboardQueries

    detail = DashboardQueries(st).experiment(rows[0]["eid"])
    assert PG_PASSWORD not in json.dumps(detail), detail["config"]
    jobs = st.jobs(rows[0]["eid"])
    for j in jobs:
        assert abs(j["score"] - (j["job_config"]["x"] - 0.3) ** 2) < 1e-9
        assert [a["status"] for a in st.attempts(j["jid"])] == ["SUCCEEDED"]
    best = json.loads(run_cli("best", "pg-e2e", "--json", "--db", pg_url, cwd=tmp_path).stdout)
    assert best["score"] == min(j["score"] for j in jobs)
    st.close()


def test_several_experiments_from_several_processes_at_once(tmp_path, pg_url):
    env = dict(os.environ)
    env.pop("AUP_DB", None)
    env["PYTHONPATH"] = str(REPO / "src")
    procs = []
    for k in range(3):
        exp = _experiment(tmp_path / f"e{k}", pg_url, name=f"par{k}", n_samples=6)
        procs.append(subprocess.Popen([sys.executable, "-m", "aup", "run", exp.name, "-q"],
                                      cwd=exp.parent, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    st = Store(pg_url)
    rows = st.list_experiments()
    assert sorted((r["name"], r["status"], r["n_finished"]) for r in rows) == [
        ("par0", "FINISHED", 6), ("par1", "FINISHED", 6), ("par2", "FINISHED", 6)]
    all_jids = [j["jid"] for r in rows for j in st.jobs(r["eid"])]
    assert len(all_jids) == len(set(all_jids)) == 18
    st.close()


def test_wrong_password_or_dead_server_exit_2_and_write_nothing(tmp_path, postgres_server):
    bad = postgres_server.url("postgres", password="secret-wrong")
    exp = _experiment(tmp_path, bad)
    r = run_cli("run", exp.name, cwd=tmp_path)
    assert r.returncode == 2
    assert "password authentication failed" in r.stderr and "secret-wrong" not in r.stderr
    assert "Traceback" not in r.stderr
    # each names the fix as 'aup setup' does (trial 37: only the driver's words)
    assert "Fix: check the user name and password" in r.stderr, r.stderr
    listed = run_cli("list", "--db", bad, cwd=tmp_path)
    assert listed.returncode == 2 and "Fix: check the user name and password" in listed.stderr
    closed = bad.replace(f":{postgres_server.port}/", ":1/")
    exp = _experiment(tmp_path, closed)
    r = run_cli("run", exp.name, cwd=tmp_path)
    assert r.returncode == 2 and "cannot open database" in r.stderr
    assert "Fix: check the host and port, and that the server is running" in r.stderr, r.stderr
    missing = postgres_server.url("no_such_db")
    r = run_cli("list", "--db", missing, cwd=tmp_path)
    assert r.returncode == 2 and "Fix: check the database name" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment.json", "quad.py"]


SLOW_QUADRATIC = """
import json, sys, time
cfg = json.load(open(sys.argv[-1]))
time.sleep(1.0)
print("#Auptimizer:", (cfg["x"] - 0.3) ** 2)
"""


def _start_run(tmp_path, pg_url, env_extra=None):
    folder = tmp_path / "exp"
    exp = _experiment(folder, pg_url, name="outage", n_samples=6)
    write_script(folder, "quad.py", SLOW_QUADRATIC)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env_extra or {})}
    proc = subprocess.Popen([sys.executable, "-m", "aup", "run", "-q", exp.name], cwd=folder,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return folder, proc


def _wait_for_jobs(pg_url, n, timeout=60.0):
    import time

    st = Store(pg_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            rows = st.list_experiments()
            if rows and len(st.jobs(rows[0]["eid"])) >= n:
                return
            time.sleep(0.2)
    finally:
        st.close()
    raise AssertionError(f"fewer than {n} jobs started in {timeout} s")


def test_a_database_restart_during_a_run_is_waited_for(tmp_path, pg_url, postgres_server):
    # A PostgreSQL restart mid-run ended 'aup run' with a 158-line traceback and left the
    # experiment RUNNING; the run now waits for the server and finishes.
    folder, proc = _start_run(tmp_path, pg_url)
    try:
        _wait_for_jobs(pg_url, 2)
        postgres_server.pg_ctl("stop", "-m", "fast")  # terminates every connection
        import time

        time.sleep(3)
        postgres_server.pg_ctl("start")
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    assert "does not answer" in err and "answers again" in err and "Traceback" not in err
    rows = json.loads(run_cli("list", "--json", "--db", pg_url, cwd=folder).stdout)
    assert [(r["status"], r["n_finished"]) for r in rows] == [("FINISHED", 6)]


def test_a_database_that_stays_down_ends_the_run_with_a_resume_hint(tmp_path, pg_url,
                                                                    postgres_server):
    folder, proc = _start_run(tmp_path, pg_url, {"AUP_DB_OUTAGE_WAIT": "3"})
    try:
        _wait_for_jobs(pg_url, 2)
        postgres_server.pg_ctl("stop", "-m", "fast")
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            postgres_server.pg_ctl("start")
    finally:
        proc.kill()
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err and "did not answer for" in err
    # it gave up after the 3 s asked for, not after the next doubled pause (trial 53: 6 s
    # waited 7.5, pauses 0.5, 1, 2 and 4 s)
    assert int(re.search(r"did not answer for (\d+) s", err).group(1)) <= 3, err
    assert "aup-test-pw" not in err  # the hint hides the password, and pastes with $PGPASSWORD
    hint = re.search(r'continue with: (aup resume --db "postgresql\+psycopg://aup:'
                     r'\$PGPASSWORD@[^"]+" 1)', " ".join(err.split()))
    assert hint, err
    # once the server is back, the hint works as printed: the lost attempts run again and it
    # finishes
    pasted = hint.group(1).replace("aup ", f"{sys.executable} -m aup ", 1) + " -q"
    env = {k: v for k, v in os.environ.items() if k != "AUP_DB"}
    r = subprocess.run(["bash", "-c", pasted], cwd=folder, capture_output=True, text=True,
                       env={**env, "PGPASSWORD": PG_PASSWORD}, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads(run_cli("list", "--json", "--db", pg_url, cwd=folder).stdout)
    assert [(r["status"], r["n_finished"]) for r in rows] == [("FINISHED", 6)]


def test_two_resumes_of_a_crashed_experiment_at_once_run_it_once(tmp_path, pg_url):
    """Trial 37: two 'aup resume' at once of one crashed experiment both ran it (jobs
    duplicated, 8/6 done) on PostgreSQL, where nothing but the row serializes them."""
    folder, proc = _start_run(tmp_path, pg_url)
    _wait_for_jobs(pg_url, 2)
    proc.kill()  # kill -9 of the scheduler
    proc.communicate()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    resumes = [subprocess.Popen([sys.executable, "-m", "aup", "resume", "-q", "--db", pg_url,
                                 "outage"], cwd=folder, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in resumes]
    codes = sorted(p.returncode for p in resumes)
    assert codes == [0, 2, 2, 2], outs
    for (_, err), p in zip(outs, resumes, strict=True):
        if p.returncode:
            assert "Traceback" not in err and ("another process" in err
                                               or "still running" in err), err
    st = Store(pg_url)
    try:
        (row,) = st.list_experiments()
        jobs = st.jobs(row["eid"])
        assert row["status"] == "FINISHED" and len(jobs) == 6, [j["jid"] for j in jobs]
        assert len({json.dumps(j["job_config"]["x"]) for j in jobs}) == 6  # no job twice
    finally:
        st.close()


def test_a_job_printing_nul_bytes_is_recorded_with_its_result(tmp_path, pg_url):
    # PostgreSQL text cannot hold NUL: a job printing one crashed the scheduler with a
    # DataError, lost its result, and every resume crashed the same way (trial 71). Each NUL
    # is stored as U+FFFD, in the output tail and in a crash detail that quotes the output.
    write_script(tmp_path, "nul.py", "import sys\nprint('ok\\x00nul')\n"
                 "x = float(open(sys.argv[1]).read().split('\"x\": ')[1].split(',')[0]"
                 ".rstrip('}'))\n"
                 "if x < 0: raise RuntimeError('bad\\x00value')\n"
                 "print('#Auptimizer:', x)\n")
    exp = write_experiment(tmp_path, script="nul.py", proposer="sequence", n_samples=2,
                           storage=pg_url, name="nul", target="max",
                           job_failure={"ignore_fail": True},
                           parameter_config=[{"name": "x", "type": "choice",
                                              "range": [-1.0, 0.5]}])
    r = run_cli("run", exp.name, "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    st = Store(pg_url)
    try:
        jobs = {j["job_config"]["x"]: j for j in st.jobs(st.list_experiments()[0]["eid"])}
        assert jobs[0.5]["status"] == "FINISHED" and jobs[0.5]["score"] == 0.5
        ok = st.attempts(jobs[0.5]["jid"])[0]
        assert "ok\ufffdnul" in ok["output_tail"] and "\x00" not in ok["output_tail"]
        bad = st.attempts(jobs[-1.0]["jid"])[0]
        assert jobs[-1.0]["status"] == "FAILED" and "bad\ufffdvalue" in bad["detail"], bad
    finally:
        st.close()
