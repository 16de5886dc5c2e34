"""Schema versioning: new databases are created at the head revision, older ones upgraded."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from sqlalchemy import create_engine, inspect, text

from aup.errors import StoreError
from aup.store import migrate
from aup.store.store import Store

# Auptimizer 2.0's DDL, as its aup.setupdb.sqlite wrote it ("version 0").
V2_DDL = """
CREATE TABLE user (uid INTEGER PRIMARY KEY, name TEXT UNIQUE, permission BLOB);
CREATE TABLE resource (rid INTEGER PRIMARY KEY, name TEXT, type TEXT, status TEXT);
CREATE TABLE experiment (eid INTEGER PRIMARY KEY AUTOINCREMENT, uid INTEGER, name TEXT,
  start_time INTEGER, end_time INTEGER,
  status TEXT CHECK (status IN ('CREATED','RUNNING','STOPPED','FINISHED','FAILED','STOPPING',
                                'REQUEST_STOP')),
  exp_config BLOB, error_msg TEXT, FOREIGN KEY(uid) REFERENCES user(uid));
CREATE TABLE job (jid INTEGER PRIMARY KEY, score REAL, eid INTEGER, start_time INTEGER,
  end_time INTEGER, status TEXT CHECK (status IN ('RUNNING','EARLY_STOPPED','FINISHED','FAILED')),
  job_config BLOB, FOREIGN KEY(eid) REFERENCES experiment(eid));
CREATE TABLE job_attempt (jaid INTEGER PRIMARY KEY, jid INTEGER, num INTEGER, rid INTEGER,
  start_time INTEGER, end_time INTEGER, FOREIGN KEY(jid) REFERENCES job(jid),
  FOREIGN KEY(rid) REFERENCES resource(rid));
CREATE TABLE intermediate_result (irid INTEGER PRIMARY KEY, num INTEGER, score REAL,
  jid INTEGER, receive_time INTEGER, FOREIGN KEY(jid) REFERENCES job(jid));
CREATE TABLE multiple_result (mrid INTEGER PRIMARY KEY, label_order INTEGER, value REAL,
  receive_time INTEGER, jid INTEGER, irid INTEGER, eid INTEGER, is_last_result INTEGER,
  FOREIGN KEY(jid) REFERENCES job(jid), FOREIGN KEY(irid) REFERENCES intermediate_result(irid),
  FOREIGN KEY(eid) REFERENCES experiment(eid));
"""

V2_ROWS = [
    "INSERT INTO user VALUES (1, 'alice', 'all')",
    # 2.0 made one cpu row per slot, all called localhost
    "INSERT INTO resource VALUES (1, 'localhost', 'cpu', 'busy')",
    "INSERT INTO resource VALUES (2, 'localhost', 'cpu', 'free')",
    "INSERT INTO resource VALUES (3, 'localhost', 'passive', 'free')",
    "INSERT INTO experiment VALUES (1, 1, 'old', 100, 200, 'FINISHED', '{cfg_min}', NULL)",
    "INSERT INTO experiment VALUES (2, 1, 'crashed', 300, NULL, 'REQUEST_STOP', '{cfg_max}', NULL)",
    "INSERT INTO job VALUES (1, 0.5, 1, 100, 110, 'FINISHED', '{{\"x\": 1}}')",
    # the reset tool's fake score on a job a crash left running
    "INSERT INTO job VALUES (2, -999, 1, 100, 150, 'RUNNING', '{{\"x\": 2}}')",
    # early-stopped jobs got the text score 'EARLY STOPPED'
    "INSERT INTO job VALUES (3, 'EARLY STOPPED', 1, 100, 120, 'EARLY_STOPPED', '{{\"x\": 3}}')",
    # Ctrl-C left status NULL
    "INSERT INTO job VALUES (4, NULL, 1, 100, 130, NULL, '{{\"x\": 4}}')",
    # ... and the reset tool's -999 on such a job
    "INSERT INTO job VALUES (6, -999, 1, 100, 160, NULL, '{{\"x\": 6}}')",
    "INSERT INTO job VALUES (5, 2.0, 2, 300, 310, 'FINISHED', '{{\"x\": 5}}')",
    "INSERT INTO job_attempt VALUES (1, 1, 0, 1, 100, 105)",
    "INSERT INTO job_attempt VALUES (2, 1, 1, 2, 105, 110)",
    "INSERT INTO job_attempt VALUES (3, 2, 0, 1, 100, 150)",
    "INSERT INTO job_attempt VALUES (4, 3, 0, 1, 100, 120)",
    "INSERT INTO job_attempt VALUES (5, 5, 0, 1, 300, 310)",
    "INSERT INTO intermediate_result VALUES (1, 0, 0.9, 1, 101)",
    "INSERT INTO multiple_result VALUES (1, 1, 7.0, 101, 1, 1, 1, 1)",
]


def _v2_sqlite(path) -> str:
    con = sqlite3.connect(path)
    con.executescript(V2_DDL)
    cfg_min = json.dumps({"proposer": "random", "target": "min", "script": "t.py",
                          "n_samples": 8})
    cfg_max = json.dumps({"proposer": "Sequence", "target": "max", "script": "t.py",
                          "n_samples": 3})
    for stmt in V2_ROWS:
        con.execute(stmt.format(cfg_min=cfg_min, cfg_max=cfg_max))
    con.commit()
    con.close()
    return f"sqlite:///{path}"


def _shape(engine) -> dict[str, tuple[set[str], set[str]]]:
    insp = inspect(engine)
    return {t: ({c["name"] for c in insp.get_columns(t)},
                {i["name"] for i in insp.get_indexes(t)}) for t in insp.get_table_names()}


def test_head_constant_matches_the_migration_scripts():
    assert migrate.script_head() == migrate.HEAD
    assert {"0000", migrate.HEAD} <= migrate.known_revisions()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'a.db'}"
    return request.getfixturevalue("pg_url")


def test_new_database_is_stamped_at_head_and_matches_a_full_upgrade(empty_url, tmp_path,
                                                                    request):
    """create_all + stamp and 0000 -> head migrations give the same tables, columns, indexes."""
    st = Store(empty_url)
    with st.engine.connect() as c:
        assert migrate.current_revision(c) == migrate.HEAD
    created = _shape(st.engine)
    st.close()
    if empty_url.startswith("sqlite"):
        other = f"sqlite:///{tmp_path / 'b.db'}"
    else:
        other = request.getfixturevalue("postgres_server").create_database()
    engine = create_engine(other)
    from alembic import command

    with engine.begin() as c:
        command.upgrade(migrate.alembic_config(c), "head")
    assert _shape(engine) == created
    engine.dispose()


def test_reopening_a_current_database_only_reads_the_revision(empty_url):
    Store(empty_url).close()
    st = Store(empty_url)
    assert migrate.ensure_schema(st.engine) == "current"
    st.close()


def test_auptimizer_2_database_is_upgraded_in_place(tmp_path):
    url = _v2_sqlite(tmp_path / "sqlite3.db")
    st = Store(url)
    with st.engine.connect() as c:
        assert migrate.current_revision(c) == migrate.HEAD
        assert c.execute(text("SELECT version FROM aup_schema")).scalar() == 1
    old = st.get_experiment(1)
    assert (old["status"], old["target"], old["proposer"]) == ("FINISHED", "min", "random")
    assert old["n_total"] == 8  # random's n_samples is its planned number of jobs
    crashed = st.get_experiment(2)
    assert (crashed["status"], crashed["target"], crashed["proposer"]) == (
        "STOPPED", "max", "sequence")
    assert crashed["n_total"] is None  # sequence's n_samples is not its number of jobs
    jobs = {j["jid"]: j for j in st.jobs(1)}
    assert (jobs[1]["status"], jobs[1]["score"], jobs[1]["n_attempts"]) == ("FINISHED", 0.5, 2)
    # -999 from 2.0's reset is not a result
    assert (jobs[2]["status"], jobs[2]["score"], jobs[2]["fail_reason"]) == (
        "INTERRUPTED", None, "LOST")
    assert (jobs[3]["status"], jobs[3]["score"]) == ("EARLY_STOPPED", None)
    assert jobs[4]["status"] == "INTERRUPTED"
    assert (jobs[6]["status"], jobs[6]["score"]) == ("INTERRUPTED", None)
    assert st.best_job(1, maximize=False)["jid"] == 1
    assert [a["status"] for a in st.attempts(1)] == ["FAILED", "SUCCEEDED"]
    assert [a["status"] for a in st.attempts(2)] == ["LOST"]
    assert [r["score"] for r in st.intermediate(1)] == [0.9]
    assert st.multiple(1)[0]["is_last_result"] in (True, 1)
    listed = {r["eid"]: r for r in st.list_experiments()}
    assert listed[1]["best_score"] == 0.5 and listed[2]["best_score"] == 2.0
    # the upgraded database works like a new one, and resources are unique by (type, name)
    assert st.user_id("alice") == 1
    assert st.resource_id("cpu", "localhost") == 1
    eid = st.create_experiment(user="alice", name="new", config={}, proposer="random",
                               target="min", n_total=1, config_path=None, workingdir=None)
    jid, jaid = st.start_job(eid=eid, job_config={"x": 1}, proposal={"id": 0}, rid=1,
                             output_dir="jobs", proposer_state=None)
    st.mark_interrupted(eid)
    assert st.jobs(eid)[0]["status"] == "INTERRUPTED"  # 2.0's CHECK constraint is gone
    with st.engine.connect() as c:  # the rebuilt job table kept every reference valid
        assert c.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    st.close()
    # and it opens again without another upgrade
    st = Store(url)
    assert migrate.ensure_schema(st.engine) == "current"
    st.close()


def _without_experiment_name(path) -> None:
    """Rewrite a 2.0 database's experiment table the way 2.0's PyPI release made it: no
    ``name`` column (found by a fresh-user trial with that release's own set-up code)."""
    con = sqlite3.connect(path)
    con.executescript("""
        ALTER TABLE experiment RENAME TO experiment_old;
        CREATE TABLE experiment (eid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, uid INTEGER,
          start_time INTEGER, end_time INTEGER,
          status TEXT CHECK(status IN ('CREATED', 'RUNNING', 'STOPPED', 'FINISHED', 'FAILED',
                                       'STOPPING', 'REQUEST_STOP')),
          exp_config BLOB, error_msg TEXT NULL, FOREIGN KEY(uid) REFERENCES user(uid));
        INSERT INTO experiment SELECT eid, uid, start_time, end_time, status, exp_config,
          error_msg FROM experiment_old;
        DROP TABLE experiment_old;
    """)
    con.execute("UPDATE experiment SET exp_config = ? WHERE eid = 1",
                (json.dumps({"name": "rosen", "proposer": "random", "script": "t.py"}),))
    con.commit()
    con.close()


def test_2_0_database_without_an_experiment_name_column_is_upgraded(tmp_path):
    url = _v2_sqlite(tmp_path / "sqlite3.db")
    _without_experiment_name(tmp_path / "sqlite3.db")
    st = Store(url)
    # the name comes from the stored configuration, or is made from the eid
    assert st.get_experiment(1)["name"] == "rosen"
    assert st.get_experiment(2)["name"] == "experiment-2"
    assert {r["name"] for r in st.list_experiments()} == {"rosen", "experiment-2"}
    assert st.best_job(1, maximize=False)["jid"] == 1
    st.close()


# The job table of 2.0's *documented* schema (its docs/Database/schema.sql): a resource id on
# the job, no status (and no experiment name, status or error message).
V2_DOCUMENTED_DDL = """
CREATE TABLE user (uid INTEGER PRIMARY KEY, name TEXT UNIQUE, permission BLOB);
CREATE TABLE resource (rid INTEGER PRIMARY KEY, name TEXT, type TEXT, status TEXT);
CREATE TABLE experiment (eid INTEGER PRIMARY KEY, uid INTEGER, start_time INTEGER,
  end_time INTEGER, exp_config BLOB);
CREATE TABLE job (jid INTEGER PRIMARY KEY, score REAL, eid INTEGER, rid INTEGER,
  start_time INTEGER, end_time INTEGER, job_config BLOB);
CREATE TABLE job_attempt (jaid INTEGER PRIMARY KEY, jid INTEGER, num INTEGER, rid INTEGER,
  start_time INTEGER, end_time INTEGER);
CREATE TABLE intermediate_result (irid INTEGER PRIMARY KEY, num INTEGER, score REAL,
  jid INTEGER, receive_time INTEGER);
INSERT INTO user VALUES (1, 'alice', 'all');
INSERT INTO resource VALUES (1, 'localhost', 'cpu', 'free');
INSERT INTO resource VALUES (2, '0', 'gpu', 'free');
INSERT INTO experiment VALUES (1, 1, 100, 200, '{"name": "rosen", "proposer": "random",
  "script": "t.py", "n_samples": 4, "target": "min"}');
INSERT INTO job VALUES (1, 12.5, 1, 1, 100, 110, '{"x": 1.0, "job_id": 1}');
INSERT INTO job VALUES (2, 3.25, 1, 2, 110, 120, '{"x": 0.5, "job_id": 2}');
INSERT INTO job VALUES (3, -999, 1, 1, 120, 130, '{"x": 4.0, "job_id": 3}');
INSERT INTO job VALUES (4, NULL, 1, 2, 130, NULL, '{"x": 2.0, "job_id": 4}');
INSERT INTO job_attempt VALUES (1, 1, 0, 1, 100, 110);
"""


def test_2_0_documented_schema_keeps_its_finished_jobs_and_their_resources(tmp_path):
    """Trial 56: every job of a database in the schema 2.0's documentation gives (no
    job.status) became INTERRUPTED: 'aup best' found no finished job, and job.rid (which
    resource ran each job) was dropped. Also: no multiple_result table (a bare 'no such
    table' error)."""
    from aup.api import job_params

    path = tmp_path / "sqlite3.db"
    con = sqlite3.connect(path)
    con.executescript(V2_DOCUMENTED_DDL)
    con.close()
    st = Store(f"sqlite:///{path}", create=False)
    try:
        by_jid = {j["jid"]: j for j in st.jobs(1)}
        assert [(by_jid[j]["status"], by_jid[j]["score"]) for j in (1, 2, 3, 4)] == [
            ("FINISHED", 12.5), ("FINISHED", 3.25), ("INTERRUPTED", None),
            ("INTERRUPTED", None)]
        best = st.best_job(1, maximize=False)
        assert best["jid"] == 2 and job_params(best) == {"x": 0.5}  # no 2.0 job_id
        with st.engine.connect() as c:
            rids = dict(c.execute(text("SELECT jid, rid FROM job_attempt WHERE num = 0")).all())
            assert rids == {1: 1, 2: 2, 3: 1, 4: 2}
            assert c.execute(text("SELECT count(*) FROM multiple_result")).scalar() == 0
        assert st.get_experiment(1)["name"] == "rosen"
    finally:
        st.close()


def test_database_upgraded_without_the_name_column_is_repaired(tmp_path):
    """An earlier Auptimizer 3 stamped such a database 0003 without adding ``name``:
    revision 0004 adds it, so the database can be read again."""
    path = tmp_path / "sqlite3.db"
    url = _v2_sqlite(path)
    Store(url).close()
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE experiment DROP COLUMN name")
    con.execute("UPDATE alembic_version SET version_num = '0003'")
    con.commit()
    con.close()
    st = Store(url, create=False)  # a reader (the dashboard) repairs it too
    with st.engine.connect() as c:
        assert migrate.current_revision(c) == migrate.HEAD
    assert st.get_experiment(2)["name"] == "experiment-2"
    assert sorted(r["eid"] for r in st.list_experiments()) == [1, 2]
    st.close()


def test_database_made_before_versioning_is_stamped(tmp_path):
    """The first Auptimizer 3 builds wrote create_all + aup_schema(version 1), no Alembic."""
    from aup.store import schema

    url = f"sqlite:///{tmp_path / 'pre.db'}"
    engine = create_engine(url)
    schema.metadata.create_all(engine)
    with engine.begin() as c:
        c.execute(text("INSERT INTO aup_schema (version) VALUES (1)"))
    engine.dispose()
    st = Store(url)
    with st.engine.connect() as c:
        assert migrate.current_revision(c) == migrate.HEAD
    st.close()


def test_database_from_a_newer_version_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    Store(url).close()
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StoreError, match="newer version"):
        Store(url)


@pytest.mark.postgres
def test_version_0_database_on_postgresql_is_upgraded(pg_url):
    """The generic (non-SQLite) path of migration 0001: drop CHECKs, add columns."""
    from alembic import command

    engine = create_engine(pg_url)
    with engine.begin() as c:
        command.upgrade(migrate.alembic_config(c), "0000")
        c.execute(text("INSERT INTO \"user\" VALUES (1, 'alice', 'all')"))
        c.execute(text("INSERT INTO experiment VALUES (1, 1, 'old', 1, NULL, 'RUNNING', "
                       "'{\"target\": \"max\"}', NULL)"))
        c.execute(text("INSERT INTO job VALUES (1, -999, 1, 1, 2, 'RUNNING', '{}')"))
        c.execute(text("INSERT INTO job VALUES (2, 3.5, 1, 1, 2, 'FINISHED', '{}')"))
        c.execute(text("INSERT INTO job_attempt VALUES (1, 2, 0, NULL, 1, 2)"))
        c.execute(text("DROP TABLE alembic_version"))  # as 2.0 left it: no version table
    engine.dispose()
    st = Store(pg_url)
    jobs = {j["jid"]: j for j in st.jobs(1)}
    assert (jobs[1]["status"], jobs[1]["score"]) == ("INTERRUPTED", None)
    assert st.best_job(1, maximize=True)["jid"] == 2
    assert st.get_experiment(1)["target"] == "max"
    assert [a["status"] for a in st.attempts(2)] == ["SUCCEEDED"]
    st.mark_interrupted(1)
    st.close()


def _open_and_report(url: str, queue) -> None:
    try:
        st = Store(url)
        queue.put(len(st.jobs(1)))
        st.close()
    except Exception as err:  # noqa: BLE001 - reported to the test
        queue.put(f"{type(err).__name__}: {err}")


def test_several_processes_opening_a_2_0_database_at_once_upgrade_it_once(tmp_path):
    import multiprocessing as mp

    url = _v2_sqlite(tmp_path / "sqlite3.db")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_open_and_report, args=(url, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert results == [5, 5, 5]  # every process sees the 5 jobs of experiment 1
    engine = create_engine(url)
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
        assert c.execute(text("SELECT count(*) FROM job")).scalar() == 6
    engine.dispose()


def test_readers_upgrade_an_old_database_but_create_nothing(tmp_path):
    url = _v2_sqlite(tmp_path / "old.db")
    reader = Store(url, create=False)  # the dashboard opens the store like this
    assert [j["jid"] for j in reader.jobs(1)] == [1, 2, 3, 4, 6]
    reader.close()
    empty = tmp_path / "empty.db"
    reader = Store(f"sqlite:///{empty}", create=False)
    assert inspect(reader.engine).get_table_names() == []
    reader.close()


def test_aup_show_of_an_upgraded_2_0_experiment(tmp_path):
    """``aup show``: a job 2.0's reset tool closed reads LOST (no empty ": " detail), and
    2.0's ``job_id`` key in job_config is not shown as a parameter (it is the job column)."""
    from conftest import run_cli

    (tmp_path / ".aup").mkdir()
    path = tmp_path / ".aup" / "sqlite3.db"
    _v2_sqlite(path)
    con = sqlite3.connect(path)
    con.execute("""UPDATE job SET job_config = '{"x": 2, "job_id": 2}' WHERE jid = 2""")
    con.execute("UPDATE job SET job_config = 'not json' WHERE jid = 3")  # a damaged row
    con.execute("""UPDATE experiment SET exp_config = '{"target": "min"}' WHERE eid = 1""")
    con.commit()
    con.close()
    res = run_cli("show", "1", cwd=tmp_path, env={"COLUMNS": "200"})
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr  # was JSONDecodeError
    out = res.stdout
    assert "target min, proposer -" in out  # no proposer recorded: '-' as in aup list, not None
    row = next(line for line in out.splitlines() if line.startswith("│ 2 "))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells[1] == "INTERRUPTED" and cells[4] == "x=2" and cells[5] == "LOST"


def test_hints_for_a_running_2_0_experiment_work_when_pasted(tmp_path):
    """A 2.0 experiment left RUNNING has no scheduler process and cannot be resumed: 'aup stop'
    said "stop requested" (nothing would read it) and 'aup repair' said "continue with: aup
    resume", which is refused; the refusal's 'aup show N' lacked --db (trial 33)."""
    from conftest import run_cli

    path = tmp_path / "v2.db"
    url = _v2_sqlite(path)
    con = sqlite3.connect(path)
    con.execute("UPDATE experiment SET status = 'RUNNING', end_time = NULL WHERE eid = 2")
    con.execute("UPDATE job SET status = 'RUNNING', end_time = NULL WHERE jid = 5")
    con.commit()
    con.close()
    flat = lambda r: " ".join((r.stdout + r.stderr).split())  # noqa: E731
    stop = run_cli("stop", "--db", url, "2", cwd=tmp_path)
    assert stop.returncode == 0 and "no aup process was ever recorded" in flat(stop)
    assert f"aup repair --db {url}" in flat(stop) and "stop requested" not in flat(stop)
    assert Store(url).get_experiment(2)["stop_requested"] in (False, 0)
    resume = run_cli("resume", "--db", url, "2", cwd=tmp_path)
    assert resume.returncode == 2 and "recorded by Auptimizer 2.0" in flat(resume)
    shown = re.search(r"\((aup show [^)]*)\)", flat(resume)).group(1)
    assert run_cli(*shown.split()[1:], cwd=tmp_path).returncode == 0  # pasted as printed
    repair = run_cli("repair", "--db", url, cwd=tmp_path)
    assert repair.returncode == 0 and "cannot be resumed" in flat(repair)
    assert "aup resume" not in flat(repair)
    row = Store(url).get_experiment(2)
    assert row["status"] == "STOPPED" and "cannot be resumed" in row["error_msg"]


def test_a_reader_leaves_an_older_revision_with_every_column_as_it_is(tmp_path, monkeypatch):
    """Trial 68: 'aup list' of a database made by the previous version (revision 0003, every
    column there) stamped it 0004, a change of nothing but the number, and the previous
    version then refused the database ('made by a newer version'). A writer still upgrades."""
    path = tmp_path / "sqlite3.db"
    url = f"sqlite:///{path}"
    Store(url).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '0003'")
    con.commit()
    con.close()

    def revision() -> str:
        with sqlite3.connect(path) as c:
            return c.execute("SELECT version_num FROM alembic_version").fetchone()[0]

    reader = Store(url, create=False)
    assert reader.list_experiments() == []
    reader.close()
    assert revision() == "0003"
    # read-only (an archive, a colleague's folder): read as it is, where it was refused. The
    # tests may run as root, for whom chmod does not hold: the file is taken as unwritable.
    import aup.store.store as store_module

    with monkeypatch.context() as m:
        m.setattr(store_module, "_writable", lambda p: False)
        reader = Store(url, create=False, read_only=True)
        assert reader.read_only and reader.list_experiments() == []
        reader.close()
    assert revision() == "0003"
    Store(url).close()  # a writer ('aup run')
    assert revision() == migrate.HEAD
