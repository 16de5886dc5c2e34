"""``aup export``, ``aup plot``, ``aup dashboard`` through the real CLI, ``to_dataframe()``, and
the dashboard queries on PostgreSQL."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest
from conftest import run_cli, write_experiment, write_script
from dashboard_support import GRID_SCRIPT, expected_grid, free_port, shared_grid_db, write_json


@pytest.fixture(scope="module")
def grid_db(tmp_path_factory):
    return shared_grid_db(tmp_path_factory)


def test_export_csv_and_json(grid_db, tmp_path):
    proc = run_cli("export", "grid", "--format", "csv", cwd=grid_db)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    exp = expected_grid()
    assert [(int(r["x"]), r["k"]) for r in rows] == [(e["x"], e["k"]) for e in exp]
    assert [float(r["score"]) if r["score"] else None for r in rows] == [e["score"] for e in exp]
    assert rows[3]["status"] == "FAILED" and rows[3]["fail_reason"] == "NONZERO_EXIT"
    assert float(rows[1]["twice"]) == 4.0 and float(rows[1]["duration"]) > 0
    out = tmp_path / "jobs.json"
    proc = run_cli("export", "1", "--out", str(out), cwd=grid_db)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["experiment"]["best_job"]["params"] == {"x": 2, "k": "a"}
    assert len(data["jobs"]) == 12
    # '--out -' is standard output (it wrote a file called "-")
    dash = run_cli("export", "grid", "--out", "-", cwd=grid_db)
    assert dash.returncode == 0 and dash.stdout == proc_csv_text(grid_db)
    assert not (grid_db / "-").exists()


def proc_csv_text(folder) -> str:
    return run_cli("export", "grid", "--format", "csv", cwd=folder).stdout


def test_plot_png_and_html(grid_db, tmp_path):
    png = tmp_path / "grid.png"
    proc = run_cli("plot", "grid", "--out", str(png), cwd=grid_db)
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    html = tmp_path / "grid.html"
    proc = run_cli("plot", "grid", "--out", str(html), cwd=grid_db)
    assert proc.returncode == 0, proc.stderr
    text = html.read_text()
    assert "parcoords" in text and "best so far" in text
    assert "cdn.plot.ly" not in text.split("<script", 2)[1][:200]  # Plotly.js is embedded
    # the best jobs bright for both targets, as in the images (trial 55): Viridis is reversed
    # for target min only
    assert '"reversescale":true' in text.replace(" ", "")
    proc = run_cli("plot", "grid_max", "--out", str(tmp_path / "max.html"), cwd=grid_db)
    assert proc.returncode == 0, proc.stderr
    assert '"reversescale":false' in (tmp_path / "max.html").read_text().replace(" ", "")


@pytest.mark.parametrize("args,needle", [
    (["plot", "nope", "--out", "x.png"], "no experiment 'nope'"),
    (["plot", "1", "--out", "x.txt"], "unknown file type .txt"),
    (["plot", "1", "--out", "missing/x.png"], "does not exist"),
    (["export", "1", "--format", "xml"], "invalid choice"),
    (["export", "1", "--out", "jobs.xlsx"], "neither csv nor json"),
    (["export", "42"], "no experiment '42'"),
])
def test_file_commands_bad_usage(grid_db, args, needle):
    proc = run_cli(*args, cwd=grid_db)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_out_needs_overwrite_and_never_replaces_a_database(grid_db, tmp_path):
    project = tmp_path / "project"  # a copy: a regression must not destroy the shared database
    (project / ".aup").mkdir(parents=True)
    db = project / ".aup" / "sqlite3.db"
    src, dst = sqlite3.connect(grid_db / ".aup" / "sqlite3.db"), sqlite3.connect(db)
    src.backup(dst)
    src.close()
    dst.close()
    history = db.read_bytes()
    disguised = tmp_path / "history.png"  # an SQLite database with a plot's name
    disguised.write_bytes(history)
    for args in (["export", "grid", "--format", "json", "--out", str(db)],
                 ["export", "grid", "--format", "json", "--out", str(db), "--overwrite"],
                 ["plot", "grid", "--out", str(disguised), "--overwrite"]):
        proc = run_cli(*args, cwd=project)
        assert proc.returncode == 2 and "is an SQLite database" in proc.stderr, proc.stderr
        assert "not even with --overwrite" in proc.stderr and "Traceback" not in proc.stderr
    assert db.read_bytes() == history and disguised.read_bytes() == history
    # nor its companion files: --out .aup/sqlite3.db-wal --overwrite replaced the WAL that a
    # running experiment wrote through ("disk I/O error" for every reader)
    wal = db.with_name(db.name + "-wal")
    wal.write_bytes(b"not a real wal")
    for out, args in ((wal, ["export", "grid", "--format", "csv", "--overwrite"]),
                      (db.with_name(db.name + "-shm"), ["export", "grid", "--format", "json"])):
        proc = run_cli(*args, "--out", str(out), cwd=project)
        assert proc.returncode == 2 and "file of the SQLite database" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert wal.read_bytes() == b"not a real wal"
    assert not db.with_name(db.name + "-shm").exists()
    wal.unlink()
    for args, name in ((["export", "grid"], "jobs.csv"), (["plot", "grid"], "grid.png")):
        out = tmp_path / name
        out.write_text("keep me")
        proc = run_cli(*args, "--out", str(out), cwd=project)
        assert proc.returncode == 2 and "exists" in proc.stderr and "--overwrite" in proc.stderr
        assert out.read_text() == "keep me"
        proc = run_cli(*args, "--out", str(out), "--overwrite", cwd=project)
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() != b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "history.png", "jobs.csv",
                                                          "project"]  # no temporary file left


@pytest.mark.parametrize("args,name", [(["plot", "1"], "d.png"), (["export", "1"], "d.csv"),
                                       (["export", "1", "--overwrite"], "d.json")])
def test_out_that_is_a_folder_is_a_clear_error(grid_db, tmp_path, args, name):
    folder = tmp_path / name
    folder.mkdir()
    proc = run_cli(*args, "--out", str(folder), cwd=grid_db)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot write {folder}: it is a folder. Fix:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == [name] and not list(folder.iterdir())


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_full_disk_is_a_clear_error(grid_db):
    proc = run_cli("export", "1", "--out", "/dev/full", cwd=grid_db)
    assert proc.returncode == 2
    assert "cannot write /dev/full: No space left on device" in proc.stderr
    assert "Fix:" in proc.stderr and "Traceback" not in proc.stderr


def test_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    from aup.dashboard.export import write_out
    from aup.errors import UsageError

    out = tmp_path / "jobs.csv"
    out.write_text("old")

    def fail_half_way(path):
        path.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(UsageError, match="No space left on device"):
        write_out(out, fail_half_way)
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["jobs.csv"]


def test_plot_of_an_experiment_without_a_score_says_why_it_is_empty(tmp_path):
    write_script(tmp_path, "fail.py", "import sys\nsys.exit(3)\n")
    exp = write_experiment(tmp_path, script="fail.py", n_samples=2,
                           job_failure={"ignore_fail": True},
                           parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}])
    assert run_cli("run", exp.name, "-q", cwd=tmp_path).returncode == 1
    proc = run_cli("plot", "1", "--out", str(tmp_path / "p.html"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ("note: no job of experiment 1 has finished with a score yet (2 job(s), 2 failed)"
            in " ".join(proc.stderr.split())), proc.stderr
    assert (tmp_path / "p.html").is_file()
    write_script(tmp_path, "fail.py", "print('#Auptimizer: 1')\n")
    assert run_cli("run", exp.name, "-q", cwd=tmp_path).returncode == 0
    proc = run_cli("plot", "2", "--out", str(tmp_path / "q.html"), cwd=tmp_path)
    assert proc.returncode == 0 and "note:" not in proc.stderr, proc.stderr


def test_plot_without_matplotlib_names_the_file_asked_for(grid_db, tmp_path):
    # The message named the temporary file (.h.aup-tmp.png) and only the PyPI install command.
    out = tmp_path / "h.png"
    probe = ("import sys, runpy\n"
             "sys.modules['matplotlib'] = None  # as if it were not installed\n"
             f"sys.argv = ['aup', 'plot', 'grid', '--out', {str(out)!r}]\n"
             "runpy.run_module('aup', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=grid_db, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"{out}: images need matplotlib" in proc.stderr
    assert "pip install -e '.[dashboard]'" in proc.stderr and "aup-tmp" not in proc.stderr
    assert "or write .html" in proc.stderr  # plotly is there: the other format works
    assert list(tmp_path.iterdir()) == []
    # without plotly either, .html is no way out: not offered
    both = probe.replace("sys.modules['matplotlib'] = None",
                         "sys.modules['matplotlib'] = sys.modules['plotly'] = None")
    proc = subprocess.run([sys.executable, "-c", both], cwd=grid_db, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "images need matplotlib" in proc.stderr, proc.stderr
    assert ".html" not in proc.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "1e-9", "0.4", "0", "-3"])
def test_dashboard_refresh_must_be_finite_and_at_least_half_a_second(grid_db, value):
    proc = run_cli("dashboard", f"--refresh={value}", "--port", str(free_port()), cwd=grid_db)
    assert proc.returncode == 2
    assert "at least 0.5" in proc.stderr and "Fix:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_commands_without_database(tmp_path):
    for args in (["export", "1"], ["plot", "1", "--out", "x.png"], ["dashboard"]):
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2 and "no database at" in proc.stderr, proc.stderr
    assert not (tmp_path / ".aup").exists()  # nothing created


def test_to_dataframe(grid_db):
    import aup

    rec = aup.load_experiment("grid", db=str(grid_db / ".aup" / "sqlite3.db"))
    df = rec.to_dataframe()
    # a short repr, not the row's proposer state
    assert repr(rec).startswith("ExperimentRecord(eid=1, name='grid', status=")
    assert len(repr(rec)) < 300
    rec.store.close()
    assert len(df) == 12
    assert list(df["param_x"])[:6] == [1, 2, 3, 4, 5, 6]
    assert {"status", "score", "fail_reason", "detail", "start_time", "end_time"} <= set(df)
    assert df.loc[df["status"] == "FAILED", "fail_reason"].unique().tolist() == ["NONZERO_EXIT"]


def test_to_dataframe_has_the_result_labels_and_duration_as_the_export(grid_db):
    import aup

    rec = aup.load_experiment("grid", db=str(grid_db / ".aup" / "sqlite3.db"))
    try:
        df = rec.to_dataframe()
        records = rec.records()
    finally:
        rec.store.close()
    ok = df[df["status"] == "FINISHED"]
    # the final result line's label value, by label name ('twice' = 2x, as in 'aup export')
    assert list(ok["result_twice"]) == [2.0 * x for x in ok["param_x"]]
    assert df.loc[df["status"] == "FAILED", "result_twice"].isna().all()
    assert (df["duration"] == df["end_time"] - df["start_time"]).all()
    assert (df["duration"] > 0).all()
    assert records[0]["result_twice"] == 2.0 and records[0]["duration"] > 0
    proc = run_cli("export", "grid", "--format", "json", cwd=grid_db)
    exported = json.loads(proc.stdout)["jobs"]
    assert [r["twice"] for r in exported] == [r["result_twice"] for r in records]
    assert [r["duration"] for r in exported] == pytest.approx([r["duration"] for r in records])


def test_to_dataframe_leaves_out_hyperopts_bookkeeping_tid(tmp_path):
    # trial 62: a param_tid column, although tid is no parameter (best_params left it out)
    import aup

    write_script(tmp_path, "q.py", "import json, sys\n"
                 "print('#Auptimizer:', json.load(open(sys.argv[-1]))['x'])\n")
    exp = write_experiment(tmp_path, script="q.py", proposer="hyperopt", n_samples=2,
                           target="min",
                           parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}])
    assert run_cli("run", exp.name, "-q", cwd=tmp_path).returncode == 0
    with aup.load_experiment(1, db=str(tmp_path / ".aup" / "sqlite3.db")) as rec:
        assert "tid" in rec.jobs()[0]["job_config"]  # recorded, as 2.0 did
        df = rec.to_dataframe()
    assert "param_x" in df and "param_tid" not in df and "param_job_id" not in df


def test_to_dataframe_of_an_experiment_without_jobs_has_the_columns(grid_db, tmp_path):
    # A run stopped before its first job gave a (0, 0) frame: df.status raised AttributeError.
    import aup
    from aup.store.store import Store

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url)
    cfg = {"parameter_config": [{"name": "x", "type": "float", "range": [0, 1]}],
           "resource_args": {"multi_res_labels": ["twice"]}}
    store.create_experiment(user="u", name="empty", config=cfg, proposer="random",
                            target="min", n_total=3, config_path=None, workingdir=None)
    store.close()
    with aup.load_experiment("empty", db=url) as rec:
        empty = rec.to_dataframe()
    assert len(empty) == 0
    assert empty[empty["status"] == "FINISHED"].empty
    with aup.load_experiment("grid", db=str(grid_db / ".aup" / "sqlite3.db")) as rec:
        full = rec.to_dataframe()
    assert list(empty.columns[:12]) == list(full.columns[:12])  # the same record columns
    assert list(empty.columns[12:]) == ["param_x", "result_twice"]


def test_load_experiment_creates_no_database(tmp_path, monkeypatch):
    import aup
    from aup.errors import UsageError

    monkeypatch.delenv("AUP_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    for db in (str(tmp_path / "nonexistent.db"), f"sqlite:///{tmp_path / 'x' / 'a.db'}", None):
        with pytest.raises(UsageError, match="no database at .*Fix: run this where you ran"):
            aup.load_experiment(1, db=db)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    (tmp_path / "empty.db").touch()  # a file, but no Auptimizer database
    with pytest.raises(UsageError, match="holds no Auptimizer experiments"):
        aup.load_experiment(1, db=str(tmp_path / "empty.db"))


def test_dashboard_command_serves_and_requires_given_token(grid_db):
    port = free_port()
    env = dict(os.environ)
    env.pop("AUP_DB", None)
    proc = subprocess.Popen([sys.executable, "-m", "aup", "dashboard", "--port", str(port),
                             "--token", "tok123"], cwd=grid_db, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(url + "/api/experiments", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.2)
        assert r.status_code == 401
        r = httpx.get(url + "/api/experiments", headers={"Authorization": "Bearer tok123"})
        assert r.status_code == 200 and r.json()["total"] == 2
        busy = run_cli("dashboard", "--port", str(port), cwd=grid_db)
        assert busy.returncode == 2 and "another --port" in busy.stderr
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"open http://127.0.0.1:{port}/?token=tok123" in out


@pytest.mark.postgres
def test_queries_on_postgresql(pg_url, tmp_path):
    """The same SQL (windows, integer division, covering index) answers on PostgreSQL."""
    from aup.dashboard.queries import DashboardQueries
    from aup.store.store import Store

    (tmp_path / "grid.py").write_text(GRID_SCRIPT.lstrip())
    write_json(tmp_path / "grid.json", name="grid", script="grid.py", proposer="sequence",
               target="min", parameter_config=[
                   {"name": "x", "range": [1, 6], "type": "int", "interval": 1},
                   {"name": "k", "range": ["a", "b"], "type": "choice"}],
               resource_args={"track_intermediate_results": True,
                              "multi_res_labels": ["twice"]},
               job_failure={"ignore_fail": True})
    proc = run_cli("run", "grid.json", "-q", "--db", pg_url, cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr
    store = Store(pg_url, create=False)
    try:
        q = DashboardQueries(store)
        exp = expected_grid()
        assert q.list_experiments()["items"][0]["best_score"] == 0
        page = q.jobs(1, sort="score", order="desc", limit=3)
        assert [r["score"] for r in page["items"]] == [16.5, 16, 9.5]
        asc = q.jobs(1, sort="duration", limit=12)
        assert len(asc["items"]) == 12
        h = q.history(1, max_points=4)
        assert h["step"] == 5 and h["best"]["score"][-1] == 0
        full = q.history(1)
        assert full["points"]["score"] == [e["score"] for e in exp if not e["failed"]]
        p = q.parallel(1, max_lines=4, n_best=2)
        assert 2 <= p["n_shown"] <= 4 and 0 in p["score"]
        c = q.curves(1, max_points=2)
        assert c["jobs"][0]["num"] == [0, 2, 3]
    finally:
        store.close()


def test_log_scale_parameter_is_drawn_in_log10(tmp_path):
    """A ``"log": true`` parameter is flagged for the charts; both plot formats draw it."""
    from aup.dashboard.queries import DashboardQueries
    from aup.store.store import Store

    (tmp_path / "lr.py").write_text(
        "import json, sys, math\ncfg = json.load(open(sys.argv[-1]))\n"
        "print('#Auptimizer:', abs(math.log10(cfg['lr']) + 3))\n")
    write_json(tmp_path / "lr.json", name="lr", script="lr.py", proposer="random",
               n_samples=4, random_seed=3, target="min",
               parameter_config=[{"name": "lr", "range": [1e-6, 1], "type": "float",
                                  "log": True}])
    proc = run_cli("run", "lr.json", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    store = Store(f"sqlite:///{tmp_path / '.aup' / 'sqlite3.db'}", create=False)
    try:
        dim = DashboardQueries(store).parallel(1)["dimensions"][0]
    finally:
        store.close()
    assert dim["log"] is True and all(1e-6 <= v <= 1 for v in dim["values"])
    for name in ("lr.png", "lr.html"):
        proc = run_cli("plot", "lr", "--out", name, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert "lr (log10)" in (tmp_path / "lr.html").read_text()


def test_export_keeps_parameters_named_like_its_columns_apart(tmp_path):
    # A parameter called "score" or "status" must not replace the job's own score and status.
    (tmp_path / "s.py").write_text(
        "import json, sys\ncfg = json.load(open(sys.argv[-1]))\n"
        "print('#Auptimizer:', cfg['score'] * 10)\n")
    write_json(tmp_path / "e.json", name="clash", script="s.py", n_samples=2, target="min",
               parameter_config=[{"name": "score", "range": [0, 1], "type": "float"},
                                 {"name": "status", "range": ["a", "b"], "type": "choice"}])
    assert run_cli("run", "e.json", cwd=tmp_path).returncode == 0
    proc = run_cli("export", "clash", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["status"] for r in rows] == ["FINISHED", "FINISHED"]
    assert all(float(r["score"]) == 10 * float(r["param.score"]) for r in rows)
    assert {r["param.status"] for r in rows} <= {"a", "b"}
    data = json.loads(run_cli("export", "clash", "--format", "json", cwd=tmp_path).stdout)
    assert {"bracket", "rung"} <= set(data["columns"])
    assert data["columns"][:3] == ["jid", "status", "score"]
    assert "param.score" in data["columns"] and "param.status" in data["columns"]
    assert all(j["status"] == "FINISHED" for j in data["jobs"])



def test_export_keeps_a_parameter_named_like_a_renamed_one_apart(tmp_path):
    # Parameters "score" and "param.score": the first was renamed to "param.score", the
    # column of the second, and its values were lost from the export (trial 71).
    (tmp_path / "s.py").write_text(
        "import json, sys\ncfg = json.load(open(sys.argv[-1]))\n"
        "print('#Auptimizer:', cfg['score'] + cfg['param.score'])\n")
    write_json(tmp_path / "e.json", name="clash2", script="s.py", n_samples=2, target="min",
               parameter_config=[{"name": "score", "range": [0, 1], "type": "float"},
                                 {"name": "param.score", "range": [5, 6], "type": "float"}])
    assert run_cli("run", "e.json", cwd=tmp_path).returncode == 0
    rows = list(csv.DictReader(io.StringIO(run_cli("export", "clash2", cwd=tmp_path).stdout)))
    assert len(rows) == 2
    for r in rows:
        assert 0 <= float(r["param.score_"]) <= 1 and 5 <= float(r["param.score"]) <= 6
        assert float(r["score"]) == pytest.approx(float(r["param.score_"]) + float(r["param.score"]))

def test_export_keeps_labels_named_like_parameters_apart(tmp_path):
    # A multi_res_labels label called like a parameter ("x") must not replace its values.
    (tmp_path / "g.py").write_text(
        "import json, sys\ncfg = json.load(open(sys.argv[-1]))\n"
        "print(f'#Auptimizer:{cfg[\"x\"]},{cfg[\"x\"] + 100}')\n")
    write_json(tmp_path / "e.json", name="lab", script="g.py", n_samples=2,
               parameter_config=[{"name": "x", "range": [0, 1], "type": "float"}],
               resource_args={"multi_res_labels": ["x"]})
    assert run_cli("run", "e.json", cwd=tmp_path).returncode == 0
    rows = list(csv.DictReader(io.StringIO(run_cli("export", "lab", cwd=tmp_path).stdout)))
    assert all(0 <= float(r["x"]) <= 1 for r in rows)
    assert all(float(r["result.x"]) == float(r["x"]) + 100 for r in rows)


def test_a_failed_job_has_no_label_values_in_the_export_or_the_dataframe(tmp_path):
    """Trial 38: a job that printed a result line and then exited 1 is FAILED without a
    score, yet the export and to_dataframe() showed that line's label value."""
    import aup

    (tmp_path / "g.py").write_text(
        "import json, sys\ncfg = json.load(open(sys.argv[-1]))\n"
        "print(f'#Auptimizer:{cfg[\"x\"]},{cfg[\"x\"] + 500}')\n"
        "sys.exit(1 if cfg['x'] > 0.5 else 0)\n")
    write_json(tmp_path / "e.json", name="lab", script="g.py", proposer="sequence",
               parameter_config=[{"name": "x", "range": [0, 1], "type": "float", "n": 2}],
               resource_args={"multi_res_labels": ["lab"]},
               job_failure={"ignore_fail": True})
    run_cli("run", "e.json", cwd=tmp_path)
    rows = list(csv.DictReader(io.StringIO(run_cli("export", "lab", cwd=tmp_path).stdout)))
    assert [(r["status"], r["score"], r["lab"]) for r in rows] == [
        ("FINISHED", "0.0", "500.0"), ("FAILED", "", "")], rows
    frame = aup.load_experiment("lab", db=tmp_path / ".aup" / "sqlite3.db").records()
    assert [(r["status"], r["result_lab"]) for r in frame] == [("FINISHED", 500.0),
                                                              ("FAILED", None)]
    assert list(frame[0])[:5] == ["jid", "status", "score", "fail_reason", "detail"]


def test_export_keeps_labels_named_like_the_budget_or_a_renamed_column_apart(tmp_path):
    """A label "n_iterations" overwrote the budget's column, and a label "param.score" the
    renamed parameter's (trial 34): both now get result.<name>."""
    (tmp_path / "t.py").write_text(
        "import json, sys\ncfg = json.load(open(sys.argv[-1]))\n"
        "print(f'#Auptimizer:{cfg[\"score\"]},{min(cfg[\"n_iterations\"], 2)},7')\n")
    write_json(tmp_path / "e.json", name="hb", script="t.py", proposer="hyperband",
               max_iter=3, eta=3, target="min",
               parameter_config=[{"name": "score", "range": [0, 1], "type": "float"}],
               resource_args={"multi_res_labels": ["n_iterations", "param.score"]})
    assert run_cli("run", "e.json", "-q", cwd=tmp_path).returncode == 0
    for fmt in ("csv", "json"):
        out = run_cli("export", "hb", "--format", fmt, cwd=tmp_path).stdout
        rows = (list(csv.DictReader(io.StringIO(out))) if fmt == "csv"
                else json.loads(out)["jobs"])
        assert {float(r["n_iterations"]) for r in rows} == {1.0, 3.0}  # the budgets
        assert all(float(r["result.n_iterations"]) == min(float(r["n_iterations"]), 2)
                   for r in rows)
        assert all(float(r["result.param.score"]) == 7 for r in rows)
        assert all(0 <= float(r["param.score"]) <= 1 for r in rows)  # the parameter itself



@pytest.fixture(params=["sqlite", "postgresql"])
def one_experiment_db(request, tmp_path) -> str:
    """A database (SQLite, and PostgreSQL with its 32-bit INTEGER ids) with experiment 1."""
    from aup.store.store import Store

    url = (f"sqlite:///{tmp_path / 'db.sqlite'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    store = Store(url)
    store.create_experiment(user="u", name="one", config={}, proposer="random", target="min",
                            n_total=1, config_path=None, workingdir=None)
    store.close()
    return url


HUGE = "3000000000"  # beyond PostgreSQL's INTEGER: "integer out of range" before the fix


@pytest.mark.parametrize("args", [["show", HUGE], ["show", "--attempts", HUGE], ["best", HUGE],
                                  ["export", HUGE], ["resume", HUGE], ["stop", HUGE],
                                  ["show", "9" * 25]])
def test_an_id_beyond_the_database_range_is_no_experiment(one_experiment_db, tmp_path, args):
    proc = run_cli(*args, "--db", one_experiment_db, cwd=tmp_path)
    assert proc.returncode == 2 and f"no experiment '{args[-1]}'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_dashboard_answers_422_for_an_id_beyond_the_database_range(one_experiment_db):
    from fastapi.testclient import TestClient

    from aup.dashboard.app import create_app
    from aup.store.store import Store

    store = Store(one_experiment_db, create=False)
    try:
        with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
            assert c.get("/api/experiments/1").status_code == 200
            for path in (f"/api/experiments/{HUGE}", f"/api/experiments/1/jobs/{HUGE}",
                         f"/api/experiments/1/jobs/{HUGE}/log", f"/api/compare?eid={HUGE}",
                         f"/api/experiments/1/curves?jid={HUGE}"):
                assert c.get(path).status_code == 422, path
            assert c.get(f"/api/experiments/{2**31 - 1}").status_code == 404
    finally:
        store.close()


@pytest.mark.postgres
def test_a_hint_with_a_postgresql_password_pastes_without_showing_it(pg_url, tmp_path):
    """Hints such as 'aup resume --db ...' printed the password as ***, so they could not be
    pasted; now it is "$PGPASSWORD" in double quotes: never shown, and the pasted command
    works once that variable is set."""
    from pg_fixture import PG_PASSWORD

    from aup.api import db_option
    from aup.store.store import Store

    store = Store(pg_url)
    store.create_experiment(user="u", name="one", config={}, proposer="random", target="min",
                            n_total=1, config_path=None, workingdir=None)
    hint = db_option(store)
    store.close()
    assert PG_PASSWORD not in hint and "***" not in hint and '"$PGPASSWORD"' not in hint
    assert ":$PGPASSWORD@" in hint
    env = {k: v for k, v in os.environ.items() if k not in ("AUP_DB", "PGPASSWORD")}
    command = f"{sys.executable} -m aup show{hint} 1"
    pasted = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True,
                            text=True, env={**env, "PGPASSWORD": PG_PASSWORD}, timeout=60)
    assert pasted.returncode == 0 and "experiment 1 (one)" in pasted.stdout, pasted.stderr
    without = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True,
                             text=True, env=env, timeout=60)
    assert without.returncode == 2 and "Traceback" not in without.stderr  # from the variable


def test_2_0_ways_to_start_the_dashboard(tmp_path):
    """Trial 56: 2.0's 'python -m aup.dashboard --path DB' was 'No module named
    aup.dashboard.__main__', and 'aup dashboard --path DB' a bare argparse error."""
    import subprocess
    import sys

    from aup.dashboard.__main__ import dashboard_args

    assert dashboard_args(["--path", "x.db", "--port", "9"]) == [
        "dashboard", "--db", "x.db", "--port", "9"]
    assert dashboard_args(["--path=x.db"]) == ["dashboard", "--db=x.db"]
    # forwarded to 'aup dashboard', --path read as --db: the missing file is named
    proc = subprocess.run([sys.executable, "-m", "aup.dashboard", "--path", "missing.db"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"no database at {tmp_path / 'missing.db'}" in proc.stderr, proc.stderr
    proc = run_cli("dashboard", "--path", "missing.db", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--path is Auptimizer 2.0's: the database is given with --db" in proc.stderr
    assert not (tmp_path / "missing.db").exists()


def test_plot_draws_one_trace_per_budget(tmp_path):
    """Trial 70: the docs said 'aup plot' colours points by budget as the dashboard does; it
    drew hyperband's budget-1 and budget-9 scores as one trace, so a budget-1 score sat above
    the best-so-far line like a better job."""
    from aup.dashboard.plot import _points_by_budget
    from aup.store.store import Store

    store = Store(f"sqlite:///{tmp_path / '.aup' / 'sqlite3.db'}")
    cfg = {"parameter_config": [{"name": "x", "type": "float", "range": [0, 1]}]}
    eid = store.create_experiment(user="u", name="hb", config=cfg, proposer="hyperband",
                                  target="min", n_total=3, config_path=None, workingdir=None)
    rid = store.resource_id("cpu", "cpu:0")
    for x, budget in ((0.1, 1.0), (0.2, 3.0), (0.3, 3.0)):
        jid, jaid = store.start_job(eid=eid, job_config={"x": x, "n_iterations": int(budget)},
                                    proposal={"id": 0}, rid=rid, output_dir=None,
                                    proposer_state=None, budget=budget)
        store.end_attempt(eid=eid, jid=jid, jaid=jaid, attempt_status="SUCCEEDED",
                          exit_code=0, fail_reason=None, detail="", output_tail="",
                          job_status="FINISHED", score=x)
    store.close()
    html = tmp_path / "hb.html"
    proc = run_cli("plot", "hb", "--out", str(html), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = html.read_text()
    assert "score at budget 3" in text and "score at budget 1" in text
    groups = _points_by_budget({"n": [1, 2, 3], "score": [0.1, 0.2, 0.3], "jid": [1, 2, 3],
                                "budget": [1.0, 3.0, 3.0]})
    assert [(g[0], g[3]) for g in groups] == [("score at budget 3", [2, 3]),
                                              ("score at budget 1", [1])]
    png = tmp_path / "hb.png"
    assert run_cli("plot", "hb", "--out", str(png), cwd=tmp_path).returncode == 0
    # trial 70: the JSON export had no budget fields, so a smaller-budget best was unmarked
    exported = run_cli("export", "hb", "--format", "json", cwd=tmp_path)
    meta = json.loads(exported.stdout)["experiment"]
    assert meta["best_budget"] == 3 and meta["largest_budget_run"] == 3, meta
