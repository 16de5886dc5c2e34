"""REST API of the dashboard over a database filled by a real experiment run (in-process
ASGI client): values, pagination, sorting, filters, bad input, token, file views, stop."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import threading
import time

import pytest
from dashboard_support import db_url, expected_grid, shared_grid_db
from fastapi.testclient import TestClient

from aup.dashboard.app import create_app
from aup.dashboard.command import choose_token, is_loopback
from aup.job import FailReason
from aup.store.store import Store


@pytest.fixture(scope="module")
def grid_db(tmp_path_factory):
    return shared_grid_db(tmp_path_factory)


@pytest.fixture
def client(grid_db):
    store = Store(db_url(grid_db), create=False)
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        yield c
    store.close()


def test_experiment_list_and_summary(client):
    data = client.get("/api/experiments").json()
    assert data["total"] == 2
    by_id = {e["eid"]: e for e in data["items"]}
    assert [e["eid"] for e in data["items"]] == [2, 1]  # newest first
    e = by_id[1]
    assert (e["status"], e["proposer"], e["target"]) == ("FINISHED", "sequence", "min")
    assert (e["n_jobs"], e["n_finished"], e["n_failed"], e["n_total"]) == (12, 10, 2, 12)
    assert e["best_score"] == 0 and by_id[2]["best_score"] == 16.5
    assert e["progress"] == 1.0 and e["stale"] is False
    page = client.get("/api/experiments", params={"limit": 1, "offset": 1}).json()
    assert [x["eid"] for x in page["items"]] == [1] and page["total"] == 2
    assert client.get("/api/experiments", params={"status": "RUNNING"}).json()["total"] == 0
    detail = client.get("/api/experiments/1").json()
    assert detail["best_job"]["params"] == {"x": 2, "k": "a"}
    assert detail["labels"] == ["twice"]
    assert [p["name"] for p in detail["parameters"]] == ["x", "k"]


def test_job_table_sorts_filters_pages(client):
    rows = client.get("/api/experiments/1/jobs", params={"limit": 100}).json()
    assert rows["total"] == 12
    exp = expected_grid()
    assert [r["params"] for r in rows["items"]] == [{"x": e["x"], "k": e["k"]} for e in exp]
    assert [r["score"] for r in rows["items"]] == [e["score"] for e in exp]
    ok = rows["items"][1]
    assert ok["extras"] == {"twice": 4.0} and ok["duration"] > 0
    bad = rows["items"][3]
    assert bad["status"] == "FAILED" and bad["fail_reason"] == "NONZERO_EXIT"
    by_score = client.get("/api/experiments/1/jobs",
                          params={"sort": "score", "order": "desc", "limit": 3}).json()
    assert [r["score"] for r in by_score["items"]] == [16.5, 16, 9.5]
    asc = client.get("/api/experiments/1/jobs", params={"sort": "score", "limit": 12}).json()
    assert [r["score"] for r in asc["items"]][-2:] == [None, None]  # no score: last
    for key in ("jid", "status", "start_time", "end_time", "duration", "n_attempts"):
        for order in ("asc", "desc"):
            r = client.get("/api/experiments/1/jobs", params={"sort": key, "order": order,
                                                               "limit": 12}).json()
            values = [x[key] for x in r["items"] if x[key] is not None]
            assert values == sorted(values, reverse=order == "desc"), (key, order)
    failed = client.get("/api/experiments/1/jobs", params={"status": "FAILED"}).json()
    assert failed["total"] == 2
    rng = client.get("/api/experiments/1/jobs",
                     params={"min_score": 0.5, "max_score": 1.0}).json()
    assert sorted(r["score"] for r in rng["items"]) == [0.5, 1.0, 1.0]
    page2 = client.get("/api/experiments/1/jobs", params={"limit": 5, "offset": 10}).json()
    assert len(page2["items"]) == 2 and page2["total"] == 12


def test_charts_are_downsampled(client):
    h = client.get("/api/experiments/1/history").json()
    assert h["step"] == 1 and h["n_finished"] == 10
    assert h["points"]["score"] == [e["score"] for e in expected_grid() if not e["failed"]]
    small = client.get("/api/experiments/1/history", params={"max_points": 4}).json()
    assert small["step"] == 5 and len(small["best"]["n"]) == 2
    assert small["best"]["score"][-1] == 0
    assert len(small["points"]["n"]) <= 4
    assert min(small["points"]["score"]) == 0 and max(small["points"]["score"]) == 16.5
    p = client.get("/api/experiments/1/parallel").json()
    assert p["n_shown"] == 10 and p["dimensions"][1]["choices"] == ["a", "b"]
    c = client.get("/api/experiments/1/curves").json()
    best = c["jobs"][0]
    assert best["score"] == [3.0, 2.0, 1.0, 0.0] and best["num"] == [0, 1, 2, 3]
    one = client.get("/api/experiments/1/curves",
                     params={"jid": best["jid"], "max_points": 2}).json()
    assert one["jobs"][0]["num"] == [0, 2, 3]
    # an unknown job id is a 404 naming it (it was left out of a 200)
    r = client.get("/api/experiments/1/curves", params={"jid": [best["jid"], 777]})
    assert r.status_code == 404 and r.json()["detail"] == "no job 777 in experiment 1"
    cmp = client.get("/api/compare", params={"eid": [1, 2]}).json()
    assert [s["best"][-1] for s in cmp["series"]] == [0, 16.5]


def test_job_detail_and_log(client):
    jobs = client.get("/api/experiments/1/jobs", params={"status": "FAILED"}).json()["items"]
    jid = jobs[0]["jid"]
    j = client.get(f"/api/experiments/1/jobs/{jid}").json()
    assert j["attempts"][0]["exit_code"] == 3 and j["is_rerun"] is False
    log = client.get(f"/api/experiments/1/jobs/{jid}/log").json()
    assert log["source"] == "file" and "boom: x=4" in log["text"]
    tail = client.get(f"/api/experiments/1/jobs/{jid}/log", params={"max_bytes": 5}).json()
    assert tail["truncated"] and len(tail["text"]) == 5


def test_the_save_model_rerun_says_so_in_its_detail(tmp_path):
    """The re-run is left out of the job table; its detail looked like an ordinary job's,
    with the best job's bracket and rung (trial 34)."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    eid = store.create_experiment(user="u", name="e", config={}, proposer="random",
                                  target="min", n_total=1, config_path=None, workingdir=None)
    rid = store.resource_id("cpu", "cpu:0")
    best, _ = store.start_job(eid=eid, job_config={"x": 1}, proposal={"id": 0}, rid=rid,
                              output_dir=None, proposer_state=None)
    rerun, _ = store.start_job(eid=eid, job_config={"x": 1}, proposal={"id": 0}, rid=rid,
                               output_dir=None, proposer_state=None, is_rerun=True)
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        assert [r["jid"] for r in c.get(f"/api/experiments/{eid}/jobs").json()["items"]] == [
            best]
        assert c.get(f"/api/experiments/{eid}/jobs/{rerun}").json()["is_rerun"] is True
        assert c.get(f"/api/experiments/{eid}/jobs/{best}").json()["is_rerun"] is False
    store.close()


def test_the_parallel_chart_shows_the_budget_of_multi_fidelity_jobs(tmp_path):
    """Hyperband scores at budgets 1 and 3 were drawn together with nothing telling them
    apart (trial 34): the budget is now the last dimension."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    cfg = {"parameter_config": [{"name": "x", "type": "float", "range": [0, 1]},
                                {"name": "score", "type": "float", "range": [0, 1]},
                                {"name": "budget", "type": "float", "range": [0, 1]}]}
    eid = store.create_experiment(user="u", name="e", config=cfg, proposer="hyperband",
                                  target="min", n_total=2, config_path=None, workingdir=None)
    rid = store.resource_id("cpu", "cpu:0")
    for x, budget in ((0.1, 1.0), (0.2, 3.0)):
        jid, jaid = store.start_job(eid=eid, job_config={"x": x, "n_iterations": budget,
                                                         "score": x, "budget": x},
                                    proposal={"id": 0}, rid=rid, output_dir=None,
                                    proposer_state=None, budget=budget)
        store.end_attempt(eid=eid, jid=jid, jaid=jaid, attempt_status="SUCCEEDED",
                          exit_code=0, fail_reason=None, detail="", output_tail="",
                          job_status="FINISHED", score=x)
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        dims = c.get(f"/api/experiments/{eid}/parallel").json()["dimensions"]
        # whole budgets as the job got them (trial 68: 3.0 in the job table and its API)
        items = c.get(f"/api/experiments/{eid}/jobs").json()["items"]
        assert [(type(it["budget"]), it["budget"]) for it in items] == [(int, 1), (int, 3)]
        one = c.get(f"/api/experiments/{eid}/jobs/{items[1]['jid']}").json()
        assert one["budget"] == 3 and isinstance(one["budget"], int)
    store.close()
    # parameters named like the chart's own axes are told apart (trial 61: two "score" axes)
    assert [d["name"] for d in dims] == ["x", "score (parameter)", "budget (parameter)",
                                         "budget"]
    assert dims[1]["values"] == dims[2]["values"] == [0.1, 0.2]
    # budgets are geometric: a log axis (trial 61: squeezed into the bottom of a linear one)
    assert dims[3]["values"] == [1.0, 3.0] and dims[3]["log"] is True


def test_choice_labels_are_written_as_in_experiment_json(tmp_path):
    # trial 60: a JSON null showed as Python's None (and true as True) on the choice axis
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    cfg = {"parameter_config": [{"name": "c", "type": "choice",
                                 "range": ["sgd", None, True, 1.5, 1, "1"]}]}
    eid = store.create_experiment(user="u", name="e", config=cfg, proposer="random",
                                  target="min", n_total=1, config_path=None, workingdir=None)
    rid = store.resource_id("cpu", "cpu:0")
    jid, jaid = store.start_job(eid=eid, job_config={"c": None}, proposal={"id": 0}, rid=rid,
                                output_dir=None, proposer_state=None)
    store.end_attempt(eid=eid, jid=jid, jaid=jaid, attempt_status="SUCCEEDED", exit_code=0,
                      fail_reason=None, detail="", output_tail="", job_status="FINISHED",
                      score=1.0)
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        (dim,) = c.get(f"/api/experiments/{eid}/parallel").json()["dimensions"]
    store.close()
    # trial 70: the string "1" is quoted, apart from the number 1 (two ticks read "1")
    assert dim["choices"] == ["sgd", "null", "true", "1.5", "1", '"1"'] and dim["values"] == [1]


@pytest.mark.parametrize("path,code", [
    ("/api/experiments/999", 404), ("/api/experiments/0", 422), ("/api/experiments/abc", 422),
    ("/api/experiments/999/jobs", 404), ("/api/experiments/1/jobs/99999", 404),
    ("/api/experiments/2/jobs/1", 404),  # job 1 belongs to experiment 1
    ("/api/experiments/1/jobs?sort=drop", 422), ("/api/experiments/1/jobs?limit=0", 422),
    ("/api/experiments/1/jobs?status=NOPE", 422), ("/api/experiments/1/jobs?min_score=nan", 422),
    ("/api/experiments/1/jobs?offset=-1", 422), ("/api/experiments/1/history?max_points=1", 422),
    ("/api/experiments/99999999999999999999", 422), ("/api/compare", 422),
    ("/api/compare?eid=1&eid=999", 404), ("/api/experiments/1/jobs/1/log?attempt=7", 404),
    ("/api/experiments/1/jobs?fail_reason=BOGUS", 422),
])
def test_bad_input_is_a_clear_4xx(client, path, code):
    r = client.get(path)
    assert r.status_code == code, r.text
    assert r.json()["detail"]


def test_fail_reason_filter_knows_the_reasons(client):
    failed = client.get("/api/experiments/1/jobs", params={"fail_reason": "NONZERO_EXIT"})
    assert failed.status_code == 200 and failed.json()["total"] == 2
    assert client.get("/api/experiments/1/jobs",
                      params={"fail_reason": "TIMEOUT"}).json()["total"] == 0
    r = client.get("/api/experiments/1/jobs", params={"fail_reason": "nonzero_exit"})
    assert r.status_code == 422
    assert all(reason.value in r.text for reason in FailReason)  # lists the known reasons


def test_stop_needs_header_and_a_running_experiment(client):
    assert client.post("/api/experiments/1/stop").status_code == 422
    r = client.post("/api/experiments/1/stop", headers={"X-Requested-With": "evil"})
    assert r.status_code == 422
    r = client.post("/api/experiments/1/stop", headers={"X-Requested-With": "aup"})
    assert r.status_code == 409 and "FINISHED" in r.json()["detail"]
    assert client.post("/api/experiments/9/stop",
                       headers={"X-Requested-With": "aup"}).status_code == 404


def test_stop_of_a_crashed_experiment_names_the_resume(grid_db, tmp_path):
    # It answered 202 "stop_requested", but no process would read the request.
    copy = tmp_path / "crashed.db"
    dst = _copy_db(grid_db, copy)
    dst.execute("update experiment set status='RUNNING', host=?, pid=? where eid=1",
                (socket.gethostname(), _dead_pid()))
    dst.commit()
    dst.close()
    store = Store(f"sqlite:///{copy}", create=False)
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        r = c.post("/api/experiments/1/stop", headers={"X-Requested-With": "aup"})
        # the database is not the default one here, so the hint names it
        assert r.status_code == 409, r.text
        assert r.json()["detail"].endswith(f"aup resume --db sqlite:///{copy} 1"), r.text
    store.close()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _copy_db(grid_db, path) -> sqlite3.Connection:
    """Copy the grid experiments' database to ``path`` (SQLite backup); returns an open
    connection to the copy, for the test to change it."""
    src = sqlite3.connect(grid_db / ".aup" / "sqlite3.db")
    dst = sqlite3.connect(path)
    src.backup(dst)
    src.close()
    return dst


def test_log_outside_jobs_dir_is_refused(grid_db, tmp_path):
    """A recorded output path outside <workingdir>/jobs is never read."""
    copy = tmp_path / "copy.db"
    dst = _copy_db(grid_db, copy)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not show")
    dst.execute("update job_attempt set output_path=? where jid=1", (str(secret),))
    dst.execute("update job_attempt set output_path=? where jid=2",
                (str(grid_db / "jobs" / ".." / ".." / "copy.db"),))
    dst.commit()
    dst.close()
    store = Store(f"sqlite:///{copy}", create=False)
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        for jid in (1, 2):
            r = c.get(f"/api/experiments/1/jobs/{jid}/log")
            assert r.status_code == 403 and "outside" in r.json()["detail"]
        assert c.get("/api/experiments/1/jobs/3/log").status_code == 200
    store.close()


def test_token_required_on_every_request(grid_db):
    store = Store(db_url(grid_db), create=False)
    app = create_app(store, token="s3cret")
    with TestClient(app, base_url="http://10.1.2.3:8000") as c:
        for path in ("/api/experiments", "/openapi.json", "/api/experiments/1/jobs"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/").status_code == 401
        assert c.post("/api/experiments/1/stop",
                      headers={"X-Requested-With": "aup"}).status_code == 401
        # the address printed by 'aup dashboard' sets a cookie the pages then use
        r = c.get("/?token=s3cret", follow_redirects=False)
        assert r.status_code == 303 and "aup_token" in r.headers["set-cookie"]
        # ... and sends the browser to the page without the token (trial 61: it stayed in
        # the address bar, the history and bookmarks); other query parameters are kept
        assert r.headers["location"] == "/"
        r = c.get("/compare?eid=1&token=s3cret&eid=2", follow_redirects=False)
        assert r.headers["location"] == "/compare?eid=1&eid=2"
        assert c.get("/").status_code == 200  # the cookie opens the page
        assert c.get("/api/experiments").status_code == 200  # cookie kept by the client
        c.cookies.clear()
        assert c.get("/?token=wrong", follow_redirects=False).status_code == 401
    with TestClient(app, base_url="http://10.1.2.3:8000") as fresh:
        assert fresh.get("/api/experiments",
                         headers={"X-Aup-Token": "s3cret"}).status_code == 200
    store.close()


def test_no_token_means_loopback_host_only(client):
    assert client.get("/api/experiments", headers={"Host": "evil.example:8000"}
                      ).status_code == 400
    for host in ("localhost:8000", "127.0.0.2:8000", "[::1]:8000", "127.0.0.1"):
        assert client.get("/api/experiments", headers={"Host": host}).status_code == 200
    for host in ("10.0.0.1:8000", "localhost.evil.example", "[::2]:80", ""):
        assert client.get("/api/experiments", headers={"Host": host}).status_code == 400


def test_token_policy():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert choose_token("127.0.0.1", None) == (None, False)
    token, generated = choose_token("0.0.0.0", None)
    assert generated and len(token) >= 24
    assert choose_token("0.0.0.0", "given") == ("given", False)


def test_reading_while_the_experiment_writes(grid_db, tmp_path):
    """The API answers while another connection writes continuously; the writer never sees a
    lock error (SQLite WAL)."""
    copy = tmp_path / "busy.db"
    _copy_db(grid_db, copy).close()
    writer_store = Store(f"sqlite:///{copy}", create=False)
    errors: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        try:
            i = 0
            while not stop.is_set():
                writer_store.add_result(eid=1, jid=1, num=100 + i, values=(float(i), 1.0),
                                        receive_time=time.time(), track=True)
                i += 1
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    store = Store(f"sqlite:///{copy}", create=False)
    thread = threading.Thread(target=write)
    thread.start()
    try:
        with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
            for _ in range(15):
                for path in ("/api/experiments", "/api/experiments/1/jobs",
                             "/api/experiments/1/curves?jid=1", "/api/experiments/1/history"):
                    r = c.get(path)
                    assert r.status_code == 200, r.text
    finally:
        stop.set()
        thread.join()
        store.close()
        writer_store.close()
    assert errors == []


def test_export_matches_api(grid_db):
    from aup.dashboard.export import export_text

    store = Store(db_url(grid_db), create=False)
    data = json.loads(export_text(store, 1, "json"))
    store.close()
    assert data["columns"][:3] == ["jid", "status", "score"]
    assert {"x", "k", "twice"} <= set(data["columns"])
    assert [(r["x"], r["k"], r["score"]) for r in data["jobs"]] == [
        (e["x"], e["k"], e["score"]) for e in expected_grid()]


def test_pages_and_plotly_are_served(client):
    for path in ("/", "/experiments/1", "/compare?eid=1", "/static/app.js",
                 "/static/experiment.js", "/static/style.css"):
        assert client.get(path).status_code == 200, path
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000


def test_running_experiment_without_heartbeat_is_stale(grid_db, tmp_path):
    copy = tmp_path / "stale.db"
    dst = _copy_db(grid_db, copy)
    now = time.time()
    dst.execute("update experiment set status='RUNNING', heartbeat=? where eid=1", (now - 600,))
    dst.execute("update experiment set status='RUNNING', heartbeat=? where eid=2", (now,))
    dst.commit()
    dst.close()
    store = Store(f"sqlite:///{copy}", create=False)
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        items = {e["eid"]: e for e in c.get("/api/experiments").json()["items"]}
        assert items[1]["stale"] is True and items[2]["stale"] is False
        assert c.get("/api/experiments", params={"status": "RUNNING"}).json()["total"] == 2
    store.close()


def test_a_read_only_database_is_shown_and_stop_requests_are_refused(grid_db, tmp_path,
                                                                      monkeypatch):
    # The tests run as root, who may write any file, so "this user may not write it" is
    # simulated by the permission check alone; the connection is a real read-only one.
    import aup.store.store as store_module

    copy = tmp_path / "ro.db"
    dst = _copy_db(grid_db, copy)
    dst.execute("update experiment set status='RUNNING' where eid=1")
    dst.commit()
    dst.close()
    before = copy.read_bytes()
    monkeypatch.setattr(store_module, "_writable", lambda path: False)
    store = Store(f"sqlite:///{copy}", create=False, read_only=True)
    assert store.read_only
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        assert c.get("/api/experiments/1").json()["status"] == "RUNNING"
        assert len(c.get("/api/experiments/1/jobs").json()["items"]) > 0
        r = c.post("/api/experiments/1/stop", headers={"X-Requested-With": "aup"})
        assert r.status_code == 409 and "read-only" in r.json()["detail"]
        assert "aup stop 1" in r.json()["detail"]
    store.close()
    assert copy.read_bytes() == before


def test_a_job_without_a_score_shows_no_label_values_in_any_view(tmp_path):
    """Trial 70: a FAILED job's last line (before its crash) gave label values in the job's
    detail, while the job table, the export and records() gave none."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    cfg = {"parameter_config": [{"name": "x", "type": "float", "range": [0, 1]}],
           "resource_args": {"multi_res_labels": ["acc"]}}
    eid = store.create_experiment(user="u", name="e", config=cfg, proposer="random",
                                  target="min", n_total=1, config_path=None, workingdir=None)
    rid = store.resource_id("cpu", "cpu:0")
    jid, jaid = store.start_job(eid=eid, job_config={"x": 0.5}, proposal={"id": 0}, rid=rid,
                                output_dir=None, proposer_state=None)
    store.add_results(eid=eid, rows=[(jid, 0, (0.7, 0.3), 1.0)], track=True)
    store.end_attempt(eid=eid, jid=jid, jaid=jaid, attempt_status="FAILED", exit_code=3,
                      fail_reason="NONZERO_EXIT", detail="exited with code 3", output_tail="",
                      job_status="FAILED", score=None)
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        detail = c.get(f"/api/experiments/{eid}/jobs/{jid}").json()
        (row,) = c.get(f"/api/experiments/{eid}/jobs").json()["items"]
    store.close()
    assert detail["score"] is None and detail["extras"] == [] and row["extras"] == {}
