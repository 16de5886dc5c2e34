"""The Store API on SQLite and on a real PostgreSQL server (same tests, same behaviour)."""

from __future__ import annotations

import math
import multiprocessing as mp
import time

import pytest

from aup.errors import StoreError
from aup.store.store import Store, open_store

CFG = {"script": "train.py", "parameter_config": [{"name": "x", "type": "float",
                                                   "range": [0, 1]}]}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh database URL of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'aup.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url):
    st = Store(db_url)
    yield st
    st.close()


def _experiment(store: Store, name: str = "exp", target: str = "min", user: str = "alice") -> int:
    return store.create_experiment(user=user, name=name, config=CFG, proposer="random",
                                   target=target, n_total=3, config_path="/x/experiment.json",
                                   workingdir="/x")


def _finish(store: Store, eid: int, score: float | None, status: str = "FINISHED",
            x: float = 0.5, budget: float | None = None) -> int:
    rid = store.resource_id("cpu", "cpu:0")
    jid, jaid = store.start_job(eid=eid, job_config={"x": x}, proposal={"id": 0, "params":
                                {"x": x}}, rid=rid, output_dir="/x/jobs",
                                proposer_state={"next_id": 1}, budget=budget)
    store.end_attempt(eid=eid, jid=jid, jaid=jaid, attempt_status="SUCCEEDED"
                      if status == "FINISHED" else "FAILED", exit_code=0, fail_reason=None
                      if status == "FINISHED" else "NONZERO_EXIT", detail="", output_tail="",
                      job_status=status, score=score)
    return jid


def test_experiment_row_round_trip(store):
    eid = _experiment(store)
    row = store.get_experiment(eid)
    assert row["name"] == "exp" and row["status"] == "RUNNING" and row["target"] == "min"
    assert row["exp_config"] == CFG
    assert row["stop_requested"] is False
    store.request_stop(eid)
    assert store.stop_requested(eid)
    store.end_experiment(eid, "STOPPED")
    row = store.get_experiment(eid)
    assert row["status"] == "STOPPED" and row["end_time"] is not None
    assert not store.stop_requested(eid)
    assert [r["eid"] for r in store.find_experiments("exp")] == [eid]


def test_job_attempts_results_and_best(store):
    eid = _experiment(store, target="min")
    rid = store.resource_id("cpu", "cpu:0")
    assert store.resource_id("cpu", "cpu:0") == rid
    jid, jaid = store.start_job(eid=eid, job_config={"x": 0.1}, proposal={"id": 0},
                                rid=rid, output_dir="/x/jobs", proposer_state={"n": 1},
                                budget=3.0, bracket=0, rung=1)
    store.set_job_config(jid, {"x": 0.1, "job_id": jid})
    # first attempt fails, the retry succeeds with intermediate and multiple results
    store.end_attempt(eid=eid, jid=jid, jaid=jaid, attempt_status="FAILED", exit_code=1,
                      fail_reason="NONZERO_EXIT", detail="exit 1", output_tail="boom",
                      error_msg="job 1 failed")
    jaid2 = store.start_attempt(jid=jid, num=1, rid=rid, output_path=f"/x/jobs/{jid}.1.out")
    for i, v in enumerate([3.0, 2.0, 1.5]):
        store.add_result(eid=eid, jid=jid, num=i, values=(v, 10.0 * i), receive_time=time.time(),
                         track=True)
    store.end_attempt(eid=eid, jid=jid, jaid=jaid2, attempt_status="SUCCEEDED", exit_code=0,
                      fail_reason=None, detail="", output_tail="ok", job_status="FINISHED",
                      score=1.5, extras=[20.0], proposer_state={"n": 2})
    att = store.attempts(jid)
    assert [(a["num"], a["status"], a["exit_code"]) for a in att] == [
        (0, "FAILED", 1), (1, "SUCCEEDED", 0)]
    job = store.jobs(eid)[0]
    assert job["status"] == "FINISHED" and job["score"] == 1.5 and job["n_attempts"] == 2
    assert job["job_config"] == {"x": 0.1, "job_id": jid} and job["budget"] == 3.0
    assert [r["score"] for r in store.intermediate(jid)] == [3.0, 2.0, 1.5]
    multi = store.multiple(jid)
    assert [m["value"] for m in multi] == [0.0, 10.0, 20.0]
    assert [m["is_last_result"] for m in multi] == [False, False, True]
    row = store.get_experiment(eid)
    assert row["proposer_state"] == {"n": 2} and row["error_msg"] == "job 1 failed"
    assert store.last_attempts(eid)[jid]["num"] == 1

    _finish(store, eid, 0.7)
    _finish(store, eid, 9.0)
    _finish(store, eid, None, status="FAILED")
    # only the jobs at the largest budget compete: the first job (budget 3) is the best
    assert store.best_job(eid, maximize=False)["score"] == 1.5
    assert store.best_job(eid, maximize=True)["score"] == 1.5
    eid2 = _experiment(store, target="min")
    _finish(store, eid2, 0.7)
    _finish(store, eid2, 9.0)
    _finish(store, eid2, None, status="FAILED")
    assert store.best_job(eid2, maximize=False)["score"] == 0.7
    assert store.best_job(eid2, maximize=True)["score"] == 9.0


def test_non_finite_scores_are_stored_as_null(store):
    eid = _experiment(store)
    jid = _finish(store, eid, math.nan)
    assert store.jobs(eid)[0]["score"] is None
    store.add_result(eid=eid, jid=jid, num=0, values=(math.inf,), receive_time=1.0, track=True)
    assert store.intermediate(jid)[0]["score"] is None
    assert store.best_job(eid, maximize=True) is None


def test_mark_interrupted(store):
    eid = _experiment(store)
    rid = store.resource_id("cpu", "cpu:0")
    done = _finish(store, eid, 1.0)
    jid, _ = store.start_job(eid=eid, job_config={"x": 1}, proposal={"id": 1}, rid=rid,
                             output_dir="/x/jobs", proposer_state=None)
    assert store.mark_interrupted(eid, "LOST") == 1
    jobs = {j["jid"]: j for j in store.jobs(eid)}
    assert jobs[jid]["status"] == "INTERRUPTED" and jobs[done]["status"] == "FINISHED"
    (a,) = store.attempts(jid)
    assert a["status"] == "LOST" and a["fail_reason"] == "LOST" and a["end_time"] is None
    assert store.mark_interrupted(eid, "LOST") == 0


def test_a_lost_attempt_has_no_made_up_end_time(store):
    # After a kill -9, the attempts that ran got durations up to the moment of 'aup resume'.
    eid = _experiment(store)
    rid = store.resource_id("cpu", "cpu:0")
    jid, _ = store.start_job(eid=eid, job_config={"x": 1}, proposal={"id": 1}, rid=rid,
                             output_dir="/x/jobs", proposer_state=None)
    assert store.mark_interrupted(eid, "LOST") == 1
    (a,) = store.attempts(jid)
    assert a["status"] == "LOST" and a["end_time"] is None
    jid2, _ = store.start_job(eid=eid, job_config={"x": 2}, proposal={"id": 2}, rid=rid,
                              output_dir="/x/jobs", proposer_state=None)
    assert store.mark_interrupted(eid, "STOPPED") == 1  # a stop: it ends now
    (b,) = store.attempts(jid2)
    assert b["status"] == "STOPPED" and b["end_time"] >= b["start_time"]


def test_list_experiments_counts_and_best_by_target(store):
    e1 = _experiment(store, "a", target="max")
    e2 = _experiment(store, "b", target="min")
    for eid in (e1, e2):
        _finish(store, eid, 1.0)
        _finish(store, eid, 5.0)
        _finish(store, eid, None, status="FAILED")
    rows = {r["eid"]: r for r in store.list_experiments()}
    assert rows[e1]["best_score"] == 5.0 and rows[e2]["best_score"] == 1.0
    assert (rows[e1]["n_jobs"], rows[e1]["n_finished"], rows[e1]["n_failed"]) == (3, 2, 1)
    assert [r["eid"] for r in store.list_experiments(limit=1)] == [e2]


def test_status_counts_and_first_failed_job_of_one_experiment(store):
    # The end of a run counts jobs with these aggregates instead of loading every row (a run
    # of 60,000 jobs grew by 160 MB at its end, trial 43).
    e1, e2 = _experiment(store, "a"), _experiment(store, "b")
    assert store.job_status_counts(e1) == {} and store.first_failed_job(e1) is None
    _finish(store, e1, 1.0)
    failed = _finish(store, e1, None, status="FAILED")
    _finish(store, e1, None, status="FAILED")
    _finish(store, e1, 2.0)
    _finish(store, e2, None, status="FAILED")
    assert store.job_status_counts(e1) == {"FINISHED": 2, "FAILED": 2}
    assert store.job_status_counts(e2) == {"FAILED": 1}
    assert store.first_failed_job(e1) == (failed, "NONZERO_EXIT")


def test_list_experiments_best_uses_the_largest_budget(store):
    # Found by a fresh-user trial: `aup list` showed a budget-1 score as the best while the
    # summary and `aup best` (largest budget only) showed another job.
    e_min = _experiment(store, "hb-min", target="min")
    e_max = _experiment(store, "hb-max", target="max")
    for eid in (e_min, e_max):
        _finish(store, eid, -5.0, budget=1.0)
        _finish(store, eid, 2.0, budget=9.0)
        _finish(store, eid, 3.0, budget=9.0)
        _finish(store, eid, 9.5, budget=3.0)
        _finish(store, eid, None, status="FAILED", budget=27.0)
    rows = {r["eid"]: r for r in store.list_experiments()}
    assert rows[e_min]["best_score"] == 2.0 == store.best_job(e_min, maximize=False)["score"]
    assert rows[e_max]["best_score"] == 3.0 == store.best_job(e_max, maximize=True)["score"]
    # The dashboard's summaries (and `aup export`, which uses them) follow the same rule: they
    # showed the budget-1 score (trial 27).
    from aup.dashboard.queries import DashboardQueries

    q = DashboardQueries(store)
    assert q.experiment(e_min)["best_score"] == 2.0 and q.experiment(e_max)["best_score"] == 3.0
    items = {r["eid"]: r for r in q.list_experiments()["items"]}
    assert items[e_min]["best_score"] == 2.0 and items[e_max]["best_score"] == 3.0


@pytest.mark.parametrize("max_points", [2000, 4])  # every job a point; buckets of jobs
def test_best_so_far_line_counts_only_the_largest_budget(store, max_points):
    # The dashboard's best-so-far curves (/history, /compare, `aup plot`) ran over every budget:
    # a budget-1 score of -5 was the "best" of a min experiment whose best is 2 (trial 27).
    from aup.dashboard.queries import DashboardQueries

    eid = _experiment(store, "hb", target="min")
    for score, budget in ((-5.0, 1.0), (0.5, 3.0), (4.0, 9.0), (-1.0, 1.0), (2.0, 9.0),
                          (7.0, 9.0), (-9.0, 3.0), (3.0, 9.0)):
        _finish(store, eid, score, budget=budget)
    q = DashboardQueries(store)
    h = q.history(eid, max_points=max_points)
    assert h["n_finished"] == 8
    assert min(h["points"]["score"]) == -9.0  # the cloud still shows every finished job
    best = h["best"]
    assert best["score"][-1] == 2.0 == store.best_job(eid, maximize=False)["score"]
    assert min(best["score"]) == 2.0 and best["n"][-1] == 8
    if max_points == 2000:  # the line starts at the first job at budget 9 (job number 3)
        assert best["n"] == [3, 4, 5, 6, 7, 8] and best["score"] == [4.0, 4.0, 2.0, 2.0, 2.0, 2.0]
    (series,) = q.compare([eid], max_points=max_points)["series"]
    assert series["best"] == best["score"]


def test_reopen_keeps_data_and_users(db_url):
    st = Store(db_url)
    eid = _experiment(st, user="bob")
    uid = st.user_id("bob")
    st.close()
    st = Store(db_url)
    assert st.get_experiment(eid)["uid"] == uid == st.user_id("bob")
    st.close()
    reader = open_store(db_url, create=False)
    assert reader.get_experiment(eid)["name"] == "exp"
    reader.close()


# -- several processes writing at once ----------------------------------------------------------
def _writer(url: str, name: str, n_jobs: int, queue) -> None:
    try:
        st = Store(url)  # every process races to create/upgrade the schema too
        eid = _experiment(st, name=name, user="shared")
        for i in range(n_jobs):
            rid = st.resource_id("cpu", f"cpu:{i % 2}")
            jid, jaid = st.start_job(eid=eid, job_config={"x": i}, proposal={"id": i},
                                     rid=rid, output_dir="jobs", proposer_state={"i": i})
            st.add_result(eid=eid, jid=jid, num=0, values=(float(i), 1.0),
                          receive_time=time.time(), track=True)
            st.end_attempt(eid=eid, jid=jid, jaid=jaid, attempt_status="SUCCEEDED",
                           exit_code=0, fail_reason=None, detail="", output_tail="",
                           job_status="FINISHED", score=float(i), extras=[1.0])
        st.end_experiment(eid, "FINISHED")
        st.close()
        queue.put((name, eid, None))
    except Exception as err:  # noqa: BLE001 - reported to the test
        queue.put((name, None, f"{type(err).__name__}: {err}"))


def test_concurrent_writers_from_several_processes(db_url):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    n_proc, n_jobs = 4, 15
    procs = [ctx.Process(target=_writer, args=(db_url, f"w{k}", n_jobs, queue))
             for k in range(n_proc)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [r[2] for r in results] == [None] * n_proc
    st = Store(db_url)
    rows = st.list_experiments()
    assert len(rows) == n_proc
    for r in rows:
        assert r["status"] == "FINISHED" and r["n_finished"] == n_jobs
        jobs = st.jobs(r["eid"])
        assert [j["job_config"]["x"] for j in jobs] == list(range(n_jobs))
        assert all(len(st.intermediate(j["jid"])) == 1 for j in jobs)
    assert len({r["uid"] for r in rows}) == 1  # one "shared" user, created once
    st.close()


# -- bad URLs -----------------------------------------------------------------------------------
def test_malformed_url_is_a_store_error():
    with pytest.raises(StoreError, match="SQLAlchemy URL"):
        Store("notadriver://x/y")


def test_a_file_that_is_no_database_is_a_store_error_with_a_fix(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database " * 20)
    with pytest.raises(StoreError) as err:
        open_store(f"sqlite:///{bad}")
    msg = str(err.value)
    assert f"cannot open database sqlite:///{bad}: file is not a database (if it was an " \
        "Auptimizer database, its first page is damaged: restore it from a backup). Fix:" in msg
    assert "sqlalche.me" not in msg
    assert bad.read_bytes() == b"not a database " * 20  # left as it was


def test_unreachable_server_is_a_store_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError, match="cannot open database") as err:
        Store(f"postgresql+psycopg://u:secret@127.0.0.1:{port}/db?connect_timeout=3")
    assert "secret" not in str(err.value)


@pytest.mark.postgres
def test_wrong_password_is_a_store_error(postgres_server):
    url = postgres_server.url("postgres", password="wrong-secret")
    with pytest.raises(StoreError, match="password authentication failed") as err:
        Store(url)
    assert "wrong-secret" not in str(err.value)


def test_a_lock_held_past_the_busy_timeout_gets_the_lock_hint(tmp_path, monkeypatch):
    # A SQLite write that waited out the busy timeout (another program holding a write
    # transaction) ended 'aup run' with the disk-full hint ("free space on its disk"): the fix
    # for a lock is to end the other writer.
    import sqlite3

    import aup.store.store as store_module
    from aup.errors import DatabaseWriteFailed

    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT", 0.2)
    path = tmp_path / "locked.db"
    st = Store(f"sqlite:///{path}")
    eid = st.create_experiment(user="u", name="n", config={}, proposer="random", target="min",
                               n_total=1, config_path=None, workingdir=None)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock
    try:
        with pytest.raises(DatabaseWriteFailed) as info:
            st.update_experiment(eid, heartbeat=1.0)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert "locked" in str(info.value)
    assert "lock" in info.value.repair and "free space" not in info.value.repair
    st.update_experiment(eid, heartbeat=2.0)  # the lock is gone: writing works again
    assert st.get_experiment(eid)["heartbeat"] == 2.0
    assert "free space" in DatabaseWriteFailed("disk I/O error").repair


@pytest.mark.parametrize("scheme", ["postgres", "postgresql+psycopg2"])
def test_a_postgres_scheme_without_our_driver_names_the_right_one(scheme):
    # postgres:// (Heroku's spelling) said only "Can't load plugin"; psycopg2 is not ours.
    with pytest.raises(StoreError) as info:
        Store(f"{scheme}://user:secret@127.0.0.1:1/db")
    text = str(info.value)
    assert f"start the URL with postgresql+psycopg:// instead of {scheme}://" in text
    assert "secret" not in text


def test_a_missing_psycopg_names_the_install_command():
    # Run where psycopg cannot be imported (a fresh install without the postgres extra).
    import subprocess
    import sys

    probe = ("import sys; sys.modules['psycopg'] = None\n"
             "from aup.store.store import Store\n"
             "try:\n    Store('postgresql+psycopg://u:p@127.0.0.1:1/db')\n"
             "except Exception as err:\n    print(type(err).__name__, err)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60).stdout
    assert out.startswith("StoreError") and "pip install -e '.[postgres]'" in out, out


def test_of_two_claims_of_one_experiment_only_the_first_wins(store, db_url):
    """Trial 37: two 'aup resume' of one crashed experiment both ran on PostgreSQL (the
    liveness check and the claim were separate steps). The claim is a compare-and-set on the
    row both read; the loser changes nothing, and an unclaim puts the row back."""
    eid = _experiment(store)
    store.end_experiment(eid, "STOPPED")
    other = Store(db_url)
    try:
        seen = store.get_experiment(eid)
        seen_by_other = other.get_experiment(eid)
        assert store.claim_experiment(eid, seen) is True
        claimed = store.get_experiment(eid)
        assert other.claim_experiment(eid, seen_by_other) is False
        assert other.get_experiment(eid) == claimed  # the loser wrote nothing
        store.unclaim_experiment(eid, seen)  # the resume could not start: back as it was
        back = store.get_experiment(eid)
        assert {k: back[k] for k in ("status", "end_time", "host", "pid", "heartbeat")} == {
            k: seen[k] for k in ("status", "end_time", "host", "pid", "heartbeat")}
        assert other.claim_experiment(eid, other.get_experiment(eid)) is True
    finally:
        other.close()


def test_attempts_of_a_job_that_never_ran_use_no_retry(store):
    # Only attempts of a job that ran count against job_retries on resume (aup.job.NEVER_RAN).
    eid = _experiment(store)
    rid = store.resource_id("cpu", "cpu:0")
    jid, jaid = store.start_job(eid=eid, job_config={"x": 1}, proposal={"id": 0, "params":
                                {"x": 1}}, rid=rid, output_dir=None, proposer_state=None)
    for num, reason in enumerate(["START_FAILED", "RESOURCE_ERROR", "NONZERO_EXIT", "LOST"]):
        if num:
            jaid = store.start_attempt(jid=jid, num=num, rid=rid, output_path=None)
        store.end_attempt(eid=eid, jid=jid, jaid=jaid, attempt_status="FAILED", exit_code=1,
                          fail_reason=reason, detail="", output_tail="", job_status=None,
                          score=None)
    assert store.failed_attempt_counts(eid) == {jid: 2}
